/* Object fields read as member descriptors.
 *
 * CPython specialises reading a member descriptor of type T_OBJECT_EX
 * (LOAD_ATTR_SLOT: a load from a fixed offset) but not a getset property,
 * which goes through the generic lookup and a C call on every read.  A
 * field that is set once, before its object is shared, and never changes
 * can be published this way; Cython only generates properties, so the
 * descriptors are added to the type here, at module import.
 */
#ifndef PP_MEMBERS_H
#define PP_MEMBERS_H

#include <Python.h>
#include <structmember.h>

#ifndef Py_T_OBJECT_EX
#define Py_T_OBJECT_EX T_OBJECT_EX
#define Py_READONLY READONLY
#endif

/* members: a NULL-terminated array with static storage (each descriptor
 * keeps a pointer to its entry).  Returns 0, or -1 with an exception set. */
static int pp_add_members(PyTypeObject *type, PyMemberDef *members)
{
    PyObject *dict = type->tp_dict;
    for (PyMemberDef *m = members; m->name != NULL; m++) {
        PyObject *descr = PyDescr_NewMember(type, m);
        if (descr == NULL)
            return -1;
        int failed = PyDict_SetItemString(dict, m->name, descr);
        Py_DECREF(descr);
        if (failed)
            return -1;
    }
    PyType_Modified(type);
    return 0;
}

#endif /* PP_MEMBERS_H */
