/* Check the erasure assembly on its own, for a cross build (aarch64 under
 * qemu-user): plant a pattern below the stack pointer and in registers,
 * run the routines, and report what is left. Prints "ok" or what failed.
 * The pattern comes from argv at run time. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char *_PySecret_StackTop(void);
extern void _PySecret_EraseStack(void *low, int vector);

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
