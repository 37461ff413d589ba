/* How fast can a freed secret buffer be zeroed? (docs/heap-cost.md, the
 * bytearray bound.) Zeroes 1.3 MB just written, as a freed bytearray
 * buffer is, with explicit_bzero (what the secret heap uses), rep stosb,
 * and non-temporal AVX2 stores; memcpy of the same size for scale. Best of
 * 300, three rounds. Informative only, never asserted:
 *
 *   gcc -O2 -mavx2 -o /tmp/zeroing_rates scripts/zeroing_rates.c
 *   /tmp/zeroing_rates
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void
stosb(void *p, size_t n)
{
    __asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(0) : "memory");
}

static void
nontemporal(void *p, size_t n)
{
    __m256i z = _mm256_setzero_si256();
    char *c = p;
    for (size_t i = 0; i < n; i += 32) {
        _mm256_stream_si256((__m256i *)(c + i), z);
    }
    _mm_sfence();
}

int
main(void)
{
    /* What one do() of the 4 KiB-append work zeroes (heap_info()). */
    size_t n = 1320134 & ~(size_t)63;
    char *buf = aligned_alloc(4096, 1 << 21);
    char *src = aligned_alloc(4096, 1 << 21);
    if (buf == NULL || src == NULL) {
        return 1;
    }
    memset(src, 'x', 1 << 21);
    static const char *names[] = {"explicit_bzero", "rep stosb",
                                  "non-temporal", "memcpy"};
    for (int round = 0; round < 3; round++) {
        for (int m = 0; m < 4; m++) {
            double best = 1e9;
            for (int i = 0; i < 300; i++) {
                memcpy(buf, src, n);        /* written: hot, resident */
                double t = now();
                switch (m) {
                case 0: explicit_bzero(buf, n); break;
                case 1: stosb(buf, n); break;
                case 2: nontemporal(buf, n); break;
                default: memcpy(buf, src, n); break;
                }
                t = now() - t;
                best = t < best ? t : best;
            }
            printf("%-15s %6.1f us for %zu bytes\n", names[m], best * 1e6, n);
        }
    }
    return 0;
}
