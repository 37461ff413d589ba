/* The pristine-shifted variant (meson.build) compiles every C file of
 * upstream CPython with this header forced in (-include): one function
 * that is never called, so each object file's code grows by a few bytes
 * and every function after it moves. The machine code is pristine's;
 * only where it (and the data after it) lies in memory changes, which is
 * what a patch that adds a few instructions to some functions also does.
 * The wall-clock difference between this build and pristine is the noise
 * of code placement alone (scripts/bench.py pyperformance --kind layout,
 * docs/performance.md). */
#ifndef RUNTIMESECRET_LAYOUT_PAD_H
#define RUNTIMESECRET_LAYOUT_PAD_H
/* Not in assembly sources (Python/asm_trampoline.S gets CFLAGS too). */
#if !defined(__ASSEMBLER__) && defined(__GNUC__)
__attribute__((used, noinline)) static void
_runtimesecret_layout_pad(void)
{
    /* 40 bytes that never run. */
    __asm__ __volatile__(".skip 40");
}
#endif
#endif
