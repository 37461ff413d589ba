/* runtimesecret experiment: the core's entry points.
 *
 * Upstream files call these at hook points (patches/); secret.do() uses
 * _PySecret_ENTER and _PySecret_LEAVE. Only compiled when configure
 * --with-experiment=runtimesecret.
 */
#ifndef Py_SECRET_CORE_H
#define Py_SECRET_CORE_H

#ifndef Py_BUILD_CORE
#  error "this header requires Py_BUILD_CORE define"
#endif

#include "pycore_tstate.h"        // _PyThreadStateImpl

#ifdef __cplusplus
extern "C" {
#endif

/* Whether this build erases (spec §6): 0 means fallback mode, where
 * secret.do() only calls its function and secret mode is never entered. */
#ifdef Py_RUNTIMESECRET_SUPPORTED
#  define _PySecret_SUPPORTED 1
#else
#  define _PySecret_SUPPORTED 0
#endif

/* Is the thread of tstate in secret mode: inside secret.do() at any depth,
 * or started by a thread that was? */
static inline int
_PySecret_IsEnabled(PyThreadState *tstate)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    return ts->secret.depth > 0 || ts->secret.inherited;
}

/* One secret.do() call, kept in do's own C frame. */
typedef struct {
    char *top;          /* do's stack pointer: func's frames lie below */
    int frame_window;   /* this call lowered the frame stack's limit */
} _PySecretCall;

/* Assembly (secret_amd64.S, secret_arm64.S): leaves that use no stack, so
 * they may zero the stack right below their caller's frame. */
extern char *_PySecret_StackTop(void);
extern char *_PySecret_FirstNonzero(char *p, char *end);
extern void _PySecret_EraseStack(void *low, int vector);
/* The vector register file to erase, detected once (see secret_core.c). */
extern int _PySecret_vector;

/* Enter secret mode for one secret.do() call: returns 1 if entered, 0 in
 * fallback mode (then there is nothing to leave). Never fails. */
extern int _PySecret_Enter(PyThreadState *tstate, _PySecretCall *call);

/* Leave it: erase the interpreter frame stack and the alternate signal
 * stack, zero what func left on the C stack deeper than a window below
 * do's frame, and return the lowest address of that window that still
 * needs zeroing. Keeps a pending exception intact, never runs Python code. */
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
    } while (0)
#else
#  define _PySecret_ENTER(tstate, call) ((void)(tstate), (void)(call), 0)
#  define _PySecret_LEAVE(tstate, call) ((void)0)
#endif

/* Thread life cycle (Modules/_threadmodule.c). */

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

/* The secret heap (secret_heap.c, spec §3.4). */

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
/* At each do() entry: forget a failed secret allocation that nothing
 * reported (see _PySecretHeap_TakeFailure). */
extern void _PySecretHeap_ForgetFailure(void);

/* Native memory (secret_native.c): 1 if the C library's allocator
 * functions the process binds to are the interpreter's, so that native
 * code's allocations in secret mode are secret; else 0 and why in buf. */
extern int _PySecretNative_Check(char *buf, size_t len);
/* The object whose allocator serves ordinary memory (glibc's libc.so.6,
 * or a preloaded one). */
extern const char *_PySecretNative_NextAllocator(void);

/* faulthandler installed or removed the calling thread's alternate signal
 * stack (Modules/faulthandler.c): the cached one is stale. */
extern void _PySecret_AltStackChanged(void);

/* The C stack (secret_stack.c). */
#include <signal.h>               // siginfo_t
/* A SIGSEGV: 1 if it was a thread going deeper into the reserve below its
 * stack's window, now made room for (the access is retried), else 0.
 * faulthandler's SIGSEGV handler asks first (patch 0019). Signal-safe. */
extern int _PySecret_StackFault(siginfo_t *info, void *context);
/* faulthandler installed (1) or removed (0) its SIGSEGV handler. */
extern void _PySecret_FaulthandlerChanged(int enabled);
/* In a fork() child: how many other threads were inside do() at the fork
 * (their stacks were zeroed below it; their objects stay, heap.md). */
extern int _PySecretStack_ForkLost(void);
#if _PySecret_SUPPORTED
/* Internal to the core (secret_core.c). */
extern void _PySecretStack_Enter(char *top, int outermost);
extern char *_PySecretStack_Leave(char *top, int outermost);

extern void _PySecretStack_EraseAltStack(void);
extern char *_PySecretStack_ThreadExit(void);
extern void _PySecretStack_ThreadStart(void);
#endif

/* Before a chunk of the interpreter frame stack is freed (Python/pystate.c):
 * in secret mode its frames are zeroed first (spec §3.3). */
static inline void
_PySecret_FreeStackChunk(PyThreadState *tstate, void *chunk, size_t size)
{
    if (_PySecret_SUPPORTED && _PySecret_IsEnabled(tstate)) {
        extern void _PySecret_Zero(void *p, size_t n);
        _PySecret_Zero(chunk, size);
    }
}

/* push_chunk() (Python/pystate.c), before it takes a new chunk of the
 * frame stack: a do() on this thread may have lowered datastack_limit to a
 * window, so that its exit zeroes only what func can have reached
 * (spec §3.3). Widen it: returns the pushed frame's place, or NULL to let
 * push_chunk() take a new chunk. */
extern PyObject **_PySecret_WidenFrameWindow(PyThreadState *tstate, int size);

#ifdef __cplusplus
}
#endif
#endif  /* !Py_SECRET_CORE_H */
