/* runtimesecret experiment: stack and register erasure, Linux x86-64.
 *
 * Both routines are leaves that use no stack beyond their own return
 * address, so they can zero the stack right below it: the erasure never
 * runs in a frame that is being erased.
 */
#if defined(__x86_64__) && defined(__linux__)

        .text

/* char *_PySecret_StackTop(void)
 * The caller's stack pointer, as it is once this returns: everything the
 * caller's callees write lies below it. */
        .globl  _PySecret_StackTop
        .hidden _PySecret_StackTop
        .type   _PySecret_StackTop, @function
        .p2align 4
_PySecret_StackTop:
        .cfi_startproc
        endbr64
        leaq    8(%rsp), %rax
        ret
        .cfi_endproc
        .size   _PySecret_StackTop, .-_PySecret_StackTop

/* char *_PySecret_FirstNonzero(char *p, char *end, int vector)
 * The lowest non-zero 8-byte word in [p, end) (p 8-aligned), or end.
 * What it reads may be func's data, and a signal can arrive at any
 * instruction, its frame holding every register: so it never loads the data
 * into a register, it only compares memory and keeps the flags. With AVX
 * (vector >= 1) 32 bytes a test (vptest of the memory against all ones, a
 * constant), else eight 8-byte compares a round; then word by word. */
        .globl  _PySecret_FirstNonzero
        .hidden _PySecret_FirstNonzero
        .type   _PySecret_FirstNonzero, @function
        .p2align 4
_PySecret_FirstNonzero:
        .cfi_startproc
        endbr64
        movq    %rdi, %rax
        testl   $3, %edx
        jz      .Lfnz_scalar
        vpcmpeqd %ymm0, %ymm0, %ymm0    /* all ones: not data */
.Lfnz_avx:
        leaq    64(%rax), %rcx
        cmpq    %rsi, %rcx
        ja      .Lfnz_avx_end
        vptest  (%rax), %ymm0           /* ZF: the 32 bytes are zero */
        jnz     .Lfnz_avx_end
        vptest  32(%rax), %ymm0
        jnz     .Lfnz_avx_end
        movq    %rcx, %rax
        jmp     .Lfnz_avx
.Lfnz_avx_end:
        vpxor   %xmm0, %xmm0, %xmm0
        vzeroupper
        jmp     .Lfnz_words
.Lfnz_scalar:
        leaq    64(%rax), %rcx
        cmpq    %rsi, %rcx
        ja      .Lfnz_words
        cmpq    $0, (%rax)
        jne     .Lfnz_words
        cmpq    $0, 8(%rax)
        jne     .Lfnz_words
        cmpq    $0, 16(%rax)
        jne     .Lfnz_words
        cmpq    $0, 24(%rax)
        jne     .Lfnz_words
        cmpq    $0, 32(%rax)
        jne     .Lfnz_words
        cmpq    $0, 40(%rax)
        jne     .Lfnz_words
        cmpq    $0, 48(%rax)
        jne     .Lfnz_words
        cmpq    $0, 56(%rax)
        jne     .Lfnz_words
        movq    %rcx, %rax
        jmp     .Lfnz_scalar
.Lfnz_words:
        cmpq    %rsi, %rax
        jae     .Lfnz_done
        cmpq    $0, (%rax)
        jne     .Lfnz_done
        addq    $8, %rax
        jmp     .Lfnz_words
.Lfnz_done:
        ret
        .cfi_endproc
        .size   _PySecret_FirstNonzero, .-_PySecret_FirstNonzero

/* void _PySecret_EraseStack(void *low, int vector)
 * Zero [low, return address slot) of the stack, then every caller-saved
 * register: vector registers first (vector: 0 = SSE, 1 = AVX, 2 = AVX-512,
 * plus 4 where AMX tiles exist),
 * so a signal frame pushed while the stack is being zeroed holds nothing
 * of func's; then x87/MMX, then the general registers and the flags. */
        .globl  _PySecret_EraseStack
        .hidden _PySecret_EraseStack
        .type   _PySecret_EraseStack, @function
        .p2align 4
_PySecret_EraseStack:
        .cfi_startproc
        endbr64
        /* AMX (vector bit 2): if the tiles are in use (XINUSE bit 18, from
         * XGETBV with ECX=1), TILERELEASE returns them to their initial,
         * zero state. Only a thread allowed to use them can have them in
         * use, so it never faults. */
        testl   $4, %esi
        jz      .Lnoamx
        movl    $1, %ecx
        xgetbv
        testl   $0x40000, %eax
        jz      .Lnoamx
        .byte   0xc4, 0xe2, 0x78, 0x49, 0xc0    /* tilerelease */
.Lnoamx:
        andl    $3, %esi
        cmpl    $1, %esi
        jb      .Lsse
        vzeroall                    /* ymm0-15 (and zmm0-15 bits 511:0) */
        cmpl    $2, %esi
        jb      .Lx87
        vpxord  %zmm16, %zmm16, %zmm16
        vpxord  %zmm17, %zmm17, %zmm17
        vpxord  %zmm18, %zmm18, %zmm18
        vpxord  %zmm19, %zmm19, %zmm19
        vpxord  %zmm20, %zmm20, %zmm20
        vpxord  %zmm21, %zmm21, %zmm21
        vpxord  %zmm22, %zmm22, %zmm22
        vpxord  %zmm23, %zmm23, %zmm23
        vpxord  %zmm24, %zmm24, %zmm24
        vpxord  %zmm25, %zmm25, %zmm25
        vpxord  %zmm26, %zmm26, %zmm26
        vpxord  %zmm27, %zmm27, %zmm27
        vpxord  %zmm28, %zmm28, %zmm28
        vpxord  %zmm29, %zmm29, %zmm29
        vpxord  %zmm30, %zmm30, %zmm30
        vpxord  %zmm31, %zmm31, %zmm31
        kxorw   %k0, %k0, %k0
        kxorw   %k1, %k1, %k1
        kxorw   %k2, %k2, %k2
        kxorw   %k3, %k3, %k3
        kxorw   %k4, %k4, %k4
        kxorw   %k5, %k5, %k5
        kxorw   %k6, %k6, %k6
        kxorw   %k7, %k7, %k7
        jmp     .Lx87
.Lsse:
        pxor    %xmm0, %xmm0
        pxor    %xmm1, %xmm1
        pxor    %xmm2, %xmm2
        pxor    %xmm3, %xmm3
        pxor    %xmm4, %xmm4
        pxor    %xmm5, %xmm5
        pxor    %xmm6, %xmm6
        pxor    %xmm7, %xmm7
        pxor    %xmm8, %xmm8
        pxor    %xmm9, %xmm9
        pxor    %xmm10, %xmm10
        pxor    %xmm11, %xmm11
        pxor    %xmm12, %xmm12
        pxor    %xmm13, %xmm13
        pxor    %xmm14, %xmm14
        pxor    %xmm15, %xmm15
.Lx87:
        /* x87/MMX: zeros in all eight physical registers (MMX aliases
         * them), every tag empty, and the status word, control word and
         * last-instruction pointers func left replaced. fninit does it
         * all but costs about 40 ns on some CPUs (AMD Zen 2), twice a
         * call; it is needed only when the status word is not zero (func
         * left condition codes, exception flags or a non-empty stack,
         * which also means an exception may be pending). Otherwise emms
         * empties the tags (TOP is 0), eight loads fill every register
         * with zero (the first from memory: the data pointer becomes
         * ours), and emms empties them again, a few ns in all. Reading
         * the status word into ax holds nothing a signal frame would not
         * hold anyway (it saves the whole x87 state); ax is cleared at
         * the end. */
        fnstsw  %ax
        testw   %ax, %ax
        jnz     .Lx87_init
        emms
        fldl    .Lx87_zero(%rip)
        fldz
        fldz
        fldz
        fldz
        fldz
        fldz
        fldz
        emms
        fldcw   .Lx87_cw(%rip)      /* the default control word */
        jmp     .Lstack
.Lx87_init:
        /* fninit only marks st0-7 empty; load zeros into all eight
         * physical registers, then reset the x87 state. */
        fninit
        fldz
        fldz
        fldz
        fldz
        fldz
        fldz
        fldz
        fldz
        fninit
.Lstack:
        /* The stack: [low, rsp). */
        movq    %rsp, %rcx
        subq    %rdi, %rcx
        jbe     .Lregs
        xorl    %eax, %eax
        cld
        rep stosb
.Lregs:
        xorl    %eax, %eax
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        xorl    %esi, %esi
        xorl    %edi, %edi
        xorl    %r8d, %r8d
        xorl    %r9d, %r9d
        xorl    %r10d, %r10d
        xorl    %r11d, %r11d
        pushq   $0                  /* clear the flags (CF..OF, DF, AC) */
        popfq
        ret
        .cfi_endproc
        .size   _PySecret_EraseStack, .-_PySecret_EraseStack

        .section .rodata
        .p2align 3
.Lx87_zero:
        .quad   0
.Lx87_cw:
        .word   0x037f
        .text

#endif

#if defined(__linux__) && defined(__ELF__)
        .section .note.GNU-stack, "", %progbits
#endif
