/* t2mpi._native: thin wrappers of kernel calls. Method table and init only. */
#include "t2mpi_native.h"

static PyMethodDef native_methods[] = {
    {"gettid", t2n_gettid, METH_NOARGS,
     "gettid() -> int\n\nThe kernel thread id of the calling thread."},
    {"getcpu", t2n_getcpu, METH_NOARGS,
     "getcpu() -> int\n\nThe CPU the calling thread is running on now (sched_getcpu)."},
    {"getaffinity", t2n_getaffinity, METH_VARARGS,
     "getaffinity(tid=0) -> tuple[int, ...]\n\n"
     "The CPUs thread `tid` may run on (0: the calling thread), sorted."},
    {"setaffinity", t2n_setaffinity, METH_VARARGS,
     "setaffinity(tid, cpus) -> None\n\n"
     "Restrict thread `tid` (0: the calling thread) to the CPUs in the iterable `cpus`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "t2mpi._native",
    .m_doc = "Thin wrappers of the kernel calls t2mpi needs (no state).",
    .m_size = 0,
    .m_methods = native_methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&native_module);
}
