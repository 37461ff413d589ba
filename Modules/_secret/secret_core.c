/* runtimesecret experiment: secret mode and its erasure, per thread.
 *
 * A thread is in secret mode while it runs inside secret.do() (a nesting
 * counter in its thread state) or for its whole life when it was started by
 * a thread in secret mode (spec §2).
 *
 * At each do() exit (spec §3.1-§3.3):
 * - registers: secret_amd64.S / secret_arm64.S, first and last;
 * - C stack: do() watches a window below its frame. On entry it zeroes the
 *   window's bottom; at exit everything from the window's lowest non-zero
 *   byte up to do's frame is zeroed. When func reached the window's bottom,
 *   the resident pages below it are zeroed too, down to the end of the
 *   thread's stack or a gap of GAP_MAX untouched bytes (pages func never
 *   touched are never faulted in). The window adapts to the depth the
 *   thread's do() calls use, so the cost follows the depth actually used
 *   (docs/erasure.md);
 * - signal frames: those on the thread stack are part of the stack above;
 *   the used part of the thread's alternate signal stack is zeroed;
 * - interpreter frame stack: the current chunk above the top, and chunks
 *   freed in secret mode (pystate.c hook).
 */

#include "Python.h"
#include "pycore_pystate.h"       // _PyThreadState_GET()

#include "secret_core.h"

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

#define WINDOW_MIN (4 * 1024)
#define WINDOW_MAX (256 * 1024)
/* Stop looking for deeper stack use after this many untouched bytes: more
 * than any single frame's untouched locals. */
#define GAP_MAX (1024 * 1024)
/* A signal frame (AVX-512 state included) is under 4 KiB. */
#define ALTSTACK_PROBE 4096

int _PySecret_vector = 0;

/* A thread started in secret mode. Thread-local, not in the thread state:
 * _PySecret_ThreadExitPrepare() runs after the thread state is deleted. */
static _Py_thread_local int thread_is_secret;
/* Size of the stack window do() watches (0: not set yet). */
static _Py_thread_local size_t thread_window;

static size_t page_size;

/* The lowest address of this thread's stack (pthread_getattr_np, looked up
 * once per thread), plus a page of margin: no zeroing ever goes below it,
 * so it never reaches the guard page or the mapping below (another
 * thread's stack, whose top holds that thread's TLS). */
static _Py_thread_local char *thread_floor;

static char *
stack_floor(void)
{
    if (thread_floor == NULL) {
        pthread_attr_t attr;
        void *addr = NULL;
        size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            if (pthread_attr_getstack(&attr, &addr, &size) != 0) {
                addr = NULL;
            }
            pthread_attr_destroy(&attr);
        }
        char here;
        if (addr == NULL || (char *)addr >= &here) {
            /* Unknown: allow nothing below the minimum window. */
            addr = (char *)((uintptr_t)&here - 2 * WINDOW_MIN);
        }
        thread_floor = (char *)addr + 4096;
    }
    return thread_floor;
}

void
_PySecret_Zero(void *p, size_t n)
{
    explicit_bzero(p, n);
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
    /* AVX-512: opmask, ZMM_Hi256 and Hi16_ZMM state enabled. */
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F)
        && (xcr0 & 0xe6) == 0xe6)
    {
        return 2;
    }
    return 1;
#elif defined(__aarch64__)
    return (getauxval(AT_HWCAP) & HWCAP_SVE) ? 1 : 0;
#else
    return 0;
#endif
}

static void
init_once(void)
{
    if (page_size == 0) {
        _PySecret_vector = detect_vector();
        long ps = sysconf(_SC_PAGESIZE);
        page_size = ps > 0 ? (size_t)ps : 4096;
    }
}

static inline int
is_zero(const char *p, size_t n)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t acc = 0;
    for (size_t i = 0; i < n / 8; i++) {
        acc |= w[i];
    }
    return acc == 0;
}

/* The lowest non-zero 8-byte word in [p, end), or end. Whole 512-byte
 * blocks first (a loop the compiler vectorizes), then words. */
static char *
first_nonzero(char *p, char *end)
{
    while (p + 512 <= end) {
        const uint64_t *w = (const uint64_t *)p;
        uint64_t acc = 0;
        for (int i = 0; i < 64; i++) {
            acc |= w[i];
        }
        if (acc != 0) {
            break;
        }
        p += 512;
    }
    while (p < end && *(uint64_t *)p == 0) {
        p += 8;
    }
    return p;
}

/* Zero the resident pages in [floor, below) (below page-aligned), going
 * down until the mapping ends, the floor is reached, or gap_max bytes in a
 * row were never touched. mincore() tells residency without faulting pages
 * in. */
static void
zero_resident_below(char *below, char *floor, size_t gap_max)
{
    enum { BATCH = 64 };
    unsigned char vec[BATCH];
    size_t gap = 0;
    char *hi = below;
    floor = (char *)(((uintptr_t)floor + page_size - 1)
                     & ~(uintptr_t)(page_size - 1));
    int last = 0;
    while (!last && hi > floor) {
        size_t n = BATCH;
        if ((size_t)(hi - floor) < n * page_size) {
            n = (hi - floor) / page_size;
        }
        char *lo = hi - n * page_size;
        if (mincore(lo, n * page_size, vec) != 0) {
            /* Part of the range is not mapped: take the pages down to
             * where the mapping ends, then stop. */
            size_t mapped = 0;
            while (mapped < n
                   && mincore(hi - (mapped + 1) * page_size, page_size,
                              &vec[n - 1 - mapped]) == 0) {
                mapped++;
            }
            if (mapped == 0) {
                return;
            }
            memmove(vec, &vec[n - mapped], mapped);
            n = mapped;
            lo = hi - n * page_size;
            last = 1;
        }
        for (size_t i = n; i-- > 0;) {
            if (vec[i] & 1) {
                explicit_bzero(lo + i * page_size, page_size);
                gap = 0;
            }
            else if ((gap += page_size) >= gap_max) {
                return;
            }
        }
        hi = lo;
    }
}

/* The next window: the depth used plus a quarter and 1 KiB (so a slightly
 * deeper call does not escalate), rounded to 1 KiB; it shrinks by half at most
 * per call, so a thread whose calls alternate shallow and deep keeps a
 * window that fits the deep ones. */
static size_t
adapt_window(size_t window, size_t used)
{
    size_t want = ((used + used / 4 + 2047) / 1024) * 1024;
    if (want > WINDOW_MAX) {
        want = WINDOW_MAX;
    }
    if (want < window / 2) {
        want = window / 2;
    }
    return want > WINDOW_MIN ? want : WINDOW_MIN;
}

/* The alternate signal stack, cached per thread: the kernel is asked again
 * only when faulthandler (the only code in CPython that installs one)
 * changed it since (altstack_generation). */
static int altstack_generation = 1;
static _Py_thread_local int altstack_seen;
static _Py_thread_local char *altstack_sp;
static _Py_thread_local size_t altstack_size;

void
_PySecret_AltStackChanged(void)
{
    _Py_atomic_add_int(&altstack_generation, 1);
}

/* A handler that ran on the alternate stack during func left a frame
 * (func's registers) at its top: zero the used part. */
static void
erase_altstack(void)
{
    int gen = _Py_atomic_load_int_relaxed(&altstack_generation);
    if (altstack_seen != gen) {
        stack_t ss;
        altstack_sp = NULL;
        if (sigaltstack(NULL, &ss) == 0 && !(ss.ss_flags & SS_DISABLE)
            && ss.ss_sp != NULL && ss.ss_size >= 64)
        {
            altstack_sp = (char *)(((uintptr_t)ss.ss_sp + 7) & ~(uintptr_t)7);
            altstack_size = (ss.ss_size - (altstack_sp - (char *)ss.ss_sp))
                            & ~(size_t)63;
        }
        altstack_seen = gen;
    }
    if (altstack_sp == NULL) {
        return;
    }
    char *top = altstack_sp + altstack_size;
    size_t probe = altstack_size < ALTSTACK_PROBE ? altstack_size
                                                  : ALTSTACK_PROBE;
    if (is_zero(top - probe, probe)) {
        return;
    }
    char *p = first_nonzero(altstack_sp, top);
    explicit_bzero(p, top - p);
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
    init_once();
    ((_PyThreadStateImpl *)tstate)->secret.depth++;
#  if _Py_SECRET_HEAP
    /* From here on this thread allocates in the secret heap. */
    _PySecret_tls.mode++;
    _PySecretHeap_ForgetFailure();
#  endif
    if (thread_window == 0) {
        thread_window = WINDOW_MIN;
    }
    /* The window never reaches below the thread's stack (a thread with a
     * small stack, after a deep call). */
    char here;
    size_t avail = (uintptr_t)&here - (uintptr_t)stack_floor();
    avail = avail > 1024 ? (avail - 1024) & ~(size_t)15 : 0;
    call->window = thread_window < avail ? thread_window : avail;
    call->window_low = NULL;
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
#endif

    erase_frame_stack(tstate, call);
    erase_altstack();

    char *low = call->window_low;
    char *top = low + call->window;
    size_t used;
    /* A window clamped below WINDOW_MIN reaches the stack's floor: nothing
     * can lie below it. */
    if (call->window >= WINDOW_MIN && !is_zero(low, 64)) {
        /* func went at least to the window's bottom: zero what it may have
         * used below, from here (this frame is far above it). */
        char *page = (char *)((uintptr_t)low & ~(uintptr_t)(page_size - 1));
        explicit_bzero(page, low - page);
        zero_resident_below(page, stack_floor(), GAP_MAX);
        used = WINDOW_MAX;
    }
    else {
        low = first_nonzero(low, top);
        used = top - low;
    }
    thread_window = adapt_window(call->window, used);
    return low;
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
    thread_is_secret = ((_PyThreadStateImpl *)tstate)->secret.inherited;
    if (thread_is_secret) {
        init_once();
#if _Py_SECRET_HEAP
        /* Inherited secret mode: the thread allocates secretly for life
           (the heap was reserved by the do() that started it). */
        _PySecret_tls.mode = 1;
#endif
    }
}

void *
_PySecret_ThreadExitPrepare(void)
{
    /* Every thread that owns a secret heap hands it back. */
    _PySecretHeap_ThreadDone();
    if (!_PySecret_SUPPORTED || !thread_is_secret) {
        return NULL;
    }
    thread_is_secret = 0;
    /* The whole stack below the thread's outermost frame was used by the
     * thread. Zero its resident pages from well below this frame (so the
     * zeroing never reaches a live frame) and leave the rest, right below
     * the caller, to _PySecret_EraseStack(). */
    char here;
    char *sp = (char *)((uintptr_t)&here & ~(uintptr_t)(page_size - 1));
    char *floor = stack_floor();
    char *low = sp - 16 * page_size;
    if (low < floor) {
        low = floor;
    }
    zero_resident_below(low, floor, SIZE_MAX);
    erase_altstack();
    return low;
}
