// Token embedding: a gather forward, a scatter-add backward.
//   ids: (n); table, dtable: (V, d); out, dout: (n, d)
// The backward splits the d columns over the threads, so every table row
// has one writer per column and no atomics are needed; tokens are added in
// order, so the result does not depend on the thread count.
// Cost: forward 0 FLOPs, n d 4 bytes read and written; backward n d adds.
#include "../core/internal.h"
#include <string.h>

typedef struct {
    long n;
    int d, V, accumulate;
    const int32_t *ids;
    const float *src;
    float *dst;
} embed_ctx;

static void embed_fwd_worker(void *vctx, int tid, int nthreads) {
    embed_ctx *c = vctx;
    long lo, hi;
    kl_split(c->n, tid, nthreads, &lo, &hi);
    for (long i = lo; i < hi; i++)
        memcpy(c->dst + i * c->d, c->src + (long)c->ids[i] * c->d, (size_t)c->d * sizeof(float));
}

static void embed_bwd_worker(void *vctx, int tid, int nthreads) {
    embed_ctx *c = vctx;
    long c0, c1;
    kl_split(c->d, tid, nthreads, &c0, &c1);
    if (c1 <= c0) return;
    if (!c->accumulate)
        for (int v = 0; v < c->V; v++) memset(c->dst + (long)v * c->d + c0, 0, (size_t)(c1 - c0) * sizeof(float));
    for (long i = 0; i < c->n; i++) {
        float *row = c->dst + (long)c->ids[i] * c->d;
        const float *g = c->src + i * c->d;
        for (long k = c0; k < c1; k++) row[k] += g[k];
    }
}

static kl_status embed_check(long n, int d, int V, const int32_t *ids, const void *a, const void *b, kl_pool *pool) {
    if (n < 0 || d < 1 || V < 1)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "embedding: need n >= 0, d >= 1, V >= 1 (got %ld, %d, %d)", n, d, V);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "embedding: pool is NULL");
    if (n > 0 && (!ids || !a || !b)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "embedding: a tensor is NULL");
    for (long i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return kl_fail(KL_ERR_INVALID_ARGUMENT, "embedding: ids[%ld] = %d, expected 0 <= id < V = %d", i, (int)ids[i], V);
    return KL_OK;
}

kl_status kl_embedding_fwd(long n, int d, int V, const int32_t *ids, const float *table, float *out, kl_pool *pool) {
    kl_status st = embed_check(n, d, V, ids, table, out, pool);
    if (st != KL_OK) return st;
    embed_ctx c = {n, d, V, 0, ids, table, out};
    if (n > 0) kl_pool_run(pool, embed_fwd_worker, &c);
    return KL_OK;
}

kl_status kl_embedding_bwd(long n, int d, int V, const int32_t *ids, const float *dout, float *dtable, int accumulate,
                           kl_pool *pool) {
    if (!dtable) return kl_fail(KL_ERR_INVALID_ARGUMENT, "embedding: dtable is NULL");
    kl_status st = embed_check(n, d, V, ids, n > 0 ? (const void *)dout : dtable, dtable, pool);
    if (st != KL_OK) return st;
    embed_ctx c = {n, d, V, accumulate != 0, ids, dout, dtable};
    kl_pool_run(pool, embed_bwd_worker, &c);
    return KL_OK;
}

kl_status kl_embedding_cost(long n, int d, kl_pass pass, kl_cost *out) {
    if (!out || n < 0 || d < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "embedding cost: need out, n >= 0, d >= 1");
    double e = (double)n * d;
    out->flops = pass == KL_PASS_BACKWARD ? e : 0;  // the scatter's adds
    out->exps = 0;
    // Forward: the rows read and out written; backward: dout read, the table's rows read and written.
    out->min_bytes = (pass == KL_PASS_BACKWARD ? 12.0 : 8.0) * e + 4.0 * (double)n;
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;
    return KL_OK;
}
