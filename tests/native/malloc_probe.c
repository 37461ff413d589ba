/* Helpers for tests/test_native_heap.py, loaded with ctypes: C threads
 * (pthread_create, not _thread) that allocate or free with the C library's
 * functions, as a native library's own threads would. */

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A thread that allocates and frees blocks of varied sizes until told to
 * stop, counting those that fall in [base, base + size). */
typedef struct {
    uintptr_t base, size;
    volatile int stop;
    long count, secret;
    pthread_t thread;
} churn_t;

static void *
churn_main(void *arg)
{
    churn_t *c = arg;
    unsigned int seed = 12345;
    while (!c->stop) {
        size_t n = (size_t)(rand_r(&seed) % 5000) + 1;
        unsigned char *p;
        switch (c->count % 4) {
        case 0: p = malloc(n); break;
        case 1: p = calloc(1, n); break;
        case 2: p = realloc(NULL, n); break;
        default:
            if (posix_memalign((void **)&p, 64, n) != 0) {
                p = NULL;
            }
        }
        if (p != NULL) {
            memset(p, 0x5a, n);
            if ((uintptr_t)p - c->base < c->size) {
                c->secret++;
            }
            free(p);
        }
        c->count++;
    }
    return NULL;
}

churn_t *
churn_start(uintptr_t base, uintptr_t size)
{
    churn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->base = base;
    c->size = size;
    if (pthread_create(&c->thread, NULL, churn_main, c) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

/* Stops the thread; returns how many blocks it made, secret ones in
 * *secret. */
long
churn_stop(churn_t *c, long *secret)
{
    c->stop = 1;
    pthread_join(c->thread, NULL);
    long n = c->count;
    *secret = c->secret;
    free(c);
    return n;
}

typedef struct {
    void *p;
    size_t n;
    void *result;
} job_t;

static void *
free_main(void *arg)
{
    job_t *j = arg;
    free(j->p);
    return NULL;
}

static void *
realloc_main(void *arg)
{
    job_t *j = arg;
    j->result = realloc(j->p, j->n);
    return NULL;
}

static void *
malloc_main(void *arg)
{
    job_t *j = arg;
    j->result = malloc(j->n);
    return NULL;
}

static void *
run(void *(*fn)(void *), void *p, size_t n)
{
    job_t j = {p, n, NULL};
    pthread_t t;
    if (pthread_create(&t, NULL, fn, &j) != 0) {
        return (void *)-1;
    }
    pthread_join(t, NULL);
    return j.result;
}

/* free(p) on a new C thread. 0, or -1 if no thread could be made. */
int
free_in_pthread(void *p)
{
    return run(free_main, p, 0) == (void *)-1 ? -1 : 0;
}

void *
realloc_in_pthread(void *p, size_t n)
{
    return run(realloc_main, p, n);
}

void *
malloc_in_pthread(size_t n)
{
    return run(malloc_main, NULL, n);
}
