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
#include "pycore_interp.h"        // PyInterpreterState.gc
#include "pycore_pyerrors.h"      // _PyErr_FormatFromCause(),
                                  // _PyException_AddNote()
#include "pycore_pystate.h"       // _PyThreadState_GET()

#include "secret_core.h"

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
    /* §3.4/§3.5: buffered and text I/O objects (patch 0016) */
    {"io_buffers", 1, 0},
    /* §2: an exception leaving do() holds no frame of func */
    {"exception_frames", 1, 0},
    /* §3.4: lru_cache, re and urllib.parse caches are not filled in secret
     * mode (patches 0020, 0021) */
    {"caches", 1, 0},
    /* §3.4/§3.5: the adaptive state of code made before do() does not
     * change in secret mode (patch 0025): only with -X secret_freeze_code,
     * see freeze_code */
    {"code_state", 1, 0},
};

/* -X secret_freeze_code[=1|0] or PYTHONSECRETFREEZECODE=1|0 (patch 0025):
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
} secret_state;

/* When do() began, for the exception that leaves it (see do_epoch). */
typedef struct {
    PyObject *marker;       /* NULL: cannot tell */
    uint64_t unfreezes;
    uint64_t reorders;
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

/* func returned a coroutine, generator or async generator (res, consumed):
 * its body would run later, outside secret mode. Close it and raise
 * TypeError; returns NULL. */
static SECRET_COLD PyObject *
refuse_deferred(PyObject *func, PyObject *res)
{
    const char *kind = deferred_kind(res);
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
            "would run outside secret mode; call secret.do() on "
            "synchronous code inside it instead",
            func, kind);
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
 * oldest generation (Python/gc.c counts its calls, patch 0013). */
uint64_t _PySecret_gc_unfreezes;
/* Exit collections that moved objects between generations (youngen_tail):
 * the lists' order no longer says what came first (see do_epoch). */
static uint64_t gc_reorders;

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
        /* The last object that a collection cannot untrack (it does so to
         * tuples and dicts that hold no GC object) and that cannot move
         * (an immortal one goes to the permanent generation). */
        PyGC_Head *old = &gc->generations[NUM_GENERATIONS - 1].head;
        PyGC_Head *p = _PyGCHead_PREV(old);
        for (int i = 0; p != old; p = _PyGCHead_PREV(p), i++) {
            PyObject *op = _Py_FROM_GC(p);
            if (!PyTuple_CheckExact(op) && !PyDict_CheckExact(op)
                && !_Py_IsImmortal(op))
            {
                g->marker = Py_NewRef(op);
                break;
            }
            if (i == 4096) {       /* none near the end: give up */
                g->has_marker = 0;
                break;
            }
        }
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
    gc_reorders++;
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
 * _PySecret_CollectDeferred() (patch 0013), which collects in secret mode
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

static void
collect_exit_garbage(PyThreadState *tstate, exit_gc *g)
{
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
        }
    }
    Py_CLEAR(g->marker);
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
 * For the others the collector's lists tell: the collector only appends to
 * them (a new object at the end of the youngest generation, survivors at
 * the end of the next one, in their order), so the objects that follow an
 * object, reading the oldest generation, then the younger ones, were
 * tracked after it. do() tracks a marker of its own at entry (an empty
 * list, outside the secret heap): what follows it at the exit was tracked
 * during do(). A traceback entry and an exception are tracked when they are
 * made, a frame object when its frame finishes (take_ownership()). Where the
 * lists cannot tell (do() entered during a collection, gc.freeze() or
 * gc.unfreeze() meanwhile, or an exit collection that moved objects), all
 * counts as made during do(), as before this test existed. */
static void
epoch_start(PyThreadState *tstate, do_epoch *e)
{
    e->marker = NULL;
#if _Py_SECRET_HEAP
    if (_Py_atomic_load_int_relaxed(&tstate->interp->gc.collecting)) {
        return;                 /* the lists are being rebuilt */
    }
    e->unfreezes = _Py_atomic_load_uint64_relaxed(&_PySecret_gc_unfreezes);
    e->reorders = gc_reorders;
    int mode = _PySecret_tls.mode;
    _PySecret_tls.mode = 0;
    e->marker = PyList_New(0);  /* tracked: at the end of generation 0 */
    _PySecret_tls.mode = mode;
    if (e->marker == NULL) {
        PyErr_Clear();
    }
#endif
}

static void
epoch_end(do_epoch *e)
{
    Py_CLEAR(e->marker);
}

/* The exceptions, traceback entries and frames tracked since the marker
 * that are not secret blocks (those are known to be do()'s); NULL if the
 * lists cannot tell. */
static _Py_hashtable_t *
made_during_set(PyThreadState *tstate, do_epoch *e)
{
#if _Py_SECRET_HEAP
    struct _gc_runtime_state *gc = &tstate->interp->gc;
    if (e == NULL || e->marker == NULL
        || !_PyObject_GC_IS_TRACKED(e->marker)
        || _Py_atomic_load_int_relaxed(&gc->collecting)
        || _Py_atomic_load_uint64_relaxed(&_PySecret_gc_unfreezes)
           != e->unfreezes
        || gc_reorders != e->reorders)
    {
        return NULL;
    }
    _Py_hashtable_t *set = pointer_set(NULL);
    if (set == NULL) {
        return NULL;
    }
    PyGC_Head *p = _PyGCHead_NEXT(_Py_AS_GC(e->marker));
    for (;;) {
        int head = -1;
        for (int i = 0; i < NUM_GENERATIONS; i++) {
            if (p == &gc->generations[i].head) {
                head = i;
            }
        }
        if (head == 0) {
            return set;                         /* the end */
        }
        if (head > 0) {
            /* The end of an older generation: the next one follows. */
            p = _PyGCHead_NEXT(&gc->generations[head - 1].head);
            continue;
        }
        if (p == &gc->permanent_generation.head) {
            break;                              /* frozen meanwhile */
        }
        PyObject *op = _Py_FROM_GC(p);
        if (!_PySecret_IsSecret(op)
            && (PyTraceBack_Check(op) || PyFrame_Check(op)
                || PyExceptionInstance_Check(op))
            && _Py_hashtable_set(set, op, (void *)1) < 0)
        {
            break;
        }
        p = _PyGCHead_NEXT(p);
    }
    _Py_hashtable_destroy(set);
#endif
    return NULL;
}

typedef struct {
    PyObject *exc;
    int via_func;       /* reached through an exception that is func's */
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
    _Py_hashtable_t *during;    /* made_during_set(), built when needed */
    int during_built;
    PyObject **swap;        /* cleared frames, for swap_frame() at the end */
    Py_ssize_t nswap, capswap;
    PyObject **notes;       /* (exc, tb, keep): notes to write at the end */
    Py_ssize_t nnotes, capnotes;
    PyObject *placeholder;  /* borrowed; NULL: none */
} exc_walk;

/* Made during this do() (see do_epoch)? When the lists cannot tell: yes. */
static int
made_during(exc_walk *w, PyObject *op)
{
    if (_PySecret_IsSecret(op)) {
        return 1;
    }
    if (!w->during_built) {
        w->during_built = 1;
        w->during = made_during_set(w->tstate, w->epoch);
    }
    return w->during == NULL || _Py_hashtable_get(w->during, op) != NULL;
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

/* Is the traceback entry tb func's (to be dropped)? via_func: see
 * FRAMES_DETACHED. An entry made in secret mode (a secret block) is, unless
 * its frame runs on this thread (the caller's, or an enclosing do()'s
 * func's): that is where the caller's history starts. An entry made before
 * do() is not. */
static int
entry_is_funcs(exc_walk *w, PyTracebackObject *tb, int via_func,
               origin_memo *memo)
{
    PyFrameObject *f = tb->tb_frame;
    if (frame_running(f) && on_this_stack(w->tstate, f->f_frame)) {
        return 0;
    }
    if (_PySecret_IsSecret(tb)) {
        return 1;
    }
    if (!made_during(w, (PyObject *)tb)) {
        return 0;
    }
    int origin = frames_origin(w->tstate, f, memo);
    return origin == FRAMES_FUNC || (origin == FRAMES_DETACHED && via_func);
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
walk_push(exc_walk *w, PyObject *exc, int via_func)
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
    w->n++;
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

/* Clear a finished frame (frame.clear(): its locals and value stack), and
 * keep it for swap_frame(), which runs once every note is written (or now,
 * if there is no memory to keep it). */
static void
clear_frame(exc_walk *w, PyFrameObject *f)
{
    if (!frame_finished(f)) {
        return;
    }
    (void)PyFrame_Type.tp_clear((PyObject *)f);
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

/* What the frames on a dropped frame's f_back chain are (see above). */
enum { CHAIN_ALL = 2, CHAIN_SECRET = 3 };

static uintptr_t
chain_decision(exc_walk *w, PyFrameObject *f)
{
    return (w->seen != NULL ? (uintptr_t)_Py_hashtable_get(w->seen, f) : 0);
}

/* Clear the frame of a dropped traceback entry if it finished during do(),
 * and the frames its f_back chain keeps alive: all the finished ones up to
 * the first running frame if that runs on this thread, else the secret
 * ones. Two passes over the chain, the first to find where and how it ends
 * (or a part already done), without memory; clearing changes no f_back,
 * and the entry's frame, held by the caller, holds the chain. */
static void
clear_dropped_frame(exc_walk *w, PyFrameObject *f)
{
    if (!frame_finished(f) || !made_during(w, (PyObject *)f)) {
        return;     /* running, suspended, or from before do(): not func's */
    }
    clear_frame(w, f);
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
    for (g = f->f_back; g != end; g = g->f_back) {
        if (walk_mark(w, (PyObject *)g, decision) && w->lost) {
            return;
        }
        if (decision == CHAIN_ALL || _PySecret_IsSecret(g)) {
            clear_frame(w, g);
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

/* Drop the entries of exc's traceback tb (a new reference, consumed) from
 * its start up to the first that is not func's, clear their frames, and
 * name them in a note. */
static void
strip_traceback(exc_walk *w, PyObject *exc, PyTracebackObject *tb)
{
    PyTracebackObject *keep = tb;
    origin_memo memo = {NULL, FRAMES_DETACHED};
    while (keep != NULL && entry_is_funcs(w, keep, 1, &memo)) {
        keep = keep->tb_next;
    }
    if (keep == tb) {
        Py_DECREF(tb);
        return;
    }
    /* The note first, while no finalizer has run: the entries are as the
     * exception left them. If memory is short, again after the clearing
     * (the code objects are swapped only at the end of the walk). */
    Py_XINCREF(keep);
    PyObject *note = dropped_frames_note(tb, keep);
    if (note == NULL) {
        PyErr_Clear();
    }
    /* Unlink: nothing reaches the frames through exc any more. */
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
            else if (made_during(w, (PyObject *)t->tb_frame)) {
                clear_frame(w, t->tb_frame);
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
        if (defer_note(w, exc, tb, keep)) {
            return;
        }
    }
    add_note(exc, note);
    Py_XDECREF(keep);
    Py_DECREF(tb);
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
        func_owned = entry_is_funcs(w, (PyTracebackObject *)tb, via_func,
                                    NULL);
    }
    else {
        /* Never raised: its parent's, if made during do(). */
        func_owned = via_func && made_during(w, exc);
    }
    if (tb != NULL) {
        if (func_owned) {
            strip_traceback(w, exc, (PyTracebackObject *)tb);
        }
        else {
            Py_DECREF(tb);
        }
    }
    PyObject *link = PyException_GetCause(exc);
    walk_push(w, link, func_owned);
    Py_XDECREF(link);
    link = PyException_GetContext(exc);
    walk_push(w, link, func_owned);
    Py_XDECREF(link);
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
static SECRET_COLD void
strip_leaving_exception(PyThreadState *tstate, PyObject *module,
                        do_epoch *epoch)
{
    PyObject *exc = _PyErr_GetRaisedException(tstate);
    if (exc == NULL) {
        return;
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
            walk_exception(&w, it.exc, 0, it.via_func);
        }
        Py_DECREF(it.exc);
    }
    while (w.n > 0) {
        Py_DECREF(w.items[--w.n].exc);
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
    if (w.during != NULL) {
        _Py_hashtable_destroy(w.during);
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
}

PyDoc_STRVAR(secret_do_doc,
"do($module, func, /, *args, **kwargs)\n"
"--\n"
"\n"
"Call func(*args, **kwargs) with the calling thread in secret mode.\n"
"\n"
"Returns what func returns and raises what it raises. On every way out,\n"
"the memory func used is erased as far as this build supports (see\n"
"protections()). func must do its work before it returns: a coroutine,\n"
"generator or async generator result is closed and TypeError is raised.");

static PyObject *
secret_do(PyObject *module, PyObject *const *args, Py_ssize_t nargsf,
          PyObject *kwnames)
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
    int outermost = ((_PyThreadStateImpl *)tstate)->secret.depth == 0;
    exit_gc gcs;
    if (outermost) {
        exit_gc_start(tstate, &gcs);
    }
#endif
    do_epoch epoch;
    epoch_start(tstate, &epoch);
    _PySecretCall call;
    int entered = _PySecret_ENTER(tstate, &call);
    PyObject *res = PyObject_Vectorcall(func, args + 1, nargs - 1, kwnames);
    if (res == NULL) {
        if (entered) {
            /* First: the frames' locals are freed before the collection,
             * and what freeing them leaves is erased with the rest. */
            strip_leaving_exception(tstate, module, &epoch);
        }
    }
    else if (deferred_kind(res) != NULL) {
        res = refuse_deferred(func, res);
        if (entered) {
            /* its cause is func's */
            strip_leaving_exception(tstate, module, &epoch);
        }
    }
    epoch_end(&epoch);
#if _Py_SECRET_HEAP
    if (outermost) {
        if (entered) {
            collect_exit_garbage(tstate, &gcs);
        }
        else {
            Py_CLEAR(gcs.marker);
        }
    }
#endif
    if (entered) {
        /* Last: erases the C stack below this frame and the registers. */
        _PySecret_LEAVE(tstate, &call);
    }
    return res;
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
"(failed allocations), trims, decommits, headroom_blocks,\n"
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

static PyMethodDef secret_methods[] = {
    {"do", _PyCFunction_CAST(secret_do), METH_FASTCALL | METH_KEYWORDS,
     secret_do_doc},
    {"enabled", secret_enabled, METH_NOARGS, secret_enabled_doc},
    {"supported", secret_supported, METH_NOARGS, secret_supported_doc},
    {"protections", secret_protections, METH_NOARGS, secret_protections_doc},
    {"heap_info", secret_heap_info, METH_NOARGS, secret_heap_info_doc},
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
    return st->placeholder == NULL ? -1 : 0;
}

static int
secret_traverse(PyObject *module, visitproc visit, void *arg)
{
    secret_state *st = PyModule_GetState(module);
    if (st != NULL) {
        Py_VISIT(st->placeholder);
    }
    return 0;
}

static int
secret_clear(PyObject *module)
{
    secret_state *st = PyModule_GetState(module);
    if (st != NULL) {
        Py_CLEAR(st->placeholder);
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
