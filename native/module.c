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
    {"set_mempolicy", t2n_set_mempolicy, METH_VARARGS,
     "set_mempolicy(mode, nodes=()) -> None\n\n"
     "Set the calling thread's NUMA memory policy: mode is default, bind, preferred,\n"
     "interleave, local, preferred_many or weighted_interleave; nodes an iterable of\n"
     "node ids 0-1023 (needed by all but default and local)."},
    {"get_mempolicy", t2n_get_mempolicy, METH_NOARGS,
     "get_mempolicy() -> tuple[str, tuple[int, ...]]\n\n"
     "The calling thread's NUMA memory policy: its mode and its sorted node ids."},
    {"page_nodes", t2n_page_nodes, METH_O,
     "page_nodes(buffer) -> tuple[int, ...]\n\n"
     "The NUMA node of each page the buffer spans (move_pages). A negative value is\n"
     "-errno for that page: -2 (ENOENT) not yet touched, -14 (EFAULT) the shared zero\n"
     "page (read but never written)."},
    {"ucx_version", t2n_ucx_version, METH_VARARGS,
     "ucx_version(path=None) -> str | None\n\n"
     "The version of the UCX library at `path` (default libucp.so.0 as the dynamic loader\n"
     "finds it), from ucp_get_version; None when it cannot be loaded."},
    {"ucx_context_info", t2n_ucx_context_info, METH_VARARGS,
     "ucx_context_info(path=None) -> str | None\n\n"
     "What a UCP context of the UCX library at `path` (default libucp.so.0) can use, as\n"
     "ucp_context_print_info writes it (its resources: transport/device); None when the\n"
     "library cannot be loaded; OSError when UCX fails to make the context."},
    {"fabric_providers", t2n_fabric_providers, METH_VARARGS,
     "fabric_providers(path=None) -> list[str] | None\n\n"
     "The libfabric providers usable on this node (fi_getinfo without hints), each name once,\n"
     "in libfabric's order, from the library at `path` (default libfabric.so.1); [] when\n"
     "fi_getinfo finds none; None when the library cannot be loaded."},
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
