/* The least a sys.monitoring callback can do, for bench/exact/floor.py: a
 * METH_FASTCALL function that takes any arguments and returns None. */
#include <Python.h>

static PyObject *noop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"noop", (PyCFunction)(void (*)(void))noop, METH_FASTCALL, "Does nothing."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "floor_noop", NULL, -1, methods};

PyMODINIT_FUNC PyInit_floor_noop(void)
{
    return PyModule_Create(&module);
}
