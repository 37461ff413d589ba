/* runtimesecret experiment: the secret heap (spec §3.4).
 *
 * One reserved address range (so "is this block secret?" is one compare,
 * _PySecret_IsSecret()), managed by the bundled mimalloc as an exclusive
 * arena that commits only what it uses (patch "mimalloc: the secret
 * arena"): ordinary heaps never allocate in it and the secret heap never
 * gets memory from anywhere else, so running out fails (MemoryError)
 * instead of placing a secret block in ordinary memory.
 *
 * One mimalloc heap, with its own thread data, serves every thread under a
 * lock: capacity follows the bytes in use, not the number of threads that
 * ever allocated (a heap per thread kept a 32 MiB segment per thread).
 * A thread keeps at most 4 KiB of small blocks it freed, zeroed, to hand
 * out again without the lock (see "the per-thread cache"); they go back
 * when it ends, however it ends (a key destructor).
 *
 * Its size is a budget on committed memory: mimalloc's commits in the range
 * come here (_PySecretHeap_OsCommit), are charged to it and locked against
 * swap (mlock2(MLOCK_ONFAULT): charged to RLIMIT_MEMLOCK as committed, made
 * resident as touched); its decommits (pages it purges, segments it frees)
 * unlock, discard (MADV_DONTNEED) and uncharge them. Every secret block is
 * zeroed (explicit_bzero, or inline stores the compiler cannot drop for
 * small blocks) when it is freed, when a realloc moves it, and at
 * interpreter shutdown if it is still live; so a page mimalloc gives back
 * holds no secret. The range is excluded from core dumps (MADV_DONTDUMP).
 *
 * The allocator hooks are in Objects/obmalloc.c (patch "obmalloc: ...");
 * the thread-local mode is kept by _PySecret_Enter/_PySecret_Leave and the
 * thread hooks (secret_core.c).
 */

#include "Python.h"
#include "pycore_initconfig.h"    // _Py_GetEnv()
#include "pycore_lock.h"          // _PyOnceFlag
#include "pycore_pystate.h"       // _PyInterpreterState_GET()
#include "pycore_secret.h"
#include "pycore_tstate.h"        // pycore_mimalloc.h: mimalloc API
#include "pycore_obmalloc.h"      // MAP_MID_SHIFT (pymalloc's radix tree)

#include <errno.h>
#include <pthread.h>
#include <sched.h>                // sched_yield()
#include <stdatomic.h>            // atomic_signal_fence()
#include <stdlib.h>
#include <string.h>               // explicit_bzero()
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Above every user-space address (x86-64, aarch64): the range's base until
 * it is reserved (see _PySecret_IsSecret). */
#define NO_BASE ((uintptr_t)1 << 63)

#if _Py_SECRET_HEAP
struct _PySecretRange _PySecret_range = {NO_BASE, 0};
_Py_thread_local _PySecretTLS _PySecret_tls;
#endif

#ifndef MLOCK_ONFAULT
#  define MLOCK_ONFAULT 0x01
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)
#define SEGMENT ((uintptr_t)32 << 20)                   /* mimalloc's */
#define DEFAULT_SIZE GiB
#define MIN_SIZE MiB                /* a segment's header and a few pages */
#define MAX_SIZE ((size_t)1 << 40)
/* What the MemoryError saying the heap is full (and the handler index of
 * an unwinding, _PySecretHeap_HandlerIndex) may take beyond the size. */
#define RESERVE MiB

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

/* --- settings -------------------------------------------------------- */

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

typedef struct {
    size_t size;            /* the heap's size (budget); 0: a bad setting */
    int require_lock;       /* refuse secret memory that is not locked */
    char error[300];        /* why a setting is refused */
    /* Set in the environment but ignored (-E, -I): said, not silent. */
    const char *ignored[2];
} settings;

/* The value of -X name: NULL if absent, "" without "=value". */
static const char *
xoption(const char *name)
{
    PyObject *xopts = PySys_GetXOptions();    /* borrowed */
    PyObject *v = xopts ? PyDict_GetItemString(xopts, name) : NULL;
    if (v == NULL) {
        return NULL;
    }
    const char *text = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : "";
    if (text == NULL) {
        PyErr_Clear();
        text = "";
    }
    return text;
}

/* -X name=VALUE, else the environment variable (not under -E/-I, where
 * a variable that is set is recorded as ignored). *source names it. */
static const char *
setting(settings *s, const char *xname, const char *env,
        const char **source)
{
    const char *text = xoption(xname);
    if (text != NULL) {
        *source = xname;
        return text;
    }
    *source = env;
    const PyConfig *config = _Py_GetConfig();
    if (!config->use_environment) {
        const char *raw = getenv(env);
        if (raw != NULL && raw[0] != '\0') {
            s->ignored[s->ignored[0] != NULL] = env;
        }
        return NULL;
    }
    return _Py_GetEnv(config->use_environment, env);
}

/* -X secret_heap_size=SIZE or PYTHONSECRETHEAPSIZE=SIZE (default 1 GiB,
 * 1 MiB to 1024 GiB, exact: never rounded), and -X secret_require_lock
 * or PYTHONSECRETREQUIRELOCK=1. A setting that is not valid leaves size 0
 * and says why: do() raises it, never a silent default. */
static void
read_settings(settings *s)
{
    const char *source;
    memset(s, 0, sizeof(*s));
    s->size = DEFAULT_SIZE;
    const char *text = setting(s, "secret_heap_size", "PYTHONSECRETHEAPSIZE",
                               &source);
    const char *x = source[0] == 's' ? "-X " : "";
    if (text != NULL) {
        size_t size = parse_size(text);
        if (size == 0) {
            PyOS_snprintf(s->error, sizeof(s->error),
                          "%s%s=%.60s is not a size: use a number of bytes "
                          "with an optional K, M or G suffix, e.g. 256M or "
                          "2G", x, source, text);
            s->size = 0;
        }
        else if (size < MIN_SIZE || size > MAX_SIZE) {
            PyOS_snprintf(s->error, sizeof(s->error),
                          "%s%s=%.60s is %s: the secret heap's size must be "
                          "at least 1M (1048576 bytes) and at most 1024G",
                          x, source, text,
                          size < MIN_SIZE ? "too small" : "too large");
            s->size = 0;
        }
        else {
            s->size = size;
        }
    }
    text = setting(s, "secret_require_lock", "PYTHONSECRETREQUIRELOCK",
                   &source);
    x = source[0] == 's' ? "-X " : "";
    if (text != NULL) {
        if (strcmp(text, "") == 0 || strcmp(text, "1") == 0) {
            s->require_lock = 1;
        }
        else if (strcmp(text, "0") != 0) {
            PyOS_snprintf(s->error, sizeof(s->error),
                          "%s%s=%.60s: use 1 (or no value with -X) to "
                          "require a locked secret heap, 0 not to",
                          x, source, text);
            s->size = 0;
        }
    }
}

#if _Py_SECRET_HEAP

/* errno names for messages: strerrorname_np() is glibc 2.32+ only. */
static const char *
errno_name(int e, char *buf, size_t len)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOMEM: return "ENOMEM";
    case EAGAIN: return "EAGAIN";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case EFAULT: return "EFAULT";
    default:
        PyOS_snprintf(buf, len, "errno %d", e);
        return buf;
    }
}

/* "1024 MiB" when a whole number of MiB, else "N bytes". */
static const char *
fmt_size(size_t n, char *buf, size_t len)
{
    if (n >= MiB && n % MiB == 0) {
        PyOS_snprintf(buf, len, "%zu MiB", n / MiB);
    }
    else if (n >= KiB && n % KiB == 0) {
        PyOS_snprintf(buf, len, "%zu KiB", n / KiB);
    }
    else {
        PyOS_snprintf(buf, len, "%zu bytes", n);
    }
    return buf;
}

/* mimalloc (patch "mimalloc: the secret arena"). */
extern bool _mi_manage_os_memory_secret(void *start, size_t size,
                                        mi_arena_id_t *arena_id);
extern void _mi_secret_purge(mi_heap_t *heap);

static settings cfg;                /* read once, when reserving */
static _PyOnceFlag reserve_once;
static int reserve_errno;           /* set if the reservation failed */
static size_t page_size;

/* --- locking: what RLIMIT_MEMLOCK allows ----------------------------- */

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
has_cap_ipc_lock(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int cap = 0;
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "CapEff:", 7) == 0) {
            cap = (strtoull(line + 7, NULL, 16) >> 14) & 1;  /* IPC_LOCK */
            break;
        }
    }
    fclose(f);
    return cap;
}

static struct {
    size_t limit;           /* RLIMIT_MEMLOCK soft limit, SIZE_MAX: none */
    int cap;                /* CAP_IPC_LOCK */
    size_t lockable;        /* when reserved: what the heap may lock */
    size_t need;            /* the most it may have locked (lock_need) */
    int fully;              /* all of that can be */
    int dontdump;
    int dontdump_errno;
} lockinfo;

/* How much more the process may lock, besides what the heap has locked. */
static size_t
lockable_now(size_t locked_by_heap, size_t *limit, int *cap)
{
    struct rlimit rl;
    *cap = has_cap_ipc_lock();
    *limit = SIZE_MAX;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        *limit = (size_t)rl.rlim_cur;
    }
    if (*cap || *limit == SIZE_MAX) {
        return SIZE_MAX;
    }
    size_t other = vmlck_bytes();
    other = other > locked_by_heap ? other - locked_by_heap : 0;
    return *limit > other ? *limit - other : 0;
}

/* --- commit accounting (mimalloc's OS primitives for the range) ------ */

/* One bit per page of the range: committed (charged to the size), and
 * locked (in a locked mapping: what VmLck counts). Changed only by the
 * primitives below, which mimalloc calls with the heap lock held (purges
 * and segment frees of the secret arena happen there too; patch "mimalloc:
 * the secret arena"); map_mutex keeps them right even so.
 *
 * Locking. The kernel keeps a mapping (VMA) per run of pages whose lock
 * state differs from its neighbours', and a process may have at most
 * vm.max_map_count of them (65530 by default): locking and unlocking the
 * 64 KiB spans mimalloc commits and purges made about 16 mappings per
 * committed MiB, and at a few GiB thread creation failed. So the range is
 * locked in chunks: a chunk is locked whole (MLOCK_ONFAULT: charged to
 * RLIMIT_MEMLOCK, made resident only as touched) while any of its pages is
 * committed, and unlocked only when none is; a page decommitted inside a
 * locked chunk is discarded without unlocking it (MADV_DONTNEED_LOCKED, or
 * unlock, discard and lock again, which merges the mapping back). A chunk
 * is what may be locked (the lock limit, or the range) / LOCK_RUNS, a power
 * of two, at least the commit unit: at most LOCK_RUNS locked runs whatever
 * the pattern of use. Under a limit of 256 MiB or less (8 MiB is Linux's
 * default) a chunk is the commit unit: exactly what is committed is
 * locked. */
#define COMMIT_UNIT ((size_t)64 << 10)      /* mimalloc's MI_COMMIT_SIZE */
#define LOCK_RUNS 4096
#ifndef MADV_DONTNEED_LOCKED
#  define MADV_DONTNEED_LOCKED 24           /* Linux 5.18 */
#endif
static uint64_t *committed_map, *locked_map;
static uint32_t *chunk_committed;   /* committed pages in each chunk */
static size_t chunk_pages;          /* pages per chunk */
static size_t range_pages;
static size_t test_lock_chunk;      /* tests: the chunk, before reserving */
static PyMutex map_mutex;
static size_t committed_bytes, locked_bytes, peak_committed;
static int64_t lock_failures;       /* commits that could not be locked */
static int lock_errno;              /* mlock2's last error */
static int64_t unlock_failures;     /* munlock/madvise failures */
static int unlock_errno;
static int64_t decommits;
static int no_dontneed_locked;      /* the kernel lacks it (before 5.18) */
/* Tests (_testsecret): decommits keep their pages (committed, locked and
 * charged as before; mimalloc commits them again, which charges nothing),
 * so that a test reading a freed block sees whether it was zeroed, not a
 * page the kernel gave back zero. */
static int hold_decommits;
/* Set when a commit is refused, so that mimalloc does not go on to take
 * fresh segments it cannot use (each would be charged its header); cleared
 * by the allocation that saw it. Under the heap lock. */
static int commit_refused;

enum { FAIL_NONE, FAIL_FULL, FAIL_LOCK };
/* Set when a secret allocation of this thread fails; in do() each
 * PyErr_NoMemory() until it is cleared says why (patch 0010), outside
 * do() the next one (see _PySecretHeap_TakeFailure). A failure
 * its caller handled without PyErr_NoMemory() must not be blamed for a
 * later, unrelated MemoryError (a size overflow, say): the next secret
 * allocation that succeeds clears it (not one from the reserve: that is
 * the MemoryError being made, or its unwinding), and so do each do()
 * entry and the outermost do()'s exit. */
static _Py_thread_local int alloc_failed;
static _Py_thread_local size_t failed_size;
static _Py_thread_local int failed_errno;
/* While set, this thread may commit up to RESERVE beyond the size: only
 * while it builds the heap's MemoryError, an unwinding's handler index, or
 * the traceback entries of the heap's MemoryError as it unwinds (patches
 * 0010 and 0015). Never for what a thread allocates after catching it: a
 * retry loop would drain the reserve, and the next failure would find no
 * memory for its own error. */
static _Py_thread_local int reserve_ok;
/* The last two MemoryErrors the heap's failures made on this thread
 * (compared, never dereferenced), and how many allocations of their
 * unwinding (a traceback entry, a frame object) each was given the reserve
 * for. Two: should a frame object of the unwinding fail even so, the
 * MemoryError that failure makes is dropped, and the first one must keep
 * its reserve. Each gets UNWIND_GRANTS (a traceback entry and the caller's
 * frame object per frame: 2,000 frames, a few hundred KiB): code that
 * catches the error and raises it again in a loop grows its traceback by
 * an entry each time, and would drain the reserve. */
#define UNWIND_GRANTS 4000
static int unwind_grants = UNWIND_GRANTS;       /* tests may change it */
static _Py_thread_local struct {
    const void *exc;
    int grants;
} heap_errors[2];
/* Tests (_testsecret): once fail_after more secret allocations of this
 * thread succeeded, the next fail_count fail (-1: all), except those the
 * reserve serves unless fail_reserve (fail_after -1: off). */
static _Py_thread_local Py_ssize_t fail_after = -1;
static _Py_thread_local Py_ssize_t fail_count = -1;
static _Py_thread_local int fail_reserve;

static inline int
bit(const uint64_t *map, size_t i)
{
    return (map[i >> 6] >> (i & 63)) & 1;
}

/* Set (on) or clear the bits first..last-1 of map; returns how many
 * changed. */
static size_t
set_bits(uint64_t *map, size_t first, size_t last, int on)
{
    size_t changed = 0;
    for (size_t i = first; i < last; i++) {
        uint64_t m = (uint64_t)1 << (i & 63);
        uint64_t *w = &map[i >> 6];
        if (((*w & m) != 0) != on) {
            *w ^= m;
            changed++;
        }
    }
    return changed;
}

static size_t
count_clear(const uint64_t *map, size_t first, size_t last)
{
    size_t n = 0;
    for (size_t i = first; i < last; i++) {
        n += !bit(map, i);
    }
    return n;
}

static void
page_span(void *start, size_t size, size_t *first, size_t *last)
{
    uintptr_t off = (uintptr_t)start - _PySecret_range.base;
    *first = off / page_size;
    *last = (off + size + page_size - 1) / page_size;
}

static inline char *
page_addr(size_t i)
{
    return (char *)_PySecret_range.base + i * page_size;
}

/* Lock the runs of unlocked pages in first..last-1; 0 if one failed (the
 * others stay locked). */
static int
lock_runs(size_t first, size_t last)
{
    int ok = 1;
    size_t i = first;
    while (i < last) {
        if (bit(locked_map, i)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < last && !bit(locked_map, j)) {
            j++;
        }
        if (syscall(SYS_mlock2, page_addr(i), (j - i) * page_size,
                    MLOCK_ONFAULT) == 0) {
            locked_bytes += set_bits(locked_map, i, j, 1) * page_size;
        }
        else {
            lock_errno = errno;
            ok = 0;
        }
        i = j;
    }
    return ok;
}

/* Unlock the runs of locked pages in first..last-1 (their pages hold
 * nothing). A failure leaves them locked, and counted. */
static void
unlock_runs(size_t first, size_t last)
{
    size_t i = first;
    while (i < last) {
        if (!bit(locked_map, i)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < last && bit(locked_map, j)) {
            j++;
        }
        if (munlock(page_addr(i), (j - i) * page_size) == 0) {
            locked_bytes -= set_bits(locked_map, i, j, 0) * page_size;
        }
        else {
            unlock_errno = errno;
            unlock_failures++;
        }
        i = j;
    }
}

/* Locked pages in first..last-1? */
static int
any_locked(size_t first, size_t last)
{
    for (size_t i = first; i < last; i++) {
        if (bit(locked_map, i)) {
            return 1;
        }
    }
    return 0;
}

/* Discard the pages first..last-1 (given back to the kernel), keeping
 * their lock state: 0 or an errno value. */
static int
discard(size_t first, size_t last)
{
    char *p = page_addr(first);
    size_t size = (last - first) * page_size;
    if (!any_locked(first, last)) {
        return madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
    }
    if (!no_dontneed_locked) {
        if (madvise(p, size, MADV_DONTNEED_LOCKED) == 0) {
            return 0;
        }
        if (errno != EINVAL) {
            return errno;
        }
        no_dontneed_locked = 1;
    }
    /* Before Linux 5.18: MADV_DONTNEED refuses locked pages. Unlock,
     * discard, lock again: the kernel merges the mapping back. */
    if (munlock(p, size) != 0) {
        return errno;
    }
    int err = madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
    size_t i = first;
    while (i < last) {
        size_t j = i;
        int on = bit(locked_map, i);
        while (j < last && bit(locked_map, j) == on) {
            j++;
        }
        if (on && syscall(SYS_mlock2, page_addr(i), (j - i) * page_size,
                          MLOCK_ONFAULT) != 0) {
            lock_errno = errno;
            locked_bytes -= set_bits(locked_map, i, j, 0) * page_size;
        }
        i = j;
    }
    return err;
}

int
_PySecretHeap_OsCommit(void *start, size_t size)
{
    size_t first, last;
    page_span(start, size, &first, &last);
    PyMutex_LockFlags(&map_mutex, _Py_LOCK_DONT_DETACH);
    size_t fresh = count_clear(committed_map, first, last) * page_size;
    size_t limit = cfg.size + (reserve_ok ? RESERVE : 0);
    if (commit_refused || committed_bytes + fresh > limit) {
        commit_refused = 1;
        alloc_failed = FAIL_FULL;
        PyMutex_Unlock(&map_mutex);
        return ENOMEM;
    }
    /* The chunks that hold these pages, whole; near the lock limit, these
     * pages alone. */
    size_t cfirst = first / chunk_pages * chunk_pages;
    size_t clast = Py_MIN((last + chunk_pages - 1) / chunk_pages
                          * chunk_pages, range_pages);
    if (!lock_runs(cfirst, clast) && !lock_runs(first, last)) {
        lock_failures++;
        if (cfg.require_lock) {
            /* Never secret memory the kernel may swap. */
            commit_refused = 1;
            alloc_failed = FAIL_LOCK;
            failed_errno = lock_errno;
            PyMutex_Unlock(&map_mutex);
            return ENOMEM;
        }
    }
    for (size_t i = first; i < last; i++) {
        if (!bit(committed_map, i)) {
            committed_map[i >> 6] |= (uint64_t)1 << (i & 63);
            chunk_committed[i / chunk_pages]++;
        }
    }
    committed_bytes += fresh;
    if (committed_bytes > peak_committed) {
        peak_committed = committed_bytes;
    }
    PyMutex_Unlock(&map_mutex);
    return 0;
}

int
_PySecretHeap_OsDecommit(void *start, size_t size)
{
    size_t first, last;
    page_span(start, size, &first, &last);
    if (hold_decommits) {
        return 0;
    }
    PyMutex_LockFlags(&map_mutex, _Py_LOCK_DONT_DETACH);
    /* Its blocks were zeroed when freed: the pages given back hold no
     * secret. If they cannot be discarded they stay committed (charged),
     * and mimalloc commits them again before use (nothing to charge). */
    int err = discard(first, last);
    if (err != 0) {
        unlock_errno = err;
        unlock_failures++;
        PyMutex_Unlock(&map_mutex);
        return err;
    }
    for (size_t i = first; i < last; i++) {
        if (bit(committed_map, i)) {
            committed_map[i >> 6] &= ~((uint64_t)1 << (i & 63));
            chunk_committed[i / chunk_pages]--;
            committed_bytes -= page_size;
        }
    }
    /* Unlock the chunks left with nothing committed. */
    for (size_t c = first / chunk_pages; c * chunk_pages < last; c++) {
        if (chunk_committed[c] == 0) {
            unlock_runs(c * chunk_pages,
                        Py_MIN((c + 1) * chunk_pages, range_pages));
        }
    }
    decommits++;
    PyMutex_Unlock(&map_mutex);
    return 0;
}

/* Committed pages that are not locked. */
static size_t
unlocked_committed(void)
{
    size_t n = 0;
    for (size_t w = 0; w < (range_pages + 63) / 64; w++) {
        n += (size_t)__builtin_popcountll(committed_map[w] & ~locked_map[w]);
    }
    return n * page_size;
}

/* --- the heap -------------------------------------------------------- */

static mi_arena_id_t secret_arena;
static mi_tld_t heap_tld;
static mi_heap_t the_heap;
/* What native code allocates in secret mode (secret_native.c): its own
 * heap in the same arena and under the same lock, so that the shutdown
 * zeroing, which zeroes the blocks of the_heap still live once the
 * interpreter is gone, leaves them alone: the C library and other
 * libraries keep using such blocks after it (stdio buffers, the dynamic
 * linker's records of a module loaded in do(), OpenSSL's global state
 * made in do(), until their atexit handlers and destructors ran). They
 * are zeroed when freed, as every secret block. */
static mi_heap_t native_heap;
static int native_used;
static PyMutex heap_mutex;

/* Counters for heap_info(), under the heap lock. */
typedef struct {
    int64_t live_bytes;
    int64_t zeroed_bytes;
    int64_t allocations;
    int64_t frees;
    int64_t exhausted;
    int64_t trims;
    int64_t native_allocations;     /* secret blocks native code made */
    int64_t caches_taken;           /* other threads' caches, heap full */
} heap_stats;
static heap_stats stats;

/* Giving memory back: mimalloc purges freed pages after a delay, when the
 * heap is next used. After large frees (a large do() that returned) the
 * heap purges at once: when committed memory exceeds what is in use by
 * more than trim_floor (what the last trim could not give back) plus
 * TRIM_MIN or half the bytes in use. */
#define TRIM_MIN (4 * MiB)
#define GROW_MIN ((size_t)64 << 10)     /* see grow_alloc() */
static size_t trim_floor;

static inline void
heap_lock(void)
{
    PyMutex_LockFlags(&heap_mutex, _Py_LOCK_DONT_DETACH);
}

static inline void
heap_unlock(void)
{
    PyMutex_Unlock(&heap_mutex);
}

/* With the heap lock held. */
static void
trim_locked(void)
{
    if (native_used) {
        _mi_secret_purge(&native_heap);
    }
    _mi_secret_purge(&the_heap);
    stats.trims++;
    size_t live = (size_t)stats.live_bytes;
    trim_floor = committed_bytes > live ? committed_bytes - live : 0;
}

/* Checked at every 64th free and at every free of a large block: a
 * trim needs megabytes freed, and the check costs instructions. */
static unsigned int free_tick;

static inline void
maybe_trim(size_t freed)
{
    if ((++free_tick & 63) != 0 && freed < GROW_MIN) {
        return;
    }
    size_t live = (size_t)stats.live_bytes;
    size_t spare = committed_bytes > live ? committed_bytes - live : 0;
    if (spare <= trim_floor) {
        trim_floor = spare;
    }
    else if (spare - trim_floor > Py_MAX(TRIM_MIN, live / 2)) {
        trim_locked();
    }
}

int
_PySecret_GetMode(void)
{
    return _PySecret_tls.mode;
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

void
_PySecretHeap_ForgetFailure(void)
{
    alloc_failed = FAIL_NONE;
    heap_errors[0].exc = heap_errors[1].exc = NULL;
    _PySecret_tls.heap_error = NULL;
}

int
_PySecretHeap_FailurePending(void)
{
    return alloc_failed != FAIL_NONE;
}

int
_PySecretHeap_SetReserve(int on)
{
    int was = reserve_ok;
    reserve_ok = on;
    return was;
}

void
_PySecretHeap_NoteError(PyObject *exc)
{
    heap_errors[1] = heap_errors[0];
    heap_errors[0].exc = exc;
    heap_errors[0].grants = 0;
    _PySecret_tls.heap_error = exc;     /* ceval's test: one is noted */
}

/* Before a traceback entry or a frame object is made for exc as it
 * unwinds (ceval's error path, take_ownership: patches 0015, 0021): the
 * reserve if exc is the heap's MemoryError (the entry and frame object
 * would not fit in a full heap), for nothing else. Returns the previous
 * setting, for _PySecretHeap_SetReserve(). */
int
_PySecretHeap_UnwindReserve(PyObject *exc)
{
    int was = reserve_ok;
    if (heap_errors[0].exc == NULL || exc == NULL) {
        return was;
    }
    for (int i = 0; i < 2; i++) {
        /* The type too: another exception may have taken the address of
         * a noted one that was freed. */
        if (heap_errors[i].exc == (const void *)exc
            && Py_IS_TYPE(exc, (PyTypeObject *)PyExc_MemoryError)) {
            if (heap_errors[i].grants < unwind_grants) {
                heap_errors[i].grants++;
                reserve_ok = 1;
            }
            break;
        }
    }
    return was;
}

static int
injected_failure(void)
{
    if (fail_after < 0 || (reserve_ok && !fail_reserve)) {
        return 0;
    }
    if (fail_after > 0) {
        fail_after--;
        return 0;
    }
    if (fail_count > 0 && --fail_count == 0) {
        fail_after = -1;                /* that was the last one */
    }
    return 1;
}

/* --- the per-thread cache of zeroed blocks ---------------------------- */

/* Every secret allocation and free took the heap lock (two atomic
 * compare-and-swaps, which also wait for the zeroing stores before them):
 * about 48 ns an allocation and its free, 13 of them in a coroutine step
 * of an asyncio.Queue ping-pong. So each thread keeps a few small blocks
 * it freed, already zeroed, and hands them out again without the lock.
 * A cached block is free for the program and zero but for its first word
 * (the link to the next one, an address in the heap); the heap still
 * counts it as allocated. A thread holds at most CACHE_BYTES: they go
 * back to the heap when the thread ends (_PySecretHeap_ThreadDone, or the
 * key's destructor for any other thread), and when any allocation finds
 * the heap full: a cached block keeps its whole mimalloc page (64 KiB)
 * from being given back, so the failing thread takes every thread's
 * cache (cache_reclaim_locked). A fork() child keeps the forking
 * thread's cache; the other threads' blocks stay allocated there (they
 * are zero). Only the_heap's blocks of up to CACHE_MAX bytes are cached:
 * objects, the blocks a step makes by the dozen.
 *
 * Taking another thread's cache: the owner marks each operation busy and
 * checks the cache's steal flag with no fence between (a compiler barrier
 * only); the taker, holding the heap lock, sets the flags, then runs
 * membarrier(PRIVATE_EXPEDITED), a full barrier on every CPU that runs a
 * thread of ours. So either the owner sees the flag (and takes the heap
 * lock instead, which waits for the taker) or the taker sees it busy and
 * waits for that one operation to end: the owner's path stays free of
 * atomic read-modify-writes. Without membarrier() there is no cache. */
#define CACHE_MAX 256
#define CACHE_BINS (CACHE_MAX / 16)     /* one per 16 bytes of size */
#define CACHE_DEPTH 16                  /* blocks a bin keeps at most */
#define CACHE_BYTES (4 * KiB)           /* bytes a thread keeps at most */

enum { CACHE_NONE, CACHE_ON, CACHE_OFF };

typedef struct block_cache {
    void *head[CACHE_BINS];             /* bin i: blocks of 16 * (i + 1) */
    uint8_t count[CACHE_BINS];
    int state;
    int busy;                           /* the owner is in an operation */
    int steal;                          /* a taker holds the heap lock */
    /* Written by the owner only; heap_info() reads them (relaxed). */
    int64_t bytes;                      /* in the cache */
    int64_t allocations, frees, zeroed_bytes;
    struct block_cache *prev, *next;    /* caches: under the heap lock */
} block_cache;

static _Py_thread_local block_cache tcache;
static block_cache *caches;             /* every thread's, under the lock */
static pthread_key_t cache_key;
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;
static int cache_key_ok;                /* and membarrier() registered */
/* membarrier() failed when a cache had to be taken (a seccomp filter put
 * in place later): no cache starts, and each thread gives its own back
 * at its next operation on it. */
static int caches_off;

#ifndef MEMBARRIER_CMD_PRIVATE_EXPEDITED
#  define MEMBARRIER_CMD_PRIVATE_EXPEDITED (1 << 3)
#  define MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED (1 << 4)
#endif

static int
membarrier(int cmd)
{
#ifdef SYS_membarrier
    return (int)syscall(SYS_membarrier, cmd, 0, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

static void cache_disown(void);

/* The owner's side of an operation on its cache: 0 if a taker holds it
 * (use the heap instead). */
static inline int
cache_enter(void)
{
    _Py_atomic_store_int_relaxed(&tcache.busy, 1);
    /* membarrier() on the taker's side orders the two for the CPU. */
    atomic_signal_fence(memory_order_seq_cst);
    if (_Py_atomic_load_int_acquire(&tcache.steal)) {
        _Py_atomic_store_int_release(&tcache.busy, 0);
        if (_Py_atomic_load_int_relaxed(&caches_off)) {
            cache_disown();
        }
        return 0;
    }
    return 1;
}

static inline void
cache_leave(void)
{
    _Py_atomic_store_int_release(&tcache.busy, 0);
}

static void cache_flush_locked(block_cache *c);
static void cache_reclaim_locked(void);
static void cache_retire_locked(block_cache *c, int flush);

static inline void
cache_add(int64_t *counter, int64_t d)
{
    _Py_atomic_store_int64_relaxed(counter, *counter + d);
}

/* The bin that serves a request of n bytes (rounded to 16, at most
 * CACHE_MAX): mimalloc's size classes are multiples of 16 up to 128 and
 * of 32 up to 256. A freed block goes to the bin of its usable size. */
static inline size_t
cache_bin(size_t n)
{
    if (n > 128) {
        n = (n + 31) & ~(size_t)31;
    }
    return n / 16 - 1;
}

/* A cached block for n bytes (rounded, at most CACHE_MAX), all zero, or
 * NULL. */
static inline void *
cache_pop(size_t n)
{
    size_t i = cache_bin(n);
    if (tcache.state != CACHE_ON || !cache_enter()) {
        return NULL;
    }
    void *p = tcache.head[i];
    if (p != NULL) {
        tcache.head[i] = *(void **)p;
        *(void **)p = NULL;
        tcache.count[i]--;
        cache_add(&tcache.bytes, -(int64_t)(16 * (i + 1)));
        cache_add(&tcache.allocations, 1);
    }
    cache_leave();
    return p;
}

static inline void *
heap_malloc(mi_heap_t *heap, size_t n, size_t align, int zero)
{
    if (align != 0) {
        return zero ? mi_heap_zalloc_aligned(heap, n, align)
                    : mi_heap_malloc_aligned(heap, n, align);
    }
    return zero ? mi_heap_zalloc(heap, n) : mi_heap_malloc(heap, n);
}

/* The heap lock is held; n is rounded. */
static inline void *
alloc_locked(mi_heap_t *heap, size_t n, size_t align, int zero)
{
    if (__builtin_expect(committed_bytes > cfg.size, 0) && !reserve_ok) {
        /* The reserve was used (a MemoryError, its unwinding): the room
         * left in the pages it committed is the reserve's, not for what a
         * thread allocates after catching the error (a retry loop would
         * eat it, and the next failure would find no memory for its own
         * error). Beyond the size only reserve allocations are served
         * until a trim brings committed memory back under it. */
        cache_reclaim_locked();
        trim_locked();
        if (committed_bytes > cfg.size) {
            alloc_failed = FAIL_FULL;
            return NULL;
        }
    }
    void *p = heap_malloc(heap, n, align, zero);
    if (__builtin_expect(p == NULL || commit_refused, 0)) {
        commit_refused = 0;
        if (p == NULL) {
            /* Give back what other threads freed, the pages mimalloc
             * keeps for later and every thread's cached blocks, then try
             * once more. */
            cache_reclaim_locked();
            trim_locked();
            p = heap_malloc(heap, n, align, zero);
            commit_refused = 0;
        }
    }
    return p;
}

static inline void *
heap_alloc_in(mi_heap_t *heap, size_t n, size_t align, int zero)
{
    if (__builtin_expect(_PySecret_range.size == 0, 0)) {
        alloc_failed = FAIL_FULL;
        failed_size = n;
        return NULL;
    }
    if (__builtin_expect(fail_after >= 0, 0) && injected_failure()) {
        alloc_failed = FAIL_FULL;
        failed_size = n;
        heap_lock();
        stats.exhausted++;
        heap_unlock();
        return NULL;
    }
    n = round16(n ? n : 1);
    if (heap == &the_heap && align == 0 && n <= CACHE_MAX) {
        void *p = cache_pop(n);
        if (p != NULL) {
            if (!reserve_ok) {
                alloc_failed = FAIL_NONE;
            }
            return p;
        }
    }
    heap_lock();
    void *p = alloc_locked(heap, n, align, zero);
    if (p != NULL) {
        stats.live_bytes += usable_size(p);
        stats.allocations++;
        if (heap == &native_heap) {
            stats.native_allocations++;
        }
    }
    else {
        stats.exhausted++;
    }
    heap_unlock();
    if (p == NULL) {
        if (alloc_failed == FAIL_NONE) {
            alloc_failed = FAIL_FULL;    /* no address space left */
        }
        failed_size = n;
        return NULL;
    }
    if (!reserve_ok) {
        alloc_failed = FAIL_NONE;
    }
    return p;
}

static void *
heap_alloc(size_t n, int zero)
{
    return heap_alloc_in(&the_heap, n, 0, zero);
}

void *
_PySecretHeap_Malloc(size_t n)
{
    return heap_alloc(n, 0);
}

void *
_PySecretHeap_Calloc(size_t nelem, size_t elsize)
{
    if (elsize != 0 && nelem > SIZE_MAX / elsize) {
        alloc_failed = FAIL_NONE;       /* an overflow, not a full heap */
        return NULL;
    }
    return heap_alloc(nelem * elsize, 1);
}

/* Growing blocks. glibc grows a large ordinary block in place (mremap);
 * a secret block that moves must be copied and its old copy zeroed, which
 * made a bytearray grown to 1 MiB inside do() 6x slower than outside. So
 * a secret realloc that grows a block to GROW_MIN or more gives it
 * headroom: a block GROW_FACTOR times larger, whose untouched part is
 * committed (charged to the heap's size and to RLIMIT_MEMLOCK) but never
 * faulted in (mlock2(MLOCK_ONFAULT) makes pages resident as they are
 * touched). Later growths happen in place (a block ends up copied about
 * once per GROW_FACTOR growth, instead of once per half). Such a block's
 * high-water mark (the most it was ever asked to hold, all a caller may
 * have written) is kept in a small table, and only that much is zeroed
 * when it is freed or moved, so the headroom is never faulted in.
 * Headroom blocks hold at most a quarter of the heap (a block at most a
 * sixteenth); when there is no room for headroom, a block grows as before
 * (by half at least). */
#define GROW_FACTOR 32
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
    if (room > cfg.size / 16) {
        room = cfg.size / 16;
    }
    if (n <= old || n < GROW_MIN || room / 2 < n) {
        return _PySecretHeap_Malloc(want);
    }
    grow_lock();
    int slot = grow_find(NULL);
    int ok = slot >= 0 && grow_bytes + room <= cfg.size / 4;
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
    heap_lock();
    stats.live_bytes -= (int64_t)usable;
    stats.zeroed_bytes += (int64_t)high;
    stats.frees++;
    mi_free(p);
    maybe_trim(usable);
    heap_unlock();
}

/* With the heap lock held: the cache's blocks back to the heap. */
static void
cache_flush_locked(block_cache *c)
{
    for (int i = 0; i < CACHE_BINS; i++) {
        void *p = c->head[i];
        while (p != NULL) {
            void *next = *(void **)p;
            *(void **)p = NULL;
            stats.live_bytes -= (int64_t)usable_size(p);
            mi_free(p);
            p = next;
        }
        c->head[i] = NULL;
        c->count[i] = 0;
    }
    _Py_atomic_store_int64_relaxed(&c->bytes, 0);
}

/* With the heap lock held: every thread's cached blocks back to the heap
 * (an allocation found it full). A thread in the middle of an operation
 * on its cache is waited for, a little; one that stays there (stopped by
 * a debugger, say) keeps its cache. */
static void
cache_reclaim_locked(void)
{
    if (tcache.state == CACHE_ON) {
        cache_flush_locked(&tcache);
    }
    int others = 0;
    for (block_cache *c = caches; c != NULL; c = c->next) {
        if (c != &tcache && _Py_atomic_load_int64_relaxed(&c->bytes) != 0) {
            _Py_atomic_store_int_relaxed(&c->steal, 1);
            others = 1;
        }
    }
    if (!others) {
        return;
    }
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
        /* Caches can no longer be taken: none starts from now on, and
         * every steal flag stays set, so that each owner gives its cache
         * back at its next operation (cache_disown). */
        _Py_atomic_store_int_relaxed(&caches_off, 1);
        for (block_cache *c = caches; c != NULL; c = c->next) {
            _Py_atomic_store_int_relaxed(&c->steal, 1);
        }
        cache_retire_locked(&tcache, 1);
        _Py_atomic_store_int_relaxed(&tcache.steal, 0);
        return;
    }
    for (block_cache *c = caches; c != NULL; c = c->next) {
        if (!_Py_atomic_load_int_relaxed(&c->steal)) {
            continue;
        }
        for (int spins = 0; _Py_atomic_load_int_acquire(&c->busy); ) {
            if (++spins > 1000) {
                break;
            }
            sched_yield();
        }
        if (!_Py_atomic_load_int_acquire(&c->busy)) {
            cache_flush_locked(c);
            stats.caches_taken++;
        }
    }
    for (block_cache *c = caches; c != NULL; c = c->next) {
        if (c != &tcache) {
            _Py_atomic_store_int_release(&c->steal, 0);
        }
    }
}

/* Caches are off (membarrier() failed): this thread's goes back. */
static void
cache_disown(void)
{
    heap_lock();
    cache_retire_locked(&tcache, 1);
    heap_unlock();
    /* Off the list: no taker looks at it any more. */
    _Py_atomic_store_int_relaxed(&tcache.steal, 0);
}

/* With the heap lock held: c's thread ends (or is gone, in a fork()
 * child); its counts join the heap's. */
static void
cache_retire_locked(block_cache *c, int flush)
{
    if (c->state != CACHE_ON) {
        c->state = CACHE_OFF;
        return;
    }
    if (flush) {
        cache_flush_locked(c);
    }
    else {
        /* Its blocks stay allocated, zero, out of every count. */
        stats.live_bytes -= c->bytes;
        c->bytes = 0;
    }
    stats.allocations += c->allocations;
    stats.frees += c->frees;
    stats.zeroed_bytes += c->zeroed_bytes;
    c->allocations = c->frees = c->zeroed_bytes = 0;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    }
    else {
        caches = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    c->state = CACHE_OFF;
}

/* The thread ends: its cached blocks go back. Also the key's destructor,
 * for a thread that ends without _PySecretHeap_ThreadDone() (a foreign
 * thread, pthread_exit). A free after this goes to the heap. */
static void
cache_thread_end(void *unused)
{
    (void)unused;
    if (tcache.state != CACHE_ON) {
        tcache.state = CACHE_OFF;       /* not on the list: no lock */
        return;
    }
    heap_lock();
    cache_retire_locked(&tcache, 1);
    heap_unlock();
}

static void
cache_key_init(void)
{
    /* No membarrier() (an old kernel, a seccomp filter): no cache, as a
     * cached block could not be taken back when the heap is full. */
    cache_key_ok = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
                   && pthread_key_create(&cache_key, cache_thread_end) == 0;
}

/* The thread's first cached free: its cache joins the list. Only a thread
 * that runs Python: one whose key destructors may already have run (a
 * late free while it exits) would leave its cache on the list. */
static int
cache_start(void)
{
    if (_PyThreadState_GET() == NULL) {
        return 0;                       /* may start later */
    }
    (void)pthread_once(&cache_key_once, cache_key_init);
    if (!cache_key_ok || pthread_setspecific(cache_key, &tcache) != 0) {
        tcache.state = CACHE_OFF;       /* could not hand it back */
        return 0;
    }
    heap_lock();
    if (_Py_atomic_load_int_relaxed(&caches_off)) {
        heap_unlock();
        tcache.state = CACHE_OFF;
        return 0;
    }
    tcache.state = CACHE_ON;
    tcache.prev = NULL;
    tcache.next = caches;
    if (caches != NULL) {
        caches->prev = &tcache;
    }
    caches = &tcache;
    heap_unlock();
    return 1;
}

/* Keep the freed block p (usable bytes, at most CACHE_MAX) in the
 * thread's cache, zeroed: 1, or 0 if the cache has no room for it. */
static inline int
cache_push(void *p, size_t usable)
{
    size_t i = usable / 16 - 1;
    if ((usable & 15) != 0
        /* native code's heap keeps its own blocks */
        || mi_page_heap(_mi_ptr_page(p)) != &the_heap) {
        return 0;
    }
    if (__builtin_expect(tcache.state != CACHE_ON, 0)) {
        if (tcache.state == CACHE_OFF || !cache_start()) {
            return 0;
        }
    }
    if (!cache_enter()) {
        return 0;
    }
    if (tcache.count[i] >= CACHE_DEPTH
        || tcache.bytes + (int64_t)usable > (int64_t)CACHE_BYTES) {
        cache_leave();
        return 0;
    }
    zero_block(p, usable);
    *(void **)p = tcache.head[i];
    tcache.head[i] = p;
    tcache.count[i]++;
    cache_add(&tcache.bytes, (int64_t)usable);
    cache_add(&tcache.frees, 1);
    cache_add(&tcache.zeroed_bytes, (int64_t)usable);
    cache_leave();
    return 1;
}

void
_PySecretHeap_Free(void *p)
{
    size_t usable = usable_size(p);
    if (usable <= CACHE_MAX && cache_push(p, usable)) {
        return;
    }
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
    heap_lock();
    stats.zeroed_bytes += (int64_t)old_size;
    heap_unlock();
    free_old(p);
    return q;
}

/* --- native code's blocks (secret_native.c) ------------------------- */

/* A secret block for native code in secret mode: n bytes (malloc(0) gets
 * a block too), aligned to align if that is above 16, zeroed if asked.
 * NULL when the heap is full (or the alignment is above what the arena
 * can give, 16 MiB), as for the Python domains: never ordinary memory. */
void *
_PySecretHeap_NativeAlloc(size_t n, size_t align, int zero)
{
    if (align <= 16) {
        align = 0;
    }
    native_used = 1;
    return heap_alloc_in(&native_heap, n, align, zero);
}

/* realloc() of the secret block p by native code, in secret mode or not:
 * a secret block in the same heap (a block the Python domains made keeps
 * their rules, headroom included). In place when it fits and is not
 * shrunk below half; else a new block (by half at least when it grows, so
 * that a buffer grown by small steps is copied O(log n) times) and the
 * old one zeroed. NULL (p untouched) when the heap is full. */
void *
_PySecretHeap_NativeRealloc(void *p, size_t n)
{
    if (mi_page_heap(_mi_ptr_page(p)) != &native_heap) {
        return _PySecretHeap_Realloc(p, n);
    }
    size_t usable = usable_size(p);
    if (n <= usable && n >= usable / 2) {
        return p;
    }
    size_t want = n;
    if (n > usable && usable >= 512 && n - usable < usable / 2) {
        want = usable + usable / 2;
    }
    void *q = heap_alloc_in(&native_heap, want, 0, 0);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, p, Py_MIN(usable, n));
    free_zeroed(p, usable, usable);
    return q;
}

/* malloc_usable_size() of a secret block: what its owner may write (a
 * block with headroom: the most it was asked to hold, all that its zeroing
 * covers). */
size_t
_PySecretHeap_UsableSize(const void *p)
{
    size_t usable = usable_size(p);
    return grow_high(p, usable, 0);
}

/* --- exhaustion ------------------------------------------------------ */

/* With the heap lock held: the caches' counts added to st (a copy of
 * stats), their bytes taken out of its live bytes; returns those bytes. */
static int64_t
caches_add_locked(heap_stats *st)
{
    int64_t cached = 0;
    for (block_cache *c = caches; c != NULL; c = c->next) {
        st->allocations += _Py_atomic_load_int64_relaxed(&c->allocations);
        st->frees += _Py_atomic_load_int64_relaxed(&c->frees);
        st->zeroed_bytes += _Py_atomic_load_int64_relaxed(&c->zeroed_bytes);
        cached += _Py_atomic_load_int64_relaxed(&c->bytes);
    }
    st->live_bytes -= cached;
    return cached;
}

/* Bytes in live blocks: the heap's count less what caches hold. */
static int64_t
live_bytes_now(void)
{
    heap_lock();
    heap_stats st = stats;
    (void)caches_add_locked(&st);
    heap_unlock();
    return st.live_bytes;
}

int
_PySecretHeap_TakeFailure(char *buf, size_t len)
{
    /* In secret mode not cleared: C code may clear the MemoryError and
     * report the same failure again with PyErr_NoMemory()
     * (type_ready_managed_dict() does, after _PyDict_NewKeysForClass()
     * cleared the first one); the next secret allocation that succeeds, a
     * handler of Python code (_PySecretHeap_Handled) or the outermost
     * do()'s exit forgets it. Outside do() (a secret block grown) nothing
     * else would, so the first report takes it. */
    int failed = alloc_failed;
    if (_PySecret_tls.mode == 0) {
        alloc_failed = FAIL_NONE;
    }
    char size[32], limit[32];
    if (failed == FAIL_NONE) {
        return 0;
    }
    if (failed == FAIL_LOCK) {
        char name[32];
        PyOS_snprintf(
            buf, len,
            "secret heap: memory for a secret allocation of %zu bytes could "
            "not be locked against swap (mlock2: %s; RLIMIT_MEMLOCK %s) and "
            "the secret heap must be locked (secret_require_lock): raise "
            "RLIMIT_MEMLOCK or grant CAP_IPC_LOCK", failed_size,
            errno_name(failed_errno, name, sizeof(name)),
            lockinfo.limit == SIZE_MAX
                ? "unlimited" : fmt_size(lockinfo.limit, limit,
                                         sizeof(limit)));
        return 1;
    }
    PyOS_snprintf(
        buf, len,
        "secret heap exhausted: a secret allocation of %zu bytes did not "
        "fit in the secret heap's %s (%zu bytes; %zu in use by live "
        "blocks). Set its size with -X secret_heap_size=SIZE or "
        "PYTHONSECRETHEAPSIZE=SIZE, e.g. 2G", failed_size,
        fmt_size(cfg.size, size, sizeof(size)), cfg.size,
        (size_t)Py_MAX(live_bytes_now(), 0));
    return 1;
}

void
_PySecretHeap_Handled(void)
{
    alloc_failed = FAIL_NONE;
}

/* ceval's exception_unwind could not allocate the int of a handler's lasti
 * (past the small ints): outside secret mode, NULL (upstream's retry);
 * in secret mode the int, from the heap's reserve, and the MemoryError that
 * failure raised stays raised. Never NULL in secret mode, so the unwinding
 * cannot find the same handler again forever. */
PyObject *
_PySecretHeap_HandlerIndex(int lasti)
{
    if (!_PySecret_InMode()) {
        return NULL;
    }
    PyObject *exc = PyErr_GetRaisedException();
    int was = _PySecretHeap_SetReserve(1);
    PyObject *r = PyLong_FromLong(lasti);
    _PySecretHeap_SetReserve(was);
    if (r == NULL) {
        /* Not even the reserve: a small int (never allocated). Only
         * RERAISE reads it, to set the frame's instruction pointer (its
         * line number) while the exception propagates; the traceback keeps
         * the right line. */
        PyErr_Clear();
        r = PyLong_FromLong(0);
    }
    PyErr_SetRaisedException(exc);
    return r;
}

/* --- reservation ----------------------------------------------------- */

/* The address space: the size and a quarter more (mimalloc's pages are
 * committed where its segments have room, and a block above 16 MiB takes
 * whole 32 MiB units), plus two segments. */
static size_t
address_space(size_t size)
{
    size_t span = size + size / 4 + 2 * SEGMENT;
    return (span + SEGMENT - 1) & ~(SEGMENT - 1);
}

static void
atfork_prepare(void)
{
    heap_lock();
}

static void
atfork_parent(void)
{
    heap_unlock();
}

static void
atfork_child(void)
{
    /* The child has one thread: no lock can be held by another. */
    heap_mutex = (PyMutex){0};
    map_mutex = (PyMutex){0};
    grow_mutex = (PyMutex){0};
    /* The other threads are gone: their cached blocks stay allocated
     * (zero), their counts join the heap's. */
    for (block_cache *c = caches, *next; c != NULL; c = next) {
        next = c->next;
        if (c != &tcache) {
            cache_retire_locked(c, 0);
        }
    }
    /* mlocks are not inherited across fork(): lock the committed pages
     * again, run by run. */
    if (_PySecret_range.size == 0) {
        return;
    }
    size_t pages = _PySecret_range.size / page_size;
    size_t i = 0;
    locked_bytes = 0;
    while (i < pages) {
        if (!bit(locked_map, i)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < pages && bit(locked_map, j)) {
            j++;
        }
        char *p = (char *)_PySecret_range.base + i * page_size;
        if (syscall(SYS_mlock2, p, (j - i) * page_size, MLOCK_ONFAULT) == 0) {
            locked_bytes += (j - i) * page_size;
        }
        else {
            lock_errno = errno;
            lock_failures++;
            set_bits(locked_map, i, j, 0);
        }
        i = j;
    }
}

static void shutdown_zero(void);

/* The lock chunk (see "Locking" above) when up to `lockable` bytes of the
 * range may be locked. */
static size_t
lock_chunk(size_t lockable)
{
    if (test_lock_chunk != 0) {
        return test_lock_chunk;
    }
    size_t chunk = COMMIT_UNIT;
    while (chunk < SEGMENT && chunk * LOCK_RUNS < lockable) {
        chunk <<= 1;
    }
    return chunk;
}

/* The most a heap of this size may have locked: what it may commit (and
 * its reserve), each commit unit rounded up to its chunk, at most its
 * range. */
static size_t
lock_need(size_t size, size_t chunk)
{
    size_t need = size + RESERVE;
    if (chunk > COMMIT_UNIT) {
        size_t scaled = need / COMMIT_UNIT * chunk;
        need = Py_MIN(scaled, address_space(size));
    }
    return need;
}

static int
reserve(void *arg)
{
    (void)arg;
    read_settings(&cfg);
    if (cfg.size == 0) {
        reserve_errno = EINVAL;
        return 0;
    }
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = address_space(cfg.size);
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
        lockinfo.dontdump = 1;
    }
    else {
        lockinfo.dontdump_errno = errno;
    }
#ifdef MADV_NOHUGEPAGE
    (void)madvise(base, size, MADV_NOHUGEPAGE);
#endif
    lockinfo.lockable = lockable_now(0, &lockinfo.limit, &lockinfo.cap);
    size_t chunk = lock_chunk(Py_MIN(lockinfo.lockable, size));
    lockinfo.need = lock_need(cfg.size, chunk);
    lockinfo.fully = lockinfo.lockable >= lockinfo.need;
    chunk_pages = chunk / page_size;
    range_pages = size / page_size;
    size_t words = (range_pages + 63) / 64;
    committed_map = PyMem_RawCalloc(words, sizeof(uint64_t));
    locked_map = PyMem_RawCalloc(words, sizeof(uint64_t));
    chunk_committed = PyMem_RawCalloc(range_pages / chunk_pages + 1,
                                      sizeof(uint32_t));
    if (committed_map == NULL || locked_map == NULL || chunk_committed == NULL
        || !_mi_manage_os_memory_secret(base, size, &secret_arena))
    {
        reserve_errno = ENOMEM;
        PyMem_RawFree(committed_map);
        PyMem_RawFree(locked_map);
        PyMem_RawFree(chunk_committed);
        munmap(base, span);
        lockinfo.dontdump = 0;
        return 0;
    }
    /* One heap with its own thread data, used by every thread under
     * heap_mutex (never by mimalloc's thread hooks). */
    _mi_tld_init(&heap_tld, &the_heap);
    _mi_heap_init_ex(&the_heap, &heap_tld, secret_arena, true, 0);
    the_heap.thread_id = 0;
    _mi_heap_init_ex(&native_heap, &heap_tld, secret_arena, true, 0);
    native_heap.thread_id = 0;
    _PySecret_range.base = (uintptr_t)base;
    _Py_atomic_store_uintptr_release(&_PySecret_range.size, (uintptr_t)size);
    (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    (void)Py_AtExit(shutdown_zero);
    return 0;
}

/* Once per process, at the first do() (or protections()): a heap that may
 * hold more than can be locked, and settings the environment gave but -E
 * or -I made ignored, are said, not silent. A warnings filter that makes
 * one an error makes every do() refuse. */
static int warned;

static int
startup_warnings(void)
{
    char a[32], b[32], c[32], d[32];
    for (int i = 0; i < 2 && cfg.ignored[i] != NULL; i++) {
        if (PyErr_WarnFormat(
                PyExc_RuntimeWarning, 1,
                "secret: %s is set but ignored (-E or -I): use -X %s "
                "instead", cfg.ignored[i],
                strcmp(cfg.ignored[i], "PYTHONSECRETHEAPSIZE") == 0
                    ? "secret_heap_size=SIZE" : "secret_require_lock") < 0)
        {
            return -1;
        }
    }
    if (!lockinfo.fully) {
        return PyErr_WarnFormat(
            PyExc_RuntimeWarning, 1,
            "secret: only %s of the %s secret heap can be locked against "
            "swap (RLIMIT_MEMLOCK %s; it may lock up to %s): secret blocks "
            "beyond them may be swapped out. Lower the heap's size to fit "
            "(-X secret_heap_size=SIZE or PYTHONSECRETHEAPSIZE), raise "
            "RLIMIT_MEMLOCK above it or grant CAP_IPC_LOCK; "
            "-X secret_require_lock refuses to run do() instead.",
            fmt_size(lockinfo.lockable, a, sizeof(a)),
            fmt_size(cfg.size, b, sizeof(b)),
            lockinfo.limit == SIZE_MAX ? "unlimited"
                                       : fmt_size(lockinfo.limit, c,
                                                  sizeof(c)),
            fmt_size(lockinfo.need, d, sizeof(d)));
    }
    return 0;
}

int
_PySecretHeap_EnsureReserved(void)
{
    if (_Py_atomic_load_uintptr_acquire(&_PySecret_range.size) == 0) {
        _PyOnceFlag_CallOnce(&reserve_once, reserve, NULL);
    }
    if (_PySecret_range.size == 0) {
        if (cfg.size == 0) {
            PyErr_Format(PyExc_ValueError, "secret.do(): %s", cfg.error);
            return -1;
        }
        errno = reserve_errno;
        PyErr_Format(PyExc_MemoryError,
                     "secret.do(): cannot reserve the secret heap (%s)",
                     strerror(reserve_errno ? reserve_errno : ENOMEM));
        return -1;
    }
    if (cfg.require_lock && !lockinfo.fully) {
        char a[32], b[32], c[32], d[32];
        PyErr_Format(
            PyExc_RuntimeError,
            "secret.do(): the secret heap must be locked against swap "
            "(secret_require_lock), but RLIMIT_MEMLOCK (%s) lets it lock "
            "only %s of the %s its %s and 1 MiB of reserve may lock: lower "
            "its size (-X secret_heap_size), raise RLIMIT_MEMLOCK or grant "
            "CAP_IPC_LOCK",
            lockinfo.limit == SIZE_MAX ? "unlimited"
                : fmt_size(lockinfo.limit, a, sizeof(a)),
            fmt_size(lockinfo.lockable, b, sizeof(b)),
            fmt_size(lockinfo.need, d, sizeof(d)),
            fmt_size(cfg.size, c, sizeof(c)));
        return -1;
    }
    if (!_Py_atomic_load_int_relaxed(&warned)
        && _Py_atomic_exchange_int(&warned, 1) == 0)
    {
        if (startup_warnings() < 0) {
            /* An error by the warnings filter: every do() refuses. */
            _Py_atomic_store_int(&warned, 0);
            return -1;
        }
    }
    return 0;
}

int
_PySecretHeap_NoCoreDump(void)
{
    return _PySecret_range.size != 0 && lockinfo.dontdump;
}

/* Every secret page committed so far was locked, and every one the heap
 * can commit will be: the limit covers its size, or unlocked memory is
 * refused. */
int
_PySecretHeap_NoSwap(void)
{
    return _PySecret_range.size != 0
           && (lockinfo.fully || cfg.require_lock)
           && _Py_atomic_load_int64_relaxed(&lock_failures) == 0;
}

/* --- threads and shutdown -------------------------------------------- */

void
_PySecretHeap_ThreadDone(void)
{
    /* Leaving secret mode for good; the thread's cached blocks go back
     * to the heap. */
    _PySecret_tls.mode = 0;
    fail_after = -1;
    cache_thread_end(NULL);
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

/* Py_AtExit: the interpreter is gone; zero the secret blocks still live.
 * They stay allocated (a late free still works). */
static void
shutdown_zero(void)
{
    uint64_t n = 0;
    heap_lock();
    mi_heap_visit_blocks(&the_heap, true, zero_visitor, &n);
    stats.zeroed_bytes += (int64_t)n;
    heap_unlock();
}

/* --- introspection --------------------------------------------------- */

static int _PySecretNative_Info(PyObject *info, int64_t allocations);

/* Resident bytes of the pages first..last-1 of the range whose bit in map
 * is want (any if map is NULL). */
static size_t
resident_bytes(const uint64_t *map, int want)
{
    enum { BATCH = 4096 };
    unsigned char vec[BATCH];
    size_t total = 0;
    size_t pages = _PySecret_range.size / page_size;
    for (size_t i = 0; i < pages; i += BATCH) {
        size_t n = Py_MIN((size_t)BATCH, pages - i);
        char *p = (char *)_PySecret_range.base + i * page_size;
        if (mincore(p, n * page_size, vec) != 0) {
            break;
        }
        for (size_t k = 0; k < n; k++) {
            if ((vec[k] & 1)
                && (map == NULL || bit(map, i + k) == want)) {
                total += page_size;
            }
        }
    }
    return total;
}

PyObject *
_PySecretHeap_Info(void)
{
    int active = _PySecret_range.size != 0;
    settings s;
    size_t limit, lockable;
    int cap;
    char name[32];
    if (active) {
        s = cfg;
        limit = lockinfo.limit;
        lockable = lockinfo.lockable;
    }
    else {
        /* Before the first do(): what it would reserve and lock. */
        read_settings(&s);
        lockable = lockable_now(0, &limit, &cap);
    }
    size_t space = s.size ? address_space(s.size) : 0;
    size_t chunk = active ? chunk_pages * page_size
                          : lock_chunk(Py_MIN(lockable, space));
    heap_lock();
    heap_stats st = stats;
    int64_t cached = caches_add_locked(&st);
    heap_unlock();
    PyMutex_LockFlags(&map_mutex, _Py_LOCK_DONT_DETACH);
    size_t committed = committed_bytes, locked = locked_bytes;
    size_t peak = peak_committed;
    int64_t failures = lock_failures, decommitted = decommits;
    int64_t unlock_fails = unlock_failures;
    int err = lock_errno, unlock_err = unlock_errno;
    size_t unlocked = active ? unlocked_committed() : 0;
    PyMutex_Unlock(&map_mutex);
    size_t resident = active ? resident_bytes(NULL, 0) : 0;
    size_t unlocked_resident = active && failures
                               ? resident_bytes(locked_map, 0) : 0;
    int fully = s.size != 0 && lockable >= lock_need(s.size, chunk);
    char uname[32];
    PyObject *info = Py_BuildValue(
        "{s:O,s:n,s:n,s:n,s:K,s:n,s:n,s:n,s:L,s:L,s:L,s:L,s:L,s:L,s:L,"
        "s:L,s:O,s:n,s:n,s:n,s:L,s:s,s:n,s:n,s:O,s:O,s:i,s:n,s:L,s:s,s:L,"
        "s:L}",
        "active", active ? Py_True : Py_False,
        "size", (Py_ssize_t)s.size,
        "address_space", (Py_ssize_t)space,
        "reserved", (Py_ssize_t)_PySecret_range.size,
        "base", (unsigned long long)(active ? _PySecret_range.base : 0),
        "committed", (Py_ssize_t)committed,
        "peak_committed", (Py_ssize_t)peak,
        "resident", (Py_ssize_t)resident,
        "live_bytes", (long long)st.live_bytes,
        "live_blocks", (long long)(st.allocations - st.frees),
        "zeroed_bytes", (long long)st.zeroed_bytes,
        "allocations", (long long)st.allocations,
        "frees", (long long)st.frees,
        "exhausted", (long long)st.exhausted,
        "trims", (long long)st.trims,
        "decommits", (long long)decommitted,
        /* All it commits is locked, and will be: see _PySecretHeap_NoSwap */
        "locked", (fully || s.require_lock) && failures == 0
                  && (active || s.size != 0) ? Py_True : Py_False,
        "locked_bytes", (Py_ssize_t)locked,
        "lockable", (Py_ssize_t)(lockable == SIZE_MAX ? -1
                                 : (Py_ssize_t)Py_MIN(lockable,
                                                      (size_t)PY_SSIZE_T_MAX)),
        "lock_limit", (Py_ssize_t)(limit == SIZE_MAX ? -1
                                   : (Py_ssize_t)limit),
        "lock_failures", (long long)failures,
        "lock_error", err ? errno_name(err, name, sizeof(name)) : NULL,
        "unlocked_bytes", (Py_ssize_t)unlocked,
        "unlocked_resident", (Py_ssize_t)unlocked_resident,
        "dontdump", (active && lockinfo.dontdump) ? Py_True : Py_False,
        "require_lock", s.require_lock ? Py_True : Py_False,
        "headroom_blocks", _Py_atomic_load_int_acquire(&grow_count),
        /* Locked whole while any of its pages is committed. */
        "lock_chunk", (Py_ssize_t)(s.size ? chunk : 0),
        "unlock_failures", (long long)unlock_fails,
        "unlock_error", unlock_err ? errno_name(unlock_err, uname,
                                                sizeof(uname)) : NULL,
        /* Freed, zeroed, kept by threads to hand out again (counted
           neither in live_bytes nor live_blocks). */
        "cached_bytes", (long long)cached,
        /* Other threads' caches taken back by an allocation that found
           the heap full. */
        "caches_taken", (long long)st.caches_taken);
    if (info == NULL || _PySecretNative_Info(info, st.native_allocations) < 0) {
        Py_XDECREF(info);
        return NULL;
    }
    return info;
}

/* heap_info()'s keys for native memory (secret_native.c). */
static int
_PySecretNative_Info(PyObject *info, int64_t allocations)
{
    char why[512];
    int ok = _PySecretNative_Check(why, sizeof(why));
    PyObject *v = PyLong_FromLongLong(allocations);
    int r = v == NULL ? -1
            : PyDict_SetItemString(info, "native_allocations", v);
    Py_XDECREF(v);
    if (r == 0) {
        r = PyDict_SetItemString(info, "native_heap",
                                 ok ? Py_True : Py_False);
    }
    if (r == 0) {
        v = ok ? Py_NewRef(Py_None) : PyUnicode_DecodeFSDefault(why);
        r = v == NULL ? -1
            : PyDict_SetItemString(info, "native_heap_error", v);
        Py_XDECREF(v);
    }
    if (r == 0) {
        v = PyUnicode_DecodeFSDefault(_PySecretNative_NextAllocator());
        r = v == NULL ? -1
            : PyDict_SetItemString(info, "native_allocator", v);
        Py_XDECREF(v);
    }
    return r;
}

/* --- tests (_testsecret) --------------------------------------------- */

/* From now on, once n more secret allocations of this thread succeeded,
 * the next count fail (count -1: every one; n < 0: none), except those the
 * reserve serves (the heap's MemoryError, its traceback entries, an
 * unwinding's handler index) unless reserve is set. */
PyAPI_FUNC(void)
_PySecretHeap_TestFailAfter(Py_ssize_t n, Py_ssize_t count, int reserve)
{
    fail_after = count == 0 ? -1 : n;
    fail_count = count;
    fail_reserve = reserve;
}

/* The lock chunk of a heap not yet reserved (0: the default). */
PyAPI_FUNC(int)
_PySecretHeap_TestLockChunk(size_t chunk)
{
    if (_PySecret_range.size != 0) {
        return -1;
    }
    test_lock_chunk = chunk;
    return 0;
}

/* This thread's secret allocations may use the reserve while on is set
 * (main 14881e7 granted it to every allocation after a MemoryError until
 * the next do(): the control of the reserve's tests). Returns the previous
 * setting. */
PyAPI_FUNC(int)
_PySecretHeap_TestReserve(int on)
{
    return _PySecretHeap_SetReserve(on);
}

/* Traceback entries each heap MemoryError may take from the reserve (-1:
 * the default). */
PyAPI_FUNC(void)
_PySecretHeap_TestUnwindGrants(int n)
{
    unwind_grants = n < 0 ? UNWIND_GRANTS : n;
}

/* While on, decommits keep their pages (see hold_decommits). */
PyAPI_FUNC(void)
_PySecretHeap_TestHoldDecommits(int on)
{
    hold_decommits = on;
}

/* Discard locked pages as on a kernel without MADV_DONTNEED_LOCKED (before
 * Linux 5.18): unlock, discard, lock again. */
PyAPI_FUNC(void)
_PySecretHeap_TestOldKernel(void)
{
    no_dontneed_locked = 1;
}

/* What _PySecret_IsSecret(p) answers for each of ps[0..n-1] while the
 * range is seen torn: the size published (size), the base not yet (its
 * initial value). Only before the heap is reserved. */
PyAPI_FUNC(int)
_PySecretHeap_TestTornRange(const void **ps, int *out, int n, size_t size)
{
    if (_PySecret_range.size != 0) {
        return -1;
    }
    struct _PySecretRange saved = _PySecret_range;
    /* Nothing allocates secretly now: no do() ran, the heap is not
     * reserved. */
    _PySecret_range.size = size;
    for (int i = 0; i < n; i++) {
        out[i] = _PySecret_IsSecret(ps[i]);
    }
    _PySecret_range = saved;
    return 0;
}

#else  /* !_Py_SECRET_HEAP: fallback mode */

int
_PySecretHeap_EnsureReserved(void)
{
    return 0;
}

int
_PySecretHeap_NoCoreDump(void)
{
    return 0;
}

int
_PySecretHeap_NoSwap(void)
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
    settings s;
    read_settings(&s);
    return Py_BuildValue(
        "{s:O,s:n,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,"
        "s:i,s:O,s:i,s:i,s:i,s:i,s:O,s:i,s:i,s:O,s:O,s:i,s:i,s:i,s:O,s:i}",
        "active", Py_False, "size", (Py_ssize_t)s.size,
        "address_space", 0, "reserved", 0, "base", 0,
        "committed", 0, "peak_committed", 0, "resident", 0,
        "live_bytes", 0, "live_blocks", 0, "zeroed_bytes", 0,
        "allocations", 0, "frees", 0, "exhausted", 0, "trims", 0,
        "decommits", 0, "locked", Py_False, "locked_bytes", 0,
        "lockable", 0, "lock_limit", 0, "lock_failures", 0,
        "lock_error", Py_None, "unlocked_bytes", 0, "unlocked_resident", 0,
        "dontdump", Py_False, "require_lock", Py_False,
        "headroom_blocks", 0, "lock_chunk", 0, "unlock_failures", 0,
        "unlock_error", Py_None, "cached_bytes", 0, "caches_taken", 0);
}

#endif
