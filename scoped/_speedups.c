/*
 * scoped._speedups: the two hot paths that CPython runs faster in C.
 *
 * 1. ScopedAttribute, attribute proxies as a C descriptor (below).
 * 2. EntryFields and LedgerFields, a session's entry and the ledger of a
 *    registry's entries (at the end): every session is recorded when it is
 *    created and counted when it ends, and doing either in Python (a class
 *    call and eleven stores; a frame, a lock's two method calls and two
 *    counters) cost more than SQLAlchemy's whole registry does per session.
 *
 * A proxied attribute must be a descriptor on the proxy class. On CPython
 * 3.10 and 3.11 a Python-level property costs more than everything else an
 * attribute read through the proxy does, because the interpreter cannot
 * specialise it. ScopedAttribute does the common case in C: find the current
 * scope's object through the handles scoped_session._scoped_attach() put on
 * the proxy instance, then read or write the attribute on it.
 *
 * Everything else is left to the generated pure-Python accessors (fget and
 * fset), which the descriptor holds: when the scope has no object yet, the
 * descriptor calls them and they create it exactly as they do without this
 * module (same locks, events and error messages, one place). An error that
 * the scope function or the current object raises propagates unchanged, and
 * an error from the object's own attribute is never taken for a miss.
 *
 * Lookups ("kinds"), as the registries spell them in their `lookup`:
 *   local     {storage}.value                 storage: a threading.local
 *   keyed     {storage}[{scopefunc}()]        storage: a dict
 *   identity  {storage}[id({scopefunc}())]    storage: a dict keyed by id()
 *
 * Only the GIL-enabled CPython 3.10+ build is supported; elsewhere the build
 * fails on purpose and scoped uses the pure-Python accessors (on a
 * free-threaded interpreter, a module that needs the GIL would turn it back
 * on for the whole process). The module declares that it needs the GIL
 * (Py_mod_gil) all the same.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>
#ifdef MS_WINDOWS
#include <process.h>
#else
#include <pthread.h>
#include <unistd.h>
#endif

#if defined(PYPY_VERSION) || PY_VERSION_HEX < 0x030A0000
#error "scoped._speedups needs CPython 3.10 or later"
#endif
#if defined(Py_GIL_DISABLED)
/* The borrowed dictionary reads below are only safe under the GIL. */
#error "scoped._speedups does not support the free-threaded build"
#endif

enum { KIND_LOCAL, KIND_KEYED, KIND_IDENTITY, KIND_COUNT };

static const char *const kind_names[KIND_COUNT] = {"local", "keyed", "identity"};

/* Interned at the first import; never freed (the module cannot be unloaded). */
static PyObject *str_storage;   /* "_scoped_storage" */
static PyObject *str_handles;   /* "_scoped_handles" */
static PyObject *str_value;     /* "value" */
static PyObject *str_qualname;  /* "__qualname__" */

typedef struct {
    PyObject_HEAD
    PyObject *name;     /* interned str: the attribute of the current object */
    PyObject *misses;   /* tuple of exception types meaning "no object yet" */
    PyObject *fget;     /* pure-Python getter: runs on a miss */
    PyObject *fset;     /* pure-Python setter, or NULL when read-only */
    PyObject *doc;      /* str or NULL */
    PyObject *qualname; /* str or NULL, from __set_name__ */
    PyObject *objclass; /* the owner class or NULL, from __set_name__ */
    int kind;
    int writable;       /* fset was given */
} ScopedAttribute;

static PyTypeObject ScopedAttribute_Type;

/* --- the lookup ---------------------------------------------------------- */

/*
 * The keyed lookups need both handles, which scoped_session._scoped_attach()
 * also stores as one tuple: one generic attribute lookup instead of two
 * (about 10 ns).
 */
static int
read_handles(PyObject *obj, PyObject **storage, PyObject **scopefunc)
{
    PyObject *handles = PyObject_GetAttr(obj, str_handles);
    if (handles == NULL) {
        return -1;
    }
    if (!PyTuple_CheckExact(handles) || PyTuple_GET_SIZE(handles) != 2) {
        PyErr_Format(PyExc_TypeError,
                     "%.200s._scoped_handles must be a (storage, scopefunc) "
                     "tuple, got %.200s",
                     Py_TYPE(obj)->tp_name, Py_TYPE(handles)->tp_name);
        Py_DECREF(handles);
        return -1;
    }
    *storage = Py_NewRef(PyTuple_GET_ITEM(handles, 0));
    *scopefunc = Py_NewRef(PyTuple_GET_ITEM(handles, 1));
    Py_DECREF(handles);
    return 0;
}

/*
 * After the lookup step failed: is the pending error a miss? Only an error of
 * one of the registry's miss types raised directly by C code (no Python frame
 * in its traceback, so not raised by the scope function's own code) can be:
 * a threading.local without the attribute, a dict without the key, an
 * unhashable key, a ContextVar without a value. Such an error is cleared and
 * 0 returned: the pure-Python accessor then decides, as it would alone.
 * Anything else stays pending and -1 is returned.
 */
static int
pending_miss(ScopedAttribute *self)
{
    if (!PyErr_ExceptionMatches(self->misses)) {
        return -1;
    }
    int from_c;
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *tb = PyException_GetTraceback(exc);
    from_c = tb == NULL;
    Py_XDECREF(tb);
    if (from_c) {
        Py_DECREF(exc);
        return 0;
    }
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    from_c = tb == NULL;
    if (from_c) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        return 0;
    }
    PyErr_Restore(type, value, tb);
#endif
    return -1;
}

/*
 * Find the current scope's object for the proxy *obj*.
 * Returns 1 with a new reference in *current, 0 on a miss (no error set), or
 * -1 with an error set.
 */
static int
lookup(ScopedAttribute *self, PyObject *obj, PyObject **current)
{
    PyObject *storage, *scopefunc = NULL, *key = NULL, *found;
    int status = -1;

    /* The handles _scoped_attach() put on the proxy instance. The generic
       lookup reads 3.11's inline instance values without turning them into
       a dict, which would slow down every Python-level read of them. */
    if (self->kind == KIND_LOCAL) {
        storage = PyObject_GetAttr(obj, str_storage);
        if (storage == NULL) {
            return -1;
        }
        found = PyObject_GetAttr(storage, str_value);
        goto got;
    }
    if (read_handles(obj, &storage, &scopefunc) < 0) {
        return -1;
    }
    key = PyObject_CallNoArgs(scopefunc);
    if (key == NULL) {
        status = pending_miss(self);
        goto done;
    }
    if (self->kind == KIND_IDENTITY) {
        /* What id() returns. */
        Py_SETREF(key, PyLong_FromVoidPtr(key));
        if (key == NULL) {
            goto done;
        }
    }
    if (PyDict_CheckExact(storage)) {
        found = PyDict_GetItemWithError(storage, key);
        if (found == NULL) {
            status = PyErr_Occurred() ? pending_miss(self) : 0;
            goto done;
        }
        Py_INCREF(found); /* borrowed: the dict may change once other code runs */
    }
    else {
        found = PyObject_GetItem(storage, key);
    }

got:
    if (found == NULL) {
        status = pending_miss(self);
        goto done;
    }
    *current = found;
    status = 1;

done:
    Py_XDECREF(key);
    Py_XDECREF(scopefunc);
    Py_XDECREF(storage);
    return status;
}

/* --- the descriptor protocol --------------------------------------------- */

static PyObject *
owner_name(PyObject *obj)
{
    return PyObject_GetAttr((PyObject *)Py_TYPE(obj), str_qualname);
}

/* Only after tp_clear broke a reference cycle (during garbage collection). */
static void
cleared(ScopedAttribute *self)
{
    PyErr_Format(PyExc_RuntimeError, "scoped attribute %R is being destroyed",
                 self->name);
}

static PyObject *
ScopedAttribute_get(PyObject *op, PyObject *obj, PyObject *type)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    PyObject *current = NULL;

    /* On the class: the descriptor itself, for help(), Sphinx, inspect. */
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(op);
        return op;
    }
    switch (lookup(self, obj, &current)) {
    case 1: {
        PyObject *result = PyObject_GetAttr(current, self->name);
        Py_DECREF(current);
        return result;
    }
    case 0:
        if (self->fget == NULL) {
            cleared(self);
            return NULL;
        }
        return PyObject_CallOneArg(self->fget, obj);
    default:
        return NULL;
    }
}

static int
ScopedAttribute_set(PyObject *op, PyObject *obj, PyObject *value)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    PyObject *current = NULL;

    if (value == NULL || !self->writable) {
        PyObject *owner = owner_name(obj);
        if (owner != NULL) {
            PyErr_Format(PyExc_AttributeError,
                         value == NULL
                             ? "attribute %R of %R object cannot be deleted"
                             : "attribute %R of %R object is read-only",
                         self->name, owner);
            Py_DECREF(owner);
        }
        return -1;
    }
    switch (lookup(self, obj, &current)) {
    case 1: {
        int failed = PyObject_SetAttr(current, self->name, value);
        Py_DECREF(current);
        return failed;
    }
    case 0: {
        PyObject *args[2] = {obj, value};
        if (self->fset == NULL) {
            cleared(self);
            return -1;
        }
        PyObject *result = PyObject_Vectorcall(self->fset, args, 2, NULL);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 0;
    }
    default:
        return -1;
    }
}

/* --- construction and the Python-visible surface ------------------------- */

static int
check_misses(PyObject *misses)
{
    if (!PyTuple_Check(misses)) {
        PyErr_Format(PyExc_TypeError,
                     "ScopedAttribute() misses must be a tuple of exception "
                     "classes, got %.200s",
                     Py_TYPE(misses)->tp_name);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(misses); i++) {
        PyObject *item = PyTuple_GET_ITEM(misses, i);
        if (!PyExceptionClass_Check(item)) {
            PyErr_Format(PyExc_TypeError,
                         "ScopedAttribute() misses must hold exception classes, "
                         "got %R",
                         item);
            return -1;
        }
    }
    return 0;
}

static PyObject *
ScopedAttribute_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"name", "kind", "misses", "fget",
                               "fset", "doc", NULL};
    PyObject *name, *misses, *fget, *fset = Py_None, *doc = Py_None;
    const char *kind_name;
    int kind;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UsOO|OO:ScopedAttribute",
                                     keywords, &name, &kind_name, &misses,
                                     &fget, &fset, &doc)) {
        return NULL;
    }
    for (kind = 0; kind < KIND_COUNT; kind++) {
        if (strcmp(kind_name, kind_names[kind]) == 0) {
            break;
        }
    }
    if (kind == KIND_COUNT) {
        PyErr_Format(PyExc_ValueError,
                     "ScopedAttribute() kind must be 'local', 'keyed' or "
                     "'identity', got '%s'",
                     kind_name);
        return NULL;
    }
    if (check_misses(misses) < 0) {
        return NULL;
    }
    if (!PyCallable_Check(fget)) {
        PyErr_Format(PyExc_TypeError,
                     "ScopedAttribute() fget must be callable, got %.200s",
                     Py_TYPE(fget)->tp_name);
        return NULL;
    }
    if (fset != Py_None && !PyCallable_Check(fset)) {
        PyErr_Format(PyExc_TypeError,
                     "ScopedAttribute() fset must be callable or None, got "
                     "%.200s",
                     Py_TYPE(fset)->tp_name);
        return NULL;
    }
    if (doc != Py_None && !PyUnicode_Check(doc)) {
        PyErr_Format(PyExc_TypeError,
                     "ScopedAttribute() doc must be a str or None, got %.200s",
                     Py_TYPE(doc)->tp_name);
        return NULL;
    }

    ScopedAttribute *self = (ScopedAttribute *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    Py_INCREF(name);
    PyUnicode_InternInPlace(&name);
    self->name = name;
    Py_INCREF(misses);
    self->misses = misses;
    Py_INCREF(fget);
    self->fget = fget;
    if (fset != Py_None) {
        Py_INCREF(fset);
        self->fset = fset;
        self->writable = 1;
    }
    if (doc != Py_None) {
        Py_INCREF(doc);
        self->doc = doc;
    }
    self->kind = kind;
    return (PyObject *)self;
}

static int
ScopedAttribute_traverse(PyObject *op, visitproc visit, void *arg)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    Py_VISIT(self->misses);
    Py_VISIT(self->fget);
    Py_VISIT(self->fset);
    Py_VISIT(self->objclass);
    return 0;
}

static int
ScopedAttribute_clear(PyObject *op)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    /* The accessors and the owner class are what can close a cycle; the
       lookup checks for the accessors before calling them. */
    Py_CLEAR(self->fget);
    Py_CLEAR(self->fset);
    Py_CLEAR(self->objclass);
    return 0;
}

static void
ScopedAttribute_dealloc(PyObject *op)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    PyObject_GC_UnTrack(op);
    ScopedAttribute_clear(op);
    Py_CLEAR(self->name);
    Py_CLEAR(self->misses);
    Py_CLEAR(self->doc);
    Py_CLEAR(self->qualname);
    Py_TYPE(op)->tp_free(op);
}

static PyObject *
ScopedAttribute_repr(PyObject *op)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    return PyUnicode_FromFormat("<scoped attribute %S>",
                                self->qualname ? self->qualname : self->name);
}

static PyObject *
ScopedAttribute_set_name(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "__set_name__() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *owner = args[0], *name = args[1];
    PyObject *qualname = NULL;
    PyObject *owner_qualname = PyObject_GetAttr(owner, str_qualname);
    if (owner_qualname == NULL) {
        return NULL;
    }
    if (PyUnicode_Check(owner_qualname) && PyUnicode_Check(name)) {
        qualname = PyUnicode_FromFormat("%U.%U", owner_qualname, name);
        if (qualname == NULL) {
            Py_DECREF(owner_qualname);
            return NULL;
        }
    }
    Py_DECREF(owner_qualname);
    Py_XSETREF(self->qualname, qualname);
    Py_INCREF(owner);
    Py_XSETREF(self->objclass, owner);
    Py_RETURN_NONE;
}

static PyObject *
ScopedAttribute_get_qualname(PyObject *op, void *closure)
{
    ScopedAttribute *self = (ScopedAttribute *)op;
    PyObject *qualname = self->qualname ? self->qualname : self->name;
    Py_INCREF(qualname);
    return qualname;
}

static PyObject *
ScopedAttribute_get_kind(PyObject *op, void *closure)
{
    return PyUnicode_FromString(kind_names[((ScopedAttribute *)op)->kind]);
}

static PyMethodDef ScopedAttribute_methods[] = {
    {"__set_name__", (PyCFunction)(void (*)(void))ScopedAttribute_set_name,
     METH_FASTCALL, "Record the owner class, for __qualname__ and __objclass__."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ScopedAttribute_members[] = {
    {"__name__", T_OBJECT, offsetof(ScopedAttribute, name), READONLY,
     "The attribute read on the current scope's object."},
    {"__doc__", T_OBJECT, offsetof(ScopedAttribute, doc), READONLY, NULL},
    {"__objclass__", T_OBJECT_EX, offsetof(ScopedAttribute, objclass), READONLY,
     "The class this descriptor was assigned to."},
    {"misses", T_OBJECT, offsetof(ScopedAttribute, misses), READONLY,
     "The exception types that mean the scope has no object yet."},
    {"fget", T_OBJECT, offsetof(ScopedAttribute, fget), READONLY,
     "The pure-Python getter; called when the scope has no object yet."},
    {"fset", T_OBJECT, offsetof(ScopedAttribute, fset), READONLY,
     "The pure-Python setter, or None for a read-only attribute."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef ScopedAttribute_getset[] = {
    {"__qualname__", ScopedAttribute_get_qualname, NULL, NULL, NULL},
    {"kind", ScopedAttribute_get_kind, NULL,
     "How the current object is found: 'local', 'keyed' or 'identity'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(ScopedAttribute_doc,
"ScopedAttribute(name, kind, misses, fget, fset=None, doc=None)\n"
"--\n"
"\n"
"A proxy class attribute that reads *name* on the current scope's object.\n"
"\n"
"*kind* names the registry's lookup ('local', 'keyed' or 'identity'),\n"
"*misses* the exception types that mean the scope has no object yet.\n"
"*fget* and *fset* are the equivalent pure-Python accessors: they run when\n"
"the scope has no object yet, and *fset* None makes the attribute read-only.");

static PyTypeObject ScopedAttribute_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scoped._speedups.ScopedAttribute",
    .tp_basicsize = sizeof(ScopedAttribute),
    .tp_dealloc = ScopedAttribute_dealloc,
    .tp_repr = ScopedAttribute_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = ScopedAttribute_doc,
    .tp_traverse = ScopedAttribute_traverse,
    .tp_clear = ScopedAttribute_clear,
    .tp_methods = ScopedAttribute_methods,
    .tp_members = ScopedAttribute_members,
    .tp_getset = ScopedAttribute_getset,
    .tp_descr_get = ScopedAttribute_get,
    .tp_descr_set = ScopedAttribute_set,
    .tp_new = ScopedAttribute_new,
};

/* --- entries -------------------------------------------------------------- */

/*
 * The fields of scoped.lifecycle.Entry, which subclasses this type and adds
 * the derived properties in Python; scoped/lifecycle/_entry.py holds the
 * pure-Python equivalent. Every field has the same name, type and default
 * there, and tests/test_entry.py runs against both.
 */
typedef struct {
    PyObject_HEAD
    PyObject *obj;       /* the session */
    PyObject *scope;     /* a plain scope key or its rendering; None: thread */
    PyObject *thread;    /* the creating threading.Thread */
    PyObject *attached;  /* instrumentation of the session, or None */
    PyObject *slot;      /* where the registry keeps the object, or None */
    PyObject *watcher;   /* what notices the scope's end, or None */
    PyObject *created;   /* time.monotonic() at creation, a float */
    PyObject *logged;    /* a bool */
    PyObject *warned;    /* a bool */
    unsigned long long number;
    long pid;
} EntryFields;

/*
 * Every field Python reads or writes is a T_OBJECT_EX member: CPython 3.11
 * specialises attribute access for those only (as for a class's __slots__,
 * which they behave like: deleted, they raise AttributeError), and both
 * entries and the code that reads them are on every session's path.
 */

/* Set at the module's first execution, like the interned names above. */
static PyObject *monotonic;       /* time.monotonic */
static PyObject *current_thread;  /* threading.current_thread */
/* The GIL (Py_mod_gil) serialises every use of these two. */
static unsigned long long entries_made;
static long process_id;

#ifndef MS_WINDOWS
/* Runs in a forked child, inside fork(): getpid() is async-signal-safe. */
static void
entry_forked(void)
{
    process_id = (long)getpid();
}
#endif

/* A new entry of *type*; the arguments are borrowed. */
static PyObject *
entry_make(PyTypeObject *type, PyObject *obj, PyObject *scope, PyObject *thread)
{
    PyObject *created = PyObject_CallNoArgs(monotonic);
    if (created == NULL) {
        return NULL;
    }
    if (thread == NULL || thread == Py_None) {
        thread = PyObject_CallNoArgs(current_thread);
        if (thread == NULL) {
            Py_DECREF(created);
            return NULL;
        }
    }
    else {
        Py_INCREF(thread);
    }
    EntryFields *self = (EntryFields *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(created);
        Py_DECREF(thread);
        return NULL;
    }
    self->obj = Py_NewRef(obj);
    self->scope = Py_NewRef(scope);
    self->thread = thread;
    self->created = created;
    self->attached = Py_NewRef(Py_None);
    self->slot = Py_NewRef(Py_None);
    self->watcher = Py_NewRef(Py_None);
    self->logged = Py_NewRef(Py_False);
    self->warned = Py_NewRef(Py_False);
    self->number = ++entries_made;
    self->pid = process_id;
    return (PyObject *)self;
}

static PyObject *
EntryFields_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"obj", "scope", "thread", NULL};
    PyObject *obj, *scope, *thread = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:Entry", keywords,
                                     &obj, &scope, &thread)) {
        return NULL;
    }
    return entry_make(type, obj, scope, thread);
}


/*
 * The registries' call, Entry(obj, scope[, thread]), without an argument
 * tuple; anything else goes through EntryFields_new().
 */
static PyObject *
EntryFields_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf,
                       PyObject *kwnames)
{
    Py_ssize_t given = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && given >= 2 && given <= 3) {
        return entry_make((PyTypeObject *)type, args[0], args[1],
                          given == 3 ? args[2] : NULL);
    }
    PyObject *tuple = PyTuple_New(given);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < given; i++) {
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    }
    PyObject *kwds = NULL;
    if (kwnames != NULL) {
        kwds = PyDict_New();
        for (Py_ssize_t i = 0; kwds != NULL && i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyDict_SetItem(kwds, PyTuple_GET_ITEM(kwnames, i),
                               args[given + i]) < 0) {
                Py_CLEAR(kwds);
            }
        }
        if (kwds == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
    }
    PyObject *made = EntryFields_new((PyTypeObject *)type, tuple, kwds);
    Py_DECREF(tuple);
    Py_XDECREF(kwds);
    return made;
}

/*
 * A subclass that neither creates nor initialises its instances in its own
 * way is called as this type is: the interpreter reads a type's vectorcall
 * from the type itself, and does not inherit it.
 */
static PyObject *
EntryFields_init_subclass(PyObject *cls, PyObject *args, PyObject *kwds)
{
    PyTypeObject *type = (PyTypeObject *)cls;
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "__init_subclass__() takes no arguments");
        return NULL;
    }
    if (type->tp_new == EntryFields_new &&
        type->tp_init == PyBaseObject_Type.tp_init) {
        type->tp_vectorcall = EntryFields_vectorcall;
    }
    Py_RETURN_NONE;
}


static PyMethodDef EntryFields_methods[] = {
    {"__init_subclass__", (PyCFunction)(void (*)(void))EntryFields_init_subclass,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "Let a plain subclass be called without an argument tuple."},
    {NULL},
};

static int
EntryFields_traverse(EntryFields *self, visitproc visit, void *arg)
{
    /* Not the type: it is static, and subtype_traverse() visits a
       subclass's heap type itself. */
    Py_VISIT(self->obj);
    Py_VISIT(self->scope);
    Py_VISIT(self->thread);
    Py_VISIT(self->attached);
    Py_VISIT(self->slot);
    Py_VISIT(self->watcher);
    Py_VISIT(self->created);
    Py_VISIT(self->logged);
    Py_VISIT(self->warned);
    return 0;
}

static int
EntryFields_clear(EntryFields *self)
{
    Py_CLEAR(self->obj);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->thread);
    Py_CLEAR(self->attached);
    Py_CLEAR(self->slot);
    Py_CLEAR(self->watcher);
    Py_CLEAR(self->created);
    Py_CLEAR(self->logged);
    Py_CLEAR(self->warned);
    return 0;
}

static void
EntryFields_dealloc(EntryFields *self)
{
    /* A subclass's instance reaches here from subtype_dealloc(), which
       releases the reference to its heap type: this type is static. */
    PyObject_GC_UnTrack(self);
    EntryFields_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef EntryFields_members[] = {
    {"obj", T_OBJECT_EX, offsetof(EntryFields, obj), 0, "The session."},
    {"scope", T_OBJECT_EX, offsetof(EntryFields, scope), 0,
     "A plain scope key or its rendering; None for the creating thread."},
    {"_thread", T_OBJECT_EX, offsetof(EntryFields, thread), 0, NULL},
    {"attached", T_OBJECT_EX, offsetof(EntryFields, attached), 0,
     "The session's instrumentation, while attached."},
    {"slot", T_OBJECT_EX, offsetof(EntryFields, slot), 0,
     "Where the registry keeps the object (registry-specific)."},
    {"watcher", T_OBJECT_EX, offsetof(EntryFields, watcher), 0,
     "Whatever notices the end of the scope, kept alive with the entry."},
    {"created", T_OBJECT_EX, offsetof(EntryFields, created), 0,
     "time.monotonic() at creation."},
    {"_number", T_ULONGLONG, offsetof(EntryFields, number), READONLY, NULL},
    {"_pid", T_LONG, offsetof(EntryFields, pid), READONLY, NULL},
    {"logged", T_OBJECT_EX, offsetof(EntryFields, logged), 0,
     "Whether the session's creation was logged."},
    {"warned", T_OBJECT_EX, offsetof(EntryFields, warned), 0,
     "Whether a leak warning was emitted for the session."},
    {NULL},
};

PyDoc_STRVAR(EntryFields_doc,
"EntryFields(obj, scope, thread=None)\n"
"--\n"
"\n"
"The fields of a session's entry: the session, its scope, the creating\n"
"thread (the current one when None), a monotonic creation time and a number\n"
"unique in the process.");

static PyTypeObject EntryFields_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scoped._speedups.EntryFields",
    .tp_basicsize = sizeof(EntryFields),
    .tp_dealloc = (destructor)EntryFields_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = EntryFields_doc,
    .tp_traverse = (traverseproc)EntryFields_traverse,
    .tp_clear = (inquiry)EntryFields_clear,
    .tp_methods = EntryFields_methods,
    .tp_members = EntryFields_members,
    .tp_new = EntryFields_new,
    .tp_vectorcall = EntryFields_vectorcall,
};

static int
entries_exec(PyObject *module)
{
    if (monotonic == NULL) {
        PyObject *time = PyImport_ImportModule("time");
        if (time == NULL) {
            return -1;
        }
        PyObject *threading = PyImport_ImportModule("threading");
        if (threading == NULL) {
            Py_DECREF(time);
            return -1;
        }
        monotonic = PyObject_GetAttrString(time, "monotonic");
        current_thread = PyObject_GetAttrString(threading, "current_thread");
        Py_DECREF(time);
        Py_DECREF(threading);
        if (monotonic == NULL || current_thread == NULL) {
            Py_CLEAR(monotonic);
            Py_CLEAR(current_thread);
            return -1;
        }
#ifdef MS_WINDOWS
        process_id = (long)_getpid();
#else
        process_id = (long)getpid();
        if (pthread_atfork(NULL, NULL, entry_forked) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return -1;
        }
#endif
    }
    if (PyType_Ready(&EntryFields_Type) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "EntryFields",
                                 (PyObject *)&EntryFields_Type);
}

/* --- the ledger ---------------------------------------------------------- */

/*
 * The fields of scoped.registry._ledger.Ledger and its settle(), the one
 * ledger operation on every session's end; the Python subclass adds the
 * rest. scoped/registry/_ledger.py holds the pure-Python equivalent, and
 * tests/test_registry_parts.py runs the ledger's tests against both.
 * settle() takes the ledger's own lock, as the Python version does: what
 * it does is atomic because of that lock, not because of the GIL.
 */
typedef struct {
    PyObject_HEAD
    PyObject *entries;   /* dict: entry -> None, in creation order */
    PyObject *claimed;   /* set: entries someone is closing */
    PyObject *lock;      /* threading.RLock, renewed in a forked child */
    Py_ssize_t removed;
    Py_ssize_t cleaned_up;
} LedgerFields;

static PyObject *rlock;          /* threading.RLock */
static PyObject *str_acquire;    /* "acquire" */
static PyObject *str_release;    /* "release" */
static PyObject *str_removed;    /* "removed" */

static PyObject *
LedgerFields_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    LedgerFields *self = (LedgerFields *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->entries = PyDict_New();
    self->claimed = PySet_New(NULL);
    self->lock = PyObject_CallNoArgs(rlock);
    if (self->entries == NULL || self->claimed == NULL || self->lock == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
LedgerFields_traverse(LedgerFields *self, visitproc visit, void *arg)
{
    Py_VISIT(self->entries);
    Py_VISIT(self->claimed);
    Py_VISIT(self->lock);
    return 0;
}

static int
LedgerFields_clear(LedgerFields *self)
{
    Py_CLEAR(self->entries);
    Py_CLEAR(self->claimed);
    Py_CLEAR(self->lock);
    return 0;
}

static void
LedgerFields_dealloc(LedgerFields *self)
{
    PyObject_GC_UnTrack(self);
    LedgerFields_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Forget *entry* and count it, under the lock; 1 if it was live. */
static int
settle_locked(LedgerFields *self, PyObject *entry, int removed)
{
    int live = PyDict_Contains(self->entries, entry);
    if (live <= 0) {
        return live;
    }
    if (PyDict_DelItem(self->entries, entry) < 0) {
        return -1;
    }
    if (removed) {
        self->removed++;
    }
    else {
        self->cleaned_up++;
    }
    if (PySet_GET_SIZE(self->claimed) > 0 &&
        PySet_Discard(self->claimed, entry) < 0) {
        return -1;
    }
    return 1;
}

static PyObject *
LedgerFields_settle(LedgerFields *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)
{
    /* settle(entry, *, removed): exactly that, no other spelling. */
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *keyword = nkw == 1 ? PyTuple_GET_ITEM(kwnames, 0) : NULL;
    /* Keywords in code are interned: the pointer test is the usual match. */
    if (nargs != 1 || keyword == NULL ||
        (keyword != str_removed &&
         PyUnicode_Compare(keyword, str_removed) != 0)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError,
                            "settle() takes an entry and removed= only");
        }
        return NULL;
    }
    int removed = args[1] == Py_True ? 1 : PyObject_IsTrue(args[1]);
    if (removed < 0) {
        return NULL;
    }
    if (self->lock == NULL) {
        PyErr_SetString(PyExc_AttributeError, "the ledger has no lock");
        return NULL;
    }
    PyObject *lock = Py_NewRef(self->lock);
    PyObject *held = PyObject_CallMethodNoArgs(lock, str_acquire);
    if (held == NULL) {
        Py_DECREF(lock);
        return NULL;
    }
    Py_DECREF(held);
    int live = settle_locked(self, args[0], removed);
    /* Released whatever happened, keeping any error for the caller. */
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    if (live < 0) {
        PyErr_Fetch(&type, &value, &traceback);
    }
    PyObject *released = PyObject_CallMethodNoArgs(lock, str_release);
    Py_DECREF(lock);
    if (released == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        return NULL;
    }
    Py_DECREF(released);
    if (live < 0) {
        PyErr_Restore(type, value, traceback);
        return NULL;
    }
    return PyBool_FromLong(live);
}

static PyMethodDef LedgerFields_methods[] = {
    {"settle", (PyCFunction)(void (*)(void))LedgerFields_settle,
     METH_FASTCALL | METH_KEYWORDS,
     "settle(entry, *, removed)\n--\n\n"
     "Forget *entry* and count it, exactly once; tell whether it was live."},
    {NULL},
};

static PyMemberDef LedgerFields_members[] = {
    {"_entries", T_OBJECT_EX, offsetof(LedgerFields, entries), READONLY, NULL},
    {"_claimed", T_OBJECT_EX, offsetof(LedgerFields, claimed), READONLY, NULL},
    {"lock", T_OBJECT_EX, offsetof(LedgerFields, lock), 0,
     "The registry's one lock (reentrant)."},
    {"removed", T_PYSSIZET, offsetof(LedgerFields, removed), 0,
     "Entries settled by a remove()."},
    {"cleaned_up", T_PYSSIZET, offsetof(LedgerFields, cleaned_up), 0,
     "Entries settled by the end of their scope."},
    {NULL},
};

PyDoc_STRVAR(LedgerFields_doc,
"LedgerFields()\n"
"--\n"
"\n"
"The live entries of a registry, the claims on them, its lock and its\n"
"counts, and settle().");

static PyTypeObject LedgerFields_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "scoped._speedups.LedgerFields",
    .tp_basicsize = sizeof(LedgerFields),
    .tp_dealloc = (destructor)LedgerFields_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = LedgerFields_doc,
    .tp_traverse = (traverseproc)LedgerFields_traverse,
    .tp_clear = (inquiry)LedgerFields_clear,
    .tp_methods = LedgerFields_methods,
    .tp_members = LedgerFields_members,
    .tp_new = LedgerFields_new,
};

static int
ledger_exec(PyObject *module)
{
    if (rlock == NULL) {
        PyObject *threading = PyImport_ImportModule("threading");
        if (threading == NULL) {
            return -1;
        }
        rlock = PyObject_GetAttrString(threading, "RLock");
        Py_DECREF(threading);
        str_acquire = PyUnicode_InternFromString("acquire");
        str_release = PyUnicode_InternFromString("release");
        str_removed = PyUnicode_InternFromString("removed");
        if (rlock == NULL || str_acquire == NULL || str_release == NULL ||
            str_removed == NULL) {
            Py_CLEAR(rlock);
            return -1;
        }
    }
    if (PyType_Ready(&LedgerFields_Type) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "LedgerFields",
                                 (PyObject *)&LedgerFields_Type);
}

/* --- the module ---------------------------------------------------------- */

/*
 * Multi-phase initialisation, for the slots that state what the module needs
 * of the interpreter: ScopedAttribute reads the registries' dicts through
 * borrowed references, which only the GIL keeps valid, EntryFields numbers
 * entries under the GIL, and the state is process-wide (static types,
 * interned names), so one interpreter only.
 */
static int
speedups_exec(PyObject *module)
{
    if (str_storage == NULL) {
        str_storage = PyUnicode_InternFromString("_scoped_storage");
        str_handles = PyUnicode_InternFromString("_scoped_handles");
        str_value = PyUnicode_InternFromString("value");
        str_qualname = PyUnicode_InternFromString("__qualname__");
        if (str_storage == NULL || str_handles == NULL ||
            str_value == NULL || str_qualname == NULL) {
            Py_CLEAR(str_storage);
            return -1;
        }
    }
    if (PyType_Ready(&ScopedAttribute_Type) < 0 ||
        PyModule_AddObjectRef(module, "ScopedAttribute",
                              (PyObject *)&ScopedAttribute_Type) < 0) {
        return -1;
    }
    if (entries_exec(module) < 0) {
        return -1;
    }
    return ledger_exec(module);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "scoped._speedups",
    .m_doc = "Compiled attribute proxies, entries and ledgers for scoped; optional.",
    .m_size = 0,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
