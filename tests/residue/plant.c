/* Plant a secret where the residue scanner's tests look for it, and
 * nowhere else, then wait to be scanned. Compiled by
 * tests/test_residue_scanner.py at test time:
 *
 *   plant SECRET_FILE READY_FD GO_FD WHERE...
 *
 * WHERE: heap (malloc, main arena), stack (main thread), thread (a thread
 * named "planter", on its stack), mmap (an anonymous mapping), altstack
 * (the main thread's sigaltstack area), regs (CPU registers, see below),
 * none (read the secret and wipe it). The secret is read into a scratch
 * buffer that is wiped once the copies are made, so copies exist only
 * where asked. READY_FD gets one JSON line in the format of
 * tests/residue/harness.py; then every thread blocks reading GO_FD.
 *
 * regs: bytes 0-15 of the secret in xmm7 and 16-23 in r12; with AVX also
 * all of it in ymm9; with AVX-512 (F and BW) bytes 8-15 in k3 and all of
 * it in the upper half of zmm20. The registers are loaded in the same asm
 * block as the read(2) that blocks, so nothing clobbers them before a
 * core is taken. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX 256

static size_t n;
static int go_fd;
static long planter_tid;
static pthread_barrier_t planted;

/* Keeps a buffer (and the stores into it) alive. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

/* Copy a byte at a time: memcpy would leave the secret in vector
 * registers, and later calls (pthread_create, for one) spill those onto
 * the stack, making copies nobody planted. */
static void copy(void *dst, const void *src, size_t len)
{
    volatile unsigned char *d = dst;
    const volatile unsigned char *s = src;
    for (size_t i = 0; i < len; i++)
        d[i] = s[i];
}

static void wait_go(void)
{
    char c;
    while (read(go_fd, &c, 1) < 0)
        ;
}

/* The thread reads the secret itself (read(2) writes it straight into
 * `local`), so the main thread's registers never carry it there. */
static void *thread_main(void *path)
{
    unsigned char local[MAX];
    int fd = open(path, O_RDONLY);
    if (fd < 0 || read(fd, local, MAX) < 32)
        abort();
    close(fd);
    KEEP(local);
    planter_tid = syscall(SYS_gettid);
    pthread_barrier_wait(&planted);
    wait_go();
    KEEP(local);
    return NULL;
}

/* Load registers, then block in read(go_fd) without leaving the asm.
 * One function per instruction set, so each may name its registers. */
__attribute__((target("avx512f,avx512bw")))
static void regs_avx512(const unsigned char *s, const unsigned char *wide)
{
    long ret;
    char c;
    __asm__ volatile(
        "movdqu (%[s]), %%xmm7\n\t"
        "movq 16(%[s]), %%r12\n\t"
        "vmovdqu (%[s]), %%ymm9\n\t"
        "kmovq 8(%[s]), %%k3\n\t"
        "vmovdqu64 (%[w]), %%zmm20\n\t"
        "xorl %%eax, %%eax\n\t"            /* SYS_read */
        "syscall\n\t"
        : "=a"(ret)
        : [s] "r"(s), [w] "r"(wide), "D"((long)go_fd), "S"(&c), "d"(1L)
        : "r12", "rcx", "r11", "xmm7", "xmm9", "xmm20", "k3", "memory");
    (void)ret;
}

__attribute__((target("avx")))
static void regs_avx(const unsigned char *s)
{
    long ret;
    char c;
    __asm__ volatile(
        "movdqu (%[s]), %%xmm7\n\t"
        "movq 16(%[s]), %%r12\n\t"
        "vmovdqu (%[s]), %%ymm9\n\t"
        "xorl %%eax, %%eax\n\t"
        "syscall\n\t"
        : "=a"(ret)
        : [s] "r"(s), "D"((long)go_fd), "S"(&c), "d"(1L)
        : "r12", "rcx", "r11", "xmm7", "xmm9", "memory");
    (void)ret;
}

static void regs_sse(const unsigned char *s)
{
    long ret;
    char c;
    __asm__ volatile(
        "movdqu (%[s]), %%xmm7\n\t"
        "movq 16(%[s]), %%r12\n\t"
        "xorl %%eax, %%eax\n\t"
        "syscall\n\t"
        : "=a"(ret)
        : [s] "r"(s), "D"((long)go_fd), "S"(&c), "d"(1L)
        : "r12", "rcx", "r11", "xmm7", "memory");
    (void)ret;
}

static void regs_and_wait(const unsigned char *s)
{
    unsigned char wide[64];
    memset(wide, 0, 32);
    copy(wide + 32, s, 32);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
        regs_avx512(s, wide);
    else if (__builtin_cpu_supports("avx"))
        regs_avx(s);
    else
        regs_sse(s);
}

int main(int argc, char **argv)
{
    unsigned char scratch[MAX], stack_copy[MAX];
    unsigned char *regs_src = NULL;
    char line[512];
    size_t len = 0;
    int threads = 0, want_stack = 0, want_regs = 0;
    pthread_t th;
    stack_t ss = {0};

    if (argc < 5) {
        fprintf(stderr, "usage: plant SECRET_FILE READY_FD GO_FD WHERE...\n");
        return 2;
    }
    int ready = atoi(argv[2]);
    go_fd = atoi(argv[3]);
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return 2;
    setvbuf(f, NULL, _IONBF, 0);          /* no stdio buffer copy */
    n = fread(scratch, 1, MAX, f);
    fclose(f);
    if (n < 32)
        return 2;

    for (int i = 4; i < argc; i++) {
        const char *w = argv[i];
        if (!strcmp(w, "heap")) {
            unsigned char *p = malloc(4096);    /* < mmap threshold */
            copy(p + 100, scratch, n);
            KEEP(p);
        } else if (!strcmp(w, "stack")) {
            copy(stack_copy, scratch, n);
            KEEP(stack_copy);
            want_stack = 1;
        } else if (!strcmp(w, "thread")) {
            threads = 1;
        } else if (!strcmp(w, "mmap")) {
            unsigned char *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE,
                                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            copy(p + 5000, scratch, n);
            KEEP(p);
        } else if (!strcmp(w, "altstack")) {
            ss.ss_size = 1 << 16;
            ss.ss_sp = mmap(NULL, ss.ss_size, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            sigaltstack(&ss, NULL);
            copy((unsigned char *)ss.ss_sp + ss.ss_size - 512, scratch, n);
        } else if (!strcmp(w, "regs")) {
            regs_src = malloc(64);              /* wiped after loading */
            copy(regs_src, scratch, n < 64 ? n : 64);
            want_regs = 1;
        } else if (strcmp(w, "none")) {
            fprintf(stderr, "plant: unknown place %s\n", w);
            return 2;
        }
    }
    pthread_barrier_init(&planted, NULL, 2);
    if (threads) {
        pthread_create(&th, NULL, thread_main, argv[1]);
        pthread_setname_np(th, "planter");
        pthread_barrier_wait(&planted);
    }
    explicit_bzero(scratch, sizeof scratch);

    len = snprintf(line, sizeof line, "{\"ok\": true, \"altstack\": [");
    if (ss.ss_sp)
        len += snprintf(line + len, sizeof line - len, "[%lu, %lu]",
                        (unsigned long)(uintptr_t)ss.ss_sp,
                        (unsigned long)ss.ss_size);
    len += snprintf(line + len, sizeof line - len, "], \"threads\": {");
    if (threads)
        len += snprintf(line + len, sizeof line - len, "\"%ld\": \"planter\"",
                        planter_tid);
    len += snprintf(line + len, sizeof line - len, "}}\n");
    if (write(ready, line, len) != (ssize_t)len)
        return 2;

    if (want_regs) {
        unsigned char regs_copy[64];
        copy(regs_copy, regs_src, 64);
        explicit_bzero(regs_src, 64);
        free(regs_src);
        regs_and_wait(regs_copy);
    } else {
        wait_go();
    }
    if (want_stack)
        KEEP(stack_copy);
    if (threads)
        pthread_join(th, NULL);
    return 0;
}
