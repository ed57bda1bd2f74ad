# tracer exact-mode hook: runs inside the traced Python process, started by the
# bootstrap `sitecustomize.py`, and streams what included code does to the tracer over
# a Unix socket. The wire format is documented in attach/src/exact/wire.rs; this file
# and that one change together.
#
# Events come from sys.monitoring on 3.12+ (a free tool id, never one in use) and
# from sys.settrace/threading.settrace on 3.8-3.11 (the profile hook cannot see the
# type of an exception that ends a call, and cProfile would replace it).
#
# Rules this code keeps:
# * No callback ever raises into the program: every one catches everything.
# * Nothing of the program runs: values are read with the builtin types' own C
#   methods (`int.__int__`, `str.__str__`, `dict.items`, ...), never through
#   attribute lookups or `__repr__`/`__str__` a class could define.
# * The program is never blocked for long: the socket is non-blocking; what cannot
#   be sent is held up to a bound, then events are dropped and counted.
# * The flusher thread and exit code call only C functions, so `--include '*'` does
#   not trace the hook.
#
# On 3.12+ the callbacks are those of `_tracer_exact_native` (tracer_native.c, written
# beside this file by the tracer) when it loads: it writes the event records itself
# and asks the `_native_*` functions below, once per code object or callee, what to
# do. When it cannot load (or the tracer says `native=0`) the Python callbacks run.
import sys
import os
import _thread
import _socket
import atexit
from _struct import Struct
from _collections import deque
from gc import get_referents as _referents
from time import perf_counter_ns, time_ns, sleep
from itertools import islice as _islice

_V = sys.version_info[:2]
_MONITORING = _V >= (3, 12)

# Records queued by callbacks, encoded by the flusher (tags match wire.rs).
_CALL, _RETURN, _YIELD, _RESUME, _EXC, _GAP = 0x63, 0x72, 0x79, 0x73, 0x78, 0x67
_CODE, _THREAD, _CALLEE, _LIMITED = 0x4B, 0x54, 0x45, 0x6C
# Message types.
_MSG_HELLO, _MSG_ERROR, _MSG_BATCH, _MSG_BYE = 1, 2, 3, 4

_U32 = Struct("<I").pack
_U16 = Struct("<H").pack
_I64 = Struct("<q").pack
_I32 = Struct("<i").pack
_F64 = Struct("<d").pack
_EV = Struct("<BIIqi").pack
_GAPREC = Struct("<BIIqiII").pack
_LIMREC = Struct("<BII").pack
_U64X2 = Struct("<QQ").pack
_FRAME = Struct("<IB").pack

# Flag bits of types (Include/object.h).
_HEAP = 1 << 9
_LONG_SUB, _LIST_SUB, _TUPLE_SUB, _BYTES_SUB = 1 << 24, 1 << 25, 1 << 26, 1 << 27
_STR_SUB, _DICT_SUB, _TYPE_SUB = 1 << 28, 1 << 29, 1 << 31
_tflags = type.__dict__["__flags__"].__get__
_tname = type.__dict__["__name__"].__get__
_tqualname = type.__dict__["__qualname__"].__get__
_tmodule = type.__dict__["__module__"].__get__
_tdict = type.__dict__["__dict__"].__get__
_tbase = type.__dict__["__base__"].__get__
_tmro = type.__dict__["__mro__"].__get__
_exc_args = BaseException.__dict__["args"].__get__
_FunctionType = type(lambda: None)
_BuiltinType = type(len)
_SlotWrapper = type(object.__str__)
_MethodDescriptor = type(str.join)
_MethodWrapper = type((1).__add__)
_ClassMethodDescriptor = type(dict.__dict__["fromkeys"])

_STR_SLICE = None
_STR_CHARS = 4096

_native = None
_native_why = ""
_NATIVE_NAME = "_tracer_exact_native"
_NATIVE_FILE = "_tracer_exact_native.abi3.so"

_cfg = {}
_boot = ""
_sock = None
# (st_dev, st_ino) of the hook's socket: what `_sock_is_ours` checks its number for.
_sock_id = [None]
_active = False
_q = deque()
_QMAX = 200000
_BACKLOG_MAX = 8 << 20
_dropped = 0
_backlog = bytearray()
_flush_lock = _thread.allocate_lock()
# Code ids by `id(code)`: code objects compare equal by their contents, not their
# file, so `def f(x): return x` in two modules were one key (and hashing a code
# object costs more than `id`). Every code looked at is kept alive (traced ones in
# `_code_meta`, the rest in `_kept_codes`), so an id is never reused for another.
_codes = {}
_kept_codes = []
_code_meta = []
_argnames = []
_method_arg = []
_variants = {}
_variant_ids = {}
_callees = {}
_callee_meta = []
_lines = {}
_pending_exc = {}
_kinds = {}
_tls = _thread._local()
_next_thread = [0]
_main_ident = _thread.get_ident()
# Python's thread id -> [wire id, OS thread id, name last sent] of each thread the hook
# numbered, for `_renamed_threads`.
_thread_names = {}
_tool = None
_pid = os.getpid()
_max_calls = 0
_limit_window = [0]
_limit_counts = {}
_limited = {}
_perf = perf_counter_ns
_getframe = sys._getframe
_no_args = False
_include = []
_exclude = []
_cwd = ""
_stdlib = []
_venv_dirs = {}
# (module, file name) -> whether its code is traced (`_includes`).
_included = {}
_MAXLEN, _DEPTH, _ITEMS = 200, 6, 32
_secrets = ()


class _Cut(Exception):
    """The value printed so far is already longer than the cut: stop."""

    def _method(self):
        return None


_PyMethod = type(_Cut()._method)


# ---------------------------------------------------------------------------------
# Configuration and filter (the same rules as attach/src/filter.rs).


def _parse_config(text):
    cfg = {}
    for field in text.split("\x1e"):
        key, sep, value = field.partition("=")
        if sep:
            cfg[key] = value
    return cfg


def _glob_match(pattern, text):
    p = t = 0
    star = None
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star = (p, t)
            p += 1
        elif p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p += 1
            t += 1
        elif star is not None:
            p = star[0] + 1
            t = star[1] + 1
            star = (star[0], star[1] + 1)
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def _glob_matches(pattern, module):
    if _glob_match(pattern, module):
        return True
    return pattern.endswith(".*") and _glob_match(pattern[:-2], module)


def _under(path, folder):
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _has_pyvenv_cfg(folder):
    known = _venv_dirs.get(folder)
    if known is None:
        known = os.path.isfile(os.path.join(folder, "pyvenv.cfg"))
        _venv_dirs[folder] = known
    return known


def _is_program_code(module, filename):
    if module == "__main__":
        return True
    if not filename or filename.startswith("<"):
        return False
    path = os.path.normpath(os.path.join(_cwd, filename))
    if not _under(path, _cwd):
        return False
    if any(_under(path, d) for d in _stdlib):
        return False
    parts = path.split("/")
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    folder = os.path.dirname(path)
    while True:
        if _has_pyvenv_cfg(folder):
            return False
        parent = os.path.dirname(folder)
        if parent == folder:
            return True
        folder = parent


def _includes(module, filename):
    """Whether code of `module` in `filename` is traced; decided once per pair (a
    library's module has hundreds of code objects, each asked about once)."""
    key = (module, filename)
    decided = _included.get(key)
    if decided is None:
        decided = not any(_glob_matches(g, module) for g in _exclude) and (
            any(_glob_matches(g, module) for g in _include) or _is_program_code(module, filename)
        )
        _included[key] = decided
    return decided


# ---------------------------------------------------------------------------------
# Code objects, threads and callees: learnt once, sent once.


def _module_of(globals_, filename):
    name = None
    if type(globals_) is dict:
        name = globals_.get("__name__")
    if type(name) is not str:
        base = os.path.basename(filename)
        name = base[:-3] if base.endswith(".py") else base
    return name


def _learn(code, globals_):
    """The id of `code` when it is traced, else -1; decided once."""
    filename = code.co_filename
    if filename.startswith(_boot):
        _codes[id(code)] = -1
        _kept_codes.append(code)
        return -1
    module = _module_of(globals_, filename)
    # Code a module made at run time (a dataclass's `__init__`, a namedtuple's
    # `__new__`: file `<string>`) is its module's code: decided by the module's file.
    where = filename
    if filename.startswith("<") and type(globals_) is dict:
        own = globals_.get("__file__")
        if type(own) is str:
            where = own
    if not _includes(module, where):
        _codes[id(code)] = -1
        _kept_codes.append(code)
        return -1
    cid = len(_code_meta)
    function = code.co_qualname if _V >= (3, 11) else code.co_name
    nargs = code.co_argcount + code.co_kwonlyargcount
    if code.co_flags & 0x04:
        nargs += 1
    if code.co_flags & 0x08:
        nargs += 1
    names = tuple(code.co_varnames[:nargs])
    record = (_CODE, cid, function, module, filename, code.co_firstlineno, names, cid, code)
    _code_meta.append(record)
    _argnames.append(names)
    if (module, code.co_name) in _TASK_LOOPS:
        _task_loops.add(cid)
    first = names[0] if names and code.co_argcount else None
    _method_arg.append(first if _V < (3, 11) and first in ("self", "cls") else None)
    _q.append(record)
    _codes[id(code)] = cid
    if _MONITORING:
        sys.monitoring.set_local_events(_tool, code, _LOCAL_EVENTS)
    return cid


def _first_arg_class(value, is_cls):
    """≤3.10: the class a method's first argument names: its type for `self`, the
    class itself for `cls`; None when `cls` is not a class."""
    if is_cls:
        return value if _tflags(type(value)) & _TYPE_SUB else None
    return type(value)


def _method_class(code, cls, is_cls):
    """≤3.10: the class whose method `code` is, seen from `cls`: the class of `cls`'s
    MRO whose own namespace defines `code`'s function, as 3.11's `co_qualname` names
    it (`Shape.area` when a Square runs it); for a `cls` argument, then the class of
    its metaclass's MRO (`Meta.__call__` when a class is called); None when none
    does: a function that takes `self` without being a method of its class (a
    module-level or nested function, a decorator's wrapper, another class's method
    called with it), which 3.11 does not name by that class either. Read with type's
    own descriptors and exact-type checks: no metaclass, descriptor or `__getattr__`
    of the program runs."""
    name = code.co_name
    private = name.startswith("__") and not name.endswith("__")
    for owner in (cls, type(cls)) if is_cls else (cls,):
        for klass in _tmro(owner):
            namespace = _tdict(klass)
            found = namespace.get(name)
            if found is None and private:
                found = namespace.get("_" + _tname(klass).lstrip("_") + name)
            if found is not None and _defines(found, code):
                return klass
    return None


def _defines(attribute, code):
    """Whether a class attribute is the function of `code`, or wraps it (staticmethod,
    classmethod, property)."""
    t = type(attribute)
    if t is _FunctionType:
        return attribute.__code__ is code
    if t is staticmethod or t is classmethod:
        inner = attribute.__func__
        return type(inner) is _FunctionType and inner.__code__ is code
    if t is property:
        for inner in (attribute.fget, attribute.fset, attribute.fdel):
            if type(inner) is _FunctionType and inner.__code__ is code:
                return True
    return False


def _method_name(code, cls, is_cls):
    """≤3.10: `Class.method` for `code` run with a first argument of class `cls`
    (`is_cls`: the argument is `cls`), or its bare name when no class of it defines
    `code` (`_method_class`)."""
    owner = _method_class(code, cls, is_cls)
    if owner is None:
        return code.co_name
    qualified = _tqualname(owner)
    return (qualified if type(qualified) is str else _tname(owner)) + "." + code.co_name


def _variant(cid, value, is_cls):
    """≤3.10: the id for `Class.method`, named from the first argument; one id per
    name, whichever subclass ran it."""
    cls = _first_arg_class(value, is_cls)
    if cls is None:
        return cid
    key = (cid, id(cls))
    known = _variants.get(key)
    if known is not None and known[0] is cls:
        return known[1]
    base = _code_meta[cid]
    name = _method_name(base[8], cls, is_cls)
    if name == base[2]:
        _variants[key] = (cls, cid)
        return cid
    vid = _variant_ids.get((cid, name))
    if vid is None:
        vid = len(_code_meta)
        record = (_CODE, vid, name) + base[3:]
        _code_meta.append(record)
        _argnames.append(_argnames[cid])
        _method_arg.append(None)
        _variant_ids[(cid, name)] = vid
        _q.append(record)
    _variants[key] = (cls, vid)
    return vid


def _thread_index():
    try:
        return _tls.i
    except AttributeError:
        pass
    i = _next_thread[0]
    _next_thread[0] = i + 1
    _tls.i = i
    ident = _thread.get_ident()
    name = _thread_name(ident)
    if name is None and ident == _main_ident:
        name = "MainThread"
    name = name if type(name) is str else ""
    native_id = _thread.get_native_id()
    _thread_names[ident] = [i, native_id, name]
    _q.append((_THREAD, i, native_id, name))
    return i


def _renamed_threads():
    """Thread records for the threads renamed since their name was sent (`thread.name
    = ...` after it started), looked at once a batch, not at every event: they go
    after the batch's events, so a name applies from the batch after the one in which
    it changed, never to events from before the change. Threads that ended are
    forgotten."""
    threading = sys.modules.get("threading")
    active = getattr(threading, "_active", None)
    if type(active) is not dict or not _thread_names:
        return []
    records = []
    for ident, entry in list(_thread_names.items()):
        thread = active.get(ident)
        if thread is None:
            _thread_names.pop(ident, None)
            continue
        name = getattr(thread, "_name", None)
        if type(name) is str and name != entry[2]:
            entry[2] = name
            records.append((_THREAD, entry[0], entry[1], name))
    return records


def _thread_name(ident):
    """Python's name of the running thread, or None. `threading._active` has the
    Thread once it runs its target; a thread's first events can come before that
    (`Thread._bootstrap` and `_bootstrap_inner` under `--include '*'` on 3.12+), and
    then the Thread is the `self` of the thread's outermost frame, `_bootstrap`."""
    threading = sys.modules.get("threading")
    if threading is None:
        return None
    thread = getattr(threading, "_active", {}).get(ident)
    if thread is None:
        frame = _getframe(0)
        while frame.f_back is not None:
            frame = frame.f_back
        code = frame.f_code
        if code.co_name == "_bootstrap" and frame.f_globals is getattr(threading, "__dict__", None):
            thread = frame.f_locals.get("self")
    if thread is None:
        return None
    return getattr(thread, "_name", None)


def _line(code, cid, offset):
    key = (cid, offset)
    line = _lines.get(key)
    if line is None:
        line = code.co_firstlineno
        for start, end, number in code.co_lines():
            if start <= offset < end:
                if number is not None:
                    line = number
                break
        _lines[key] = line
    return line


# RESUME: an oparg of 0 (of its low two bits on 3.13) marks the start of the body.
_RESUME_OP = 149 if _V >= (3, 13) else 151


def _body_start(code):
    """3.11+: the offset of the RESUME that begins the body of `code`. A frame before it
    has not started: a generator or coroutine that throw() reached before it ran."""
    ops = code.co_code
    for i in range(0, len(ops) - 1, 2):
        if ops[i] == _RESUME_OP and not ops[i + 1] & 3:
            return i
    return 0


def _caller_line(frame):
    back = frame.f_back
    while back is not None:
        cid = _codes.get(id(back.f_code))
        if cid is not None and cid >= 0:
            return back.f_lineno
        back = back.f_back
    return -1


def _drop():
    global _dropped
    _dropped += 1


# Worker processes (fork children, and those multiprocessing spawns): when a thread's
# traced calls have all ended (a pool task returned), what is pending is sent at once,
# module bodies not counted (a spawned worker runs its tasks inside the body of its
# `-c` program, which never returns),
# before the worker reports its result. `with Pool() as pool:` terminates its workers
# (SIGTERM) right after their last results: the events the flusher had not sent yet
# died with them (3.13 lost all 8 calls of a small map). That is a send per task
# (about 10 us): a map over many tiny tasks is slower traced in its workers than it
# would be with sends every few milliseconds, and loses nothing.
_worker = [False]

# The standard library's task loops of worker processes, as (module, function): when
# they are traced themselves (`--include '*'`), a thread's traced calls never all end
# while it runs tasks, so a call that returns to such a loop counts as the end of its
# traced calls (the depth of the loop is the thread's `base`): the task's calls go
# out before its result (and again after the result was put and the next task got).
_TASK_LOOPS = frozenset((
    ("multiprocessing.pool", "worker"),
    ("concurrent.futures.process", "_process_worker"),
))
_task_loops = set()  # their code ids


def _entered(cid):
    """A traced call or resume of `cid` started on this thread (worker processes)."""
    depth = getattr(_tls, "depth", 0) + 1
    _tls.depth = depth
    if cid in _task_loops:
        _tls.base = depth


def _left():
    """A traced call ended on this thread (worker processes)."""
    depth = max(getattr(_tls, "depth", 0) - 1, 0)
    _tls.depth = depth
    base = getattr(_tls, "base", 0)
    if depth < base:
        _tls.base = base = 0  # the task loop itself ended
    if depth <= base:
        _top_returned()


def _top_returned():
    """Sends what is pending: a thread's traced calls have all ended in a worker."""
    if _active and _flush_lock.acquire(True, 0.1):
        try:
            if _active and not _exiting[0]:
                _flush()
        finally:
            _flush_lock.release()


def _become_worker():
    """This process is a worker: see `_worker`."""
    _worker[0] = True
    if _native is not None and _active_native[0]:
        _native.set_top_helper(_top_returned)


# ---------------------------------------------------------------------------------
# Values: a compact description of the value, printed by the tracer with the same
# rules as sampled mode (attach/src/repr.rs). `st[0]` is a lower bound of the
# printed length so far; once it passes the cut nothing more is sent.


def _kind(t):
    known = _kinds.get(id(t))
    if known is not None and known[0] is t:
        return known
    flags = _tflags(t)
    heap = flags & _HEAP
    name = _tname(t)
    if heap:
        tp_name = name
        module = _tdict(t).get("__module__")
        if type(module) is not str and _tflags(type(module)) & _STR_SUB:
            module = str.__str__(module)
        if type(module) is str and module != "builtins":
            qualified = module + "." + _tqualname(t)
        else:
            qualified = tp_name
    else:
        module = _tmodule(t)
        tp_name = name if module == "builtins" else module + "." + name
        qualified = tp_name
    kind = "o"
    for bit, k in (
        (_LONG_SUB, "i"),
        (_LIST_SUB, "l"),
        (_TUPLE_SUB, "t"),
        (_BYTES_SUB, "b"),
        (_STR_SUB, "s"),
        (_DICT_SUB, "d"),
        (_TYPE_SUB, "C"),
    ):
        if flags & bit:
            kind = k
            break
    else:
        if not heap:
            kind = {
                "NoneType": "N", "float": "f", "set": "S", "frozenset": "S", "function": "F",
                "async_generator_wrapped_value": "W",
            }.get(tp_name, "o")
        else:
            base = _tbase(t)
            if base is not None:
                bk = _kind(base)[1]
                if bk in ("f", "S"):
                    kind = bk
    if kind == "i" and not heap and tp_name == "bool":
        kind = "B"
    fields = _fields(t) if kind == "t" and heap else None
    setbase = None
    if kind == "S":
        setbase = frozenset if issubclass(t, frozenset) else set
    entry = (t, kind, tp_name, qualified, not heap and tp_name == "set", fields, setbase)
    if len(_kinds) > 4096:
        _kinds.clear()
    _kinds[id(t)] = entry
    return entry


def _fields(t):
    d = _tdict(t)
    base = _tbase(t)
    for _ in range(64):
        fields = d.get("_fields")
        if fields is not None:
            if not _tflags(type(fields)) & _TUPLE_SUB:
                return None
            names = []
            for item in tuple.__iter__(fields):
                if not _tflags(type(item)) & _STR_SUB:
                    return None
                names.append(str.__str__(item))
            return names
        if base is None or not _tflags(base) & _HEAP:
            return None
        d = _tdict(base)
        base = _tbase(base)
    return None


def _is_secret(text):
    """Whether a name holds a secret word (attach/src/redact.rs `is_secret_name`; the
    tracer sends the words). Remembered per name: dict keys and field names repeat."""
    known = _secret_names.get(text)
    if known is not None:
        return known
    lower = text.encode("utf-8", "surrogatepass").lower()
    # `bytes.find`, not `in`: `in` first tries the word as an int and builds a
    # TypeError each time.
    known = False
    for word in _secrets:
        if lower.find(word) >= 0:
            known = True
            break
    if len(_secret_names) > 4096:
        _secret_names.clear()
    _secret_names[text] = known
    return known


_secret_names = {}


def _key_text(key):
    """The text of a dict key that is a str, as the tracer sees it, else None."""
    t = type(key)
    if t is not str:
        if not _tflags(t) & _STR_SUB:
            return None
        key = str.__str__(key)
    return key[:_STR_CHARS]


def _s(text):
    data = text.encode("utf-8", "surrogatepass")
    return _U32(len(data)) + data


def _enc(v, out, depth, active, st):
    if st[0] > _MAXLEN:
        out.append(0x2E)
        raise _Cut
    t = type(v)
    if t is int:
        if -0x8000000000000000 <= v < 0x8000000000000000:
            out += b"i" + _I64(v)
        else:
            _enc_big_int(v, v, out)
        st[0] += 1
        return
    if t is str:
        _enc_str(v, out, st)
        return
    if v is None:
        out.append(0x4E)
        st[0] += 4
        return
    if t is bool:
        out.append(0x54 if v else 0x46)
        st[0] += 4
        return
    if t is float:
        out += b"f" + _F64(v)
        st[0] += 3
        return
    entry = _kind(t)
    kind = entry[1]
    if kind == "i":
        n = int.__int__(v)
        if -0x8000000000000000 <= n < 0x8000000000000000:
            out += b"i" + _I64(n)
        else:
            _enc_big_int(n, v, out)
        st[0] += 1
    elif kind == "s":
        _enc_str(str.__str__(v), out, st)
    elif kind == "b":
        data = bytes.__getitem__(v, _STR_SLICE)
        out += b"b" + _U32(len(data)) + data
        st[0] += min(len(data) + 3, 10)
    elif kind == "f":
        out += b"f" + _F64(v)
        st[0] += 3
    elif kind == "N":
        out.append(0x4E)
        st[0] += 4
    elif kind == "B":
        out.append(0x54 if v else 0x46)
        st[0] += 4
    elif kind in ("l", "t", "d", "S"):
        _enc_container(v, entry, out, depth, active, st)
    elif kind == "F":
        text = v.__qualname__
        out += b"P" + _s(text) + _I64(id(v))
        st[0] += len(text) + 18
    elif kind == "C":
        text = _kind(v)[3]
        out += b"C" + _s(text)
        st[0] += len(text) + 10
    elif kind == "W":
        # What an async generator yields reaches the yield event wrapped (so that
        # its asend() tells it from an await's): the value is the wrapper's one
        # referent, read by its type's C traverse function, not by Python code.
        _enc(_referents(v)[0], out, depth, active, st)
    else:
        text = entry[3]
        out += b"o" + _s(text) + _I64(id(v))
        st[0] += len(text) + 16


def _enc_str(s, out, st):
    n = len(s)
    if n > _STR_CHARS:
        s = s[:_STR_CHARS]
        n = _STR_CHARS
    out += b"s" + _s(s)
    st[0] += min(n + 2, 10)


def _enc_big_int(n, original, out):
    bits = n.bit_length()
    digits = (bits + 29) // 30
    if digits > 1500:
        out += b"H" + _U64X2(digits * 30, id(original))
        return
    magnitude = -n if n < 0 else n
    data = magnitude.to_bytes((bits + 7) // 8, "little")
    out += b"I" + (b"\x01" if n < 0 else b"\x00") + _U32(len(data)) + data


def _placeholder(entry):
    kind = entry[1]
    if kind == "l":
        return "[...]"
    if kind == "t":
        return "(...)" if entry[5] is None else entry[2] + "(...)"
    if kind == "S":
        return entry[2] + "(...)"
    return "{...}"


def _enc_container(v, entry, out, depth, active, st):
    kind = entry[1]
    if depth >= _DEPTH or id(v) in active:
        text = _placeholder(entry)
        out += b"p" + _s(text)
        st[0] += len(text)
        return
    active.append(id(v))
    st[0] += 2
    if kind == "d":
        total = dict.__len__(v)
        pairs = []
        if total:
            for pair in dict.items(v):
                pairs.append(pair)
                if len(pairs) >= _ITEMS:
                    break
        out += b"d" + _U32(total) + _U32(len(pairs))
        for i, (key, value) in enumerate(pairs):
            if i:
                st[0] += 2
            _enc(key, out, depth + 1, active, st)
            st[0] += 2
            text = _key_text(key)
            if text is not None and _is_secret(text):
                out.append(0x52)
                st[0] += 10
            else:
                _enc(value, out, depth + 1, active, st)
    elif kind == "S":
        base = entry[6]
        total = base.__len__(v)
        items = []
        if total:
            for item in base.__iter__(v):
                items.append(item)
                if len(items) >= _ITEMS:
                    break
        out += b"S" + _s(entry[2]) + (b"\x01" if entry[4] else b"\x00")
        out += _U32(total) + _U32(len(items))
        if not entry[4]:
            st[0] += len(entry[2]) + 2
        for i, item in enumerate(items):
            if i:
                st[0] += 2
            _enc(item, out, depth + 1, active, st)
    else:
        base = list if kind == "l" else tuple
        total = base.__len__(v)
        items = base.__getitem__(v, slice(0, _ITEMS))
        fields = entry[5]
        if fields is not None and len(fields) == total:
            out += b"n" + _s(entry[2]) + _U32(total) + _U32(len(items))
            st[0] += len(entry[2])
            for i, item in enumerate(items):
                if i:
                    st[0] += 2
                out += _s(fields[i])
                st[0] += len(fields[i]) + 1
                if _is_secret(fields[i]):
                    out.append(0x52)
                    st[0] += 10
                else:
                    _enc(item, out, depth + 1, active, st)
        else:
            out += (b"l" if kind == "l" else b"t") + _U32(total) + _U32(len(items))
            for i, item in enumerate(items):
                if i:
                    st[0] += 2
                _enc(item, out, depth + 1, active, st)
    active.pop()


def _value(v):
    """One value as bytes: its description, or `<repr failed: TYPE>`."""
    t = type(v)
    if t is int:
        if -0x8000000000000000 <= v < 0x8000000000000000:
            return b"i" + _I64(v)
    elif t is str:
        if len(v) <= _STR_CHARS:
            return b"s" + _s(v)
    elif v is None:
        return b"N"
    elif t is bool:
        return b"T" if v else b"F"
    elif t is float:
        return b"f" + _F64(v)
    out = bytearray()
    try:
        _enc(v, out, 0, [], [0])
    except _Cut:
        pass
    except BaseException as exc:
        out = bytearray(b"X" + _s(_tname(type(exc))))
    return bytes(out)


def _args(frame, cid):
    names = _argnames[cid]
    out = bytearray()
    count = 0
    if names:
        local = frame.f_locals
        for i, name in enumerate(names):
            if name in local:
                out += _U16(i) + (b"R" if _is_secret(name) else _value(local[name]))
                count += 1
    return _U16(count) + bytes(out)


def _exception_text(exc, strict=False):
    """(qualified type, message) of an exception, without running its class's code.
    `strict` (the native callbacks) lets a RecursionError of its own calls through: a
    frame just below the recursion limit, for which the caller writes what it can
    without Python (tracer_native.c `put_exception_without_helper`)."""
    t = type(exc)
    entry = _kind(t)
    qualified = entry[3]
    try:
        str_impl = None
        for klass in type.__dict__["__mro__"].__get__(t):
            found = _tdict(klass).get("__str__")
            if found is not None:
                str_impl = found
                break
        args = _exc_args(exc)
        c_str = type(str_impl) is _SlotWrapper
        plain = c_str and _plain(args, [_PLAIN_ITEMS])
        surrogate = _with_base_args(t, str_impl, args) if c_str and not plain else None
        if plain:
            message = str_impl(exc)
        elif str_impl is _GROUP_STR and type(_GROUP_MESSAGE(exc)) is str:
            message = str_impl(exc)
        elif surrogate is not None:
            message = str_impl(surrogate)
        elif len(args) == 0:
            message = ""
        elif len(args) == 1 and str_impl is _KEY_ERROR_STR:
            # KeyError's own str() is the repr of its one argument.
            message = _text_of_repr(args[0], 0, [_TEXT_CHARS])
        elif len(args) == 1 and _tflags(type(args[0])) & _STR_SUB:
            message = str.__str__(args[0])
        else:
            message = _text_of(args[0] if len(args) == 1 else args)
    except BaseException as err:
        if strict and type(err) is RecursionError:
            raise
        message = "<repr failed: " + _tname(type(err)) + ">"
    return qualified, message


def _with_base_args(t, str_impl, args):
    """For an exception whose class has a C __str__ of its own (OSError's
    `[Errno N] text`) and whose arguments are subclasses of int, float, str or bytes
    (an IntEnum errno): the same builtin exception made with those arguments as
    exact copies of their base values, so that its str() is Python's and runs no
    class's code. None when not so (its str() is then rendered from the arguments)."""
    owner = None
    for klass in _tmro(t):
        if _tdict(klass).get("__str__") is str_impl:
            owner = klass
            break
    if owner is None or owner is BaseException or _tflags(owner) & _HEAP:
        return None
    copies = []
    for value in args:
        flags = _tflags(type(value))
        if type(value) in _SCALARS:
            copies.append(value)
        elif flags & _LONG_SUB:
            copies.append(int.__int__(value))
        elif flags & _STR_SUB:
            copies.append(str.__str__(value))
        elif flags & _BYTES_SUB:
            copies.append(bytes.__getitem__(value, slice(None)))
        elif isinstance(value, float):
            copies.append(float.__float__(value))
        else:
            return None
    try:
        return owner(*copies)
    except Exception:
        return None


# The most items of builtin containers an exception's arguments may hold for its
# message to be Python's own str() of it.
_PLAIN_ITEMS = 200
_SCALARS = (str, bytes, int, float, bool, type(None))
_KEY_ERROR_STR = KeyError.__dict__["__str__"]
# An exception group's own str(), `message (N sub-exceptions)`, reads its message and
# counts its exceptions, running no class's code (with a message of type str): its
# arguments, the exceptions, are no plain values, and rendered they said
# `('message', [<ValueError object at 0x...>])` (a TaskGroup's failure). 3.11+.
try:
    _GROUP_STR = BaseExceptionGroup.__dict__["__str__"]
    _GROUP_MESSAGE = BaseExceptionGroup.__dict__["message"].__get__
except NameError:
    _GROUP_STR = _GROUP_MESSAGE = None
# The most characters an exception message rendered from its arguments is built to
# (then `...`): the rendering stops there rather than walking a huge value.
_TEXT_CHARS = 4096


def _plain(value, budget):
    """Whether `value` is made of builtin scalars and builtin containers only (at
    most `budget[0]` items in all), so that str() of an exception holding it runs
    C code alone: no class's own __repr__, nothing that could change the program."""
    t = type(value)
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if t in _SCALARS:
        return True
    if t in (tuple, list, set, frozenset):
        return all(_plain(item, budget) for item in value)
    if t is dict:
        return all(_plain(k, budget) and _plain(v, budget) for k, v in dict.items(value))
    return False


def _text_of(value):
    """A plain-text rendering for exception messages built from non-str arguments:
    what BaseException's str() gives for them, with every value as `_text_of_repr`
    renders it. An int or float subclass (an IntEnum member, pytest's ExitCode in
    `sys.exit`) is its number on every version, as in an argument: 3.8-3.10's own
    str() of an IntEnum member is its name."""
    t = type(value)
    budget = [_TEXT_CHARS]
    if t in (int, float, bool, type(None)):
        return str(value)
    if t is tuple:
        items = [_text_of_repr(x, 0, budget) for x in value[:_ITEMS]]
        return "(" + _text_items(items, len(value)) + ("," if len(value) == 1 else "") + ")"
    return _text_of_repr(value, 0, budget)


def _text_of_repr(value, depth, budget):
    """repr() of a value by the argument renderer's rules (attach/src/exact/value.rs,
    README "Reprs"): builtin scalars and containers as Python prints them (their
    first `_ITEMS` items, `_DEPTH` levels); subclasses of int, str, bytes, float,
    list, tuple and dict as their base (an IntEnum member as its number), named
    tuples as `Point(x=1, y=2)`, set subclasses as `Name({1, 2})`, classes as
    `<class 'm.C'>`, functions as `<function f at 0x...>`; `<m.Class object at
    0x...>` of anything else. Only the base types' own C methods are called, never a
    class's __repr__, __iter__ or __len__, so no code of the program runs.
    `budget[0]` is what is left of `_TEXT_CHARS`; past it, values are `...`."""
    if budget[0] <= 0:
        return "..."
    t = type(value)
    if t in _SCALARS:
        text = repr(value)
    else:
        entry = _kind(t)
        kind = entry[1]
        if kind == "i":
            text = int.__repr__(value)
        elif kind == "s":
            text = str.__repr__(value)
        elif kind == "b":
            text = bytes.__repr__(value)
        elif kind == "f":
            text = float.__repr__(value)
        elif kind in ("l", "t", "d", "S"):
            return _text_of_container(value, entry, depth, budget)
        elif kind == "C":
            text = "<class '" + _kind(value)[3] + "'>"
        elif kind == "F":
            text = "<function " + value.__qualname__ + " at " + hex(id(value)) + ">"
        else:
            text = "<" + entry[3] + " object at " + hex(id(value)) + ">"
    budget[0] -= len(text)
    return text


def _text_of_container(value, entry, depth, budget):
    """`_text_of_repr` of a list, tuple, dict or set, or of a subclass of one, read
    with the base type's methods (as `_enc_container` reads it)."""
    kind = entry[1]
    if depth >= _DEPTH:
        return _placeholder(entry)
    budget[0] -= 2
    name = entry[2]
    if kind == "d":
        total = dict.__len__(value)
        items = []
        for key, item in dict.items(value):
            if len(items) >= _ITEMS:
                break
            items.append(
                _text_of_repr(key, depth + 1, budget) + ": "
                + _text_of_repr(item, depth + 1, budget)
            )
        return "{" + _text_items(items, total) + "}"
    if kind == "S":
        base = entry[6]
        total = base.__len__(value)
        if not total:
            return name + "()"
        items = [
            _text_of_repr(x, depth + 1, budget) for x in _islice(base.__iter__(value), _ITEMS)
        ]
        inner = "{" + _text_items(items, total) + "}"
        return inner if entry[4] else name + "(" + inner + ")"
    base = list if kind == "l" else tuple
    total = base.__len__(value)
    shown = base.__getitem__(value, slice(0, _ITEMS))
    fields = entry[5]
    if kind == "t" and fields is not None and len(fields) == total:
        items = [
            fields[i] + "=" + _text_of_repr(x, depth + 1, budget) for i, x in enumerate(shown)
        ]
        return name + "(" + _text_items(items, total) + ")"
    items = [_text_of_repr(x, depth + 1, budget) for x in shown]
    if kind == "l":
        return "[" + _text_items(items, total) + "]"
    return "(" + _text_items(items, total) + ("," if total == 1 else "") + ")"


def _text_items(items, total):
    """Items joined by `, `, and `...` for those not shown (value.rs `write_more`)."""
    if total > len(items):
        items.append("...")
    return ", ".join(items)


# ---------------------------------------------------------------------------------
# Gaps: calls from traced code into code that is not traced.


def _callee_id(key, function, module, filename, line):
    cid = _callees.get(key)
    if cid is None:
        cid = len(_callee_meta)
        record = (_CALLEE, cid, function, module, filename, line)
        _callee_meta.append(record)
        _callees[key] = cid
        _q.append(record)
    return cid


def _hook_gap(code):
    """The callee id of a call into the hook's own code: the function it stands in
    for (`os._exit`, which the hook wraps), or None: the hook is never a callee."""
    stands_for = _STANDS_FOR.get(code)
    if stands_for is None:
        return None
    name, module = stands_for
    return _callee_id((name, module), name, module, "", 0)


def _gap_callee(callee):
    """The callee id of a call from traced code, or None when it is traced itself."""
    t = type(callee)
    if t is _PyMethod:
        callee = callee.__func__
        t = type(callee)
    if t is _FunctionType:
        code = callee.__code__
        if _boot and code.co_filename.startswith(_boot):
            return _hook_gap(code)
        cid = _codes.get(id(code))
        if cid is None:
            cid = _learn(code, callee.__globals__)
        if cid >= 0:
            return None
        # Named from its code and globals: `functools.wraps` gives a wrapper the
        # __qualname__ and __module__ of the function it wraps (a contextmanager's
        # helper called itself the traced function it runs).
        name = code.co_qualname if _V >= (3, 11) else code.co_name
        module = _module_of(callee.__globals__, code.co_filename)
        return _callee_id(
            (name, module, code.co_filename, code.co_firstlineno),
            name, module, code.co_filename, code.co_firstlineno,
        )
    if t is _BuiltinType:
        module = callee.__module__
        if type(module) is not str:
            owner = callee.__self__
            module = "builtins" if owner is None else _tmodule(type(owner)) if not _tflags(type(owner)) & _HEAP else _tdict(type(owner)).get("__module__", "")
            if type(module) is not str:
                module = ""
        name = callee.__qualname__
        return _callee_id((name, module), name, module, "", 0)
    if t in (_MethodDescriptor, _SlotWrapper, _MethodWrapper, _ClassMethodDescriptor):
        owner = callee.__objclass__
        module = _kind(owner)[3].rpartition(".")[0] or "builtins"
        name = callee.__qualname__
        return _callee_id((name, module), name, module, "", 0)
    if _tflags(t) & _TYPE_SUB:
        cls = callee
    else:
        cls = t
    entry = _kind(cls)
    qualified = entry[3]
    module, _, name = qualified.rpartition(".")
    # A class written in Python (or an instance of one) runs Python code of its
    # module when called: the callee gets that module's file, so the report and
    # --gaps offer the --include that traces it instead of calling it a C function.
    filename = ""
    if _tflags(cls) & _HEAP:
        name = _tqualname(cls)
        mod_obj = _tdict(cls).get("__module__")
        module = mod_obj if type(mod_obj) is str else ""
        mod = sys.modules.get(module)
        source = getattr(mod, "__file__", None) if mod is not None else None
        path = source if type(source) is str else ""
        if _includes(module, path):
            return None
        # A class of a C extension module (a .so) has no Python code to trace.
        filename = path if path.endswith(".py") else ""
    if cls is not callee:
        name += ".__call__"
    return _callee_id((name, module), name, module or "builtins", filename, 0)


# ---------------------------------------------------------------------------------
# max_calls: full detail for the first N calls of each function per second.


def _limit(cid, ts):
    window = ts // 1000000000
    if window != _limit_window[0]:
        _limit_window[0] = window
        _limit_counts.clear()
    n = _limit_counts.get(cid, 0) + 1
    _limit_counts[cid] = n
    if n <= _max_calls:
        return False
    _limited[cid] = _limited.get(cid, 0) + 1
    return True


# The per-thread stacks of "was this call detailed" kept only with max_calls.
def _limit_stack():
    try:
        return _tls.limit
    except AttributeError:
        stack = _tls.limit = []
        return stack


# ---------------------------------------------------------------------------------
# The native accelerator: loading it, and what it asks of Python.


def _load_native(boot_dir):
    """The native module beside this file, or why it did not load."""
    try:
        # The classes `importlib.machinery` re-exports, from the frozen modules every
        # interpreter has loaded already: importing `importlib.machinery` (and the
        # `warnings` it pulls in) cost 0.7 ms of every traced process's start.
        from _frozen_importlib import ModuleSpec
        from _frozen_importlib_external import ExtensionFileLoader

        path = os.path.join(boot_dir, _NATIVE_FILE)
        if not os.path.isfile(path):
            return None, "not built for this platform"
        loader = ExtensionFileLoader(_NATIVE_NAME, path)
        module = loader.create_module(ModuleSpec(_NATIVE_NAME, loader, origin=path))
        loader.exec_module(module)
        return module, None
    except Exception as exc:
        return None, "%s: %s" % (_tname(type(exc)), exc)


def _native_code(code):
    """PY_START (or PY_THROW) of a code object the native module has not seen: -1 when
    it is not traced, else (id, argument names, per name 1 if it is a secret word, 1
    if it takes exactly one argument and no *args or **kwargs, `_body_start`, 1 if it
    is a task loop of `_TASK_LOOPS`)."""
    cid = _codes.get(id(code))
    if cid is None:
        cid = _learn(code, _getframe(1).f_globals)
    if cid < 0:
        return -1
    names = _argnames[cid]
    one_arg = code.co_argcount + code.co_kwonlyargcount == 1 and not code.co_flags & 0x0C
    secret = bytes(1 if _is_secret(n) else 0 for n in names)
    start = _body_start(code) if code.co_flags & _GENERATOR_FLAGS else 0
    return (cid, names, secret, int(one_arg), start, int(cid in _task_loops))


_GENERATOR_FLAGS = 0x20 | 0x80 | 0x100 | 0x200


def _native_callee(callee):
    """A call from traced code: the callee id of a gap, -2 for a traced function
    whose start follows the call, -3 for other traced callees (a class, a
    generator function)."""
    cid = _gap_callee(callee)
    if cid is not None:
        return cid
    if type(callee) is _PyMethod:
        callee = callee.__func__
    if (
        type(callee) is _FunctionType
        and not callee.__code__.co_flags & _GENERATOR_FLAGS
        and not (_boot and callee.__code__.co_filename.startswith(_boot))
    ):
        return -2
    return -3


def _configure_native():
    _native.configure(
        sys.monitoring.DISABLE, sys.monitoring.MISSING, int(_no_args), _max_calls, _STR_CHARS,
        (_FunctionType, _PyMethod, _BuiltinType, _MethodDescriptor, _SlotWrapper,
         _ClassMethodDescriptor, _MethodWrapper),
        _native_code, _native_callee, _line, _thread_index, _value, _exception_text,
    )
    _native.configure_values(_MAXLEN, _DEPTH, _ITEMS, _secrets, _kind)


# ---------------------------------------------------------------------------------
# 3.12+: sys.monitoring callbacks.

_DISABLE = None
_LOCAL_EVENTS = 0
# The events the hook takes, in the order of its callbacks.
_EVENTS = ()


def _mon_start(code, offset):
    try:
        cid = _codes.get(id(code))
        if cid is None:
            frame = _getframe(1)
            cid = _learn(code, frame.f_globals)
            if cid < 0:
                return _DISABLE
        elif cid < 0:
            return _DISABLE
        else:
            frame = _getframe(1)
        _start(cid, frame)
    except Exception:
        pass


def _opens(cid, ts, code):
    """A call or resume of traced code `cid` (`code`) starts at `ts`: whether to
    record it (not over `--max-calls`, room in the queue: else it is counted)."""
    if _worker[0] and code.co_name != "<module>":
        _entered(cid)
    if _next_pending[0]:
        _next_call()
    if _max_calls:
        limited = _limit(cid, ts)
        _limit_stack().append(limited)
        if limited:
            return False
    if len(_q) > _QMAX:
        _drop()
        return False
    return True


def _closes():
    """A traced call ends: whether to record it (its start was not over `--max-calls`;
    room in the queue: else it is counted)."""
    if _max_calls:
        stack = _limit_stack()
        if stack and stack.pop():
            return False
    if len(_q) > _QMAX:
        _drop()
        return False
    return True


def _ended(code):
    """A traced call of `code` ended: in a worker, what is pending may go out."""
    if _worker[0] and code.co_name != "<module>":
        _left()


def _start(cid, frame):
    """The call record of traced code `cid` starting in `frame`."""
    ts = _perf()
    if not _opens(cid, ts, frame.f_code):
        return
    _q.append(
        (_CALL, cid, _thread_index(), ts, _caller_line(frame), None if _no_args else _args(frame, cid))
    )


def _mon_end(kind, code, offset, value):
    cid = _codes.get(id(code))
    if cid is None or cid < 0:
        return
    ts = _perf()
    if _closes():
        _q.append(
            (kind, cid, _thread_index(), ts, _line(code, cid, offset), None if _no_args else _value(value))
        )
    _ended(code)


def _mon_return(code, offset, value):
    try:
        _mon_end(_RETURN, code, offset, value)
    except Exception:
        pass


def _mon_yield(code, offset, value):
    try:
        _mon_end(_YIELD, code, offset, value)
    except Exception:
        pass


def _mon_resume(code, offset):
    try:
        cid = _codes.get(id(code))
        if cid is None:
            # A generator or coroutine that started before the hook was placed into
            # the running process (whose PY_RESUME is then global).
            cid = _learn(code, _getframe(1).f_globals)
        if cid < 0:
            return _DISABLE
        ts = _perf()
        if _opens(cid, ts, code):
            _q.append((_RESUME, cid, _thread_index(), ts, _line(code, cid, offset)))
    except Exception:
        pass


def _mon_throw(code, offset, exc):
    """PY_THROW, which comes instead of PY_RESUME when throw() continues a generator or
    coroutine (close(), a coroutine woken by an awaited task's exception): a resume,
    or its first start when it had not run yet (asyncio cancels tasks so)."""
    try:
        cid = _codes.get(id(code))
        if cid is None:
            cid = _learn(code, _getframe(1).f_globals)
        if cid < 0:
            return
        if offset < _body_start(code):
            _start(cid, _getframe(1))
        else:
            _mon_resume(code, offset)
    except Exception:
        pass


def _mon_unwind(code, offset, exc):
    try:
        cid = _codes.get(id(code))
        if cid is None or cid < 0:
            return
        _unwind_record(cid, code, offset, exc)
        _ended(code)
    except Exception:
        pass


def _unwind_record(cid, code, offset, exc):
    ts = _perf()
    if not _closes():
        return
    qualified, message = _exception_text(exc)
    # The frame's line, not the offset's: the offset is that of the RERAISE that
    # ends a handler's cleanup (3.12+ gives it no line), which set the frame's
    # instruction back to the one that raised, as 3.8-3.11 report it. (Frame 2: the
    # callback `_mon_unwind` is frame 1.)
    line = _getframe(2).f_lineno
    if line is None:
        line = _line(code, cid, offset)
    _q.append((_EXC, cid, _thread_index(), ts, line, qualified, message))


def _mon_call(code, offset, callee, arg0):
    try:
        cid = _codes.get(id(code))
        if cid is None or cid < 0:
            return
        callee_id = _gap_callee(callee)
        if callee_id is None:
            return
        if len(_q) > _QMAX:
            _drop()
            return
        _q.append((_GAP, cid, _thread_index(), _perf(), _line(code, cid, offset), callee_id))
    except Exception:
        pass


def _start_monitoring():
    """Takes a free tool id and installs the callbacks; None, or why it could not."""
    global _tool, _DISABLE, _LOCAL_EVENTS, _EVENTS
    mon = sys.monitoring
    ev = mon.events
    for tool in (3, 4, 5, 1, 0):
        if mon.get_tool(tool) is not None:
            continue
        try:
            mon.use_tool_id(tool, "tracer")
        except ValueError:
            continue
        _tool = tool
        break
    else:
        used = ", ".join(
            "%d (%s)" % (t, mon.get_tool(t)) for t in range(6) if mon.get_tool(t) is not None
        )
        return "no free sys.monitoring tool id: " + used + " in use"
    _DISABLE = mon.DISABLE
    _LOCAL_EVENTS = ev.PY_RETURN | ev.PY_YIELD | ev.PY_RESUME | ev.CALL
    _EVENTS = (
        ev.PY_START, ev.PY_RETURN, ev.PY_YIELD, ev.PY_RESUME, ev.PY_THROW, ev.PY_UNWIND, ev.CALL,
    )
    global _native, _native_why
    callbacks = (
        _mon_start, _mon_return, _mon_yield, _mon_resume, _mon_throw, _mon_unwind, _mon_call,
    )
    if _native is not None:
        try:
            _configure_native()
            n = _native
            callbacks = (
                n.on_start, n.on_return, n.on_yield, n.on_resume, n.on_throw, n.on_unwind,
                n.on_call, n.on_handled,
            )
            # The native CALL callback keeps the argument of the start it expects
            # next; a caught exception drops it (the call failed before its start).
            _EVENTS += (ev.EXCEPTION_HANDLED,)
        except Exception as exc:
            _native = None
            _native_why = "native did not configure: %s: %s" % (_tname(type(exc)), exc)
    for event, callback in zip(_EVENTS, callbacks):
        mon.register_callback(_tool, event, callback)
    # PY_THROW, PY_UNWIND and EXCEPTION_HANDLED cannot be set per code object. A hook
    # placed into a running process takes every PY_RESUME until each code is decided,
    # so that the generators and coroutines already running are learnt when they next
    # resume (their PY_START came before the hook).
    events = ev.PY_START | ev.PY_THROW | ev.PY_UNWIND
    if ev.EXCEPTION_HANDLED in _EVENTS:
        events |= ev.EXCEPTION_HANDLED
    if _attached[0]:
        events |= ev.PY_RESUME
    mon.set_events(_tool, events)
    return None


def _stop_monitoring():
    mon = sys.monitoring
    mon.set_events(_tool, 0)
    for record in _code_meta:
        mon.set_local_events(_tool, record[8], 0)
    for event in _EVENTS:
        mon.register_callback(_tool, event, None)
    mon.free_tool_id(_tool)


# ---------------------------------------------------------------------------------
# 3.8-3.11: sys.settrace. A `call` event comes for every frame start and generator
# resume; included frames get the local tracer (no line events), which tells a
# return, a yield and an exit by exception apart by the opcode at f_lasti (and,
# after an exception thrown in at a yield, by whether a line event came).

# A RecursionError met inside a trace callback (its own calls went past the limit) is
# swallowed, but on 3.8, which keeps the interpreter's overflow state set until the
# stack unwinds well below the limit: swallowed there, it let the program recurse on,
# past the limit, into "Cannot recover from stack overflow" (an abort). Raised again,
# it reaches the program about where it would have without the hook; CPython then
# turns tracing off for the thread (as it does on every version when calling the
# callback itself fails at the limit), and the calls still open end as `unfinished`.
_STICKY_OVERFLOW = _V < (3, 9)

_RETURN_VALUE = 83
_YIELD_VALUE = 86
_YIELD_FROM = 72
_RERAISE = 119
# In place of an instruction offset in `_pending_exc`: the frame's last instruction
# was a RERAISE (3.10, 3.11: opcode 119 in both), it is leaving by the exception.
_LEAVING = -2


def _at_yield(ops, lasti):
    """Whether the instruction at `lasti` suspends the frame: a yield, or on 3.8-3.10 a
    `yield from` or `await` (f_lasti is the instruction before its YIELD_FROM)."""
    if 0 <= lasti < len(ops) and ops[lasti] == _YIELD_VALUE:
        return True
    return _V < (3, 11) and 0 <= lasti and lasti + 2 < len(ops) and ops[lasti + 2] == _YIELD_FROM


def _first_start(frame, code):
    lasti = frame.f_lasti
    if _V < (3, 11):
        return lasti < 0
    ops = code.co_code
    if 0 <= lasti < len(ops) - 1 and ops[lasti] == _RESUME_OP and ops[lasti + 1] == 0:
        return True
    return lasti < _body_start(code)


# 3.11 resumes a coroutine or generator without a `call` event when the one it awaits
# (or delegates to) returns from a throw() (a cancelled task's CancelledError, caught
# there): _gen_throw goes on with gen_send. Its calls then went under its caller and
# its next yield was lost. The traced frames that yielded, by id, with their code: one
# that makes a call or leaves while it is here ran again unseen.
_suspended = {}
_UNSEEN_RESUMES = _V[:2] == (3, 11)


def _resumed_unseen(frame):
    """The resume record of a suspended traced `frame` that runs again (3.11)."""
    code = frame.f_code
    if _suspended.get(id(frame)) is not code:
        return
    del _suspended[id(frame)]
    cid = _codes.get(id(code))
    ts = _perf()
    if cid is not None and cid >= 0 and _opens(cid, ts, code):
        _q.append((_RESUME, cid, _thread_index(), ts, frame.f_lineno))


def _trace_call(frame, event, arg):
    if not _active:
        sys.settrace(None)
        return None
    try:
        code = frame.f_code
        cid = _codes.get(id(code))
        if cid is None:
            cid = _learn(code, frame.f_globals)
        if cid < 0:
            back = frame.f_back
            if back is not None and _codes.get(id(back.f_code), -1) >= 0 and _first_start(frame, code):
                _trace_gap(frame, code, back)
            return None
        if _suspended:
            # A first start made by a suspended frame (a resume is that of a frame it
            # awaits: 3.11's throw() into a delegating one puts it on the chain
            # without running it).
            _suspended.pop(id(frame), None)
            back = frame.f_back
            if back is not None and id(back) in _suspended and _first_start(frame, code):
                _resumed_unseen(back)
        ts = _perf()
        frame.f_trace_lines = False
        if _method_arg[cid] is not None:
            local = frame.f_locals
            name = _method_arg[cid]
            if name in local:
                cid = _variant(cid, local[name], name == "cls")
        if not _opens(cid, ts, code):
            return _trace_local
        if _first_start(frame, code):
            _q.append(
                (_CALL, cid, _thread_index(), ts, _caller_line(frame), None if _no_args else _args(frame, cid))
            )
        else:
            _q.append((_RESUME, cid, _thread_index(), ts, frame.f_lineno))
        return _trace_local
    except RecursionError:
        if _STICKY_OVERFLOW:
            raise
        return None
    except Exception:
        return None


def _trace_gap(frame, code, back):
    if _boot and code.co_filename.startswith(_boot):
        callee = _hook_gap(code)
        if callee is not None:
            _q.append((_GAP, _codes[id(back.f_code)], _thread_index(), _perf(), back.f_lineno, callee))
        return
    module = _module_of(frame.f_globals, code.co_filename)
    if _V >= (3, 11):
        name = code.co_qualname
    else:
        name = code.co_name
        first = code.co_varnames[0] if code.co_argcount else None
        if first in ("self", "cls"):
            local = frame.f_locals
            if first in local:
                cls = _first_arg_class(local[first], first == "cls")
                if cls is not None:
                    name = _method_name(code, cls, first == "cls")
    callee = _callee_id(
        (name, module, code.co_filename, code.co_firstlineno),
        name, module, code.co_filename, code.co_firstlineno,
    )
    caller = _codes[id(back.f_code)]
    _q.append((_GAP, caller, _thread_index(), _perf(), back.f_lineno, callee))


def _trace_local(frame, event, arg):
    if not _active:
        return None
    try:
        if event == "return":
            _trace_return(frame, arg)
            _ended(frame.f_code)
        elif event == "exception":
            pep479 = _pep479(frame.f_code.co_flags, arg[0])
            if pep479 is not None:
                qualified, message = "RuntimeError", pep479
            elif arg[1] is not None:
                qualified, message = _exception_text(arg[1])
            else:
                qualified, message = _kind(arg[0])[3], ""
            lasti = frame.f_lasti
            _pending_exc[id(frame)] = (qualified, message, lasti)
            if _at_yield(frame.f_code.co_code, lasti):
                # Thrown in at a yield: if the frame catches it and yields here
                # again, only a line event in between tells that yield from an exit
                # by the exception.
                frame.f_trace_lines = True
                if _V >= (3, 10):
                    # 3.10 and 3.11 leave a frame by an exception that a `with`
                    # block's handler re-raised with f_lasti back at the yield, after
                    # line events: its last instruction, a RERAISE, tells it apart.
                    frame.f_trace_opcodes = True
        elif event == "opcode":
            pending = _pending_exc.get(id(frame))
            if pending is not None:
                lasti = frame.f_lasti
                ops = frame.f_code.co_code
                leaving = 0 <= lasti < len(ops) and ops[lasti] == _RERAISE
                _pending_exc[id(frame)] = pending[:2] + (_LEAVING if leaving else -1,)
        elif event == "line":
            # The frame ran on after an exception thrown in: it was caught, or a
            # handler runs that may raise it again (its type is kept for that).
            frame.f_trace_lines = False
            pending = _pending_exc.get(id(frame))
            if pending is not None and pending[2] != _LEAVING:
                _pending_exc[id(frame)] = pending[:2] + (-1,)
    except RecursionError:
        if _STICKY_OVERFLOW:
            raise
    except Exception:
        pass
    return _trace_local


def _pep479(flags, exc_type):
    """The message of the RuntimeError that a generator, coroutine or async generator
    left by an exception of `exc_type` gives its caller instead (PEP 479), or None.
    3.12+ raise it in the frame; 3.8-3.11 only as the exception leaves it, after the
    frame's last event, which saw the StopIteration."""
    if flags & 0x200:
        if issubclass(exc_type, StopIteration):
            return "async generator raised StopIteration"
        if issubclass(exc_type, StopAsyncIteration):
            return "async generator raised StopAsyncIteration"
    elif flags & (0x20 | 0x80) and issubclass(exc_type, StopIteration):
        return "coroutine raised StopIteration" if flags & 0x80 else "generator raised StopIteration"
    return None


def _trace_return(frame, value):
    ts = _perf()
    code = frame.f_code
    cid = _codes.get(id(code))
    if cid is None or cid < 0:
        return
    pending = _pending_exc.pop(id(frame), None)
    if pending is not None and _V >= (3, 10):
        frame.f_trace_opcodes = False
    if _suspended:
        _resumed_unseen(frame)
    lasti = frame.f_lasti
    ops = code.co_code
    op = ops[lasti] if 0 <= lasti < len(ops) else -1
    if op == _RETURN_VALUE:
        kind = _RETURN
    elif _at_yield(ops, lasti):
        kind = _EXC if pending is not None and pending[2] in (lasti, _LEAVING) else _YIELD
    else:
        kind = _EXC
    if kind == _YIELD and _UNSEEN_RESUMES:
        _suspended[id(frame)] = code
    if not _closes():
        return
    tid = _thread_index()
    line = frame.f_lineno
    if kind == _EXC:
        qualified, message = pending[:2] if pending is not None else ("", "")
        _q.append((_EXC, cid, tid, ts, line, qualified, message))
    else:
        _q.append((kind, cid, tid, ts, line, None if _no_args else _value(value)))


# ---------------------------------------------------------------------------------
# Transport.


def _encode(items):
    """A batch message from queued records; events of a batch that has to be dropped
    are counted by the caller."""
    parts = []
    gaps = {}
    for item in items:
        kind = item[0]
        if kind == _GAP:
            key = (item[2], item[1])
            per_call = gaps.get(key)
            if per_call is None:
                per_call = gaps[key] = {}
            seen = per_call.get(item[5])
            if seen is None:
                per_call[item[5]] = [1, item[3], item[4]]
            else:
                seen[0] += 1
            continue
        if kind in (_CALL, _RETURN, _YIELD):
            # The gaps of this code's call that ran so far go out first: before its
            # end, and before another call of the same code starts (recursion), so
            # that the tracer gives them to the call that made them, the innermost
            # open call of their code (see `_base_cid`).
            if gaps:
                _emit_gaps(parts, gaps, (item[2], _base_cid(item[1])))
            parts.append(_EV(kind, item[1], item[2], item[3], item[4]))
            payload = item[5]
            if kind == _CALL:
                parts.append(b"\xff\xff" if payload is None else payload)
            else:
                parts.append(b"z" if payload is None else payload)
        elif kind == _RESUME:
            if gaps:
                _emit_gaps(parts, gaps, (item[2], _base_cid(item[1])))
            parts.append(_EV(kind, item[1], item[2], item[3], item[4]))
        elif kind == _EXC:
            if gaps:
                _emit_gaps(parts, gaps, (item[2], _base_cid(item[1])))
            parts.append(_EV(kind, item[1], item[2], item[3], item[4]))
            parts.append(_s(item[5]))
            parts.append(_s(item[6]))
        elif kind == _CODE:
            parts.append(bytes((kind,)) + _U32(item[1]) + _U32(item[7]) + _s(item[2]))
            parts.append(_s(item[3]) + _s(item[4]) + _I32(item[5]) + _U16(len(item[6])))
            for name in item[6]:
                parts.append(_s(name))
        elif kind == _THREAD:
            parts.append(bytes((kind,)) + _U32(item[1]) + _I64(item[2]) + _s(item[3]))
        elif kind == _CALLEE:
            parts.append(bytes((kind,)) + _U32(item[1]) + _s(item[2]) + _s(item[3]) + _s(item[4]))
            parts.append(_I32(item[5]))
        elif kind == _LIMITED:
            parts.append(_LIMREC(_LIMITED, item[1], item[2]))
    for key in list(gaps):
        _emit_gaps(parts, gaps, key)
    return parts


def _base_cid(cid):
    """The code id gaps are counted under for records of `cid`: its own, or for a
    ≤3.10 `Class.method` variant the id of the code it names (`_variant`)."""
    if 0 <= cid < len(_code_meta):
        return _code_meta[cid][7]
    return cid


def _emit_gaps(parts, gaps, key):
    per_call = gaps.pop(key, None)
    if per_call:
        tid, cid = key
        for callee, (count, ts, line) in per_call.items():
            parts.append(_GAPREC(_GAP, cid, tid, ts, line, callee, count))


def _message(kind, body):
    return _FRAME(len(body) + 1, kind) + body


def _is_event(item):
    return item[0] in (_CALL, _RETURN, _YIELD, _RESUME, _EXC, _GAP)


def _queue(message):
    """Queues a framed message behind the batches."""
    if _active_native[0]:
        _native.queue(message)
    else:
        _backlog.extend(message)


def _pending():
    """Bytes queued for the socket and not sent yet."""
    return _native.pending() if _active_native[0] else len(_backlog)


def _sock_is_ours():
    """Whether the hook's socket still holds its descriptor number. A program may close
    descriptors it did not open (a daemon's `os.closerange(3, ...)`): the number then
    goes to the program's next file or socket, which the hook must never send to,
    read from or close. A socket found lost is let go without closing that number,
    and the hook stops as if the tracer had gone."""
    if _sock is None:
        return False
    try:
        if _identity(_sock.fileno()) == _sock_id[0]:
            return True
    except OSError:
        pass
    _sock.detach()
    return False


def _identity(fd):
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _close_sock():
    """Closes the hook's socket, unless its number is no longer the hook's."""
    try:
        if _sock_is_ours():
            _sock.close()
    except OSError:
        pass


def _send_pending():
    """Sends as much of the backlog as the socket takes now; False if it is gone.
    With the native callbacks the queue is the native module's, sent from with the
    GIL released."""
    global _backlog
    if not _sock_is_ours():
        return False
    if _active_native[0]:
        return _native.send(_sock.fileno()) >= 0
    while _backlog:
        try:
            sent = _sock.send(_backlog, _socket.MSG_NOSIGNAL | _socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except InterruptedError:
            continue
        except OSError:
            return False
        if sent <= 0:
            return False
        del _backlog[:sent]
    return True


def _take_items():
    """The records the Python side queued (code, thread and callee records, and the
    events of the pure-Python callbacks)."""
    items = []
    pop = _q.popleft
    try:
        for _ in range(len(_q)):
            items.append(pop())
    except IndexError:
        pass
    if _limited:
        for cid in list(_limited):
            items.append((_LIMITED, cid, _limited.pop(cid)))
    return items


def _without_events(items):
    """`items` less their events, which are counted as dropped (the backlog is full;
    the code, thread and callee records still go)."""
    global _dropped
    kept = [item for item in items if not _is_event(item)]
    _dropped += len(items) - len(kept)
    return kept


def _flush():
    """Moves queued records into the backlog (or drops their events) and sends; False
    if the tracer is gone."""
    global _dropped
    if _active_native[0]:
        # The native records first: the code, thread and callee records they name
        # are queued before them, so they are in `_q` by now and go first in the
        # batch.
        events, dropped = _native.stage()
        _dropped += dropped
        items = _take_items()
        drop = _native.pending() > _BACKLOG_MAX
        if drop:
            items = _without_events(items)
            _dropped += events
        size = _native.frame(b"".join(_encode(items)), _dropped, drop, _MSG_BATCH)
        renamed = _renamed_threads()
        if renamed:
            size += _native.frame(b"".join(_encode(renamed)), _dropped, 0, _MSG_BATCH)
        alive = _send_pending()
        # A big batch, or a socket that did not take it all: come back soon.
        _busy[0] = size > _BUSY_BATCH or _native.pending() > 0
        return alive
    items = _take_items() + _renamed_threads()
    if items:
        if len(_backlog) > _BACKLOG_MAX:
            items = _without_events(items)
        parts = _encode(items)
        size = 8 + sum(len(p) for p in parts)
        _busy[0] = size > _BUSY_BATCH
        _backlog.extend(_FRAME(size + 1, _MSG_BATCH))
        _backlog.extend(_I64(_dropped))
        for part in parts:
            _backlog.extend(part)
    else:
        _busy[0] = False
    return _send_pending()


# A batch this big means events come fast: the flusher comes back sooner, so that
# buffers stay small.
_BUSY_BATCH = 256 << 10
_busy = [False]


def _peer_closed():
    if not _sock_is_ours():
        return True
    try:
        data = _sock.recv(1, _socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return not data


def _flusher(generation, running):
    """Sends what the callbacks record, until the hook stops; `running` is
    `_flusher_running`, taken for this thread by `_start_flusher`."""
    _flusher_tid[0] = _thread.get_native_id()
    try:
        while True:
            if generation != _generation[0]:
                return
            if _exiting[0]:
                # Parked for good, with the GIL released, never to run again: see
                # `_flusher_parked`.
                running.release()
                _flusher_parked.acquire()
            if not _active:
                return
            if _active_native[0]:
                # Woken sooner when a burst of events fills a batch.
                _native.wait(5 if _busy[0] else 50)
            elif _flusher_wake.acquire(True, 0.005 if _busy[0] else 0.05):
                _flusher_wake.release()
            with _flush_lock:
                # Checked under the lock: the exit hook may have sent everything and
                # closed the socket while this thread waited for it.
                if generation != _generation[0] or _exiting[0] or not _active:
                    continue
                alive = _flush() and not _peer_closed()
            if not alive:
                _detach()
                return
    finally:
        running.release()


_generation = [0]
# Held for the flusher from before it starts until it is parked or ends, so that the
# exit hook can wait for that. Taken by the thread that starts it, not by the flusher
# itself: a flusher the OS had not run yet when the program ended would first take the
# GIL while the interpreter finalizes, and be ended there with pthread_exit (below). On
# a short program this is the common case: the new thread waits for the GIL, which the
# main thread holds until it blocks.
_flusher_running = _thread.allocate_lock()
# Never released: at exit the flusher blocks on it (with the GIL released) until the
# process ends, instead of returning. A thread that ends calls pthread_exit, and one
# that wakes while the interpreter finalizes is ended with pthread_exit; either,
# racing with the main thread's exit, crashed 3.9 and 3.11 with SIGSEGV now and then
# (the first pthread_exit of a process loads libgcc_s to unwind). A thread blocked
# on a lock does nothing while the process exits.
_flusher_parked = _thread.allocate_lock()
_flusher_parked.acquire()
# Set by the exit hook before it wakes the flusher.
_exiting = [False]
# Held by the hook; released at exit, which ends the flusher's pause at once (the
# native flusher is woken by `_native.wake()`).
_flusher_wake = _thread.allocate_lock()
_flusher_wake.acquire()


def _start_flusher():
    _flusher_running.acquire()
    try:
        _thread.start_new_thread(_flusher, (_generation[0], _flusher_running))
    except BaseException:
        _flusher_running.release()
        raise


def _wake_flusher():
    if _active_native[0]:
        _native.wake()
    elif _flusher_wake.locked():
        _flusher_wake.release()


def _stop_flusher():
    """Wakes the flusher (`_exiting` is set by now) and waits until it is parked. The
    wait is bounded, for a process stopped by a debugger; a flusher takes microseconds
    to start and park, seconds only on a machine starved of CPU."""
    _wake_flusher()
    if _flusher_running.acquire(True, 5.0):
        _flusher_running.release()


def _detach():
    """Stops tracing and frees what the hook took: the tracer is gone. A process the
    hook was placed into while running is left as it was: the exit hooks are taken
    back and the hook's tables emptied (the fork handlers and the audit hook, which
    cannot be taken back, do nothing once inactive), so attaching again and again does
    not add up."""
    global _active, _backlog, _tls
    if not _active:
        return
    _active = False
    _fork_handler[0] = None
    _exec_handler[0] = None
    if _audit_module[0] is not None:
        _audit_module[0].set_exec_handler(None)
    _fork_before[0] = None
    _fork_parent[0] = None
    try:
        atexit.unregister(_at_exit)
        if os._exit is _exit:
            os._exit = _original_exit
    except Exception:
        pass
    try:
        if _MONITORING:
            _stop_monitoring()
        else:
            sys.settrace(None)
            threading = sys.modules.get("threading")
            if threading is not None:
                threading.settrace(None)
    except Exception:
        pass
    _q.clear()
    _codes.clear()
    _kept_codes.clear()
    _included.clear()
    _code_meta.clear()
    _argnames.clear()
    _method_arg.clear()
    _task_loops.clear()
    _limited.clear()
    _pending_exc.clear()
    _suspended.clear()
    _thread_names.clear()
    _backlog = bytearray()
    if _native is not None and _active_native[0]:
        _native.discard()
    _tls = _thread._local()
    _close_sock()


def _final_flush(deadline_ns):
    """At exit: everything pending goes out, waiting for the socket up to a deadline."""
    with _flush_lock:
        ok = _flush()
        _queue(_message(_MSG_BYE, _I64(_dropped)))
        while ok and _pending() and _perf() < deadline_ns:
            ok = _send_pending()
            if ok and _pending():
                sleep(0.002)


def _at_exit():
    global _active
    if not _active:
        return
    # Before `_active` is cleared: a flusher that sees either parks (`_flusher`).
    _exiting[0] = True
    try:
        if _MONITORING:
            _stop_monitoring()
        else:
            sys.settrace(None)
            threading = sys.modules.get("threading")
            if threading is not None:
                threading.settrace(None)
    except Exception:
        pass
    _active = False
    try:
        _final_flush(_perf() + 5 * 1000000000)
        _close_sock()
    except Exception:
        pass
    try:
        _stop_flusher()
    except Exception:
        pass


_original_exit = os._exit


def _send_before_leaving(bye):
    """Sends what is pending (then a goodbye when `bye`), waiting for the socket up to
    2 s: the process is about to end or to become another program."""
    if _active and os.getpid() == _pid:
        try:
            with _flush_lock:
                _flush()
                if bye:
                    _queue(_message(_MSG_BYE, _I64(_dropped)))
                deadline = _perf() + 2 * 1000000000
                while _pending() and _perf() < deadline and _send_pending():
                    if _pending():
                        sleep(0.002)
        except Exception:
            pass


def _exit(status):
    """os._exit, after sending what is pending (multiprocessing workers end so)."""
    _send_before_leaving(True)
    _original_exit(status)


def _before_exec():
    """An exec replaces the process's memory, the hook's queue with it: a program that
    ended in `os.execv` (a launcher, a re-exec) lost every event it had not sent. Called
    from an audit hook (PEP 578) at the `os.exec` event that every `os.exec*` raises
    first, not from a wrapper of `os.execv`: a failed exec's traceback has no frame of
    the hook's. No goodbye: an exec that fails returns, and the program runs on, traced."""
    _send_before_leaving(False)


# The hook's functions that a program calls in place of its own: a call of one is a
# gap into what it stands for, (name, module).
_STANDS_FOR = {_exit.__code__: ("_exit", getattr(_original_exit, "__module__", None) or "posix")}


def _connect():
    global _sock
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 4 << 20)
    except OSError:
        pass
    sock.settimeout(5.0)
    sock.connect(_cfg["sock"])
    _sock = sock
    _sock_id[0] = _identity(sock.fileno())


def _argv():
    """The process's command line, as the kernel has it (`sys.argv` is not set yet
    when the bootstrap runs)."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return list(getattr(sys, "argv", ()))


def _hello(mechanism):
    argv = _argv()
    wall = time_ns()
    perf = _perf()
    body = _s(_cfg.get("token", "")) + _U32(os.getpid()) + _U32(os.getppid())
    body += _s("%d.%d.%d" % sys.version_info[:3]) + _s(sys.executable or "")
    body += _U32(len(argv)) + b"".join(_s(a) for a in argv)
    body += _I64(wall) + _I64(perf) + _s(mechanism) + _s(os.getcwd())
    # The native callbacks may stamp events with the CPU's time-stamp counter; then
    # the greeting carries its first anchor (wire.rs).
    anchor = _native.anchor() if _active_native[0] else None
    if anchor is None:
        body += b"\x00"
    else:
        body += b"\x01" + _I64(anchor[0]) + _I64(anchor[1])
    return _message(_MSG_HELLO, body)


def _send_blocking(data):
    _sock.settimeout(5.0)
    _sock.sendall(data)
    _sock.setblocking(False)


# The fork handlers go through cells that `_detach` empties: `os.register_at_fork`
# cannot be undone, and a handler holding this module would keep all of it alive after
# the hook was removed from a running process.
_fork_handler = [None]
_fork_before = [None]
_fork_parent = [None]
# So does the audit hook's (`_before_exec`): an audit hook cannot be removed either.
_exec_handler = [None]
# The native module whose C audit hook calls `_before_exec`, or None.
_audit_module = [None]


def _after_fork():
    handler = cell[0]  # noqa: F821 (the global of the trampoline's own namespace)
    if handler is not None:
        handler()


def _fork_trampoline(cell):
    """A function whose globals are the cell alone, calling what the cell holds: the
    code of `_after_fork` with a namespace of its own (made without `exec`, which would
    compile at every start)."""
    return _FunctionType(_after_fork.__code__, {"cell": cell}, "after_fork")


def _on_audit(event, args):
    if event == "os.exec":
        handler = cell[0]  # noqa: F821 (the global of the trampoline's own namespace)
        if handler is not None:
            handler()


def _audit_trampoline(cell):
    """The audit hook where the native module does not load (3.8-3.11; its
    `on_audit` pushes no frame): `_on_audit`'s code with the cell alone as its
    globals, as `_fork_trampoline` makes the fork handlers."""
    return _FunctionType(_on_audit.__code__, {"cell": cell}, "audit")


# The flusher's thread id (the kernel's), for `_before_fork`.
_flusher_tid = [0]


def _before_fork():
    """3.12+ warns at os.fork() when the process has more than one thread (on stderr,
    from the program's own fork), and the flusher would be one: it is ended before a
    fork, what it holds staying queued, and started again after it
    (`_after_fork_in_parent`, `_after_fork_in_child`). The waits are bounded: at worst
    the program sees the warning it would see with a thread of its own."""
    if _V < (3, 12) or not _active or _exiting[0]:
        return
    _generation[0] += 1
    _wake_flusher()
    if not _flusher_running.acquire(True, 1.0):
        return
    _flusher_running.release()
    # What the thread held is sent now, as far as the socket takes it without
    # waiting: a program that forks again and again (3.13 starts the thread again
    # only at its next traced call) sent nothing until it exited, its queue filled
    # and dropped events, and a detach went unnoticed.
    try:
        with _flush_lock:
            alive = _flush() and not _peer_closed()
    except Exception:
        alive = True
    if not alive:
        _detach()
        return
    # The thread has returned; the kernel lists it until it has ended.
    task = "/proc/self/task/%d" % _flusher_tid[0]
    deadline = _perf() + 50 * 1000000
    while _flusher_tid[0] and _exists(task) and _perf() < deadline:
        sleep(0.0001)


def _exists(path):
    """os.path.exists without its Python frame: code the hook runs outside its
    callbacks (an at-fork handler) is traced like the program's when it calls Python
    functions, and would show in the trace as the program's calls."""
    try:
        _stat(path)
    except OSError:
        return False
    return True


_stat = os.stat


def _after_fork_in_parent():
    if _V < (3, 12) or not _active or _exiting[0]:
        return
    _resume_pending[0] = True
    if _V < (3, 13):
        _resume_flusher()
        return
    # 3.13 counts the threads after the at-fork handlers: the flusher starts at the
    # next call of traced code, which the callbacks (native or Python) look out for.
    _at_next_call()


def _resume_flusher():
    """Starts the flusher again after a fork, in the parent."""
    if not _resume_pending[0]:
        return
    _resume_pending[0] = False
    if not _active or _exiting[0]:
        return
    # A flusher that did not end in time still holds the lock: it ends when it next
    # looks at the generation, and what it leaves is sent at the next fork or at exit
    # (or dropped and counted when the queue is full). Never wait here.
    if not _flusher_running.acquire(False):
        return
    _flusher_running.release()
    try:
        _start_flusher()
    except Exception:
        pass


# Whether the flusher is to be started again after a fork (`_after_fork_in_parent`).
_resume_pending = [False]
# Whether the bootstrap's own `sitecustomize` entry is to leave `sys.modules`.
_forget_pending = [False]
# Whether `_next_call` has something to do (the Python callbacks test it).
_next_pending = [False]


def _at_next_call():
    """Runs `_next_call` at the next start of traced code."""
    _next_pending[0] = True
    if _native is not None and _active_native[0]:
        _native.at_next_call(_next_call)


def _next_call():
    """What waits for the next start of traced code: the flusher after a fork (3.13),
    the bootstrap's `sitecustomize` entry once `site` has imported it."""
    _next_pending[0] = False
    if _resume_pending[0]:
        _resume_flusher()
    if _forget_pending[0]:
        if _forget_bootstrap_module():
            _forget_pending[0] = False
        else:
            _at_next_call()


def forget_bootstrap_later():
    """Called by the bootstrap when the program has no `sitecustomize` of its own: the
    bootstrap, imported by `site` under that name, leaves `sys.modules` at the next
    start of traced code, so that the program's own `import sitecustomize` (from a
    folder it adds, or none) goes as without the tracer. Not while `site` imports
    it: the import puts the entry back when it ends, and fails without it."""
    _forget_pending[0] = True
    _at_next_call()


def _forget_bootstrap_module():
    """False while the bootstrap's `sitecustomize` is still being imported."""
    module = sys.modules.get("sitecustomize")
    where = getattr(module, "__file__", None)
    if type(where) is not str or not _boot or not where.startswith(_boot):
        return True
    spec = getattr(module, "__spec__", None)
    if spec is not None and getattr(spec, "_initializing", False):
        return False
    sys.modules.pop("sitecustomize", None)
    return True


def _after_fork_in_child():
    global _sock, _active, _pid, _backlog, _tls, _dropped, _flush_lock, _flusher_running
    if not _active:
        return
    _pid = os.getpid()
    _close_sock()
    _q.clear()
    _backlog = bytearray()
    _dropped = 0
    _tls = _thread._local()
    _next_thread[0] = 0
    _thread_names.clear()
    _limited.clear()
    _pending_exc.clear()
    _suspended.clear()
    _flush_lock = _thread.allocate_lock()
    _flusher_running = _thread.allocate_lock()
    _generation[0] += 1
    if _native is not None and _active_native[0]:
        _native.after_fork()
    if _cfg.get("sub") != "1":
        _detach()
        return
    try:
        _connect()
        _send_blocking(_hello(_mechanism[0]))
        for record in _code_meta:
            _q.append(record)
        for record in _callee_meta:
            _q.append(record)
        _start_flusher()
        _become_worker()
    except Exception:
        _detach()


_mechanism = [""]
# Whether the hook was placed into a running process (`tracer attach --exact`), not
# loaded as the program started.
_attached = [False]
# Whether the native callbacks are the ones registered.
_active_native = [False]


def _clean_environment():
    """Without subprocess tracing, the program's environment is as it was given, and
    its children do not load the hook."""
    if _cfg.get("sub") == "1":
        return
    os.environ.pop("TRACER_EXACT", None)
    if "pp" in _cfg:
        os.environ["PYTHONPATH"] = _cfg["pp"]
    else:
        os.environ.pop("PYTHONPATH", None)


def start(boot_dir, config=None):
    """Connects to the tracer and starts tracing; called once by the bootstrap (the
    configuration in `TRACER_EXACT`, then cleaned from the environment) or by a loader
    injected into a running process (`config` given: the environment is not touched)."""
    global _cfg, _boot, _active, _no_args, _include, _exclude, _cwd, _stdlib
    global _MAXLEN, _DEPTH, _ITEMS, _STR_CHARS, _STR_SLICE, _max_calls, _secrets
    global _BACKLOG_MAX
    text = config if config is not None else os.environ.get("TRACER_EXACT")
    if not text:
        return
    _cfg = _parse_config(text)
    _attached[0] = config is not None
    if config is None:
        _clean_environment()
    _boot = boot_dir.rstrip("/") + "/"
    _no_args = _cfg.get("noargs") == "1"
    _include = [p.strip() for p in _cfg.get("include", "").split("\x1f") if p.strip()]
    _exclude = [p.strip() for p in _cfg.get("exclude", "").split("\x1f") if p.strip()]
    _MAXLEN = int(_cfg.get("maxlen", "200"))
    _DEPTH = int(_cfg.get("depth", "6"))
    _ITEMS = int(_cfg.get("items", "32"))
    _max_calls = int(_cfg.get("maxcalls", "0"))
    _BACKLOG_MAX = int(_cfg.get("backlog", str(_BACKLOG_MAX)))
    _secrets = tuple(
        w.encode("utf-8", "surrogateescape") for w in _cfg.get("secrets", "").split("\x1f") if w
    )
    _STR_CHARS = max(4096, _MAXLEN)
    _STR_SLICE = slice(0, _STR_CHARS)
    _cwd = os.getcwd()
    _stdlib = [os.path.dirname(os.__file__)]
    prefix = os.path.dirname(os.path.dirname(sys.executable or ""))
    lib = os.path.join(prefix, "lib", "python%d.%d" % _V)
    if lib not in _stdlib:
        _stdlib.append(lib)
    _connect()
    problem = None
    if _MONITORING:
        global _native, _native_why
        if _cfg.get("native") == "0":
            _native_why = "native off"
        else:
            _native, why = _load_native(_boot)
            if _native is None:
                _native_why = "native did not load: " + why
        problem = _start_monitoring()
        _active_native[0] = problem is None and _native is not None
        how = "native" if _active_native[0] else "python; " + _native_why
        mechanism = "sys.monitoring tool %d (%s)" % (_tool, how) if problem is None else "none"
    elif sys.gettrace() is not None:
        problem = "sys.settrace is already in use by another tool"
        mechanism = "none"
    else:
        mechanism = "sys.settrace"
    _mechanism[0] = mechanism
    _send_blocking(_hello(mechanism))
    if problem is not None:
        _send_blocking(_message(_MSG_ERROR, _s(problem)))
        _close_sock()
        return
    _active = True
    if not _MONITORING:
        import threading

        threading.settrace(_trace_call)
        sys.settrace(_trace_call)
    atexit.register(_at_exit)
    _fork_handler[0] = _after_fork_in_child
    _fork_before[0] = _before_fork
    _fork_parent[0] = _after_fork_in_parent
    os.register_at_fork(
        before=_fork_trampoline(_fork_before),
        after_in_parent=_fork_trampoline(_fork_parent),
        after_in_child=_fork_trampoline(_fork_handler),
    )
    os._exit = _exit
    # The native module's C audit hook wherever the module loads (3.12+), also under
    # the Python callbacks (`TRACER_EXACT_NATIVE=0`, a module that did not configure):
    # a Python audit hook pushes a frame at every audited call (`sys._getframe` in the
    # callbacks too), which fails one frame below the recursion limit.
    audit = _native
    if audit is None and _MONITORING:
        audit = _load_native(_boot)[0]
    _audit_module[0] = audit
    if audit is not None:
        if audit.set_exec_handler(_before_exec):
            sys.addaudithook(audit.on_audit)
    else:
        _exec_handler[0] = _before_exec
        sys.addaudithook(_audit_trampoline(_exec_handler))
    _start_flusher()
    if "--multiprocessing-fork" in _argv():
        _become_worker()
