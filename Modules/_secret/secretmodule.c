/* _secret: the C core of the `secret` package (runtimesecret experiment).
 *
 * secret.do(func, /, *args, **kwargs) runs func in secret mode; see
 * Lib/secret/__init__.py for the user documentation and
 * shared spec §2 for the contract.
 */

#include "Python.h"
#include "pycore_gc.h"            // _PyGC_Collect()
#include "pycore_frame.h"         // _PyInterpreterFrame, PyFrameObject
#include "pycore_genobject.h"     // _PyAsyncGenValueWrapperNew()
#include "pycore_hashtable.h"     // _Py_hashtable_new()
#include "pycore_object_stack.h"  // _PyObjectStackChunk_New()
#include "pycore_initconfig.h"    // _Py_GetEnv()
#include "pycore_modsupport.h"    // _PyArg_CheckPositional()
#include "pycore_object.h"        // _PyObject_IS_GC()
#include "pycore_interp.h"        // PyInterpreterState.gc
#include "pycore_pyerrors.h"      // _PyErr_FormatFromCause(),
                                  // _PyException_AddNote()
#include "pycore_pystate.h"       // _PyThreadState_GET()

#include "pycore_secret.h"

/* Off do()'s normal path: out of line, and laid out as unlikely. */
#if defined(__GNUC__) || defined(__clang__)
#  define SECRET_COLD Py_NO_INLINE __attribute__((cold))
#else
#  define SECRET_COLD Py_NO_INLINE
#endif

/* What each part of spec §3 erases in this build. Each later piece of the
 * experiment flips its entry when it lands; nothing claims protection that
 * is not implemented. needs: what the kernel must have granted the secret
 * heap for the claim (best effort, §3.4): DUMP excluded from core dumps,
 * LOCK locked against swap. no_core_dump_or_swap (both) is kept for code
 * written before the two were reported apart. */
enum { DUMP = 1, LOCK = 2 };
static const struct {
    const char *name;
    int erased;
    int needs;
} protections[] = {
    {"registers", 1, 0},                /* §3.1 */
    {"c_stack", 1, 0},                  /* §3.2 */
    {"signal_frames", 1, 0},            /* §3.2 */
    {"frame_stack", 1, 0},              /* §3.3 */
    {"heap", 1, 0},                     /* §3.4 */
    {"no_core_dump", 1, DUMP},          /* §3.4 */
    {"no_swap", 1, LOCK},               /* §3.4 */
    {"no_core_dump_or_swap", 1, DUMP | LOCK},   /* §3.4, deprecated */
    /* §3.4/§3.5: buffered and text I/O objects (patch 0014) */
    {"io_buffers", 1, 0},
    /* §2: an exception leaving do() holds no frame of func */
    {"exception_frames", 1, 0},
    /* §3.4: lru_cache, re and urllib.parse caches are not filled in secret
     * mode (patches 0018, 0019) */
    {"caches", 1, 0},
    /* §3.4/§3.5: the adaptive state of code made before do() does not
     * change in secret mode (patch 0023): only with -X secret_freeze_code,
     * see freeze_code */
    {"code_state", 1, 0},
};

/* -X secret_freeze_code[=1|0] or PYTHONSECRETFREEZECODE=1|0 (patch 0023):
 * in secret mode, code that is not a secret block neither counts nor
 * specializes nor marks its first run, so that its state says nothing of
 * what ran in do(). Off by default: such code then runs unspecialized in
 * do() (richards run in do() only: 1.9x the instructions). Read when the
 * module is first loaded; the eval loop reads the flag only in secret
 * mode. freeze_code_error: a value that is not valid, which do() raises
 * (a typo must not leave the state silently unprotected). */
int _PySecret_freeze_code;
static char freeze_code_error[200];

/* The module's state: one per interpreter. */
typedef struct {
    /* A function made outside secret mode, whose function, globals,
     * builtins and code stand in for func's in a cleared frame (see "The
     * exception that leaves do()"). */
    PyObject *placeholder;
    PyObject *async_call_type;      /* what do_async() returns */
    /* Greenlets: the tracer's type, the key of a thread's tracer in its
     * thread-state dict, the name of greenlet's C module, and its
     * functions once it is loaded. */
    PyObject *gl_tracer_type;
    PyObject *gl_key;
    PyObject *gl_modname;
    PyObject *gl_getcurrent;
    PyObject *gl_gettrace;
    PyObject *gl_settrace;
    PyObject *(*gl_capi_getcurrent)(void);
    int (*gl_capi_main)(PyObject *);
    int (*gl_capi_active)(PyObject *);
    /* gl_modules_changes when sys.modules was last searched for greenlet
     * (-1: it is not watched, search at every do()). */
    Py_ssize_t gl_modules_seen;
} secret_state;

/* When do() began, for the exception that leaves it (see do_epoch). */
typedef struct do_epoch {
    PyObject *marker;       /* NULL: cannot tell */
    int from_gen0;          /* since the last reorder: generation 0 */
    int lost;               /* a record failed: cannot tell */
    _Py_hashtable_t *made;  /* what was made before the last reorder */
    _Py_hashtable_t *old;   /* made before do() but left in generation 0
                               by a reorder (held: no address reuse) */
    /* The thread's list (patch 0024). In ordinary memory, not on do()'s
     * stack: greenlets move stacks away and finish do() calls in any
     * order. */
    struct do_epoch *prev, *next;
} do_epoch;

/* Close an object whose body would run after do() returned, while still in
 * secret mode, so that its finally blocks run protected. */
static int
close_deferred(PyObject *obj)
{
    PyObject *res;
    if (PyAsyncGen_CheckExact(obj)) {
        /* aclose() returns an awaitable; one send() runs it to completion
         * unless the generator awaits in a finally block. */
        PyObject *aw = PyObject_CallMethod(obj, "aclose", NULL);
        if (aw == NULL) {
            return -1;
        }
        res = PyObject_CallMethod(aw, "send", "O", Py_None);
        if (res == NULL) {
            Py_DECREF(aw);
            if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
        Py_DECREF(res);
        res = PyObject_CallMethod(aw, "close", NULL);
        Py_DECREF(aw);
    }
    else {
        res = PyObject_CallMethod(obj, "close", NULL);
    }
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static const char *
deferred_kind(PyObject *obj)
{
    if (PyCoro_CheckExact(obj)) {
        return "a coroutine";
    }
    if (PyAsyncGen_CheckExact(obj)) {
        return "an async generator";
    }
    if (PyGen_Check(obj)) {
        return "a generator";
    }
    return NULL;
}

/* The API that protects what deferred_kind() names (spec §2.1). */
static const char *
deferred_api(PyObject *obj)
{
    if (PyAsyncGen_CheckExact(obj)) {
        return "'async for ... in secret.aiterate(func, ...)'";
    }
    if (PyGen_Check(obj) && !PyCoro_CheckExact(obj)) {
        return "secret.iterate(func, ...)";
    }
    return "'await secret.do_async(func, ...)'";
}

/* func returned a coroutine, generator or async generator (res, consumed):
 * its body would run later, outside secret mode. Close it and raise
 * TypeError; returns NULL. */
static SECRET_COLD PyObject *
refuse_deferred(PyObject *func, PyObject *res)
{
    const char *kind = deferred_kind(res);
    const char *api = deferred_api(res);
    int closed = close_deferred(res);
    Py_DECREF(res);
    if (closed < 0) {
        _PyErr_FormatFromCause(
            PyExc_TypeError,
            "secret.do() cannot protect %R: it returned %s, whose body "
            "would run outside secret mode (closing it failed)",
            func, kind);
    }
    else {
        PyErr_Format(
            PyExc_TypeError,
            "secret.do() cannot protect %R: it returned %s, whose body "
            "would run outside secret mode; use %s instead",
            func, kind, api);
    }
    return NULL;
}

#if _Py_SECRET_HEAP
/* The cyclic garbage func made is collected at the outermost do() exit
 * (spec §3.4), still in secret mode, so that its finalizers run protected
 * and their stack use is erased by the exit; only if func made GC objects,
 * and at a cost that follows what func made, not the heap (§4).
 *
 * func's objects sit in generation 0, or in older ones if collections
 * meanwhile promoted them. Collecting the oldest generation would walk the
 * whole heap; but the collector only ever appends to a generation's list,
 * so what reached the oldest generation while func ran lies after the
 * object that was last in it when do() began. do() holds that object (the
 * marker) so it stays there: a collection never moves an object that has
 * a reference from outside the heap. At exit that tail moves back to
 * generation 1 and generation 1 is collected: the young generations and
 * what func's objects were promoted with, nothing older. */
/* gc.unfreeze() puts objects that were younger after older ones in the
 * oldest generation (Python/gc.c counts its calls, patch 0011). */
uint64_t _PySecret_gc_unfreezes;
void _PySecret_GCWillReorder(PyInterpreterState *interp, int gen0_emptied);

/* The last object of a generation's list (the youngest one that has any),
 * or of the oldest only, that a collection cannot untrack (it does so to
 * tuples and dicts that hold no GC object) and that cannot move (an
 * immortal one goes to the permanent generation); a new reference, or NULL
 * if there is none (*gave_up: none near the end). */
static PyObject *
last_tracked(struct _gc_runtime_state *gc, int oldest_only, int *gave_up)
{
    int steps = 0;
    *gave_up = 0;
    for (int gen = oldest_only ? NUM_GENERATIONS - 1 : 0;
         gen < NUM_GENERATIONS; gen++)
    {
        PyGC_Head *head = &gc->generations[gen].head;
        for (PyGC_Head *p = _PyGCHead_PREV(head); p != head;
             p = _PyGCHead_PREV(p))
        {
            PyObject *op = _Py_FROM_GC(p);
            if (!PyTuple_CheckExact(op) && !PyDict_CheckExact(op)
                && !_Py_IsImmortal(op))
            {
                return Py_NewRef(op);
            }
            if (++steps == 4096) {
                *gave_up = 1;
                return NULL;
            }
        }
    }
    return NULL;
}

typedef struct {
    Py_ssize_t collections[NUM_GENERATIONS];
    uint64_t gc_links;
    uint64_t unfreezes;
    PyObject *marker;       /* last of the oldest generation at entry */
    int has_marker;         /* 0: none taken (inside a collection) */
} exit_gc;

static void
exit_gc_start(PyThreadState *tstate, exit_gc *g)
{
    struct _gc_runtime_state *gc = &tstate->interp->gc;
    g->gc_links = _PySecret_tls.gc_links;
    g->unfreezes = _Py_atomic_load_uint64_relaxed(&_PySecret_gc_unfreezes);
    for (int i = 0; i < NUM_GENERATIONS; i++) {
        g->collections[i] = gc->generation_stats[i].collections;
    }
    g->marker = NULL;
    /* During a collection (a finalizer or a gc callback calls do()) the
     * lists are being rebuilt: no marker. */
    g->has_marker = !_Py_atomic_load_int_relaxed(&gc->collecting);
    if (g->has_marker) {
        int gave_up;
        g->marker = last_tracked(gc, 1, &gave_up);
        g->has_marker = !gave_up;
    }
}

/* Move what follows the marker in the oldest generation (all of it if it
 * was empty) to the end of generation 1. -1 if the marker is no longer in
 * the oldest generation (gc.freeze(), untracked): then only a collection
 * of all of it is sure to cover func's objects. Also when gc.unfreeze()
 * ran meanwhile. */
static int
youngen_tail(struct _gc_runtime_state *gc, exit_gc *g)
{
    PyGC_Head *old = &gc->generations[NUM_GENERATIONS - 1].head;
    PyGC_Head *young = &gc->generations[NUM_GENERATIONS - 2].head;
    PyGC_Head *from;
    Py_ssize_t n = 0;
    if (!g->has_marker
        || _Py_atomic_load_uint64_relaxed(&_PySecret_gc_unfreezes)
           != g->unfreezes)
    {
        return -1;
    }
    if (g->marker == NULL) {
        from = _PyGCHead_NEXT(old);
    }
    else {
        if (!_PyObject_GC_IS_TRACKED(g->marker)) {
            return -1;
        }
        PyGC_Head *m = _Py_AS_GC(g->marker);
        PyGC_Head *p = _PyGCHead_NEXT(m);
        for (; p != old; p = _PyGCHead_NEXT(p), n++) {
            /* Another list's head: the marker is not in the oldest. */
            for (int i = 0; i < NUM_GENERATIONS - 1; i++) {
                if (p == &gc->generations[i].head) {
                    return -1;
                }
            }
            if (p == &gc->permanent_generation.head) {
                return -1;
            }
        }
        from = _PyGCHead_NEXT(m);
    }
    if (from == old) {
        return 0;
    }
    /* The running do()s record what their order still tells. */
    _PySecret_GCWillReorder(_PyInterpreterState_GET(), 0);
    PyGC_Head *last = _PyGCHead_PREV(old);
    PyGC_Head *before = _PyGCHead_PREV(from);
    _PyGCHead_SET_NEXT(before, old);
    _PyGCHead_SET_PREV(old, before);
    PyGC_Head *ylast = _PyGCHead_PREV(young);
    _PyGCHead_SET_NEXT(ylast, from);
    _PyGCHead_SET_PREV(from, ylast);
    _PyGCHead_SET_NEXT(last, young);
    _PyGCHead_SET_PREV(young, last);
    /* Their promotion counted them once already. */
    gc->long_lived_pending = gc->long_lived_pending > n
                             ? gc->long_lived_pending - n : 0;
    return 0;
}

/* The generation whose collection covers func's objects. */
static int
exit_gc_generation(PyThreadState *tstate, exit_gc *g)
{
    struct _gc_runtime_state *gc = &tstate->interp->gc;
    int promoted = 0, gen = 0;
    for (int i = 0; i < NUM_GENERATIONS; i++) {
        if (gc->generation_stats[i].collections != g->collections[i]) {
            gen = 1;
            promoted |= i >= NUM_GENERATIONS - 2;
        }
    }
    /* gc.freeze() and gc.unfreeze() move generation 0 into the oldest. */
    promoted |= _Py_atomic_load_uint64_relaxed(&_PySecret_gc_unfreezes)
                != g->unfreezes;
    if (promoted && youngen_tail(gc, g) < 0) {
        gen = NUM_GENERATIONS - 1;
    }
    return gen;
}

/* A do() that ended during a collection could not collect (a collection
 * does not nest): the collection, once done, calls
 * _PySecret_CollectDeferred() (patch 0011), which collects in secret mode
 * what was asked for, the oldest generation at most. */
static _Py_thread_local int deferred_gen = -1;

static void
collect(PyThreadState *tstate, int gen)
{
    /* The collector asserts no exception is set; keep func's. */
    PyObject *exc = _PyErr_GetRaisedException(tstate);
    (void)_PyGC_Collect(tstate, gen, _Py_GC_REASON_MANUAL);
    if (_PyErr_Occurred(tstate)) {
        PyErr_WriteUnraisable(NULL);
    }
    _PyErr_SetRaisedException(tstate, exc);
}

/* 1 if it collected (finalizers may have run). */
static int
collect_exit_garbage(PyThreadState *tstate, exit_gc *g)
{
    int collected = 0;
    if (_PySecret_tls.gc_links != g->gc_links) {
        if (_Py_atomic_load_int_relaxed(&tstate->interp->gc.collecting)) {
            int gen = g->has_marker ? exit_gc_generation(tstate, g)
                                    : NUM_GENERATIONS - 1;
            if (gen > deferred_gen) {
                deferred_gen = gen;
            }
        }
        else {
            collect(tstate, exit_gc_generation(tstate, g));
            collected = 1;
        }
    }
    Py_CLEAR(g->marker);
    return collected;
}

void
_PySecret_CollectDeferred(PyThreadState *tstate)
{
    int gen = deferred_gen;
    if (gen < 0) {
        return;
    }
    deferred_gen = -1;
    _PySecretCall call;
    int entered = _PySecret_ENTER(tstate, &call);
    collect(tstate, gen);
    if (entered) {
        _PySecret_LEAVE(tstate, &call);
    }
}
#endif

/* ---- The exception that leaves do() (spec §2) ----------------------------
 *
 * A traceback keeps the frames it passed through, and a finished frame keeps
 * its locals: an exception raised in func would carry func's secrets out of
 * do() to whoever looks at it (error reporters read frame locals). At the
 * exit, before the collection and the erasure, the exception that leaves and
 * every exception chained to it (__context__, __cause__, the members of an
 * exception group, recursively) lose the traceback entries of code that ran
 * inside do(); those frames are cleared (frame.clear()), so that their locals
 * are released, hence zeroed; a note on the exception names each dropped
 * frame (file, line, function: no values).
 *
 * Which traceback entries are func's (dropped). Entries are added at the
 * front as an exception propagates, so those added during do() come first;
 * what follows is older history. An entry is func's unless:
 * - its frame still runs on this thread (do's caller or above): the
 *   exception was caught there, this and what follows is the caller's
 *   history (func re-raised the exception its caller was handling);
 * - it was made before do() began (see do_epoch): an exception that existed
 *   then (a failed future the caller keeps) keeps its history;
 * - the entry was made outside secret mode (not a secret block) and its
 *   frame is not func's either: follow f_back (a finished frame keeps its
 *   caller there, see take_ownership() in Python/frame.c): a secret frame
 *   on the way (made in secret mode) means it ran below func; reaching this
 *   thread's running frames first means it finished before do() (an
 *   exception kept from earlier): not func's;
 * - a chain that ends elsewhere (a suspended generator, another thread's
 *   frames) is func's when the exception was reached through one of func's
 *   (a pool worker's exception that func chained), else not.
 * In the exception that leaves, entries are dropped from the start up to
 * the first that is not func's. A chained exception is func's if its first
 * entry is (the one its caller was handling when it called do(), which
 * becomes the context of what func raises, is not); then its entries are
 * dropped in the same way. Nested do() and threads started in secret mode
 * make everything secret: an enclosing do()'s entries may then be dropped
 * early (no harm: that do() would drop them).
 *
 * Which frames are cleared: every finished frame of a dropped entry that
 * finished during do(); on its f_back chain (a callee's f_back keeps its
 * caller's locals alive even when the caller is in no traceback), every
 * finished frame up to the first running one when that one runs on this
 * thread (do's caller or above: the frames in between ran inside do(),
 * whoever made their frame objects, a sampling profiler's thread
 * included), else only the finished frames made in secret mode. A running
 * frame (another thread's) or a suspended generator's cannot be cleared
 * (frame.clear() refuses both): it is only dropped.
 *
 * A cleared frame still points to its function, globals, builtins and code
 * (frame.clear() leaves them): a function made in func holds its closure
 * cells and defaults, an exec()'d namespace holds what the code assigned,
 * code compiled in func holds its constants. Where one of these is a
 * secret block, the frame gets a placeholder function made outside secret
 * mode (its globals and builtins, which the frame borrows from its
 * function, come with it), and a secret code object is replaced by the
 * placeholder's code (the frame's instruction pointer moves into it, so
 * its line number stays readable). This is done last, once every note is
 * written: the notes read the code objects. */

enum { FRAMES_CALLER, FRAMES_FUNC, FRAMES_DETACHED };

/* The walk's own memory (its work stack, the sets of what it saw and of
 * what do() made, the frames to swap) holds only pointers: it is taken
 * outside the secret heap, secret mode dropped for the call, so that a
 * func that filled the secret heap cannot stop the walk. */
static void *
plain_malloc(size_t n)
{
#if _Py_SECRET_HEAP
    int mode = _PySecret_tls.mode;
    _PySecret_tls.mode = 0;
    void *p = PyMem_RawMalloc(n);
    _PySecret_tls.mode = mode;
    return p;
#else
    return PyMem_RawMalloc(n);
#endif
}

static void *
plain_realloc(void *p, size_t n)
{
#if _Py_SECRET_HEAP
    int mode = _PySecret_tls.mode;
    _PySecret_tls.mode = 0;
    p = PyMem_RawRealloc(p, n);
    _PySecret_tls.mode = mode;
    return p;
#else
    return PyMem_RawRealloc(p, n);
#endif
}

static void
plain_free(void *p)
{
    PyMem_RawFree(p);
}

static _Py_hashtable_allocator_t plain_alloc = {plain_malloc, plain_free};

static _Py_hashtable_t *
pointer_set(_Py_hashtable_destroy_func key_destroy)
{
    return _Py_hashtable_new_full(_Py_hashtable_hash_ptr,
                                  _Py_hashtable_compare_direct,
                                  key_destroy, NULL, &plain_alloc);
}

/* What existed when do() began. A secret block was made in secret mode.
 * For the others the collector's lists tell: the collector appends a new
 * object at the end of the youngest generation, so the objects that
 * follow an object, reading the oldest generation, then the younger ones,
 * were tracked after it. do() holds the last tracked object at entry (the
 * marker; held, it is reachable from outside the lists, so a collection
 * never moves it). A collection breaks the order (move_unreachable() puts
 * an object it first took for unreachable back at the end of its list,
 * after objects made later), and so do gc.freeze(), gc.unfreeze() and
 * youngen_tail(): before each, the collector calls
 * _PySecret_GCWillReorder() (patch 0024), and every do() running in the
 * interpreter records what was tracked since its marker (or its last
 * record); each of them leaves generation 0 empty, so from then on what
 * is new is what generation 0 holds. A traceback entry and an exception
 * are tracked when they are made, a frame object when its frame finishes
 * (take_ownership()). The lists cannot tell when do() entered during a
 * collection, or at the exit of a do() that a finalizer runs during one,
 * or when there was no memory for a record: an object that is not a
 * secret block is then DATE_UNKNOWN, and the walk changes nothing of it
 * but what secret mode made (see purge_frame). */
enum { DATE_BEFORE, DATE_DURING, DATE_UNKNOWN };

#if _Py_SECRET_HEAP
/* do() calls running anywhere: the collector's hook has nothing to do
 * when there are none. */
static Py_ssize_t running_epochs;
#endif

/* A new epoch for a do() of tstate's thread, linked in its list; NULL if
 * there is no memory (then nothing made during do() that is not a secret
 * block can be dated: DATE_UNKNOWN). */
static do_epoch *
epoch_start(PyThreadState *tstate)
{
#if _Py_SECRET_HEAP
    /* Not on do()'s C stack: a greenlet switched out of do() has its
     * stack copied away and another's in place, while the thread's list
     * still links this epoch (tests/test_exceptions_review3.py). */
    do_epoch *e = plain_malloc(sizeof(do_epoch));
    if (e == NULL) {
        return NULL;
    }
    e->marker = NULL;
    e->from_gen0 = 0;
    e->lost = 0;
    e->made = e->old = NULL;
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    e->prev = NULL;
    e->next = ts->secret.epochs;
    if (e->next != NULL) {
        e->next->prev = e;
    }
    ts->secret.epochs = e;
    _Py_atomic_add_ssize(&running_epochs, 1);
    struct _gc_runtime_state *gc = &tstate->interp->gc;
    if (!_Py_atomic_load_int_relaxed(&gc->collecting)) {
        /* else: the lists are being rebuilt, cannot tell */
        int gave_up;
        e->marker = last_tracked(gc, 0, &gave_up);
    }
    return e;
#else
    return NULL;
#endif
}

static void
epoch_end(PyThreadState *tstate, do_epoch *e)
{
#if _Py_SECRET_HEAP
    if (e == NULL) {
        return;
    }
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    if (e->prev != NULL) {
        e->prev->next = e->next;
    }
    else {
        ts->secret.epochs = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    }
    _Py_atomic_add_ssize(&running_epochs, -1);
    if (e->made != NULL) {
        _Py_hashtable_destroy(e->made);
    }
    _Py_hashtable_t *old = e->old;
    PyObject *marker = e->marker;
    plain_free(e);
    if (old != NULL) {
        _Py_hashtable_destroy(old);     /* releases what it holds */
    }
    Py_XDECREF(marker);
#endif
}

#if _Py_SECRET_HEAP
/* Add to e->made the exceptions, traceback entries and frames that are
 * not secret blocks (those are known to be do()'s) tracked since e's
 * marker or last record. -1: the lists cannot tell (e's marker is gone). */
static int
record_since(struct _gc_runtime_state *gc, do_epoch *e)
{
    if (e->marker == NULL || e->lost) {
        return -1;
    }
    PyGC_Head *p;
    if (e->from_gen0) {
        p = _PyGCHead_NEXT(&gc->generations[0].head);
    }
    else if (!_PyObject_GC_IS_TRACKED(e->marker)) {
        return -1;
    }
    else {
        p = _PyGCHead_NEXT(_Py_AS_GC(e->marker));
    }
    if (e->made == NULL) {
        e->made = pointer_set(NULL);
        if (e->made == NULL) {
            return -1;
        }
    }
    for (;;) {
        int head = -1;
        for (int i = 0; i < NUM_GENERATIONS; i++) {
            if (p == &gc->generations[i].head) {
                head = i;
            }
        }
        if (head == 0) {
            return 0;                           /* the end */
        }
        if (head > 0) {
            /* The end of an older generation: the next one follows. */
            p = _PyGCHead_NEXT(&gc->generations[head - 1].head);
            continue;
        }
        if (p == &gc->permanent_generation.head) {
            return -1;                          /* not in a generation */
        }
        PyObject *op = _Py_FROM_GC(p);
        if (!_PySecret_IsSecret(op)
            && (PyTraceBack_Check(op) || PyFrame_Check(op)
                || PyExceptionInstance_Check(op))
            && (e->old == NULL || _Py_hashtable_get(e->old, op) == NULL)
            && _Py_hashtable_set(e->made, op, (void *)1) < 0)
        {
            return -1;
        }
        p = _PyGCHead_NEXT(p);
    }
}

static void
release_key(void *key)
{
    Py_DECREF((PyObject *)key);
}

/* Before a reorder that leaves generation 0 as it is: the objects of
 * interest in generation 0 that precede e's marker were made before do();
 * e->old holds them (a reference each, so that no object made later takes
 * an address of theirs), for dating by generation 0 from then on. */
static int
record_old_gen0(struct _gc_runtime_state *gc, do_epoch *e)
{
    PyGC_Head *head = &gc->generations[0].head;
    PyGC_Head *m = _Py_AS_GC(e->marker), *p;
    for (p = _PyGCHead_NEXT(head); p != head && p != m;
         p = _PyGCHead_NEXT(p)) {
    }
    if (p != m) {
        return 0;       /* the marker is older than generation 0 */
    }
    for (p = _PyGCHead_NEXT(head); p != m; p = _PyGCHead_NEXT(p)) {
        PyObject *op = _Py_FROM_GC(p);
        if (_PySecret_IsSecret(op)
            || !(PyTraceBack_Check(op) || PyFrame_Check(op)
                 || PyExceptionInstance_Check(op)))
        {
            continue;
        }
        if (e->old == NULL) {
            e->old = pointer_set(release_key);
            if (e->old == NULL) {
                return -1;
            }
        }
        if (_Py_hashtable_get(e->old, op) != NULL) {
            continue;
        }
        if (_Py_hashtable_set(e->old, Py_NewRef(op), (void *)1) < 0) {
            Py_DECREF(op);  /* not the last reference: the list holds it */
            return -1;
        }
    }
    return 0;
}

/* The collector is about to reorder its lists (patch 0024): each do()
 * running in the interpreter records what their order still tells, then
 * dates by generation 0. A collection and gc.freeze() leave generation 0
 * empty (gen0_emptied); gc.unfreeze() and youngen_tail() leave it as it
 * is, so what in it precedes the marker is set aside as older first. The
 * threads are held by the GIL (each changes its own list under it); the
 * list of threads by the runtime's lock. */
void
_PySecret_GCWillReorder(PyInterpreterState *interp, int gen0_emptied)
{
    if (_Py_atomic_load_ssize_relaxed(&running_epochs) == 0) {
        return;
    }
    struct _gc_runtime_state *gc = &interp->gc;
    HEAD_LOCK(&_PyRuntime);
    for (PyThreadState *t = interp->threads.head; t != NULL; t = t->next) {
        do_epoch *e = ((_PyThreadStateImpl *)t)->secret.epochs;
        for (; e != NULL; e = e->next) {
            if (e->lost) {
                continue;
            }
            if (record_since(gc, e) < 0
                || (!gen0_emptied && !e->from_gen0
                    && record_old_gen0(gc, e) < 0))
            {
                e->lost = 1;        /* cannot tell (no memory, no marker) */
                continue;
            }
            e->from_gen0 = 1;
        }
    }
    HEAD_UNLOCK(&_PyRuntime);
}
#endif

/* What was made during do() that is not a secret block (see do_epoch): a
 * set owned by the epoch, or NULL if the lists cannot tell. */
static _Py_hashtable_t *
made_during_set(PyThreadState *tstate, do_epoch *e)
{
#if _Py_SECRET_HEAP
    struct _gc_runtime_state *gc = &tstate->interp->gc;
    if (e == NULL || e->marker == NULL
        || _Py_atomic_load_int_relaxed(&gc->collecting)
        || record_since(gc, e) < 0)
    {
        return NULL;
    }
    return e->made;
#else
    return NULL;
#endif
}

/* What the walk's work stack holds: exceptions, and what it found in
 * them (see walk_referents). */
enum { ITEM_EXC, ITEM_OBJECT, ITEM_TRACEBACK, ITEM_FRAME };

typedef struct {
    PyObject *exc;
    int via_func;       /* reached through an exception that is func's */
    int kind;
} exc_item;

/* The walk over the exceptions: a work stack and a set of what was seen.
 * Their memory is ordinary (plain_malloc); if even that fails, the walk goes
 * on without the set, within a budget of visits, and if the budget runs out
 * or the stack cannot grow, what was not walked is cut (sever()). */
#define EXC_SMALL 32
#define EXC_BUDGET 1000000
typedef struct {
    PyThreadState *tstate;
    exc_item small[EXC_SMALL];
    exc_item *items;
    Py_ssize_t n, cap;
    _Py_hashtable_t *seen;  /* exceptions, and frames with their chain's
                               decision; NULL: degraded */
    Py_ssize_t budget;
    int lost;               /* something could not be walked */
    do_epoch *epoch;
    _Py_hashtable_t *during;    /* made_during_set() (the epoch's), built
                                   when needed */
    int during_built;
    PyObject **swap;        /* cleared frames, for swap_frame() at the end */
    Py_ssize_t nswap, capswap;
    PyObject **notes;       /* (exc, tb, keep): notes to write at the end */
    Py_ssize_t nnotes, capnotes;
    PyObject *placeholder;  /* borrowed; NULL: none */
    Py_ssize_t changed;     /* entries unlinked, frames that lost locals:
                               finalizers may have run */
} exc_walk;

/* When op was made (see do_epoch): DATE_BEFORE, DATE_DURING or
 * DATE_UNKNOWN. */
static int
made_during(exc_walk *w, PyObject *op)
{
    if (_PySecret_IsSecret(op)) {
        return DATE_DURING;
    }
    if (!w->during_built) {
        w->during_built = 1;
        w->during = made_during_set(w->tstate, w->epoch);
    }
    if (w->during == NULL) {
        return DATE_UNKNOWN;
    }
    return (_Py_hashtable_get(w->during, op) != NULL ? DATE_DURING
            : DATE_BEFORE);
}

/* Is the interpreter frame running on this thread: do's caller or one of
 * its callers (all that is running here while do() exits)? */
static int
on_this_stack(PyThreadState *tstate, _PyInterpreterFrame *f)
{
    for (_PyInterpreterFrame *p = tstate->current_frame; p != NULL;
         p = p->previous) {
        if (p == f) {
            return 1;
        }
    }
    return 0;
}

/* Running (on some thread), as opposed to finished or suspended. */
static int
frame_running(PyFrameObject *f)
{
    _PyInterpreterFrame *fr = f->f_frame;
    if (fr->owner == FRAME_OWNED_BY_THREAD) {
        return 1;
    }
    return (fr->owner == FRAME_OWNED_BY_GENERATOR
            && _PyFrame_GetGenerator(fr)->gi_frame_state == FRAME_EXECUTING);
}

static int
frame_finished(PyFrameObject *f)
{
    return f->f_frame->owner == FRAME_OWNED_BY_FRAME_OBJECT;
}

/* The origin of the last frame classified: the entries of a traceback are
 * classified in order, and an entry's frame usually has the previous
 * entry's frame as its f_back, so a deep traceback (a recursion in a pool
 * worker) costs one step per entry, not one per frame of its chain. */
typedef struct {
    PyFrameObject *frame;   /* borrowed: the traceback holds it */
    int origin;
} origin_memo;

/* Where a frame comes from (see above): FRAMES_CALLER, this thread's
 * running frames or their history; FRAMES_FUNC, below func; else
 * FRAMES_DETACHED. */
static int
frames_origin(PyThreadState *tstate, PyFrameObject *f, origin_memo *memo)
{
    PyFrameObject *first = f;
    int origin = FRAMES_DETACHED;
    while (f != NULL) {
        if (memo != NULL && f == memo->frame) {
            origin = memo->origin;
            break;
        }
        if (frame_running(f)) {
            origin = (on_this_stack(tstate, f->f_frame) ? FRAMES_CALLER
                      : FRAMES_DETACHED);
            break;
        }
        if (_PySecret_IsSecret(f)) {
            origin = FRAMES_FUNC;
            break;
        }
        if (!frame_finished(f)) {
            break;                      /* suspended: no f_back */
        }
        f = f->f_back;
    }
    if (memo != NULL) {
        memo->frame = first;
        memo->origin = origin;
    }
    return origin;
}

/* What becomes of a traceback entry. ENTRY_DROP: func's, unlinked and its
 * frames cleared. ENTRY_CALLER: its frame runs on this thread (the caller's,
 * or an enclosing do()'s func's): the caller's history starts there.
 * ENTRY_KEEP: not func's (made before do(), or the caller's history).
 * ENTRY_PURGE: it cannot be dated (see do_epoch) and would be func's if it
 * was made during do(): kept, its frame loses only what secret mode made
 * (purge_frame). An entry made in secret mode (a secret block) is func's
 * unless its frame runs here. via_func: see FRAMES_DETACHED. */
enum { ENTRY_KEEP, ENTRY_DROP, ENTRY_PURGE, ENTRY_CALLER };

static int
entry_decide(exc_walk *w, PyTracebackObject *tb, int via_func,
             origin_memo *memo)
{
    PyFrameObject *f = tb->tb_frame;
    if (frame_running(f) && on_this_stack(w->tstate, f->f_frame)) {
        return ENTRY_CALLER;
    }
    if (_PySecret_IsSecret(tb)) {
        return ENTRY_DROP;
    }
    int date = made_during(w, (PyObject *)tb);
    if (date == DATE_BEFORE) {
        return ENTRY_KEEP;
    }
    int origin = frames_origin(w->tstate, f, memo);
    if (origin == FRAMES_FUNC) {
        /* A finished frame's f_back is fixed when it finishes: one that
         * leads to a secret frame finished during do(). */
        return ENTRY_DROP;
    }
    if (origin == FRAMES_DETACHED && via_func) {
        return date == DATE_DURING ? ENTRY_DROP : ENTRY_PURGE;
    }
    return ENTRY_KEEP;
}

/* Seen before? Marks it seen (with value, not 0). The set holds a
 * reference to what it holds: a finalizer run by a clearing cannot free an
 * object and have a new one (an exception it chains) take its address.
 * Without the set, spends the budget. */
static int
walk_mark(exc_walk *w, PyObject *p, uintptr_t value)
{
    if (w->seen != NULL) {
        if (_Py_hashtable_get(w->seen, p) != NULL) {
            return 1;
        }
        if (_Py_hashtable_set(w->seen, Py_NewRef(p), (void *)value) == 0) {
            return 0;
        }
        Py_DECREF(p);
        /* Out of memory: go on without the set. */
        _Py_hashtable_destroy(w->seen);
        w->seen = NULL;
    }
    if (w->budget-- <= 0) {
        w->lost = 1;
        return 1;
    }
    return 0;
}

static int
walk_seen(exc_walk *w, PyObject *p)
{
    return walk_mark(w, p, 1);
}

static void
seen_key_destroy(void *key)
{
    Py_DECREF((PyObject *)key);
}

static void
walk_push_kind(exc_walk *w, PyObject *exc, int via_func, int kind)
{
    if (exc == NULL) {
        return;
    }
    if (w->n == w->cap) {
        Py_ssize_t cap = w->cap * 2;
        exc_item *items;
        if (w->items == w->small) {
            items = plain_malloc(cap * sizeof(exc_item));
            if (items != NULL) {
                memcpy(items, w->small, w->n * sizeof(exc_item));
            }
        }
        else {
            items = plain_realloc(w->items, cap * sizeof(exc_item));
        }
        if (items == NULL) {
            w->lost = 1;
            return;
        }
        w->items = items;
        w->cap = cap;
    }
    w->items[w->n].exc = Py_NewRef(exc);
    w->items[w->n].via_func = via_func;
    w->items[w->n].kind = kind;
    w->n++;
}

static void
walk_push(exc_walk *w, PyObject *exc, int via_func)
{
    walk_push_kind(w, exc, via_func, ITEM_EXC);
}

/* Give a cleared frame a placeholder for what it still points to that was
 * made in secret mode (see above). The old references are released last,
 * once the frame is consistent: their finalizers may look at it. */
static void
swap_frame(PyObject *placeholder, PyFrameObject *f)
{
    if (placeholder == NULL || !frame_finished(f)) {
        return;
    }
    _PyInterpreterFrame *fr = f->f_frame;
    PyObject *func = fr->f_funcobj;
    PyObject *code = fr->f_executable;
    int code_secret = _PySecret_IsSecret(code);
    if (func == placeholder
        || !(code_secret || _PySecret_IsSecret(func)
             || _PySecret_IsSecret(fr->f_globals)
             || _PySecret_IsSecret(fr->f_builtins)))
    {
        return;
    }
    PyFunctionObject *ph = (PyFunctionObject *)placeholder;
    fr->f_funcobj = Py_NewRef(placeholder);
    /* Borrowed from the function, like the frame's own were. */
    fr->f_globals = ph->func_globals;
    fr->f_builtins = ph->func_builtins;
    if (code_secret) {
        PyCodeObject *pc = (PyCodeObject *)ph->func_code;
        fr->f_executable = Py_NewRef(pc);
        /* Within the new code: line numbers are looked up there. */
        fr->instr_ptr = _PyCode_CODE(pc) + pc->_co_firsttraceable;
        f->f_lineno = 0;
    }
    else {
        code = NULL;
    }
    Py_XDECREF(func);
    Py_XDECREF(code);
}

/* Keep a finished frame for swap_frame(), which runs once every note is
 * written (or now, if there is no memory to keep it). */
static void
keep_for_swap(exc_walk *w, PyFrameObject *f)
{
    if (w->placeholder == NULL) {
        return;
    }
    if (w->nswap == w->capswap) {
        Py_ssize_t cap = w->capswap ? w->capswap * 2 : 16;
        PyObject **swap = plain_realloc(w->swap, cap * sizeof(PyObject *));
        if (swap == NULL) {
            swap_frame(w->placeholder, f);
            return;
        }
        w->swap = swap;
        w->capswap = cap;
    }
    w->swap[w->nswap++] = Py_NewRef(f);
}

/* Clear a finished frame (frame.clear(): its locals and value stack). */
static void
clear_frame(exc_walk *w, PyFrameObject *f)
{
    if (!frame_finished(f)) {
        return;
    }
    _PyInterpreterFrame *fr = f->f_frame;
    for (int i = 0; i < fr->stacktop; i++) {
        if (fr->localsplus[i] != NULL) {
            w->changed++;
            break;
        }
    }
    (void)PyFrame_Type.tp_clear((PyObject *)f);
    keep_for_swap(w, f);
}

static int
drop_if_secret(PyObject **slot)
{
    PyObject *v = *slot;
    if (v != NULL && _PySecret_IsSecret(v)) {
        *slot = NULL;
        Py_DECREF(v);
        return 1;
    }
    return 0;
}

/* A finished frame that cannot be dated (see do_epoch) and would be
 * func's if it was made during do() loses what secret mode made (its
 * locals, value stack, extra locals, trace function and namespace that
 * are secret blocks) and nothing else. What secret mode made may also be
 * an earlier do()'s (a result the caller kept in a local): a loss, only
 * where the lists cannot tell. A cell keeps what was stored in it. Each
 * slot is emptied before its reference goes: a finalizer that runs sees a
 * consistent frame. */
static void
purge_frame(exc_walk *w, PyFrameObject *f)
{
    if (!frame_finished(f)) {
        return;
    }
    _PyInterpreterFrame *fr = f->f_frame;
    for (int i = 0; frame_finished(f) && i < fr->stacktop; i++) {
        w->changed += drop_if_secret(&fr->localsplus[i]);
    }
    if (!frame_finished(f)) {
        return;
    }
    w->changed += drop_if_secret(&fr->f_locals);
    w->changed += drop_if_secret(&f->f_extra_locals);
    w->changed += drop_if_secret(&f->f_locals_cache);
    w->changed += drop_if_secret(&f->f_trace);
    keep_for_swap(w, f);
}

/* What the frames on a dropped frame's f_back chain are (see above). */
enum { CHAIN_ALL = 2, CHAIN_SECRET = 3 };

static uintptr_t
chain_decision(exc_walk *w, PyFrameObject *f)
{
    return (w->seen != NULL ? (uintptr_t)_Py_hashtable_get(w->seen, f) : 0);
}

/* Clear the frame of a dropped traceback entry if it finished during do()
 * (purge it if that cannot be told), and the frames its f_back chain keeps
 * alive: all the finished ones up to the first running frame if that runs
 * on this thread, else the secret ones (the others are purged). Two passes
 * over the chain, the first to find where and how it ends (or a part
 * already done), without memory; clearing changes no f_back, and the
 * entry's frame, held by the caller, holds the chain. */
static void
clear_dropped_frame(exc_walk *w, PyFrameObject *f)
{
    if (!frame_finished(f)) {
        return;     /* running or suspended: not func's to clear */
    }
    int date = made_during(w, (PyObject *)f);
    if (date == DATE_BEFORE) {
        return;     /* from before do(): not func's */
    }
    if (date == DATE_UNKNOWN) {
        purge_frame(w, f);
    }
    else {
        clear_frame(w, f);
    }
    uintptr_t decision = CHAIN_SECRET;
    PyFrameObject *end = NULL, *g;
    for (g = f->f_back; g != NULL; g = g->f_back) {
        uintptr_t d = chain_decision(w, g);
        if (d != 0) {
            decision = d;               /* done already */
            end = g;
            break;
        }
        if (frame_running(g)) {
            if (on_this_stack(w->tstate, g->f_frame)) {
                decision = CHAIN_ALL;
            }
            end = g;
            break;
        }
        if (!frame_finished(g)) {
            end = g;                    /* suspended: no f_back */
            break;
        }
        if (w->seen == NULL && w->budget-- <= 0) {
            w->lost = 1;
            return;
        }
    }
    /* Ran below the caller's frames but cannot be dated: it may be the
     * caller's own history. Not marked: the mark is for datable chains. */
    int undated = date == DATE_UNKNOWN && decision == CHAIN_ALL;
    if (undated) {
        decision = CHAIN_SECRET;
    }
    for (g = f->f_back; g != end; g = g->f_back) {
        if (undated ? w->budget-- <= 0
            : walk_mark(w, (PyObject *)g, decision) && w->lost)
        {
            w->lost = 1;
            return;
        }
        if (decision == CHAIN_ALL || _PySecret_IsSecret(g)) {
            clear_frame(w, g);
        }
        else if (date == DATE_UNKNOWN) {
            purge_frame(w, g);
        }
    }
}

static int
tb_line(PyTracebackObject *tb)
{
    if (tb->tb_lineno != -1) {
        return tb->tb_lineno;
    }
    return PyCode_Addr2Line(_PyFrame_GetCode(tb->tb_frame->f_frame),
                            tb->tb_lasti);
}

/* "File ..., line ..., in ..." for each entry from tb up to stop, with
 * runs of the same line shortened as the traceback module does. */
static PyObject *
dropped_frames_note(PyTracebackObject *tb, PyTracebackObject *stop)
{
    PyObject *lines = PyList_New(0);
    if (lines == NULL) {
        return NULL;
    }
    PyObject *line = PyUnicode_FromString(
        "secret.do() removed these frames from the traceback and cleared "
        "their locals (most recent call last):");
    if (line == NULL || PyList_Append(lines, line) < 0) {
        goto error;
    }
    Py_CLEAR(line);
    PyCodeObject *last_code = NULL;
    int last_lineno = -2, repeats = 0;
    /* Runs no Python code: the chain cannot change under it. */
    for (; tb != NULL && tb != stop; tb = tb->tb_next) {
        PyCodeObject *code = _PyFrame_GetCode(tb->tb_frame->f_frame);
        int lineno = tb_line(tb);
        if (code == last_code && lineno == last_lineno) {
            if (++repeats > 2) {
                continue;
            }
        }
        else {
            if (repeats > 2) {
                line = PyUnicode_FromFormat(
                    "  [Previous line repeated %d more time%s]",
                    repeats - 2, repeats > 3 ? "s" : "");
                if (line == NULL || PyList_Append(lines, line) < 0) {
                    goto error;
                }
                Py_CLEAR(line);
            }
            repeats = 0;
            last_code = code;
            last_lineno = lineno;
        }
        line = PyUnicode_FromFormat("  File \"%U\", line %d, in %U",
                                    code->co_filename, lineno,
                                    code->co_name);
        if (line == NULL || PyList_Append(lines, line) < 0) {
            goto error;
        }
        Py_CLEAR(line);
    }
    if (repeats > 2) {
        line = PyUnicode_FromFormat(
            "  [Previous line repeated %d more time%s]",
            repeats - 2, repeats > 3 ? "s" : "");
        if (line == NULL || PyList_Append(lines, line) < 0) {
            goto error;
        }
        Py_CLEAR(line);
    }
    PyObject *sep = PyUnicode_FromString("\n");
    if (sep == NULL) {
        goto error;
    }
    PyObject *note = PyUnicode_Join(sep, lines);
    Py_DECREF(sep);
    Py_DECREF(lines);
    return note;
error:
    Py_XDECREF(line);
    Py_DECREF(lines);
    return NULL;
}

static void
add_note(PyObject *exc, PyObject *note)
{
    if (note == NULL || _PyException_AddNote(exc, note) < 0) {
        PyErr_Clear();                  /* the note is best effort */
    }
    Py_XDECREF(note);
}

/* Keep exc, tb and keep (the references to tb and keep are taken) to
 * write exc's note at the end of the walk: 1, or 0 if there is no memory
 * to keep them. */
static int
defer_note(exc_walk *w, PyObject *exc, PyTracebackObject *tb,
           PyTracebackObject *keep)
{
    if (w->nnotes == w->capnotes) {
        Py_ssize_t cap = w->capnotes ? w->capnotes * 2 : 3 * 16;
        PyObject **notes = plain_realloc(w->notes, cap * sizeof(PyObject *));
        if (notes == NULL) {
            return 0;
        }
        w->notes = notes;
        w->capnotes = cap;
    }
    w->notes[w->nnotes++] = Py_NewRef(exc);
    w->notes[w->nnotes++] = (PyObject *)tb;
    w->notes[w->nnotes++] = (PyObject *)keep;
    return 1;
}

/* A copy of the traceback entry t, linked to next, for a chain of which
 * func's entries are unlinked without changing entries that may be
 * another exception's too. In ordinary memory, as the entry it copies (a
 * secret block would be taken for func's by a later do()): the
 * allocation runs no code (a collection it makes due runs later, at the
 * eval loop's next check, in secret mode). NULL: no memory. */
static PyObject *
copy_entry(PyTracebackObject *t, PyObject *next)
{
#if _Py_SECRET_HEAP
    int mode = _PySecret_tls.mode;
    _PySecret_tls.mode = 0;
#endif
    PyObject *tb = PyObject_CallFunction(
        (PyObject *)&PyTraceBack_Type, "OOii", next ? next : Py_None,
        t->tb_frame, t->tb_lasti, tb_line(t));
#if _Py_SECRET_HEAP
    _PySecret_tls.mode = mode;
#endif
    if (tb == NULL) {
        PyErr_Clear();
    }
    return tb;
}

/* The entries of exc's traceback from start on, after the leading ones
 * func's were dropped (start is the first that is not): func can have
 * linked its own after older ones (types.TracebackType(), tb_next).
 * Decided all first, running no code; then func's are unlinked (the kept
 * entries before the last of them are copied: they may be the caller's,
 * shared with its own exceptions), named in a note and their frames
 * cleared; the frames of the others are purged. exc NULL: a traceback
 * that no exception holds (found in an exception's arguments): its
 * entries stay linked, their frames are cleared or purged. */
static void
strip_rest(exc_walk *w, PyObject *exc, PyTracebackObject *start,
           int via_func, origin_memo *memo)
{
    Py_ssize_t n = 0, cap = 0, last_drop = -1;
    PyTracebackObject **ent = NULL;
    char *dec = NULL;
    for (PyTracebackObject *t = start; t != NULL; t = t->tb_next) {
        if (w->budget-- <= 0) {
            w->lost = 1;
            goto done;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            PyTracebackObject **e2 = plain_realloc(ent, cap * sizeof(*ent));
            if (e2 == NULL) {
                w->lost = 1;
                goto done;
            }
            ent = e2;
            char *d2 = plain_realloc(dec, cap);
            if (d2 == NULL) {
                w->lost = 1;
                goto done;
            }
            dec = d2;
        }
        int d = entry_decide(w, t, via_func, memo);
        if (d == ENTRY_CALLER && !_PySecret_IsSecret(t)) {
            /* What follows is the caller's history; not after an entry
             * func made for a running frame (types.TracebackType). */
            via_func = 0;
        }
        else if (d == ENTRY_DROP) {
            last_drop = n;
        }
        ent[n] = (PyTracebackObject *)Py_NewRef(t);
        dec[n++] = (char)d;
    }
    if (last_drop >= 0 && exc != NULL) {
        /* Notes first, while the entries are as the exception left them:
         * one per run of func's entries. */
        for (Py_ssize_t i = 0; i <= last_drop; i++) {
            if (dec[i] != ENTRY_DROP || (i > 0 && dec[i - 1] == ENTRY_DROP)) {
                continue;
            }
            Py_ssize_t j = i;
            while (j + 1 < n && dec[j + 1] == ENTRY_DROP) {
                j++;
            }
            add_note(exc, dropped_frames_note(
                ent[i], j + 1 < n ? ent[j + 1] : NULL));
        }
        PyObject *next = Py_XNewRef(last_drop + 1 < n
                                    ? (PyObject *)ent[last_drop + 1] : NULL);
        for (Py_ssize_t i = last_drop; i-- > 0;) {
            if (dec[i] == ENTRY_DROP) {
                continue;
            }
            PyObject *copy = copy_entry(ent[i], next);
            Py_XDECREF(next);
            if (copy == NULL) {
                w->lost = 1;        /* sever() cuts the traceback */
                goto done;
            }
            next = copy;
        }
        w->changed++;
        if (PyException_SetTraceback(exc, next ? next : Py_None) < 0) {
            PyErr_Clear();
        }
        Py_XDECREF(next);
    }
    /* Unlinked: now the frames (clearing runs finalizers). */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (dec[i] == ENTRY_DROP) {
            clear_dropped_frame(w, ent[i]->tb_frame);
        }
        else if (dec[i] == ENTRY_PURGE) {
            purge_frame(w, ent[i]->tb_frame);
        }
    }
done:
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(ent[i]);
    }
    plain_free(ent);
    plain_free(dec);
}

/* Drop the entries of exc's traceback tb (a new reference, consumed) that
 * are func's: first those from its start up to the first that is not,
 * then any further ones (strip_rest); clear their frames, and name them in
 * a note. */
static void
strip_traceback(exc_walk *w, PyObject *exc, PyTracebackObject *tb,
                int via_func)
{
    PyTracebackObject *keep = tb;
    origin_memo memo = {NULL, FRAMES_DETACHED};
    while (keep != NULL
           && entry_decide(w, keep, via_func, &memo) == ENTRY_DROP) {
        keep = keep->tb_next;
    }
    Py_XINCREF(keep);
    if (keep == tb) {
        goto rest;
    }
    /* The note first, while no finalizer has run: the entries are as the
     * exception left them. If memory is short, again after the clearing
     * (the code objects are swapped only at the end of the walk). */
    PyObject *note = dropped_frames_note(tb, keep);
    if (note == NULL) {
        PyErr_Clear();
    }
    /* Unlink: nothing reaches the frames through exc any more. */
    w->changed++;
    if (PyException_SetTraceback(exc, keep ? (PyObject *)keep : Py_None) < 0) {
        PyErr_Clear();                  /* cannot fail on a traceback */
    }
    /* Clearing runs finalizers, which may relink tb_next (it is writable):
     * hold each entry while its frame is cleared. The second pass: a
     * generator suspended in a dropped frame and referenced only by cleared
     * locals has been closed since, its frame finished. */
    for (int pass = 0; pass < 2; pass++) {
        PyTracebackObject *t = (PyTracebackObject *)Py_NewRef(tb);
        while (t != NULL && t != keep) {
            if (pass == 0) {
                clear_dropped_frame(w, t->tb_frame);
            }
            else {
                int date = made_during(w, (PyObject *)t->tb_frame);
                if (date == DATE_DURING) {
                    clear_frame(w, t->tb_frame);
                }
                else if (date == DATE_UNKNOWN) {
                    purge_frame(w, t->tb_frame);
                }
            }
            PyTracebackObject *next = (PyTracebackObject *)Py_XNewRef(
                t->tb_next);
            Py_DECREF(t);
            t = next;
        }
        Py_XDECREF(t);
    }
    if (note == NULL) {
        note = dropped_frames_note(tb, keep);
    }
    if (note == NULL) {
        PyErr_Clear();
        /* Once every frame is cleared (a full secret heap may be held by
         * the frames of other exceptions of the walk). */
        Py_XINCREF(keep);
        if (defer_note(w, exc, tb, keep)) {
            tb = NULL;
        }
        else {
            Py_XDECREF(keep);
        }
    }
    else {
        add_note(exc, note);
    }
rest:
    Py_XDECREF(tb);
    if (keep != NULL && !w->lost) {
        strip_rest(w, exc, keep, via_func, &memo);
    }
    Py_XDECREF(keep);
}

/* An exception can hold others, and frames, anywhere among what it refers
 * to: its arguments (RuntimeError("wrapped", inner)), its attributes, a
 * list in them. The walk follows what secret mode made (what func made:
 * all of it is reachable only through such objects or through objects
 * func was given, spec §3.5) and queues the exceptions, tracebacks and
 * frames it finds there. */
typedef struct {
    exc_walk *w;
    int via_func;
    PyObject *skip[3];      /* the exception's own links, walked already */
} referents_ctx;

static int
visit_referent(PyObject *op, void *arg)
{
    referents_ctx *c = arg;
    if (op == NULL || op == c->skip[0] || op == c->skip[1]
        || op == c->skip[2])
    {
        return 0;
    }
    int kind;
    if (PyExceptionInstance_Check(op)) {
        kind = ITEM_EXC;
    }
    else if (!_PySecret_IsSecret(op) || !PyObject_IS_GC(op)) {
        return 0;
    }
    else if (PyTraceBack_Check(op)) {
        kind = ITEM_TRACEBACK;
    }
    else if (PyFrame_Check(op)) {
        kind = ITEM_FRAME;
    }
    else if (PyType_Check(op) || PyModule_Check(op) || PyGen_Check(op)
             || PyCoro_CheckExact(op) || PyAsyncGen_CheckExact(op))
    {
        /* A generator made in func may be resumed after do() (its frame is
         * dropped from tracebacks, see above): not closed, not entered. */
        return 0;
    }
    else {
        kind = ITEM_OBJECT;
    }
    walk_push_kind(c->w, op, c->via_func, kind);
    return 0;
}

static void
walk_referents(exc_walk *w, PyObject *op, int via_func, PyObject *skip0,
               PyObject *skip1, PyObject *skip2)
{
    traverseproc traverse = Py_TYPE(op)->tp_traverse;
    if (traverse == NULL || !PyObject_IS_GC(op)) {
        return;
    }
    referents_ctx c = {w, via_func, {skip0, skip1, skip2}};
    (void)traverse(op, visit_referent, &c);
}

/* Something the walk found among an exception's referents. */
static void
walk_found(exc_walk *w, exc_item *it)
{
    PyObject *op = it->exc;
    switch (it->kind) {
    case ITEM_OBJECT:
        walk_referents(w, op, it->via_func, NULL, NULL, NULL);
        break;
    case ITEM_TRACEBACK: {
        origin_memo memo = {NULL, FRAMES_DETACHED};
        strip_rest(w, NULL, (PyTracebackObject *)op, it->via_func, &memo);
        break;
    }
    case ITEM_FRAME:
        clear_dropped_frame(w, (PyFrameObject *)op);
        break;
    }
}

static void
walk_exception(exc_walk *w, PyObject *exc, int is_main, int via_func)
{
    PyObject *tb = PyException_GetTraceback(exc);
    int func_owned;
    if (is_main) {
        func_owned = 1;
    }
    else if (tb != NULL) {
        int d = entry_decide(w, (PyTracebackObject *)tb, via_func, NULL);
        func_owned = d == ENTRY_DROP || d == ENTRY_PURGE;
    }
    else {
        /* Never raised: its parent's, if made during do(). */
        func_owned = via_func && made_during(w, exc) != DATE_BEFORE;
    }
    if (tb != NULL) {
        /* Not func's: only entries func linked into it are dropped. */
        strip_traceback(w, exc, (PyTracebackObject *)tb, func_owned);
    }
    PyObject *cause = PyException_GetCause(exc);
    walk_push(w, cause, func_owned);
    PyObject *context = PyException_GetContext(exc);
    walk_push(w, context, func_owned);
    if (_PyBaseExceptionGroup_Check(exc)) {
        PyObject *excs = ((PyBaseExceptionGroupObject *)exc)->excs;
        if (excs != NULL && PyTuple_Check(excs)) {
            for (Py_ssize_t i = PyTuple_GET_SIZE(excs); i-- > 0;) {
                PyObject *m = PyTuple_GET_ITEM(excs, i);
                if (PyExceptionInstance_Check(m)) {
                    walk_push(w, m, func_owned);
                }
            }
        }
    }
    tb = PyException_GetTraceback(exc);
    walk_referents(w, exc, func_owned, tb, cause, context);
    Py_XDECREF(tb);
    Py_XDECREF(cause);
    Py_XDECREF(context);
}

/* The walk could not finish (no ordinary memory for its stack, or beyond
 * its budget): what it did not reach may hold func's frames. Cut exc's
 * traceback (but for the leaving exception, whose own entries were
 * stripped first), __context__ and __cause__, and do the same to the
 * members of a group, recursively: C recursion, which needs no memory,
 * bounded in depth and in visits. A group beyond those bounds loses its
 * members (the empty tuple, an immortal singleton, needs no memory): no
 * exception is left uncut. */
#define SEVER_DEPTH 1000
static void
sever(PyObject *exc, int is_main, int depth, Py_ssize_t *budget)
{
    if (!is_main) {
        (void)PyException_SetTraceback(exc, Py_None);
    }
    PyException_SetContext(exc, NULL);
    PyException_SetCause(exc, NULL);
    if (!_PyBaseExceptionGroup_Check(exc)) {
        return;
    }
    PyBaseExceptionGroupObject *g = (PyBaseExceptionGroupObject *)exc;
    PyObject *excs = Py_XNewRef(g->excs);
    if (excs == NULL || !PyTuple_Check(excs)) {
        Py_XDECREF(excs);
        return;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(excs);
    if (depth >= SEVER_DEPTH || *budget < n) {
        Py_XSETREF(g->excs, PyTuple_New(0));
    }
    else {
        *budget -= n;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *m = PyTuple_GET_ITEM(excs, i);
            if (PyExceptionInstance_Check(m)) {
                sever(m, 0, depth + 1, budget);
            }
        }
    }
    Py_DECREF(excs);
}

/* do() is leaving with the raised exception of tstate: strip it and what is
 * chained to it (see above). Runs in secret mode, before the exit's
 * collection and erasure: the frames' locals are freed as secret blocks.
 * Not inlined: its frame (the walk's work stack) stays off do()'s normal
 * path. */
static SECRET_COLD Py_ssize_t
strip_leaving_exception(PyThreadState *tstate, PyObject *module,
                        do_epoch *epoch)
{
    PyObject *exc = _PyErr_GetRaisedException(tstate);
    if (exc == NULL) {
        return 0;
    }
    secret_state *st = PyModule_GetState(module);
    exc_walk w = {.tstate = tstate, .n = 0, .cap = EXC_SMALL,
                  .budget = EXC_BUDGET, .lost = 0, .epoch = epoch,
                  .placeholder = st != NULL ? st->placeholder : NULL};
    w.items = w.small;
    w.seen = pointer_set(seen_key_destroy);
    if (w.seen != NULL) {
        (void)walk_seen(&w, exc);
    }
    walk_exception(&w, exc, 1, 1);
    while (w.n > 0 && !w.lost) {
        exc_item it = w.items[--w.n];
        if (!walk_seen(&w, it.exc)) {
            if (it.kind == ITEM_EXC) {
                walk_exception(&w, it.exc, 0, it.via_func);
            }
            else {
                walk_found(&w, &it);
            }
        }
        Py_DECREF(it.exc);
    }
    /* Left on the work stack: the walk could not finish. What it had
     * found among the arguments is cut too (fail closed): exceptions lose
     * their tracebacks and links, finished frames made in do() are
     * cleared. */
    Py_ssize_t left_budget = EXC_BUDGET;
    while (w.n > 0) {
        exc_item it = w.items[--w.n];
        if (it.kind == ITEM_EXC && it.exc != exc) {
            sever(it.exc, 0, 0, &left_budget);
        }
        else if (it.kind == ITEM_FRAME && frame_finished(
                     (PyFrameObject *)it.exc)
                 && _PySecret_IsSecret(it.exc))
        {
            (void)PyFrame_Type.tp_clear(it.exc);
        }
        Py_DECREF(it.exc);
    }
    if (w.items != w.small) {
        plain_free(w.items);
    }
    /* The notes that found no memory before every frame was cleared. */
    for (Py_ssize_t i = 0; i < w.nnotes; i += 3) {
        PyTracebackObject *tb = (PyTracebackObject *)w.notes[i + 1];
        PyTracebackObject *keep = (PyTracebackObject *)w.notes[i + 2];
        add_note(w.notes[i], dropped_frames_note(tb, keep));
        Py_DECREF(w.notes[i]);
        Py_DECREF(tb);
        Py_XDECREF(keep);
    }
    plain_free(w.notes);
    /* Every note is written: the cleared frames lose what they still
     * point to of func's (see above). */
    for (Py_ssize_t i = 0; i < w.nswap; i++) {
        swap_frame(w.placeholder, (PyFrameObject *)w.swap[i]);
    }
    for (Py_ssize_t i = 0; i < w.nswap; i++) {
        Py_DECREF(w.swap[i]);
    }
    plain_free(w.swap);
    if (w.seen != NULL) {
        _Py_hashtable_destroy(w.seen);
    }
    if (w.lost) {
        /* Out of memory or beyond the budget: what was not walked may hold
         * func's frames. Leave nothing chained. */
        PyErr_Clear();
        Py_ssize_t budget = EXC_BUDGET;
        sever(exc, 1, 0, &budget);
    }
    if (_PyErr_Occurred(tstate)) {
        PyErr_WriteUnraisable(NULL);
    }
    _PyErr_SetRaisedException(tstate, exc);
    return w.changed;
}

/* Finalizers run by a walk's clearing, or by the exit collection, may link
 * more to the leaving exception (a __del__ that sets its __context__):
 * walk again until a walk changes nothing; past a bound, cut its links. */
#define STRIP_PASSES 4
static SECRET_COLD void
strip_until_settled(PyThreadState *tstate, PyObject *module,
                    do_epoch *epoch)
{
    for (int pass = 0; pass < STRIP_PASSES; pass++) {
        if (strip_leaving_exception(tstate, module, epoch) == 0) {
            return;
        }
    }
    PyObject *exc = _PyErr_GetRaisedException(tstate);
    if (exc != NULL) {
        Py_ssize_t budget = EXC_BUDGET;
        sever(exc, 1, 0, &budget);
        _PyErr_SetRaisedException(tstate, exc);
    }
}

/* ---- greenlets (spec §2.1) ----------------------------------------------
 *
 * Secret mode is a thread's (the depth and the inherited flag in its
 * thread state, the allocators' mode in a thread-local), and greenlets
 * share a thread: one that switches away inside do() would leave whatever
 * runs next in secret mode, and come back to whatever mode that left. So
 * once the greenlet module is loaded, do() puts a trace function in front
 * of the thread's (greenlet.settrace(); it calls the one it replaced).
 * greenlet calls it at every switch, on the stack of the greenlet that now
 * runs, before that greenlet's code runs. It keeps the mode of the
 * greenlet that left (a record keyed by its address and checked by a weak
 * reference, so that it dies with the greenlet), erases what that greenlet
 * left below this frame as an idle point does (registers, the C stack
 * below, the alternate signal stack), and gives the thread the mode of the
 * greenlet that now runs: its record, else its own base mode: the
 * thread's (a thread started in secret mode is secret in every greenlet),
 * or secret mode for a greenlet made in secret mode (a secret block, like
 * a thread or task started there: it runs below func's frames, which
 * greenlet may copy away while it runs), but never for the thread's main
 * greenlet.
 *
 * What a greenlet keeps while it is parked: its frames on the C stack,
 * which greenlet copies to the heap when another greenlet needs that part
 * of the stack (made in secret mode, that copy is a secret block) or
 * leaves in place; its frame stack, which greenlet keeps apart and do()
 * erases at its exit.
 *
 * Another trace function put in place later must call the one it
 * replaced (gevent's does); one that does not hides switches. do()
 * notices at its entry and exit (the greenlet running is not the one the
 * tracer saw last) and raises RuntimeError rather than go on in a mode
 * that no longer follows the code. */

#if _Py_SECRET_HEAP
typedef struct {
    int depth;
    int inherited;
    int mode;
} gl_mode;

typedef struct {
    PyObject_HEAD
    PyObject *previous;     /* the trace function it replaced, or NULL */
    /* greenlet address -> gl_record, for greenlets parked in a mode that
     * is not their base mode (ordinary memory: plain_alloc) */
    _Py_hashtable_t *parked;
    uintptr_t current;      /* the greenlet it saw switched in last */
    /* tstate->context_ver after its last switch (greenlet bumps it at
     * every switch): do() sees switches that went past it */
    uint64_t context_ver;
    int thread_inherited;   /* the thread's own base mode */
    int busy;               /* in a call: a chain back to it does nothing */
    /* The greenlet running allocates secretly (but is not in secret
     * mode): a parked greenlet in secret mode lies wholly in place above
     * it, and greenlet may copy that one's frames in its mode. */
    int bumped;
    int (*capi_main)(PyObject *);   /* greenlet's PyGreenlet_MAIN, or NULL */
    int (*capi_active)(PyObject *); /* PyGreenlet_ACTIVE, or NULL */
    size_t sweep_at;        /* drop dead records when parked reaches it */
    Py_ssize_t switches;    /* switches seen (tests) */
    Py_ssize_t erasures;    /* of them, out of secret mode */
} gl_tracer;

typedef struct {
    PyObject *ref;          /* weak reference to the greenlet */
    gl_mode mode;
} gl_record;

static void
gl_record_free(void *value)
{
    gl_record *r = value;
    Py_XDECREF(r->ref);
    plain_free(r);
}

static void
gl_get(_PyThreadStateImpl *ts, gl_mode *m)
{
    m->depth = ts->secret.depth;
    m->inherited = ts->secret.inherited;
    m->mode = _PySecret_tls.mode;
}

static void
gl_set(_PyThreadStateImpl *ts, const gl_mode *m)
{
    ts->secret.depth = m->depth;
    ts->secret.inherited = m->inherited;
    _PySecret_tls.mode = m->mode;
}

static inline int
gl_same(const gl_mode *a, const gl_mode *b)
{
    return a->depth == b->depth && a->inherited == b->inherited
           && a->mode == b->mode;
}

/* The mode g runs in when no record is kept for it: the thread's (a
 * thread started in secret mode is in it in every greenlet), or secret
 * mode for a greenlet made in secret mode (a secret block: func's own
 * work, as a thread or task it starts), but never for the thread's main
 * greenlet. -1 on error. */
static int
gl_base(gl_tracer *self, PyObject *g, gl_mode *m)
{
    m->depth = 0;
    m->inherited = m->mode = self->thread_inherited;
    if (!m->inherited && _PySecret_IsSecret(g)) {
        int is_main;
        if (self->capi_main != NULL) {
            is_main = self->capi_main(g);       /* greenlet's own answer */
        }
        else {
            PyObject *parent;
            if (PyObject_GetOptionalAttrString(g, "parent", &parent) < 0) {
                return -1;
            }
            is_main = parent == NULL || parent == Py_None;
            Py_XDECREF(parent);
        }
        if (!is_main) {
            m->inherited = m->mode = 1;
        }
    }
    return 0;
}

static PyObject *
gl_referent(PyObject *ref)
{
    PyObject *obj = NULL;
    if (ref != NULL && PyWeakref_GetRef(ref, &obj) < 0) {
        PyErr_Clear();
    }
    return obj;
}

static int
gl_collect_dead(_Py_hashtable_t *ht, const void *key, const void *value,
                void *arg)
{
    PyObject *g = gl_referent(((const gl_record *)value)->ref);
    if (g == NULL) {
        const void **dead = arg;
        /* one at a time: the table cannot change during the walk */
        *dead = key;
        return 1;
    }
    Py_DECREF(g);
    return 0;
}

/* Records whose greenlet is gone (it ended without being switched to
 * again: its thread's end, a kill in place). */
static void
gl_sweep(gl_tracer *self)
{
    const void *dead;
    while (dead = NULL,
           _Py_hashtable_foreach(self->parked, gl_collect_dead, &dead) != 0
           && dead != NULL)
    {
        gl_record_free(_Py_hashtable_steal(self->parked, dead));
    }
    self->sweep_at = 2 * self->parked->nentries + 16;
}

static int
gl_park(gl_tracer *self, PyObject *g, const gl_mode *m)
{
    gl_record *r = _Py_hashtable_get(self->parked, g);
    if (r == NULL) {
        r = plain_malloc(sizeof(gl_record));
        if (r == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        r->ref = PyWeakref_NewRef(g, NULL);
        if (r->ref == NULL) {
            plain_free(r);
            return -1;
        }
        if (_Py_hashtable_set(self->parked, g, r) < 0) {
            gl_record_free(r);
            PyErr_NoMemory();
            return -1;
        }
    }
    r->mode = *m;
    if (self->parked->nentries >= self->sweep_at) {
        gl_sweep(self);
    }
    return 0;
}

/* The record kept for g (taken), else g's base mode. */
static int
gl_unpark(gl_tracer *self, PyObject *g, gl_mode *m)
{
    gl_record *r = self->parked->nentries
                   ? _Py_hashtable_steal(self->parked, g) : NULL;
    if (r != NULL) {
        PyObject *was = gl_referent(r->ref);
        Py_XDECREF(was);
        int ours = was == g;
        if (ours) {
            *m = r->mode;
        }
        gl_record_free(r);      /* else a dead greenlet's, same address */
        if (ours) {
            return 0;
        }
    }
    return gl_base(self, g, m);
}

/* What the greenlet that left wrote below this frame is dead: greenlet
 * moved what of its stack is still live to the heap, or left it above. */
static Py_NO_INLINE void
gl_erase(void)
{
    char *top = _PySecret_StackTop();
    _PySecret_EraseStack((void *)UINTPTR_MAX, _PySecret_vector);
    char *low = _PySecretStack_Idle(top);
    if (low != NULL) {
        _PySecret_EraseStack(low, _PySecret_vector);
    }
    /* Last, as at a do() exit: a signal during the erasure may have put
     * a frame there. */
    _PySecretStack_EraseAltStack();
}

/* Before greenlet switches stacks. The trace function runs after the
 * switch, on the stack of the greenlet that now runs: what the greenlet
 * that leaves wrote between that one's frames and its own (when the other
 * lies deeper on the stack), and what greenlet's own frames at the switch
 * leave unwritten, it cannot reach. So greenlet's switch() and throw()
 * (its methods, and its C API, which gevent's hub uses) first erase what
 * lies below their frame when the greenlet calling them is in secret
 * mode: all of it is dead. (A greenlet that ends switches to its parent
 * inside greenlet: only the trace function sees that one.) Put in place
 * once per process, when do() first finds greenlet loaded. */
static PyObject *(*gl_orig_capi_switch)(PyObject *, PyObject *, PyObject *);
static PyObject *(*gl_orig_capi_throw)(PyObject *, PyObject *, PyObject *,
                                        PyObject *);
static PyCFunctionWithKeywords gl_orig_switch;
static destructor gl_orig_dealloc;
static PyCFunction gl_orig_throw;
static int gl_hooked;

static inline void
gl_pre_switch(void)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)_PyThreadState_GET();
    if (ts != NULL && (ts->secret.depth > 0 || ts->secret.inherited)) {
        gl_erase();
    }
}

static PyObject *
gl_capi_switch(PyObject *g, PyObject *args, PyObject *kwargs)
{
    gl_pre_switch();
    return gl_orig_capi_switch(g, args, kwargs);
}

static PyObject *
gl_capi_throw(PyObject *g, PyObject *typ, PyObject *val, PyObject *tb)
{
    gl_pre_switch();
    return gl_orig_capi_throw(g, typ, val, tb);
}

static PyObject *
gl_meth_switch(PyObject *self, PyObject *args, PyObject *kwargs)
{
    gl_pre_switch();
    return gl_orig_switch(self, args, kwargs);
}

static PyObject *
gl_meth_throw(PyObject *self, PyObject *args)
{
    gl_pre_switch();
    return gl_orig_throw(self, args);
}

/* Freeing a started greenlet kills it: greenlet switches into it to raise
 * GreenletExit there, inside greenlet. */
static void
gl_dealloc(PyObject *g)
{
    gl_pre_switch();
    gl_orig_dealloc(g);
}

/* A greenlet that ends switches to its parent inside greenlet: its run
 * callable, when the greenlet was made in secret mode (it runs in it),
 * is handed to greenlet wrapped, so that what it left below is erased
 * before that switch (its parent may lie deeper on the stack). */
static getter gl_orig_getrun;

static PyObject *
gl_run_call(PyObject *run, PyObject *args, PyObject *kwargs)
{
    PyObject *res = PyObject_Call(run, args, kwargs);
    gl_pre_switch();
    return res;
}

static PyMethodDef gl_run_def = {
    "run", _PyCFunction_CAST(gl_run_call), METH_VARARGS | METH_KEYWORDS,
    "the run callable of a greenlet made in secret mode: it calls the "
    "callable given, then erases what that left below"};

static PyObject *
gl_getrun(PyObject *g, void *closure)
{
    PyObject *run = gl_orig_getrun(g, closure);
    if (run == NULL || !_PySecret_IsSecret(g)
        || (PyCFunction_Check(run)
            && ((PyCFunctionObject *)run)->m_ml == &gl_run_def))
    {
        return run;
    }
    PyObject *wrapped = PyCFunction_New(&gl_run_def, run);
    Py_DECREF(run);
    return wrapped;
}

static PyGetSetDef gl_run_getset = {"run", gl_getrun, NULL, NULL, NULL};

static PyMethodDef gl_switch_def = {
    "switch", _PyCFunction_CAST(gl_meth_switch), METH_VARARGS | METH_KEYWORDS,
    NULL};
static PyMethodDef gl_throw_def = {
    "throw", gl_meth_throw, METH_VARARGS, NULL};

/* Make the method def->ml_name of tp call def's function (which calls
 * the one it had, saved in *orig): the descriptor itself is changed, so
 * that references taken earlier to it (greenlet.greenlet.switch) and
 * calls the eval loop specialized call the new function; a bound method
 * made before (g.switch kept in a variable) keeps the old. 0, or -1 with
 * an error. */
static int
gl_wrap_method(PyTypeObject *tp, PyMethodDef *def, void **orig)
{
    PyObject *d = tp->tp_dict;
    PyObject *m = d ? PyDict_GetItemString(d, def->ml_name) : NULL;
    if (m == NULL || !Py_IS_TYPE(m, &PyMethodDescr_Type)
        || ((PyMethodDescrObject *)m)->d_method->ml_flags != def->ml_flags)
    {
        PyErr_Format(PyExc_RuntimeError,
                     "secret: greenlet's %s() is not the one expected",
                     def->ml_name);
        return -1;
    }
    PyMethodDef *was = ((PyMethodDescrObject *)m)->d_method;
    def->ml_doc = was->ml_doc;
    *orig = (void *)was->ml_meth;
    ((PyMethodDescrObject *)m)->d_method = def;
    return 0;
}

/* m: greenlet's C module. Once per process. */
static int
gl_hook(PyObject *m)
{
    if (gl_hooked) {
        return 0;
    }
    PyObject *tp = PyObject_GetAttrString(m, "greenlet");
    if (tp == NULL) {
        return -1;
    }
    if (!PyType_Check(tp)
        || gl_wrap_method((PyTypeObject *)tp, &gl_switch_def,
                          (void **)&gl_orig_switch) < 0
        || gl_wrap_method((PyTypeObject *)tp, &gl_throw_def,
                          (void **)&gl_orig_throw) < 0)
    {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError,
                            "secret: greenlet.greenlet is not a type");
        }
        Py_DECREF(tp);
        return -1;
    }
    /* greenlet looks its run callable up as an attribute when it starts
     * a greenlet: the descriptor's getter is changed in place. */
    PyObject *rd = PyDict_GetItemString(((PyTypeObject *)tp)->tp_dict, "run");
    if (rd != NULL && Py_IS_TYPE(rd, &PyGetSetDescr_Type)) {
        PyGetSetDef *was = ((PyGetSetDescrObject *)rd)->d_getset;
        if (was->get != NULL && was->get != gl_getrun) {
            gl_run_getset.set = was->set;
            gl_run_getset.doc = was->doc;
            gl_run_getset.closure = was->closure;
            gl_orig_getrun = was->get;
            ((PyGetSetDescrObject *)rd)->d_getset = &gl_run_getset;
        }
    }
    /* Subtypes call it through the base type's slot (subtype_dealloc and
     * Cython's both read it at each call). */
    gl_orig_dealloc = ((PyTypeObject *)tp)->tp_dealloc;
    ((PyTypeObject *)tp)->tp_dealloc = gl_dealloc;
    PyType_Modified((PyTypeObject *)tp);
    Py_DECREF(tp);
    gl_hooked = 1;
    PyObject *capi = PyObject_GetAttrString(m, "_C_API");
    if (capi != NULL && PyCapsule_IsValid(capi, "greenlet._C_API")) {
        void **api = PyCapsule_GetPointer(capi, "greenlet._C_API");
        /* PyGreenlet_Throw_NUM, PyGreenlet_Switch_NUM (greenlet.h), the
         * same in every release; the table is greenlet's static array,
         * which every user of the C API reads at each call. */
        gl_orig_capi_throw = (PyObject *(*)(PyObject *, PyObject *,
                                            PyObject *, PyObject *))api[5];
        gl_orig_capi_switch = (PyObject *(*)(PyObject *, PyObject *,
                                             PyObject *))api[6];
        api[5] = (void *)gl_capi_throw;
        api[6] = (void *)gl_capi_switch;
    }
    Py_XDECREF(capi);
    PyErr_Clear();
    return 0;
}

/* Is g started and not ended (it has frames somewhere)? -1 on error. */
static int
gl_active(gl_tracer *self, PyObject *g)
{
    if (self->capi_active != NULL) {
        return self->capi_active(g) != 0;
    }
    PyObject *dead = PyObject_GetAttrString(g, "dead");
    if (dead == NULL) {
        return -1;
    }
    int r = PyObject_Not(dead);
    Py_DECREF(dead);
    return r;
}

typedef struct {
    gl_tracer *tracer;
    int found;
    int error;
} gl_in_place_arg;

/* Is this record's greenlet in secret mode and wholly in place on the C
 * stack (greenlet copied none of it: the first copy would be made by
 * whoever switches next, in its mode)? */
static int
gl_check_in_place(_Py_hashtable_t *ht, const void *key, const void *value,
                  void *arg)
{
    const gl_record *r = value;
    gl_in_place_arg *a = arg;
    if (r->mode.depth <= 0 && r->mode.mode <= 0) {
        return 0;
    }
    PyObject *g = gl_referent(r->ref);
    if (g == NULL) {
        return 0;
    }
    int active = gl_active(a->tracer, g);
    if (active <= 0) {
        Py_DECREF(g);
        a->error = active < 0;
        return active < 0;
    }
    PyObject *saved = PyObject_GetAttrString(g, "_stack_saved");
    Py_DECREF(g);
    if (saved == NULL) {
        a->error = 1;
        return 1;
    }
    int zero = PyLong_Check(saved) && PyLong_AsLong(saved) == 0;
    Py_DECREF(saved);
    if (zero) {
        a->found = 1;
        return 1;
    }
    return 0;
}

static int
gl_switch(gl_tracer *self, PyObject *origin, PyObject *target)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)_PyThreadState_GET();
    gl_mode left, next, base;
    gl_get(ts, &left);
    gl_mode own = left;     /* without a bump */
    own.mode -= self->bumped;
    /* The records are not secret: kept in ordinary memory. */
    _PySecret_tls.mode = 0;
    gl_in_place_arg in_place = {self, 0, 0};
    /* An ended greenlet keeps nothing: its record would stand for frames
     * it no longer has. */
    int origin_active = own.mode > 0 ? gl_active(self, origin) : 1;
    if (origin_active < 0
        || gl_base(self, origin, &base) < 0
        /* kept also for a greenlet in secret mode in its base mode: the
         * check below looks for parked greenlets in secret mode */
        || ((!gl_same(&own, &base) || own.mode > 0) && origin_active
            && gl_park(self, origin, &own) < 0)
        || gl_unpark(self, target, &next) < 0
        || (next.mode <= 0 && self->parked->nentries != 0
            && (_Py_hashtable_foreach(self->parked, gl_check_in_place,
                                      &in_place), in_place.error)))
    {
        /* Nothing changes: the greenlet that runs now stays in the mode
         * the other left, greenlet raises this in it (and drops this
         * tracer), and do() notices the switch it did not follow. */
        gl_set(ts, &left);
        return -1;
    }
    self->current = (uintptr_t)target;
    self->switches++;
    if (own.mode > 0) {
        gl_erase();
        self->erasures++;
    }
    self->bumped = in_place.found;
    next.mode += self->bumped;
    gl_set(ts, &next);
    self->context_ver = ((PyThreadState *)ts)->context_ver;
    return 0;
}

static PyObject *
gl_tracer_call(PyObject *op, PyObject *args, PyObject *kwargs)
{
    gl_tracer *self = (gl_tracer *)op;
    PyObject *event, *pair;
    if (self->busy) {
        /* A trace function put in place later calls the one it replaced,
         * and do() put this one back in front of it: the switch is
         * already being handled. */
        Py_RETURN_NONE;
    }
    if (!PyArg_UnpackTuple(args, "tracer", 2, 2, &event, &pair)) {
        return NULL;
    }
    if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2
        && PyUnicode_Check(event)
        && (PyUnicode_EqualToUTF8(event, "switch")
            || PyUnicode_EqualToUTF8(event, "throw")))
    {
        if (gl_switch(self, PyTuple_GET_ITEM(pair, 0),
                      PyTuple_GET_ITEM(pair, 1)) < 0)
        {
            return NULL;
        }
    }
    if (self->previous != NULL) {
        self->busy = 1;
        PyObject *res = PyObject_Call(self->previous, args, kwargs);
        self->busy = 0;
        return res;
    }
    Py_RETURN_NONE;
}

typedef struct {
    visitproc visit;
    void *arg;
} gl_visit_arg;

static int
gl_visit_record(_Py_hashtable_t *ht, const void *key, const void *value,
                void *arg)
{
    gl_visit_arg *v = arg;
    PyObject *ref = ((const gl_record *)value)->ref;
    return ref != NULL ? v->visit(ref, v->arg) : 0;
}

static int
gl_tracer_traverse(PyObject *op, visitproc visit, void *arg)
{
    gl_tracer *self = (gl_tracer *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(self->previous);
    if (self->parked != NULL) {
        (void)_Py_hashtable_foreach(self->parked, gl_visit_record,
                                    &(gl_visit_arg){visit, arg});
    }
    return 0;
}

static int
gl_tracer_clear(PyObject *op)
{
    gl_tracer *self = (gl_tracer *)op;
    Py_CLEAR(self->previous);
    if (self->parked != NULL) {
        _Py_hashtable_t *ht = self->parked;
        self->parked = NULL;
        _Py_hashtable_destroy(ht);
    }
    return 0;
}

static void
gl_tracer_dealloc(PyObject *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    (void)gl_tracer_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
gl_tracer_stats(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    gl_tracer *self = (gl_tracer *)op;
    return Py_BuildValue("{snsnsisn}", "switches", self->switches,
                         "erasures", self->erasures,
                         "bumped", self->bumped,
                         "parked", (Py_ssize_t)(self->parked
                                                ? self->parked->nentries : 0));
}

static PyMethodDef gl_tracer_methods[] = {
    {"_stats", gl_tracer_stats, METH_NOARGS,
     "_stats(): switches seen, erasures made, records kept (tests)"},
    {NULL, NULL, 0, NULL}
};

static PyType_Slot gl_tracer_slots[] = {
    {Py_tp_call, gl_tracer_call},
    {Py_tp_traverse, gl_tracer_traverse},
    {Py_tp_clear, gl_tracer_clear},
    {Py_tp_dealloc, gl_tracer_dealloc},
    {Py_tp_methods, gl_tracer_methods},
    {Py_tp_doc, "secret.do()'s greenlet trace function: secret mode "
                "follows greenlet switches. It calls the one it replaced."},
    {0, NULL}
};

static PyType_Spec gl_tracer_spec = {
    .name = "_secret.GreenletTracer",
    .basicsize = sizeof(gl_tracer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = gl_tracer_slots,
};

/* This thread's tracer (kept in its thread-state dict), or NULL. */
static gl_tracer *
gl_this_thread(secret_state *st)
{
    PyObject *d = PyThreadState_GetDict();      /* borrowed */
    PyObject *t = d ? PyDict_GetItemWithError(d, st->gl_key) : NULL;
    return t != NULL && Py_IS_TYPE(t, (PyTypeObject *)st->gl_tracer_type)
           ? (gl_tracer *)t : NULL;
}

/* The greenlet running, or NULL (error set): through greenlet's C API
 * when it has one (a plain C call), else its getcurrent(). */
static PyObject *
gl_getcurrent(secret_state *st)
{
    if (st->gl_capi_getcurrent != NULL) {
        return st->gl_capi_getcurrent();
    }
    return PyObject_CallNoArgs(st->gl_getcurrent);
}

SECRET_COLD static int
gl_lost(const char *when)
{
    PyErr_Format(PyExc_RuntimeError,
                 "secret.do() %s: a greenlet switch was not seen, so secret "
                 "mode did not follow it (a trace function put in place "
                 "with greenlet.settrace() after secret.do() must call the "
                 "one it replaced)", when);
    return -1;
}

/* One do() call's view of greenlets. */
typedef struct {
    gl_tracer *tracer;      /* this thread's, held for the call, or NULL */
    uintptr_t current;      /* the greenlet do() runs in */
    Py_ssize_t seen;        /* gl_modules_changes at entry, if no tracer */
} gl_call;

/* Additions to any interpreter's sys.modules (a dict watcher): do()
 * looks for greenlet again only after one. */
static Py_ssize_t gl_modules_changes;

static int gl_hook(PyObject *m);

static int
gl_modules_watch(PyDict_WatchEvent event, PyObject *dict, PyObject *key,
                 PyObject *new_value)
{
    if (event != PyDict_EVENT_DELETED && event != PyDict_EVENT_DEALLOCATED) {
        _Py_atomic_add_ssize(&gl_modules_changes, 1);
    }
    /* greenlet loaded: its switch() erases from now on, before anything
     * can take a bound method of it (see gl_hook) */
    if ((event == PyDict_EVENT_ADDED || event == PyDict_EVENT_MODIFIED)
        && !gl_hooked && key != NULL && PyUnicode_Check(key)
        && new_value != NULL && PyModule_Check(new_value)
        && PyUnicode_EqualToUTF8(key, "greenlet._greenlet"))
    {
        /* (A subinterpreter adds a single-phase module before filling
         * it: then the first do() that finds greenlet wraps it.) */
        PyObject *exc = PyErr_GetRaisedException();
        if (gl_hook(new_value) < 0) {
            PyErr_Clear();
        }
        PyErr_SetRaisedException(exc);
    }
    return 0;
}

/* Did sys.modules change since greenlet was last looked for? */
static inline int
gl_modules_changed(secret_state *st)
{
    return st->gl_modules_seen < 0
           || _Py_atomic_load_ssize_relaxed(&gl_modules_changes)
              != st->gl_modules_seen;
}

/* greenlet's module, once: 0 if it is not loaded (no error), 1 if it is,
 * -1 on error. */
static int
gl_find(secret_state *st, PyThreadState *tstate)
{
    if (!gl_modules_changed(st)) {
        return 0;
    }
    if (st->gl_modules_seen >= 0) {
        st->gl_modules_seen = _Py_atomic_load_ssize_relaxed(&gl_modules_changes);
    }
    PyObject *m = PyDict_GetItemWithError(tstate->interp->imports.modules,
                                          st->gl_modname);
    if (m == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *gc = PyObject_GetAttrString(m, "getcurrent");
    PyObject *gt = gc ? PyObject_GetAttrString(m, "gettrace") : NULL;
    PyObject *stf = gt ? PyObject_GetAttrString(m, "settrace") : NULL;
    if (stf == NULL) {
        Py_XDECREF(gc);
        Py_XDECREF(gt);
        return -1;
    }
    PyObject *capi = PyObject_GetAttrString(m, "_C_API");
    void **api = NULL;
    if (capi != NULL && PyCapsule_IsValid(capi, "greenlet._C_API")) {
        api = PyCapsule_GetPointer(capi, "greenlet._C_API");
        /* PyGreenlet_GetCurrent_NUM (greenlet.h): the same in every
         * greenlet release. */
        st->gl_capi_getcurrent = (PyObject *(*)(void))api[4];
        /* PyGreenlet_MAIN_NUM: since greenlet 2.0 (12 pointers), which
         * also added this constant to the C module */
        if (PyObject_HasAttrStringWithError(
                m, "GREENLET_USE_STANDARD_THREADING") == 1)
        {
            st->gl_capi_main = (int (*)(PyObject *))api[8];
            st->gl_capi_active = (int (*)(PyObject *))api[10];
        }
    }
    PyErr_Clear();
    int hooked = gl_hook(m);
    Py_XDECREF(capi);
    if (hooked < 0) {
        Py_DECREF(gc);
        Py_DECREF(gt);
        Py_DECREF(stf);
        return -1;
    }
    st->gl_getcurrent = gc;
    st->gl_gettrace = gt;
    st->gl_settrace = stf;
    return 1;
}

static int gl_follow_slow(secret_state *st, PyThreadState *tstate,
                          gl_call *c);

/* At do() entry: once the greenlet module is loaded, this thread's tracer
 * is in place and has seen every switch. 0, or -1 with an error. */
static inline int
gl_follow(PyObject *module, PyThreadState *tstate, gl_call *c)
{
    secret_state *st = PyModule_GetState(module);
    c->tracer = NULL;
    c->current = 0;
    c->seen = _Py_atomic_load_ssize_relaxed(&gl_modules_changes);
    if (st->gl_getcurrent == NULL && st->gl_modules_seen == c->seen) {
        return 0;       /* greenlet is not loaded */
    }
    return gl_follow_slow(st, tstate, c);
}

/* Is t a tracer of another interpreter's secret module? greenlet's trace
 * function is the thread's, whichever interpreter runs. */
static int
gl_foreign_tracer(secret_state *st, PyObject *t)
{
    return t != NULL && !Py_IS_TYPE(t, (PyTypeObject *)st->gl_tracer_type)
           && strcmp(Py_TYPE(t)->tp_name, "_secret.GreenletTracer") == 0;
}

/* The tracer is greenlet's trace function: put back in front of what
 * replaced it (settrace(None), a trace function that raised, which
 * greenlet drops, one put in place later, which it then calls). */
static int
gl_ensure_installed(secret_state *st, gl_tracer *self)
{
    PyObject *t = PyObject_CallNoArgs(st->gl_gettrace);
    if (t == NULL) {
        return -1;
    }
    if (t == (PyObject *)self) {
        Py_DECREF(t);
        return 0;
    }
    if (gl_foreign_tracer(st, t)) {
        Py_DECREF(t);
        PyErr_SetString(PyExc_RuntimeError,
                        "secret.do(): greenlet on this thread follows "
                        "another interpreter's secret.do(); greenlets with "
                        "secret.do() in more than one interpreter on one "
                        "thread are not supported");
        return -1;
    }
    PyObject *r = PyObject_CallOneArg(st->gl_settrace, (PyObject *)self);
    if (r == NULL) {
        Py_DECREF(t);
        return -1;
    }
    Py_DECREF(r);
    Py_XSETREF(self->previous, Py_IsNone(t) ? (Py_DECREF(t), NULL) : t);
    return 0;
}

static Py_NO_INLINE int
gl_follow_slow(secret_state *st, PyThreadState *tstate, gl_call *c)
{
    if (st->gl_getcurrent == NULL) {
        int found = gl_find(st, tstate);
        if (found <= 0) {
            return found;
        }
    }
    int saved = _PySecret_SuspendMode();
    int rc = -1;
    PyObject *cur = NULL;
    gl_tracer *self = gl_this_thread(st);
    if (self == NULL && PyErr_Occurred()) {
        goto done;
    }
    cur = gl_getcurrent(st);
    if (cur == NULL) {
        goto done;
    }
    if (self != NULL) {
        if (self->current != (uintptr_t)cur) {
            /* Switches went unseen. Harmless if no greenlet was in secret
             * mode; else modes are lost. */
            gl_mode now, base;
            gl_get((_PyThreadStateImpl *)tstate, &now);
            now.mode = saved - self->bumped;
            if (self->parked->nentries != 0
                || gl_base(self, cur, &base) < 0
                || now.depth != base.depth || now.inherited != base.inherited
                || now.mode != base.mode)
            {
                if (!PyErr_Occurred()) {
                    gl_lost("cannot enter secret mode");
                }
                goto done;
            }
            self->current = (uintptr_t)cur;
        }
        if (gl_ensure_installed(st, self) < 0) {
            goto done;
        }
        c->tracer = (gl_tracer *)Py_NewRef(self);
        c->current = (uintptr_t)cur;
        rc = 0;
        goto done;
    }
    /* First do() on this thread since greenlet was loaded. */
    PyObject *prev = PyObject_CallNoArgs(st->gl_gettrace);
    if (prev == NULL) {
        goto done;
    }
    if (gl_foreign_tracer(st, prev)) {
        Py_DECREF(prev);
        PyErr_SetString(PyExc_RuntimeError,
                        "secret.do(): greenlet on this thread follows "
                        "another interpreter's secret.do(); greenlets with "
                        "secret.do() in more than one interpreter on one "
                        "thread are not supported");
        goto done;
    }
    self = PyObject_GC_New(gl_tracer, (PyTypeObject *)st->gl_tracer_type);
    if (self == NULL) {
        Py_DECREF(prev);
        goto done;
    }
    Py_INCREF(st->gl_tracer_type);
    self->previous = Py_IsNone(prev) ? (Py_DECREF(prev), NULL) : prev;
    self->parked = _Py_hashtable_new_full(_Py_hashtable_hash_ptr,
                                          _Py_hashtable_compare_direct,
                                          NULL, gl_record_free, &plain_alloc);
    self->current = (uintptr_t)cur;
    self->thread_inherited = ((_PyThreadStateImpl *)tstate)->secret.inherited;
    self->context_ver = tstate->context_ver;
    self->busy = self->bumped = 0;
    self->capi_main = st->gl_capi_main;
    self->capi_active = st->gl_capi_active;
    self->sweep_at = 16;
    self->switches = self->erasures = 0;
    PyObject_GC_Track(self);
    PyObject *d = PyThreadState_GetDict();
    PyObject *r = NULL;
    if (self->parked != NULL && d != NULL
        && PyDict_SetItem(d, st->gl_key, (PyObject *)self) == 0)
    {
        r = PyObject_CallOneArg(st->gl_settrace, (PyObject *)self);
    }
    if (r != NULL) {
        Py_DECREF(r);
        c->tracer = self;
        c->current = (uintptr_t)cur;
        rc = 0;
    }
    else {
        if (d != NULL) {
            (void)PyDict_Pop(d, st->gl_key, NULL);
        }
        Py_DECREF(self);
    }
done:
    Py_XDECREF(cur);
    _PySecret_RestoreMode(saved);
    return rc;
}

/* At do() exit, before leaving: the tracer saw the switch back to the
 * greenlet do() runs in last (and it is put in place if greenlet was
 * loaded during func: a greenlet func made and left parked then follows
 * its mode). If not, the mode did not follow the code: the depth and mode
 * are made what the exit expects, and 1 is returned: do() raises once it
 * has erased (*err: an error to raise instead, or NULL). */
static int
gl_exit_check(PyObject *module, PyThreadState *tstate, gl_call *c,
              PyObject **err)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    int lost = 0;
    *err = NULL;
    if (c->tracer != NULL) {
        lost = c->tracer->current != c->current;
        if (!lost && tstate->context_ver != c->tracer->context_ver) {
            /* Something bumped the version since the tracer last ran (a
             * switch, or a context entered or left): if greenlet has no
             * trace function now, that may have been a switch it did
             * not see. */
            secret_state *st = PyModule_GetState(module);
            PyObject *exc = PyErr_GetRaisedException();
            int saved = _PySecret_SuspendMode();
            PyObject *t = PyObject_CallNoArgs(st->gl_gettrace);
            lost = t == NULL || Py_IsNone(t);
            Py_XDECREF(t);
            PyErr_Clear();
            _PySecret_RestoreMode(saved);
            PyErr_SetRaisedException(exc);
        }
        Py_CLEAR(c->tracer);
    }
    else if (_Py_atomic_load_ssize_relaxed(&gl_modules_changes) != c->seen)
    {
        /* func imported modules: greenlet among them? */
        PyObject *exc = PyErr_GetRaisedException();
        gl_call now;
        if (gl_follow(module, tstate, &now) < 0) {
            *err = PyErr_GetRaisedException();
            lost = 1;
        }
        Py_XDECREF(now.tracer);
        PyErr_SetRaisedException(exc);
    }
    if (__builtin_expect(ts->secret.depth < 1, 0)) {
        lost = 1;
        ts->secret.depth = 1;
    }
    if (lost) {
        _PySecret_tls.mode = ts->secret.depth + ts->secret.inherited;
    }
    return lost;
}

/* After the exit's erasure, when gl_exit_check() found the mode lost:
 * res (func's result) is dropped, and RuntimeError raised. */
SECRET_COLD static PyObject *
gl_exit_lost(PyThreadState *tstate, PyObject *res, PyObject *err)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    _PySecret_tls.mode = ts->secret.depth + ts->secret.inherited;
    Py_XDECREF(res);
    if (err != NULL) {
        PyErr_SetRaisedException(err);
        return NULL;
    }
    if (PyErr_Occurred()) {
        _PyErr_FormatFromCause(PyExc_RuntimeError,
                               "secret.do() could not keep secret mode: a "
                               "greenlet switch was not seen");
        return NULL;
    }
    (void)gl_lost("could not keep secret mode");
    return NULL;
}
#endif  /* _Py_SECRET_HEAP */

PyDoc_STRVAR(secret_do_doc,
"do($module, func, /, *args, **kwargs)\n"
"--\n"
"\n"
"Call func(*args, **kwargs) with the calling thread in secret mode.\n"
"\n"
"Returns what func returns and raises what it raises. On every way out,\n"
"the memory func used is erased as far as this build supports (see\n"
"protections()). func must do its work before it returns: a coroutine,\n"
"generator or async generator result is closed and TypeError is raised\n"
"(do_async(), iterate() and aiterate() protect those).");

/* make: return a coroutine, generator or async generator func made
 * instead of refusing it (secret_do_make). */
static inline PyObject *
do_impl(PyObject *module, PyObject *const *args, Py_ssize_t nargsf,
        PyObject *kwnames, int make)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "secret.do() missing required positional argument: "
                        "'func'");
        return NULL;
    }
    PyObject *func = args[0];
    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError,
                     "secret.do() argument 'func' must be callable, not %T",
                     func);
        return NULL;
    }

    PyThreadState *tstate = _PyThreadState_GET();
    if (_PySecretHeap_EnsureReserved() < 0) {
        return NULL;
    }
    if (freeze_code_error[0] != '\0') {
        PyErr_SetString(PyExc_ValueError, freeze_code_error);
        return NULL;
    }
#if _Py_SECRET_HEAP
    gl_call glc;
    if (_PySecret_SUPPORTED && gl_follow(module, tstate, &glc) < 0) {
        return NULL;
    }
    int outermost = ((_PyThreadStateImpl *)tstate)->secret.depth == 0;
    exit_gc gcs;
    if (outermost) {
        exit_gc_start(tstate, &gcs);
    }
#endif
    do_epoch *epoch = epoch_start(tstate);
    _PySecretCall call;
    int entered = _PySecret_ENTER(tstate, &call);
    PyObject *res = PyObject_Vectorcall(func, args + 1, nargs - 1, kwnames);
    if (res == NULL) {
        if (entered) {
            /* First: the frames' locals are freed before the collection,
             * and what freeing them leaves is erased with the rest. */
            strip_until_settled(tstate, module, epoch);
        }
    }
    else if (!make && deferred_kind(res) != NULL) {
        res = refuse_deferred(func, res);
        if (entered) {
            /* its cause is func's */
            strip_until_settled(tstate, module, epoch);
        }
    }
#if _Py_SECRET_HEAP
    if (outermost) {
        if (entered) {
            if (collect_exit_garbage(tstate, &gcs) && res == NULL) {
                /* Its finalizers may have linked more to the exception. */
                strip_until_settled(tstate, module, epoch);
            }
        }
        else {
            Py_CLEAR(gcs.marker);
        }
    }
#endif
    epoch_end(tstate, epoch);
#if _Py_SECRET_HEAP
    PyObject *gl_err = NULL;
    int gl_lost_mode = entered && gl_exit_check(module, tstate, &glc,
                                                &gl_err);
#endif
    if (entered) {
        /* Last: erases the C stack below this frame and the registers. */
        _PySecret_LEAVE(tstate, &call);
    }
#if _Py_SECRET_HEAP
    if (gl_lost_mode) {
        return gl_exit_lost(tstate, res, gl_err);
    }
#endif
    return res;
}

static PyObject *
secret_do(PyObject *module, PyObject *const *args, Py_ssize_t nargsf,
          PyObject *kwnames)
{
    return do_impl(module, args, nargsf, kwnames, 0);
}

/* For Lib/secret's iterate() and aiterate(): do() that returns the
 * generator or coroutine func made (a secret block: each of its steps then
 * runs in secret mode wherever it is resumed, patch 0029), and that runs
 * each of their steps with do()'s exit work (a yielded value may be a
 * generator). */
static PyObject *
secret_do_make(PyObject *module, PyObject *const *args, Py_ssize_t nargsf,
               PyObject *kwnames)
{
    return do_impl(module, args, nargsf, kwnames, 1);
}

/* ---- secret.do_async() (spec §2.1) -------------------------------------
 *
 * An awaitable that runs an async function's body one step at a time, each
 * step (from a resume to the next suspension) inside its own do() entry and
 * exit: send(), throw() and close() enter secret mode in this frame, drive
 * the coroutine func made (a secret block) one step with PyIter_Send() or
 * its throw()/close(), and leave, erasing what the step left in registers,
 * on the C stack and in the frame stack before the event loop runs again.
 * Between steps the thread is not in secret mode. Coroutines, generators
 * and tasks a step creates are secret blocks, so each of their steps runs
 * in secret mode wherever it is resumed (Objects/genobject.c, patch 0029).
 * The last step (func returned, raised, was cancelled or closed) finishes
 * as do() does: the leaving exception is stripped, and the outermost
 * collects the cyclic garbage func made, in secret mode, before leaving. */

enum { DA_CREATED, DA_SUSPENDED, DA_RUNNING, DA_DONE };
enum { DA_SEND, DA_THROW, DA_CLOSE };

typedef struct {
    PyObject_HEAD
    PyObject *func;         /* until the first step */
    PyObject *args;         /* a tuple, until the first step */
    PyObject *kwargs;       /* a dict or NULL, until the first step */
    PyObject *inner;        /* what the steps drive, between first and last */
    int state;
#if _Py_SECRET_HEAP
    int collects;           /* first step at depth 0: collects at the end */
    exit_gc gcs;
#endif
} async_call;

/* Raise what throw(typ[, val[, tb]]) names, for a call that never ran. */
static void
raise_thrown(PyObject *const *targs, Py_ssize_t n)
{
    PyObject *typ = targs[0];
    PyObject *val = n > 1 && targs[1] != Py_None ? targs[1] : NULL;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val);
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving "
                        "from BaseException");
    }
}

/* A call's result as what the steps drive: a coroutine, or the iterator
 * of another awaitable. Consumes made. */
static PyObject *
awaited_iter(PyObject *func, PyObject *made)
{
    if (PyCoro_CheckExact(made)) {
        return made;
    }
    if (PyGen_CheckExact(made) || PyAsyncGen_CheckExact(made)) {
        const char *kind = deferred_kind(made);
        const char *api = deferred_api(made);
        (void)close_deferred(made);
        Py_DECREF(made);
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "secret.do_async() needs a coroutine: %R returned %s; "
                     "use %s", func, kind, api);
        return NULL;
    }
    PyObject *it = _PyCoro_GetAwaitableIter(made);
    if (it == NULL) {
        _PyErr_FormatFromCause(
            PyExc_TypeError,
            "secret.do_async() needs a coroutine function or a function "
            "that returns an awaitable: %R returned %T", func, made);
    }
    Py_DECREF(made);
    return it;
}

/* The step's work, in secret mode: make the coroutine (first step), then
 * drive it once. */
static PySendResult
async_call_run(async_call *self, int how, PyObject *arg,
               PyObject *const *targs, Py_ssize_t ntargs, PyObject **presult)
{
    PyObject *res = NULL;
    if (self->inner == NULL) {
        PyObject *func = self->func, *args = self->args;
        PyObject *kwargs = self->kwargs;
        self->func = self->args = self->kwargs = NULL;
        PyObject *made = PyObject_Call(func, args, kwargs);
        Py_DECREF(args);
        Py_XDECREF(kwargs);
        self->inner = made == NULL ? NULL : awaited_iter(func, made);
        Py_DECREF(func);
        if (self->inner == NULL) {
            return PYGEN_ERROR;
        }
    }
    if (how == DA_SEND) {
        return PyIter_Send(self->inner, arg, presult);
    }
    if (how == DA_THROW) {
        PyObject *stack[4] = {self->inner};
        for (Py_ssize_t i = 0; i < ntargs; i++) {
            stack[i + 1] = targs[i];
        }
        res = PyObject_VectorcallMethod(&_Py_ID(throw), stack, ntargs + 1,
                                        NULL);
        if (res != NULL) {
            *presult = res;
            return PYGEN_NEXT;
        }
        if (_PyGen_FetchStopIterationValue(presult) == 0) {
            return PYGEN_RETURN;
        }
        return PYGEN_ERROR;
    }
    /* DA_CLOSE */
    PyObject *close;
    if (PyObject_GetOptionalAttr(self->inner, &_Py_ID(close), &close) < 0) {
        return PYGEN_ERROR;
    }
    if (close == NULL) {
        *presult = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    res = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (res == NULL) {
        return PYGEN_ERROR;
    }
    *presult = res;
    return PYGEN_RETURN;
}

/* One step: send(arg), throw(*targs) or close(). */
static PySendResult
async_call_step(async_call *self, int how, PyObject *arg,
                PyObject *const *targs, Py_ssize_t ntargs,
                PyObject **presult)
{
    *presult = NULL;
    if (self->state == DA_RUNNING) {
        PyErr_SetString(PyExc_ValueError,
                        "secret.do_async() call already executing");
        return PYGEN_ERROR;
    }
    if (self->state == DA_DONE) {
        if (how == DA_CLOSE) {
            *presult = Py_NewRef(Py_None);
            return PYGEN_RETURN;
        }
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot reuse already awaited secret.do_async()");
        return PYGEN_ERROR;
    }
    if (self->state == DA_CREATED) {
        if (how != DA_SEND) {
            /* func never ran: nothing to protect. */
            self->state = DA_DONE;
            Py_CLEAR(self->func);
            Py_CLEAR(self->args);
            Py_CLEAR(self->kwargs);
            if (how == DA_THROW) {
                raise_thrown(targs, ntargs);
                return PYGEN_ERROR;
            }
            *presult = Py_NewRef(Py_None);
            return PYGEN_RETURN;
        }
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started "
                            "secret.do_async()");
            return PYGEN_ERROR;
        }
        if (_PySecretHeap_EnsureReserved() < 0) {
            return PYGEN_ERROR;
        }
        if (freeze_code_error[0] != '\0') {
            PyErr_SetString(PyExc_ValueError, freeze_code_error);
            return PYGEN_ERROR;
        }
    }
    PyThreadState *tstate = _PyThreadState_GET();
    PyObject *module = PyType_GetModule(Py_TYPE(self));
#if _Py_SECRET_HEAP
    if (self->state == DA_CREATED && _PySecret_SUPPORTED) {
        gl_call glc;
        if (gl_follow(module, tstate, &glc) < 0) {
            return PYGEN_ERROR;
        }
        Py_XDECREF(glc.tracer);
    }
    if (self->state == DA_CREATED) {
        self->collects = ((_PyThreadStateImpl *)tstate)->secret.depth == 0;
        if (self->collects) {
            exit_gc_start(tstate, &self->gcs);
        }
    }
#endif
    self->state = DA_RUNNING;
    /* A step's own epoch: what it made is a secret block anyway, and the
     * thread's list of running do() calls stays one of nested calls. */
    do_epoch *epoch = epoch_start(tstate);
    _PySecretCall call;
    int entered = _PySecret_ENTER(tstate, &call);
    PySendResult st = async_call_run(self, how, arg, targs, ntargs, presult);
    if (st == PYGEN_NEXT) {
        self->state = DA_SUSPENDED;
    }
    else {
        self->state = DA_DONE;
        Py_CLEAR(self->inner);
        if (st == PYGEN_ERROR && entered) {
            strip_until_settled(tstate, module, epoch);
        }
#if _Py_SECRET_HEAP
        if (self->collects) {
            self->collects = 0;
            if (entered) {
                if (collect_exit_garbage(tstate, &self->gcs)
                    && st == PYGEN_ERROR)
                {
                    strip_until_settled(tstate, module, epoch);
                }
            }
            else {
                Py_CLEAR(self->gcs.marker);
            }
        }
#endif
    }
    epoch_end(tstate, epoch);
    if (entered) {
        /* Last: erases the C stack below this frame and the registers. */
        _PySecret_LEAVE(tstate, &call);
    }
    return st;
}

static PySendResult
async_call_am_send(PyObject *self, PyObject *arg, PyObject **presult)
{
    return async_call_step((async_call *)self, DA_SEND, arg, NULL, 0,
                           presult);
}

/* A step's outcome as a method result: a return raises StopIteration. */
static PyObject *
step_result(PySendResult st, PyObject *res)
{
    if (st == PYGEN_RETURN) {
        if (res == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        else {
            (void)_PyGen_SetStopIterationValue(res);
        }
        Py_DECREF(res);
        return NULL;
    }
    return res;
}

static PyObject *
async_call_iternext(PyObject *self)
{
    PyObject *res;
    PySendResult st = async_call_am_send(self, Py_None, &res);
    if (st == PYGEN_RETURN && res == Py_None) {
        Py_DECREF(res);
        return NULL;
    }
    return step_result(st, res);
}

static PyObject *
async_call_send(PyObject *self, PyObject *arg)
{
    PyObject *res;
    PySendResult st = async_call_am_send(self, arg, &res);
    return step_result(st, res);
}

static PyObject *
async_call_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    PyObject *res;
    PySendResult st = async_call_step((async_call *)self, DA_THROW, NULL,
                                      args, nargs, &res);
    return step_result(st, res);
}

static PyObject *
async_call_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *res;
    PySendResult st = async_call_step((async_call *)self, DA_CLOSE, NULL,
                                      NULL, 0, &res);
    if (st == PYGEN_ERROR) {
        return NULL;
    }
    return res;
}

static PyObject *
async_call_await(PyObject *self)
{
    return Py_NewRef(self);
}

/* Dropped while suspended (a task destroyed, a loop closed): close it as a
 * last step, so that its finally blocks run in secret mode and do()'s exit
 * work is done. */
static void
async_call_finalize(PyObject *self)
{
    async_call *ac = (async_call *)self;
    if (ac->state != DA_SUSPENDED) {
        return;
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *res;
    if (async_call_step(ac, DA_CLOSE, NULL, NULL, 0, &res) == PYGEN_ERROR) {
        PyErr_WriteUnraisable(self);
    }
    else {
        Py_XDECREF(res);
    }
    PyErr_SetRaisedException(exc);
}

static int
async_call_traverse(PyObject *self, visitproc visit, void *arg)
{
    async_call *ac = (async_call *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(ac->func);
    Py_VISIT(ac->args);
    Py_VISIT(ac->kwargs);
    Py_VISIT(ac->inner);
    return 0;
}

static int
async_call_clear(PyObject *self)
{
    async_call *ac = (async_call *)self;
    Py_CLEAR(ac->func);
    Py_CLEAR(ac->args);
    Py_CLEAR(ac->kwargs);
    Py_CLEAR(ac->inner);
#if _Py_SECRET_HEAP
    ac->collects = 0;
    Py_CLEAR(ac->gcs.marker);
#endif
    return 0;
}

static void
async_call_dealloc(PyObject *self)
{
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;     /* resurrected */
    }
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    (void)async_call_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
async_call_repr(PyObject *self)
{
    async_call *ac = (async_call *)self;
    static const char *states[] = {"created", "suspended", "running",
                                   "done"};
    return PyUnicode_FromFormat("<secret.do_async call (%s) at %p>",
                                states[ac->state], self);
}

static PyMethodDef async_call_methods[] = {
    {"send", async_call_send, METH_O,
     "send(arg): run the next step in secret mode, sending arg"},
    {"throw", _PyCFunction_CAST(async_call_throw), METH_FASTCALL,
     "throw(exc): raise exc at the suspension point, in secret mode"},
    {"close", async_call_close, METH_NOARGS,
     "close(): raise GeneratorExit at the suspension point, in secret mode"},
    {NULL, NULL, 0, NULL}
};

static PyType_Slot async_call_slots[] = {
    {Py_tp_dealloc, async_call_dealloc},
    {Py_tp_finalize, async_call_finalize},
    {Py_tp_traverse, async_call_traverse},
    {Py_tp_clear, async_call_clear},
    {Py_tp_repr, async_call_repr},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, async_call_iternext},
    {Py_tp_methods, async_call_methods},
    {Py_am_await, async_call_await},
    {Py_am_send, async_call_am_send},
    {Py_tp_doc, "What secret.do_async() returns: an awaitable (a coroutine "
                "to asyncio) whose every step runs in secret mode."},
    {0, NULL}
};

static PyType_Spec async_call_spec = {
    .name = "_secret.AsyncCall",
    .basicsize = sizeof(async_call),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = async_call_slots,
};

PyDoc_STRVAR(secret_do_async_doc,
"do_async($module, func, /, *args, **kwargs)\n"
"--\n"
"\n"
"Return an awaitable that runs the coroutine func(*args, **kwargs) makes\n"
"with each of its steps in secret mode.\n"
"\n"
"'await secret.do_async(func, ...)' returns what func returns and raises\n"
"what it raises. Each step of func's body (from a resume to the next\n"
"suspension) runs in secret mode, and the memory it used is erased at the\n"
"suspension, before the event loop runs other code; between steps the\n"
"thread is not in secret mode. Coroutines, generators and tasks made in a\n"
"step run each of their steps in secret mode too. When func finishes\n"
"(return, exception, cancellation), do()'s guarantees hold.");

static PyObject *
secret_do_async(PyObject *module, PyObject *const *args, Py_ssize_t nargsf,
                PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "secret.do_async() missing required positional "
                        "argument: 'func'");
        return NULL;
    }
    PyObject *func = args[0];
    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError,
                     "secret.do_async() argument 'func' must be callable, "
                     "not %T", func);
        return NULL;
    }
    secret_state *st = PyModule_GetState(module);
    PyObject *pos = PyTuple_New(nargs - 1);
    if (pos == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 1; i < nargs; i++) {
        PyTuple_SET_ITEM(pos, i - 1, Py_NewRef(args[i]));
    }
    PyObject *kw = NULL;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        kw = PyDict_New();
        if (kw == NULL) {
            Py_DECREF(pos);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i),
                               args[nargs + i]) < 0)
            {
                Py_DECREF(pos);
                Py_DECREF(kw);
                return NULL;
            }
        }
    }
    async_call *ac = PyObject_GC_New(async_call,
                                     (PyTypeObject *)st->async_call_type);
    if (ac == NULL) {
        Py_DECREF(pos);
        Py_XDECREF(kw);
        return NULL;
    }
    ac->func = Py_NewRef(func);
    ac->args = pos;
    ac->kwargs = kw;
    ac->inner = NULL;
    ac->state = DA_CREATED;
#if _Py_SECRET_HEAP
    ac->collects = 0;
    ac->gcs.marker = NULL;
#endif
    PyObject_GC_Track(ac);
    return (PyObject *)ac;
}

PyDoc_STRVAR(secret_enabled_doc,
"enabled($module, /)\n"
"--\n"
"\n"
"Return True if the calling thread is in secret mode: inside secret.do()\n"
"at any depth, or started by a thread that was. Always False in fallback\n"
"mode (see supported()).");

static PyObject *
secret_enabled(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(_PySecret_IsEnabled(_PyThreadState_GET()));
}

PyDoc_STRVAR(secret_supported_doc,
"supported($module, /)\n"
"--\n"
"\n"
"Return True if this build runs secret.do() in secret mode (Linux x86-64\n"
"and aarch64), False if do() only calls its function (fallback mode).\n"
"protections() tells which erasures this build performs.");

static PyObject *
secret_supported(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(_PySecret_SUPPORTED);
}

PyDoc_STRVAR(secret_protections_doc,
"protections($module, /)\n"
"--\n"
"\n"
"Return a dict: for each protection of secret.do(), whether do() gives it\n"
"in this process. All False in fallback mode. no_core_dump: the secret\n"
"heap is excluded from core dumps. no_swap: all of it is locked against\n"
"swap, now and as it grows (RLIMIT_MEMLOCK covers its size, or\n"
"-X secret_require_lock refuses unlocked memory; heap_info() says what\n"
"was granted). no_core_dump_or_swap (deprecated): both. code_state: the\n"
"adaptive state of code made before do() does not change in do()\n"
"(-X secret_freeze_code). native_heap: what native code allocates with\n"
"malloc and its kin in secret mode is secret (False if a preloaded\n"
"allocator serves those; heap_info()[\"native_heap_error\"] says why).\n"
"Reserves the secret heap if no do() has yet,\n"
"and raises what do() would if that fails.");

static PyObject *
secret_protections(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    /* The swap claim depends on what the kernel granted: ask for it now,
     * as do() would. */
    if (_PySecretHeap_EnsureReserved() < 0) {
        return NULL;
    }
    if (freeze_code_error[0] != '\0') {
        PyErr_SetString(PyExc_ValueError, freeze_code_error);
        return NULL;
    }
    int granted = (_PySecretHeap_NoCoreDump() ? DUMP : 0)
                  | (_PySecretHeap_NoSwap() ? LOCK : 0);
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < Py_ARRAY_LENGTH(protections); i++) {
        int on = (_PySecret_SUPPORTED && protections[i].erased
                  && (protections[i].needs & ~granted) == 0);
        if (strcmp(protections[i].name, "code_state") == 0) {
            on = on && _PySecret_freeze_code;
        }
        if (PyDict_SetItemString(dict, protections[i].name,
                                 on ? Py_True : Py_False) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    /* §3.4: what native code allocates with the C library's functions in
     * secret mode is secret, unless another allocator took those names
     * or serves ordinary memory (heap_info()["native_heap_error"]). */
    char why[512];
    int native = _PySecret_SUPPORTED && _PySecretNative_Check(why,
                                                              sizeof(why));
    if (PyDict_SetItemString(dict, "native_heap",
                             native ? Py_True : Py_False) < 0) {
        Py_DECREF(dict);
        return NULL;
    }
    return dict;
}

PyDoc_STRVAR(secret_heap_info_doc,
"heap_info($module, /)\n"
"--\n"
"\n"
"Return a dict describing the secret heap, where every block allocated in\n"
"secret mode lives and is zeroed when freed. Its settings and what the\n"
"kernel would grant: size (bytes it may commit: -X secret_heap_size),\n"
"require_lock, lockable (bytes RLIMIT_MEMLOCK lets it lock, -1 = no\n"
"limit), lock_limit, locked (all it commits is and will be locked),\n"
"address_space. Once reserved (active): reserved, base, committed,\n"
"peak_committed, resident, locked_bytes, unlocked_bytes,\n"
"unlocked_resident (may be swapped), lock_failures, lock_error, dontdump,\n"
"live_bytes, live_blocks, zeroed_bytes, allocations, frees, exhausted\n"
"(failed allocations), trims, decommits, headroom_blocks, cached_bytes\n"
"(freed small blocks, zeroed, that threads keep to hand out again),\n"
"caches_taken (other threads' caches taken back when the heap was full),\n"
"native_allocations (secret blocks native code made), native_heap,\n"
"native_heap_error, native_allocator (what serves ordinary memory). See\n"
"docs/heap.md.\n"
"Before the first secret.do() the counters are zero.");

static PyObject *
secret_heap_info(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return _PySecretHeap_Info();
}

/* For tests/test_freelists.py: two free lists that Python code cannot
 * reach. Make one object of the kind, free it (onto its free list if that
 * is allowed) and return its address. */
static PyObject *
secret_test_recycle(PyObject *module, PyObject *arg)
{
    const char *kind = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (kind == NULL) {
        PyErr_SetString(PyExc_TypeError, "kind must be a str");
        return NULL;
    }
    void *addr;
    if (strcmp(kind, "object_stack") == 0) {
        _PyObjectStackChunk *c = _PyObjectStackChunk_New();
        if (c == NULL) {
            return PyErr_NoMemory();
        }
        addr = c;
        _PyObjectStackChunk_Free(c);
    }
    else if (strcmp(kind, "async_gen_wrapped_value") == 0) {
        PyObject *w = _PyAsyncGenValueWrapperNew(_PyThreadState_GET(),
                                                 Py_None);
        if (w == NULL) {
            return NULL;
        }
        addr = w;
        Py_DECREF(w);
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown kind %R", arg);
        return NULL;
    }
    return PyLong_FromVoidPtr(addr);
}

/* For Lib/secret's fork handler. */
static PyObject *
secret_fork_lost(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(_PySecretStack_ForkLost());
}

/* --- Who holds what (secret.survivors(), spec §3.5) ------------------------
 *
 * One pass over every object the collector tracks, and over the locals of
 * every thread's frames, finding who refers to the objects wanted: every
 * secret block (targets None), or the objects of a set of addresses (the
 * next step up a chain of referrers). An object the collector does not
 * track (a dict or tuple of atomic values, a bytes) is reached through
 * what refers to it; an untracked container is traversed in turn, since a
 * cache dict of str to bytes stays untracked. The pass makes no object
 * (the collector's lists stay as they are): it fills plain arrays, holding
 * a reference to what it found, and the result is built afterwards. */

enum { REF_OBJECT, REF_LOCAL, REF_THREAD, REF_NONE };

typedef struct {
    PyObject *target;       /* strong */
    PyObject *ref;          /* strong: the referrer, or a frame's code */
    int kind;               /* REF_* */
    int index;              /* REF_LOCAL: localsplus index, REF_THREAD: field */
    int line;               /* REF_LOCAL */
    unsigned long thread_id;
} ref_pair;

typedef struct {
    _Py_hashtable_t *targets;   /* NULL: every secret block */
    _Py_hashtable_t *ignore;    /* the caller's own containers, or NULL */
    _Py_hashtable_t *seen;      /* untracked containers already traversed */
    _Py_hashtable_t *counts;    /* target -> referrers recorded */
    Py_ssize_t max_per;
    ref_pair *pairs;
    size_t n, cap;
    PyObject **stack;
    size_t sn, scap;
    PyObject *current;
    int failed;
} ref_walk;

static const char *const thread_fields[] = {
    "dict", "current_exception", "handled_exception"};

static int
ref_wanted(ref_walk *w, PyObject *op)
{
    if (w->targets == NULL) {
        return _PySecret_IsSecret(op);
    }
    return _Py_hashtable_get(w->targets, op) != NULL;
}

static int
ref_grow(void **arr, size_t *cap, size_t item)
{
    size_t n = *cap ? *cap * 2 : 256;
    void *p = plain_realloc(*arr, n * item);
    if (p == NULL) {
        return -1;
    }
    *arr = p;
    *cap = n;
    return 0;
}

/* Record that ref (kind) refers to target, up to max_per referrers a
 * target (REF_NONE, "it exists", is always recorded once). */
static void
ref_add(ref_walk *w, PyObject *target, PyObject *ref, int kind, int index,
        int line, unsigned long thread_id)
{
    if (w->failed) {
        return;
    }
    uintptr_t c = (uintptr_t)_Py_hashtable_get(w->counts, target);
    if (kind != REF_NONE && (Py_ssize_t)c >= w->max_per) {
        return;
    }
    if (w->n == w->cap
        && ref_grow((void **)&w->pairs, &w->cap, sizeof(ref_pair)) < 0)
    {
        w->failed = 1;
        return;
    }
    if (kind != REF_NONE
        && _Py_hashtable_set(w->counts, target, (void *)(c + 1)) < 0)
    {
        w->failed = 1;
        return;
    }
    w->pairs[w->n++] = (ref_pair){Py_NewRef(target), Py_XNewRef(ref), kind,
                                  index, line, thread_id};
}

static int
ref_visit(PyObject *op, void *arg)
{
    ref_walk *w = arg;
    if (op == NULL) {
        return 0;
    }
    if (ref_wanted(w, op)) {
        ref_add(w, op, w->current, REF_OBJECT, 0, 0, 0);
    }
    if (_PyObject_IS_GC(op) && !_PyObject_GC_IS_TRACKED(op)
        && _Py_hashtable_get(w->seen, op) == NULL
        && (w->ignore == NULL || _Py_hashtable_get(w->ignore, op) == NULL))
    {
        if (_Py_hashtable_set(w->seen, op, (void *)1) < 0
            || (w->sn == w->scap
                && ref_grow((void **)&w->stack, &w->scap,
                            sizeof(PyObject *)) < 0))
        {
            w->failed = 1;
            return 0;
        }
        w->stack[w->sn++] = op;
    }
    return 0;
}

/* Traverse op, then the untracked containers reached from it. */
static void
ref_traverse(ref_walk *w, PyObject *op)
{
    w->current = op;
    Py_TYPE(op)->tp_traverse(op, ref_visit, w);
    while (w->sn > 0 && !w->failed) {
        w->current = w->stack[--w->sn];
        Py_TYPE(w->current)->tp_traverse(w->current, ref_visit, w);
    }
    w->sn = 0;
}

static void
ref_frames(ref_walk *w, PyInterpreterState *interp)
{
    for (PyThreadState *t = interp->threads.head; t != NULL; t = t->next) {
        PyObject *fields[] = {
            t->dict, t->current_exception,
            t->exc_info != NULL ? t->exc_info->exc_value : NULL};
        for (int i = 0; i < (int)Py_ARRAY_LENGTH(fields); i++) {
            if (fields[i] != NULL && fields[i] != Py_None
                && ref_wanted(w, fields[i]))
            {
                ref_add(w, fields[i], NULL, REF_THREAD, i, 0, t->thread_id);
            }
        }
        for (_PyInterpreterFrame *f = t->current_frame; f != NULL;
             f = f->previous)
        {
            if (f->owner == FRAME_OWNED_BY_CSTACK
                || !PyCode_Check(f->f_executable)
                || _PyFrame_IsIncomplete(f))
            {
                continue;
            }
            PyCodeObject *co = (PyCodeObject *)f->f_executable;
            int line = -1;
            for (int i = 0; i < co->co_nlocalsplus; i++) {
                PyObject *v = f->localsplus[i];
                if (v == NULL) {
                    continue;
                }
                if (ref_wanted(w, v)) {
                    if (line == -1) {
                        line = PyUnstable_InterpreterFrame_GetLine(f);
                    }
                    ref_add(w, v, (PyObject *)co, REF_LOCAL, i, line,
                            t->thread_id);
                }
            }
        }
    }
}

static void
ref_walk_free(ref_walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        Py_DECREF(w->pairs[i].target);
        Py_XDECREF(w->pairs[i].ref);
    }
    plain_free(w->pairs);
    plain_free(w->stack);
    if (w->targets != NULL) {
        _Py_hashtable_destroy(w->targets);
    }
    if (w->ignore != NULL) {
        _Py_hashtable_destroy(w->ignore);
    }
    if (w->seen != NULL) {
        _Py_hashtable_destroy(w->seen);
    }
    if (w->counts != NULL) {
        _Py_hashtable_destroy(w->counts);
    }
}

static PyObject *
ref_pair_tuple(ref_pair *p)
{
    switch (p->kind) {
    case REF_OBJECT:
        return Py_BuildValue("(OiO)", p->target, p->kind, p->ref);
    case REF_LOCAL: {
        PyCodeObject *co = (PyCodeObject *)p->ref;
        PyObject *name = PyTuple_GET_ITEM(co->co_localsplusnames, p->index);
        return Py_BuildValue("(Oi(OOik))", p->target, p->kind, co, name,
                             p->line, p->thread_id);
    }
    case REF_THREAD:
        return Py_BuildValue("(Oi(sk))", p->target, p->kind,
                             thread_fields[p->index], p->thread_id);
    default:
        return Py_BuildValue("(OiO)", p->target, p->kind, Py_None);
    }
}

/* A set of the addresses in an iterable of ints (ids). */
static _Py_hashtable_t *
address_set(PyObject *ids)
{
    PyObject *it = PyObject_GetIter(ids);
    if (it == NULL) {
        return NULL;
    }
    _Py_hashtable_t *set = pointer_set(NULL);
    PyObject *item;
    while (set != NULL && (item = PyIter_Next(it)) != NULL) {
        void *addr = PyLong_AsVoidPtr(item);
        Py_DECREF(item);
        if ((addr == NULL && PyErr_Occurred())
            || _Py_hashtable_set(set, addr, (void *)1) < 0)
        {
            break;
        }
    }
    Py_DECREF(it);
    if (set == NULL || PyErr_Occurred()) {
        if (set != NULL) {
            _Py_hashtable_destroy(set);
        }
        else {
            PyErr_NoMemory();
        }
        return NULL;
    }
    return set;
}

PyDoc_STRVAR(secret_referrers_doc,
"_referrers(targets, max_per, ignore, /)\n"
"--\n"
"\n"
"For secret.survivors(): a list of (target, kind, referrer) for every\n"
"secret block that is an object (targets None) or every object whose id\n"
"is in the set targets, found from the objects the collector tracks and\n"
"the locals of every thread's frames; kind 0: referrer is an object,\n"
"1: (code, local name, line, thread id), 2: (thread state field, thread\n"
"id), 3: none (a tracked target, listed once). At most max_per\n"
"referrers a target. ignore: None or the ids of the caller's own\n"
"containers, which are neither referrers nor traversed.");

static PyObject *
secret_is_secret(PyObject *module, PyObject *obj)
{
    return PyBool_FromLong(_PySecret_IsSecret(obj));
}

static PyObject *
secret_referrers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!_PyArg_CheckPositional("_referrers", nargs, 3, 3)) {
        return NULL;
    }
    Py_ssize_t max_per = PyLong_AsSsize_t(args[1]);
    if (max_per == -1 && PyErr_Occurred()) {
        return NULL;
    }
    ref_walk w = {.max_per = max_per};
    PyObject *result = NULL;
    w.seen = pointer_set(NULL);
    w.counts = pointer_set(NULL);
    if (w.seen == NULL || w.counts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Read the addresses first: the walk makes no object. */
    if (args[0] != Py_None && (w.targets = address_set(args[0])) == NULL) {
        goto done;
    }
    if (args[2] != Py_None && (w.ignore = address_set(args[2])) == NULL) {
        goto done;
    }
    PyInterpreterState *interp = _PyInterpreterState_GET();
    struct _gc_runtime_state *gc = &interp->gc;
    PyGC_Head *lists[NUM_GENERATIONS + 1];
    for (int i = 0; i < NUM_GENERATIONS; i++) {
        lists[i] = &gc->generations[i].head;
    }
    lists[NUM_GENERATIONS] = &gc->permanent_generation.head;
    for (int i = 0; i <= NUM_GENERATIONS && !w.failed; i++) {
        for (PyGC_Head *p = _PyGCHead_NEXT(lists[i]); p != lists[i];
             p = _PyGCHead_NEXT(p))
        {
            PyObject *op = _Py_FROM_GC(p);
            if (w.ignore != NULL && _Py_hashtable_get(w.ignore, op)) {
                continue;
            }
            if (ref_wanted(&w, op)) {
                ref_add(&w, op, NULL, REF_NONE, 0, 0, 0);
            }
            ref_traverse(&w, op);
            if (w.failed) {
                break;
            }
        }
    }
    if (!w.failed) {
        ref_frames(&w, interp);
    }
    if (w.failed) {
        PyErr_NoMemory();
        goto done;
    }
    /* Now objects may be made: a collection this causes cannot free what
     * the pairs hold. */
    result = PyList_New(0);
    for (size_t i = 0; result != NULL && i < w.n; i++) {
        PyObject *t = ref_pair_tuple(&w.pairs[i]);
        if (t == NULL || PyList_Append(result, t) < 0) {
            Py_CLEAR(result);
        }
        Py_XDECREF(t);
    }
done:
    ref_walk_free(&w);
    return result;
}

static PyMethodDef secret_methods[] = {
    {"do", _PyCFunction_CAST(secret_do), METH_FASTCALL | METH_KEYWORDS,
     secret_do_doc},
    {"do_async", _PyCFunction_CAST(secret_do_async),
     METH_FASTCALL | METH_KEYWORDS, secret_do_async_doc},
    {"_do_make", _PyCFunction_CAST(secret_do_make),
     METH_FASTCALL | METH_KEYWORDS,
     "_do_make(func, /, *args, **kwargs): do() that returns a generator or "
     "coroutine func made (for secret.iterate and aiterate)"},
    {"enabled", secret_enabled, METH_NOARGS, secret_enabled_doc},
    {"supported", secret_supported, METH_NOARGS, secret_supported_doc},
    {"protections", secret_protections, METH_NOARGS, secret_protections_doc},
    {"heap_info", secret_heap_info, METH_NOARGS, secret_heap_info_doc},
    {"_referrers", _PyCFunction_CAST(secret_referrers), METH_FASTCALL,
     secret_referrers_doc},
    {"_is_secret", secret_is_secret, METH_O,
     "_is_secret(obj): whether obj is a block of the secret heap"},
    {"_fork_lost", secret_fork_lost, METH_NOARGS,
     "_fork_lost(): in a fork() child, how many other threads were inside "
     "do() at the fork"},
    {"_test_recycle", secret_test_recycle, METH_O,
     "_test_recycle(kind): tests only; address of a made-and-freed object"},
    {NULL, NULL, 0, NULL}
};

/* The placeholder of a cleared frame (see "The exception that leaves
 * do()"): a function `cleared` whose code is PyCode_NewEmpty()'s (never
 * run: it only names the frame and gives it a line), made with secret
 * mode dropped, its globals holding only the interpreter's builtins. */
static PyObject *
make_placeholder(void)
{
    PyInterpreterState *interp = _PyInterpreterState_GET();
#if _Py_SECRET_HEAP
    int mode = _PySecret_tls.mode;
    _PySecret_tls.mode = 0;
#endif
    PyObject *func = NULL, *globals = NULL;
    PyCodeObject *code = PyCode_NewEmpty("<cleared by secret.do()>",
                                         "cleared", 1);
    if (code == NULL) {
        goto done;
    }
    globals = PyDict_New();
    if (globals == NULL
        || PyDict_SetItemString(globals, "__builtins__",
                                interp->builtins) < 0)
    {
        goto done;
    }
    func = PyFunction_New((PyObject *)code, globals);
done:
    Py_XDECREF(globals);
    Py_XDECREF(code);
#if _Py_SECRET_HEAP
    _PySecret_tls.mode = mode;
#endif
    return func;
}

static void
read_freeze_code(void)
{
    const char *source = "-X secret_freeze_code";
    const char *text = NULL;
    PyObject *xopts = PySys_GetXOptions();      /* borrowed */
    PyObject *v = xopts ? PyDict_GetItemString(xopts, "secret_freeze_code")
                        : NULL;
    if (v != NULL) {
        text = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : "";
        if (text == NULL) {
            PyErr_Clear();
            text = "";
        }
    }
    else {
        source = "PYTHONSECRETFREEZECODE";
        text = _Py_GetEnv(_Py_GetConfig()->use_environment,
                          "PYTHONSECRETFREEZECODE");
    }
    if (text == NULL) {
        return;
    }
    if ((text[0] == '\0' && v != NULL) || strcmp(text, "1") == 0) {
        _PySecret_freeze_code = 1;
    }
    else if (strcmp(text, "0") == 0 || text[0] == '\0') {
        _PySecret_freeze_code = 0;
    }
    else {
        PyOS_snprintf(freeze_code_error, sizeof(freeze_code_error),
                      "%s=%.60s: use 1 (or no value with -X) to freeze the "
                      "adaptive state of code made before do(), 0 not to",
                      source, text);
    }
}

static int
secret_exec(PyObject *module)
{
    secret_state *st = PyModule_GetState(module);
    read_freeze_code();
    st->placeholder = make_placeholder();
    if (st->placeholder == NULL) {
        return -1;
    }
    st->async_call_type = PyType_FromModuleAndSpec(module, &async_call_spec,
                                                   NULL);
    if (st->async_call_type == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, (PyTypeObject *)st->async_call_type) < 0) {
        return -1;
    }
#if _Py_SECRET_HEAP
    st->gl_key = PyUnicode_InternFromString("_secret.greenlet_tracer");
    st->gl_modname = PyUnicode_InternFromString("greenlet._greenlet");
    if (st->gl_key == NULL || st->gl_modname == NULL) {
        return -1;
    }
    st->gl_tracer_type = PyType_FromModuleAndSpec(module, &gl_tracer_spec,
                                                  NULL);
    if (st->gl_tracer_type == NULL) {
        return -1;
    }
    st->gl_modules_seen = -1;
    PyObject *modules = _PyInterpreterState_GET()->imports.modules;
    PyObject *glm = modules != NULL
                    ? PyDict_GetItemString(modules, "greenlet._greenlet")
                    : NULL;
    if (glm != NULL && PyModule_Check(glm) && gl_hook(glm) < 0) {
        return -1;
    }
    int wid = modules != NULL && PyDict_CheckExact(modules)
              ? PyDict_AddWatcher(gl_modules_watch) : -1;
    if (wid >= 0 && PyDict_Watch(wid, modules) == 0) {
        /* One lookup at the first do(), then after additions only. */
        st->gl_modules_seen =
            _Py_atomic_load_ssize_relaxed(&gl_modules_changes) - 1;
        if (st->gl_modules_seen < 0) {
            st->gl_modules_seen = PY_SSIZE_T_MAX;
        }
    }
    PyErr_Clear();
#endif
    return 0;
}

static int
secret_traverse(PyObject *module, visitproc visit, void *arg)
{
    secret_state *st = PyModule_GetState(module);
    if (st != NULL) {
        Py_VISIT(st->placeholder);
        Py_VISIT(st->async_call_type);
        Py_VISIT(st->gl_tracer_type);
        Py_VISIT(st->gl_getcurrent);
        Py_VISIT(st->gl_gettrace);
        Py_VISIT(st->gl_settrace);
    }
    return 0;
}

static int
secret_clear(PyObject *module)
{
    secret_state *st = PyModule_GetState(module);
    if (st != NULL) {
        Py_CLEAR(st->placeholder);
        Py_CLEAR(st->async_call_type);
        Py_CLEAR(st->gl_tracer_type);
        Py_CLEAR(st->gl_key);
        Py_CLEAR(st->gl_modname);
        Py_CLEAR(st->gl_getcurrent);
        Py_CLEAR(st->gl_gettrace);
        Py_CLEAR(st->gl_settrace);
    }
    return 0;
}

static void
secret_free(void *module)
{
    (void)secret_clear((PyObject *)module);
}

static PyModuleDef_Slot secret_slots[] = {
    {Py_mod_exec, secret_exec},
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL}
};

PyDoc_STRVAR(secret_module_doc,
"C core of the secret package (runtimesecret experiment); use `secret`.");

static struct PyModuleDef secret_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_secret",
    .m_doc = secret_module_doc,
    .m_size = sizeof(secret_state),
    .m_methods = secret_methods,
    .m_slots = secret_slots,
    .m_traverse = secret_traverse,
    .m_clear = secret_clear,
    .m_free = secret_free,
};

PyMODINIT_FUNC
PyInit__secret(void)
{
    return PyModuleDef_Init(&secret_module);
}
