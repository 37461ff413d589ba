/* runtimesecret experiment: how deep did func go on the C stack (§3.2)?
 *
 * At each do() exit every byte that func's execution wrote below do's
 * frame must be zero, whatever the shape of the frames: untouched
 * stretches, alloca, buffers the kernel wrote (read(), signal frames), a
 * nested do() at any point. Sampling the stack cannot know that; the
 * kernel can. Below a window under do's frame, the thread's stack is left
 * unmapped, its lowest mapping grows down (MAP_GROWSDOWN, as the main
 * thread's stack does): every access below it, by any code or by the
 * kernel, extends that mapping to the address touched. So at exit:
 *
 *   - the window [low, top) is scanned whole: below its lowest non-zero
 *     word everything is zero, from it up to do's frame it is zeroed;
 *   - one msync() below `low` tells whether the mapping grew; if it did,
 *     its new start is found (msync() fails on any unmapped page) and
 *     the resident pages it added are zeroed (mincore() says which);
 *   - the mapping is trimmed back (munmap) once the window no longer
 *     needs it, so that growth can be seen again.
 *
 * The main thread's stack already grows down, and the kernel keeps other
 * mappings out of the room below it. A thread's stack is a fixed mapping
 * among others: an unmapped hole there is free address space that the
 * next mmap() may take, which would cut the thread's stack short. So below
 * a thread's window the hole is at most the kernel's stack guard gap deep
 * (mmap() never places anything that close under a grows-down mapping),
 * and the rest down to the stack's floor is reserved PROT_NONE. A fault in
 * the reserve (the thread going deeper than the hole) is handled by
 * stack_fault(): it moves the reserve down and the access is retried.
 * That fault needs an alternate signal stack: the thread gets one at the
 * bottom of its own stack if it has none. When the thread ends, its stack
 * is mapped plain again, before glibc may hand it to another thread.
 *
 * RLIMIT_STACK caps the size of a grows-down mapping: on a thread whose
 * stack is larger, a fault in the hole that the kernel would not grow the
 * mapping over is handled by stack_fault() too, which maps the memory
 * plainly; the exit treats it as growth.
 *
 * Where this cannot be set up (a stack glibc did not allocate, a tiny
 * stack, a failed system call, valgrind), the thread falls back to
 * scanning: every resident page below the window is zeroed at each exit
 * and given back (MADV_DONTNEED), so that only pages touched since are
 * resident the next time. Exact as well, but it costs in proportion to
 * the stack's size.
 *
 * docs/erasure.md has the failure analysis.
 */

#include "Python.h"
#include "pycore_initconfig.h"    // _Py_GetEnv()
#include "pycore_lock.h"          // PyMutex
#include "pycore_pystate.h"       // _Py_GetConfig()
#include "pycore_secret.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>               // explicit_bzero()
#include <sys/auxv.h>             // getauxval()
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#if _PySecret_SUPPORTED

#ifndef MAP_GROWSDOWN
#  error "the C-stack erasure needs MAP_GROWSDOWN (Linux)"
#endif

#define WINDOW_MIN (2 * 1024)
#define WINDOW_MAX (256 * 1024)
/* _PySecret_Leave() and what it calls use less than this below do's
 * frame: what lies deeper may be zeroed, unmapped or remapped. */
#define LEAVE_STACK (2 * 1024)
/* The mapping is trimmed back when it reaches deeper than the next
 * window needs by more than this, or by any whole page for TRIM_AFTER
 * exits in a row. Every exit scans the window down to the mapping's
 * start: a slack kept for good costs a scan of it at each exit (16 KiB:
 * about 200 ns), while trimming at once makes a thread whose calls
 * alternate deep and shallow unmap and fault the same pages again. */
#define TRIM_SLACK (16 * 1024)
#define TRIM_AFTER 16
/* A thread's own alternate signal stack, for stack_fault() (and any
 * handler installed with SA_ONSTACK; a frame with AMX state is 12 KiB).
 * Mapped apart: taken from the thread's stack it would shorten it. */
#define ALTSTACK_SIZE (64 * 1024)

enum { STACK_UNSET = 0, STACK_TRACKED, STACK_SCAN };

typedef struct {
    int mode;
    int is_main;
    char *own_altstack;     /* the alternate stack we mapped, or NULL */
    void *next;             /* known threads (tracked_list) */
    int registered;         /* in tracked_list */
    char *do_top;           /* the outermost do()'s frame, while in one */
    char *floor;            /* the stack's lowest address */
    char *top;              /* its highest */
    char *low;              /* TRACKED: lowest mapped address of the stack */
    char *hole_lo;          /* TRACKED: unmapped [hole_lo, low) */
    char *res_lo;           /* thread: PROT_NONE reserve [res_lo, hole_lo) */
    char *gd_top;           /* thread: end of the grows-down mapping */
    size_t window;
    int excess;             /* exits in a row that could have trimmed */
} stack_state;

/* Read by stack_fault() in a signal handler: no lazy TLS allocation. */
static _Py_thread_local stack_state stk
    __attribute__((tls_model("initial-exec")));
/* A thread started by _thread: glibc allocated its stack. */
static _Py_thread_local int from_thread_module
    __attribute__((tls_model("initial-exec")));

static size_t page_size;
/* How deep a hole below a thread's grows-down mapping may be: the
 * kernel's stack guard gap (no mmap() lands that close under it). */
static size_t hole_size;
static pthread_once_t init_flag = PTHREAD_ONCE_INIT;
static pthread_key_t thread_end_key;
static int thread_end_key_ok;
/* Threads whose stacks are known (their thread-local stk). A fork()
 * child has only the thread that forked: it zeroes what the others were
 * doing in a do() (their stacks below that do's frame), and maps their
 * stacks plain again where they had a reserve (glibc would hand them to
 * its new threads with the reserve in place). */
static stack_state *tracked_list;
static pthread_mutex_t tracked_mutex = PTHREAD_MUTEX_INITIALIZER;
static int scan_only;           /* PYTHONSECRETSTACK=scan, or valgrind */

static inline char *
page_down(char *p)
{
    return (char *)((uintptr_t)p & ~(uintptr_t)(page_size - 1));
}

static void stack_thread_end(void *arg);

/* An address n bytes below a local's (not pointer arithmetic on it). */
static inline char *
sp_minus(char *local, size_t n)
{
    return (char *)((uintptr_t)local - n);
}

static int map_fixed(char *p, size_t len, int prot, int flags);

static void
tracked_lock(void)
{
    pthread_mutex_lock(&tracked_mutex);
}

static void
tracked_unlock(void)
{
    pthread_mutex_unlock(&tracked_mutex);
}

static void
untrack(stack_state *t)
{
    for (stack_state **pp = &tracked_list; *pp != NULL;
         pp = (stack_state **)&(*pp)->next)
    {
        if (*pp == t) {
            *pp = (stack_state *)t->next;
            break;
        }
    }
}

static char *mapping_start(char *low, char *hole_lo);
static int range_mapped(char *lo, char *hi);
static char *zero_resident(char *lo, char *hi, int drop);
static int fork_lost;

/* In a fork() child: only the forking thread is left. */
static void
tracked_child(void)
{
    int lost = 0;
    for (stack_state *t = tracked_list; t != NULL;
         t = (stack_state *)t->next)
    {
        if (t == &stk) {
            continue;
        }
        char *end = t->floor;
        if (t->mode == STACK_TRACKED && !t->is_main) {
            (void)map_fixed(t->floor, t->gd_top - t->floor,
                            PROT_READ | PROT_WRITE, MAP_STACK);
            end = t->gd_top;
        }
        if (t->own_altstack != NULL) {
            (void)munmap(t->own_altstack, ALTSTACK_SIZE);
        }
        if (t->do_top != NULL) {
            /* What its func had written below its do()'s frame. */
            char *hi = page_down(t->do_top);
            char *lo = hi > end && range_mapped(hi - page_size, hi)
                       ? mapping_start(hi, end) : hi;
            (void)zero_resident(lo, hi, 0);
            explicit_bzero(hi, t->do_top - hi);
            lost++;
        }
    }
    fork_lost = lost;
    tracked_list = stk.registered ? &stk : NULL;
    stk.next = NULL;
    pthread_mutex_init(&tracked_mutex, NULL);
}

int
_PySecretStack_ForkLost(void)
{
    return fork_lost;
}

/* stack_guard_gap= on the kernel's command line (pages), else 256. */
static size_t
guard_gap_pages(void)
{
    char buf[4096];
    size_t pages = 256;
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return pages;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n > 0) {
        buf[n] = '\0';
        char *p = strstr(buf, "stack_guard_gap=");
        if (p != NULL) {
            unsigned long v = strtoul(p + 16, NULL, 0);
            if (v > 0) {
                pages = v;
            }
        }
    }
    return pages;
}

static void
init_once(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps > 0 ? (size_t)ps : 4096;
    size_t gap = guard_gap_pages() * page_size;
    /* One page less, and at most 1 MiB (the default). */
    hole_size = gap > page_size ? gap - page_size : 0;
    if (hole_size > ((size_t)1 << 20)) {
        hole_size = (size_t)1 << 20;
    }
    thread_end_key_ok = pthread_key_create(&thread_end_key,
                                           stack_thread_end) == 0;
    (void)pthread_atfork(tracked_lock, tracked_unlock, tracked_child);
    /* Valgrind keeps its own map of the client's stacks. */
    const char *v = getenv("LD_PRELOAD");
    if (v != NULL && strstr(v, "vgpreload") != NULL) {
        scan_only = 1;
    }
    /* A knob for tests and measurements; -E and -I ignore it. (Read from
     * the first do(), which holds a thread state.) */
    v = _PyThreadState_GET() == NULL ? NULL
        : _Py_GetEnv(_Py_GetConfig()->use_environment, "PYTHONSECRETSTACK");
    if (v != NULL) {
        scan_only = strcmp(v, "scan") == 0;
    }
}

/* --- mappings ----------------------------------------------------------- */

/* mincore() fails (ENOMEM) on any unmapped page of [lo, hi). */
static int
mapped_by_mincore(char *lo, char *hi)
{
    unsigned char vec[256];
    while (lo < hi) {
        size_t n = (size_t)(hi - lo) / page_size;
        if (n > sizeof(vec)) {
            n = sizeof(vec);
        }
        if (mincore(lo, n * page_size, vec) != 0) {
            return 0;
        }
        lo += n * page_size;
    }
    return 1;
}

/* Is all of [lo, hi) mapped (page-aligned)? msync(MS_ASYNC) fails with
 * ENOMEM at the first unmapped page of the range, and does nothing else:
 * it looks the range's mappings up under the mmap lock, never faults a
 * page in, never grows a stack mapping, and since Linux 2.6.19 MS_ASYNC
 * starts no writeback. mincore() answers the same question (ENOMEM on any
 * unmapped page) but allocates and frees a page for its result vector at
 * every call: 235 ns against 140 ns here, on the path of every do() exit
 * (docs/performance.md). Under valgrind (scan_only) mincore() stays:
 * memcheck reports msync() of unmapped memory as an error. */
static int
range_mapped(char *lo, char *hi)
{
    if (scan_only) {
        return mapped_by_mincore(lo, hi);
    }
    return lo >= hi || msync(lo, (size_t)(hi - lo), MS_ASYNC) == 0;
}

/* For the tests (_testsecret): the answer of msync() (how 0) or of
 * mincore() (how 1) for [lo, hi), page-aligned. */
PyAPI_FUNC(int)
_PySecretStack_TestRangeMapped(char *lo, char *hi, int how)
{
    (void)pthread_once(&init_flag, init_once);
    if (how == 0) {
        return lo >= hi || msync(lo, (size_t)(hi - lo), MS_ASYNC) == 0;
    }
    return mapped_by_mincore(lo, hi);
}

/* [low - page, low) is mapped: the start of the mapping that reaches
 * `low` from below, not below hole_lo. Doubling, then bisection. */
static char *
mapping_start(char *low, char *hole_lo)
{
    char *ok = low - page_size;         /* [ok, low) is mapped */
    char *bad;                          /* [bad, ok) is not all mapped */
    size_t step = page_size;
    for (;;) {
        if (ok <= hole_lo) {
            return hole_lo;
        }
        step *= 2;
        char *a = (size_t)(ok - hole_lo) > step ? page_down(ok - step)
                                                 : hole_lo;
        if (!range_mapped(a, ok)) {
            bad = a;
            break;
        }
        ok = a;
    }
    while ((size_t)(ok - bad) > page_size) {
        char *mid = page_down(bad + (ok - bad) / 2);
        if (range_mapped(mid, ok)) {
            ok = mid;
        }
        else {
            bad = mid;
        }
    }
    return ok;
}

/* Zero the resident pages of [lo, hi) (page-aligned). With drop, give
 * them back too, so that they are not resident the next time unless
 * touched again. Unmapped pages are skipped (a range mincore() refuses is
 * split in two). Returns the lowest page zeroed, or hi. */
static char *
zero_resident(char *lo, char *hi, int drop)
{
    unsigned char vec[256];
    char *lowest = hi;
    while (lo < hi) {
        size_t n = (size_t)(hi - lo) / page_size;
        if (n > sizeof(vec)) {
            n = sizeof(vec);
        }
        if (mincore(lo, n * page_size, vec) != 0) {
            if (n > 1) {
                char *mid = lo + (n / 2) * page_size;
                char *end = lo + n * page_size;
                char *a = zero_resident(lo, mid, drop);
                char *b = zero_resident(mid, end, drop);
                char *z = a < mid ? a : (b < end ? b : hi);
                if (z < lowest) {
                    lowest = z;
                }
            }
            lo += n * page_size;
            continue;
        }
        size_t i = 0;
        while (i < n) {
            if (!(vec[i] & 1)) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < n && (vec[j] & 1)) {
                j++;
            }
            char *p = lo + i * page_size;
            explicit_bzero(p, (j - i) * page_size);
            if (drop) {
                (void)madvise(p, (j - i) * page_size, MADV_DONTNEED);
            }
            if (p < lowest) {
                lowest = p;
            }
            i = j;
        }
        lo += n * page_size;
    }
    return lowest;
}

static int
map_fixed(char *p, size_t len, int prot, int flags)
{
    void *r = mmap(p, len, prot,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | flags, -1, 0);
    return r == (void *)p ? 0 : -1;
}

/* --- the fault in the reserve ------------------------------------------ */

/* faulthandler's SIGSEGV handler asks us first while it is installed
 * (patch 0017); ours is installed while it is not. */
static PyMutex segv_mutex;
static int segv_needed;         /* a thread has a reserve */
static int faulthandler_on;
static struct sigaction segv_prev;

static void stack_fault(int sig, siginfo_t *info, void *context);

static inline char *
context_sp(void *context)
{
    ucontext_t *uc = (ucontext_t *)context;
#if defined(__x86_64__)
    return (char *)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (char *)uc->uc_mcontext.sp;
#else
    (void)uc;
    return NULL;
#endif
}

/* The start of the grows-down mapping now (it may have grown since the
 * last exit): the lowest address from which all is mapped up to stk.low. */
static char *
mapping_now(void)
{
    return stk.low > stk.hole_lo && range_mapped(stk.low - page_size, stk.low)
           ? mapping_start(stk.low, stk.hole_lo) : stk.low;
}

/* Make [p, cur) part of the stack (p page-aligned, below cur, the
 * mapping's start): one grows-down mapping over it (replacing the reserve
 * and the hole there, so no address space is ever left free beyond a
 * guard gap), then a hole at most a guard gap deep below it, carved from
 * the reserve. The mapping stays contiguous down to p, so the exit sees
 * all of it as growth. */
static int
extend_to(char *p, char *cur)
{
    if (p < stk.res_lo) {
        p = stk.res_lo;
    }
    if (p >= cur
        || map_fixed(p, cur - p, PROT_READ | PROT_WRITE,
                     MAP_GROWSDOWN | MAP_STACK) != 0)
    {
        return 0;
    }
    char *hole_lo = (size_t)(p - stk.res_lo) > hole_size ? p - hole_size
                                                        : stk.res_lo;
    if (hole_lo < stk.hole_lo) {
        if (hole_lo < p) {
            (void)munmap(hole_lo, p - hole_lo);
        }
        stk.hole_lo = hole_lo;
    }
    return 1;
}

int
_PySecret_StackFault(void *siginfo, void *context)
{
    siginfo_t *info = siginfo;
    if (stk.mode != STACK_TRACKED || stk.is_main || info == NULL) {
        return 0;
    }
    char *a = (char *)info->si_addr;
    char *p;
    if (info->si_code == SEGV_ACCERR && a >= stk.res_lo && a < stk.hole_lo) {
        /* The thread went deeper than the hole, into the reserve. */
        p = page_down(a);
    }
    else if (info->si_code == SEGV_MAPERR && a >= stk.hole_lo
             && a < stk.low)
    {
        /* In the hole, and the kernel would not grow the mapping over it:
         * RLIMIT_STACK caps a grows-down mapping's size, and this thread's
         * stack is larger. Map a chunk (an eighth of the depth, at least
         * 64 KiB). */
        p = page_down(a);
        size_t chunk = ((size_t)(stk.gd_top - p) / 8) & ~(page_size - 1);
        if (chunk < 64 * 1024) {
            chunk = 64 * 1024;
        }
        p = (size_t)(p - stk.res_lo) > chunk ? p - chunk : stk.res_lo;
    }
    else if (info->si_code == SI_KERNEL) {
        /* The kernel could not push a signal frame (its handler was not
         * installed with SA_ONSTACK) because the stack pointer was right
         * above the reserve. That signal is lost; make room below. */
        char *sp = context_sp(context);
        if (sp == NULL || sp < stk.res_lo || sp >= stk.hole_lo + 64 * 1024) {
            return 0;
        }
        p = page_down(sp) - 64 * 1024;
    }
    else {
        return 0;
    }
    return extend_to(p, mapping_now());
}

static void
stack_fault(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    if (_PySecret_StackFault(info, context)) {
        errno = saved;
        return;
    }
    errno = saved;
    /* Not ours: what was installed before us. */
    if (segv_prev.sa_flags & SA_SIGINFO) {
        segv_prev.sa_sigaction(sig, info, context);
    }
    else if (segv_prev.sa_handler != SIG_DFL
             && segv_prev.sa_handler != SIG_IGN)
    {
        segv_prev.sa_handler(sig);
    }
    else {
        /* The default action: it takes effect when the faulting
         * instruction runs again. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        (void)sigaction(sig, &dfl, NULL);
    }
}

/* With segv_mutex held. */
static void
install_handler(void)
{
    struct sigaction cur;
    if (faulthandler_on || sigaction(SIGSEGV, NULL, &cur) != 0
        || ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == stack_fault))
    {
        return;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = stack_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    segv_prev = cur;
    (void)sigaction(SIGSEGV, &sa, NULL);
}

void
_PySecret_FaulthandlerChanged(int enabled)
{
    PyMutex_LockFlags(&segv_mutex, _Py_LOCK_DONT_DETACH);
    faulthandler_on = enabled;
    if (!enabled && segv_needed) {
        /* It restored what it found: if that is not us, install us. */
        install_handler();
    }
    PyMutex_Unlock(&segv_mutex);
}

static void
need_handler(void)
{
    PyMutex_LockFlags(&segv_mutex, _Py_LOCK_DONT_DETACH);
    segv_needed = 1;
    install_handler();
    PyMutex_Unlock(&segv_mutex);
}

/* --- setting up a thread ------------------------------------------------ */

/* /proc/self/maps says that the stack [floor, top) is glibc's: a PROT_NONE
 * guard ends at floor, and every mapping in [floor, top) is private and
 * anonymous (a stack that glibc cached may keep an earlier thread's hole
 * and reserve). Only for threads not started by _thread (those are). */
static int
glibc_stack(char *floor, char *top)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    char buf[8192];
    size_t len = 0;
    int guard = 0, ok = 1;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        char *line = buf;
        char *nl;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            unsigned long lo, hi, off;
            char perms[8];
            int dev_major, dev_minor;
            unsigned long inode;
            int pathpos = 0;
            if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &lo, &hi,
                       perms, &off, &dev_major, &dev_minor, &inode,
                       &pathpos) >= 7)
            {
                if ((char *)hi == floor && strcmp(perms, "---p") == 0) {
                    guard = 1;
                }
                const char *path = pathpos > 0 ? line + pathpos : "";
                if ((char *)lo < top && (char *)hi > floor
                    && (inode != 0 || perms[3] != 'p'
                        || !(path[0] == '\0'
                             || strncmp(path, "[anon:", 6) == 0
                             || strcmp(path, "[stack]") == 0)))
                {
                    ok = 0;     /* a file, shared memory, [heap], ... */
                }
            }
            line = nl + 1;
        }
        len = strlen(line);
        memmove(buf, line, len);
    }
    close(fd);
    return guard && ok;
}

/* The layout from `target` (page-aligned) down: one page of grows-down
 * mapping [target, target + page), the hole under it, the reserve down to
 * res_lo. Everything in [res_lo, target + page) is dead (below do's
 * frame, zero or never secret). On failure the stack is mapped plain
 * again. */
static int
place(char *target)
{
    char *gd_top = target + page_size;
    char *hole_lo = (size_t)(target - stk.res_lo) > hole_size
                    ? target - hole_size : stk.res_lo;
    /* The reserve first, replacing at once whatever was there: no address
     * space is free for longer than a guard gap's depth at any moment. */
    if ((hole_lo > stk.res_lo
         && map_fixed(stk.res_lo, hole_lo - stk.res_lo, PROT_NONE,
                      MAP_NORESERVE) != 0)
        || map_fixed(target, page_size, PROT_READ | PROT_WRITE,
                     MAP_GROWSDOWN | MAP_STACK) != 0
        || (target > hole_lo && munmap(hole_lo, target - hole_lo) != 0))
    {
        (void)map_fixed(stk.res_lo, gd_top - stk.res_lo,
                        PROT_READ | PROT_WRITE, MAP_STACK);
        return -1;
    }
    stk.low = target;
    stk.hole_lo = hole_lo;
    stk.gd_top = gd_top;
    return 0;
}

#ifdef __GLIBC__
extern void *__libc_stack_end;
#endif

/* An address in the process's initial stack: glibc's __libc_stack_end,
 * else the kernel's start_stack (/proc/self/stat, field 28; 0 when the
 * process is not dumpable). */
static char *
main_stack_start(void)
{
#ifdef __GLIBC__
    if (__libc_stack_end != NULL) {
        return (char *)__libc_stack_end;
    }
#endif
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return NULL;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return NULL;
    }
    buf[n] = '\0';
    char *p = strrchr(buf, ')');       /* after the command name */
    if (p == NULL) {
        return NULL;
    }
    /* Fields 3 (state) to 27, then startstack. */
    for (int field = 2; field < 28 && p != NULL; field++) {
        p = strchr(p + 1, ' ');
    }
    return p != NULL ? (char *)(uintptr_t)strtoull(p + 1, NULL, 10) : NULL;
}

/* The thread's stack: [floor, top), and whether it is the main thread's. */
static void
bounds(void)
{
    pthread_once(&init_flag, init_once);
    if (stk.floor != NULL) {
        return;
    }
    char here;
    char *sp = page_down(&here);
    /* The process's initial stack holds the address the kernel started it
     * at, and is mapped all the way from here up to it; a thread that
     * fork() made a child's only one has its own, glibc-allocated stack.
     * Its bounds come without /proc (pthread_getattr_np reads
     * /proc/self/maps for it, which fails without file descriptors or
     * /proc): the top is where its mapping ends above that address; the
     * floor is as far as RLIMIT_STACK could ever let it grow (its hard
     * limit; only what is mapped contiguously is ever touched, so a far
     * floor costs nothing). */
    char *start = main_stack_start();
    if (start != NULL && start > sp
        && range_mapped(sp, page_down(start) + page_size))
    {
        char *top = page_down(start) + page_size;
        size_t step = page_size;
        while (step < ((size_t)64 << 20) && range_mapped(top, top + step)) {
            top += step;
            step *= 2;
        }
        while (step > page_size) {
            step /= 2;
            if (range_mapped(top, top + step)) {
                top += step;
            }
        }
        struct rlimit rl;
        size_t limit = (size_t)1 << 30;
        if (getrlimit(RLIMIT_STACK, &rl) == 0
            && rl.rlim_max != RLIM_INFINITY && (size_t)rl.rlim_max < limit)
        {
            limit = (size_t)rl.rlim_max > ((size_t)8 << 20)
                    ? (size_t)rl.rlim_max : (size_t)8 << 20;
        }
        stk.is_main = 1;
        stk.top = top;
        stk.floor = (uintptr_t)top > limit + page_size ? top - limit
                                                       : (char *)page_size;
        stk.window = WINDOW_MIN;
        return;
    }
    pthread_attr_t attr;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &addr, &size) != 0) {
            addr = NULL;
        }
        pthread_attr_destroy(&attr);
    }
    if (addr == NULL || (char *)addr >= &here
        || (char *)addr + size <= &here)
    {
        return;     /* unknown: asked again at the next do() */
    }
    stk.is_main = 0;
    stk.floor = (char *)addr;
    stk.top = (char *)addr + size;
    stk.window = WINDOW_MIN;
}

static void
setup(char *top)
{
    bounds();
    if (stk.floor == NULL) {
        return;     /* stays unset: this do() erases its page only */
    }
    stk.mode = STACK_SCAN;
    if (!stk.registered && (stk.is_main || thread_end_key_ok)) {
        if (!stk.is_main) {
            (void)pthread_setspecific(thread_end_key, (void *)1);
        }
        tracked_lock();
        stk.next = tracked_list;
        tracked_list = &stk;
        stk.registered = 1;
        tracked_unlock();
    }
    if (scan_only || top <= stk.floor || top > stk.top) {
        return;
    }
    char here;
    /* Below this, no frame of ours is live while we remap. */
    char *live = page_down(sp_minus(&here, 512));
    char *target = page_down(top - stk.window);
    if (target > live - page_size) {
        target = live - page_size;
    }
    if (stk.is_main) {
        /* The main thread's stack grows down already, and the kernel keeps
         * the room below it free: unmap what lies below the window. */
        if (target <= stk.floor + page_size) {
            return;
        }
        char *start = range_mapped(target - page_size, target)
                      ? mapping_start(target, stk.floor) : target;
        if (start < target && munmap(start, target - start) != 0) {
            return;
        }
        stk.low = target;
        stk.hole_lo = stk.floor;
        stk.mode = STACK_TRACKED;
        return;
    }
    if (target < stk.floor + 8 * page_size) {
        return;     /* a tiny stack: scanning it is cheap */
    }
    if (!thread_end_key_ok
        || (!from_thread_module && !glibc_stack(stk.floor, stk.top)))
    {
        return;     /* no way to map it plain when it ends, or not glibc's */
    }
    /* stack_fault() runs on an alternate stack: the fault may come with
     * the stack pointer in the reserve. */
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0) {
        return;
    }
    stk.res_lo = stk.floor;
    if (ss.ss_flags & SS_DISABLE) {
        void *mem = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (mem == MAP_FAILED) {
            return;
        }
        ss.ss_sp = mem;
        ss.ss_size = ALTSTACK_SIZE;
        ss.ss_flags = 0;
        if (sigaltstack(&ss, NULL) != 0) {
            munmap(mem, ALTSTACK_SIZE);
            return;
        }
        _PySecret_AltStackChanged();
        stk.own_altstack = (char *)mem;
        /* Freed when the thread ends (stack_thread_end). */
        (void)pthread_setspecific(thread_end_key, (void *)1);
    }
    need_handler();
    /* A stack that glibc cached may keep an earlier thread's layout above
     * the target: map that part plain (dead memory, below this frame). */
    if (!range_mapped(target + page_size, live)
        && map_fixed(target + page_size, live - target - page_size,
                     PROT_READ | PROT_WRITE, MAP_STACK) != 0)
    {
        return;
    }
    if (place(target) != 0) {
        return;
    }
    (void)pthread_setspecific(thread_end_key, (void *)1);
    stk.mode = STACK_TRACKED;
}

/* The thread ends: map its stack plain again, before glibc reuses it for
 * a thread that knows nothing of the reserve. */
static void
stack_thread_end(void *arg)
{
    (void)arg;
    if (stk.registered) {
        tracked_lock();
        untrack(&stk);
        stk.registered = 0;
        tracked_unlock();
    }
    if (stk.mode == STACK_TRACKED && !stk.is_main) {
        /* Up to the page under this frame (the thread's outermost ones,
         * above any do()'s). */
        char here;
        char *end = page_down(sp_minus(&here, page_size));
        if (end > stk.gd_top) {
            end = stk.gd_top;
        }
        if (end > stk.floor) {
            (void)map_fixed(stk.floor, end - stk.floor,
                            PROT_READ | PROT_WRITE, MAP_STACK);
        }
    }
    if (stk.own_altstack != NULL) {
        /* Disabled if it is still the thread's (faulthandler may have put
         * its own in place since), then given back. */
        stack_t ss;
        if (sigaltstack(NULL, &ss) == 0) {
            int ours = !(ss.ss_flags & SS_DISABLE)
                       && (char *)ss.ss_sp == stk.own_altstack;
            memset(&ss, 0, sizeof(ss));
            ss.ss_flags = SS_DISABLE;
            if (!ours || sigaltstack(&ss, NULL) == 0) {
                (void)munmap(stk.own_altstack, ALTSTACK_SIZE);
            }
        }
        stk.own_altstack = NULL;
        _PySecret_AltStackChanged();
    }
    stk.mode = STACK_UNSET;
}

/* --- entry and exit ----------------------------------------------------- */

void
_PySecretStack_Enter(char *top, int outermost)
{
    if (stk.mode == STACK_UNSET) {
        setup(top);
    }
    if (outermost) {
        stk.do_top = top;
    }
}

/* The next window: the depth used plus a quarter and 1 KiB (a slightly
 * deeper call does not cost a fault), rounded to 1 KiB; it shrinks by half
 * at most per call, so a thread whose calls alternate shallow and deep
 * keeps a window that fits the deep ones. */
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

/* The lowest non-zero 8-byte word in [p, end) (8-aligned), or end: the
 * assembly, which never loads what it reads into a register (x86-64). */
#define first_nonzero(p, end) \
    _PySecret_FirstNonzero((p), (end), _PySecret_vector)

/* Trim the mapping so that it starts at `target` or a page below
 * (page-aligned, above stk.low; everything below target is zero). */
static void
trim(char *target)
{
    if (stk.is_main) {
        if (munmap(stk.low, target - stk.low) == 0) {
            stk.low = target;
        }
        return;
    }
    if (target + page_size <= stk.gd_top) {
        /* Within the grows-down mapping (everything from stk.low to gd_top
         * is one, or grows-down mappings side by side). The reserve moves
         * up first, replacing the hole and the mapping's bottom at once;
         * then at most a guard gap's depth is unmapped. */
        char *hole_lo = (size_t)(target - stk.res_lo) > hole_size
                        ? target - hole_size : stk.res_lo;
        if (hole_lo > stk.hole_lo) {
            if (map_fixed(stk.hole_lo, hole_lo - stk.hole_lo, PROT_NONE,
                          MAP_NORESERVE) != 0)
            {
                return;
            }
            stk.hole_lo = hole_lo;
        }
        char *lo = stk.low > hole_lo ? stk.low : hole_lo;
        if (target > lo && munmap(lo, target - lo) != 0) {
            return;
        }
        stk.low = target;
        return;
    }
    /* Above the grows-down mapping: a new one-page mapping under the
     * target (all of it zero: the target is at most where the window's
     * data starts). */
    if (target - page_size <= stk.low || place(target - page_size) != 0) {
        if (target - page_size > stk.low) {
            stk.mode = STACK_SCAN;
        }
    }
}

char *
_PySecretStack_Leave(char *top, int outermost)
{
    if (outermost) {
        stk.do_top = NULL;
    }
    /* Deeper than this, no frame of ours is live. */
    char *below = page_down(top - LEAVE_STACK);
    char *scan_lo, *deepest;

    if (top <= stk.floor || top > stk.top) {
        /* do() ran on a stack that is not the thread's (a C coroutine
         * library's), whose extent is unknown: only the page below do's
         * frame, where this call's own frames lie, is known to be there.
         * Not exact (docs/erasure.md). */
        return first_nonzero(page_down(top - 1), top);
    }
    if (stk.mode == STACK_TRACKED) {
        char *low = stk.low;
        if (low > stk.hole_lo && range_mapped(low - page_size, low)) {
            /* The mapping grew: zero what the pages it gained hold. */
            char *start = mapping_start(low, stk.hole_lo);
            scan_lo = low < below ? low : below;
            if (start < scan_lo) {
                (void)zero_resident(start, scan_lo, 0);
            }
            stk.low = deepest = start;
        }
        else {
            scan_lo = low < top ? low : top;
            deepest = top;
        }
    }
    else {
        char *wl = page_down(top - stk.window);
        scan_lo = wl < below ? wl : below;
        if (scan_lo < stk.floor) {
            scan_lo = stk.floor;
        }
        /* Only what is mapped contiguously below can have been touched
         * (the main thread's floor is as far as its stack could grow). */
        char *lo = scan_lo > stk.floor
                   && range_mapped(scan_lo - page_size, scan_lo)
                   ? mapping_start(scan_lo, stk.floor) : scan_lo;
        deepest = zero_resident(lo, scan_lo, 1);
        if (deepest == scan_lo) {
            deepest = top;          /* nothing resident below */
        }
        /* Only the mapped part of the window can be read (valgrind maps
         * its client's main stack as it grows). */
        char *hi = page_down(below);
        if (scan_lo < hi && !range_mapped(scan_lo, hi)) {
            scan_lo = range_mapped(hi - page_size, hi)
                      ? mapping_start(hi, scan_lo) : hi;
        }
    }

    /* The window: below its lowest non-zero word all is zero. */
    char *low = first_nonzero(scan_lo, top);
    if (low < deepest) {
        deepest = low;
    }
    stk.window = adapt_window(stk.window, top - deepest);

    if (stk.mode == STACK_TRACKED) {
        /* Trim only what is zero: never above `low`. */
        char *target = page_down(top - stk.window);
        if (target > page_down(low)) {
            target = page_down(low);
        }
        if (target > below) {
            target = below;
        }
        if (stk.low >= target) {
            stk.excess = 0;
        }
        else if (stk.low + TRIM_SLACK < target
                 || ++stk.excess >= TRIM_AFTER)
        {
            stk.excess = 0;
            trim(target);
        }
    }
    return low;
}

/* An idle point of a thread that inherited secret mode (secret_core.c):
 * as a do() exit whose frame is the waiting one; NULL when that frame is
 * not on the thread's stack (a handler running on the alternate signal
 * stack, whose frames would be zeroed with it: no such wait is known).
 * The thread's stack was set up when it started (never here: this may run
 * inside malloc, with the secret heap's lock held, and setting up
 * allocates). */
char *
_PySecretStack_Idle(char *top)
{
    if (!(top > stk.floor && top <= stk.top)) {
        return NULL;
    }
    return _PySecretStack_Leave(top, 0);
}

void
_PySecretStack_ThreadStart(void)
{
    from_thread_module = 1;
}

/* --- the alternate signal stack ------------------------------------------ */

/* A handler that ran on the thread's alternate signal stack during func
 * left a frame there: func's registers. The stack is cached per thread;
 * the kernel is asked again only when faulthandler (the only code in
 * CPython that installs one) or this file changed it (the generation). */
static int altstack_generation = 1;
static _Py_thread_local int altstack_seen;
static _Py_thread_local char *altstack_lo;
static _Py_thread_local char *altstack_hi;
/* Whether a frame was pushed since the stack was last zeroed: the kernel
 * puts the first frame at the top, and every frame writes non-zero bytes
 * this close to it. x86-64: the xsave area ends right under the top
 * (64-byte aligned) followed by FP_XSTATE_MAGIC2; without xsave, the
 * fxsave area's control words lie within 1 KiB. Elsewhere (aarch64: the
 * frame record, then the ucontext and its uc_stack): the kernel's
 * AT_MINSIGSTKSZ, the largest frame, 11,952 bytes with x86's AMX. */
static size_t altstack_probe;

void
_PySecret_AltStackChanged(void)
{
    _Py_atomic_add_int(&altstack_generation, 1);
}

static void
erase_signal_stack(char *lo, char *hi)
{
    char *top = (char *)((uintptr_t)hi & ~(uintptr_t)7);
    size_t probe = (size_t)(top - lo);
    if (probe > altstack_probe) {
        probe = altstack_probe;
    }
    if (first_nonzero(top - probe, top) == top) {
        return;
    }
    char *p = first_nonzero(lo, top);
    explicit_bzero(p, hi - p);
}

void
_PySecretStack_EraseAltStack(void)
{
    int gen = _Py_atomic_load_int_relaxed(&altstack_generation);
    if (altstack_seen != gen) {
        stack_t ss;
        altstack_lo = NULL;
        if (sigaltstack(NULL, &ss) == 0 && !(ss.ss_flags & SS_DISABLE)
            && ss.ss_sp != NULL && ss.ss_size >= 1024)
        {
            altstack_lo = (char *)(((uintptr_t)ss.ss_sp + 7) & ~(uintptr_t)7);
            altstack_hi = (char *)ss.ss_sp + ss.ss_size;
        }
        altstack_seen = gen;
        if (altstack_probe == 0) {
#if defined(__x86_64__)
            altstack_probe = 1024;
#else
            unsigned long m = getauxval(AT_MINSIGSTKSZ);
            altstack_probe = (m > 2048 ? (size_t)m : 16 * 1024) + 1024;
#endif
        }
    }
    if (altstack_lo != NULL) {
        erase_signal_stack(altstack_lo, altstack_hi);
    }
    /* The one the core mapped for the thread, if something (faulthandler,
     * enabled in func) put another in its place: frames pushed before
     * that are still on it. */
    if (stk.own_altstack != NULL && stk.own_altstack != altstack_lo) {
        erase_signal_stack(stk.own_altstack,
                           stk.own_altstack + ALTSTACK_SIZE);
    }
}

/* --- the end of a thread that inherited secret mode ---------------------- */

/* The whole stack below the thread's outermost frame was used by secret
 * work: zero its resident pages from well below this frame (the zeroing
 * never reaches a live frame) and return where the rest starts, which
 * _PySecret_EraseStack() zeroes up to its caller. */
char *
_PySecretStack_ThreadExit(void)
{
    bounds();
    char here;
    char *low = page_down(sp_minus(&here, 16 * page_size));
    if (low < stk.floor) {
        low = stk.floor;
    }
    (void)zero_resident(page_down(stk.floor), low, 0);
    _PySecretStack_EraseAltStack();
    return low;
}

#else  /* fallback mode: no erasure, nothing reserved */

int
_PySecretStack_ForkLost(void)
{
    return 0;
}

int
_PySecret_StackFault(void *info, void *context)
{
    (void)info;
    (void)context;
    return 0;
}

void
_PySecret_FaulthandlerChanged(int enabled)
{
    (void)enabled;
}

void
_PySecret_AltStackChanged(void)
{
}

#endif  /* _PySecret_SUPPORTED */
