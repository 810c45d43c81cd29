/* The object floor of reading a header's addresses (benchmarks only; never
 * shipped).
 *
 * What any parser must at least do for `h = parse(buf); h.source;
 * h.destination`: make one object with two member slots and the two address
 * tuples, from the bytes of a v2 address block, with no validation at all.
 * The text is formatted by the same routines as the Cython backend
 * (csrc/pp_inet.c), so the floor and pyproxyproto pay the same for it.
 *
 * ipv4/ipv6 build both tuples on every call (the floor of one header
 * repeated); ipv4_reuse/ipv6_reuse keep the last destination tuple and hand
 * it out again while its address and port repeat (the floor of traffic
 * behind a balancer: one destination, sources that change).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#include "pp_inet.h"

typedef struct {
    PyObject_HEAD
    PyObject *source;
    PyObject *destination;
} Floor;

static void floor_dealloc(Floor *self)
{
    Py_XDECREF(self->source);
    Py_XDECREF(self->destination);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef floor_members[] = {
    {"source", T_OBJECT, offsetof(Floor, source), READONLY, NULL},
    {"destination", T_OBJECT, offsetof(Floor, destination), READONLY, NULL},
    {NULL},
};

static PyTypeObject FloorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "floor.Floor",
    .tp_basicsize = sizeof(Floor),
    .tp_dealloc = (destructor)floor_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_members = floor_members,
};

static PyObject *address(const unsigned char *a, const unsigned char *port, int v6)
{
    char text[PP_INET6_ADDRSTRLEN];
    int n = v6 ? pp_format_ipv6(a, text) : pp_format_ipv4(a, text);
    PyObject *host = PyUnicode_New(n, 127);
    if (host == NULL)
        return NULL;
    memcpy(PyUnicode_DATA(host), text, n);
    PyObject *p = PyLong_FromLong((port[0] << 8) | port[1]);
    if (p == NULL) {
        Py_DECREF(host);
        return NULL;
    }
    PyObject *t = v6 ? PyTuple_New(4) : PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(host);
        Py_DECREF(p);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, host);
    PyTuple_SET_ITEM(t, 1, p);
    if (v6) {
        PyTuple_SET_ITEM(t, 2, PyLong_FromLong(0));
        PyTuple_SET_ITEM(t, 3, PyLong_FromLong(0));
    }
    return t;
}

/* The last destination made by make(..., reuse=1): its address and port
 * bytes as they appear in the block, and the tuple. */
static unsigned char last_key[18];
static int last_v6 = -1;
static PyObject *last_destination;

static PyObject *destination(const unsigned char *a, const unsigned char *port, int v6,
                             int reuse)
{
    int alen = v6 ? 16 : 4;
    if (!reuse)
        return address(a, port, v6);
    if (last_destination != NULL && last_v6 == v6 && memcmp(last_key, a, alen) == 0 &&
        memcmp(last_key + alen, port, 2) == 0) {
        Py_INCREF(last_destination);
        return last_destination;
    }
    PyObject *t = address(a, port, v6);
    if (t == NULL)
        return NULL;
    Py_INCREF(t);
    Py_XSETREF(last_destination, t);
    last_v6 = v6;
    memcpy(last_key, a, alen);
    memcpy(last_key + alen, port, 2);
    return t;
}

static PyObject *make(PyObject *arg, int v6, int reuse)
{
    /* A v2 header: the address block starts at byte 16. */
    const unsigned char *b = (const unsigned char *)PyBytes_AsString(arg);
    if (b == NULL)
        return NULL;
    int alen = v6 ? 16 : 4;
    const unsigned char *ports = b + 16 + 2 * alen;
    Floor *f = PyObject_New(Floor, &FloorType);
    if (f == NULL)
        return NULL;
    f->source = address(b + 16, ports, v6);
    f->destination = destination(b + 16 + alen, ports + 2, v6, reuse);
    if (f->source == NULL || f->destination == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

static PyObject *ipv4(PyObject *mod, PyObject *arg) { return make(arg, 0, 0); }
static PyObject *ipv6(PyObject *mod, PyObject *arg) { return make(arg, 1, 0); }
static PyObject *ipv4_reuse(PyObject *mod, PyObject *arg) { return make(arg, 0, 1); }
static PyObject *ipv6_reuse(PyObject *mod, PyObject *arg) { return make(arg, 1, 1); }

/* repeat(fn, args, n): call fn(*args) n times.  bench.callgrind counts the
 * instructions inside this function only (--toggle-collect names it), so the
 * count is the calls' own, on any build of pyproxyproto, stripped or not.
 * Not static, and called only through the method table: the symbol stays. */
PyObject *pp_bench_repeat(PyObject *mod, PyObject *const *argv, Py_ssize_t argc)
{
    if (argc != 3 || !PyTuple_Check(argv[1])) {
        PyErr_SetString(PyExc_TypeError, "repeat(fn, args: tuple, n: int)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(argv[2]);
    if (n < 0 && PyErr_Occurred())
        return NULL;
    PyObject *fn = argv[0], *args = argv[1];
    PyObject *const *items = &PyTuple_GET_ITEM(args, 0);
    size_t nargs = (size_t)PyTuple_GET_SIZE(args);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyObject_Vectorcall(fn, items, nargs, NULL);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"repeat", (PyCFunction)(void (*)(void))pp_bench_repeat, METH_FASTCALL,
     "repeat(fn, args, n): call fn(*args) n times (the region bench.callgrind counts)."},
    {"ipv4", ipv4, METH_O, "The IPv4 address pair of a v2 header, unvalidated."},
    {"ipv6", ipv6, METH_O, "The IPv6 address pair of a v2 header, unvalidated."},
    {"ipv4_reuse", ipv4_reuse, METH_O, "ipv4, reusing the last destination tuple when equal."},
    {"ipv6_reuse", ipv6_reuse, METH_O, "ipv6, reusing the last destination tuple when equal."},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pp_bench_floor", NULL, -1, methods};

PyMODINIT_FUNC PyInit_pp_bench_floor(void)
{
    if (PyType_Ready(&FloorType) < 0)
        return NULL;
    return PyModule_Create(&module);
}
