/* runtimesecret experiment: secret mode, its erasure and the secret heap.
 *
 * The runtime is in Python/secret_core.c (the mode, the frame stack,
 * threads), Python/secret_stack.c (the C stack, signal stacks),
 * Python/secret_heap.c (the secret heap) and Python/secret_amd64.S,
 * secret_arm64.S (registers); the secret module (Modules/_secret/) is a
 * thin layer over it. This header is all that upstream files see of it:
 * they call it at hook points (patches/), under Py_EXPERIMENT_RUNTIMESECRET
 * or _Py_SECRET_HEAP. Without the experiment it declares nothing and its
 * tests are the constant 0.
 *
 * It needs nothing but Python.h: pycore_freelist.h includes it, inside
 * pycore_tstate.h's own includes, so it cannot use _PyThreadStateImpl.
 */
#ifndef Py_INTERNAL_SECRET_H
#define Py_INTERNAL_SECRET_H
#ifdef __cplusplus
extern "C" {
#endif

#ifndef Py_BUILD_CORE
#  error "this header requires Py_BUILD_CORE define"
#endif

#ifdef Py_EXPERIMENT_RUNTIMESECRET

/* Whether this build erases (spec §6): 0 means fallback mode, where
 * secret.do() only calls its function and secret mode is never entered. */
#ifdef Py_RUNTIMESECRET_SUPPORTED
#  define _PySecret_SUPPORTED 1
#else
#  define _PySecret_SUPPORTED 0
#endif


/* --- The allocators' tests (spec §3.4, §4) --------------------------------
 *
 * Two constant-time tests: is this thread in secret mode (a thread-local
 * int), and is this block secret (an address range test). Both are 0 until
 * the first secret.do() reserves the heap. */

#if defined(Py_RUNTIMESECRET_SUPPORTED) && !defined(Py_GIL_DISABLED)
#  define _Py_SECRET_HEAP 1

struct _PySecretRange {
    uintptr_t base;     /* 1 << 63 until the heap is reserved */
    uintptr_t size;     /* 0 until the heap is reserved */
};
PyAPI_DATA(struct _PySecretRange) _PySecret_range;

typedef struct {
    int mode;           /* > 0: this OS thread allocates secretly */
    uint64_t gc_links;  /* secret GC objects linked by this thread */
    /* The last MemoryError a failed secret allocation made on this thread
     * (compared, never dereferenced), NULL since its last do() entry: the
     * one test exception paths pay for the heap's reserve. */
    const void *heap_error;
    /* A thread that inherited secret mode: erase its C stack below each
     * idle point (_PySecret_IDLE). */
    int idle;
} _PySecretTLS;

/* For shared extension modules (a thread-local is not exported). */
PyAPI_FUNC(int) _PySecret_GetMode(void);

#  if defined(HAVE_THREAD_LOCAL) && !defined(Py_BUILD_CORE_MODULE)
/* The core reads and writes the thread-local; a shared module calls. */
#    define _PySecret_TLS_VISIBLE 1
/* Without --enable-shared the core is linked into the executable, which
 * defines the variable: its thread-pointer offset is a link-time constant,
 * and the mode test is one compare with a %fs/tpidr-relative operand
 * instead of a load of the offset first (the initial-exec default). */
#    if !defined(Py_ENABLE_SHARED) && defined(__GNUC__)
#      define _PySecret_TLS_MODEL __attribute__((tls_model("local-exec")))
#    else
#      define _PySecret_TLS_MODEL
#    endif
extern _Py_thread_local _PySecretTLS _PySecret_tls _PySecret_TLS_MODEL;
#    define _PySecret_MODE() (_PySecret_tls.mode)
#    define _PySecret_HEAP_ERROR() (_PySecret_tls.heap_error != NULL)
#  else
#    define _PySecret_MODE() _PySecret_GetMode()
#    define _PySecret_HEAP_ERROR() 1
#  endif

/* Does this thread allocate in the secret heap? */
static inline int
_PySecret_InMode(void)
{
    return __builtin_expect(_PySecret_MODE() > 0, 0);
}

/* Is p a block of the secret heap? base is published before size, but a
 * thread may see them in either order: with the initial base (above every
 * user-space address, and not 0), no pointer, NULL included, is secret
 * under a new size. */
static inline int
_PySecret_IsSecret(const void *p)
{
    return __builtin_expect(
        (uintptr_t)p - _PySecret_range.base < _PySecret_range.size, 0);
}

#  ifdef _PySecret_TLS_VISIBLE
/* For a moment, this thread allocates in ordinary memory (a MemoryError
 * that says the heap is full, Objects/exceptions.c) or in the secret heap
 * (what belongs to a secret object but is made outside do(): a secret
 * string's UTF-8 cache, secret text flushed later). Each returns what
 * _PySecret_RestoreMode() puts back. */
static inline int
_PySecret_SuspendMode(void)
{
    int saved = _PySecret_tls.mode;
    _PySecret_tls.mode = 0;
    return saved;
}

static inline int
_PySecret_ForceMode(void)
{
    int saved = _PySecret_tls.mode;
    _PySecret_tls.mode = saved + 1;
    return saved;
}

static inline void
_PySecret_RestoreMode(int saved)
{
    _PySecret_tls.mode = saved;
}

/* Objects/genobject.c, Python/bytecodes.c (spec §2.1): a generator,
 * coroutine or async generator made in secret mode (a secret block) runs
 * each step in secret mode, whoever resumes it. Resumed outside secret
 * mode, its step must go through genobject.c, which enters and leaves
 * around it; the eval loop does not run such a frame inline. (The name
 * ends in "Check": the cases generator then knows it escapes nowhere.) */
#  define _PySecret_GenStepCheck(gen) \
    (_PySecret_IsSecret(gen) && _PySecret_tls.mode <= 0)

/* Python/gc.c. _PyObject_GC_Link(): secret.do() collects at its exit only
 * if func made GC objects, which this counts. */
static inline void
_PySecret_CountGCLink(const void *op)
{
    if (_PySecret_IsSecret(op)) {
        _PySecret_tls.gc_links++;
    }
}

/* _PyGC_Unfreeze(): objects that were younger now follow older ones in the
 * oldest generation (the exit collection relies on that order). */
extern uint64_t _PySecret_gc_unfreezes;

static inline void
_PySecret_CountUnfreeze(void)
{
    _Py_atomic_add_uint64(&_PySecret_gc_unfreezes, 1);
}
#  endif

/* At the end of a collection (Python/gc.c): collect what a secret.do()
 * that returned during it could not (collections do not nest). */
extern void _PySecret_CollectDeferred(PyThreadState *tstate);
/* Before a collection, gc.freeze() or gc.unfreeze() reorders the
 * collector's lists (Python/gc.c), whose order tells each running
 * secret.do() what was made during it; gen0_emptied: generation 0 is
 * left empty. */
extern void _PySecret_GCWillReorder(PyInterpreterState *interp,
                                    int gen0_emptied);

/* The secret heap (Python/secret_heap.c). NULL on exhaustion: never falls
 * back to ordinary memory. */
PyAPI_FUNC(void *) _PySecretHeap_Malloc(size_t n);
PyAPI_FUNC(void *) _PySecretHeap_Calloc(size_t nelem, size_t elsize);
/* p must be secret. */
PyAPI_FUNC(void *) _PySecretHeap_Realloc(void *p, size_t n);
PyAPI_FUNC(void) _PySecretHeap_Free(void *p);
/* Move the non-secret block p (old_size usable bytes) into a new secret
 * block of n bytes; zero p and free it with free_old. NULL (p untouched)
 * on exhaustion. */
PyAPI_FUNC(void *) _PySecretHeap_Adopt(void *p, size_t old_size, size_t n,
                                       void (*free_old)(void *));

/* Exhaustion: the heap's own MemoryError and its reserve. */

/* 1 if a secret allocation of this thread failed and none succeeded since
 * (outside the reserve), with PyErr_NoMemory()'s message (why, the heap's
 * size and how to change it) written to buf. Outside secret mode the call
 * forgets the failure; in it, the outermost do()'s exit does. */
extern int _PySecretHeap_TakeFailure(char *buf, size_t len);
/* 1 if a secret allocation of this thread failed and no MemoryError said
 * so yet (in or out of do()). */
extern int _PySecretHeap_FailurePending(void);
/* While set (it returns the previous value), this thread's secret
 * allocations may go a little beyond the heap's size: for the MemoryError
 * that says it is full. */
extern int _PySecretHeap_SetReserve(int on);
/* exc is the MemoryError a failed secret allocation made: while it unwinds,
 * its traceback entries and frame objects come from the reserve. */
extern void _PySecretHeap_NoteError(PyObject *exc);
/* Before a traceback entry or frame object is made for the exception exc
 * being raised (ceval's error path, take_ownership): turns the reserve on
 * if exc is one the heap's failure made; returns the previous setting, for
 * _PySecretHeap_SetReserve(). */
extern int _PySecretHeap_UnwindReserve(PyObject *exc);
/* The int for an exception handler's lasti that ceval could not allocate:
 * in secret mode never NULL (from the heap's reserve; the MemoryError stays
 * raised), so that unwinding cannot retry the same handler forever. */
extern PyObject *_PySecretHeap_HandlerIndex(int lasti);
/* In secret mode, ceval's unwinding found a handler: Python code handles
 * the exception, so a failed secret allocation still pending is not the
 * cause of a later MemoryError. */
extern void _PySecretHeap_Handled(void);

/* mimalloc's OS primitives for the secret range (its arena commits only
 * what it uses): charge and lock, or unlock, discard and uncharge.
 * 0 or an errno value. */
extern int _PySecretHeap_OsCommit(void *start, size_t size);
extern int _PySecretHeap_OsDecommit(void *start, size_t size);
#endif  /* Py_RUNTIMESECRET_SUPPORTED && !Py_GIL_DISABLED */

/* -X secret_freeze_code (Python/ceval_macros.h): in secret mode, code made
 * outside it keeps its adaptive state. */
extern int _PySecret_freeze_code;


/* --- secret.do() (spec §2, §3.1-§3.3) ----------------------------------- */

/* One secret.do() call, kept in do's own C frame. */
typedef struct {
    char *top;          /* do's stack pointer: func's frames lie below */
    int frame_window;   /* this call lowered the frame stack's limit */
} _PySecretCall;

/* Assembly (secret_amd64.S, secret_arm64.S): leaves that use no stack, so
 * they may zero the stack right below their caller's frame. */
extern char *_PySecret_StackTop(void);
/* vector as for _PySecret_EraseStack: x86-64 scans 32 bytes a test with
 * AVX, never loading what it scans into a register. */
extern char *_PySecret_FirstNonzero(char *p, char *end, int vector);
extern void _PySecret_EraseStack(void *low, int vector);
/* The vector register file to erase, detected once (see secret_core.c). */
extern int _PySecret_vector;

/* Is the thread of tstate in secret mode: inside secret.do() at any depth,
 * or started by a thread that was? */
extern int _PySecret_IsEnabled(PyThreadState *tstate);

/* Enter secret mode for one secret.do() call: returns 1 if entered, 0 in
 * fallback mode (then there is nothing to leave). Never fails. */
extern int _PySecret_Enter(PyThreadState *tstate, _PySecretCall *call);

/* Leave it: erase the interpreter frame stack, zero what func left on the
 * C stack deeper than a window below do's frame, and return the lowest
 * address of that window that still needs zeroing. Keeps a pending
 * exception intact, never runs Python code. */
extern void *_PySecret_Leave(PyThreadState *tstate, _PySecretCall *call);

#if _PySecret_SUPPORTED
/* These two must be expanded in secret.do()'s own frame: the stack below
 * that frame is what they zero. */
#  define _PySecret_ENTER(tstate, call) \
    ((call)->top = _PySecret_StackTop(), _PySecret_Enter((tstate), (call)))
#  define _PySecret_LEAVE(tstate, call) \
    do { \
        /* Registers first: a signal frame pushed from here on holds \
           nothing of func's. */ \
        _PySecret_EraseStack((void *)UINTPTR_MAX, _PySecret_vector); \
        void *_low = _PySecret_Leave((tstate), (call)); \
        _PySecret_EraseStack(_low, _PySecret_vector); \
        /* Last: a signal that arrived during the erasure may have put \
           a frame there. */ \
        _PySecretStack_EraseAltStack(); \
    } while (0)
#else
#  define _PySecret_ENTER(tstate, call) ((void)(tstate), (void)(call), 0)
#  define _PySecret_LEAVE(tstate, call) ((void)0)
#endif

/* Zero n bytes at p with stores the compiler cannot drop. */
extern void _PySecret_Zero(void *p, size_t n);

/* The secret heap's part of secret.do() and of the secret module. */

/* Reserve it on first use; 0, or -1 with MemoryError (ValueError for a
 * setting that is not valid, RuntimeError for a heap that must be locked
 * and cannot be, or what a warnings filter raised) set. */
extern int _PySecretHeap_EnsureReserved(void);
/* 1 if every secret block is kept out of core dumps (the whole reserved
 * heap is MADV_DONTDUMP). */
extern int _PySecretHeap_NoCoreDump(void);
/* 1 if every secret block is kept out of swap: all the heap committed was
 * locked, and all it can commit will be (RLIMIT_MEMLOCK covers its size,
 * or -X secret_require_lock refuses unlocked memory). */
extern int _PySecretHeap_NoSwap(void);
/* At thread end (any thread): leave secret mode for good (the thread
 * holds nothing of the secret heap). */
extern void _PySecretHeap_ThreadDone(void);
/* secret.heap_info(): a new dict. */
extern PyObject *_PySecretHeap_Info(void);
/* At each do() entry and the outermost do()'s exit: forget a failed
 * secret allocation (see _PySecretHeap_TakeFailure). */
extern void _PySecretHeap_ForgetFailure(void);

/* Native memory (secret_native.c): 1 if the C library's allocator
 * functions the process binds to are the interpreter's, so that native
 * code's allocations in secret mode are secret; else 0 and why in buf. */
extern int _PySecretNative_Check(char *buf, size_t len);
/* The object whose allocator serves ordinary memory (glibc's libc.so.6,
 * or a preloaded one). */
extern const char *_PySecretNative_NextAllocator(void);
/* PyOS_StdioReadline() (Parser/myreadline.c) read a line from fp in
 * secret mode: zero what the C library's buffer of fp holds of it. */
extern void _PySecret_StdioConsumed(FILE *fp);

/* The C stack (secret_stack.c). In a fork() child: how many other threads
 * were inside do() at the fork (their stacks were zeroed below it; their
 * objects stay, heap.md). */
extern int _PySecretStack_ForkLost(void);
#if _PySecret_SUPPORTED
/* Internal to the core (secret_core.c). */
extern void _PySecretStack_Enter(char *top, int outermost);
extern char *_PySecretStack_Leave(char *top, int outermost);
/* Zero what signal frames left on the thread's alternate stack(s);
 * _PySecret_LEAVE calls it last. */
extern void _PySecretStack_EraseAltStack(void);
extern char *_PySecretStack_ThreadExit(void);
extern char *_PySecretStack_Idle(char *top);
extern void _PySecretStack_ThreadStart(void);
#endif


/* --- Threads (Modules/_threadmodule.c; spec §2, §3.1, §3.2) ------------- */

/* In the parent, when the child's thread state is made: a thread created in
 * secret mode inherits it for its whole life (spec §2). */
extern void _PySecret_ThreadCreated(PyThreadState *parent,
                                    PyThreadState *child);
/* In the new thread, once it holds its thread state, before it runs code. */
extern void _PySecret_ThreadStart(PyThreadState *tstate);
/* In an ending thread that was secret, after its thread state is deleted:
 * zero its stack below the caller's frame, except the part right below,
 * whose lowest address is returned (NULL if the thread was not secret). */
extern void *_PySecret_ThreadExitPrepare(void);

/* The last thing a thread does; expanded in the thread's outermost frame
 * (thread_run), so the whole stack the thread used lies below it. */
#if _PySecret_SUPPORTED
#  define _PySecret_THREAD_EXIT() \
    do { \
        void *_low = _PySecret_ThreadExitPrepare(); \
        if (_low != NULL) { \
            _PySecret_EraseStack(_low, _PySecret_vector); \
        } \
    } while (0)
#else
#  define _PySecret_THREAD_EXIT() ((void)0)
#endif


/* --- Idle points (Python/parking_lot.c, Python/thread.c; spec §2, §3.2) --
 *
 * A thread that inherited secret mode lives on after the do() that started
 * it (a pool's worker), so its end comes late. Each time it is about to
 * block on a lock, a condition, an event or a queue (a wait that parks, or
 * a PyThread lock's blocking acquire), what its finished work left on the C
 * stack below the waiting frame, in the registers and on the alternate
 * signal stack is erased first. Any other thread pays one test of a
 * thread-local, and only on the path that blocks. */

/* Called in the frame that waits: the stack below it is what it zeroes. */
extern void _PySecret_Idle(void);

#if defined(_PySecret_TLS_VISIBLE)
#  define _PySecret_IDLE() \
    do { \
        if (__builtin_expect(_PySecret_tls.idle, 0)) { \
            _PySecret_Idle(); \
        } \
    } while (0)
#endif


/* --- faulthandler (Modules/faulthandler.c; spec §3.2) ------------------- */

/* faulthandler installed or removed the calling thread's alternate signal
 * stack: the cached one is stale. */
extern void _PySecret_AltStackChanged(void);
/* A SIGSEGV: 1 if it was a thread going deeper into the reserve below its
 * stack's window, now made room for (the access is retried), else 0.
 * faulthandler's SIGSEGV handler asks first. Signal-safe. info is the
 * handler's siginfo_t * (void * here, so that every core file need not
 * see <signal.h>). */
extern int _PySecret_StackFault(void *info, void *context);
/* faulthandler installed (1) or removed (0) its SIGSEGV handler. */
extern void _PySecret_FaulthandlerChanged(int enabled);


/* --- The frame stack (Python/pystate.c; spec §3.3) ---------------------- */

/* Before a chunk of the interpreter frame stack is freed: in secret mode
 * its frames are zeroed first. */
#if _PySecret_SUPPORTED
extern void _PySecret_FreeStackChunk(PyThreadState *tstate, void *chunk,
                                     size_t size);
#else
#  define _PySecret_FreeStackChunk(tstate, chunk, size) ((void)0)
#endif

/* push_chunk(), before it takes a new chunk of the frame stack: a do() on
 * this thread may have lowered datastack_limit to a window, so that its
 * exit zeroes only what func can have reached. Widen it: returns the
 * pushed frame's place, or NULL to let push_chunk() take a new chunk. */
extern PyObject **_PySecret_WidenFrameWindow(PyThreadState *tstate,
                                             int size);

#endif  /* Py_EXPERIMENT_RUNTIMESECRET */

/* Without the secret heap (no experiment, fallback mode, free threading)
 * the tests are constant: a hook compiles to what upstream has. */
#ifndef _PySecret_IDLE
#  define _PySecret_IDLE() ((void)0)
#endif

#ifndef _Py_SECRET_HEAP
#  define _Py_SECRET_HEAP 0
#  define _PySecret_InMode() 0
#  define _PySecret_IsSecret(p) ((void)(p), 0)
#endif
#if !defined(_Py_SECRET_HEAP) || !_Py_SECRET_HEAP \
    || !defined(_PySecret_TLS_VISIBLE)
#  undef _PySecret_GenStepCheck
#  define _PySecret_GenStepCheck(gen) ((void)(gen), 0)
#endif


/* --- File objects (Modules/_io/bufferedio.c, textio.c; spec §3.4, §3.5) --
 *
 * Buffered I/O and text I/O call these at the points where a buffer is
 * filled, consumed, flushed or seeked, and where encoded text is pending
 * (patches 0014 and 0027); the rules live here:
 *
 * - In secret mode, a buffer still in ordinary memory moves into the secret
 *   heap before a read or write uses it (_PySecretIO_MustAdopt, _Adopt):
 *   a secret byte never enters ordinary memory there.
 * - A secret buffer zeroes what it no longer needs: the bytes a read
 *   consumed (_PySecretIO_Consumed, at the end of each read), the read data
 *   a reset discards (_Discard), written bytes once flushed or shifted
 *   away (_Zero). So a seek never moves back inside a secret buffer
 *   (_PySecretIO_SeekBackOK): the raw stream serves it.
 * - Text whose encoded form is secret is flushed in secret mode, whenever
 *   the flush comes (_PySecretIO_EnterMode): the joined bytes and the
 *   buffer that takes them are secret too. A text reader without tell()
 *   drops a secret decoded chunk once it is read to its end
 *   (_PySecretIO_ChunkRead).
 *
 * The hooks call the zeroing functions only for a secret buffer, after one
 * address compare (bufferedio.c's SECRET_* macros test it first).
 * Without the secret heap (experiment off, fallback mode) every hook is a
 * constant the compiler drops: the off build is pristine's machine code.
 * Offsets are Py_ssize_t: they index a buffer of buffer_size bytes. */

#if _Py_SECRET_HEAP

/* 1 if a read or write now must first move buffer into the secret heap:
 * in secret mode, with a buffer still in ordinary memory. */
static inline int
_PySecretIO_MustAdopt(const char *buffer)
{
    return _PySecret_InMode() && buffer != NULL
           && !_PySecret_IsSecret(buffer);
}

/* Move *buffer (size bytes from PyMem_Malloc) into the secret heap: its
 * first `used` bytes are copied, the whole old block zeroed (what it held
 * before, too) and freed; nothing of the new one is zeroed yet (*zeroed =
 * 0, see _PySecretIO_Consumed). Called in secret mode, with no other
 * pointer into the buffer in use. 0, or -1 with the heap's MemoryError
 * (the buffer is then unchanged, and the read or write fails: its data
 * never goes to ordinary memory). */
static inline int
_PySecretIO_Adopt(char **buffer, Py_ssize_t *zeroed, Py_ssize_t size,
                  Py_ssize_t used)
{
    char *old = *buffer;
    if (old == NULL || _PySecret_IsSecret(old)) {
        return 0;
    }
    char *buf = PyMem_Malloc(size);     /* secret mode: the secret heap */
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    assert(_PySecret_IsSecret(buf));
    used = Py_MAX(0, Py_MIN(used, size));
    memcpy(buf, old, (size_t)used);
    explicit_bzero(old, (size_t)size);
    PyMem_Free(old);
    *buffer = buf;
    *zeroed = 0;
    return 0;
}

/* The bytes a read consumed, [*zeroed, pos) of a secret read buffer with
 * no write pending: zeroed now, and *zeroed moves to pos. They are never
 * read again (no seek back inside a secret buffer). `reading` says the
 * buffer holds read data and no pending write.
 * Called with or without the buffer's lock (the fast paths of a read run
 * without it), always under the GIL: a thread holding the lock uses the
 * buffer without the GIL only in raw I/O, which fills it at read_end or
 * after a reset, or writes out pending writes (then `reading` is 0):
 * never [*zeroed, pos). */
static inline void
_PySecretIO_Consumed(char *buffer, Py_ssize_t *zeroed, Py_ssize_t pos,
                     int reading)
{
    if (_PySecret_IsSecret(buffer) && reading && pos > *zeroed) {
        explicit_bzero(buffer + *zeroed, (size_t)(pos - *zeroed));
        *zeroed = pos;
    }
}

/* The buffer's read data is discarded (a refill, a seek, a flush): what is
 * left of it, [*zeroed, end), is zeroed, unless writes pending share the
 * buffer (then it stays, secret, until freed). The next fill starts at 0. */
static inline void
_PySecretIO_Discard(char *buffer, Py_ssize_t *zeroed, Py_ssize_t end,
                    int reading)
{
    if (_PySecret_IsSecret(buffer)) {
        if (reading && end > *zeroed) {
            explicit_bzero(buffer + *zeroed, (size_t)(end - *zeroed));
        }
        *zeroed = 0;
    }
}

/* Written bytes no longer needed, [start, end) of a secret buffer. */
static inline void
_PySecretIO_Zero(char *buffer, Py_ssize_t start, Py_ssize_t end)
{
    if (_PySecret_IsSecret(buffer) && end > start) {
        explicit_bzero(buffer + start, (size_t)(end - start));
    }
}

/* 1 if a seek by offset may stay inside the buffer: not backwards in a
 * secret buffer, whose consumed bytes are zeroed. */
static inline int
_PySecretIO_SeekBackOK(const char *buffer, Py_ssize_t offset)
{
    return offset >= 0 || !_PySecret_IsSecret(buffer);
}

#  ifdef _PySecret_TLS_VISIBLE
/* Secret mode for a flush done outside do() on behalf of secret text; the
 * value to give _PySecretIO_RestoreMode(). (_io is built in: the
 * thread-local is the core's.) */
static inline int
_PySecretIO_EnterMode(void)
{
    return _PySecret_ForceMode();
}

static inline void
_PySecretIO_RestoreMode(int mode)
{
    _PySecret_RestoreMode(mode);
}
#  endif

/* A text reader's decoded chunk *chars, of which *used characters are
 * read: once read to its end, a secret chunk is freed (hence zeroed) now
 * instead of at the next read. Not when telling: tell() decodes the
 * snapshot again up to *used. */
static inline void
_PySecretIO_ChunkRead(PyObject **chars, Py_ssize_t *used, int telling)
{
    if (!telling && *chars != NULL && _PySecret_IsSecret(*chars)
        && *used >= PyUnicode_GET_LENGTH(*chars))
    {
        Py_CLEAR(*chars);
        *used = 0;
    }
}

#else   /* !_Py_SECRET_HEAP: nothing to do, no code */

#  define _PySecretIO_MustAdopt(buffer) 0
#  define _PySecretIO_Zero(buffer, start, end) ((void)0)
#  define _PySecretIO_SeekBackOK(buffer, offset) 1
#  define _PySecretIO_ChunkRead(chars, used, telling) ((void)0)

#endif  /* _Py_SECRET_HEAP */

#ifdef __cplusplus
}
#endif
#endif  /* !Py_INTERNAL_SECRET_H */
