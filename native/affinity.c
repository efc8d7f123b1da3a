/* Thread identity and CPU affinity: parse, call, raise OSError from errno, build value. */
#include "t2mpi_native.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel rejects masks smaller than its own; grow until it accepts. */
#define T2N_MAX_CPUS (1 << 16)

static PyObject *raise_errno_for(const char *call, long tid)
{
    int err = errno;
    return t2n_raise_errno(err, PyUnicode_FromFormat("%s(tid=%ld)", call, tid));
}

PyObject *t2n_gettid(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyLong_FromLong((long)syscall(SYS_gettid));
}

PyObject *t2n_getcpu(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    int cpu = sched_getcpu();
    if (cpu < 0)
        return raise_errno_for("sched_getcpu", 0);
    return PyLong_FromLong(cpu);
}

PyObject *t2n_getaffinity(PyObject *self, PyObject *args)
{
    (void)self;
    long tid = 0;
    if (!PyArg_ParseTuple(args, "|l:getaffinity", &tid))
        return NULL;
    if (tid < 0) {
        PyErr_Format(PyExc_ValueError, "getaffinity: tid must be >= 0, got %ld", tid);
        return NULL;
    }
    for (int ncpus = 1024; ncpus <= T2N_MAX_CPUS; ncpus *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpus);
        if (set == NULL)
            return PyErr_NoMemory();
        size_t size = CPU_ALLOC_SIZE(ncpus);
        CPU_ZERO_S(size, set);
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = sched_getaffinity((pid_t)tid, size, set);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            int err = errno;
            CPU_FREE(set);
            if (err == EINVAL)
                continue;
            errno = err;
            return raise_errno_for("sched_getaffinity", tid);
        }
        int count = CPU_COUNT_S(size, set);
        PyObject *result = PyTuple_New(count);
        if (result == NULL) {
            CPU_FREE(set);
            return NULL;
        }
        for (int cpu = 0, i = 0; cpu < ncpus && i < count; cpu++) {
            if (!CPU_ISSET_S(cpu, size, set))
                continue;
            PyObject *item = PyLong_FromLong(cpu);
            if (item == NULL) {
                Py_DECREF(result);
                CPU_FREE(set);
                return NULL;
            }
            PyTuple_SET_ITEM(result, i++, item);
        }
        CPU_FREE(set);
        return result;
    }
    errno = EINVAL;
    return raise_errno_for("sched_getaffinity", tid);
}

PyObject *t2n_setaffinity(PyObject *self, PyObject *args)
{
    (void)self;
    long tid;
    PyObject *cpus;
    if (!PyArg_ParseTuple(args, "lO:setaffinity", &tid, &cpus))
        return NULL;
    if (tid < 0) {
        PyErr_Format(PyExc_ValueError, "setaffinity: tid must be >= 0, got %ld", tid);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(cpus, "setaffinity: cpus must be an iterable of ints");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n == 0) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "setaffinity: cpus is empty");
        return NULL;
    }
    cpu_set_t *set = CPU_ALLOC(T2N_MAX_CPUS);
    if (set == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    size_t size = CPU_ALLOC_SIZE(T2N_MAX_CPUS);
    CPU_ZERO_S(size, set);
    long highest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        long cpu = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (cpu == -1 && PyErr_Occurred()) {
            CPU_FREE(set);
            Py_DECREF(seq);
            return NULL;
        }
        if (cpu < 0 || cpu >= T2N_MAX_CPUS) {
            CPU_FREE(set);
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "setaffinity: cpu %ld out of range 0-%d", cpu,
                         T2N_MAX_CPUS - 1);
            return NULL;
        }
        CPU_SET_S((size_t)cpu, size, set);
        if (cpu > highest)
            highest = cpu;
    }
    Py_DECREF(seq);
    /* Pass the smallest mask holding the highest CPU (whole longs). */
    size_t used = CPU_ALLOC_SIZE(highest + 1);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sched_setaffinity((pid_t)tid, used, set);
    Py_END_ALLOW_THREADS
    CPU_FREE(set);
    if (rc != 0)
        return raise_errno_for("sched_setaffinity", tid);
    Py_RETURN_NONE;
}
