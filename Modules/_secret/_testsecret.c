/* _testsecret: helpers for the runtimesecret tests. Only tests import it.
 *
 * A pattern is an 8-byte value P the test chooses at run time. The helpers
 * plant P (in registers, deep in the C stack) and look for it right after
 * a call returns, before Python code can overwrite what was left.
 * They never keep P anywhere but where they plant it and the caller's
 * bytes object: looking is done below their own frame.
 */

#ifndef Py_BUILD_CORE_BUILTIN
#  define Py_BUILD_CORE_MODULE 1
#endif

#include "Python.h"

#include <alloca.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>        // SYS_arch_prctl
#include <sys/time.h>           // setitimer()
#include <unistd.h>
#if defined(__x86_64__)
#  include <cpuid.h>
#endif

static int
get_pattern(PyObject *obj, uint64_t *p)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view.len != 8) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pattern must be 8 bytes");
        return -1;
    }
    memcpy(p, view.buf, 8);
    PyBuffer_Release(&view);
    if (*p == 0) {
        PyErr_SetString(PyExc_ValueError, "pattern must not be zero");
        return -1;
    }
    return 0;
}

/* --- the C stack ----------------------------------------------------- */

/* Keeps the compiler from dropping stores to a buffer. */
static void __attribute__((noinline))
opaque(volatile void *p)
{
    __asm__ volatile ("" : : "r" (p) : "memory");
}

static int __attribute__((noinline))
write_frames(uint64_t p, Py_ssize_t remaining, int raise)
{
    /* One ~1 KiB frame full of P, then the next one deeper. */
    volatile uint64_t buf[120];
    for (size_t i = 0; i < Py_ARRAY_LENGTH(buf); i++) {
        buf[i] = p;
    }
    opaque(buf);
    if (remaining > (Py_ssize_t)sizeof(buf)) {
        return write_frames(p, remaining - sizeof(buf), raise) + 1;
    }
    if (raise) {
        PyErr_SetString(PyExc_RuntimeError, "raised from deep C frames");
        return -1000000;
    }
    return 1;
}

static PyObject *
write_stack_pattern(PyObject *module, PyObject *args)
{
    PyObject *pat;
    Py_ssize_t nbytes;
    int raise = 0;
    uint64_t p;
    if (!PyArg_ParseTuple(args, "On|p", &pat, &nbytes, &raise)) {
        return NULL;
    }
    if (get_pattern(pat, &p) < 0) {
        return NULL;
    }
    int frames = write_frames(p, nbytes, raise);
    p = 0;
    if (frames < 0) {
        return NULL;
    }
    return PyLong_FromLong(frames);
}

/* Frames with stretches that are never written (spec §3.2: "no shape of
 * frames defeats it"). A frame of `gap` bytes (alloca) whose only write is
 * the pattern at its lowest 64 bytes:
 *   mode 0: by the CPU (a store);
 *   mode 1: by the kernel (read() from a pipe straight into the untouched
 *           bottom of the frame);
 *   mode 2: by the CPU, then a call made from below it (whose frame lies
 *           deeper still) calls `then` if given.
 * Nothing else of the frame is touched; the frame's top may be far above
 * the write. */
static int __attribute__((noinline))
gapped_frame(uint64_t p, size_t gap, int mode, PyObject *then)
{
    volatile char *buf = alloca(gap + 64);
    int rc = 0;
    if (mode == 1) {
        int fds[2];
        if (pipe(fds) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (write(fds[1], &p, 8) != 8
            || read(fds[0], (char *)buf, 8) != 8) {
            PyErr_SetFromErrno(PyExc_OSError);
            rc = -1;
        }
        close(fds[0]);
        close(fds[1]);
    }
    else {
        memcpy((char *)buf, &p, 8);
        memcpy((char *)buf + 56, &p, 8);
    }
    opaque(buf);
    if (mode == 2 && then != NULL && then != Py_None) {
        PyObject *r = PyObject_CallNoArgs(then);
        if (r == NULL) {
            rc = -1;
        }
        Py_XDECREF(r);
    }
    opaque(buf + gap);
    return rc;
}

static PyObject *
write_gapped(PyObject *module, PyObject *args)
{
    PyObject *pat, *then = NULL;
    Py_ssize_t gap;
    int mode;
    uint64_t p;
    if (!PyArg_ParseTuple(args, "Oni|O", &pat, &gap, &mode, &then)) {
        return NULL;
    }
    if (gap < 0 || gap > (16 << 20) || mode < 0 || mode > 2) {
        PyErr_SetString(PyExc_ValueError, "gap in [0, 16 MiB], mode 0-2");
        return NULL;
    }
    if (get_pattern(pat, &p) < 0) {
        return NULL;
    }
    int rc = gapped_frame(p, (size_t)gap, mode, then);
    p = 0;
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A C frame of `gap` untouched bytes (alloca; only its ends written by
 * the call) between the caller and func(): the Python frames func runs
 * lie a gap below the caller's. */
static PyObject *
call_below_gap(PyObject *module, PyObject *args)
{
    Py_ssize_t gap;
    PyObject *func;
    if (!PyArg_ParseTuple(args, "nO", &gap, &func)) {
        return NULL;
    }
    if (gap < 0 || gap > (16 << 20)) {
        PyErr_SetString(PyExc_ValueError, "gap in [0, 16 MiB]");
        return NULL;
    }
    volatile char *buf = alloca((size_t)gap + 16);
    opaque(buf);
    PyObject *r = PyObject_CallNoArgs(func);
    opaque(buf);
    return r;
}

static int
stack_bounds(char **lo, char **hi)
{
    pthread_attr_t attr;
    void *addr;
    size_t size;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) {
        return -1;
    }
    int r = pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    if (r != 0) {
        return -1;
    }
    *lo = addr;
    *hi = (char *)addr + size;
    return 0;
}

/* memmem() for the scans: they read memory no object owns (a stack below
 * its pointer, freed blocks), which AddressSanitizer's memmem reports;
 * the sanitizer build reads it uninstrumented (docs/sanitizers.md). */
#if defined(__SANITIZE_ADDRESS__)
__attribute__((no_sanitize("address"), noinline))
static char *
scan_find(char *a, size_t n, const uint64_t *pp)
{
    const volatile char *v = a;
    const char *p = (const char *)pp;
    for (size_t i = 0; i + 8 <= n; i++) {
        size_t k = 0;
        while (k < 8 && v[i + k] == p[k]) {
            k++;
        }
        if (k == 8) {
            return a + i;
        }
    }
    return NULL;
}
#else
#  define scan_find(a, n, pp) ((char *)memmem((a), (n), (pp), 8))
#endif

/* Copies of p at any byte offset that start in [page, page + ps) (and in
 * [lo, hi)); `more` bytes past the page may be read (a copy that
 * straddles into the next page, when that one is resident too). */
static Py_ssize_t
count_page(char *page, size_t ps, size_t more, char *lo, char *hi,
           const uint64_t *pp)
{
    Py_ssize_t count = 0;
    char *a = page < lo ? lo : page;
    char *end = page + ps + more > hi ? hi : page + ps + more;
    char *last = page + ps;         /* a copy must start before this */
    while (a + 8 <= end && a < last) {
        char *f = scan_find(a, (size_t)(end - a), pp);
        if (f == NULL || f >= last) {
            break;
        }
        count++;
        a = f + 1;
    }
    return count;
}

static int
resident(char *page, size_t ps)
{
    unsigned char v;
    return mincore(page, ps, &v) == 0 && (v & 1);
}

/* Copies of *pp (any alignment) in the resident pages of [lo, hi),
 * without faulting any page in. The pattern is only read through pp (a
 * copy of it on this stack would be found). The caller blocks signals: a
 * signal frame pushed meanwhile would hold the pattern memmem() keeps in
 * registers. */
static Py_ssize_t
count_resident(char *lo, char *hi, const uint64_t *pp)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    Py_ssize_t count = 0;
    unsigned char vec[128];
    char *page = (char *)((uintptr_t)lo & ~(uintptr_t)(ps - 1));
    while (page < hi) {
        size_t n = ((size_t)(hi - page) + ps - 1) / ps;
        if (n > sizeof(vec)) {
            n = sizeof(vec);
        }
        if (mincore(page, n * ps, vec) != 0) {
            /* Partly unmapped: page by page. */
            for (size_t i = 0; i < n; i++) {
                vec[i] = resident(page + i * ps, ps);
            }
        }
        for (size_t i = 0; i < n; i++) {
            if (vec[i] & 1) {
                char *q = page + i * ps;
                int next = i + 1 < n ? (vec[i + 1] & 1)
                                     : resident(q + ps, ps);
                count += count_page(q, ps, next ? 7 : 0, lo, hi, pp);
            }
        }
        page += n * ps;
    }
    return count;
}

/* rt_sigprocmask without a libc frame (the kernel's 8-byte mask). */
static inline void
raw_sigprocmask(int how, const uint64_t *set, uint64_t *old)
{
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = 8;
    __asm__ volatile ("syscall" : "=a" (ret)
                      : "0" ((long)SYS_rt_sigprocmask), "D" ((long)how),
                        "S" (set), "d" (old), "r" (r10)
                      : "rcx", "r11", "memory");
    (void)ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_rt_sigprocmask;
    register long x0 __asm__("x0") = how;
    register const uint64_t *x1 __asm__("x1") = set;
    register uint64_t *x2 __asm__("x2") = old;
    register long x3 __asm__("x3") = 8;
    __asm__ volatile ("svc #0" : "+r" (x0)
                      : "r" (x8), "r" (x1), "r" (x2), "r" (x3) : "memory");
#else
    (void)how; (void)set; (void)old;
#endif
}

/* Below this frame (and the red zone): what callees left. The bounds are
 * looked up before the call (pthread_getattr_np reads /proc/self/maps on
 * the main thread: its stack use would overwrite what is looked for). */
static Py_ssize_t __attribute__((noinline))
count_in_stack_below_here(char *lo, const uint64_t *pp)
{
    char here;
    return count_resident(lo, (char *)((uintptr_t)&here - 256), pp);
}

PyDoc_STRVAR(call_and_scan_doc,
"call_and_scan(pattern, func, *args) -> (result or exception, count)\n\n"
"Call func(*args), then count copies of pattern in this thread's stack\n"
"below the caller's frame, before anything else runs.");

static PyObject *
call_and_scan(PyObject *module, PyObject *args)
{
    uint64_t p;
    if (PyTuple_GET_SIZE(args) < 2) {
        PyErr_SetString(PyExc_TypeError, "call_and_scan(pattern, func, *args)");
        return NULL;
    }
    if (get_pattern(PyTuple_GET_ITEM(args, 0), &p) < 0) {
        return NULL;
    }
    char *lo, *hi;
    if (stack_bounds(&lo, &hi) < 0) {
        PyErr_SetString(PyExc_OSError, "pthread_getattr_np failed");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 2, PyTuple_GET_SIZE(args));
    if (rest == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_Call(PyTuple_GET_ITEM(args, 1), rest, NULL);
    Py_DECREF(rest);
    /* Signals wait while it counts (see count_resident): the system call
     * made right here, no libc frame below this one to overwrite what is
     * looked for. */
    uint64_t all = ~(uint64_t)0, old = 0;
    raw_sigprocmask(SIG_BLOCK, &all, &old);
    Py_ssize_t count = count_in_stack_below_here(lo, &p);
    raw_sigprocmask(SIG_SETMASK, &old, NULL);
    p = 0;
    if (res == NULL) {
        res = PyErr_GetRaisedException();
    }
    return Py_BuildValue("Nn", res, count);
}

static PyObject *
stack_info(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    char *lo, *hi;
    char here;
    if (stack_bounds(&lo, &hi) < 0) {
        PyErr_SetString(PyExc_OSError, "pthread_getattr_np failed");
        return NULL;
    }
    return Py_BuildValue("KKK", (unsigned long long)(uintptr_t)lo,
                         (unsigned long long)(uintptr_t)hi,
                         (unsigned long long)(uintptr_t)&here);
}

static PyObject *
altstack_info(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (ss.ss_flags & SS_DISABLE) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("KK", (unsigned long long)(uintptr_t)ss.ss_sp,
                         (unsigned long long)ss.ss_size);
}

static PyObject *
frame_stack_info(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    /* The dead part of the current frame-stack chunk: [top, limit). */
    PyThreadState *tstate = PyThreadState_Get();
    return Py_BuildValue("KK",
                         (unsigned long long)(uintptr_t)tstate->datastack_top,
                         (unsigned long long)(uintptr_t)tstate->datastack_limit);
}

static PyObject *
count_in_range(PyObject *module, PyObject *args)
{
    unsigned long long addr, size;
    PyObject *pat;
    uint64_t p;
    if (!PyArg_ParseTuple(args, "KKO", &addr, &size, &pat)
        || get_pattern(pat, &p) < 0) {
        return NULL;
    }
    uint64_t all = ~(uint64_t)0, old = 0;
    raw_sigprocmask(SIG_BLOCK, &all, &old);
    Py_ssize_t n = count_resident((char *)(uintptr_t)addr,
                                  (char *)(uintptr_t)(addr + size), &p);
    raw_sigprocmask(SIG_SETMASK, &old, NULL);
    p = 0;
    return PyLong_FromSsize_t(n);
}

/* --- registers (x86-64) ---------------------------------------------- */

#if defined(__x86_64__)
/* 0: SSE, 1: AVX, 2: AVX-512 (F+BW for 64-bit opmasks). */
static int
vector_kind(void)
{
    unsigned int a, b, c, d, lo, hi;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)
        || !(c & bit_AVX)) {
        return 0;
    }
    __asm__ volatile ("xgetbv" : "=a" (lo), "=d" (hi) : "c" (0));
    if ((lo & 0x6) != 0x6) {
        return 0;
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F)
        && (b & bit_AVX512BW) && (lo & 0xe6) == 0xe6) {
        return 2;
    }
    return 1;
}

#define NGPR 8
static const char *gpr_names[NGPR] = {
    "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"
};

/* Registers right after a call: the caller-saved general registers but
 * rax (the result), the FXSAVE image (x87 st0-7 and xmm0-15), and
 * ymm0-15 or zmm0-31 and k0-k7. */
static struct {
    uint64_t gpr[NGPR];
    unsigned char fx[512] __attribute__((aligned(64)));
    unsigned char vec[32][64] __attribute__((aligned(64)));
    uint64_t k[8];
} dump;

static PyObject *
fill_registers(PyObject *module, PyObject *pat)
{
    uint64_t p;
    if (get_pattern(pat, &p) < 0) {
        return NULL;
    }
    int kind = vector_kind();
    /* An 80-bit x87 value whose 64-bit mantissa is P. */
    struct { uint64_t m; uint16_t e; } __attribute__((packed)) x87 = {p, 0x3fff};
    __asm__ volatile (
        "movq %0, %%xmm0\n\t"
        "punpcklqdq %%xmm0, %%xmm0\n\t"
        "movdqa %%xmm0, %%xmm1\n\t  movdqa %%xmm0, %%xmm2\n\t"
        "movdqa %%xmm0, %%xmm3\n\t  movdqa %%xmm0, %%xmm4\n\t"
        "movdqa %%xmm0, %%xmm5\n\t  movdqa %%xmm0, %%xmm6\n\t"
        "movdqa %%xmm0, %%xmm7\n\t  movdqa %%xmm0, %%xmm8\n\t"
        "movdqa %%xmm0, %%xmm9\n\t  movdqa %%xmm0, %%xmm10\n\t"
        "movdqa %%xmm0, %%xmm11\n\t movdqa %%xmm0, %%xmm12\n\t"
        "movdqa %%xmm0, %%xmm13\n\t movdqa %%xmm0, %%xmm14\n\t"
        "movdqa %%xmm0, %%xmm15\n\t"
        : : "r" (p) : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
          "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
          "xmm13", "xmm14", "xmm15");
    if (kind >= 1) {
        __asm__ volatile (
            "vmovq %0, %%xmm0\n\t"
            "vpbroadcastq %%xmm0, %%ymm0\n\t"
            "vmovdqa %%ymm0, %%ymm1\n\t  vmovdqa %%ymm0, %%ymm2\n\t"
            "vmovdqa %%ymm0, %%ymm3\n\t  vmovdqa %%ymm0, %%ymm4\n\t"
            "vmovdqa %%ymm0, %%ymm5\n\t  vmovdqa %%ymm0, %%ymm6\n\t"
            "vmovdqa %%ymm0, %%ymm7\n\t  vmovdqa %%ymm0, %%ymm8\n\t"
            "vmovdqa %%ymm0, %%ymm9\n\t  vmovdqa %%ymm0, %%ymm10\n\t"
            "vmovdqa %%ymm0, %%ymm11\n\t vmovdqa %%ymm0, %%ymm12\n\t"
            "vmovdqa %%ymm0, %%ymm13\n\t vmovdqa %%ymm0, %%ymm14\n\t"
            "vmovdqa %%ymm0, %%ymm15\n\t"
            : : "r" (p) : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
              "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
              "xmm13", "xmm14", "xmm15");
    }
    if (kind == 2) {
        __asm__ volatile (
            "vpbroadcastq %0, %%zmm0\n\t"
            "vmovdqa64 %%zmm0, %%zmm1\n\t  vmovdqa64 %%zmm0, %%zmm2\n\t"
            "vmovdqa64 %%zmm0, %%zmm3\n\t  vmovdqa64 %%zmm0, %%zmm4\n\t"
            "vmovdqa64 %%zmm0, %%zmm5\n\t  vmovdqa64 %%zmm0, %%zmm6\n\t"
            "vmovdqa64 %%zmm0, %%zmm7\n\t  vmovdqa64 %%zmm0, %%zmm8\n\t"
            "vmovdqa64 %%zmm0, %%zmm9\n\t  vmovdqa64 %%zmm0, %%zmm10\n\t"
            "vmovdqa64 %%zmm0, %%zmm11\n\t vmovdqa64 %%zmm0, %%zmm12\n\t"
            "vmovdqa64 %%zmm0, %%zmm13\n\t vmovdqa64 %%zmm0, %%zmm14\n\t"
            "vmovdqa64 %%zmm0, %%zmm15\n\t vmovdqa64 %%zmm0, %%zmm16\n\t"
            "vmovdqa64 %%zmm0, %%zmm17\n\t vmovdqa64 %%zmm0, %%zmm18\n\t"
            "vmovdqa64 %%zmm0, %%zmm19\n\t vmovdqa64 %%zmm0, %%zmm20\n\t"
            "vmovdqa64 %%zmm0, %%zmm21\n\t vmovdqa64 %%zmm0, %%zmm22\n\t"
            "vmovdqa64 %%zmm0, %%zmm23\n\t vmovdqa64 %%zmm0, %%zmm24\n\t"
            "vmovdqa64 %%zmm0, %%zmm25\n\t vmovdqa64 %%zmm0, %%zmm26\n\t"
            "vmovdqa64 %%zmm0, %%zmm27\n\t vmovdqa64 %%zmm0, %%zmm28\n\t"
            "vmovdqa64 %%zmm0, %%zmm29\n\t vmovdqa64 %%zmm0, %%zmm30\n\t"
            "vmovdqa64 %%zmm0, %%zmm31\n\t"
            "kmovq %0, %%k0\n\t kmovq %0, %%k1\n\t kmovq %0, %%k2\n\t"
            "kmovq %0, %%k3\n\t kmovq %0, %%k4\n\t kmovq %0, %%k5\n\t"
            "kmovq %0, %%k6\n\t kmovq %0, %%k7\n\t"
            : : "r" (p) : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
              "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
              "xmm13", "xmm14", "xmm15");
        /* zmm16-31 and k0-7 are not in the clobber list: the compiler
         * cannot name them without -mavx512f, and never uses them then. */
    }
    /* x87: load P into all eight registers, then pop them all (the ABI
     * wants the x87 stack empty); the registers keep P. */
    __asm__ volatile (
        "fldt %0\n\t fldt %0\n\t fldt %0\n\t fldt %0\n\t"
        "fldt %0\n\t fldt %0\n\t fldt %0\n\t fldt %0\n\t"
        "fstp %%st(0)\n\t fstp %%st(0)\n\t fstp %%st(0)\n\t fstp %%st(0)\n\t"
        "fstp %%st(0)\n\t fstp %%st(0)\n\t fstp %%st(0)\n\t fstp %%st(0)\n\t"
        : : "m" (x87));
    /* Last, the general registers; the compiler may not use them after. */
    __asm__ volatile (
        "movq %0, %%rcx\n\t movq %0, %%rdx\n\t movq %0, %%rsi\n\t"
        "movq %0, %%rdi\n\t movq %0, %%r8\n\t movq %0, %%r9\n\t"
        "movq %0, %%r10\n\t movq %0, %%r11\n\t"
        : : "m" (p) : "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11");
    return Py_NewRef(Py_None);
}

PyDoc_STRVAR(call_and_dump_doc,
"call_and_dump(func, *args) -> (result or exception, {register: bytes})\n\n"
"Call func(*args) and dump the registers right after it returns.");

static PyObject *
call_and_dump(PyObject *module, PyObject *args)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "call_and_dump(func, *args)");
        return NULL;
    }
    int kind = vector_kind();
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_Call(PyTuple_GET_ITEM(args, 0), rest, NULL);
    /* General registers: the first thing after the call (the vector ones
     * survive a few instructions). */
    __asm__ volatile (
        "movq %%rcx, 0(%0)\n\t movq %%rdx, 8(%0)\n\t movq %%rsi, 16(%0)\n\t"
        "movq %%rdi, 24(%0)\n\t movq %%r8, 32(%0)\n\t movq %%r9, 40(%0)\n\t"
        "movq %%r10, 48(%0)\n\t movq %%r11, 56(%0)\n\t"
        "fxsave64 (%1)\n\t"
        : : "r" (dump.gpr), "r" (dump.fx) : "memory");
    if (kind == 2) {
        __asm__ volatile (
            "vmovdqu64 %%zmm0, 0(%0)\n\t vmovdqu64 %%zmm1, 64(%0)\n\t"
            "vmovdqu64 %%zmm2, 128(%0)\n\t vmovdqu64 %%zmm3, 192(%0)\n\t"
            "vmovdqu64 %%zmm4, 256(%0)\n\t vmovdqu64 %%zmm5, 320(%0)\n\t"
            "vmovdqu64 %%zmm6, 384(%0)\n\t vmovdqu64 %%zmm7, 448(%0)\n\t"
            "vmovdqu64 %%zmm8, 512(%0)\n\t vmovdqu64 %%zmm9, 576(%0)\n\t"
            "vmovdqu64 %%zmm10, 640(%0)\n\t vmovdqu64 %%zmm11, 704(%0)\n\t"
            "vmovdqu64 %%zmm12, 768(%0)\n\t vmovdqu64 %%zmm13, 832(%0)\n\t"
            "vmovdqu64 %%zmm14, 896(%0)\n\t vmovdqu64 %%zmm15, 960(%0)\n\t"
            "vmovdqu64 %%zmm16, 1024(%0)\n\t vmovdqu64 %%zmm17, 1088(%0)\n\t"
            "vmovdqu64 %%zmm18, 1152(%0)\n\t vmovdqu64 %%zmm19, 1216(%0)\n\t"
            "vmovdqu64 %%zmm20, 1280(%0)\n\t vmovdqu64 %%zmm21, 1344(%0)\n\t"
            "vmovdqu64 %%zmm22, 1408(%0)\n\t vmovdqu64 %%zmm23, 1472(%0)\n\t"
            "vmovdqu64 %%zmm24, 1536(%0)\n\t vmovdqu64 %%zmm25, 1600(%0)\n\t"
            "vmovdqu64 %%zmm26, 1664(%0)\n\t vmovdqu64 %%zmm27, 1728(%0)\n\t"
            "vmovdqu64 %%zmm28, 1792(%0)\n\t vmovdqu64 %%zmm29, 1856(%0)\n\t"
            "vmovdqu64 %%zmm30, 1920(%0)\n\t vmovdqu64 %%zmm31, 1984(%0)\n\t"
            "kmovq %%k0, 0(%1)\n\t kmovq %%k1, 8(%1)\n\t kmovq %%k2, 16(%1)\n\t"
            "kmovq %%k3, 24(%1)\n\t kmovq %%k4, 32(%1)\n\t kmovq %%k5, 40(%1)\n\t"
            "kmovq %%k6, 48(%1)\n\t kmovq %%k7, 56(%1)\n\t"
            : : "r" (dump.vec), "r" (dump.k) : "memory");
    }
    else if (kind == 1) {
        __asm__ volatile (
            "vmovdqu %%ymm0, 0(%0)\n\t vmovdqu %%ymm1, 64(%0)\n\t"
            "vmovdqu %%ymm2, 128(%0)\n\t vmovdqu %%ymm3, 192(%0)\n\t"
            "vmovdqu %%ymm4, 256(%0)\n\t vmovdqu %%ymm5, 320(%0)\n\t"
            "vmovdqu %%ymm6, 384(%0)\n\t vmovdqu %%ymm7, 448(%0)\n\t"
            "vmovdqu %%ymm8, 512(%0)\n\t vmovdqu %%ymm9, 576(%0)\n\t"
            "vmovdqu %%ymm10, 640(%0)\n\t vmovdqu %%ymm11, 704(%0)\n\t"
            "vmovdqu %%ymm12, 768(%0)\n\t vmovdqu %%ymm13, 832(%0)\n\t"
            "vmovdqu %%ymm14, 896(%0)\n\t vmovdqu %%ymm15, 960(%0)\n\t"
            : : "r" (dump.vec) : "memory");
    }
    if (res == NULL) {
        res = PyErr_GetRaisedException();
    }
    PyObject *regs = PyDict_New();
    if (regs == NULL) {
        goto error;
    }
#define ADD(name, ptr, n) do { \
        PyObject *b = PyBytes_FromStringAndSize((const char *)(ptr), (n)); \
        if (b == NULL || PyDict_SetItemString(regs, (name), b) < 0) { \
            Py_XDECREF(b); \
            goto error; \
        } \
        Py_DECREF(b); \
    } while (0)
    char name[16];
    for (int i = 0; i < NGPR; i++) {
        ADD(gpr_names[i], &dump.gpr[i], 8);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "st%d", i);
        ADD(name, dump.fx + 32 + 16 * i, 10);
    }
    int nvec = kind == 2 ? 32 : 16;
    int width = kind == 2 ? 64 : kind == 1 ? 32 : 16;
    for (int i = 0; i < nvec; i++) {
        snprintf(name, sizeof(name), "%s%d",
                 kind == 2 ? "zmm" : kind == 1 ? "ymm" : "xmm", i);
        if (kind == 0) {
            ADD(name, dump.fx + 160 + 16 * i, 16);
        }
        else {
            ADD(name, dump.vec[i], width);
        }
    }
    if (kind == 2) {
        for (int i = 0; i < 8; i++) {
            snprintf(name, sizeof(name), "k%d", i);
            ADD(name, &dump.k[i], 8);
        }
    }
#undef ADD
    /* The dump held the pattern: leave no copy of it here. */
    explicit_bzero(&dump, sizeof(dump));
    return Py_BuildValue("NN", res, regs);

error:
    explicit_bzero(&dump, sizeof(dump));
    Py_XDECREF(res);
    Py_XDECREF(regs);
    return NULL;
}

/* AMX tiles (x86-64 with AMX: spec §3.1's "all vector state"). */
static PyObject *
amx_fill(PyObject *module, PyObject *pat)
{
    uint64_t p;
    if (get_pattern(pat, &p) < 0) {
        return NULL;
    }
    /* ARCH_REQ_XCOMP_PERM for XTILEDATA (18): refused without AMX. */
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) {
        Py_RETURN_FALSE;
    }
    unsigned char cfg[64] = {0};
    cfg[0] = 1;                     /* palette 1 */
    cfg[16] = 64;                   /* tile 0: 64 bytes a row */
    cfg[48] = 16;                   /* 16 rows */
    uint64_t buf[128];
    for (int i = 0; i < 128; i++) {
        buf[i] = p;
    }
    __asm__ volatile (
        ".byte 0xc4, 0xe2, 0x78, 0x49, 0x07\n\t"        /* ldtilecfg (%rdi) */
        ".byte 0xc4, 0xe2, 0x7b, 0x4b, 0x04, 0x16\n\t"  /* tileloadd
                                                (%rsi,%rdx,1), %tmm0 */
        : : "D" (cfg), "S" (buf), "d" ((long)64) : "memory");
    explicit_bzero(buf, sizeof(buf));
    p = 0;
    Py_RETURN_TRUE;
}

static PyObject *
amx_state(PyObject *module, PyObject *pat)
{
    uint64_t p;
    if (get_pattern(pat, &p) < 0) {
        return NULL;
    }
    unsigned int lo, hi;
    __asm__ volatile ("xgetbv" : "=a" (lo), "=d" (hi) : "c" (1));
    int in_use = (lo >> 18) & 1;
    Py_ssize_t count = 0;
    if (in_use) {
        uint64_t buf[128];
        __asm__ volatile (
            ".byte 0xc4, 0xe2, 0x7a, 0x4b, 0x04, 0x16\n\t"  /* tilestored
                                            %tmm0, (%rsi,%rdx,1) */
            : : "S" (buf), "d" ((long)64) : "memory");
        for (int i = 0; i < 128; i++) {
            count += buf[i] == p;
        }
        explicit_bzero(buf, sizeof(buf));
    }
    p = 0;
    return Py_BuildValue("On", in_use ? Py_True : Py_False, count);
}

PyDoc_STRVAR(spin_with_pattern_doc,
"spin_with_pattern(pattern, iterations)\n\n"
"Spin with pattern in vector and general registers, so that a signal\n"
"delivered meanwhile saves it in its frame; then stop ITIMER_REAL.");

static PyObject *
spin_with_pattern(PyObject *module, PyObject *args)
{
    PyObject *pat;
    unsigned long long n;
    uint64_t p;
    if (!PyArg_ParseTuple(args, "OK", &pat, &n) || get_pattern(pat, &p) < 0) {
        return NULL;
    }
    __asm__ volatile (
        "movq %1, %%xmm0\n\t"
        "punpcklqdq %%xmm0, %%xmm0\n\t"
        "movdqa %%xmm0, %%xmm1\n\t"
        "movq %1, %%r8\n\t movq %1, %%r9\n\t"
        "1:\n\t"
        "decq %0\n\t"
        "jnz 1b\n\t"
        : "+r" (n) : "m" (p) : "xmm0", "xmm1", "r8", "r9", "cc");
    /* Stop the test's interval timer while the registers still hold P, so
     * the last signal frame saved them. */
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    p = 0;
    Py_RETURN_NONE;
}

/* The x87/MMX state a func leaves behind (spec §3.1). The exit erases it
 * with fninit only when the status word is not zero, else with emms and
 * eight loads of zero (secret_amd64.S): each way of leaving it is one
 * how. */
static PyObject *
x87_fill(PyObject *module, PyObject *args)
{
    PyObject *pat;
    const char *how;
    uint64_t p;
    if (!PyArg_ParseTuple(args, "Os", &pat, &how) || get_pattern(pat, &p) < 0) {
        return NULL;
    }
    /* An 80-bit value whose 64-bit mantissa is P (sign and class from
     * P's top bits for "status"). */
    struct { uint64_t m; uint16_t e; } __attribute__((packed)) x = {
        p, (uint16_t)(0x3fff | (p & 0x8000000000000000ull ? 0x8000 : 0))};
    if (strcmp(how, "mmx") == 0) {
        /* MMX without emms: every tag valid, the status word zero. */
        __asm__ volatile (
            "movq %0, %%mm0\n\t movq %0, %%mm1\n\t movq %0, %%mm2\n\t"
            "movq %0, %%mm3\n\t movq %0, %%mm4\n\t movq %0, %%mm5\n\t"
            "movq %0, %%mm6\n\t movq %0, %%mm7\n\t"
            : : "m" (p));
    }
    else if (strcmp(how, "status") == 0) {
        /* The status word computed from P: fxam's class and sign of it
         * (C0-C3), the precision flag of a division by it; the stack
         * balanced, the registers keeping P. */
        __asm__ volatile (
            "fldt %0\n\t fxam\n\t fld1\n\t fdiv %%st(1), %%st(0)\n\t"
            "fstp %%st(0)\n\t fstp %%st(0)\n\t"
            : : "m" (x));
    }
    else if (strcmp(how, "unbalanced") == 0) {
        /* P left on the x87 stack (TOP not 0). */
        __asm__ volatile ("fldt %0" : : "m" (x));
    }
    else {
        PyErr_SetString(PyExc_ValueError, "how: mmx, status or unbalanced");
        return NULL;
    }
    explicit_bzero(&x, sizeof(x));
    p = 0;
    Py_RETURN_NONE;
}

/* Call func(*args), then save the x87 state (fnsave, which also resets it
 * for whatever runs next): (result or exception, control word, status
 * word, tag word, the eight registers' 80 bytes). */
static PyObject *
x87_after(PyObject *module, PyObject *args)
{
    if (PyTuple_GET_SIZE(args) < 1) {
        PyErr_SetString(PyExc_TypeError, "x87_after(func, *args)");
        return NULL;
    }
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    if (rest == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_Call(PyTuple_GET_ITEM(args, 0), rest, NULL);
    unsigned char env[108];
    __asm__ volatile ("fnsave %0" : "=m" (env) : : "memory");
    Py_DECREF(rest);
    if (res == NULL) {
        res = PyErr_GetRaisedException();
    }
    uint16_t cw, sw, tw;
    memcpy(&cw, env, 2);
    memcpy(&sw, env + 4, 2);
    memcpy(&tw, env + 8, 2);
    PyObject *out = Py_BuildValue("NiiiN", res, cw, sw, tw,
        PyBytes_FromStringAndSize((const char *)env + 28, 80));
    explicit_bzero(env, sizeof(env));
    return out;
}
#endif  /* __x86_64__ */

/* --- the heap ------------------------------------------------------- */

/* The functions of the raw, mem or obj allocator domain; NULL with
 * ValueError for another name. */
typedef struct {
    void *(*malloc)(size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
} domain_funcs;

static const domain_funcs *
get_domain(const char *name)
{
    static const domain_funcs raw = {PyMem_RawMalloc, PyMem_RawRealloc,
                                     PyMem_RawFree};
    static const domain_funcs mem = {PyMem_Malloc, PyMem_Realloc,
                                     PyMem_Free};
    static const domain_funcs obj = {PyObject_Malloc, PyObject_Realloc,
                                     PyObject_Free};
    if (strcmp(name, "raw") == 0) {
        return &raw;
    }
    if (strcmp(name, "mem") == 0) {
        return &mem;
    }
    if (strcmp(name, "obj") == 0) {
        return &obj;
    }
    PyErr_SetString(PyExc_ValueError, "domain: raw, mem or obj");
    return NULL;
}

/* A block of the raw, mem or obj domain holding a copy of data; returns
 * its address. The caller frees it with free_block(). */
static PyObject *
alloc_block(PyObject *module, PyObject *args)
{
    const char *domain;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "sy*", &domain, &data)) {
        return NULL;
    }
    const domain_funcs *d = get_domain(domain);
    if (d == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    void *p = d->malloc(data.len > 0 ? (size_t)data.len : 1);
    if (p == NULL) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    memcpy(p, data.buf, data.len);
    PyBuffer_Release(&data);
    return PyLong_FromVoidPtr(p);
}

/* alloc_untouched(domain, n) -> address of a block of n bytes this code
 * never writes (free it with free_block). */
static PyObject *
alloc_untouched(PyObject *module, PyObject *args)
{
    const char *domain;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "sn", &domain, &n)) {
        return NULL;
    }
    const domain_funcs *d = get_domain(domain);
    if (d == NULL) {
        return NULL;
    }
    void *p = d->malloc(n > 0 ? (size_t)n : 1);
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(p);
}

static Py_ssize_t churn_totals[4];

/* raw_churn(iterations, tag, seed, base=0, size=0) -> (not_zero, changed,
 * served, failed), the heap being base..base+size,
 * the totals over every call so far (they are kept here, as building the
 * tuple may fail when the heap is full):
 * with the GIL released, allocate raw blocks of 16..64 bytes, check each
 * is zero past its first word, fill it with tag, hold up to 32, and check
 * the tag is intact before each free. Races the secret heap's cache
 * against a thread that takes it (the heap full). */
static PyObject *
raw_churn(PyObject *module, PyObject *args)
{
    Py_ssize_t iterations;
    int tag;
    unsigned long long seed, base = 0, size = 0;
    if (!PyArg_ParseTuple(args, "niK|KK", &iterations, &tag, &seed, &base,
                          &size)) {
        return NULL;
    }
    /* Few blocks of few sizes: the cache serves nearly all, so the
     * thread runs (without the heap lock) while its cache is taken. */
    enum { HOLD = 12 };
    unsigned char *held[HOLD] = {0};
    size_t sizes[HOLD] = {0};
    Py_ssize_t not_zero = 0, changed = 0, served = 0, failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t it = 0; it < iterations; it++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        int k = (int)((seed >> 33) % HOLD);
        if (held[k] != NULL) {
            for (size_t j = 8; j < sizes[k]; j++) {
                if (held[k][j] != (unsigned char)tag) {
                    changed++;
                    break;
                }
            }
            PyMem_RawFree(held[k]);
            held[k] = NULL;
            continue;
        }
        size_t n = 16 * (1 + (size_t)((seed >> 45) % 4));
        unsigned char *p = PyMem_RawMalloc(n);
        if (p == NULL) {
            failed++;
            continue;
        }
        served++;
        /* Past the first word: zeros, or free-list links (addresses in
         * the heap) mimalloc left where the page held smaller blocks. */
        for (size_t j = 8; j < n; j += 8) {
            uint64_t w;
            memcpy(&w, p + j, 8);
            if (w != 0 && w - base >= size) {
                not_zero++;
                break;
            }
        }
        memset(p + 8, tag, n - 8);
        held[k] = p;
        sizes[k] = n;
    }
    for (int k = 0; k < HOLD; k++) {
        PyMem_RawFree(held[k]);
    }
    Py_END_ALLOW_THREADS
    churn_totals[0] += not_zero;        /* under the GIL */
    churn_totals[1] += changed;
    churn_totals[2] += served;
    churn_totals[3] += failed;
    return Py_BuildValue("nnnn", churn_totals[0], churn_totals[1],
                         churn_totals[2], churn_totals[3]);
}

/* fill_heap(rounds, seed) -> rounds that found the heap full: with the GIL
 * released, allocate raw blocks (64 bytes to 64 KiB) until the heap is full
 * or 64 MiB are held, then free them all. */
static PyObject *
fill_heap(PyObject *module, PyObject *args)
{
    Py_ssize_t rounds;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "nK", &rounds, &seed)) {
        return NULL;
    }
    enum { MAX = 1 << 16 };
    /* Ordinary memory (malloc() in secret mode is the heap's). */
    void **held = mmap(NULL, MAX * sizeof(void *), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (held == MAP_FAILED) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_ssize_t full = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rounds; r++) {
        size_t n = 0, bytes = 0;
        while (n < MAX && bytes < ((size_t)64 << 20)) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t size = (size_t)64 << ((seed >> 40) % 11);
            void *p = PyMem_RawMalloc(size);
            if (p == NULL) {
                full++;
                break;
            }
            memset(p, 0xEE, 64);        /* another owner would see it */
            held[n++] = p;
            bytes += size;
        }
        while (n > 0) {
            PyMem_RawFree(held[--n]);
        }
    }
    Py_END_ALLOW_THREADS
    munmap(held, MAX * sizeof(void *));
    return PyLong_FromSsize_t(full);
}

/* try_alloc(domain, n) -> whether a block of n bytes could be allocated
 * (it is freed at once). A failure is handled here, never reported: the
 * way C code with a fallback treats it. */
static PyObject *
try_alloc(PyObject *module, PyObject *args)
{
    const char *domain;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "sn", &domain, &n)) {
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return NULL;
    }
    const domain_funcs *d = get_domain(domain);
    if (d == NULL) {
        return NULL;
    }
    void *p = d->malloc(n);
    d->free(p);
    return PyBool_FromLong(p != NULL);
}

/* realloc_block(domain, addr, n) -> new address (the old one is gone). */
static PyObject *
realloc_block(PyObject *module, PyObject *args)
{
    const char *domain;
    PyObject *addr;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "sOn", &domain, &addr, &n)) {
        return NULL;
    }
    const domain_funcs *d = get_domain(domain);
    if (d == NULL) {
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    void *q = d->realloc(p, n);
    if (q == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(q);
}

static PyObject *
free_block(PyObject *module, PyObject *args)
{
    const char *domain;
    PyObject *addr;
    if (!PyArg_ParseTuple(args, "sO", &domain, &addr)) {
        return NULL;
    }
    const domain_funcs *d = get_domain(domain);
    if (d == NULL) {
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    d->free(p);
    Py_RETURN_NONE;
}

/* Address of the data of a bytes, bytearray, str (compact) or list. */
static PyObject *
buffer_address(PyObject *module, PyObject *obj)
{
    void *p;
    if (PyBytes_Check(obj)) {
        p = PyBytes_AS_STRING(obj);
    }
    else if (PyByteArray_Check(obj)) {
        p = PyByteArray_AS_STRING(obj);
    }
    else if (PyUnicode_Check(obj)) {
        p = PyUnicode_DATA(obj);
    }
    else if (PyList_Check(obj)) {
        p = ((PyListObject *)obj)->ob_item;
    }
    else {
        PyErr_SetString(PyExc_TypeError, "bytes, bytearray, str or list");
        return NULL;
    }
    return PyLong_FromVoidPtr(p);
}

/* leak(obj): one more reference that is never dropped. */
static PyObject *
leak(PyObject *module, PyObject *obj)
{
    Py_INCREF(obj);
    Py_RETURN_NONE;
}

/* atexit_probe(addr, size, needle, path): at the very end of the process
 * (a Py_AtExit callback, so it runs after those registered later, such as
 * the secret heap's shutdown zeroing), count the copies of needle in
 * [addr, addr+size) through /proc/self/mem and write the count to path
 * (-1 if unreadable). */
static struct {
    uintptr_t addr;
    size_t size;
    char needle[64];
    size_t nlen;
    char path[512];
} probe;

static void
atexit_probe_run(void)
{
    long count = -1;
    int fd = open("/proc/self/mem", O_RDONLY);
    char *buf = malloc(probe.size);
    if (fd >= 0 && buf != NULL
        && pread(fd, buf, probe.size, (off_t)probe.addr)
           == (ssize_t)probe.size)
    {
        count = 0;
        for (size_t i = 0; i + probe.nlen <= probe.size; i++) {
            if (memcmp(buf + i, probe.needle, probe.nlen) == 0) {
                count++;
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    free(buf);
    FILE *f = fopen(probe.path, "w");
    if (f != NULL) {
        fprintf(f, "%ld\n", count);
        fclose(f);
    }
}

static PyObject *
atexit_probe(PyObject *module, PyObject *args)
{
    PyObject *addr;
    Py_ssize_t size;
    Py_buffer needle;
    const char *path;
    if (!PyArg_ParseTuple(args, "Ony*s", &addr, &size, &needle, &path)) {
        return NULL;
    }
    if (needle.len <= 0 || needle.len > (Py_ssize_t)sizeof(probe.needle)
        || strlen(path) >= sizeof(probe.path) || size <= 0)
    {
        PyBuffer_Release(&needle);
        PyErr_SetString(PyExc_ValueError, "bad probe");
        return NULL;
    }
    probe.addr = (uintptr_t)PyLong_AsVoidPtr(addr);
    probe.size = (size_t)size;
    memcpy(probe.needle, needle.buf, needle.len);
    probe.nlen = (size_t)needle.len;
    PyBuffer_Release(&needle);
    strcpy(probe.path, path);
    /* Registered once; later calls only move the probe. Py_AtExit
     * callbacks run last-registered first: register before the first
     * secret.do() to run after the secret heap's shutdown zeroing. */
    static int registered;
    if (!registered) {
        if (Py_AtExit(atexit_probe_run) < 0) {
            PyErr_SetString(PyExc_RuntimeError, "Py_AtExit failed");
            return NULL;
        }
        registered = 1;
    }
    Py_RETURN_NONE;
}

/* utf8_address(s): address of str s's UTF-8 form (its cache, filled now
 * if needed). */
static PyObject *
utf8_address(PyObject *module, PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "str needed");
        return NULL;
    }
    const char *p = PyUnicode_AsUTF8(s);
    if (p == NULL) {
        return NULL;
    }
    return PyLong_FromVoidPtr((void *)p);
}

/* --- the secret heap: exhaustion, the range, foreign threads --------- */

#include "pycore_secret.h"      // _Py_SECRET_HEAP

#if _Py_SECRET_HEAP
PyAPI_FUNC(void) _PySecretHeap_TestFailAfter(Py_ssize_t n,
                                             Py_ssize_t count, int reserve);
PyAPI_FUNC(int) _PySecretHeap_TestLockChunk(size_t chunk);
PyAPI_FUNC(int) _PySecretHeap_TestReserve(int on);
PyAPI_FUNC(void) _PySecretHeap_TestUnwindGrants(int n);
PyAPI_FUNC(void) _PySecretHeap_TestOldKernel(void);
PyAPI_FUNC(void) _PySecretHeap_TestHoldDecommits(int on);
PyAPI_FUNC(int) _PySecretHeap_TestTornRange(const void **ps, int *out,
                                             int n, size_t size);

/* fail_secret_allocations(n, count=-1, reserve=False). METH_FASTCALL, so
 * that calling it allocates nothing: a test disarms it while every
 * allocation still fails. */
static PyObject *
fail_secret_allocations(PyObject *module, PyObject *const *args,
                        Py_ssize_t nargs)
{
    Py_ssize_t n, count = -1;
    int reserve = 0;
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError,
                        "fail_secret_allocations(n, count=-1, reserve=False)");
        return NULL;
    }
    n = PyLong_AsSsize_t(args[0]);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (nargs > 1) {
        count = PyLong_AsSsize_t(args[1]);
        if (count == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (nargs > 2) {
        reserve = PyObject_IsTrue(args[2]);
        if (reserve < 0) {
            return NULL;
        }
    }
    _PySecretHeap_TestFailAfter(n, count, reserve);
    Py_RETURN_NONE;
}

static PyObject *
grant_reserve(PyObject *module, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    return PyBool_FromLong(_PySecretHeap_TestReserve(on));
}

static PyObject *
set_unwind_grants(PyObject *module, PyObject *arg)
{
    int n = PyLong_AsInt(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    _PySecretHeap_TestUnwindGrants(n);
    Py_RETURN_NONE;
}

static PyObject *
hold_decommits(PyObject *module, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    _PySecretHeap_TestHoldDecommits(on);
    Py_RETURN_NONE;
}

static PyObject *
old_kernel_discard(PyObject *module, PyObject *Py_UNUSED(arg))
{
    _PySecretHeap_TestOldKernel();
    Py_RETURN_NONE;
}

static PyObject *
set_lock_chunk(PyObject *module, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0 || (n & (n - 1)) != 0 || n < 4096) {
        PyErr_SetString(PyExc_ValueError, "a power of two, at least 4096");
        return NULL;
    }
    if (_PySecretHeap_TestLockChunk((size_t)n) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "the heap is reserved already");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
torn_range(PyObject *module, PyObject *args)
{
    PyObject *addrs;
    unsigned long long size;
    if (!PyArg_ParseTuple(args, "O!K", &PyList_Type, &addrs, &size)) {
        return NULL;
    }
    enum { MAX = 64 };
    const void *ps[MAX];
    int out[MAX];
    Py_ssize_t n = PyList_GET_SIZE(addrs);
    if (n > MAX) {
        PyErr_SetString(PyExc_ValueError, "at most 64 addresses");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        ps[i] = PyLong_AsVoidPtr(PyList_GET_ITEM(addrs, i));
        if (ps[i] == NULL && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (_PySecretHeap_TestTornRange(ps, out, (int)n, (size_t)size) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "the heap is reserved already");
        return NULL;
    }
    PyObject *res = PyList_New(n);
    for (Py_ssize_t i = 0; res != NULL && i < n; i++) {
        PyList_SET_ITEM(res, i, PyBool_FromLong(out[i]));
    }
    return res;
}
#endif

typedef struct {
    PyObject *func;
    PyObject *result;       /* or NULL: the exception's repr */
    int use_pthread_exit;
} foreign_call;

/* A thread Python did not start (as embedding code or a C library makes):
 * it takes a thread state with PyGILState_Ensure(), calls func, lets go of
 * it, then returns or leaves through pthread_exit(). */
static void *
foreign_main(void *arg)
{
    foreign_call *c = (foreign_call *)arg;
    PyGILState_STATE st = PyGILState_Ensure();
    PyObject *r = PyObject_CallNoArgs(c->func);
    if (r == NULL) {
        PyObject *exc = PyErr_GetRaisedException();
        r = PyObject_Repr(exc);
        Py_XDECREF(exc);
        PyErr_Clear();
        c->result = r ? r : Py_NewRef(Py_None);
        c->func = NULL;             /* says: it raised */
    }
    else {
        c->result = r;
    }
    PyGILState_Release(st);
    if (c->use_pthread_exit) {
        pthread_exit(NULL);
    }
    return NULL;
}

#if _Py_SECRET_HEAP
/* The C-stack tracker's "is [lo, hi) all mapped?" (secret_stack.c): how
 * 0 its msync(), 1 its mincore(). */
PyAPI_FUNC(int) _PySecretStack_TestRangeMapped(char *lo, char *hi, int how);

static PyObject *
range_mapped(PyObject *module, PyObject *args)
{
    unsigned long long lo, hi;
    int how;
    if (!PyArg_ParseTuple(args, "KKi", &lo, &hi, &how)) {
        return NULL;
    }
    return PyBool_FromLong(_PySecretStack_TestRangeMapped(
        (char *)(uintptr_t)lo, (char *)(uintptr_t)hi, how));
}
#endif

#if _Py_SECRET_HEAP
/* Idle points of threads that inherited secret mode (secret_core.c). */
PyAPI_FUNC(uint64_t) _PySecret_TestIdleTotal(void);
PyAPI_FUNC(uint64_t) _PySecret_TestIdleSeen(char **top);
PyAPI_FUNC(int) _PySecret_TestIdleErase(int on);

static PyObject *
idle_points(PyObject *module, PyObject *Py_UNUSED(arg))
{
    char *top = NULL;
    unsigned long long seen = _PySecret_TestIdleSeen(&top);
    return Py_BuildValue("KKK", (unsigned long long)_PySecret_TestIdleTotal(),
                         seen, (unsigned long long)(uintptr_t)top);
}

static PyObject *
idle_erase(PyObject *module, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    return PyBool_FromLong(_PySecret_TestIdleErase(on));
}
#endif

static PyObject *
run_in_foreign_thread(PyObject *module, PyObject *args)
{
    foreign_call c = {NULL, NULL, 0};
    if (!PyArg_ParseTuple(args, "Op", &c.func, &c.use_pthread_exit)) {
        return NULL;
    }
    pthread_t t;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = pthread_create(&t, NULL, foreign_main, &c);
    if (err == 0) {
        err = pthread_join(t, NULL);
    }
    Py_END_ALLOW_THREADS
    if (err != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (c.func == NULL) {
        PyErr_Format(PyExc_RuntimeError, "the foreign thread raised %S",
                     c.result);
        Py_DECREF(c.result);
        return NULL;
    }
    return c.result;
}

static PyMethodDef testsecret_methods[] = {
    {"utf8_address", utf8_address, METH_O,
     "utf8_address(s) -> address of s's UTF-8 form (fills its cache)"},
    {"leak", leak, METH_O, "leak(obj): never drop one reference to obj"},
    {"atexit_probe", atexit_probe, METH_VARARGS,
     "atexit_probe(addr, size, needle, path): count needle there at exit"},
    {"alloc_block", alloc_block, METH_VARARGS,
     "alloc_block(domain, data) -> address of a raw/mem/obj block "
     "holding data"},
    {"alloc_untouched", alloc_untouched, METH_VARARGS,
     "alloc_untouched(domain, n) -> address of a block of n bytes never "
     "written"},
    {"fill_heap", fill_heap, METH_VARARGS,
     "fill_heap(rounds, seed): fill the heap and empty it, without the GIL"},
    {"raw_churn", raw_churn, METH_VARARGS,
     "raw_churn(iterations, tag, seed, base, size): race raw blocks"},
    {"try_alloc", try_alloc, METH_VARARGS,
     "try_alloc(domain, n): could n bytes be allocated? (never raises)"},
    {"realloc_block", realloc_block, METH_VARARGS,
     "realloc_block(domain, address, n) -> new address"},
    {"free_block", free_block, METH_VARARGS,
     "free_block(domain, address): free a block from alloc_block()"},
    {"buffer_address", buffer_address, METH_O,
     "buffer_address(obj) -> address of the data of bytes/bytearray/str/list"},
    {"write_stack_pattern", write_stack_pattern, METH_VARARGS,
     "write_stack_pattern(pattern, nbytes, raise_=False): write pattern into "
     "~1 KiB C frames down to nbytes deep"},
    {"call_and_scan", call_and_scan, METH_VARARGS, call_and_scan_doc},
    {"write_gapped", write_gapped, METH_VARARGS,
     "write_gapped(pattern, gap, mode, then=None): a frame of gap untouched "
     "bytes whose bottom holds pattern (0: a store, 1: read() from a pipe, "
     "2: a store, then then() called from below)"},
    {"call_below_gap", call_below_gap, METH_VARARGS,
     "call_below_gap(gap, func): call func below a C frame of gap "
     "untouched bytes"},
    {"stack_info", stack_info, METH_NOARGS,
     "stack_info() -> (low, high, sp) of this thread's stack"},
    {"altstack_info", altstack_info, METH_NOARGS,
     "altstack_info() -> (sp, size) of the alternate signal stack, or None"},
    {"frame_stack_info", frame_stack_info, METH_NOARGS,
     "frame_stack_info() -> (top, limit) of the current frame-stack chunk"},
    {"count_in_range", count_in_range, METH_VARARGS,
     "count_in_range(addr, size, pattern): copies in resident pages"},
#if _Py_SECRET_HEAP
    {"range_mapped", range_mapped, METH_VARARGS,
     "range_mapped(lo, hi, how) -> the stack tracker's test that [lo, hi) "
     "is all mapped, by msync (how 0) or mincore (how 1)"},
    {"fail_secret_allocations", _PyCFunction_CAST(fail_secret_allocations),
     METH_FASTCALL,
     "fail_secret_allocations(n, count=-1, reserve=False): after n more, "
     "the next count secret allocations of this thread fail (-1: all; "
     "n -1: none), except those of the heap's reserve unless reserve"},
    {"grant_reserve", grant_reserve, METH_O,
     "grant_reserve(on) -> previous: this thread's secret allocations may "
     "use the heap's reserve (the rule of main 14881e7 after a "
     "MemoryError)"},
    {"set_unwind_grants", set_unwind_grants, METH_O,
     "set_unwind_grants(n): traceback entries a heap MemoryError may take "
     "from the reserve (-1: the default)"},
    {"hold_decommits", hold_decommits, METH_O,
     "hold_decommits(on): the secret heap's decommits keep their pages "
     "(a freed block read later shows whether it was zeroed)"},
    {"old_kernel_discard", old_kernel_discard, METH_NOARGS,
     "old_kernel_discard(): discard locked secret pages as before Linux "
     "5.18 (unlock, discard, lock again)"},
    {"set_lock_chunk", set_lock_chunk, METH_O,
     "set_lock_chunk(n): lock the secret heap in chunks of n bytes (before "
     "the first do)"},
    {"idle_points", idle_points, METH_NOARGS,
     "idle_points() -> (idle points reached by any thread, by this one, "
     "the waiting frame's address at this one's last)"},
    {"idle_erase", idle_erase, METH_O,
     "idle_erase(on) -> previous: whether idle points erase (the tests' "
     "controls turn it off)"},
    {"torn_range", torn_range, METH_VARARGS,
     "torn_range(addresses, size) -> is each secret, if a thread saw the "
     "range's size published and not yet its base (before the first do)"},
#endif
    {"run_in_foreign_thread", run_in_foreign_thread, METH_VARARGS,
     "run_in_foreign_thread(func, pthread_exit) -> func() on a thread made "
     "with pthread_create, that leaves by pthread_exit() if asked"},
#if defined(__x86_64__)
    {"fill_registers", fill_registers, METH_O,
     "fill_registers(pattern): load pattern into every register class"},
    {"call_and_dump", call_and_dump, METH_VARARGS, call_and_dump_doc},
    {"spin_with_pattern", spin_with_pattern, METH_VARARGS,
     spin_with_pattern_doc},
    {"amx_fill", amx_fill, METH_O,
     "amx_fill(pattern) -> False without AMX, else load pattern into tmm0"},
    {"amx_state", amx_state, METH_O,
     "amx_state(pattern) -> (tiles in use, copies of pattern in tmm0)"},
    {"x87_fill", x87_fill, METH_VARARGS,
     "x87_fill(pattern, how): leave pattern in the x87/MMX state"},
    {"x87_after", x87_after, METH_VARARGS,
     "x87_after(func, *args) -> (result, cw, sw, tw, registers)"},
#endif
    {NULL, NULL, 0, NULL}
};

static PyModuleDef_Slot testsecret_slots[] = {
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    {0, NULL}
};

static struct PyModuleDef testsecret_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_testsecret",
    .m_doc = "Test helpers of the runtimesecret experiment.",
    .m_size = 0,
    .m_methods = testsecret_methods,
    .m_slots = testsecret_slots,
};

PyMODINIT_FUNC
PyInit__testsecret(void)
{
    return PyModuleDef_Init(&testsecret_module);
}
