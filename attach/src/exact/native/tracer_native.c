/* The exact-mode hook's hot path in C: the sys.monitoring callbacks (3.12+) that turn
 * each event of traced code into a record of the wire format (attach/src/exact/wire.rs)
 * appended to a buffer, and the queue of bytes for the tracer's socket, which the
 * hook's Python flusher fills with batches of those records and sends from with the
 * GIL released. The buffers keep their memory from batch to batch: a batch costs one
 * copy of its records and no fresh pages, and the program's threads run meanwhile.
 *
 * Decisions are made once in Python and cached here: whether a code object is traced
 * (and its argument names), what a callee is called, the line of an instruction, the
 * wire id of a thread. Values are described here when the Python describer would
 * not run Python code for them (plain builtins, their lists, tuples and dicts, plain
 * objects, functions, classes: see put_value) with the same bytes as it; anything
 * else goes through it, so the rules (never run the program's code, redaction,
 * cuts) have one reference, which the tests hold both to.
 *
 * Every callback runs with the GIL held and may call back into Python only before it
 * writes: another thread can run during such a call, so nothing is written half-way
 * and no pointer into the tables is kept across it. No callback ever raises into the
 * program: errors are cleared and the event is skipped.
 *
 * Built against the stable ABI (limited_api.h). METH_FASTCALL needs 3.10 and
 * PyUnicode_AsUTF8AndSize 3.10; the hook loads this module only on 3.12+, where
 * sys.monitoring exists. */
#define _GNU_SOURCE /* memmem */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "limited_api.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the wire format is little-endian; this module writes native integers"
#endif

#define EXPORT __attribute__((visibility("default")))

/* ------------------------------------------------------------------------------ */
/* Growable byte buffers. */

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} Buf;

static int buf_reserve(Buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline uint8_t *put(uint8_t *p, const void *src, size_t n)
{
    memcpy(p, src, n);
    return p + n;
}
#define PUT(p, type, value)                                                           \
    do {                                                                              \
        type v_ = (type)(value);                                                      \
        p = put(p, &v_, sizeof v_);                                                   \
    } while (0)

/* ------------------------------------------------------------------------------ */
/* Open-addressing hash map from a 64-bit key to a 64-bit value. A key and its value
 * sit side by side, so that a lookup in a map bigger than the caches (a program of
 * thousands of traced functions: every event looks up its code and line) misses
 * once, not once for the key and once for the value. */

#define EMPTY_KEY UINT64_MAX

typedef struct {
    uint64_t key;
    int64_t value;
} Entry;

typedef struct {
    Entry *entries;
    size_t cap; /* a power of two, or 0 */
    size_t len;
} Map;

/* Fibonacci hashing: the top bits of the product, which depend on every bit of the
 * key. (Its middle bits depend only on the key's low bits: a line's key is
 * `cid << 32 | offset`, and every code's keys of one offset fell into one chain, so
 * a lookup walked one key per traced function.) `cap` is at least 256. */
static inline size_t slot_of(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> (64 - __builtin_ctzll(cap)));
}

static int map_get(const Map *m, uint64_t key, int64_t *value)
{
    if (m->cap == 0)
        return 0;
    size_t i = slot_of(key, m->cap);
    for (;;) {
        const Entry *e = &m->entries[i];
        if (e->key == key) {
            *value = e->value;
            return 1;
        }
        if (e->key == EMPTY_KEY)
            return 0;
        i = (i + 1) & (m->cap - 1);
    }
}

static int map_grow(Map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 256;
    Entry *entries = malloc(cap * sizeof *entries);
    if (entries == NULL)
        return -1;
    memset(entries, 0xff, cap * sizeof *entries);
    for (size_t j = 0; j < m->cap; j++) {
        if (m->entries[j].key == EMPTY_KEY)
            continue;
        size_t i = slot_of(m->entries[j].key, cap);
        while (entries[i].key != EMPTY_KEY)
            i = (i + 1) & (cap - 1);
        entries[i] = m->entries[j];
    }
    free(m->entries);
    m->entries = entries;
    m->cap = cap;
    return 0;
}

static int map_put(Map *m, uint64_t key, int64_t value)
{
    if ((m->len + 1) * 2 > m->cap && map_grow(m) < 0)
        return -1;
    size_t i = slot_of(key, m->cap);
    while (m->entries[i].key != EMPTY_KEY && m->entries[i].key != key)
        i = (i + 1) & (m->cap - 1);
    if (m->entries[i].key == EMPTY_KEY)
        m->len++;
    m->entries[i].key = key;
    m->entries[i].value = value;
    return 0;
}

static void map_clear(Map *m)
{
    if (m->cap)
        memset(m->entries, 0xff, m->cap * sizeof *m->entries);
    m->len = 0;
}

/* ------------------------------------------------------------------------------ */
/* State. */

/* A code object the hook decided about. */
typedef struct {
    int32_t cid; /* wire id, or -1: not traced */
    PyObject *arg_names; /* tuple of str (traced codes) */
    uint8_t *secret;     /* per argument: its name is a secret word */
    Py_ssize_t nargs;
    /* It takes exactly one argument, positional or keyword, and no *args or
     * **kwargs: the value of the CALL that starts it is that argument. */
    int one_arg;
    /* The offset of the RESUME that begins its body: a PY_THROW before it is the
     * first start of a generator or coroutine that had not run. */
    long start;
    /* A module's body (`<module>`): not counted in a thread's depth, which tells when
     * a worker's task returned (a spawned worker runs its tasks inside the `-c`
     * program's body, which never returns). */
    int module_body;
    /* A task loop of a worker process (the hook's `_TASK_LOOPS`): a call that returns
     * to it counts as the end of the thread's traced calls (Thread.base). */
    int task_loop;
} CodeInfo;

/* A call from traced code into code that is not traced, counted until the call that
 * made it ends or the batch is taken. */
typedef struct {
    uint32_t thread;
    uint32_t cid;
    uint32_t callee;
    uint32_t count;
    int64_t ts;
    int32_t line;
    int32_t next; /* the next gap of the same (thread, code), or -1 */
} Gap;

/* Callee cache values besides callee ids. */
#define CALLEE_TRACED_FUNCTION (-2) /* traced, and its start follows the call */
#define CALLEE_TRACED (-3)          /* traced (a class, a generator): no shortcut */

/* What the Python describer says of a type, asked once per type. */
typedef struct {
    char kind; /* its instances: 'o', 'F', 'C', 'W' described here; 0: by Python */
    PyObject *qualified; /* str: the type's name as printed (of a class: `<class '...'>`) */
    Py_ssize_t chars;    /* its length in characters */
} TypeKind;

/* One thread's state; zero-initialised per thread. */
typedef struct {
    uint64_t epoch; /* equals G.epoch once set up in this process */
    uint32_t index; /* the thread's wire id */
    /* The code a traced function call from traced code is about to start, and where
     * the call is: its start's caller line without walking frames. */
    PyObject *pending_code;
    int32_t pending_line;
    /* That call's first argument (a reference held), or NULL: the argument of a
     * function of one argument without materialising its frame object. */
    PyObject *pending_arg0;
    uint64_t gap_generation;
    uint32_t gaps_pending;
    /* Traced calls open on this thread (starts and resumes less ends): at `base` or
     * below in a worker process the top helper runs (`set_top_helper`); `base` is the
     * depth of a task loop running on the thread, else 0. */
    int32_t depth;
    int32_t base;
    /* max_calls: per open traced call, whether it was only counted. */
    uint8_t *limited;
    size_t limited_len;
    size_t limited_cap;
    Buf scratch; /* a value or the arguments being described */
} Thread;

/* initial-exec: every callback reads this, and the default model for a shared object
 * (general-dynamic) makes each read a call to __tls_get_addr (about 4% of the
 * instructions of a traced fib run). The module is loaded with dlopen, which places
 * it in glibc's static TLS surplus (hundreds of bytes; this is about 120): where
 * that is used up the load fails and the hook runs its pure-Python callbacks, and
 * the report says why. */
static __thread __attribute__((tls_model("initial-exec"))) Thread tls;
static pthread_key_t thread_key;

static struct {
    int configured;
    /* Events are stamped with the CPU's time-stamp counter (now_ticks), not the
     * monotonic clock. */
    int ticks;
    uint64_t epoch;
    int no_args;
    uint32_t max_calls;
    Py_ssize_t str_chars;
    PyObject *disable;
    PyObject *missing; /* sys.monitoring.MISSING: a CALL without arguments */
    /* Python helpers of the hook. */
    /* Run when a thread's traced calls have all ended, in a worker process only
     * (NULL elsewhere): it sends what is pending (`_top_returned`). */
    PyObject *top_helper;
    /* Runs at the next start of traced code, once (at_next_call). */
    PyObject *next_call_helper;
    PyObject *code_helper, *callee_helper, *line_helper, *thread_helper, *value_helper,
        *exception_helper;
    /* What runs before an exec (on_audit), or NULL; whether on_audit is an audit hook
     * of this process yet (one cannot be removed: one for every attach). */
    PyObject *exec_handler;
    int audit_hook_added;
    /* Types that tell callables apart. */
    PyTypeObject *function_type, *method_type, *builtin_type, *method_descriptor_type,
        *slot_wrapper_type, *classmethod_descriptor_type, *method_wrapper_type;
    /* Functions outside the stable ABI, when this interpreter exports them. */
    PyObject *(*frame_get_back)(PyFrameObject *);
    PyObject *(*frame_get_var)(PyFrameObject *, PyObject *);
    PyObject *(*function_get_code)(PyObject *);
    PyObject *(*method_function)(PyObject *);

    Buf out;
    uint64_t out_events;
    uint64_t dropped;
    size_t max_bytes;
    /* A batch's records, taken from `out` (swapped, not copied) before the hook
     * reads the code and thread records they name, framed after them. */
    Buf staged;

    Map codes; /* code object -> index into infos */
    CodeInfo *infos;
    size_t ninfos, cap_infos;
    Map callees; /* code object, callable, or type|1 -> callee id or CALLEE_* */
    PyObject **held; /* strong references to the callee keys */
    size_t nheld, cap_held;
    Map lines; /* cid << 32 | offset -> line */

    /* Values (configure_values): the cuts, the secret words for dict keys, and what
     * the Python describer says of each type met. */
    int values_configured;
    Py_ssize_t max_len, max_depth, max_items;
    Buf *secrets;
    size_t nsecrets;
    PyObject *kind_helper;
    Map type_kinds; /* type -> index into kinds */
    TypeKind *kinds;
    size_t nkinds, cap_kinds;

    Gap *gaps;
    size_t ngaps, cap_gaps;
    Map gap_by_key;  /* thread << 48 | cid << 24 | callee -> index into gaps */
    Map gap_by_call; /* thread << 32 | cid -> first gap of that (thread, code) */
    uint64_t gap_generation;
    /* Gaps pending per code id, over all threads: a start or an end of code that
     * has none (the common case) skips the lookup of its thread's gaps. */
    uint32_t *cid_gaps;
    size_t ncid_gaps;
    int32_t *order; /* scratch for flush_call_gaps */
    size_t cap_order;

    /* max_calls: calls per code in the current second, and calls not recorded. */
    uint64_t window;
    uint64_t window_stamp;
    uint64_t *count_stamp;
    uint32_t *counts;
    uint32_t *not_recorded;
    size_t ncounts;
    uint32_t *limited_codes;
    size_t nlimited, cap_limited;
} G;

#define MAX_GAPS (1u << 20)

/* The bytes for the tracer's socket not sent yet: whole messages in chunks, sent
 * in order, the first from `sent` on. Chunks are filled with the GIL held and sent
 * from with it released (the lock keeps a filler from moving the chunk array under
 * a sender); a chunk sent whole is kept for reuse, so that a backed-up socket costs
 * neither copies of what waits nor fresh pages. */
typedef struct {
    Buf *chunks;
    size_t n, cap;
    size_t sent;    /* bytes of chunks[0] sent */
    size_t pending; /* bytes not sent, over all chunks */
    Buf spare[4];   /* emptied chunks, for reuse */
    size_t nspare;
} SendQueue;

static SendQueue sendq;
static pthread_mutex_t sendq_lock = PTHREAD_MUTEX_INITIALIZER;

/* The flusher waits (wait()) until this much is recorded or its pause ends: a burst
 * of events is taken long before `out` is full, however long the pause. */
#define WAKE_BYTES (1u << 20)
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static int flusher_woken; /* set once per batch, under wake_lock */

static void wake_flusher(void)
{
    pthread_mutex_lock(&wake_lock);
    flusher_woken = 1;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

/* A new chunk of room for `n` bytes at the queue's end, or NULL (out of memory);
 * called with the lock held. */
static Buf *queue_chunk(size_t n)
{
    if (sendq.n == sendq.cap) {
        size_t cap = sendq.cap ? sendq.cap * 2 : 16;
        Buf *chunks = realloc(sendq.chunks, cap * sizeof *chunks);
        if (chunks == NULL)
            return NULL;
        sendq.chunks = chunks;
        sendq.cap = cap;
    }
    Buf chunk = {NULL, 0, 0};
    if (sendq.nspare > 0)
        chunk = sendq.spare[--sendq.nspare];
    chunk.len = 0;
    if (buf_reserve(&chunk, n) < 0) {
        free(chunk.data);
        return NULL;
    }
    sendq.chunks[sendq.n] = chunk;
    return &sendq.chunks[sendq.n++];
}

/* Takes the first chunk off the queue (sent whole or forgotten); lock held. */
static void queue_pop(void)
{
    Buf chunk = sendq.chunks[0];
    memmove(sendq.chunks, sendq.chunks + 1, (sendq.n - 1) * sizeof *sendq.chunks);
    sendq.n--;
    sendq.sent = 0;
    if (sendq.nspare < sizeof sendq.spare / sizeof *sendq.spare) {
        chunk.len = 0;
        sendq.spare[sendq.nspare++] = chunk;
    } else {
        free(chunk.data);
    }
}

/* Forgets everything queued; lock held. */
static void queue_clear(void)
{
    while (sendq.n > 0)
        queue_pop();
    sendq.pending = 0;
}

static PyObject *new_ref(PyObject *o)
{
    Py_IncRef(o);
    return o;
}

static PyObject *none(void)
{
    return new_ref(Py_None);
}

/* CLOCK_MONOTONIC in nanoseconds: `time.perf_counter_ns()`. */
static inline int64_t monotonic_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* An event's time stamp: the time-stamp counter when `G.ticks`, else monotonic_ns.
 * The vDSO's clock_gettime reads the same counter but orders the read (a fence)
 * and scales it, about 35 ns here against 13 for a bare rdtsc, and its fence stalls
 * the interpreter's pipeline besides: on recursive fib the callbacks spent 8% of the
 * process's time in it. The tracer turns ticks into nanoseconds between the anchors
 * (read_anchor) sent with every batch. */
static inline int64_t now_ticks(void)
{
#if defined(__x86_64__)
    if (G.ticks)
        return (int64_t)__rdtsc();
#endif
    return monotonic_ns();
}

/* A reading of both clocks at one moment: the ticks halfway between two reads
 * around the monotonic one. */
static void read_anchor(int64_t *ticks, int64_t *ns)
{
    int64_t before = now_ticks();
    *ns = monotonic_ns();
    int64_t after = now_ticks();
    *ticks = before + (after - before) / 2;
}

/* Whether events can be stamped with the time-stamp counter: on x86-64, when the
 * kernel keeps time by it (its clocksource is `tsc`), which it does only once it
 * found the counter constant in rate, running in every power state and in step
 * across CPUs; a counter it distrusts (kvm-clock, hpet) leaves events on
 * CLOCK_MONOTONIC. */
static int ticks_usable(void)
{
#if defined(__x86_64__)
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL)
        return 0;
    char name[32] = {0};
    int usable = fgets(name, sizeof name, f) != NULL && strcmp(name, "tsc\n") == 0;
    fclose(f);
    return usable;
#else
    return 0;
#endif
}

static void thread_exit(void *value)
{
    Thread *t = value;
    free(t->limited);
    free(t->scratch.data);
    t->limited = NULL;
    t->scratch.data = NULL;
}

/* Forgets the call a start was expected for. Its argument is normally held by the
 * frame of the call by now as well, so no object is freed here but for a call that
 * failed before its start; that is at the start of a callback, before it writes. */
static void clear_pending(Thread *t)
{
    PyObject *arg0 = t->pending_arg0;
    t->pending_code = NULL;
    t->pending_arg0 = NULL;
    Py_DecRef(arg0);
}

/* This thread's state, set up (its wire id asked of Python) on its first event. */
static Thread *thread_get(void)
{
    Thread *t = &tls;
    if (t->epoch == G.epoch)
        return t;
    PyObject *r = PyObject_CallFunctionObjArgs(G.thread_helper, NULL);
    if (r == NULL) {
        PyErr_Clear();
        return NULL;
    }
    long index = PyLong_AsLong(r);
    Py_DecRef(r);
    if (index < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (t->epoch == 0)
        pthread_setspecific(thread_key, t);
    t->epoch = G.epoch;
    t->index = (uint32_t)index;
    clear_pending(t);
    t->gap_generation = 0;
    t->gaps_pending = 0;
    t->limited_len = 0;
    t->depth = 0;
    t->base = 0;
    return t;
}

/* ------------------------------------------------------------------------------ */
/* Decisions cached from Python. */

/* The index of `code`'s CodeInfo; -1 when unknown and `learn` is 0, -2 on error. */
static int64_t code_index(PyObject *code, int learn)
{
    int64_t index;
    if (map_get(&G.codes, (uint64_t)(uintptr_t)code, &index))
        return index;
    if (!learn)
        return -1;
    PyObject *r = PyObject_CallFunctionObjArgs(G.code_helper, code, NULL);
    if (r == NULL)
        return -2;
    /* Another thread may have learnt it meanwhile. */
    if (map_get(&G.codes, (uint64_t)(uintptr_t)code, &index)) {
        Py_DecRef(r);
        return index;
    }
    CodeInfo info = {-1, NULL, NULL, 0, 0, 0, 0, 0};
    if (Py_TYPE(r) != &PyLong_Type) {
        PyObject *cid = PyTuple_GetItem(r, 0);
        PyObject *names = PyTuple_GetItem(r, 1);
        PyObject *secret = PyTuple_GetItem(r, 2);
        PyObject *one_arg = PyTuple_GetItem(r, 3);
        PyObject *start = PyTuple_GetItem(r, 4);
        PyObject *task_loop = PyTuple_GetItem(r, 5);
        char *flags;
        Py_ssize_t nflags;
        if (cid == NULL || names == NULL || secret == NULL || one_arg == NULL ||
            start == NULL || task_loop == NULL ||
            PyBytes_AsStringAndSize(secret, &flags, &nflags) < 0) {
            Py_DecRef(r);
            return -2;
        }
        info.cid = (int32_t)PyLong_AsLong(cid);
        info.nargs = PyTuple_Size(names);
        info.one_arg = PyLong_AsLong(one_arg) == 1 && info.nargs == 1;
        info.start = PyLong_AsLong(start);
        info.task_loop = PyLong_AsLong(task_loop) == 1;
        if (info.nargs != nflags || info.cid < 0 || PyErr_Occurred()) {
            Py_DecRef(r);
            PyErr_SetString(PyExc_RuntimeError, "malformed code decision");
            return -2;
        }
        info.secret = malloc(nflags ? (size_t)nflags : 1);
        if (info.secret == NULL) {
            Py_DecRef(r);
            return -2;
        }
        memcpy(info.secret, flags, (size_t)nflags);
        info.arg_names = new_ref(names);
        PyObject *name = PyObject_GetAttrString(code, "co_name");
        const char *text = name != NULL ? PyUnicode_AsUTF8AndSize(name, NULL) : NULL;
        info.module_body = text != NULL && strcmp(text, "<module>") == 0;
        Py_DecRef(name);
        PyErr_Clear();
    }
    Py_DecRef(r);
    if (G.ninfos == G.cap_infos) {
        size_t cap = G.cap_infos ? G.cap_infos * 2 : 256;
        CodeInfo *infos = realloc(G.infos, cap * sizeof *infos);
        if (infos == NULL)
            return -2;
        G.infos = infos;
        G.cap_infos = cap;
    }
    index = (int64_t)G.ninfos;
    if (map_put(&G.codes, (uint64_t)(uintptr_t)code, index) < 0)
        return -2;
    G.infos[G.ninfos++] = info;
    Py_IncRef(code); /* the key's address stays this code's */
    return index;
}

/* The line of `offset` in traced code `cid`. */
static int32_t line_of(uint32_t cid, PyObject *code, PyObject *offset)
{
    long off = PyLong_AsLong(offset);
    if (off < 0) {
        PyErr_Clear();
        return -1;
    }
    uint64_t key = (uint64_t)cid << 32 | (uint32_t)off;
    int64_t line;
    if (map_get(&G.lines, key, &line))
        return (int32_t)line;
    PyObject *cid_obj = PyLong_FromLong((long)cid);
    if (cid_obj == NULL) {
        PyErr_Clear();
        return -1;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(G.line_helper, code, cid_obj, offset, NULL);
    Py_DecRef(cid_obj);
    if (r == NULL) {
        PyErr_Clear();
        return -1;
    }
    line = PyLong_AsLong(r);
    Py_DecRef(r);
    if (line == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    map_put(&G.lines, key, line);
    return (int32_t)line;
}

/* Keeps `o` alive so that its address keeps naming it. */
static int hold(PyObject *o)
{
    if (G.nheld == G.cap_held) {
        size_t cap = G.cap_held ? G.cap_held * 2 : 256;
        PyObject **held = realloc(G.held, cap * sizeof *held);
        if (held == NULL)
            return -1;
        G.held = held;
        G.cap_held = cap;
    }
    G.held[G.nheld++] = new_ref(o);
    return 0;
}

/* What a call from traced code calls: a callee id (a gap), CALLEE_TRACED_FUNCTION
 * (then *code is its code object), CALLEE_TRACED, or -4 on error. The decision is
 * Python's, cached under what it depends on: the code of a function, a builtin of a
 * module, a descriptor or class itself, or the type of a callable instance. */
static int64_t callee_of(PyObject *callable, PyObject **code)
{
    PyTypeObject *tp = Py_TYPE(callable);
    PyObject *function = callable;
    PyObject *key = NULL;
    uint64_t tag = 0;
    *code = NULL;
    if (tp == G.method_type && G.method_function != NULL) {
        function = G.method_function(callable);
        tp = function ? Py_TYPE(function) : NULL;
    }
    if (tp == G.function_type && G.function_get_code != NULL) {
        key = G.function_get_code(function);
        *code = key;
    } else if (function != callable || tp == G.method_wrapper_type) {
        key = NULL; /* named by what it is bound to: decided each time */
    } else if (tp == G.builtin_type) {
        PyObject *self = PyCFunction_GetSelf(callable);
        if (self == NULL || PyType_IsSubtype(Py_TYPE(self), &PyModule_Type))
            key = callable;
    } else if (tp == G.method_descriptor_type || tp == G.slot_wrapper_type ||
               tp == G.classmethod_descriptor_type ||
               (PyType_GetFlags(tp) & Py_TPFLAGS_TYPE_SUBCLASS)) {
        key = callable;
    } else {
        key = (PyObject *)tp; /* a callable instance: named by its type */
        tag = 1;
    }
    uint64_t cache_key = (uint64_t)(uintptr_t)key | tag;
    int64_t decided;
    if (key != NULL && map_get(&G.callees, cache_key, &decided))
        return decided;
    PyObject *r = PyObject_CallFunctionObjArgs(G.callee_helper, callable, NULL);
    if (r == NULL)
        return -4;
    decided = PyLong_AsLong(r);
    Py_DecRef(r);
    if (decided == -1 && PyErr_Occurred())
        return -4;
    int64_t known;
    if (key != NULL && !map_get(&G.callees, cache_key, &known) && hold(key) == 0)
        map_put(&G.callees, cache_key, decided);
    return decided;
}

/* ------------------------------------------------------------------------------ */
/* Output. */

/* Room for a record of `n` bytes, or NULL: the buffer is full and the event is
 * dropped (counted). */
static uint8_t *reserve_event(size_t n)
{
    if (G.out.len + n > G.max_bytes || buf_reserve(&G.out, n) < 0) {
        G.dropped++;
        return NULL;
    }
    G.out_events++;
    if (G.out.len >= WAKE_BYTES && !flusher_woken)
        wake_flusher();
    return G.out.data + G.out.len;
}

static inline uint8_t *put_head(uint8_t *p, uint8_t tag, uint32_t cid, uint32_t thread,
                                int64_t ts, int32_t line)
{
    PUT(p, uint8_t, tag);
    PUT(p, uint32_t, cid);
    PUT(p, uint32_t, thread);
    PUT(p, int64_t, ts);
    PUT(p, int32_t, line);
    return p;
}

#define HEAD_SIZE 21
#define GAP_SIZE (HEAD_SIZE + 8)
/* u8 'A', i64 ticks, i64 monotonic ns */
#define ANCHOR_SIZE 17

static void write_gap(const Gap *g)
{
    uint8_t *p = reserve_event(GAP_SIZE);
    if (p == NULL)
        return;
    p = put_head(p, 'g', g->cid, g->thread, g->ts, g->line);
    PUT(p, uint32_t, g->callee);
    PUT(p, uint32_t, g->count);
    G.out.len += GAP_SIZE;
}

/* Gaps of (this thread, cid) go out before the record that ends a call of cid, and
 * before one that starts or resumes another call of cid (recursion): the tracer gives
 * a gap to the innermost open call of its code on its thread, which is then the call
 * that made it. */
static void flush_call_gaps(Thread *t, uint32_t cid)
{
    if (t->gap_generation != G.gap_generation || t->gaps_pending == 0 ||
        cid >= G.ncid_gaps || G.cid_gaps[cid] == 0)
        return;
    uint64_t key = (uint64_t)t->index << 32 | cid;
    int64_t first;
    if (!map_get(&G.gap_by_call, key, &first) || first < 0)
        return;
    map_put(&G.gap_by_call, key, -1);
    /* The list runs newest first; the rows go out in the order of the first calls. */
    size_t n = 0;
    for (int64_t i = first; i >= 0; i = G.gaps[i].next) {
        if (n == G.cap_order) {
            size_t cap = G.cap_order ? G.cap_order * 2 : 64;
            int32_t *order = realloc(G.order, cap * sizeof *order);
            if (order == NULL)
                break;
            G.order = order;
            G.cap_order = cap;
        }
        G.order[n++] = (int32_t)i;
    }
    while (n > 0) {
        Gap *g = &G.gaps[G.order[--n]];
        if (g->count == 0)
            continue;
        write_gap(g);
        g->count = 0;
        t->gaps_pending--;
        G.cid_gaps[cid]--;
    }
}

/* A call from traced code `cid` (`code`, at `offset`) into `callee`: counted into
 * the gap of (thread, cid, callee) when there is one; its time and line are those of
 * the first call, so only a new gap reads the clock and looks up the line. */
static void add_gap(Thread *t, uint32_t cid, uint32_t callee, PyObject *code,
                    PyObject *offset)
{
    int aggregated = t->index < 0xffff && cid < (1u << 24) && callee < (1u << 24);
    uint64_t key = (uint64_t)t->index << 48 | (uint64_t)cid << 24 | callee;
    int64_t i;
    if (aggregated && map_get(&G.gap_by_key, key, &i) && G.gaps[i].count > 0 &&
        G.gaps[i].count < UINT32_MAX) {
        G.gaps[i].count++;
        return;
    }
    int64_t ts = now_ticks();
    int32_t line = line_of(cid, code, offset); /* may run Python: look again after */
    if (t->gap_generation != G.gap_generation) {
        t->gap_generation = G.gap_generation;
        t->gaps_pending = 0;
    }
    Gap gap = {t->index, cid, callee, 1, ts, line, -1};
    if (!aggregated || G.ngaps >= MAX_GAPS) {
        write_gap(&gap); /* a row of its own */
        return;
    }
    if (map_get(&G.gap_by_key, key, &i) && G.gaps[i].count > 0 &&
        G.gaps[i].count < UINT32_MAX) {
        G.gaps[i].count++;
        return;
    }
    if (G.ngaps == G.cap_gaps) {
        size_t cap = G.cap_gaps ? G.cap_gaps * 2 : 256;
        Gap *gaps = realloc(G.gaps, cap * sizeof *gaps);
        if (gaps == NULL) {
            write_gap(&gap);
            return;
        }
        G.gaps = gaps;
        G.cap_gaps = cap;
    }
    if (cid >= G.ncid_gaps) {
        size_t cap = G.ncid_gaps ? G.ncid_gaps * 2 : 256;
        while (cap <= cid)
            cap *= 2;
        uint32_t *counts = realloc(G.cid_gaps, cap * sizeof *counts);
        if (counts == NULL) {
            write_gap(&gap);
            return;
        }
        memset(counts + G.ncid_gaps, 0, (cap - G.ncid_gaps) * sizeof *counts);
        G.cid_gaps = counts;
        G.ncid_gaps = cap;
    }
    uint64_t call = (uint64_t)t->index << 32 | cid;
    int64_t first;
    if (map_get(&G.gap_by_call, call, &first))
        gap.next = (int32_t)first;
    i = (int64_t)G.ngaps;
    if (map_put(&G.gap_by_key, key, i) < 0 || map_put(&G.gap_by_call, call, i) < 0) {
        write_gap(&gap);
        return;
    }
    G.gaps[G.ngaps++] = gap;
    t->gaps_pending++;
    G.cid_gaps[cid]++;
}

/* ------------------------------------------------------------------------------ */
/* Values. */

static int put_utf8(Buf *b, PyObject *s)
{
    Py_ssize_t n;
    const char *data = PyUnicode_AsUTF8AndSize(s, &n);
    if (data != NULL) {
        if (buf_reserve(b, 4 + (size_t)n) < 0)
            return -1;
        uint8_t *p = b->data + b->len;
        PUT(p, uint32_t, n);
        memcpy(p, data, (size_t)n);
        b->len += 4 + (size_t)n;
        return 0;
    }
    PyErr_Clear(); /* lone surrogates: written as Python's surrogatepass does */
    PyObject *bytes = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    char *raw;
    if (bytes == NULL || PyBytes_AsStringAndSize(bytes, &raw, &n) < 0 ||
        buf_reserve(b, 4 + (size_t)n) < 0) {
        Py_DecRef(bytes);
        return -1;
    }
    uint8_t *p = b->data + b->len;
    PUT(p, uint32_t, n);
    memcpy(p, raw, (size_t)n);
    b->len += 4 + (size_t)n;
    Py_DecRef(bytes);
    return 0;
}

/* Value description in C (wire.rs, Values): the same bytes as the Python describer's
 * _value/_enc for the values it can describe without running Python code: exact
 * int (64-bit), str, bytes, float, bool and None, exact list, tuple and dict of
 * those (with the depth, item and length cuts, cycle placeholders and secret dict
 * keys), functions, classes, and instances whose type the Python describer calls
 * plain objects (`<T object at 0x...>`, the type's name asked of Python once).
 * Anything else (subclasses of the builtins, sets, named tuples, big ints) makes
 * the whole value go through the Python describer, so each value is described by
 * one of them alone and the rules stay the same. */

/* Objects/genobject.c (3.12, 3.13): an async generator's yielded value as its frame
 * hands it out. */
typedef struct {
    PyObject ob_base;
    PyObject *value;
} AsyncGenWrappedValue;

#define ENC_OK 0
#define ENC_CUT 1     /* the length cut was reached: nothing more of the value */
#define ENC_PYTHON 2  /* a part only Python describes: the whole value goes there */
#define ENC_ERROR (-1)

/* The describer's running state: `printed` is a lower bound of the printed length
 * so far (the Python describer's st[0]); `active` the containers being described,
 * outermost first, for cycles. */
typedef struct {
    Py_ssize_t printed;
    PyObject *active[64];
    int nactive;
} ValueState;

/* The Python describer's entry for type `tp`, or NULL (an error, or not cacheable). */
static const TypeKind *type_kind(PyTypeObject *tp)
{
    int64_t index;
    if (map_get(&G.type_kinds, (uint64_t)(uintptr_t)tp, &index))
        return &G.kinds[index];
    if (G.kind_helper == NULL)
        return NULL;
    PyObject *entry = PyObject_CallFunctionObjArgs(G.kind_helper, (PyObject *)tp, NULL);
    if (entry == NULL)
        return NULL;
    /* Python ran: another thread may have asked meanwhile. */
    if (map_get(&G.type_kinds, (uint64_t)(uintptr_t)tp, &index)) {
        Py_DecRef(entry);
        return &G.kinds[index];
    }
    PyObject *kind = PyTuple_GetItem(entry, 1);
    PyObject *qualified = PyTuple_GetItem(entry, 3);
    Py_ssize_t n;
    const char *k = kind ? PyUnicode_AsUTF8AndSize(kind, &n) : NULL;
    if (k == NULL || qualified == NULL || Py_TYPE(qualified) != &PyUnicode_Type) {
        Py_DecRef(entry);
        return NULL;
    }
    TypeKind tk = {0, new_ref(qualified), PyUnicode_GetLength(qualified)};
    if (n == 1 && (k[0] == 'o' || k[0] == 'F' || k[0] == 'C' || k[0] == 'W'))
        tk.kind = k[0];
    Py_DecRef(entry);
    if (G.nkinds == G.cap_kinds) {
        size_t cap = G.cap_kinds ? G.cap_kinds * 2 : 64;
        TypeKind *kinds = realloc(G.kinds, cap * sizeof *kinds);
        if (kinds == NULL) {
            Py_DecRef(tk.qualified);
            return NULL;
        }
        G.kinds = kinds;
        G.cap_kinds = cap;
    }
    /* Held, so that the address keeps naming this type. */
    if (hold((PyObject *)tp) < 0 ||
        map_put(&G.type_kinds, (uint64_t)(uintptr_t)tp, (int64_t)G.nkinds) < 0) {
        Py_DecRef(tk.qualified);
        return NULL;
    }
    G.kinds[G.nkinds] = tk;
    return &G.kinds[G.nkinds++];
}

/* Appends a length-prefixed str (its UTF-8, as put_utf8), counting no length. */
static int enc_text(Buf *b, uint8_t tag, PyObject *s)
{
    if (buf_reserve(b, 1) < 0)
        return ENC_ERROR;
    b->data[b->len++] = tag;
    return put_utf8(b, s) < 0 ? ENC_ERROR : ENC_OK;
}

static int enc_address(Buf *b, PyObject *v)
{
    if (buf_reserve(b, 8) < 0)
        return ENC_ERROR;
    uint8_t *p = b->data + b->len;
    PUT(p, int64_t, (intptr_t)v);
    b->len += 8;
    return ENC_OK;
}

static int enc_u32s(Buf *b, uint8_t tag, size_t total, size_t shown)
{
    if (buf_reserve(b, 9) < 0)
        return ENC_ERROR;
    uint8_t *p = b->data + b->len;
    PUT(p, uint8_t, tag);
    PUT(p, uint32_t, total);
    PUT(p, uint32_t, shown);
    b->len += 9;
    return ENC_OK;
}

/* The first str_chars characters of str `s` (a new reference; NULL on error): what
 * the describer sends of a string, as _enc_str and _key_text cut it. */
static PyObject *str_prefix(PyObject *s)
{
    return PyUnicode_GetLength(s) <= G.str_chars ? new_ref(s)
                                                 : PyUnicode_Substring(s, 0, G.str_chars);
}

/* Whether dict key `key` (an exact str) holds a secret word, as the Python
 * describer's _is_secret(_key_text(key)): its first str_chars characters as UTF-8,
 * ASCII letters lowered. -1: only Python can tell (lone surrogates). */
static int key_is_secret(PyObject *key)
{
    if (G.nsecrets == 0)
        return 0;
    PyObject *s = str_prefix(key);
    Py_ssize_t n;
    const char *text = s ? PyUnicode_AsUTF8AndSize(s, &n) : NULL;
    if (text == NULL) {
        Py_DecRef(s);
        PyErr_Clear();
        return -1;
    }
    char small[256];
    char *lower = (size_t)n <= sizeof small ? small : malloc((size_t)n);
    if (lower == NULL) {
        Py_DecRef(s);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = text[i];
        lower[i] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
    }
    Py_DecRef(s);
    int secret = 0;
    for (size_t w = 0; w < G.nsecrets && !secret; w++)
        secret = memmem(lower, (size_t)n, G.secrets[w].data, G.secrets[w].len) != NULL;
    if (lower != small)
        free(lower);
    return secret;
}

static int enc_value(Buf *b, PyObject *v, int depth, ValueState *st);

/* A list, tuple or dict (exact types), as the Python describer's _enc_container. */
static int enc_container(Buf *b, PyObject *v, int depth, ValueState *st)
{
    PyTypeObject *tp = Py_TYPE(v);
    int is_dict = tp == &PyDict_Type;
    int in_cycle = 0;
    for (int i = 0; i < st->nactive; i++)
        in_cycle |= st->active[i] == v;
    if (depth >= G.max_depth || in_cycle) {
        const char *text = tp == &PyList_Type ? "[...]" : is_dict ? "{...}" : "(...)";
        if (buf_reserve(b, 10) < 0)
            return ENC_ERROR;
        uint8_t *p = b->data + b->len;
        PUT(p, uint8_t, 'p');
        PUT(p, uint32_t, 5);
        memcpy(p, text, 5);
        b->len += 10;
        st->printed += 5;
        return ENC_OK;
    }
    if (st->nactive == (int)(sizeof st->active / sizeof st->active[0]))
        return ENC_PYTHON;
    st->active[st->nactive++] = v;
    st->printed += 2;
    int status = ENC_OK;
    if (is_dict) {
        Py_ssize_t total = PyDict_Size(v);
        /* The first items, held: describing one may run Python (a type's name). */
        PyObject *pairs = PyList_New(0);
        if (pairs == NULL)
            return ENC_ERROR;
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        /* As the Python describer: a pair is taken, then the count is looked at. */
        while (total > 0 && PyDict_Next(v, &pos, &key, &value)) {
            if (PyList_Append(pairs, key) < 0 || PyList_Append(pairs, value) < 0) {
                Py_DecRef(pairs);
                return ENC_ERROR;
            }
            if (PyList_Size(pairs) / 2 >= G.max_items)
                break;
        }
        Py_ssize_t shown = PyList_Size(pairs) / 2;
        status = enc_u32s(b, 'd', (size_t)total, (size_t)shown);
        for (Py_ssize_t i = 0; i < shown && status == ENC_OK; i++) {
            if (i)
                st->printed += 2;
            key = PyList_GetItem(pairs, 2 * i);
            status = enc_value(b, key, depth + 1, st);
            if (status != ENC_OK)
                break;
            st->printed += 2;
            int secret = 0;
            if (PyUnicode_Check(key)) {
                secret = key_is_secret(key);
                if (secret < 0) {
                    status = ENC_PYTHON;
                    break;
                }
            }
            if (secret) {
                if (buf_reserve(b, 1) < 0) {
                    status = ENC_ERROR;
                    break;
                }
                b->data[b->len++] = 'R';
                st->printed += 10;
            } else {
                status = enc_value(b, PyList_GetItem(pairs, 2 * i + 1), depth + 1, st);
            }
        }
        Py_DecRef(pairs);
    } else {
        int is_list = tp == &PyList_Type;
        Py_ssize_t total = is_list ? PyList_Size(v) : PyTuple_Size(v);
        Py_ssize_t shown = total < G.max_items ? total : G.max_items;
        /* A list's first items, held (a tuple holds its own). */
        PyObject *items = is_list ? PyList_GetSlice(v, 0, shown) : new_ref(v);
        if (items == NULL)
            return ENC_ERROR;
        status = enc_u32s(b, is_list ? 'l' : 't', (size_t)total, (size_t)shown);
        for (Py_ssize_t i = 0; i < shown && status == ENC_OK; i++) {
            if (i)
                st->printed += 2;
            PyObject *item = is_list ? PyList_GetItem(items, i) : PyTuple_GetItem(items, i);
            status = item ? enc_value(b, item, depth + 1, st) : ENC_ERROR;
        }
        Py_DecRef(items);
    }
    st->nactive--;
    return status;
}

/* One value, as the Python describer's _enc. */
static int enc_value(Buf *b, PyObject *v, int depth, ValueState *st)
{
    if (buf_reserve(b, 16) < 0)
        return ENC_ERROR;
    if (st->printed > G.max_len) {
        b->data[b->len++] = '.';
        return ENC_CUT;
    }
    PyTypeObject *tp = Py_TYPE(v);
    uint8_t *p = b->data + b->len;
    if (tp == &PyLong_Type) {
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (n == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return ENC_PYTHON;
        }
        PUT(p, uint8_t, 'i');
        PUT(p, int64_t, n);
        b->len += 9;
        st->printed += 1;
    } else if (tp == &PyUnicode_Type) {
        Py_ssize_t n = PyUnicode_GetLength(v);
        PyObject *s = str_prefix(v);
        if (s == NULL)
            return ENC_ERROR;
        int status = enc_text(b, 's', s);
        Py_DecRef(s);
        if (status != ENC_OK)
            return status;
        n = n <= G.str_chars ? n : G.str_chars;
        st->printed += n + 2 < 10 ? n + 2 : 10;
    } else if (v == Py_None || v == Py_True || v == Py_False) {
        b->data[b->len++] = v == Py_None ? 'N' : v == Py_True ? 'T' : 'F';
        st->printed += 4;
    } else if (tp == &PyFloat_Type) {
        PUT(p, uint8_t, 'f');
        PUT(p, double, PyFloat_AsDouble(v));
        b->len += 9;
        st->printed += 3;
    } else if (tp == &PyBytes_Type) {
        char *data;
        Py_ssize_t n;
        if (PyBytes_AsStringAndSize(v, &data, &n) < 0)
            return ENC_ERROR;
        if (n > G.str_chars)
            n = G.str_chars;
        if (buf_reserve(b, 5 + (size_t)n) < 0)
            return ENC_ERROR;
        p = b->data + b->len;
        PUT(p, uint8_t, 'b');
        PUT(p, uint32_t, n);
        memcpy(p, data, (size_t)n);
        b->len += 5 + (size_t)n;
        st->printed += n + 3 < 10 ? n + 3 : 10;
    } else if (tp == &PyList_Type || tp == &PyTuple_Type || tp == &PyDict_Type) {
        return enc_container(b, v, depth, st);
    } else {
        const TypeKind *k = type_kind(tp);
        if (k == NULL || k->kind == 0) {
            PyErr_Clear();
            return ENC_PYTHON;
        }
        if (k->kind == 'o') {
            Py_ssize_t chars = k->chars;
            int status = enc_text(b, 'o', k->qualified);
            if (status == ENC_OK)
                status = enc_address(b, v);
            st->printed += chars + 16;
            return status;
        }
        if (k->kind == 'W') {
            /* What an async generator yields reaches PY_YIELD wrapped (so that its
             * asend() tells it from an await's): the value is the wrapper's. */
            PyObject *inner = ((AsyncGenWrappedValue *)v)->value;
            if (inner == NULL)
                return ENC_PYTHON;
            Py_IncRef(inner);
            int status = enc_value(b, inner, depth, st);
            Py_DecRef(inner);
            return status;
        }
        if (k->kind == 'C') {
            const TypeKind *self = type_kind((PyTypeObject *)v);
            if (self == NULL) {
                PyErr_Clear();
                return ENC_PYTHON;
            }
            Py_ssize_t chars = self->chars;
            int status = enc_text(b, 'C', self->qualified);
            st->printed += chars + 10;
            return status;
        }
        /* 'F': a function, by its __qualname__ (a str the function object keeps). */
        PyObject *qualname = PyObject_GetAttrString(v, "__qualname__");
        if (qualname == NULL || Py_TYPE(qualname) != &PyUnicode_Type) {
            Py_DecRef(qualname);
            PyErr_Clear();
            return ENC_PYTHON;
        }
        Py_ssize_t chars = PyUnicode_GetLength(qualname);
        int status = enc_text(b, 'P', qualname);
        Py_DecRef(qualname);
        if (status == ENC_OK)
            status = enc_address(b, v);
        st->printed += chars + 18;
        return status;
    }
    return ENC_OK;
}

/* Appends the description of `v` to `b` (wire.rs, Values). */
static int put_value(Buf *b, PyObject *v)
{
    size_t start = b->len;
    PyTypeObject *tp = Py_TYPE(v);
    int native = G.values_configured || tp == &PyLong_Type || tp == &PyUnicode_Type ||
                 tp == &PyFloat_Type || v == Py_None || v == Py_True || v == Py_False;
    if (native) {
        ValueState st;
        st.printed = 0;
        st.nactive = 0;
        int status = enc_value(b, v, 0, &st);
        if (status == ENC_OK || status == ENC_CUT)
            return 0;
        b->len = start;
        PyErr_Clear();
    }
    PyObject *r = PyObject_CallFunctionObjArgs(G.value_helper, v, NULL);
    char *raw;
    Py_ssize_t n;
    if (r == NULL || PyBytes_AsStringAndSize(r, &raw, &n) < 0 ||
        buf_reserve(b, (size_t)n) < 0) {
        Py_DecRef(r);
        return -1;
    }
    memcpy(b->data + b->len, raw, (size_t)n);
    b->len += (size_t)n;
    Py_DecRef(r);
    return 0;
}

/* Appends argument `i` of code `index`, value `v`, to `b`: its index, then its
 * value (redacted when its name is a secret word, the describer's placeholder when
 * describing it failed). */
static int put_arg(Buf *b, int64_t index, Py_ssize_t i, PyObject *v)
{
    if (buf_reserve(b, 3) < 0)
        return -1;
    uint8_t *p = b->data + b->len;
    PUT(p, uint16_t, i);
    b->len += 2;
    if (G.infos[index].secret[i]) {
        b->data[b->len++] = 'R';
    } else if (put_value(b, v) < 0) {
        PyErr_Clear();
        if (buf_reserve(b, 16) == 0) {
            uint8_t *q = b->data + b->len;
            PUT(q, uint8_t, 'X');
            PUT(q, uint32_t, 9);
            memcpy(q, "Exception", 9);
            b->len += 14;
        }
    }
    return 0;
}

/* The arguments of the call that just started into t->scratch: `u16` count, then
 * (`u16` index, value) pairs. `arg0`, when not NULL, is the value of the only
 * argument (from the CALL that led here); else they are read from the innermost
 * frame. */
static int describe_args(Thread *t, int64_t index, PyObject *arg0)
{
    Buf *b = &t->scratch;
    b->len = 0;
    if (buf_reserve(b, 2) < 0)
        return -1;
    b->len = 2;
    PyObject *names = G.infos[index].arg_names;
    Py_ssize_t nargs = G.infos[index].nargs;
    if (nargs == 0) {
        memset(b->data, 0, 2);
        return 0;
    }
    if (arg0 != NULL && G.infos[index].one_arg) {
        uint16_t one = 1;
        int status = put_arg(b, index, 0, arg0);
        memcpy(b->data, &one, 2);
        return status;
    }
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)
        return -1;
    Py_IncRef((PyObject *)frame);
    PyObject *locals = NULL;
    if (G.frame_get_var == NULL)
        locals = PyObject_GetAttrString((PyObject *)frame, "f_locals");
    Py_IncRef(names); /* the table may grow while Python runs */
    uint16_t count = 0;
    int status = 0;
    for (Py_ssize_t i = 0; i < nargs && i < 0xffff; i++) {
        PyObject *name = PyTuple_GetItem(names, i);
        PyObject *v = NULL;
        if (name != NULL)
            v = G.frame_get_var ? G.frame_get_var(frame, name)
                                : locals ? PyObject_GetItem(locals, name) : NULL;
        if (v == NULL) {
            PyErr_Clear(); /* deleted or never bound: left out */
            continue;
        }
        status = put_arg(b, index, i, v);
        Py_DecRef(v);
        if (status < 0)
            break;
        count++;
    }
    Py_DecRef(names);
    Py_DecRef(locals);
    Py_DecRef((PyObject *)frame);
    memcpy(b->data, &count, 2);
    return status;
}

/* The line in the innermost traced frame below the one that just started, found by
 * walking frames (when the CALL that led here did not say). */
static int32_t caller_line_by_frames(void)
{
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL)
        return -1;
    Py_IncRef((PyObject *)frame);
    int32_t line = -1;
    for (;;) {
        PyObject *back = G.frame_get_back
                             ? G.frame_get_back(frame)
                             : PyObject_GetAttrString((PyObject *)frame, "f_back");
        Py_DecRef((PyObject *)frame);
        if (back == NULL || back == Py_None) {
            Py_DecRef(back);
            PyErr_Clear();
            break;
        }
        frame = (PyFrameObject *)back;
        PyObject *code = PyFrame_GetCode(frame);
        int64_t index;
        int traced = code != NULL && map_get(&G.codes, (uint64_t)(uintptr_t)code, &index) &&
                     G.infos[index].cid >= 0;
        Py_DecRef(code);
        if (traced) {
            line = PyFrame_GetLineNumber(frame);
            Py_DecRef((PyObject *)frame);
            break;
        }
    }
    return line;
}

/* ------------------------------------------------------------------------------ */
/* max_calls. */

static int grow_counts(uint32_t cid)
{
    if (cid < G.ncounts)
        return 0;
    size_t n = G.ncounts ? G.ncounts : 256;
    while (n <= cid)
        n *= 2;
    uint64_t *stamps = realloc(G.count_stamp, n * sizeof *stamps);
    if (stamps == NULL)
        return -1;
    G.count_stamp = stamps;
    uint32_t *counts = realloc(G.counts, n * sizeof *counts);
    if (counts == NULL)
        return -1;
    G.counts = counts;
    uint32_t *not_recorded = realloc(G.not_recorded, n * sizeof *not_recorded);
    if (not_recorded == NULL)
        return -1;
    G.not_recorded = not_recorded;
    for (size_t i = G.ncounts; i < n; i++) {
        stamps[i] = 0;
        counts[i] = 0;
        not_recorded[i] = 0;
    }
    G.ncounts = n;
    return 0;
}

/* Whether this call of cid is beyond max_calls in this second (then only counted). */
static int over_limit(uint32_t cid, int64_t ts)
{
    uint64_t window = (uint64_t)(G.ticks ? monotonic_ns() : ts) / 1000000000ULL;
    if (window != G.window) {
        G.window = window;
        G.window_stamp++;
    }
    if (grow_counts(cid) < 0)
        return 0;
    if (G.count_stamp[cid] != G.window_stamp) {
        G.count_stamp[cid] = G.window_stamp;
        G.counts[cid] = 0;
    }
    if (++G.counts[cid] <= G.max_calls)
        return 0;
    if (G.not_recorded[cid]++ == 0) {
        if (G.nlimited == G.cap_limited) {
            size_t cap = G.cap_limited ? G.cap_limited * 2 : 64;
            uint32_t *codes = realloc(G.limited_codes, cap * sizeof *codes);
            if (codes == NULL) {
                G.not_recorded[cid]--;
                return 1;
            }
            G.limited_codes = codes;
            G.cap_limited = cap;
        }
        G.limited_codes[G.nlimited++] = cid;
    }
    return 1;
}

static void push_limited(Thread *t, uint8_t limited)
{
    if (t->limited_len == t->limited_cap) {
        size_t cap = t->limited_cap ? t->limited_cap * 2 : 64;
        uint8_t *stack = realloc(t->limited, cap);
        if (stack == NULL)
            return;
        t->limited = stack;
        t->limited_cap = cap;
    }
    t->limited[t->limited_len++] = limited;
}

/* Whether the call ending now was only counted. */
static int pop_limited(Thread *t)
{
    return t->limited_len > 0 && t->limited[--t->limited_len];
}

/* ------------------------------------------------------------------------------ */
/* The sys.monitoring callbacks. */

/* PY_START(code, offset) */
/* A traced call of this thread ended (a return, yield or exception); `module_body`
 * is its CodeInfo's. */
static inline void left_call(Thread *t, int module_body)
{
    if (t->depth > 0 && !module_body)
        t->depth--;
}

/* The callback's result once an end was written: in a worker process, a thread
 * whose traced calls have all ended (a pool task that returned), or whose call
 * returned to a task loop, runs the top helper
 * first, which sends what is pending before the worker can report its result and be
 * terminated. */
static PyObject *top_returned(Thread *t)
{
    if (t->depth < t->base)
        t->base = 0; /* the task loop itself ended */
    if (t->depth <= t->base && G.top_helper != NULL) {
        PyObject *r = PyObject_CallFunctionObjArgs(G.top_helper, NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_DecRef(r);
    }
    return none();
}

static PyObject *on_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (!G.configured || nargs < 2)
        return none();
    PyObject *code = args[0];
    int64_t index = code_index(code, 1);
    if (index < 0) {
        PyErr_Clear();
        return none();
    }
    int32_t cid = G.infos[index].cid;
    if (cid < 0)
        return new_ref(G.disable);
    if (G.next_call_helper != NULL) {
        PyObject *helper = G.next_call_helper;
        G.next_call_helper = NULL;
        PyObject *r = PyObject_CallFunctionObjArgs(helper, NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_DecRef(r);
        Py_DecRef(helper);
    }
    int64_t ts = now_ticks();
    Thread *t = thread_get();
    if (t == NULL)
        return none();
    if (!G.infos[index].module_body)
        t->depth++;
    if (G.infos[index].task_loop)
        t->base = t->depth;
    int32_t line;
    PyObject *arg0 = NULL; /* a reference taken over from the CALL */
    if (t->pending_code == code) {
        line = t->pending_line;
        arg0 = t->pending_arg0;
        t->pending_arg0 = NULL;
    } else {
        line = caller_line_by_frames();
    }
    clear_pending(t);
    flush_call_gaps(t, (uint32_t)cid);
    if (G.max_calls) {
        int limited = over_limit((uint32_t)cid, ts);
        push_limited(t, (uint8_t)limited);
        if (limited) {
            Py_DecRef(arg0);
            return none();
        }
    }
    if (G.no_args) {
        uint8_t *p = reserve_event(HEAD_SIZE + 2);
        if (p != NULL) {
            p = put_head(p, 'c', (uint32_t)cid, t->index, ts, line);
            PUT(p, uint16_t, 0xffff);
            G.out.len += HEAD_SIZE + 2;
        }
        Py_DecRef(arg0);
        return none();
    }
    if (describe_args(t, index, arg0) < 0) {
        PyErr_Clear();
        t->scratch.len = 2;
        memset(t->scratch.data, 0, 2);
    }
    uint8_t *p = reserve_event(HEAD_SIZE + t->scratch.len);
    if (p != NULL) {
        p = put_head(p, 'c', (uint32_t)cid, t->index, ts, line);
        memcpy(p, t->scratch.data, t->scratch.len);
        G.out.len += HEAD_SIZE + t->scratch.len;
    }
    /* The frame holds the argument too: nothing is freed here. */
    Py_DecRef(arg0);
    return none();
}

/* The CodeInfo of the traced code of an event that is not a start, or NULL. Read
 * what is needed from it at once: learning another code (Python may run later in
 * the callback) can move the table. */
static const CodeInfo *traced_info(PyObject *code)
{
    int64_t index = code_index(code, 0);
    return index < 0 || G.infos[index].cid < 0 ? NULL : &G.infos[index];
}

/* The traced code of an event that is not a start, or -1. */
static int32_t traced_cid(PyObject *code)
{
    const CodeInfo *info = traced_info(code);
    return info == NULL ? -1 : info->cid;
}

/* PY_RETURN / PY_YIELD(code, offset, value) */
static PyObject *on_end(uint8_t tag, PyObject *const *args, Py_ssize_t nargs)
{
    if (!G.configured || nargs < 3)
        return none();
    PyObject *code = args[0];
    const CodeInfo *info = traced_info(code);
    if (info == NULL)
        return none();
    int32_t cid = info->cid;
    int module_body = info->module_body;
    int64_t ts = now_ticks();
    Thread *t = thread_get();
    if (t == NULL)
        return none();
    clear_pending(t);
    left_call(t, module_body);
    if (G.max_calls && pop_limited(t))
        return top_returned(t);
    int32_t line = line_of((uint32_t)cid, code, args[1]);
    Buf *b = &t->scratch;
    b->len = 0;
    if (G.no_args) {
        if (buf_reserve(b, 1) == 0)
            b->data[b->len++] = 'z';
    } else if (put_value(b, args[2]) < 0) {
        PyErr_Clear();
        b->len = 0;
        if (buf_reserve(b, 1) == 0)
            b->data[b->len++] = 'z';
    }
    if (b->len == 0)
        return top_returned(t);
    flush_call_gaps(t, (uint32_t)cid);
    uint8_t *p = reserve_event(HEAD_SIZE + b->len);
    if (p != NULL) {
        p = put_head(p, tag, (uint32_t)cid, t->index, ts, line);
        memcpy(p, b->data, b->len);
        G.out.len += HEAD_SIZE + b->len;
    }
    return top_returned(t);
}

static PyObject *on_return(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return on_end('r', args, nargs);
}

static PyObject *on_yield(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    return on_end('y', args, nargs);
}

/* PY_RESUME(code, offset) */
/* PY_RESUME(code, offset). A hook placed into a running process also takes it for
 * every code object (`_start_monitoring`), so that a generator or coroutine that
 * started before is learnt at its first resume: traced, it gets resume rows from then
 * on (the calls it makes have it as their parent); else its PY_RESUME is turned off. */
static PyObject *on_resume(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (!G.configured || nargs < 2)
        return none();
    PyObject *code = args[0];
    int64_t index = code_index(code, 1);
    if (index < 0) {
        PyErr_Clear();
        return none();
    }
    int32_t cid = G.infos[index].cid;
    if (cid < 0)
        return new_ref(G.disable);
    int64_t ts = now_ticks();
    Thread *t = thread_get();
    if (t == NULL)
        return none();
    clear_pending(t);
    flush_call_gaps(t, (uint32_t)cid);
    t->depth++;
    if (G.max_calls) {
        int limited = over_limit((uint32_t)cid, ts);
        push_limited(t, (uint8_t)limited);
        if (limited)
            return none();
    }
    int32_t line = line_of((uint32_t)cid, code, args[1]);
    uint8_t *p = reserve_event(HEAD_SIZE);
    if (p != NULL) {
        put_head(p, 's', (uint32_t)cid, t->index, ts, line);
        G.out.len += HEAD_SIZE;
    }
    return none();
}

/* PY_THROW(code, offset, exception): comes instead of PY_RESUME when throw()
 * continues a generator or coroutine (close(), a coroutine woken by an awaited
 * task's exception): a resume, or its first start when it had not run yet (asyncio
 * cancels tasks so). Never DISABLE: PY_THROW cannot be turned off per code. */
static PyObject *on_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!G.configured || nargs < 3)
        return none();
    int64_t index = code_index(args[0], 1);
    if (index < 0) {
        PyErr_Clear();
        return none();
    }
    if (G.infos[index].cid < 0)
        return none();
    long offset = PyLong_AsLong(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return none();
    }
    if (offset < G.infos[index].start)
        return on_start(self, args, 2);
    return on_resume(self, args, 2);
}

/* EXCEPTION_HANDLED(code, offset, exception): a CALL that failed before its function
 * started (a TypeError binding its arguments) left its pending state, which the next
 * start of that function without a CALL (a property, `__bool__`, a C slot) took for its
 * own: the failed call's argument and caller line. The exception is caught here, or
 * ends the caller (on_unwind), before that thread runs anything else. */
static PyObject *on_handled(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    Thread *t = &tls;
    if (G.configured && t->epoch == G.epoch)
        clear_pending(t);
    return none();
}

/* An exception's (qualified type, message) written without the hook's helper, which
 * cannot be called within a few frames of the recursion limit (the frames a
 * RecursionError unwinds: their rows had no type, or `<repr failed: RecursionError>`;
 * raising the limit for the call would not do, as 3.12 lowers a thread's limit again
 * only lazily). The type's name as the helper writes it, and the message when it is
 * BaseException's str() of no argument or of one str (a RecursionError's), else
 * empty: no class's code runs. */
static int put_exception_without_helper(Buf *b, PyObject *exc)
{
    PyTypeObject *tp = Py_TYPE(exc);
    PyObject *module = PyObject_GetAttrString((PyObject *)tp, "__module__");
    PyObject *name = PyType_GetQualName(tp);
    PyObject *qualified = NULL;
    if (module != NULL && name != NULL && Py_TYPE(module) == &PyUnicode_Type)
        qualified = PyUnicode_CompareWithASCIIString(module, "builtins") == 0
                        ? new_ref(name)
                        : PyUnicode_FromFormat("%U.%U", module, name);
    Py_DecRef(module);
    Py_DecRef(name);
    PyObject *message = NULL;
    PyObject *exc_args = PyObject_GetAttrString(exc, "args");
    PyTypeObject *base = (PyTypeObject *)PyExc_BaseException;
    if (exc_args != NULL && Py_TYPE(exc_args) == &PyTuple_Type &&
        PyType_GetSlot(tp, Py_tp_str) == PyType_GetSlot(base, Py_tp_str)) {
        Py_ssize_t n = PyTuple_Size(exc_args);
        PyObject *first = n == 1 ? PyTuple_GetItem(exc_args, 0) : NULL;
        if (n == 0)
            message = PyUnicode_FromString("");
        else if (first != NULL && Py_TYPE(first) == &PyUnicode_Type)
            message = new_ref(first);
    }
    Py_DecRef(exc_args);
    if (message == NULL)
        message = PyUnicode_FromString("");
    int status = qualified != NULL && message != NULL && put_utf8(b, qualified) == 0 &&
                         put_utf8(b, message) == 0
                     ? 0
                     : -1;
    Py_DecRef(qualified);
    Py_DecRef(message);
    return status;
}

/* An audit hook (PEP 578): at the `os.exec` event every os.exec* raises first, the
 * hook's `_before_exec` sends what is pending. A C function pushes no frame, where a
 * Python hook made every audited operation (an open(), sys._getframe()) of a program
 * one frame below its recursion limit fail with RecursionError. */
static PyObject *on_audit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    PyObject *handler = G.exec_handler;
    if (handler != NULL && nargs >= 1 && Py_TYPE(args[0]) == &PyUnicode_Type &&
        PyUnicode_CompareWithASCIIString(args[0], "os.exec") == 0) {
        Py_IncRef(handler);
        PyObject *r = PyObject_CallFunctionObjArgs(handler, NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_DecRef(r);
        Py_DecRef(handler);
    }
    return none();
}

/* set_exec_handler(handler or None): what on_audit calls; True when on_audit is to be
 * added as an audit hook (the first time in this process). */
static PyObject *set_exec_handler(PyObject *self, PyObject *handler)
{
    (void)self;
    PyObject *old = G.exec_handler;
    G.exec_handler = handler == Py_None ? NULL : new_ref(handler);
    Py_DecRef(old);
    int add = !G.audit_hook_added;
    G.audit_hook_added = 1;
    return new_ref(add ? Py_True : Py_False);
}

/* PY_UNWIND(code, offset, exception) */
static PyObject *on_unwind(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (!G.configured || nargs < 3)
        return none();
    PyObject *code = args[0];
    const CodeInfo *info = traced_info(code);
    if (info == NULL)
        return none();
    int32_t cid = info->cid;
    int module_body = info->module_body;
    int64_t ts = now_ticks();
    Thread *t = thread_get();
    if (t == NULL)
        return none();
    clear_pending(t);
    left_call(t, module_body);
    if (G.max_calls && pop_limited(t))
        return top_returned(t);
    /* The frame's line, not the offset's: the offset is that of the RERAISE that ends
     * a handler's cleanup (3.12+ gives it no line), which set the frame's instruction
     * back to the one that raised, as 3.8-3.11 report it. */
    PyFrameObject *frame = PyEval_GetFrame();
    int32_t line = frame != NULL ? PyFrame_GetLineNumber(frame) : -1;
    if (line < 0)
        line = line_of((uint32_t)cid, code, args[1]);
    PyObject *text = PyObject_CallFunctionObjArgs(G.exception_helper, args[2], Py_True, NULL);
    Buf *b = &t->scratch;
    b->len = 0;
    PyObject *qualified = text ? PyTuple_GetItem(text, 0) : NULL;
    PyObject *message = text ? PyTuple_GetItem(text, 1) : NULL;
    if (qualified == NULL || message == NULL || put_utf8(b, qualified) < 0 ||
        put_utf8(b, message) < 0) {
        PyErr_Clear();
        b->len = 0;
        if (put_exception_without_helper(b, args[2]) < 0) {
            PyErr_Clear();
            b->len = 0;
        }
        if (b->len == 0 && buf_reserve(b, 8) == 0) {
            memset(b->data, 0, 8);
            b->len = 8;
        }
    }
    Py_DecRef(text);
    flush_call_gaps(t, (uint32_t)cid);
    uint8_t *p = reserve_event(HEAD_SIZE + b->len);
    if (p != NULL) {
        p = put_head(p, 'x', (uint32_t)cid, t->index, ts, line);
        memcpy(p, b->data, b->len);
        G.out.len += HEAD_SIZE + b->len;
    }
    return top_returned(t);
}

/* CALL(code, offset, callable, arg0) */
static PyObject *on_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (!G.configured || nargs < 3)
        return none();
    PyObject *code = args[0];
    int32_t cid = traced_cid(code);
    if (cid < 0)
        return none();
    Thread *t = thread_get();
    if (t == NULL)
        return none();
    clear_pending(t);
    PyObject *callee_code;
    int64_t callee = callee_of(args[2], &callee_code);
    if (callee >= 0) {
        add_gap(t, (uint32_t)cid, (uint32_t)callee, code, args[1]);
    } else if (callee == CALLEE_TRACED_FUNCTION && callee_code != NULL) {
        /* Its PY_START comes next (unless the call fails first): the caller line is
         * this call's, without walking frames. */
        int32_t line = line_of((uint32_t)cid, code, args[1]);
        t->pending_code = callee_code;
        t->pending_line = line;
        if (!G.no_args && nargs >= 4 && args[3] != G.missing)
            t->pending_arg0 = new_ref(args[3]);
    } else {
        PyErr_Clear();
    }
    return none();
}

/* ------------------------------------------------------------------------------ */
/* Module functions used by the hook. */

static void *find_symbol(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

/* configure(disable, missing, no_args, max_calls, str_chars, types, code, callee,
 *           line, thread, value, exception): `missing` is sys.monitoring.MISSING
 * (what a CALL without arguments gives), `types` is (function, method, builtin
 * function, method descriptor, slot wrapper, classmethod descriptor,
 * method-wrapper); the helpers are the hook's functions that decide what is not
 * cached here. */
static PyObject *configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 12) {
        PyErr_SetString(PyExc_RuntimeError, "configure takes 12 arguments");
        return NULL;
    }
    G.disable = new_ref(args[0]);
    G.missing = new_ref(args[1]);
    G.no_args = PyLong_AsLong(args[2]) != 0;
    G.max_calls = (uint32_t)PyLong_AsLong(args[3]);
    G.str_chars = PyLong_AsLong(args[4]);
    PyObject *types = args[5];
    G.code_helper = new_ref(args[6]);
    G.callee_helper = new_ref(args[7]);
    G.line_helper = new_ref(args[8]);
    G.thread_helper = new_ref(args[9]);
    G.value_helper = new_ref(args[10]);
    G.exception_helper = new_ref(args[11]);
    if (PyErr_Occurred())
        return NULL;
    PyTypeObject **slots[] = {&G.function_type,          &G.method_type,
                              &G.builtin_type,           &G.method_descriptor_type,
                              &G.slot_wrapper_type,      &G.classmethod_descriptor_type,
                              &G.method_wrapper_type};
    if (PyTuple_Size(types) != 7) {
        PyErr_Clear();
        PyErr_SetString(PyExc_RuntimeError, "configure wants a tuple of 7 types");
        return NULL;
    }
    for (int i = 0; i < 7; i++)
        *slots[i] = (PyTypeObject *)new_ref(PyTuple_GetItem(types, i));
    G.frame_get_back = (PyObject * (*)(PyFrameObject *)) find_symbol("PyFrame_GetBack");
    G.frame_get_var =
        (PyObject * (*)(PyFrameObject *, PyObject *)) find_symbol("PyFrame_GetVar");
    G.function_get_code = (PyObject * (*)(PyObject *)) find_symbol("PyFunction_GetCode");
    G.method_function = (PyObject * (*)(PyObject *)) find_symbol("PyMethod_Function");
    G.max_bytes = 8u << 20; /* the flusher is woken at WAKE_BYTES and takes the batch
                               within a GIL switch interval (5 ms) */
    if (G.epoch == 0)
        G.epoch = 1;
    G.ticks = ticks_usable();
    G.configured = 1;
    return none();
}

/* configure_values(max_len, depth, items, secrets, kind_helper): the value cuts and
 * the secret words (bytes) of the Python describer, and its function that says what
 * a type's instances are; values other than the plain ones are described here from
 * then on. */
static PyObject *configure_values(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5) {
        PyErr_SetString(PyExc_RuntimeError, "configure_values takes 5 arguments");
        return NULL;
    }
    Py_ssize_t max_len = PyLong_AsLong(args[0]);
    Py_ssize_t max_depth = PyLong_AsLong(args[1]);
    Py_ssize_t max_items = PyLong_AsLong(args[2]);
    Py_ssize_t nsecrets = PyTuple_Size(args[3]);
    if (PyErr_Occurred())
        return NULL;
    Buf *secrets = calloc(nsecrets ? (size_t)nsecrets : 1, sizeof *secrets);
    if (secrets == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "out of memory");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nsecrets; i++) {
        char *word;
        Py_ssize_t n;
        PyObject *item = PyTuple_GetItem(args[3], i);
        if (item == NULL || PyBytes_AsStringAndSize(item, &word, &n) < 0 ||
            buf_reserve(&secrets[i], n ? (size_t)n : 1) < 0) {
            for (Py_ssize_t j = 0; j <= i; j++)
                free(secrets[j].data);
            free(secrets);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_RuntimeError, "out of memory");
            return NULL;
        }
        memcpy(secrets[i].data, word, (size_t)n);
        secrets[i].len = (size_t)n;
    }
    G.max_len = max_len;
    G.max_depth = max_depth;
    G.max_items = max_items;
    G.secrets = secrets;
    G.nsecrets = (size_t)nsecrets;
    G.kind_helper = new_ref(args[4]);
    G.values_configured = 1;
    return none();
}

/* Writes the gaps still counted and the max_calls counts into `out`: everything
 * recorded so far then is in `out`. */
/* Forgets every pending gap (written out, or recorded in a parent before a fork). */
static void forget_gaps(void)
{
    G.ngaps = 0;
    map_clear(&G.gap_by_key);
    map_clear(&G.gap_by_call);
    G.gap_generation++;
    if (G.ncid_gaps > 0)
        memset(G.cid_gaps, 0, G.ncid_gaps * sizeof *G.cid_gaps);
}

static void close_batch(void)
{
    for (size_t i = 0; i < G.ngaps; i++) {
        if (G.gaps[i].count > 0)
            write_gap(&G.gaps[i]);
    }
    forget_gaps();
    for (size_t i = 0; i < G.nlimited; i++) {
        uint32_t cid = G.limited_codes[i];
        if (buf_reserve(&G.out, 9) < 0)
            break;
        uint8_t *p = G.out.data + G.out.len;
        PUT(p, uint8_t, 'l');
        PUT(p, uint32_t, cid);
        PUT(p, uint32_t, G.not_recorded[cid]);
        G.out.len += 9;
        G.not_recorded[cid] = 0;
    }
    G.nlimited = 0;
}

/* stage() -> (events, dropped): takes everything recorded since the last stage
 * (pending gaps and max_calls counts included) as the next batch's records; the
 * events in them, and the events dropped since. */
static PyObject *stage(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    close_batch();
    pthread_mutex_lock(&wake_lock);
    flusher_woken = 0;
    pthread_mutex_unlock(&wake_lock);
    uint64_t events = G.out_events;
    uint64_t dropped = G.dropped;
    if (G.staged.len == 0) {
        Buf swap = G.staged;
        G.staged = G.out;
        G.out = swap;
    } else if (buf_reserve(&G.staged, G.out.len) == 0) {
        memcpy(G.staged.data + G.staged.len, G.out.data, G.out.len);
        G.staged.len += G.out.len;
    } else {
        dropped += events;
        events = 0;
    }
    G.out.len = 0;
    G.out_events = 0;
    G.dropped = 0;
    PyObject *events_obj = PyLong_FromLongLong((long long)events);
    PyObject *dropped_obj = PyLong_FromLongLong((long long)dropped);
    PyObject *result =
        events_obj && dropped_obj ? PyTuple_Pack(2, events_obj, dropped_obj) : NULL;
    Py_DecRef(events_obj);
    Py_DecRef(dropped_obj);
    return result;
}

/* Queues `n` bytes at `data` as one chunk; -1 when out of memory. */
static int enqueue(const void *data, size_t n)
{
    pthread_mutex_lock(&sendq_lock);
    Buf *chunk = queue_chunk(n);
    if (chunk != NULL) {
        memcpy(chunk->data, data, n);
        chunk->len = n;
        sendq.pending += n;
    }
    pthread_mutex_unlock(&sendq_lock);
    return chunk != NULL ? 0 : -1;
}

/* frame(prefix, dropped, drop, kind) -> bytes queued: queues one batch message of
 * type `kind` (wire.rs): `dropped`, the hook's records `prefix`, then the staged
 * records, or not them when `drop` (the queue is too long; the caller counted
 * their events as dropped). Nothing when there is nothing to send. */
static PyObject *frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_RuntimeError, "frame takes 4 arguments");
        return NULL;
    }
    char *prefix;
    Py_ssize_t nprefix;
    if (PyBytes_AsStringAndSize(args[0], &prefix, &nprefix) < 0)
        return NULL;
    long long dropped = PyLong_AsLongLong(args[1]);
    long drop = PyLong_AsLong(args[2]);
    long kind = PyLong_AsLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (drop)
        G.staged.len = 0;
    if (nprefix == 0 && G.staged.len == 0)
        return PyLong_FromLong(0);
    /* u32 length (the kind byte and the body), u8 kind, i64 dropped, records: with
     * ticks, an anchor first, read now, after every event of the batch. */
    size_t anchor = G.ticks ? ANCHOR_SIZE : 0;
    size_t body = 8 + anchor + (size_t)nprefix + G.staged.len;
    if (body + 1 > UINT32_MAX) {
        G.staged.len = 0;
        PyErr_SetString(PyExc_RuntimeError, "batch too large");
        return NULL;
    }
    size_t total = 5 + body;
    pthread_mutex_lock(&sendq_lock);
    Buf *chunk = queue_chunk(total);
    if (chunk != NULL) {
        uint8_t *p = chunk->data;
        PUT(p, uint32_t, body + 1);
        PUT(p, uint8_t, kind);
        PUT(p, int64_t, dropped);
        if (anchor) {
            int64_t ticks, ns;
            read_anchor(&ticks, &ns);
            PUT(p, uint8_t, 'A');
            PUT(p, int64_t, ticks);
            PUT(p, int64_t, ns);
        }
        p = put(p, prefix, (size_t)nprefix);
        put(p, G.staged.data, G.staged.len);
        chunk->len = total;
        sendq.pending += total;
    }
    pthread_mutex_unlock(&sendq_lock);
    G.staged.len = 0;
    if (chunk == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no memory for the batch");
        return NULL;
    }
    return PyLong_FromLongLong((long long)total);
}

/* queue(message): queues bytes as they are (a framed message). */
static PyObject *queue(PyObject *self, PyObject *message)
{
    (void)self;
    char *data;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(message, &data, &n) < 0)
        return NULL;
    if (enqueue(data, (size_t)n) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "no memory for the message");
        return NULL;
    }
    return none();
}

/* pending() -> bytes queued and not sent yet. */
static PyObject *pending(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_mutex_lock(&sendq_lock);
    size_t n = sendq.pending;
    pthread_mutex_unlock(&sendq_lock);
    return PyLong_FromLongLong((long long)n);
}

/* send(fd) -> bytes still queued, or -1 when the tracer is gone: sends what the
 * socket takes now, without waiting, with the GIL released. */
static PyObject *send_queued(PyObject *self, PyObject *fd_obj)
{
    (void)self;
    long fd = PyLong_AsLong(fd_obj);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    PyThreadState *state = PyEval_SaveThread();
    pthread_mutex_lock(&sendq_lock);
    int gone = fd < 0;
    while (!gone && sendq.n > 0) {
        Buf *chunk = &sendq.chunks[0];
        if (sendq.sent == chunk->len) {
            queue_pop();
            continue;
        }
        ssize_t n = send((int)fd, chunk->data + sendq.sent, chunk->len - sendq.sent,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sendq.sent += (size_t)n;
            sendq.pending -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            gone = 1;
        }
    }
    long long left = gone ? -1 : (long long)sendq.pending;
    pthread_mutex_unlock(&sendq_lock);
    PyEval_RestoreThread(state);
    return PyLong_FromLongLong(left);
}

/* wait(ms) -> bool: waits, with the GIL released, until WAKE_BYTES are recorded or
 * `ms` milliseconds pass; whether they were. */
static PyObject *wait_for_records(PyObject *self, PyObject *ms_obj)
{
    (void)self;
    long ms = PyLong_AsLong(ms_obj);
    if (ms == -1 && PyErr_Occurred())
        return NULL;
    PyThreadState *state = PyEval_SaveThread();
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&wake_lock);
    while (!flusher_woken) {
        if (pthread_cond_timedwait(&wake_cond, &wake_lock, &deadline) != 0)
            break;
    }
    int woken = flusher_woken;
    pthread_mutex_unlock(&wake_lock);
    PyEval_RestoreThread(state);
    return new_ref(woken ? Py_True : Py_False);
}

/* anchor() -> (ticks, ns) or None: when events are stamped with the time-stamp
 * counter, a reading of it and of CLOCK_MONOTONIC at one moment (the greeting's,
 * from which the tracer counts until the first batch's anchor). */
static PyObject *anchor(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (!G.ticks)
        return none();
    int64_t ticks, ns;
    read_anchor(&ticks, &ns);
    PyObject *ticks_obj = PyLong_FromLongLong((long long)ticks);
    PyObject *ns_obj = PyLong_FromLongLong((long long)ns);
    PyObject *result = ticks_obj && ns_obj ? PyTuple_Pack(2, ticks_obj, ns_obj) : NULL;
    Py_DecRef(ticks_obj);
    Py_DecRef(ns_obj);
    return result;
}

/* wake(): ends the flusher's wait now (the hook is stopping). */
/* set_top_helper(callable or None): what runs when a thread's traced calls have all
 * ended (worker processes). */
static PyObject *set_top_helper(PyObject *self, PyObject *helper)
{
    (void)self;
    PyObject *old = G.top_helper;
    G.top_helper = helper == Py_None ? NULL : new_ref(helper);
    Py_DecRef(old);
    return none();
}

static PyObject *wake(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    wake_flusher();
    return none();
}

/* at_next_call(callable): runs it at the next start of traced code, once: after the
 * C function now running has returned (os.fork, which on 3.13+ checks the process's
 * threads after its at-fork handlers, themselves Python code). */
static PyObject *at_next_call(PyObject *self, PyObject *callable)
{
    (void)self;
    PyObject *old = G.next_call_helper;
    G.next_call_helper = new_ref(callable);
    Py_DecRef(old);
    return none();
}

/* discard(): forgets what is queued and staged (the tracer is gone). */
static PyObject *discard(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pthread_mutex_lock(&sendq_lock);
    queue_clear();
    pthread_mutex_unlock(&sendq_lock);
    G.staged.len = 0;
    PyObject *helper = G.next_call_helper;
    G.next_call_helper = NULL;
    Py_DecRef(helper);
    return none();
}

/* after_fork(): in a forked child, forgets what the parent recorded and its threads
 * (they are renumbered, as the Python side does). */
static PyObject *after_fork(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    G.out.len = 0;
    G.out_events = 0;
    G.dropped = 0;
    G.staged.len = 0;
    /* The only thread now: the lock may have been held by another at the fork. */
    pthread_mutex_init(&sendq_lock, NULL);
    queue_clear();
    pthread_mutex_init(&wake_lock, NULL);
    pthread_cond_init(&wake_cond, NULL);
    flusher_woken = 0;
    forget_gaps();
    for (size_t i = 0; i < G.nlimited; i++)
        G.not_recorded[G.limited_codes[i]] = 0;
    G.nlimited = 0;
    G.epoch++;
    return none();
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "Sets the options and the hook's Python helpers."},
    {"configure_values", (PyCFunction)(void (*)(void))configure_values, METH_FASTCALL,
     "Sets the value cuts, secret words and type helper; containers are described here."},
    {"stage", stage, METH_NOARGS, "Takes the records so far as the next batch's."},
    {"frame", (PyCFunction)(void (*)(void))frame, METH_FASTCALL,
     "Queues a batch message: dropped, the given records, the staged ones."},
    {"queue", queue, METH_O, "Queues a framed message."},
    {"pending", pending, METH_NOARGS, "Bytes queued and not sent."},
    {"send", send_queued, METH_O, "Sends what the socket takes now; -1: gone."},
    {"discard", discard, METH_NOARGS, "Forgets what is queued."},
    {"wait", wait_for_records, METH_O, "Waits up to ms for a batch's worth of records."},
    {"wake", wake, METH_NOARGS, "Ends the flusher's wait now."},
    {"anchor", anchor, METH_NOARGS, "The time-stamp counter and CLOCK_MONOTONIC now."},
    {"set_top_helper", set_top_helper, METH_O,
     "What runs when a thread's traced calls have all ended (None: nothing)."},
    {"after_fork", after_fork, METH_NOARGS, "Forgets the parent's records and threads."},
    {"at_next_call", at_next_call, METH_O, "Runs a callable at the next traced call."},
    {"on_start", (PyCFunction)(void (*)(void))on_start, METH_FASTCALL, "PY_START"},
    {"on_return", (PyCFunction)(void (*)(void))on_return, METH_FASTCALL, "PY_RETURN"},
    {"on_yield", (PyCFunction)(void (*)(void))on_yield, METH_FASTCALL, "PY_YIELD"},
    {"on_resume", (PyCFunction)(void (*)(void))on_resume, METH_FASTCALL, "PY_RESUME"},
    {"on_throw", (PyCFunction)(void (*)(void))on_throw, METH_FASTCALL, "PY_THROW"},
    {"on_unwind", (PyCFunction)(void (*)(void))on_unwind, METH_FASTCALL, "PY_UNWIND"},
    {"on_audit", (PyCFunction)(void (*)(void))on_audit, METH_FASTCALL, "audit hook"},
    {"set_exec_handler", (PyCFunction)set_exec_handler, METH_O, "on_audit's handler"},
    {"on_handled", (PyCFunction)(void (*)(void))on_handled, METH_FASTCALL,
     "EXCEPTION_HANDLED"},
    {"on_call", (PyCFunction)(void (*)(void))on_call, METH_FASTCALL, "CALL"},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_tracer_exact_native",
    "The exact-mode hook's native hot path (sys.monitoring callbacks).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

EXPORT PyObject *PyInit__tracer_exact_native(void)
{
    static int key_made = 0;
    if (!key_made) {
        if (pthread_key_create(&thread_key, thread_exit) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "no thread-specific key");
            return NULL;
        }
        key_made = 1;
    }
    return PyModule_Create2(&module, PYTHON_ABI_VERSION);
}
