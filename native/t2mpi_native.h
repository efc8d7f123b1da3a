/* Declarations shared by the C files of t2mpi._native: one C file per topic,
 * module.c holds only the method table and the module init. */
#ifndef T2MPI_NATIVE_H
#define T2MPI_NATIVE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* errors.c: raise OSError(err, msg) and return NULL; steals the reference to msg (may be NULL) */
PyObject *t2n_raise_errno(int err, PyObject *msg);

/* affinity.c: thread identity and CPU affinity */
PyObject *t2n_gettid(PyObject *self, PyObject *noargs);
PyObject *t2n_getcpu(PyObject *self, PyObject *noargs);
PyObject *t2n_getaffinity(PyObject *self, PyObject *args);
PyObject *t2n_setaffinity(PyObject *self, PyObject *args);

/* memory.c: NUMA memory policy and page placement */
PyObject *t2n_set_mempolicy(PyObject *self, PyObject *args);
PyObject *t2n_get_mempolicy(PyObject *self, PyObject *noargs);
PyObject *t2n_page_nodes(PyObject *self, PyObject *obj);

/* fabric.c: UCX and libfabric probed at run time (dlopen) */
PyObject *t2n_ucx_version(PyObject *self, PyObject *args);
PyObject *t2n_ucx_context_info(PyObject *self, PyObject *args);
PyObject *t2n_fabric_providers(PyObject *self, PyObject *args);

#endif
