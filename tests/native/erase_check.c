/* Check the erasure assembly on its own, for a cross build (aarch64 under
 * qemu-user): plant a pattern below the stack pointer and in registers,
 * run the routines, and report what is left. Prints "ok" or what failed.
 * The pattern comes from argv at run time. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#  include <signal.h>
#  include <ucontext.h>
#endif

extern char *_PySecret_StackTop(void);
extern char *_PySecret_FirstNonzero(char *p, char *end, int vector);
extern void _PySecret_EraseStack(void *low, int vector);

/* The scan's answer, checked against a plain C loop on buffers whose words
 * are zero up to a position and the pattern from there. */
static int
check_first_nonzero(uint64_t p, int vector)
{
    static uint64_t buf[600];
    int failed = 0;
    size_t starts[] = {0, 1, 3, 4, 7};
    size_t firsts[] = {0, 1, 3, 4, 7, 8, 9, 15, 16, 31, 32, 63, 64, 100,
                       511, 590, 599, 600};
    for (size_t si = 0; si < sizeof(starts) / sizeof(starts[0]); si++) {
        for (size_t fi = 0; fi < sizeof(firsts) / sizeof(firsts[0]); fi++) {
            for (size_t ends = 0; ends < 3; ends++) {
                size_t start = starts[si], first = firsts[fi];
                size_t end = 600 - ends * 5;
                for (size_t i = 0; i < 600; i++) {
                    buf[i] = i < first ? 0 : p;
                }
                size_t want = first < start ? start : first;
                if (want > end) {
                    want = end;
                }
                char *got = _PySecret_FirstNonzero((char *)&buf[start],
                                                   (char *)&buf[end], vector);
                if (got != (char *)&buf[want]) {
                    printf("FirstNonzero(%zu, %zu, vector %d): word %td, "
                           "not %zu\n", start, end, vector,
                           (uint64_t *)got - buf, want);
                    failed = 1;
                }
            }
        }
    }
    return failed;
}

#if defined(__x86_64__)
/* Single-step the scan (the trap flag) and look, at every instruction, in
 * the registers a signal frame would save: none may hold what the scan
 * reads. The control is a scan that loads each word into a register. */
extern char *fnz_loading(char *p, char *end, int vector);
extern char fnz_loading_end[];
__asm__(
    "        .text\n"
    "        .globl  fnz_loading\n"
    "        .globl  fnz_loading_end\n"
    "fnz_loading:\n"
    "        movq    %rdi, %rax\n"
    "1:      cmpq    %rsi, %rax\n"
    "        jae     2f\n"
    "        movq    (%rax), %rcx\n"
    "        testq   %rcx, %rcx\n"
    "        jnz     2f\n"
    "        addq    $8, %rax\n"
    "        jmp     1b\n"
    "2:      xorl    %ecx, %ecx\n"
    "        ret\n"
    "fnz_loading_end:\n"
    /* traced_call(fn, p, end, vector): fn(p, end, vector) single-stepped,
     * with every other register zero at entry (nothing of the caller's
     * is taken for what the scan loaded). */
    "        .globl  traced_call\n"
    "traced_call:\n"
    "        pushq   %rbx\n"
    "        pushq   %rbp\n"
    "        pushq   %r12\n"
    "        pushq   %r13\n"
    "        pushq   %r14\n"
    "        pushq   %r15\n"
    "        subq    $8, %rsp\n"
    "        movq    %rdi, %rax\n"
    "        movq    %rsi, %rdi\n"
    "        movq    %rdx, %rsi\n"
    "        movl    %ecx, %edx\n"
    "        xorl    %ecx, %ecx\n"
    "        xorl    %ebx, %ebx\n"
    "        xorl    %ebp, %ebp\n"
    "        xorl    %r8d, %r8d\n"
    "        xorl    %r9d, %r9d\n"
    "        xorl    %r10d, %r10d\n"
    "        xorl    %r11d, %r11d\n"
    "        xorl    %r12d, %r12d\n"
    "        xorl    %r13d, %r13d\n"
    "        xorl    %r14d, %r14d\n"
    "        xorl    %r15d, %r15d\n"
    "        pxor    %xmm0, %xmm0\n"
    "        pxor    %xmm1, %xmm1\n"
    "        pxor    %xmm2, %xmm2\n"
    "        pxor    %xmm3, %xmm3\n"
    "        pxor    %xmm4, %xmm4\n"
    "        pxor    %xmm5, %xmm5\n"
    "        pxor    %xmm6, %xmm6\n"
    "        pxor    %xmm7, %xmm7\n"
    "        pxor    %xmm8, %xmm8\n"
    "        pxor    %xmm9, %xmm9\n"
    "        pxor    %xmm10, %xmm10\n"
    "        pxor    %xmm11, %xmm11\n"
    "        pxor    %xmm12, %xmm12\n"
    "        pxor    %xmm13, %xmm13\n"
    "        pxor    %xmm14, %xmm14\n"
    "        pxor    %xmm15, %xmm15\n"
    "        pushfq\n"
    "        orq     $0x100, (%rsp)\n"
    "        popfq\n"
    "        call    *%rax\n"
    "        pushfq\n"
    "        andq    $~0x100, (%rsp)\n"
    "        popfq\n"
    "        addq    $8, %rsp\n"
    "        popq    %r15\n"
    "        popq    %r14\n"
    "        popq    %r13\n"
    "        popq    %r12\n"
    "        popq    %rbp\n"
    "        popq    %rbx\n"
    "        ret\n");
extern char *traced_call(char *(*fn)(char *, char *, int), char *p,
                         char *end, int vector);

static volatile uintptr_t trap_lo, trap_hi;
static volatile uint64_t trap_pattern;
static volatile long trap_steps, trap_hits;

static void
on_trap(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    uintptr_t ip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    (void)sig;
    (void)si;
    if (ip < trap_lo || ip >= trap_hi) {
        return;
    }
    trap_steps++;
    for (int i = 0; i < NGREG; i++) {
        if ((uint64_t)uc->uc_mcontext.gregs[i] == trap_pattern) {
            trap_hits++;
        }
    }
    unsigned char *fx = (unsigned char *)uc->uc_mcontext.fpregs;
    if (fx == NULL) {
        return;
    }
    /* xmm0-15 at 160 in the fxsave area; with the xsave magic, the upper
     * halves of ymm0-15 at 576. */
    size_t n = 160 + 256;
    uint32_t magic;
    memcpy(&magic, fx + 464, 4);
    for (size_t off = 160; off < n; off += 8) {
        uint64_t w;
        memcpy(&w, fx + off, 8);
        trap_hits += w == trap_pattern;
    }
    if (magic == 0x46505853U) {
        for (size_t off = 576; off < 576 + 256; off += 8) {
            uint64_t w;
            memcpy(&w, fx + off, 8);
            trap_hits += w == trap_pattern;
        }
    }
}

static long __attribute__((noinline))
traced(char *(*fn)(char *, char *, int), uintptr_t lo, uintptr_t hi,
       uint64_t p, int vector)
{
    static uint64_t buf[256];
    for (size_t i = 0; i < 256; i++) {
        buf[i] = i < 77 ? 0 : p;
    }
    trap_lo = lo;
    trap_hi = hi;
    trap_pattern = p;
    trap_steps = 0;
    trap_hits = 0;
    char *r = traced_call(fn, (char *)buf, (char *)&buf[256], vector);
    trap_lo = trap_hi = 0;
    if (r != (char *)&buf[77] || trap_steps == 0) {
        printf("traced scan: wrong answer or no steps\n");
        return -1;
    }
    return trap_hits;
}

static int
check_scan_registers(uint64_t p, int vector)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_trap;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, &old);
    long control = traced(fnz_loading, (uintptr_t)fnz_loading,
                          (uintptr_t)fnz_loading_end, p, vector);
    uintptr_t f = (uintptr_t)_PySecret_FirstNonzero;
    long hits = traced(_PySecret_FirstNonzero, f, f + 512, p, vector);
    sigaction(SIGTRAP, &old, NULL);
    int failed = 0;
    if (control <= 0) {
        printf("scan registers: the control found nothing\n");
        failed = 1;
    }
    if (hits != 0) {
        printf("FirstNonzero(vector %d) held the pattern in a register "
               "(%ld steps)\n", vector, hits);
        failed = 1;
    }
    return failed;
}
#endif

static void __attribute__((noinline))
plant(uint64_t p, size_t n)
{
    volatile uint64_t buf[4096];
    for (size_t i = 0; i < n / 8 && i < 4096; i++) {
        buf[i] = p;
    }
    __asm__ volatile ("" : : "r" (buf) : "memory");
}

static size_t __attribute__((noinline))
count_below(char *low, char *high, uint64_t p)
{
    size_t c = 0;
    for (char *a = low; a + 8 <= high; a += 8) {
        if (*(volatile uint64_t *)a == p) {
            c++;
        }
    }
    return c;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        return 2;
    }
    uint64_t p = strtoull(argv[1], NULL, 16);
    int vector = argc > 2 ? atoi(argv[2]) : 0;  /* 1: SVE (aarch64) */
    int failed = 0;

    /* StackTop: the caller's stack pointer, at or below its locals and
     * within its frame. */
    char here;
    char *sp = _PySecret_StackTop();
    uintptr_t h = (uintptr_t)&here, s = (uintptr_t)sp;
    if (s > h || s < h - 4096 || (s & 15) != 0) {
        printf("StackTop: wrong place\n");
        failed = 1;
    }
    /* Control: plant leaves the pattern below this frame. */
    plant(p, 32768);
    char *deep = (char *)(((uintptr_t)&here - 65536) & ~(uintptr_t)15);
    char *top = (char *)(((uintptr_t)&here - 512) & ~(uintptr_t)15);
    size_t control = count_below(deep, top, p);
    if (control == 0) {
        printf("control found nothing\n");
        failed = 1;
    }
    plant(p, 32768);
    _PySecret_EraseStack(deep, vector);
    size_t left = count_below(deep, top, p);
    if (left != 0) {
        printf("EraseStack left %zu copies\n", left);
        failed = 1;
    }
    failed |= check_first_nonzero(p, 0);
#if defined(__x86_64__)
    failed |= check_scan_registers(p, 0);
    if (__builtin_cpu_supports("avx")) {
        failed |= check_first_nonzero(p, 1);
        failed |= check_scan_registers(p, 1);
    }
#else
    failed |= check_first_nonzero(p, vector);
#endif
#if defined(__aarch64__)
    /* Registers: load v0-v31 and x9-x15, erase, read them back. */
    uint64_t out[2 * 32 + 7];
    __asm__ volatile (
        "dup v0.2d, %0\n\t mov v1.16b, v0.16b\n\t mov v31.16b, v0.16b\n\t"
        "mov v16.16b, v0.16b\n\t mov x9, %0\n\t mov x15, %0\n\t"
        : : "r" (p) : "v0", "v1", "v16", "v31", "x9", "x15");
    _PySecret_EraseStack((void *)UINTPTR_MAX, vector);
    __asm__ volatile (
        "st1 {v0.2d, v1.2d}, [%0]\n\t"
        "add x16, %0, #32\n\t st1 {v16.2d}, [x16]\n\t"
        "add x16, %0, #48\n\t st1 {v31.2d}, [x16]\n\t"
        "str x9, [%0, #64]\n\t str x15, [%0, #72]\n\t"
        : : "r" (out) : "x16", "memory");
    for (int i = 0; i < 10; i++) {
        if (out[i] == p) {
            printf("register word %d still holds the pattern\n", i);
            failed = 1;
        }
    }
#endif
    if (!failed) {
        printf("ok %zu\n", control);
    }
    return failed;
}
