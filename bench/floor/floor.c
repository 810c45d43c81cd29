/* The object floor of reading a header's addresses (benchmarks only; never
 * shipped).
 *
 * What any parser must at least do for `h = parse(buf); h.source;
 * h.destination`: make one object with two member slots and the two address
 * tuples, from the bytes of a v2 address block, with no validation at all.
 * The text is formatted by the same routines as the Cython backend
 * (csrc/pp_inet.c), so the floor and pyproxyproto pay the same for it.
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

static PyObject *make(PyObject *arg, int v6)
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
    f->destination = address(b + 16 + alen, ports + 2, v6);
    if (f->source == NULL || f->destination == NULL) {
        Py_DECREF(f);
        return NULL;
    }
    return (PyObject *)f;
}

static PyObject *ipv4(PyObject *mod, PyObject *arg) { return make(arg, 0); }
static PyObject *ipv6(PyObject *mod, PyObject *arg) { return make(arg, 1); }

static PyMethodDef methods[] = {
    {"ipv4", ipv4, METH_O, "The IPv4 address pair of a v2 header, unvalidated."},
    {"ipv6", ipv6, METH_O, "The IPv6 address pair of a v2 header, unvalidated."},
    {NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pp_bench_floor", NULL, -1, methods};

PyMODINIT_FUNC PyInit_pp_bench_floor(void)
{
    if (PyType_Ready(&FloorType) < 0)
        return NULL;
    return PyModule_Create(&module);
}
