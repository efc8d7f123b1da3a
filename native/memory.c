/* NUMA memory policy of the calling thread and page placement, by direct system calls
 * (no libnuma at build or run time): parse, call, raise OSError from errno, build value. */
#include "t2mpi_native.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/mempolicy.h>)
#include <linux/mempolicy.h>
#endif
#endif

#ifndef MPOL_F_NODE /* no <linux/mempolicy.h>: the kernel ABI values */
#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MPOL_LOCAL 4
#define MPOL_PREFERRED_MANY 5
#endif
#ifndef MPOL_MODE_FLAGS
#define MPOL_MODE_FLAGS ((1 << 15) | (1 << 14) | (1 << 13))
#endif
/* Linux 6.9; an enum member (not a macro) in the headers that have it. */
#define T2N_MPOL_WEIGHTED_INTERLEAVE 6

/* Node ids 0..1023 (the kernel's MAX_NUMNODES with NODES_SHIFT=10). */
#define T2N_MAX_NODES 1024
#define T2N_BITS_PER_LONG (CHAR_BIT * sizeof(unsigned long))
#define T2N_MASK_LONGS (T2N_MAX_NODES / T2N_BITS_PER_LONG)
/* The kernel reads maxnode - 1 bits of the mask (mm/mempolicy.c get_nodes). */
#define T2N_MAXNODE (T2N_MAX_NODES + 1)

static const struct {
    const char *name;
    int mode;
    int needs_nodes;
} modes[] = {
    {"default", MPOL_DEFAULT, 0},
    {"preferred", MPOL_PREFERRED, 1},
    {"bind", MPOL_BIND, 1},
    {"interleave", MPOL_INTERLEAVE, 1},
    {"local", MPOL_LOCAL, 0},
    {"preferred_many", MPOL_PREFERRED_MANY, 1},
    {"weighted_interleave", T2N_MPOL_WEIGHTED_INTERLEAVE, 1},
};
#define T2N_NMODES ((int)(sizeof(modes) / sizeof(modes[0])))

PyObject *t2n_set_mempolicy(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name;
    PyObject *nodes_arg = NULL;
    if (!PyArg_ParseTuple(args, "s|O:set_mempolicy", &name, &nodes_arg))
        return NULL;
    int m = 0;
    while (m < T2N_NMODES && strcmp(modes[m].name, name) != 0)
        m++;
    if (m == T2N_NMODES) {
        PyErr_Format(PyExc_ValueError,
                     "set_mempolicy: unknown mode %R; use default, bind, preferred, interleave, "
                     "local, preferred_many or weighted_interleave",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    PyObject *nodes = nodes_arg ? PySequence_Tuple(nodes_arg) : PyTuple_New(0);
    if (nodes == NULL)
        return NULL;
    unsigned long mask[T2N_MASK_LONGS];
    memset(mask, 0, sizeof(mask));
    Py_ssize_t n = PyTuple_GET_SIZE(nodes);
    for (Py_ssize_t i = 0; i < n; i++) {
        long node = PyLong_AsLong(PyTuple_GET_ITEM(nodes, i));
        if (node == -1 && PyErr_Occurred()) {
            Py_DECREF(nodes);
            return NULL;
        }
        if (node < 0 || node >= T2N_MAX_NODES) {
            Py_DECREF(nodes);
            PyErr_Format(PyExc_ValueError, "set_mempolicy: node %ld out of range 0-%d", node,
                         T2N_MAX_NODES - 1);
            return NULL;
        }
        mask[node / T2N_BITS_PER_LONG] |= 1UL << (node % T2N_BITS_PER_LONG);
    }
    if (n == 0 && modes[m].needs_nodes) {
        Py_DECREF(nodes);
        PyErr_Format(PyExc_ValueError, "set_mempolicy: mode %s needs at least one node", name);
        return NULL;
    }
    long rc;
    Py_BEGIN_ALLOW_THREADS
    rc = syscall(SYS_set_mempolicy, modes[m].mode, mask, (unsigned long)T2N_MAXNODE);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        int err = errno;
        PyObject *msg = PyUnicode_FromFormat("set_mempolicy(mode=%s, nodes=%R)", name, nodes);
        Py_DECREF(nodes);
        return t2n_raise_errno(err, msg);
    }
    Py_DECREF(nodes);
    Py_RETURN_NONE;
}

PyObject *t2n_get_mempolicy(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    int mode = 0;
    unsigned long mask[T2N_MASK_LONGS];
    memset(mask, 0, sizeof(mask));
    long rc;
    Py_BEGIN_ALLOW_THREADS
    rc = syscall(SYS_get_mempolicy, &mode, mask, (unsigned long)T2N_MAXNODE, NULL, 0UL);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return t2n_raise_errno(errno, PyUnicode_FromString("get_mempolicy()"));
    mode &= ~MPOL_MODE_FLAGS;
    PyObject *name = NULL;
    for (int m = 0; m < T2N_NMODES && name == NULL; m++)
        if (modes[m].mode == mode)
            name = PyUnicode_FromString(modes[m].name);
    if (name == NULL && !PyErr_Occurred())
        name = PyUnicode_FromFormat("mode%d", mode);
    if (name == NULL)
        return NULL;
    PyObject *nodes = PyList_New(0);
    if (nodes == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    for (long node = 0; node < T2N_MAX_NODES; node++) {
        if (!(mask[node / T2N_BITS_PER_LONG] >> (node % T2N_BITS_PER_LONG) & 1UL))
            continue;
        PyObject *item = PyLong_FromLong(node);
        if (item == NULL || PyList_Append(nodes, item) != 0) {
            Py_XDECREF(item);
            Py_DECREF(nodes);
            Py_DECREF(name);
            return NULL;
        }
        Py_DECREF(item);
    }
    PyObject *result = Py_BuildValue("(NN)", name, PyList_AsTuple(nodes));
    Py_DECREF(nodes);
    return result;
}

PyObject *t2n_page_nodes(PyObject *self, PyObject *obj)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t first = (uintptr_t)view.buf & ~(page - 1);
    uintptr_t end = ((uintptr_t)view.buf + (uintptr_t)view.len + page - 1) & ~(page - 1);
    size_t count = view.len > 0 ? (end - first) / page : 0;
    void **pages = PyMem_Malloc((count ? count : 1) * sizeof(void *));
    int *status = PyMem_Malloc((count ? count : 1) * sizeof(int));
    if (pages == NULL || status == NULL) {
        PyMem_Free(pages);
        PyMem_Free(status);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    for (size_t i = 0; i < count; i++)
        pages[i] = (void *)(first + i * page);
    long rc = 0;
    if (count > 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = syscall(SYS_move_pages, 0, (unsigned long)count, pages, NULL, status, 0);
        Py_END_ALLOW_THREADS
    }
    int err = errno;
    PyMem_Free(pages);
    PyBuffer_Release(&view);
    if (rc != 0) {
        PyMem_Free(status);
        return t2n_raise_errno(err, PyUnicode_FromFormat("move_pages(address=%p, pages=%zu)",
                                                          (void *)first, count));
    }
    PyObject *result = PyTuple_New((Py_ssize_t)count);
    for (size_t i = 0; result != NULL && i < count; i++) {
        PyObject *item = PyLong_FromLong(status[i]);
        if (item == NULL)
            Py_CLEAR(result);
        else
            PyTuple_SET_ITEM(result, (Py_ssize_t)i, item);
    }
    PyMem_Free(status);
    return result;
}
