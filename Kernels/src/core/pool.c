// A small fork-join thread pool: the caller is thread 0. Between runs a worker
// spins for a bounded time (KL_POOL_SPIN pauses, tens of microseconds) and then
// sleeps on a condition variable, and the caller waits for the workers the same
// way: a wake-up through the kernel costs 15-20 us on the 2-core VMs, more
// than a decoding step's kernels take, while spinning without bound would
// steal the other core of a shared machine. With pinning on, thread t runs on the t-th CPU of
// the NUMA-interleaved order (the caller only while a run lasts).
#define _GNU_SOURCE  // pthread_setaffinity_np, CPU_SET
#include "internal.h"
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

struct kl_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    _Atomic unsigned long generation;
    _Atomic int pending;
    _Atomic int stop;
    int caller_cpu;   // CPU of thread 0 during runs, -1 when not pinning
    void (*fn)(void *, int, int);
    void *ctx;
};

typedef struct { kl_pool *pool; int tid; int cpu; } kl_worker_arg;

// About 30 us of pause instructions (the pause latency differs by core).
#define KL_POOL_SPIN 2000

static inline void kl_cpu_relax(void) {
#if KL_X86
    __builtin_ia32_pause();
#endif
}

static void *kl_worker_main(void *vp) {
    kl_worker_arg arg = *(kl_worker_arg *)vp;
    free(vp);
    kl_pool *p = arg.pool;
    if (arg.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(arg.cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);  // best effort
    }
    unsigned long seen = 0;
    for (;;) {
        for (int i = 0; i < KL_POOL_SPIN && atomic_load(&p->generation) == seen && !atomic_load(&p->stop); i++)
            kl_cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->start, &p->mu);
        if (atomic_load(&p->stop)) break;
        seen = atomic_load(&p->generation);
        void (*fn)(void *, int, int) = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, arg.tid, p->threads);
        // The last worker out wakes the caller if it sleeps (under the mutex,
        // so the wake-up cannot fall between its check and its wait).
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

// CPUs ordered round-robin over NUMA nodes, so T threads spread over nodes.
static int kl_cpu_order(int *order, int max) {
    int ncpu = kl_cpu_count();
    if (ncpu > max) ncpu = max;
    int nodes = kl_numa_nodes();
    if (nodes <= 1 || numa_available() < 0) {
        for (int i = 0; i < ncpu; i++) order[i] = i;
        return ncpu;
    }
    int n = 0;
    for (int round = 0; n < ncpu && round < ncpu; round++)
        for (int node = 0; node < nodes && n < ncpu; node++) {
            int seen = 0;
            for (int c = 0; c < ncpu; c++)
                if (numa_node_of_cpu(c) == node && seen++ == round) { order[n++] = c; break; }
        }
    return n;
}

kl_status kl_pool_create(int threads, kl_pool **out) {
    if (out == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "pool output pointer is NULL");
    *out = NULL;
    if (threads < 1 || threads > KL_MAX_THREADS)
        return kl_fail(KL_ERR_THREADS, "threads must be in 1...%d (got %d)", KL_MAX_THREADS, threads);
    kl_pool *p = calloc(1, sizeof *p);
    if (!p) return kl_fail(KL_ERR_ALLOC, "cannot allocate the thread pool");
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    if (threads > 1) {
        p->workers = calloc((size_t)threads, sizeof(pthread_t));
        int order[1024];
        int ncpu = kl_cpu_order(order, 1024);
        const char *pin = getenv("KERNELLAB_PIN");
        int pinning = !(pin && strcmp(pin, "0") == 0);
        p->caller_cpu = pinning && ncpu > 0 ? order[0] : -1;
        for (int t = 1; t < threads; t++) {
            kl_worker_arg *arg = malloc(sizeof *arg);
            if (!p->workers || !arg) {
                free(arg);
                p->threads = t;
                kl_pool_destroy(p);
                return kl_fail(KL_ERR_ALLOC, "cannot allocate thread %d", t);
            }
            arg->pool = p;
            arg->tid = t;
            arg->cpu = pinning && ncpu > 0 ? order[t % ncpu] : -1;
            if (pthread_create(&p->workers[t], NULL, kl_worker_main, arg) != 0) {
                free(arg);
                p->threads = t;  // destroy joins only the threads that exist
                kl_pool_destroy(p);
                return kl_fail(KL_ERR_THREADS, "pthread_create failed for thread %d", t);
            }
        }
    }
    *out = p;
    return KL_OK;
}

void kl_pool_destroy(kl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->threads; t++) pthread_join(p->workers[t], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p);
}

int kl_pool_threads(const kl_pool *p) { return p ? p->threads : 1; }

void kl_pool_run(kl_pool *p, void (*fn)(void *, int, int), void *ctx) {
    if (!p || p->threads == 1) { fn(ctx, 0, 1); return; }
    // The caller is thread 0: pin it to the CPU no worker owns for the length
    // of the run, then give its affinity back. Unpinned, it can share a CPU
    // with a pinned worker until the scheduler moves it, which costs short
    // kernels most of their parallel speedup.
    // Already on that CPU (sched_getcpu reads the vDSO, no system call): left
    // alone, since the two affinity calls cost ~7 us, more than a decoding
    // step's kernel, and the scheduler does not move a running thread onto a
    // busy CPU.
    cpu_set_t saved;
    int restore = p->caller_cpu >= 0 && sched_getcpu() != p->caller_cpu &&
                  pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
    if (restore) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(p->caller_cpu, &one);
        if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0) restore = 0;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->pending, p->threads - 1);
    atomic_fetch_add(&p->generation, 1);  // spinning workers see it; sleeping ones get the broadcast
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->threads);
    for (int i = 0; i < KL_POOL_SPIN && atomic_load(&p->pending) > 0; i++) kl_cpu_relax();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    if (restore) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
}
