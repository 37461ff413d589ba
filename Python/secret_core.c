/* runtimesecret experiment: secret mode and its erasure, per thread.
 *
 * A thread is in secret mode while it runs inside secret.do() (a nesting
 * counter in its thread state) or for its whole life when it was started by
 * a thread in secret mode (spec §2).
 *
 * At each do() exit (spec §3.1-§3.3):
 * - registers: secret_amd64.S / secret_arm64.S, first and last;
 * - C stack and signal frames: secret_stack.c finds exactly how deep func
 *   went and what it left on the alternate signal stack;
 * - interpreter frame stack: the window do() opened above the top of the
 *   current chunk, and chunks freed in secret mode (pystate.c hook).
 */

#include "Python.h"
#include "pycore_pystate.h"       // _PyThreadState_GET()
#include "pycore_secret.h"
#include "pycore_tstate.h"        // _PyThreadStateImpl

#include <pthread.h>
#include <signal.h>
#include <string.h>               // explicit_bzero()
#include <sys/mman.h>             // mincore()
#include <unistd.h>               // sysconf()
#if defined(__x86_64__)
#  include <cpuid.h>
#elif defined(__aarch64__)
#  include <sys/auxv.h>
#  ifndef HWCAP_SVE
#    define HWCAP_SVE (1 << 22)
#  endif
#endif

int _PySecret_vector = 0;

/* A thread started in secret mode. Thread-local, not in the thread state:
 * _PySecret_ThreadExitPrepare() runs after the thread state is deleted. */
static _Py_thread_local int thread_is_secret;

void
_PySecret_Zero(void *p, size_t n)
{
    explicit_bzero(p, n);
}

int
_PySecret_IsEnabled(PyThreadState *tstate)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    return ts->secret.depth > 0 || ts->secret.inherited;
}

static int
detect_vector(void)
{
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) {
        return 0;
    }
    /* AVX needs the CPU feature and the OS saving YMM state (XCR0). */
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX)) {
        return 0;
    }
    unsigned int lo, hi;
    __asm__ volatile ("xgetbv" : "=a" (lo), "=d" (hi) : "c" (0));
    unsigned long long xcr0 = ((unsigned long long)hi << 32) | lo;
    if ((xcr0 & 0x6) != 0x6) {
        return 0;
    }
    int kind = 1;
    /* AVX-512: opmask, ZMM_Hi256 and Hi16_ZMM state enabled. */
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F)
        && (xcr0 & 0xe6) == 0xe6)
    {
        kind = 2;
    }
    /* AMX: tile data enabled (XCR0 bits 17-18) and XGETBV with ECX=1
     * (which says whether the tiles are in use) supported. */
    unsigned int a1, b1, c1, d1;
    if ((d & (1u << 24)) && (xcr0 & 0x60000) == 0x60000
        && __get_cpuid_count(0xd, 1, &a1, &b1, &c1, &d1) && (a1 & 4))
    {
        kind |= 4;
    }
    return kind;
#elif defined(__aarch64__)
    return (getauxval(AT_HWCAP) & HWCAP_SVE) ? 1 : 0;
#else
    return 0;
#endif
}

/* Set (release) once init_once() ran: each do() entry tests it inline
 * rather than calling pthread_once() (a call and a load; do_async makes
 * one entry a coroutine step). */
static int init_done;

static void
init_once(void)
{
    _PySecret_vector = detect_vector();
    _Py_atomic_store_int_release(&init_done, 1);
}

static pthread_once_t init_flag = PTHREAD_ONCE_INIT;

static inline void
ensure_init(void)
{
    if (__builtin_expect(!_Py_atomic_load_int_acquire(&init_done), 0)) {
        pthread_once(&init_flag, init_once);
    }
}

/* The frame stack's window (spec §3.3). CPython keeps no high-water mark
 * of the frame stack, and zeroing the current chunk to its end costs a
 * third of do()'s fixed cost (16 KiB). So a do() that finds no window
 * lowers datastack_limit to FRAME_WINDOW bytes above the top: no frame is
 * ever placed at or above the limit (every push checks it), and one that
 * does not fit reaches push_chunk(), which widens the window first
 * (_PySecret_WidenFrameWindow). At exit only the window is dead.
 *
 * The window is the limit itself: CPython keeps datastack_limit at the
 * chunk's end, so a limit below it is a window. Nothing else to keep, and
 * a frame stack that a greenlet switches in brings its own. */
#define FRAME_WINDOW (4 * 1024)

static inline PyObject **
chunk_end(_PyStackChunk *chunk)
{
    return (PyObject **)((char *)chunk + chunk->size);
}

static void
open_frame_window(PyThreadState *tstate, _PySecretCall *call)
{
    PyObject **top = tstate->datastack_top;
    PyObject **limit = tstate->datastack_limit;
    const ptrdiff_t n = FRAME_WINDOW / sizeof(PyObject *);
    call->frame_window = 0;
    if (top == NULL || limit != chunk_end(tstate->datastack_chunk)
        || limit - top <= n)
    {
        return;     /* no chunk yet, an outer do()'s window, or too close */
    }
    tstate->datastack_limit = top + n;
    call->frame_window = 1;
}

PyObject **
_PySecret_WidenFrameWindow(PyThreadState *tstate, int size)
{
    _PyStackChunk *chunk = tstate->datastack_chunk;
    if (chunk == NULL || tstate->datastack_limit >= chunk_end(chunk)) {
        return NULL;    /* no window */
    }
    PyObject **top = tstate->datastack_top;
    ptrdiff_t room = chunk_end(chunk) - chunk->data;
    ptrdiff_t need = (top - chunk->data) + size;
    ptrdiff_t reach = tstate->datastack_limit - chunk->data;
    /* Double the window's reach into the chunk until the frame fits (as
     * _PyThreadState_HasStackSpace() counts: size < limit - top). */
    do {
        reach *= 2;
    } while (reach < room && need >= reach);
    if (reach > room) {
        reach = room;   /* the whole chunk: no window any more */
    }
    tstate->datastack_limit = chunk->data + reach;
    if (need >= reach) {
        return NULL;    /* push_chunk() takes a new chunk */
    }
    tstate->datastack_top = top + size;
    return top;
}

#if _PySecret_SUPPORTED
/* A chunk of the frame stack freed in secret mode (Python/pystate.c):
 * func's frames do not leave with it. */
void
_PySecret_FreeStackChunk(PyThreadState *tstate, void *chunk, size_t size)
{
    if (_PySecret_IsEnabled(tstate)) {
        explicit_bzero(chunk, size);
    }
}
#endif

/* Everything above the top of the current chunk of the frame stack, up to
 * its limit, is dead: func's frames were there. Then the limit goes back
 * to the chunk's end. */
static void
erase_frame_stack(PyThreadState *tstate, _PySecretCall *call)
{
    char *top = (char *)tstate->datastack_top;
    char *limit = (char *)tstate->datastack_limit;
    if (top != NULL && limit > top) {
        explicit_bzero(top, limit - top);
    }
    if (call->frame_window) {
        tstate->datastack_limit = chunk_end(tstate->datastack_chunk);
    }
}

int
_PySecret_Enter(PyThreadState *tstate, _PySecretCall *call)
{
#if _PySecret_SUPPORTED
    ensure_init();
    ((_PyThreadStateImpl *)tstate)->secret.depth++;
#  if _Py_SECRET_HEAP
    /* From here on this thread allocates in the secret heap. */
    _PySecret_tls.mode++;
    _PySecretHeap_ForgetFailure();
#  endif
    _PySecretStack_Enter(call->top,
                         ((_PyThreadStateImpl *)tstate)->secret.depth == 1);
    open_frame_window(tstate, call);
    return 1;
#else
    (void)tstate;
    (void)call;
    return 0;
#endif
}

void *
_PySecret_Leave(PyThreadState *tstate, _PySecretCall *call)
{
    _PyThreadStateImpl *ts = (_PyThreadStateImpl *)tstate;
    assert(ts->secret.depth > 0);
    ts->secret.depth--;
#if _Py_SECRET_HEAP
    _PySecret_tls.mode--;
    if (_PySecret_tls.mode == 0) {
        /* A failure this do() left unreported is not blamed on the heap
         * by a later MemoryError outside it. */
        _PySecretHeap_ForgetFailure();
    }
#endif
    erase_frame_stack(tstate, call);
#if _PySecret_SUPPORTED
    return _PySecretStack_Leave(call->top, ts->secret.depth == 0);
#else
    return NULL;
#endif
}

void
_PySecret_ThreadCreated(PyThreadState *parent, PyThreadState *child)
{
    if (_PySecret_SUPPORTED && parent != NULL && _PySecret_IsEnabled(parent)) {
        ((_PyThreadStateImpl *)child)->secret.inherited = 1;
    }
}

void
_PySecret_ThreadStart(PyThreadState *tstate)
{
#if _PySecret_SUPPORTED
    _PySecretStack_ThreadStart();
#endif
    thread_is_secret = ((_PyThreadStateImpl *)tstate)->secret.inherited;
    if (thread_is_secret) {
        ensure_init();
#if _Py_SECRET_HEAP
        /* Inherited secret mode: the thread allocates secretly for life
           (the heap was reserved by the do() that started it), and its
           stack is erased each time it goes idle. */
        _PySecret_tls.mode = 1;
        _PySecret_tls.idle = 1;
#endif
#if _PySecret_SUPPORTED
        /* Its stack is set up now, as a first do() would: an idle point
         * may come while the thread holds a lock (the secret heap's, in
         * malloc), where setting up (which allocates) could deadlock. */
        _PySecretStack_Enter(_PySecret_StackTop(), 0);
#endif
    }
}

#if _Py_SECRET_HEAP
/* Idle points reached (any thread), and by this thread; whether they
 * erase: for the tests (_testsecret), whose controls turn it off. */
static uint64_t idle_total;
static _Py_thread_local uint64_t idle_seen;
static _Py_thread_local char *idle_top;
static int idle_off;

PyAPI_FUNC(uint64_t)
_PySecret_TestIdleTotal(void)
{
    return _Py_atomic_load_uint64(&idle_total);
}

PyAPI_FUNC(uint64_t)
_PySecret_TestIdleSeen(char **top)
{
    *top = idle_top;
    return idle_seen;
}

PyAPI_FUNC(int)
_PySecret_TestIdleErase(int on)
{
    int was = !_Py_atomic_load_int(&idle_off);
    _Py_atomic_store_int(&idle_off, !on);
    return was;
}

/* The thread is about to wait: the stack below this frame is dead, and
 * what the work since the last idle point (or the thread's start) left
 * there is found exactly as at a do() exit, whose top is this frame's. */
__attribute__((noinline)) void
_PySecret_Idle(void)
{
    char *top = _PySecret_StackTop();
    idle_seen++;
    idle_top = top;
    _Py_atomic_add_uint64(&idle_total, 1);
    if (_Py_atomic_load_int_relaxed(&idle_off)) {
        return;
    }
    /* Registers first, as at a do() exit. No idle point inside this one
     * (setting the stack up may wait on a mutex). */
    _PySecret_EraseStack((void *)UINTPTR_MAX, _PySecret_vector);
    _PySecret_tls.idle = 0;
    char *low = _PySecretStack_Idle(top);
    if (low != NULL) {
        _PySecret_EraseStack(low, _PySecret_vector);
        /* Last, as at a do() exit: a signal during the erasure may have
         * put a frame there. */
        _PySecretStack_EraseAltStack();
    }
    _PySecret_tls.idle = 1;
}
#endif

void *
_PySecret_ThreadExitPrepare(void)
{
    /* Every thread that owns a secret heap hands it back. */
    _PySecretHeap_ThreadDone();
    if (!_PySecret_SUPPORTED || !thread_is_secret) {
        return NULL;
    }
    thread_is_secret = 0;
#if _Py_SECRET_HEAP
    _PySecret_tls.idle = 0;
#endif
#if _PySecret_SUPPORTED
    return _PySecretStack_ThreadExit();
#else
    return NULL;
#endif
}
