/* runtimesecret experiment: native memory (spec §3.4, issue 23).
 *
 * While a thread is in secret mode, whatever code calls the C library's
 * allocator (extension modules and the C, C++ and Rust libraries they use:
 * OpenSSL, libyaml, pydantic-core, CPython's vendored HACL*, glibc's own
 * stdio) gets its block from the secret heap, zeroed when freed. This file
 * defines the allocator functions glibc documents for replacing malloc
 * ("Replacing malloc": malloc, free, calloc, realloc, aligned_alloc,
 * malloc_usable_size, memalign, posix_memalign, pvalloc, valloc; and
 * reallocarray). They are exported from the executable (or libpython with
 * --enable-shared), which the dynamic linker searches before the C
 * library, so every object of the process binds to them, glibc included.
 *
 * - Outside secret mode they forward to the allocator that comes next in
 *   the symbol search order (glibc's, or one preloaded with LD_PRELOAD
 *   before a statically linked interpreter): the only cost is the
 *   thread-local mode test on allocation and the address test of
 *   _PySecret_IsSecret() on free/realloc/malloc_usable_size.
 * - In secret mode they allocate in the secret heap (its own mimalloc heap
 *   in the secret arena: secret_heap.c). Exhaustion returns NULL with
 *   errno ENOMEM, never ordinary memory.
 * - free, realloc and malloc_usable_size of a secret block work on any
 *   thread, in secret mode or not; blocks the next allocator made are
 *   never handed to the secret heap (the address test decides).
 * - realloc of an ordinary block in secret mode moves it into the secret
 *   heap and zeroes the old copy (the Python domains' rule).
 *
 * The forward table is resolved on the first call with
 * dlsym(RTLD_NEXT, ...). Allocations the resolution itself makes (dlsym
 * may allocate) come from a small static arena whose blocks are never
 * freed; only if that arena was used do free/realloc/malloc_usable_size
 * pay a test for it.
 *
 * Nothing here, nor in the secret heap's allocation paths, calls malloc
 * (mimalloc maps its memory with mmap; the heap lock never allocates).
 */

#include "Python.h"
#include "pycore_pymem.h"         // _PySecret_range, _PySecret_tls

#include "secret_core.h"

#include <stdio.h>

/* Under AddressSanitizer its runtime's allocator must serve every block
 * (it interposes malloc itself): nothing is interposed, and
 * protections()["native_heap"] is False. */
#if defined(__SANITIZE_ADDRESS__)
#  define SECRET_NATIVE 0
#  define NO_NATIVE_WHY "this build uses AddressSanitizer's allocator"
#elif _Py_SECRET_HEAP
#  define SECRET_NATIVE 1
#else
#  define SECRET_NATIVE 0
#  define NO_NATIVE_WHY "this build does not erase (fallback mode)"
#endif

#if SECRET_NATIVE

#include <dlfcn.h>
#include <link.h>                // dl_iterate_phdr()
#include <gnu/libc-version.h>   // gnu_get_libc_version()
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef Py_ENABLE_SHARED
/* Replacing malloc: TLS used by a replacement must be initial-exec (the
 * default in a shared object may call __tls_get_addr, which may call
 * malloc). The static build declares it local-exec. */
extern _Py_thread_local _PySecretTLS _PySecret_tls
    __attribute__((tls_model("initial-exec")));
#endif

#define COLD __attribute__((noinline, cold))

/* glibc's own entry points (exported by libc.so.6). */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

/* The secret heap (secret_heap.c). */
extern void *_PySecretHeap_NativeAlloc(size_t n, size_t align, int zero);
extern void *_PySecretHeap_NativeRealloc(void *p, size_t n);
extern size_t _PySecretHeap_UsableSize(const void *p);

/* --- the next allocator ---------------------------------------------- */

typedef struct {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*memalign)(size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    size_t (*usable_size)(void *);
} forward_table;

static void *boot_malloc(size_t);
static void boot_free(void *);
static void *boot_calloc(size_t, size_t);
static void *boot_realloc(void *, size_t);
static void *boot_memalign(size_t, size_t);
static int boot_posix_memalign(void **, size_t, size_t);
static void *boot_aligned_alloc(size_t, size_t);
static void *boot_valloc(size_t);
static void *boot_pvalloc(size_t);
static size_t boot_usable_size(void *);

/* Until resolved: functions that resolve, then forward. */
static forward_table next = {
    boot_malloc, boot_free, boot_calloc, boot_realloc, boot_memalign,
    boot_posix_memalign, boot_aligned_alloc, boot_valloc, boot_pvalloc,
    boot_usable_size,
};
/* What resolution found (the real next allocator). */
static forward_table real;

/* Where the next allocator lives, for heap_info(), and whether every
 * allocator name the process resolves is ours (see
 * _PySecretNative_Check). */
static char next_path[256];

/* The static arena for allocations made while resolving: blocks of
 * [size_t size][pad to 16][data], never freed. */
#define BOOT_SIZE 8192
static _Alignas(16) unsigned char boot_arena[BOOT_SIZE];
static size_t boot_used;
enum { UNRESOLVED, RESOLVING, RESOLVED };
static int resolve_state;
static _Py_thread_local int resolving_here
#ifdef Py_ENABLE_SHARED
    __attribute__((tls_model("initial-exec")))
#endif
    ;

static inline int
in_boot(const void *p)
{
    return (uintptr_t)p - (uintptr_t)boot_arena < BOOT_SIZE;
}

static void *
boot_alloc(size_t n, size_t align)
{
    if (align < 16) {
        align = 16;
    }
    if (n > BOOT_SIZE || align > 4096) {
        errno = ENOMEM;
        return NULL;
    }
    size_t used = __atomic_load_n(&boot_used, __ATOMIC_RELAXED);
    for (;;) {
        size_t start = (used + 16 + align - 1) & ~(align - 1);
        size_t end = start + ((n + 15) & ~(size_t)15);
        if (end > BOOT_SIZE) {
            errno = ENOMEM;
            return NULL;
        }
        if (__atomic_compare_exchange_n(&boot_used, &used, end, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            *(size_t *)(boot_arena + start - 16) = n;
            return boot_arena + start;
        }
    }
}

static size_t
boot_block_size(const void *p)
{
    return *(const size_t *)((const unsigned char *)p - 16);
}

/* Used once resolved, and only if the static arena was used. */
static void
free_or_boot(void *p)
{
    if (!in_boot(p)) {
        real.free(p);
    }
}

static void *
realloc_or_boot(void *p, size_t n)
{
    if (!in_boot(p)) {
        return real.realloc(p, n);
    }
    void *q = real.malloc(n);
    if (q != NULL) {
        size_t old = boot_block_size(p);
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}

static size_t
usable_or_boot(void *p)
{
    return in_boot(p) ? boot_block_size(p) : real.usable_size(p);
}

/* Composed from the next allocator's memalign where it lacks one of its
 * own (every block must come from one allocator). */
static size_t
page_size(void)
{
    long n = sysconf(_SC_PAGESIZE);
    return n > 0 ? (size_t)n : 4096;
}

static void *
composed_valloc(size_t n)
{
    return real.memalign(page_size(), n);
}

static void *
composed_pvalloc(size_t n)
{
    size_t ps = page_size();
    if (n > SIZE_MAX - ps) {
        errno = ENOMEM;
        return NULL;
    }
    return real.memalign(ps, (n + ps - 1) & ~(ps - 1));
}

static void *
composed_aligned_alloc(size_t align, size_t n)
{
    return real.memalign(align, n);
}

static int
composed_posix_memalign(void **out, size_t align, size_t n)
{
    if (align % sizeof(void *) != 0 || (align & (align - 1)) != 0
        || align == 0) {
        return EINVAL;
    }
    int saved = errno;
    void *p = real.memalign(align, n);
    if (p == NULL) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

static size_t
no_usable_size(void *p)
{
    (void)p;
    return 0;
}

/* The object (its program headers, as an identifier) whose loaded
 * segments hold addr, or NULL; its path in *path ("" for the
 * executable). dl_iterate_phdr, not dladdr: no symbol search (dladdr's
 * made resolving cost 0.9 million instructions at start-up). */
struct object_query {
    uintptr_t addr;
    const void *id;
    const char *name;
};

static int
object_query_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct object_query *q = arg;
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD
            && q->addr - (info->dlpi_addr + ph->p_vaddr) < ph->p_memsz)
        {
            q->id = info->dlpi_phdr;
            q->name = info->dlpi_name;
            return 1;
        }
    }
    return 0;
}

static const void *
object_of(const void *addr, const char **path)
{
    struct object_query q = {(uintptr_t)addr, NULL, NULL};
    if (addr == NULL) {
        return NULL;
    }
    dl_iterate_phdr(object_query_cb, &q);
    if (path != NULL && q.name != NULL) {
        *path = q.name;
    }
    return q.id;
}

static void
resolve(void)
{
    int state = UNRESOLVED;
    if (!__atomic_compare_exchange_n(&resolve_state, &state, RESOLVING, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        /* Another thread resolves (only possible if threads allocate
         * before the first allocation finished): wait for it. */
        while (__atomic_load_n(&resolve_state, __ATOMIC_ACQUIRE)
               != RESOLVED) {
            sched_yield();
        }
        return;
    }
    resolving_here = 1;
    forward_table f;
    f.malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    f.free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    f.calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    f.realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    f.memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    f.posix_memalign = (int (*)(void **, size_t, size_t))
        dlsym(RTLD_NEXT, "posix_memalign");
    f.aligned_alloc = (void *(*)(size_t, size_t))
        dlsym(RTLD_NEXT, "aligned_alloc");
    f.valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    f.pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    f.usable_size = (size_t (*)(void *))
        dlsym(RTLD_NEXT, "malloc_usable_size");
    const char *path = NULL;
    const void *home = object_of((const void *)f.malloc, &path);
    if (home == NULL || f.free == NULL || f.calloc == NULL
        || f.realloc == NULL || f.memalign == NULL
        || object_of((const void *)f.free, NULL) != home
        || object_of((const void *)f.calloc, NULL) != home
        || object_of((const void *)f.realloc, NULL) != home
        || object_of((const void *)f.memalign, NULL) != home)
    {
        /* No usable next allocator (cannot happen with glibc): glibc's
         * own entry points. */
        f.malloc = __libc_malloc;
        f.free = __libc_free;
        f.calloc = __libc_calloc;
        f.realloc = __libc_realloc;
        f.memalign = __libc_memalign;
        f.valloc = __libc_valloc;
        f.pvalloc = __libc_pvalloc;
        f.posix_memalign = NULL;
        f.aligned_alloc = NULL;
        f.usable_size = NULL;
        home = object_of((const void *)__libc_malloc, &path);
    }
    if (path != NULL) {
        size_t len = strlen(path);
        if (len >= sizeof(next_path)) {
            len = sizeof(next_path) - 1;
        }
        memcpy(next_path, path, len);
        next_path[len] = '\0';
    }
    real = f;
    /* A function the next allocator lacks would come from a later object
     * (glibc behind a preloaded allocator): compose it from the next
     * allocator's memalign instead, so that every block has one owner. */
    if (object_of((const void *)f.valloc, NULL) != home) {
        real.valloc = composed_valloc;
    }
    if (object_of((const void *)f.pvalloc, NULL) != home) {
        real.pvalloc = composed_pvalloc;
    }
    if (object_of((const void *)f.aligned_alloc, NULL) != home) {
        real.aligned_alloc = composed_aligned_alloc;
    }
    if (object_of((const void *)f.posix_memalign, NULL) != home) {
        real.posix_memalign = composed_posix_memalign;
    }
    if (object_of((const void *)f.usable_size, NULL) != home) {
        real.usable_size = no_usable_size;
    }
    forward_table pub = real;
    if (__atomic_load_n(&boot_used, __ATOMIC_ACQUIRE) != 0) {
        pub.free = free_or_boot;
        pub.realloc = realloc_or_boot;
        pub.usable_size = usable_or_boot;
    }
    next = pub;
    resolving_here = 0;
    __atomic_store_n(&resolve_state, RESOLVED, __ATOMIC_RELEASE);
}

/* A call before resolution: resolve, unless this is a call the resolution
 * itself made (then the static arena serves it). */
#define BOOT_ENTRY(fallback) \
    do { \
        if (resolving_here) { \
            fallback; \
        } \
        resolve(); \
    } while (0)

static void *
boot_malloc(size_t n)
{
    BOOT_ENTRY(return boot_alloc(n, 16));
    return next.malloc(n);
}

static void
boot_free(void *p)
{
    if (in_boot(p) || p == NULL) {
        return;
    }
    BOOT_ENTRY(return);
    next.free(p);
}

static void *
boot_calloc(size_t nelem, size_t elsize)
{
    if (elsize != 0 && nelem > SIZE_MAX / elsize) {
        errno = ENOMEM;
        return NULL;
    }
    /* The static arena is zero and never reused. */
    BOOT_ENTRY(return boot_alloc(nelem * elsize, 16));
    return next.calloc(nelem, elsize);
}

static void *
boot_realloc(void *p, size_t n)
{
    if (resolving_here) {
        void *q = boot_alloc(n, 16);
        if (q != NULL && p != NULL && in_boot(p)) {
            size_t old = boot_block_size(p);
            memcpy(q, p, old < n ? old : n);
        }
        return q;
    }
    resolve();
    return next.realloc(p, n);
}

static void *
boot_memalign(size_t align, size_t n)
{
    BOOT_ENTRY(return boot_alloc(n, align));
    return next.memalign(align, n);
}

static int
boot_posix_memalign(void **out, size_t align, size_t n)
{
    if (resolving_here) {
        void *p = boot_alloc(n, align);
        if (p == NULL) {
            return ENOMEM;
        }
        *out = p;
        return 0;
    }
    resolve();
    return next.posix_memalign(out, align, n);
}

static void *
boot_aligned_alloc(size_t align, size_t n)
{
    BOOT_ENTRY(return boot_alloc(n, align));
    return next.aligned_alloc(align, n);
}

static void *
boot_valloc(size_t n)
{
    BOOT_ENTRY(return boot_alloc(n, 4096));
    return next.valloc(n);
}

static void *
boot_pvalloc(size_t n)
{
    BOOT_ENTRY(return boot_alloc(n, 4096));
    return next.pvalloc(n);
}

static size_t
boot_usable_size(void *p)
{
    if (in_boot(p)) {
        return boot_block_size(p);
    }
    BOOT_ENTRY(return 0);
    return next.usable_size(p);
}

/* --- secret mode ----------------------------------------------------- */

static inline int
in_mode(void)
{
    return __builtin_expect(_PySecret_tls.mode > 0, 0);
}

/* glibc's memalign: alignments up to 16 are malloc's; others are rounded
 * up to a power of two. 0 if it cannot be met. */
static size_t
fix_alignment(size_t align)
{
    if (align <= 16) {
        return 16;
    }
    if ((align & (align - 1)) != 0) {
        if (align > (SIZE_MAX >> 1) + 1) {
            return 0;
        }
        size_t a = 32;
        while (a < align) {
            a <<= 1;
        }
        align = a;
    }
    return align;
}

static COLD void *
secret_alloc(size_t n, size_t align, int zero)
{
    void *p = _PySecretHeap_NativeAlloc(n, align, zero);
    if (p == NULL) {
        errno = ENOMEM;
    }
    return p;
}

static COLD void
secret_free(void *p)
{
    int saved = errno;          /* free() keeps errno */
    _PySecretHeap_Free(p);
    errno = saved;
}

static COLD void *
secret_realloc(void *p, size_t n)
{
    if (n == 0) {
        /* glibc: realloc(p, 0) frees p and returns NULL. */
        secret_free(p);
        return NULL;
    }
    void *q = _PySecretHeap_NativeRealloc(p, n);
    if (q == NULL) {
        errno = ENOMEM;
    }
    return q;
}

/* In secret mode, an ordinary block (or NULL) grown or shrunk: its data
 * moves into the secret heap and the old copy is zeroed, as the Python
 * domains do. */
static COLD void *
adopt_realloc(void *p, size_t n)
{
    if (p == NULL) {
        return secret_alloc(n, 0, 0);
    }
    if (n == 0) {
        next.free(p);
        return NULL;
    }
    size_t old = next.usable_size(p);
    if (old == 0) {
        /* A next allocator without malloc_usable_size: let it resize the
         * block to n first (a copy it moves is left behind unzeroed). */
        p = next.realloc(p, n);
        if (p == NULL) {
            return NULL;
        }
        old = n;
    }
    void *q = secret_alloc(n, 0, 0);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, p, old < n ? old : n);
    explicit_bzero(p, old);
    next.free(p);
    return q;
}

static COLD void *
secret_memalign(size_t align, size_t n)
{
    align = fix_alignment(align);
    if (align == 0) {
        errno = EINVAL;
        return NULL;
    }
    return secret_alloc(n, align, 0);
}

/* --- the exported functions ------------------------------------------ */

/* Each is a static function exported under the C library's name by an
 * alias, so that this file can tell its own definitions (their local
 * addresses) from what the process binds the names to. */

static void *
native_malloc(size_t n)
{
    if (in_mode()) {
        return secret_alloc(n, 0, 0);
    }
    return next.malloc(n);
}

static void
native_free(void *p)
{
    if (_PySecret_IsSecret(p)) {
        secret_free(p);
        return;
    }
    next.free(p);
}

static void *
native_calloc(size_t nelem, size_t elsize)
{
    if (in_mode()) {
        if (elsize != 0 && nelem > SIZE_MAX / elsize) {
            errno = ENOMEM;
            return NULL;
        }
        return secret_alloc(nelem * elsize, 0, 1);
    }
    return next.calloc(nelem, elsize);
}

static void *
native_realloc(void *p, size_t n)
{
    if (_PySecret_IsSecret(p)) {
        return secret_realloc(p, n);
    }
    if (in_mode()) {
        return adopt_realloc(p, n);
    }
    return next.realloc(p, n);
}

static void *
native_reallocarray(void *p, size_t nelem, size_t elsize)
{
    if (elsize != 0 && nelem > SIZE_MAX / elsize) {
        errno = ENOMEM;
        return NULL;
    }
    return native_realloc(p, nelem * elsize);
}

static size_t
native_malloc_usable_size(void *p)
{
    if (_PySecret_IsSecret(p)) {
        return _PySecretHeap_UsableSize(p);
    }
    if (p == NULL) {
        return 0;
    }
    return next.usable_size(p);
}

static void *
native_memalign(size_t align, size_t n)
{
    if (in_mode()) {
        return secret_memalign(align, n);
    }
    return next.memalign(align, n);
}

static void *
native_aligned_alloc(size_t align, size_t n)
{
    if (in_mode()) {
        /* glibc 2.36: memalign's rules. */
        return secret_memalign(align, n);
    }
    return next.aligned_alloc(align, n);
}

static int
native_posix_memalign(void **out, size_t align, size_t n)
{
    if (in_mode()) {
        if (align % sizeof(void *) != 0 || (align & (align - 1)) != 0
            || align == 0) {
            return EINVAL;
        }
        int saved = errno;
        void *p = _PySecretHeap_NativeAlloc(n, align <= 16 ? 0 : align, 0);
        errno = saved;
        if (p == NULL) {
            return ENOMEM;
        }
        *out = p;
        return 0;
    }
    return next.posix_memalign(out, align, n);
}

static void *
native_valloc(size_t n)
{
    if (in_mode()) {
        return secret_alloc(n, page_size(), 0);
    }
    return next.valloc(n);
}

static void *
native_pvalloc(size_t n)
{
    if (in_mode()) {
        size_t ps = page_size();
        if (n > SIZE_MAX - ps) {
            errno = ENOMEM;
            return NULL;
        }
        return secret_alloc((n + ps - 1) & ~(ps - 1), ps, 0);
    }
    return next.pvalloc(n);
}

/* The names the process binds to. */
#define ALIAS(name) __attribute__((alias("native_" #name), \
                                   visibility("default"), used))
void *malloc(size_t) ALIAS(malloc);
void free(void *) ALIAS(free);
void *calloc(size_t, size_t) ALIAS(calloc);
void *realloc(void *, size_t) ALIAS(realloc);
void *reallocarray(void *, size_t, size_t) ALIAS(reallocarray);
size_t malloc_usable_size(void *) ALIAS(malloc_usable_size);
void *memalign(size_t, size_t) ALIAS(memalign);
void *aligned_alloc(size_t, size_t) ALIAS(aligned_alloc);
int posix_memalign(void **, size_t, size_t) ALIAS(posix_memalign);
void *valloc(size_t) ALIAS(valloc);
void *pvalloc(size_t) ALIAS(pvalloc);

/* --- what the process binds to ---------------------------------------- */

/* Every name above, and the function the process resolves it to. */
static const struct {
    const char *name;
    const void *ours;
} names[] = {
    {"malloc", (const void *)native_malloc},
    {"free", (const void *)native_free},
    {"calloc", (const void *)native_calloc},
    {"realloc", (const void *)native_realloc},
    {"reallocarray", (const void *)native_reallocarray},
    {"malloc_usable_size", (const void *)native_malloc_usable_size},
    {"memalign", (const void *)native_memalign},
    {"aligned_alloc", (const void *)native_aligned_alloc},
    {"posix_memalign", (const void *)native_posix_memalign},
    {"valloc", (const void *)native_valloc},
    {"pvalloc", (const void *)native_pvalloc},
};

/* 1 if native code's allocations in secret mode are secret: every name
 * the process resolves is ours, and what serves ordinary memory is the C
 * library's allocator. Else 0, with why in buf. A preloaded allocator
 * (LD_PRELOAD of jemalloc, tcmalloc) either takes the names (with
 * --enable-shared: it comes before libpython) or is the next allocator
 * (static build), whose own entry points (C++ operator new, mallocx) do
 * not pass through here: reported, never claimed. */
int
_PySecretNative_Check(char *buf, size_t len)
{
    if (resolve_state != RESOLVED) {
        void *p = native_malloc(1);     /* resolves */
        native_free(p);
    }
    for (size_t i = 0; i < Py_ARRAY_LENGTH(names); i++) {
        /* ours is the local address of our definition: the process
         * binds the name to it, or to another object's. */
        void *bound = dlsym(RTLD_DEFAULT, names[i].name);
        if (bound != names[i].ours) {
            const char *where = NULL;
            object_of(bound, &where);
            PyOS_snprintf(buf, len,
                          "%s() is served by %s, not by the interpreter: "
                          "another allocator is loaded first (LD_PRELOAD?); "
                          "native code's allocations in secret mode are "
                          "not secret", names[i].name,
                          where && where[0] ? where : "an unknown object");
            return 0;
        }
    }
    /* The C library: an object that defines a function only glibc has
     * (tcmalloc defines __libc_memalign and kin too). */
    const void *libc = object_of((const void *)gnu_get_libc_version, NULL);
    if (object_of((const void *)real.malloc, NULL) != libc) {
        PyOS_snprintf(buf, len,
                      "ordinary memory is served by %s (a preloaded "
                      "allocator): its own entry points (C++ operator "
                      "new, its extended API) bypass the secret heap",
                      next_path);
        return 0;
    }
    buf[0] = '\0';
    return 1;
}

const char *
_PySecretNative_NextAllocator(void)
{
    return next_path;
}

/* --- the C library's stdin buffer ------------------------------------ */

/* PyOS_StdioReadline (Parser/myreadline.c) read a line from fp in secret
 * mode: zero what glibc's buffer holds that was consumed, and what is left
 * beyond the last read of earlier reads (input() without readline reads
 * stdin through it, and the buffer outlives do()). What was read ahead and
 * not consumed stays. */
void
_PySecret_StdioConsumed(FILE *fp)
{
#ifdef __GLIBC__
    /* Never wait: another thread blocked reading fp holds its lock (and
     * refills this buffer, overwriting what is consumed). */
    if (ftrylockfile(fp) != 0) {
        return;
    }
    /* In backup mode (after ungetc beyond the buffer) the read pointers
     * are the backup area's: leave them. */
    if (!(fp->_flags & 0x100 /* _IO_IN_BACKUP */)
        && fp->_IO_buf_base != NULL
        && fp->_IO_read_base == fp->_IO_buf_base
        && fp->_IO_read_ptr >= fp->_IO_read_base
        && fp->_IO_read_end >= fp->_IO_read_ptr
        && fp->_IO_buf_end >= fp->_IO_read_end)
    {
        explicit_bzero(fp->_IO_buf_base,
                       (size_t)(fp->_IO_read_ptr - fp->_IO_buf_base));
        explicit_bzero(fp->_IO_read_end,
                       (size_t)(fp->_IO_buf_end - fp->_IO_read_end));
    }
    funlockfile(fp);
#else
    (void)fp;
#endif
}

#else  /* !SECRET_NATIVE: nothing is interposed */

int
_PySecretNative_Check(char *buf, size_t len)
{
    PyOS_snprintf(buf, len, "%s", NO_NATIVE_WHY);
    return 0;
}

const char *
_PySecretNative_NextAllocator(void)
{
    return "";
}

void
_PySecret_StdioConsumed(FILE *fp)
{
    (void)fp;
}

#endif  /* SECRET_NATIVE */
