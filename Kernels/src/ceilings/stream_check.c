// An independent STREAM-style triad, to cross-check kl_ceiling_bandwidth's
// DRAM triad. It shares nothing with the lab kernels: a plain C loop (no
// intrinsics, no target attributes: the compiler's baseline vectorization, as
// STREAM gets), arrays shared by all threads in static slices (STREAM's
// OpenMP schedule), and the whole parallel pass timed on the caller,
// fork/join included, as STREAM times it.
#include "../core/internal.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double kl_stream_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
    float *a, *b, *c;
    size_t n;
    float scalar;
} stream_ctx;

static void stream_slice(size_t n, int tid, int nt, size_t *lo, size_t *hi) {
    // Slices rounded to 16 floats, so no two threads share a cache line.
    size_t per = (n / (size_t)nt + 15) / 16 * 16;
    *lo = per * (size_t)tid;
    *hi = *lo + per;
    if (*lo > n) *lo = n;
    if (*hi > n) *hi = n;
}

// STREAM's initial values; each thread writes its own slice first, so the
// pages land on that thread's NUMA node (first touch), as in STREAM.
static void stream_init(void *vctx, int tid, int nt) {
    stream_ctx *x = vctx;
    size_t lo, hi;
    stream_slice(x->n, tid, nt, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        x->a[i] = 1.0f;
        x->b[i] = 2.0f;
        x->c[i] = 0.0f;
    }
}

static void stream_triad(void *vctx, int tid, int nt) {
    stream_ctx *x = vctx;
    size_t lo, hi;
    stream_slice(x->n, tid, nt, &lo, &hi);
    float *restrict a = x->a;
    const float *restrict b = x->b;
    const float *restrict c = x->c;
    const float s = x->scalar;
    for (size_t i = lo; i < hi; i++) a[i] = b[i] + s * c[i];
}

kl_status kl_ceiling_stream_triad_check(size_t array_bytes, int trials, kl_pool *pool, kl_ceiling_run *out) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if (!pool || !out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "pool and out are required");
    if (trials < 2) return kl_fail(KL_ERR_INVALID_ARGUMENT, "trials must be >= 2 (the first is discarded), got %d", trials);
    if (array_bytes == 0) {
        // STREAM's rule: each array at least 4x the last-level cache.
        size_t llc = kl_cache_bytes(3);
        if (llc == 0) llc = kl_cache_bytes(2);
        if (llc == 0) llc = (size_t)32 << 20;
        array_bytes = 4 * llc;
    }
    if (array_bytes < 4096) return kl_fail(KL_ERR_INVALID_ARGUMENT, "array_bytes must be >= 4096, got %zu", array_bytes);
    stream_ctx x;
    memset(&x, 0, sizeof x);
    x.n = array_bytes / sizeof(float);
    x.scalar = 3.0f;
    size_t bytes = kl_round_up(x.n * sizeof(float), 4096);
    // Plain allocations (not kl_alloc's NUMA-local policy): pages are placed
    // by the threads' first touch, STREAM's way.
    x.a = aligned_alloc(4096, bytes);
    x.b = aligned_alloc(4096, bytes);
    x.c = aligned_alloc(4096, bytes);
    if (!x.a || !x.b || !x.c) {
        free(x.a);
        free(x.b);
        free(x.c);
        return kl_fail(KL_ERR_ALLOC, "cannot allocate 3 arrays of %zu bytes", bytes);
    }
    kl_pool_run(pool, stream_init, &x);
    double best = 0.0;
    for (int t = 0; t < trials; t++) {
        double t0 = kl_stream_now();
        kl_pool_run(pool, stream_triad, &x);
        double dt = kl_stream_now() - t0;
        // STREAM discards the first pass (page-table and cache warm-up).
        if (t > 0 && (best == 0.0 || dt < best)) best = dt;
    }
    // Reading the result keeps the passes from being optimized away.
    volatile float sink = x.a[x.n / 2];
    (void)sink;
    free(x.a);
    free(x.b);
    free(x.c);
    out->seconds = best;
    out->amount = 12.0 * (double)x.n;  // STREAM's triad bytes: 2 reads + 1 write per float
    return KL_OK;
}
