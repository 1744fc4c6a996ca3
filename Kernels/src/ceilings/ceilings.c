// Ceiling measurements: peak FMA rate, exp throughput, and streaming
// bandwidth at a given working set. Each run starts every pool thread at a
// barrier and reports the slowest thread's time (the run is as fast as its
// slowest thread). Trials, sweeps and best-of selection are the caller's.
#include "../core/internal.h"
#include <numa.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

static double kl_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
    const kl_ops *ops;
    int kind;               // 0 flops, 1 exp, 2 bandwidth
    kl_bw_kernel bw;
    long iters;
    size_t bytes;
    int node;
    pthread_barrier_t start;
    double seconds[KL_MAX_THREADS];
    double amount[KL_MAX_THREADS];
    int failed;
} ceil_ctx;

static void ceil_worker(void *vctx, int tid, int nt) {
    ceil_ctx *x = vctx;
    const kl_ops *ops = x->ops;
    float *a = NULL, *b = NULL, *c = NULL;
    size_t n = 0, alloc = 0;
    if (x->kind == 1) {
        n = 4096;
        alloc = n * sizeof(float);
        a = kl_alloc(alloc);
    } else if (x->kind == 2) {
        int arrays = x->bw == KL_BW_READ ? 1 : x->bw == KL_BW_COPY ? 2 : 3;
        n = x->bytes / sizeof(float) / (size_t)arrays;
        if (n < 64) n = 64;
        alloc = n * sizeof(float);
        // Local: first touch by this (pinned) thread; remote: bound to x->node.
        if (x->node >= 0 && numa_available() >= 0) {
            a = numa_alloc_onnode(alloc, x->node);
            if (arrays > 1) b = numa_alloc_onnode(alloc, x->node);
            if (arrays > 2) c = numa_alloc_onnode(alloc, x->node);
        } else {
            a = kl_alloc(alloc);
            if (arrays > 1) b = kl_alloc(alloc);
            if (arrays > 2) c = kl_alloc(alloc);
        }
        if (!a || (arrays > 1 && !b) || (arrays > 2 && !c)) x->failed = 1;
    }
    if (a) for (size_t i = 0; i < n; i++) a[i] = 1.0f + (float)(i % 7) * 1e-3f;
    if (b) for (size_t i = 0; i < n; i++) b[i] = 0.5f;
    if (c) for (size_t i = 0; i < n; i++) c[i] = 0.25f;
    // Warm the working set into the caches it fits in.
    if (x->kind == 2 && a) (void)ops->bw_read(a, n);
    pthread_barrier_wait(&x->start);
    double t0 = kl_now(), amount = 0.0;
    volatile float sink = 0.0f;
    if (x->kind == 0) {
        amount = ops->peak_fma(x->iters, (float)tid);
    } else if (x->kind == 1) {
        float s = 0.0f;
        for (long it = 0; it < x->iters; it++) {
            // Values in [-1, 0] keep 2^x normal; re-seeding the buffer each
            // pass is part of the cost, as it is in the softmax (a store).
            s += ops->exp2_sum(a, (int)n, 1.0f, 1.0f);
        }
        sink = s;
        amount = (double)x->iters * (double)n;
    } else if (!x->failed) {
        float s = 0.0f;
        for (long it = 0; it < x->iters; it++) {
            switch (x->bw) {
            case KL_BW_READ: s += ops->bw_read(a, n); break;
            case KL_BW_COPY: ops->bw_copy(b, a, n); break;
            case KL_BW_TRIAD: ops->bw_triad(a, b, c, 0.5f, n); break;
            }
        }
        sink = s;
        double per = x->bw == KL_BW_READ ? 4.0 : x->bw == KL_BW_COPY ? 8.0 : 12.0;
        amount = per * (double)n * (double)x->iters;
    }
    x->seconds[tid] = kl_now() - t0;
    x->amount[tid] = amount;
    (void)sink;
    (void)nt;
    if (x->node >= 0 && numa_available() >= 0) {
        if (a) numa_free(a, alloc);
        if (b) numa_free(b, alloc);
        if (c) numa_free(c, alloc);
    } else {
        kl_free(a, alloc);
        kl_free(b, alloc);
        kl_free(c, alloc);
    }
}

static kl_status run(ceil_ctx *x, kl_isa isa, kl_pool *pool, kl_ceiling_run *out) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if (!pool || !out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "pool and out are required");
    if (x->iters <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "iters must be > 0");
    if (!kl_isa_supported(isa) || !kl_ops_for(isa))
        return kl_fail(KL_ERR_UNSUPPORTED_ISA, "ISA %s is not supported by this CPU", kl_isa_name(isa));
    x->ops = kl_ops_for(isa);
    int T = kl_pool_threads(pool);
    pthread_barrier_init(&x->start, NULL, (unsigned)T);
    kl_pool_run(pool, ceil_worker, x);
    pthread_barrier_destroy(&x->start);
    if (x->failed) return kl_fail(KL_ERR_ALLOC, "cannot allocate the bandwidth arrays");
    out->seconds = 0.0;
    out->amount = 0.0;
    for (int t = 0; t < T; t++) {
        if (x->seconds[t] > out->seconds) out->seconds = x->seconds[t];
        out->amount += x->amount[t];
    }
    return KL_OK;
}

kl_status kl_ceiling_flops(kl_isa isa, long iters, kl_pool *pool, kl_ceiling_run *out) {
    ceil_ctx x;
    memset(&x, 0, sizeof x);
    x.kind = 0;
    x.iters = iters;
    return run(&x, isa, pool, out);
}

kl_status kl_ceiling_exp(kl_isa isa, long iters, kl_pool *pool, kl_ceiling_run *out) {
    ceil_ctx x;
    memset(&x, 0, sizeof x);
    x.kind = 1;
    x.iters = iters;
    return run(&x, isa, pool, out);
}

kl_status kl_ceiling_bandwidth(kl_isa isa, kl_bw_kernel kernel, size_t bytes_per_thread, long iters,
                               int node, kl_pool *pool, kl_ceiling_run *out) {
    if (kernel != KL_BW_READ && kernel != KL_BW_COPY && kernel != KL_BW_TRIAD)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "unknown bandwidth kernel %d", (int)kernel);
    if (bytes_per_thread < 256) return kl_fail(KL_ERR_INVALID_ARGUMENT, "working set must be >= 256 bytes");
    if (node >= kl_numa_nodes()) return kl_fail(KL_ERR_INVALID_ARGUMENT, "NUMA node %d does not exist", node);
    ceil_ctx x;
    memset(&x, 0, sizeof x);
    x.kind = 2;
    x.bw = kernel;
    x.bytes = bytes_per_thread;
    x.iters = iters;
    x.node = node;
    return run(&x, isa, pool, out);
}
