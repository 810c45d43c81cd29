/* Publish-once slots: a value computed on first read, stored exactly once.
 *
 * A slot goes from NULL to its value and never changes again, so a reader
 * that sees a value may keep using it (it is never released while the
 * owner lives), and a reader that sees NULL computes a value and offers it:
 * the first offer wins and the others are released.  On the free-threaded
 * build the load is an acquire and the store a compare-and-swap, so a
 * value is never seen before it is fully built; with the GIL (or before
 * CPython 3.13, where there is no free-threaded build) plain accesses are
 * already ordered.
 *
 * No lock and no critical section: nothing here can be interrupted half
 * way by another reader.  The only release is of the loser's own value,
 * after the compare-and-swap has failed: an object no other thread has
 * seen, so its release frees it at once in this thread and cannot block.
 */
#ifndef PP_ONCE_H
#define PP_ONCE_H

#include <Python.h>

#if defined(Py_GIL_DISABLED)

static inline PyObject *pp_once_get(PyObject **slot)
{
    return (PyObject *)_Py_atomic_load_ptr_acquire(slot);
}

/* value: a new reference, given away.  Returns the slot's value, borrowed
 * (the slot keeps it until its owner is freed). */
static inline PyObject *pp_once_set(PyObject **slot, PyObject *value)
{
    PyObject *expected = NULL;
    if (_Py_atomic_compare_exchange_ptr(slot, &expected, value))
        return value;
    Py_DECREF(value); /* lost the race: the value was never published */
    return expected;
}

#else

static inline PyObject *pp_once_get(PyObject **slot)
{
    return *slot;
}

/* With the GIL: the read and the store are one step (nothing between them
 * can release the GIL); the slot may have been filled since the caller
 * looked (a GC callback inside the caller's allocations can read it). */
static inline PyObject *pp_once_set(PyObject **slot, PyObject *value)
{
    PyObject *current = *slot;
    if (current == NULL) {
        *slot = value;
        return value;
    }
    Py_DECREF(value);
    return current;
}

#endif

#endif /* PP_ONCE_H */
