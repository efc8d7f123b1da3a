/* Fabric libraries probed at run time (dlopen: nothing needed at build time): parse, load,
 * call, build value. A library that cannot be loaded is a normal answer (None); a loaded
 * library without the symbol t2mpi needs is an OSError naming library and symbol.
 *
 * libfabric's structs are declared here, as prefixes only: the members up to those read,
 * in the order of <rdma/fabric.h> of libfabric 1.17.0 (Debian 12). Members are only ever
 * added at the end (fi_info's `nic` and fi_fabric_attr's `api_version` in 1.5); read back
 * from 1.17.0 and from the 2.5.1 that the Open MPI and MPICH wheels bundle. */
#include "t2mpi_native.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T2N_UCX_LIB "libucp.so.0"
#define T2N_OFI_LIB "libfabric.so.1"

struct t2n_fi_fabric_attr {
    void *fabric;
    char *name;
    char *prov_name;
};

struct t2n_fi_info {
    struct t2n_fi_info *next;
    uint64_t caps;
    uint64_t mode;
    uint32_t addr_format;
    size_t src_addrlen;
    size_t dest_addrlen;
    void *src_addr;
    void *dest_addr;
    void *handle;
    void *tx_attr;
    void *rx_attr;
    void *ep_attr;
    void *domain_attr;
    struct t2n_fi_fabric_attr *fabric_attr;
};

typedef void (*ucp_get_version_fn)(unsigned *, unsigned *, unsigned *);
typedef uint32_t (*fi_version_fn)(void);
typedef int (*fi_getinfo_fn)(uint32_t, const char *, const char *, uint64_t,
                             const struct t2n_fi_info *, struct t2n_fi_info **);
typedef void (*fi_freeinfo_fn)(struct t2n_fi_info *);

/* NULL with no exception: the library is absent (or unloadable); the caller answers None. */
static void *open_library(const char *path)
{
    void *handle;
    Py_BEGIN_ALLOW_THREADS
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    Py_END_ALLOW_THREADS
    return handle;
}

/* Stores the function `symbol` in *fn (a function pointer of `size` bytes; copied, as ISO C
 * does not convert object pointers to function pointers) and returns 1; or returns 0 with
 * OSError(ELIBBAD, "dlsym(lib, symbol): why") set: a present library lacks it. */
static int find_function(void *handle, const char *path, const char *symbol, void *fn, size_t size)
{
    dlerror();
    void *found = dlsym(handle, symbol);
    if (found == NULL || size != sizeof found) {
        const char *why = dlerror();
        t2n_raise_errno(ELIBBAD, PyUnicode_FromFormat("dlsym(%s, %s): %s", path, symbol,
                                                      why ? why : "symbol is NULL"));
        return 0;
    }
    memcpy(fn, &found, size);
    return 1;
}

/* `path` from the optional argument (None: `fallback`); 0 with an exception when it is bad
 * ("" would make dlopen return the main program). */
static int parse_path(PyObject *args, const char *format, const char *fallback, const char **path)
{
    *path = NULL;
    if (!PyArg_ParseTuple(args, format, path))
        return 0;
    if (*path == NULL)
        *path = fallback;
    if (**path == '\0') {
        PyErr_Format(PyExc_ValueError, "%s: path is empty", strchr(format, ':') + 1);
        return 0;
    }
    return 1;
}

PyObject *t2n_ucx_version(PyObject *self, PyObject *args)
{
    (void)self;
    const char *path;
    if (!parse_path(args, "|z:ucx_version", T2N_UCX_LIB, &path))
        return NULL;
    void *handle = open_library(path);
    if (handle == NULL)
        Py_RETURN_NONE;
    ucp_get_version_fn get_version;
    if (!find_function(handle, path, "ucp_get_version", &get_version, sizeof get_version)) {
        dlclose(handle);
        return NULL;
    }
    unsigned major = 0, minor = 0, release = 0;
    get_version(&major, &minor, &release);
    dlclose(handle);
    return PyUnicode_FromFormat("%u.%u.%u", major, minor, release);
}

/* UCP's context is opaque; its parameters are read by field_mask, and the first two members
 * (field_mask, features) have kept their place since UCX 1.0. The rest stays zero. */
struct t2n_ucp_params {
    uint64_t field_mask;
    uint64_t features;
    char rest[512];
};
#define T2N_UCP_PARAM_FIELD_FEATURES 1u
#define T2N_UCP_FEATURE_TAG 1u

typedef int (*ucp_config_read_fn)(const char *, const char *, void **);
typedef void (*ucp_config_release_fn)(void *);
typedef int (*ucp_init_version_fn)(unsigned, unsigned, const struct t2n_ucp_params *, const void *, void **);
typedef void (*ucp_cleanup_fn)(void *);
typedef void (*ucp_context_print_info_fn)(const void *, FILE *);

PyObject *t2n_ucx_context_info(PyObject *self, PyObject *args)
{
    (void)self;
    const char *path;
    if (!parse_path(args, "|z:ucx_context_info", T2N_UCX_LIB, &path))
        return NULL;
    void *handle = open_library(path);
    if (handle == NULL)
        Py_RETURN_NONE;
    ucp_get_version_fn get_version;
    ucp_config_read_fn config_read;
    ucp_config_release_fn config_release;
    ucp_init_version_fn init_version;
    ucp_cleanup_fn cleanup;
    ucp_context_print_info_fn print_info;
    if (!find_function(handle, path, "ucp_get_version", &get_version, sizeof get_version)
        || !find_function(handle, path, "ucp_config_read", &config_read, sizeof config_read)
        || !find_function(handle, path, "ucp_config_release", &config_release, sizeof config_release)
        || !find_function(handle, path, "ucp_init_version", &init_version, sizeof init_version)
        || !find_function(handle, path, "ucp_cleanup", &cleanup, sizeof cleanup)
        || !find_function(handle, path, "ucp_context_print_info", &print_info, sizeof print_info)) {
        dlclose(handle);
        return NULL;
    }
    unsigned major = 0, minor = 0, release = 0;
    get_version(&major, &minor, &release);
    struct t2n_ucp_params params;
    memset(&params, 0, sizeof params);
    params.field_mask = T2N_UCP_PARAM_FIELD_FEATURES;
    params.features = T2N_UCP_FEATURE_TAG;
    void *config = NULL, *context = NULL;
    char *text = NULL;
    size_t size = 0;
    int status;
    const char *step = "ucp_config_read";
    Py_BEGIN_ALLOW_THREADS
    status = config_read(NULL, NULL, &config);
    if (status == 0) {
        step = "ucp_init_version";
        status = init_version(major, minor, &params, config, &context);
        config_release(config);
    }
    if (status == 0) {
        FILE *out = open_memstream(&text, &size);
        if (out != NULL) {
            print_info(context, out);
            fclose(out);
        }
        cleanup(context);
    }
    Py_END_ALLOW_THREADS
    dlclose(handle);
    if (status != 0)
        return t2n_raise_errno(EIO, PyUnicode_FromFormat("%s(%s): UCX status %d", step, path, status));
    if (text == NULL)
        return t2n_raise_errno(ENOMEM, PyUnicode_FromString("open_memstream"));
    PyObject *value = PyUnicode_DecodeUTF8(text, (Py_ssize_t)size, "replace");
    free(text);
    return value;
}

/* Appends each fi_info's provider name to `names` once; -1 with an exception on failure. */
static int collect_providers(const struct t2n_fi_info *info, PyObject *names)
{
    for (; info != NULL; info = info->next) {
        if (info->fabric_attr == NULL || info->fabric_attr->prov_name == NULL)
            continue;
        PyObject *name = PyUnicode_DecodeFSDefault(info->fabric_attr->prov_name);
        if (name == NULL)
            return -1;
        int seen = PySequence_Contains(names, name);
        if (seen == 0)
            seen = PyList_Append(names, name) == 0 ? 1 : -1;
        Py_DECREF(name);
        if (seen < 0)
            return -1;
    }
    return 0;
}

PyObject *t2n_fabric_providers(PyObject *self, PyObject *args)
{
    (void)self;
    const char *path;
    if (!parse_path(args, "|z:fabric_providers", T2N_OFI_LIB, &path))
        return NULL;
    void *handle = open_library(path);
    if (handle == NULL)
        Py_RETURN_NONE;
    fi_version_fn version;
    fi_getinfo_fn getinfo;
    fi_freeinfo_fn freeinfo;
    if (!find_function(handle, path, "fi_version", &version, sizeof version)
        || !find_function(handle, path, "fi_getinfo", &getinfo, sizeof getinfo)
        || !find_function(handle, path, "fi_freeinfo", &freeinfo, sizeof freeinfo)) {
        dlclose(handle);
        return NULL;
    }
    PyObject *names = PyList_New(0);
    if (names == NULL) {
        dlclose(handle);
        return NULL;
    }
    /* The library's own API version: the newest every provider it holds answers. */
    uint32_t api = version();
    struct t2n_fi_info *info = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = getinfo(api, NULL, NULL, 0, NULL, &info);
    Py_END_ALLOW_THREADS
    /* rc < 0 (-FI_ENODATA: no provider usable here): an empty list, not an error. */
    int failed = rc == 0 ? collect_providers(info, names) : 0;
    if (rc == 0)
        freeinfo(info);
    dlclose(handle);
    if (failed) {
        Py_DECREF(names);
        return NULL;
    }
    return names;
}
