/* The part of CPython's stable ABI that the exact-mode accelerator uses, declared here
 * so that building it needs no Python headers.
 *
 * The stable ABI (PEP 384, PEP 652) promises that these layouts, constants and
 * functions never change across 3.x; each declaration names the header of CPython's
 * Include/ that defines it for Py_LIMITED_API and the version that added it to the
 * stable ABI. Functions outside the stable ABI are not declared here: the module looks
 * them up at run time (dlsym) and has a fallback when they are missing.
 *
 * Only the non-debug, GIL build on a 64-bit platform is described (Py_TRACE_REFS and
 * the free-threaded build change PyObject; neither is supported). */
#ifndef TRACER_LIMITED_API_H
#define TRACER_LIMITED_API_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Include/pyport.h: Py_ssize_t is ssize_t. */
typedef ssize_t Py_ssize_t;

/* Include/object.h: the object header (stable ABI 3.2). */
typedef struct _typeobject PyTypeObject; /* opaque in the limited API */
typedef struct _object {
    Py_ssize_t ob_refcnt;
    PyTypeObject *ob_type;
} PyObject;
#define Py_TYPE(o) (((PyObject *)(o))->ob_type)

/* Include/object.h: reference counting as functions (stable ABI 3.2), which stay
 * right whatever the interpreter does with immortal objects. */
void Py_IncRef(PyObject *);
void Py_DecRef(PyObject *);

/* Include/object.h: singletons and type objects (stable ABI 3.2). */
extern PyObject _Py_NoneStruct;
extern PyObject _Py_TrueStruct;  /* Include/boolobject.h */
extern PyObject _Py_FalseStruct; /* Include/boolobject.h */
#define Py_None (&_Py_NoneStruct)
#define Py_True (&_Py_TrueStruct)
#define Py_False (&_Py_FalseStruct)
extern PyTypeObject PyLong_Type;    /* Include/longobject.h */
extern PyTypeObject PyFloat_Type;   /* Include/floatobject.h */
extern PyTypeObject PyUnicode_Type; /* Include/unicodeobject.h */
extern PyTypeObject PyModule_Type;  /* Include/moduleobject.h */
extern PyTypeObject PyBytes_Type;   /* Include/bytesobject.h */
extern PyTypeObject PyList_Type;    /* Include/listobject.h */
extern PyTypeObject PyTuple_Type;   /* Include/tupleobject.h */
extern PyTypeObject PyDict_Type;    /* Include/dictobject.h */
extern PyObject *PyExc_RuntimeError; /* Include/pyerrors.h */

/* Include/object.h: type flags (stable ABI 3.2). */
unsigned long PyType_GetFlags(PyTypeObject *);
int PyType_IsSubtype(PyTypeObject *, PyTypeObject *);
#define Py_TPFLAGS_TYPE_SUBCLASS (1UL << 31)
#define Py_TPFLAGS_UNICODE_SUBCLASS (1UL << 28)
#define PyUnicode_Check(o) ((PyType_GetFlags(Py_TYPE(o)) & Py_TPFLAGS_UNICODE_SUBCLASS) != 0)

/* Include/methodobject.h (stable ABI 3.2; METH_FASTCALL: 3.10). */
typedef PyObject *(*PyCFunction)(PyObject *, PyObject *);
typedef struct PyMethodDef {
    const char *ml_name;
    PyCFunction ml_meth;
    int ml_flags;
    const char *ml_doc;
} PyMethodDef;
#define METH_VARARGS 0x0001
#define METH_NOARGS 0x0004
#define METH_O 0x0008
#define METH_FASTCALL 0x0080
PyObject *PyCFunction_GetSelf(PyObject *);

/* Include/moduleobject.h (stable ABI 3.2). */
typedef struct PyModuleDef_Base {
    PyObject ob_base;
    PyObject *(*m_init)(void);
    Py_ssize_t m_index;
    PyObject *m_copy;
} PyModuleDef_Base;
#define PyModuleDef_HEAD_INIT {{1, NULL}, NULL, 0, NULL}
typedef struct PyModuleDef {
    PyModuleDef_Base m_base;
    const char *m_name;
    const char *m_doc;
    Py_ssize_t m_size;
    PyMethodDef *m_methods;
    void *m_slots;
    void *m_traverse;
    void *m_clear;
    void *m_free;
} PyModuleDef;
/* Include/modsupport.h: PyModule_Create is PyModule_Create2(def, PYTHON_ABI_VERSION). */
#define PYTHON_ABI_VERSION 3
PyObject *PyModule_Create2(PyModuleDef *, int apiver);

/* Include/longobject.h, floatobject.h (stable ABI 3.2). */
PyObject *PyLong_FromLong(long);
long PyLong_AsLong(PyObject *);
long long PyLong_AsLongLongAndOverflow(PyObject *, int *);
double PyFloat_AsDouble(PyObject *);

/* Include/object.h: a type's names and slots (stable ABI; PyType_GetSlot: 3.4, of a
 * static type 3.10; PyType_GetQualName: 3.11). Include/typeslots.h: Py_tp_str. */
PyObject *PyType_GetQualName(PyTypeObject *);
void *PyType_GetSlot(PyTypeObject *, int);
#define Py_tp_str 70

/* Include/unicodeobject.h (stable ABI 3.2; PyUnicode_AsUTF8AndSize: 3.10). */
PyObject *PyUnicode_FromString(const char *);
PyObject *PyUnicode_FromFormat(const char *, ...);
int PyUnicode_CompareWithASCIIString(PyObject *, const char *);
Py_ssize_t PyUnicode_GetLength(PyObject *);
const char *PyUnicode_AsUTF8AndSize(PyObject *, Py_ssize_t *);
PyObject *PyUnicode_AsEncodedString(PyObject *, const char *, const char *);
PyObject *PyUnicode_Substring(PyObject *, Py_ssize_t, Py_ssize_t); /* 3.3 */

/* Include/bytesobject.h, tupleobject.h (stable ABI 3.2). */
PyObject *PyBytes_FromStringAndSize(const char *, Py_ssize_t);
int PyBytes_AsStringAndSize(PyObject *, char **, Py_ssize_t *);
Py_ssize_t PyTuple_Size(PyObject *);
PyObject *PyTuple_GetItem(PyObject *, Py_ssize_t);
PyObject *PyTuple_Pack(Py_ssize_t, ...);

/* Include/listobject.h, dictobject.h (stable ABI 3.2). */
PyObject *PyList_New(Py_ssize_t);
Py_ssize_t PyList_Size(PyObject *);
PyObject *PyList_GetItem(PyObject *, Py_ssize_t);
PyObject *PyList_GetSlice(PyObject *, Py_ssize_t, Py_ssize_t);
int PyList_Append(PyObject *, PyObject *);
Py_ssize_t PyDict_Size(PyObject *);
int PyDict_Next(PyObject *, Py_ssize_t *, PyObject **, PyObject **);

/* Include/abstract.h, object.h (stable ABI 3.2). */
PyObject *PyObject_CallFunctionObjArgs(PyObject *, ...);
PyObject *PyObject_GetAttrString(PyObject *, const char *);
PyObject *PyObject_GetItem(PyObject *, PyObject *);

/* Include/pyerrors.h (stable ABI 3.2). */
extern PyObject *PyExc_BaseException;
PyObject *PyErr_Occurred(void);
void PyErr_Clear(void);
void PyErr_SetString(PyObject *, const char *);

/* Include/ceval.h: releasing the GIL around a blocking call (stable ABI 3.2). */
typedef struct _ts PyThreadState;
PyThreadState *PyEval_SaveThread(void);
void PyEval_RestoreThread(PyThreadState *);

/* Include/longobject.h (stable ABI 3.2). */
PyObject *PyLong_FromLongLong(long long);
long long PyLong_AsLongLong(PyObject *);

/* Include/ceval.h and pyframe.h: frames are opaque (stable ABI 3.2;
 * PyFrame_GetCode: 3.10). */
typedef struct _frame PyFrameObject;
PyFrameObject *PyEval_GetFrame(void);
int PyFrame_GetLineNumber(PyFrameObject *);
PyObject *PyFrame_GetCode(PyFrameObject *);

#endif
