/* Module functions that every thread calls, made as CPython makes a module's own.
 *
 * Each call of a function object takes and drops a reference to it.  On a
 * free-threaded build a reference taken by a thread that does not own the
 * object is an atomic add to a shared counter: with two threads calling
 * parse(), that counter's cache line moves between their cores on every
 * call (perf on 3.13t: a fifth of the time of parse + .source +
 * .destination on 2 threads, in the interpreter's LOAD_FAST and CALL).
 * CPython makes the functions of a module's own method table with
 * deferred reference counting, which 3.13 turns into immortality once a
 * second thread starts and 3.14 keeps off the shared counter; Cython makes
 * its functions itself, without.  So the hot functions are made again
 * through PyModule_AddFunctions, from the same method definitions.  GIL
 * builds keep Cython's.
 */
#ifndef PP_SHARED_H
#define PP_SHARED_H

#include <Python.h>

#define PP_SHARED_MAX 2

/* name: a function of module, made by Cython from a static definition.
 * Returns 0, or -1 with an exception set. */
static int pp_share_function(PyObject *module, const char *name)
{
#if defined(Py_GIL_DISABLED)
    /* PyModule_AddFunctions keeps pointers into its table: static storage,
     * one entry and a terminator per function. */
    static PyMethodDef defs[PP_SHARED_MAX][2];
    static int used = 0;
    PyObject *function = PyObject_GetAttrString(module, name);
    if (function == NULL)
        return -1;
    if (!PyCFunction_Check(function) || used == PP_SHARED_MAX) {
        Py_DECREF(function);
        PyErr_Format(PyExc_RuntimeError, "cannot share %s", name);
        return -1;
    }
    defs[used][0] = *((PyCFunctionObject *)function)->m_ml;
    Py_DECREF(function);
    return PyModule_AddFunctions(module, defs[used++]);
#else
    (void)module;
    (void)name;
    return 0;
#endif
}

#endif /* PP_SHARED_H */
