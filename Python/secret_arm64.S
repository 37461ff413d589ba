/* runtimesecret experiment: stack and register erasure, Linux aarch64.
 *
 * Both routines are leaves that keep the return address in x30 and use no
 * stack, so they can zero the stack right below sp: the erasure never runs
 * in a frame that is being erased.
 */
#if defined(__aarch64__) && defined(__linux__)

        .arch   armv8-a+sve
        .text

/* char *_PySecret_StackTop(void)
 * The caller's stack pointer (a leaf: the return address is in x30):
 * everything the caller's callees write lies below it. */
        .globl  _PySecret_StackTop
        .hidden _PySecret_StackTop
        .type   _PySecret_StackTop, %function
        .p2align 4
_PySecret_StackTop:
        .cfi_startproc
        hint    #34                 /* bti c */
        mov     x0, sp
        ret
        .cfi_endproc
        .size   _PySecret_StackTop, .-_PySecret_StackTop

/* char *_PySecret_FirstNonzero(char *p, char *end, int vector)
 * The lowest non-zero 8-byte word in [p, end) (p 8-aligned), or end; vector
 * is not used. What it reads may be func's data and AArch64 cannot compare
 * memory without loading it: it clears x2-x5 before returning, but a signal
 * that arrives during the scan saves them in its frame. Such a frame lands
 * on the alternate stack (zeroed after this scan) or, for a handler without
 * SA_ONSTACK, on this thread's stack below the scan's own frame, where the
 * erasure's zeroing reaches only if the scan had not yet found the bottom
 * of func's use (docs/erasure.md). 32 bytes a round, then word by word. */
        .globl  _PySecret_FirstNonzero
        .hidden _PySecret_FirstNonzero
        .type   _PySecret_FirstNonzero, %function
        .p2align 4
_PySecret_FirstNonzero:
        .cfi_startproc
        hint    #34                 /* bti c */
1:      add     x2, x0, #32
        cmp     x2, x1
        b.hi    2f
        ldp     x2, x3, [x0]
        ldp     x4, x5, [x0, #16]
        orr     x2, x2, x3
        orr     x4, x4, x5
        orr     x2, x2, x4
        cbnz    x2, 2f
        add     x0, x0, #32
        b       1b
2:      cmp     x0, x1
        b.hs    3f
        ldr     x2, [x0]
        cbnz    x2, 3f
        add     x0, x0, #8
        b       2b
3:      mov     x2, xzr
        mov     x3, xzr
        mov     x4, xzr
        mov     x5, xzr
        ret
        .cfi_endproc
        .size   _PySecret_FirstNonzero, .-_PySecret_FirstNonzero

/* void _PySecret_EraseStack(void *low, int vector)
 * Zero [low, sp), then x0-x17, v0-v31 (and, when vector is 1, the SVE
 * predicate registers and FFR; NEON writes already zero the upper bits of
 * the z registers) and the flags. Vector registers first, so a signal frame
 * pushed meanwhile holds nothing of func's. */
        .globl  _PySecret_EraseStack
        .hidden _PySecret_EraseStack
        .type   _PySecret_EraseStack, %function
        .p2align 4
_PySecret_EraseStack:
        .cfi_startproc
        hint    #34                 /* bti c */
        movi    v0.2d, #0
        movi    v1.2d, #0
        movi    v2.2d, #0
        movi    v3.2d, #0
        movi    v4.2d, #0
        movi    v5.2d, #0
        movi    v6.2d, #0
        movi    v7.2d, #0
        movi    v8.2d, #0
        movi    v9.2d, #0
        movi    v10.2d, #0
        movi    v11.2d, #0
        movi    v12.2d, #0
        movi    v13.2d, #0
        movi    v14.2d, #0
        movi    v15.2d, #0
        movi    v16.2d, #0
        movi    v17.2d, #0
        movi    v18.2d, #0
        movi    v19.2d, #0
        movi    v20.2d, #0
        movi    v21.2d, #0
        movi    v22.2d, #0
        movi    v23.2d, #0
        movi    v24.2d, #0
        movi    v25.2d, #0
        movi    v26.2d, #0
        movi    v27.2d, #0
        movi    v28.2d, #0
        movi    v29.2d, #0
        movi    v30.2d, #0
        movi    v31.2d, #0
        cbz     w1, 1f
        pfalse  p0.b
        pfalse  p1.b
        pfalse  p2.b
        pfalse  p3.b
        pfalse  p4.b
        pfalse  p5.b
        pfalse  p6.b
        pfalse  p7.b
        pfalse  p8.b
        pfalse  p9.b
        pfalse  p10.b
        pfalse  p11.b
        pfalse  p12.b
        pfalse  p13.b
        pfalse  p14.b
        pfalse  p15.b
        wrffr   p0.b
1:      and     x0, x0, #~15
        mov     x2, sp
2:      cmp     x0, x2
        b.hs    3f
        stp     xzr, xzr, [x0], #16
        b       2b
3:      mov     x0, xzr
        mov     x1, xzr
        mov     x2, xzr
        mov     x3, xzr
        mov     x4, xzr
        mov     x5, xzr
        mov     x6, xzr
        mov     x7, xzr
        mov     x8, xzr
        mov     x9, xzr
        mov     x10, xzr
        mov     x11, xzr
        mov     x12, xzr
        mov     x13, xzr
        mov     x14, xzr
        mov     x15, xzr
        mov     x16, xzr
        mov     x17, xzr
        msr     nzcv, xzr
        ret
        .cfi_endproc
        .size   _PySecret_EraseStack, .-_PySecret_EraseStack

#endif

#if defined(__linux__) && defined(__ELF__)
        .section .note.GNU-stack, "", %progbits
#endif
