/* runtimesecret experiment: the secret heap (spec §3.4).
 *
 * One reserved address range (so "is this block secret?" is one compare,
 * _PySecret_IsSecret()), managed by the bundled mimalloc as an exclusive,
 * pinned arena: ordinary heaps never allocate in it and secret heaps never
 * get memory from anywhere else, so exhausting it fails (MemoryError)
 * instead of placing a secret block in ordinary memory. Each OS thread
 * that allocates or reallocates a secret block gets its own mimalloc heap
 * in the arena; frees work on any thread (mimalloc's thread-free lists).
 *
 * The range is excluded from core dumps (MADV_DONTDUMP) and locked against
 * swap with mlock2(MLOCK_ONFAULT) as far as RLIMIT_MEMLOCK allows (best
 * effort, reported by heap_info(), never an error). Pinned: mimalloc never
 * purges or decommits it, so locked pages stay valid.
 *
 * Every secret block is zeroed (explicit_bzero, or inline stores the
 * compiler cannot drop for small blocks) when it is freed, when a
 * realloc moves it, and at interpreter shutdown if it is still live.
 *
 * The allocator hooks are in Objects/obmalloc.c (patch "obmalloc: ...");
 * the thread-local mode is kept by _PySecret_Enter/_PySecret_Leave and the
 * thread hooks (secret_core.c).
 */

#include "Python.h"
#include "pycore_initconfig.h"    // _Py_GetEnv()
#include "pycore_lock.h"          // _PyOnceFlag
#include "pycore_pymem.h"         // _PySecret_range
#include "pycore_pystate.h"       // _PyInterpreterState_GET()
#include "pycore_tstate.h"        // pycore_mimalloc.h: mimalloc API
#include "pycore_obmalloc.h"      // MAP_MID_SHIFT (pymalloc's radix tree)

#include "secret_core.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>               // explicit_bzero()
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#if _Py_SECRET_HEAP

#ifndef MLOCK_ONFAULT
#  define MLOCK_ONFAULT 0x01
#endif

#define SEGMENT ((uintptr_t)MI_SEGMENT_SIZE)            /* 32 MiB */
#define DEFAULT_SIZE ((size_t)1 << 30)                  /* 1 GiB */
#define MIN_SIZE ((size_t)64 << 20)
/* pymalloc's radix tree (pycore_obmalloc.h) resolves an address in three
 * levels, the middle one by windows of 1 << MAP_MID_SHIFT bytes (16 GiB on
 * 64-bit). _PyObject_Free tests for a secret block only after that lookup
 * has said "not pymalloc's": a secret heap alone in its windows makes the
 * lookup stop at the middle level (no node there), which halves what a
 * secret free pays for it. The rest of the last window is reserved
 * inaccessible (address space only, no memory), so that no pymalloc arena
 * can be mapped into it. Without the tree, windows are just segments. */
#if WITH_PYMALLOC_RADIX_TREE && defined(MAP_MID_SHIFT)
#  define WINDOW ((uintptr_t)1 << MAP_MID_SHIFT)
#else
#  define WINDOW SEGMENT
#endif

/* mimalloc (patch "mimalloc: an exclusive pinned arena"). */
extern bool _mi_manage_os_memory_pinned(void *start, size_t size,
                                        int numa_node,
                                        mi_arena_id_t *arena_id);

struct _PySecretRange _PySecret_range = {0, 0};
_Py_thread_local _PySecretTLS _PySecret_tls;

static mi_arena_id_t secret_arena;
static _PyOnceFlag reserve_once;
static int reserve_errno;           /* set if the reservation failed */

static struct {
    size_t locked_bytes;
    int lock_errno;
    size_t lock_limit;              /* RLIMIT_MEMLOCK soft limit */
    int dontdump;
    int dontdump_errno;
} flags;

/* Counters for heap_info(), per thread (the secret paths pay plain
 * stores, no atomic read-modify-write): each thread that touches the
 * secret heap registers its counters; heap_info() sums the registered ones
 * and those of threads that ended (folded by a pthread-key destructor). A
 * block freed on another thread is counted there: only sums mean anything.
 * Live blocks are allocations - frees (one store less on each path).
 */
typedef struct counters {
    int64_t live_bytes;
    int64_t zeroed_bytes;
    int64_t allocations;
    int64_t frees;
    int64_t exhausted;
    struct counters *next;
    int registered;
} counters;

static _Py_thread_local counters tc;
static PyMutex registry_mutex;
static counters *registry;
static counters retired;
static pthread_key_t registry_key;
static int64_t heap_threads;        /* threads owning a secret heap */

/* Blocks with headroom (see grow_alloc()). */
#define GROW_MIN ((size_t)64 << 10)
#define GROW_FACTOR 32          /* at most a sixteenth of the arena */
#define GROW_SLOTS 64

static struct {
    uintptr_t block;
    size_t high;                /* bytes that may hold data */
    size_t usable;
} grow_table[GROW_SLOTS];
static int grow_count;          /* entries in use; read without the lock
                                   (acquire: a block handed to another
                                   thread is found there) */
static size_t grow_bytes;       /* sum of their usable sizes */
static PyMutex grow_mutex;

#define BUMP(field, n) \
    _Py_atomic_store_int64_relaxed(&tc.field, tc.field + (int64_t)(n))

static void
fold(counters *dst, const counters *src)
{
    dst->live_bytes += _Py_atomic_load_int64_relaxed(&src->live_bytes);
    dst->zeroed_bytes += _Py_atomic_load_int64_relaxed(&src->zeroed_bytes);
    dst->allocations += _Py_atomic_load_int64_relaxed(&src->allocations);
    dst->frees += _Py_atomic_load_int64_relaxed(&src->frees);
    dst->exhausted += _Py_atomic_load_int64_relaxed(&src->exhausted);
}

static void
registry_thread_end(void *arg)
{
    counters *c = (counters *)arg;
    PyMutex_LockFlags(&registry_mutex, _Py_LOCK_DONT_DETACH);
    fold(&retired, c);
    for (counters **pp = &registry; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    PyMutex_Unlock(&registry_mutex);
    memset(c, 0, sizeof(*c));
}

/* Slow path, once per thread. */
static void
register_thread(void)
{
    tc.registered = 1;
    PyMutex_LockFlags(&registry_mutex, _Py_LOCK_DONT_DETACH);
    tc.next = registry;
    registry = &tc;
    PyMutex_Unlock(&registry_mutex);
    (void)pthread_setspecific(registry_key, &tc);
}

static inline void
count_thread(void)
{
    if (__builtin_expect(!tc.registered, 0)) {
        register_thread();
    }
}

int
_PySecret_GetMode(void)
{
    return _PySecret_tls.mode;
}

/* --- reservation ----------------------------------------------------- */

/* "N", "NK", "NM", "NG" (optionally followed by "i" and/or "B") to bytes;
 * 0 for anything else (signs, spaces, zero, overflow). */
static size_t
parse_size(const char *s)
{
    char *end;
    if (!Py_ISDIGIT(*s)) {
        return 0;       /* strtoull would take " 1" and "-1" */
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0) {
        return 0;
    }
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: break;
    }
    if (shift != 0 && (*end == 'i' || *end == 'I')) {
        end++;
    }
    if (*end == 'b' || *end == 'B') {
        end++;
    }
    if (*end != '\0' || v > (SIZE_MAX >> shift)) {
        return 0;
    }
    return (size_t)v << shift;
}

/* A size setting that is not a size: do() reports it, naming it, rather
 * than quietly reserving some other size. */
static const char *bad_size_source;
static char bad_size_text[64];

/* -X secret_heap_size=SIZE, else PYTHONSECRETHEAPSIZE (not under -E/-I),
 * else 1 GiB; at least 64 MiB, a multiple of 32 MiB.  0 if the setting is
 * not a size (bad_size_source/bad_size_text say which). */
static size_t
configured_size(void)
{
    const char *text = NULL;
    const char *source = "-X secret_heap_size";
    PyObject *xopts = PySys_GetXOptions();    /* borrowed */
    PyObject *v = xopts ? PyDict_GetItemString(xopts, "secret_heap_size")
                        : NULL;
    if (v != NULL) {
        /* "-X secret_heap_size" without "=SIZE" gives True. */
        text = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : "";
        if (text == NULL) {
            PyErr_Clear();
            text = "";
        }
    }
    else {
        const PyConfig *config = _Py_GetConfig();
        text = _Py_GetEnv(config->use_environment, "PYTHONSECRETHEAPSIZE");
        source = "PYTHONSECRETHEAPSIZE";
    }
    if (text == NULL) {
        return DEFAULT_SIZE;
    }
    size_t size = parse_size(text);
    if (size == 0 || size > SIZE_MAX - SEGMENT) {
        bad_size_source = source;
        PyOS_snprintf(bad_size_text, sizeof(bad_size_text), "%s", text);
        return 0;
    }
    if (size < MIN_SIZE) {
        size = MIN_SIZE;
    }
    return (size + SEGMENT - 1) & ~(SEGMENT - 1);
}

static size_t
vmlck_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    size_t kb = 0;
    char line[256];
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmLck:", 6) == 0) {
            kb = (size_t)strtoull(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

static int
lock_range(void *base, size_t len)
{
    return (int)syscall(SYS_mlock2, base, len, MLOCK_ONFAULT);
}

/* Best effort: the whole range if the kernel allows it (CAP_IPC_LOCK or a
 * large enough limit), else the longest prefix that fits the limit.
 * mimalloc claims arena blocks from the start, so a prefix is what gets
 * used first. */
static void
lock_best_effort(void *base, size_t size)
{
    struct rlimit rl;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    flags.locked_bytes = 0;
    flags.lock_errno = 0;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        flags.lock_limit = rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX
                                                         : (size_t)rl.rlim_cur;
    }
    if (lock_range(base, size) == 0) {
        flags.locked_bytes = size;
        return;
    }
    flags.lock_errno = errno;
    size_t used = vmlck_bytes();
    size_t len = flags.lock_limit > used ? flags.lock_limit - used : 0;
    if (len > size) {
        len = size;
    }
    len &= ~(page - 1);
    while (len >= page) {
        if (lock_range(base, len) == 0) {
            flags.locked_bytes = len;
            return;
        }
        flags.lock_errno = errno;
        len = (len / 2) & ~(page - 1);
    }
}

static void
atfork_child(void)
{
    /* The child has one thread: no lock can be held by another. */
    registry_mutex = (PyMutex){0};
    grow_mutex = (PyMutex){0};
    /* mlocks are not inherited across fork(). */
    if (_PySecret_range.size != 0 && flags.locked_bytes != 0) {
        if (lock_range((void *)_PySecret_range.base,
                       flags.locked_bytes) != 0) {
            flags.locked_bytes = 0;
            flags.lock_errno = errno;
        }
    }
}

static void shutdown_zero(void);

static int
reserve(void *arg)
{
    (void)arg;
    size_t size = configured_size();
    if (size == 0) {
        reserve_errno = EINVAL;
        return 0;
    }
    char *base = NULL;
    /* The reservation: whole windows (above), inaccessible, with
     * the heap made accessible at their start. If that much address space
     * is refused (RLIMIT_AS), the heap alone, 32 MiB aligned. */
    size_t span = size <= SIZE_MAX - 2 * WINDOW
                  ? (size + WINDOW - 1) & ~(WINDOW - 1) : 0;
    size_t map = span + WINDOW;
    char *raw = span ? mmap(NULL, map, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                            -1, 0)
                     : MAP_FAILED;
    if (raw != MAP_FAILED) {
        base = (char *)(((uintptr_t)raw + WINDOW - 1) & ~(WINDOW - 1));
        if (mprotect(base, size, PROT_READ | PROT_WRITE) != 0) {
            munmap(raw, map);
            base = NULL;
        }
    }
    if (base == NULL) {
        span = size;
        map = size + SEGMENT;
        raw = mmap(NULL, map, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (raw == MAP_FAILED) {
            reserve_errno = errno ? errno : ENOMEM;
            return 0;       /* the once-flag is set: never retried */
        }
        /* mimalloc needs a 32 MiB aligned start. */
        base = (char *)(((uintptr_t)raw + SEGMENT - 1) & ~(SEGMENT - 1));
    }
    if (base > raw) {
        munmap(raw, base - raw);
    }
    char *end = base + span;
    if (raw + map > end) {
        munmap(end, raw + map - end);
    }
    if (span > size) {
        /* The kernel would write the inaccessible rest of the window into
         * a core dump as a (sparse) run of zeros: leave it out. */
        (void)madvise(base + size, span - size, MADV_DONTDUMP);
    }
    if (madvise(base, size, MADV_DONTDUMP) == 0) {
        flags.dontdump = 1;
    }
    else {
        flags.dontdump_errno = errno;
    }
#ifdef MADV_NOHUGEPAGE
    (void)madvise(base, size, MADV_NOHUGEPAGE);
#endif
    lock_best_effort(base, size);
    if (pthread_key_create(&registry_key, registry_thread_end) != 0) {
        reserve_errno = EAGAIN;
        goto fail;
    }
    if (!_mi_manage_os_memory_pinned(base, size, -1, &secret_arena)) {
        reserve_errno = ENOMEM;
        goto fail;
    }
    _PySecret_range.base = (uintptr_t)base;
    _Py_atomic_store_uintptr_release(&_PySecret_range.size, (uintptr_t)size);
    (void)pthread_atfork(NULL, NULL, atfork_child);
    (void)Py_AtExit(shutdown_zero);
    return 0;

fail:
    /* Give back the locked range; heap_info() reports nothing reserved. */
    munmap(base, span);
    flags.locked_bytes = 0;
    flags.dontdump = 0;
    return 0;
}

/* Best effort must not be silent: once per process, the first do() (or
 * protections()) of a process whose heap is only partly locked warns.
 * -W error::RuntimeWarning makes it an error, for who would rather not
 * run so. */
static int lock_warned;

static int
warn_partial_lock(void)
{
    char limit[32];
    if (flags.lock_limit == SIZE_MAX) {
        PyOS_snprintf(limit, sizeof(limit), "unlimited");
    }
    else {
        PyOS_snprintf(limit, sizeof(limit), "%zu KiB",
                      flags.lock_limit >> 10);
    }
    return PyErr_WarnFormat(
        PyExc_RuntimeWarning, 1,
        "secret: only %zu KiB of the %zu MiB secret heap could be locked "
        "against swap (%s; RLIMIT_MEMLOCK %s): secret blocks beyond them "
        "may be swapped out. Grant CAP_IPC_LOCK, or raise RLIMIT_MEMLOCK "
        "to the heap size or lower it with PYTHONSECRETHEAPSIZE.",
        flags.locked_bytes >> 10, (size_t)_PySecret_range.size >> 20,
        flags.lock_errno ? strerrorname_np(flags.lock_errno) : "-", limit);
}

/* The whole reservation is locked against swap (best effort, §3.4: else
 * only a prefix of it, flags.locked_bytes). */
static int
all_locked(void)
{
    return _PySecret_range.size != 0
           && flags.locked_bytes >= _PySecret_range.size;
}

int
_PySecretHeap_EnsureReserved(void)
{
    if (_Py_atomic_load_uintptr_acquire(&_PySecret_range.size) == 0) {
        _PyOnceFlag_CallOnce(&reserve_once, reserve, NULL);
    }
    if (_PySecret_range.size == 0) {
        if (bad_size_source != NULL) {
            PyErr_Format(PyExc_ValueError,
                         "secret.do(): %s=%s is not a size: use a number "
                         "of bytes with an optional K, M or G suffix, "
                         "e.g. 256M or 2G", bad_size_source, bad_size_text);
            return -1;
        }
        errno = reserve_errno;
        PyErr_Format(PyExc_MemoryError,
                     "secret.do(): cannot reserve the secret heap (%s)",
                     strerror(reserve_errno ? reserve_errno : ENOMEM));
        return -1;
    }
    if (!all_locked()
        && !_Py_atomic_load_int_relaxed(&lock_warned)
        && _Py_atomic_exchange_int(&lock_warned, 1) == 0)
    {
        if (warn_partial_lock() < 0) {
            /* An error by the warnings filter: every do() refuses. */
            _Py_atomic_store_int(&lock_warned, 0);
            return -1;
        }
    }
    return 0;
}

/* Locking is best effort (spec §3.4): a partly locked heap keeps its
 * blocks beyond the locked prefix out of core dumps but not out of swap,
 * and protections() must not say otherwise. */
int
_PySecretHeap_OutOfDumpsAndSwap(void)
{
    return flags.dontdump && all_locked();
}

/* --- allocation ------------------------------------------------------ */

static mi_heap_t *
thread_heap(void)
{
    mi_heap_t *h = (mi_heap_t *)_PySecret_tls.heap;
    if (h == NULL) {
        if (_PySecret_range.size == 0) {
            return NULL;
        }
        h = mi_heap_new_in_arena(secret_arena);
        if (h == NULL) {
            return NULL;
        }
        _PySecret_tls.heap = h;
        _Py_atomic_add_int64(&heap_threads, 1);
    }
    return h;
}

static inline size_t
round16(size_t n)
{
    return n <= SIZE_MAX - 15 ? (n + 15) & ~(size_t)15 : n;
}

/* mi_usable_size() without the checks the secret paths do not need:
 * p is never NULL, the secret heap never makes aligned blocks (tested
 * anyway, one bit) and a release build has no padding. Every secret
 * allocation and free calls it: mi_usable_size() was a call of 20
 * instructions (callgrind), this is 16 inline. */
static inline size_t
usable_size(const void *p)
{
#if MI_PADDING
    return mi_usable_size(p);
#else
    const mi_page_t *page = _mi_segment_page_of(_mi_ptr_segment(p), p);
    size_t bsize = page->xblock_size;
    if (__builtin_expect(bsize < MI_HUGE_BLOCK_SIZE
                         && !mi_page_has_aligned(page), 1)) {
        return bsize;
    }
    return mi_usable_size(p);
#endif
}

/* Zero a freed or moved block with stores the compiler cannot drop.
 * Small blocks (most of them: objects) are zeroed inline, 16 bytes a
 * store; the empty asm after each store uses the address and clobbers
 * memory, so the stores can be neither dropped nor merged back into a
 * memset() call. Larger blocks go to explicit_bzero(). */
#define ZERO_INLINE_MAX 256

static inline void
zero_block(void *p, size_t n)
{
    if (n <= ZERO_INLINE_MAX && (n & 15) == 0) {
        char *q = (char *)p;
        for (size_t i = 0; i < n; i += 16) {
            memset(q + i, 0, 16);
            __asm__ __volatile__("" : : "r"(q + i) : "memory");
        }
    }
    else {
        explicit_bzero(p, n);
    }
}

/* Set when a secret allocation of this thread fails; the next
 * PyErr_NoMemory() takes it to say the secret heap is full (patch 0012).
 * A failure its caller handled without PyErr_NoMemory() must not be
 * blamed for a later, unrelated MemoryError (a size overflow, say): the
 * next secret allocation that succeeds clears it, and so does each do()
 * entry. */
static _Py_thread_local int alloc_failed;

void
_PySecretHeap_ForgetFailure(void)
{
    alloc_failed = 0;
}

int
_PySecretHeap_TakeFailure(size_t *reserved)
{
    int failed = alloc_failed;
    alloc_failed = 0;
    *reserved = (size_t)_PySecret_range.size;
    return failed;
}

static inline void *
counted(void *p)
{
    count_thread();
    if (p == NULL) {
        BUMP(exhausted, 1);
        alloc_failed = 1;
        return NULL;
    }
    alloc_failed = 0;
    BUMP(live_bytes, usable_size(p));
    BUMP(allocations, 1);
    return p;
}

void *
_PySecretHeap_Malloc(size_t n)
{
    mi_heap_t *h = thread_heap();
    if (h == NULL) {
        return counted(NULL);
    }
    return counted(mi_heap_malloc(h, round16(n ? n : 1)));
}

void *
_PySecretHeap_Calloc(size_t nelem, size_t elsize)
{
    if (elsize != 0 && nelem > SIZE_MAX / elsize) {
        alloc_failed = 0;           /* an overflow, not a full heap */
        return NULL;
    }
    mi_heap_t *h = thread_heap();
    if (h == NULL) {
        return counted(NULL);
    }
    size_t n = nelem * elsize;
    return counted(mi_heap_zalloc(h, round16(n ? n : 1)));
}

/* Growing blocks. glibc grows a large ordinary block in place (mremap);
 * a secret block that moves must be copied and its old copy zeroed, which
 * made a bytearray grown to 1 MiB inside do() 6x slower than outside. So
 * a secret realloc that grows a block to GROW_MIN or more gives it
 * headroom: a block GROW_FACTOR times larger, whose untouched part costs
 * address space in the arena but no memory (the arena is pinned, never
 * pre-faulted; mlock2(MLOCK_ONFAULT) locks pages as they are touched).
 * Later growths happen in place (a block ends up copied about once per
 * GROW_FACTOR growth, instead of once per half). Such a block's
 * high-water mark (the most it was ever asked to hold, all a caller may
 * have written) is kept in a small table, and only that much is zeroed
 * when it is freed or moved, so the headroom is never faulted in.
 * Headroom blocks hold at most a quarter of the arena (a block at most a
 * sixteenth); when there is no room for headroom, a block grows as before
 * (by half at least). */

static inline void
grow_lock(void)
{
    PyMutex_LockFlags(&grow_mutex, _Py_LOCK_DONT_DETACH);
}

/* With grow_mutex held: p's slot or -1. */
static int
grow_find(const void *p)
{
    for (int i = 0; i < GROW_SLOTS; i++) {
        if (grow_table[i].block == (uintptr_t)p) {
            return i;
        }
    }
    return -1;
}

/* How much of the block p (usable bytes) may hold data; forgets p if
 * forget is set. Blocks without headroom: all of it. */
static size_t
grow_high(const void *p, size_t usable, int forget)
{
    if (usable < GROW_MIN
        || _Py_atomic_load_int_acquire(&grow_count) == 0) {
        return usable;
    }
    size_t high = usable;
    grow_lock();
    int i = grow_find(p);
    if (i >= 0) {
        high = grow_table[i].high;
        if (forget) {
            grow_bytes -= grow_table[i].usable;
            grow_table[i].block = 0;
            _Py_atomic_store_int_release(&grow_count, grow_count - 1);
        }
    }
    PyMutex_Unlock(&grow_mutex);
    return high;
}

/* A new secret block for n bytes that replaces a block of old bytes being
 * grown: with headroom if n is large and there is room for it. */
static void *
grow_alloc(size_t n, size_t old)
{
    size_t want = n;
    if (n > old && old >= 512 && n < old + old / 2) {
        want = old + old / 2;           /* at least by half */
    }
    size_t room = n <= SIZE_MAX / GROW_FACTOR ? n * GROW_FACTOR : n;
    if (room > _PySecret_range.size / 16) {
        room = _PySecret_range.size / 16;
    }
    if (n <= old || n < GROW_MIN || room / 2 < n) {
        return _PySecretHeap_Malloc(want);
    }
    grow_lock();
    int slot = grow_find(NULL);
    int ok = slot >= 0 && grow_bytes + room <= _PySecret_range.size / 4;
    if (ok) {
        grow_table[slot].block = 1;     /* reserved while unlocked */
        grow_bytes += room;
    }
    PyMutex_Unlock(&grow_mutex);
    if (!ok) {
        return _PySecretHeap_Malloc(want);
    }
    void *q = _PySecretHeap_Malloc(room);
    grow_lock();
    if (q != NULL) {
        size_t usable = usable_size(q);
        assert(grow_find(q) < 0);       /* freed blocks are forgotten */
        grow_bytes += usable - room;
        grow_table[slot].block = (uintptr_t)q;
        grow_table[slot].high = n;
        grow_table[slot].usable = usable;
        _Py_atomic_store_int_release(&grow_count, grow_count + 1);
    }
    else {
        grow_bytes -= room;
        grow_table[slot].block = 0;
    }
    PyMutex_Unlock(&grow_mutex);
    return q != NULL ? q : _PySecretHeap_Malloc(want);
}

/* Inlined: on the path of every secret free. */
static inline Py_ALWAYS_INLINE void
free_zeroed(void *p, size_t usable, size_t high)
{
    zero_block(p, high);
    count_thread();
    BUMP(live_bytes, -(int64_t)usable);
    BUMP(zeroed_bytes, high);
    BUMP(frees, 1);
    mi_free(p);
}

void
_PySecretHeap_Free(void *p)
{
    size_t usable = usable_size(p);
    free_zeroed(p, usable, grow_high(p, usable, 1));
}

void *
_PySecretHeap_Realloc(void *p, size_t n)
{
    size_t usable = usable_size(p);
    size_t high = grow_high(p, usable, 0);
    if (high < usable) {
        /* A block with headroom: grows in place; moves only to shrink
         * a lot. */
        if (n <= usable && n >= high / 4) {
            if (n > high) {
                grow_lock();
                int i = grow_find(p);
                if (i >= 0 && grow_table[i].high < n) {
                    grow_table[i].high = n;
                }
                PyMutex_Unlock(&grow_mutex);
            }
            return p;
        }
    }
    else if (n <= usable && n >= usable / 2) {
        /* In place; the tail is zeroed when the block is freed. */
        return p;
    }
    /* Never mi_realloc(): it frees the old block unzeroed. */
    void *q = grow_alloc(n, usable);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, p, Py_MIN(high, n));
    free_zeroed(p, usable, grow_high(p, usable, 1));
    return q;
}

void *
_PySecretHeap_Adopt(void *p, size_t old_size, size_t n,
                    void (*free_old)(void *))
{
    void *q = grow_alloc(n, old_size);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, p, Py_MIN(old_size, n));
    explicit_bzero(p, old_size);
    BUMP(zeroed_bytes, old_size);
    free_old(p);
    return q;
}

/* --- threads and shutdown -------------------------------------------- */

void
_PySecretHeap_ThreadDone(void)
{
    mi_heap_t *h = (mi_heap_t *)_PySecret_tls.heap;
    _PySecret_tls.mode = 0;
    if (h == NULL) {
        return;
    }
    _PySecret_tls.heap = NULL;
    /* Pages with live blocks go whole to mimalloc's abandoned pool (a
     * secret segment only holds secret pages), where only a secret heap
     * may reclaim them; then the empty heap is deleted. Never
     * mi_heap_destroy() (frees live blocks) and never a plain
     * mi_heap_delete() (moves secret pages into the ordinary heap). */
    _mi_heap_collect_abandon(h);
    mi_heap_delete(h);
    _Py_atomic_add_int64(&heap_threads, -1);
}

static bool
zero_visitor(const mi_heap_t *heap, const mi_heap_area_t *area, void *block,
             size_t size, void *arg)
{
    (void)heap;
    (void)area;
    if (block != NULL && _PySecret_IsSecret(block)) {
        size = grow_high(block, size, 0);
        explicit_bzero(block, size);
        *(uint64_t *)arg += size;
    }
    return true;
}

/* Py_AtExit: the interpreter is gone; zero the secret blocks still live in
 * this thread's heap and in abandoned secret segments. They stay allocated
 * (a late free still works). */
static void
shutdown_zero(void)
{
    uint64_t n = 0;
    mi_heap_t *h = (mi_heap_t *)_PySecret_tls.heap;
    if (h != NULL) {
        mi_heap_visit_blocks(h, true, zero_visitor, &n);
    }
    _mi_abandoned_pool_visit_blocks(&_mi_abandoned_default, 0, true,
                                    zero_visitor, &n);
    count_thread();
    BUMP(zeroed_bytes, n);
}

/* --- introspection --------------------------------------------------- */

/* Resident bytes of the reservation from offset start to its end. */
static size_t
resident_bytes(size_t start)
{
    enum { BATCH = 4096 };
    unsigned char vec[BATCH];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t total = 0;
    char *p = (char *)_PySecret_range.base + start;
    char *end = (char *)_PySecret_range.base + _PySecret_range.size;
    while (p < end) {
        size_t n = (size_t)(end - p) / page;
        if (n > BATCH) {
            n = BATCH;
        }
        if (mincore(p, n * page, vec) != 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            total += (vec[i] & 1) * page;
        }
        p += n * page;
    }
    return total;
}

PyObject *
_PySecretHeap_Info(void)
{
    int reserved = _PySecret_range.size != 0;
    counters sum = {0};
    PyMutex_LockFlags(&registry_mutex, _Py_LOCK_DONT_DETACH);
    fold(&sum, &retired);
    for (counters *c = registry; c != NULL; c = c->next) {
        fold(&sum, c);
    }
    PyMutex_Unlock(&registry_mutex);
    int partial = reserved && !all_locked();
    const char *lock_err = partial && flags.lock_errno
                           ? strerrorname_np(flags.lock_errno) : NULL;
    /* Touched pages beyond the locked prefix hold (or held) secret blocks
     * that the kernel may swap out. */
    size_t unlocked = partial ? resident_bytes(flags.locked_bytes) : 0;
    return Py_BuildValue(
        "{s:n,s:K,s:n,s:L,s:L,s:K,s:K,s:K,s:K,s:n,s:O,s:n,s:s,s:n,s:O,"
        "s:L,s:i}",
        "reserved", (Py_ssize_t)_PySecret_range.size,
        "base", (unsigned long long)_PySecret_range.base,
        "committed", (Py_ssize_t)(reserved ? resident_bytes(0) : 0),
        "live_bytes", (long long)sum.live_bytes,
        "live_blocks", (long long)(sum.allocations - sum.frees),
        "zeroed_bytes", (unsigned long long)sum.zeroed_bytes,
        "allocations", (unsigned long long)sum.allocations,
        "frees", (unsigned long long)sum.frees,
        "exhausted", (unsigned long long)sum.exhausted,
        "locked_bytes", (Py_ssize_t)flags.locked_bytes,
        /* All of it: a locked prefix is reported by locked_bytes. */
        "locked", all_locked() ? Py_True : Py_False,
        "lock_limit", (Py_ssize_t)(flags.lock_limit == SIZE_MAX
                                   ? -1 : (Py_ssize_t)flags.lock_limit),
        "lock_error", lock_err,
        "unlocked_resident", (Py_ssize_t)unlocked,
        "dontdump", (reserved && flags.dontdump) ? Py_True : Py_False,
        "threads", (long long)_Py_atomic_load_int64(&heap_threads),
        "headroom_blocks", _Py_atomic_load_int_acquire(&grow_count));
}

#else  /* !_Py_SECRET_HEAP: fallback mode */

int
_PySecretHeap_EnsureReserved(void)
{
    return 0;
}

int
_PySecretHeap_OutOfDumpsAndSwap(void)
{
    return 0;
}

void
_PySecretHeap_ThreadDone(void)
{
}

PyObject *
_PySecretHeap_Info(void)
{
    return Py_BuildValue(
        "{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:O,s:i,s:O,s:i,s:O,"
        "s:i,s:i}",
        "reserved", 0, "base", 0, "committed", 0, "live_bytes", 0,
        "live_blocks", 0, "zeroed_bytes", 0, "allocations", 0, "frees", 0,
        "exhausted", 0, "locked_bytes", 0, "locked", Py_False,
        "lock_limit", 0, "lock_error", Py_None, "unlocked_resident", 0,
        "dontdump", Py_False,
        "threads", 0, "headroom_blocks", 0);
}

#endif
