/* The one way the C extension reports a failed system call: OSError(errno, "call(args)"). */
#include "t2mpi_native.h"

PyObject *t2n_raise_errno(int err, PyObject *msg)
{
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", err, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}
