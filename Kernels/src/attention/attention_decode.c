// Attention for decoding: a few new queries over a KV cache, all heads.
//
// The fused forward packs K^T and V per tile so a query block can reuse them;
// with one (or a few) queries there is nothing to amortize the packing over,
// so this kernel reads the cache in place. For each key block of a row strip
// (at most KL_MR queries): scores q K^T with K's rows read in place (kl_ops.dots,
// 8 keys per pass), the online softmax of the fused forward (base 2, running
// max m and sum l), and o = alpha o + p V with V's rows read in place
// (kl_ops.pv, o held in registers). K and V are each read once per strip.
//
// Threads: work items are (batch, head, key split). When the heads alone do
// not give every thread two items, each head's visible keys are cut into S
// contiguous splits (flash-decoding); split s keeps its unnormalized O, m and
// l in the workspace, and a second pass merges the splits of a row by their
// maxima. The workspace is O(S B H Lq d), independent of the cache length.
//
// Cost (kl_attn_decode_cost): FLOPs 4 d per visible (query, key) pair, one exp
// each (exact: the visible ranges are counted); bytes: K and V rows in the
// union of a head's visible ranges once, q, o and lse once, plus o's
// write-allocate fetch. Memory-bound: 2 d * 4 bytes per key against 4 d FLOPs
// per query, 0.5 FLOP/byte at one query.
#include "attention_common.h"
#include <string.h>

typedef struct {
    kl_attn_geom g;
    const kl_ops *ops;
    const float *q, *k, *v;
    float *o, *lse;
    float *po, *pm, *pl;      // S > 1: (B H S, Lq, d), (B H S, Lq), (B H S, Lq) partials
    char *ws;
    size_t ws_per_thread;
    int S, bc, items;
    _Atomic int next;
} dec_ctx;

// Keys any query of rows [r0, r0 + n) of head h sees: one range (see kl_attn_range).
static void union_range(const kl_attn_geom *g, int h, int r0, int n, int *lo, int *hi) {
    int l2, h2;
    kl_attn_range(g, h, r0, lo, hi);
    kl_attn_range(g, h, r0 + n - 1, &l2, &h2);
    if (h2 > *hi) *hi = h2;
    if (*hi <= *lo) *lo = *hi = 0;
}

static int decode_splits(const kl_attn_params *p, int threads, int bc) {
    long bh = (long)p->batch * p->heads;
    if (bh >= 2L * threads) return 1;
    long s = (2L * threads + bh - 1) / bh, blocks = (p->kv_len + bc - 1) / bc;
    return (int)(s < blocks ? s : blocks);
}

static size_t per_thread_bytes(int bc) { return kl_round_up((size_t)KL_MR * bc * sizeof(float), 64); }

static size_t partial_floats(const kl_attn_params *p, int S) {
    return S > 1 ? (size_t)p->batch * p->heads * S * p->q_len * ((size_t)p->head_dim + 2) : 0;
}

static void decode_worker(void *vctx, int tid, int nthreads) {
    dec_ctx *x = vctx;
    const kl_attn_geom *g = &x->g;
    const kl_ops *ops = x->ops;
    const int d = g->d, bc = x->bc, S = x->S;
    float *sbuf = (float *)(x->ws + (size_t)tid * x->ws_per_thread);  // (MR, bc) scores, then P
    int item;
    while ((item = atomic_fetch_add(&x->next, 1)) < x->items) {
        int bh = item / S, split = item % S, h = bh % g->H;
        float slope = kl_attn_slope(g, h), slope2 = slope * KL_LOG2E, c2 = g->scale * KL_LOG2E;
        const long ldk = g->sk.row, ldv = g->sv.row, ldq = g->sq.row, ldo = S == 1 ? g->so.row : d;
        const float *K = x->k + kl_attn_head(&g->sk, bh, g->H), *V = x->v + kl_attn_head(&g->sv, bh, g->H);
        for (int r0 = 0; r0 < g->Lq; r0 += KL_MR) {
            int mr = kl_min(KL_MR, g->Lq - r0);
            const float *Q = x->q + kl_attn_head(&g->sq, bh, g->H) + r0 * ldq;
            // This split's share of the strip's keys.
            int ulo, uhi;
            union_range(g, h, r0, mr, &ulo, &uhi);
            long slo, shi;
            kl_split(uhi - ulo, split, S, &slo, &shi);
            int jlo = ulo + (int)slo, jhi = ulo + (int)shi;
            float m[KL_MR], l[KL_MR], alpha[KL_MR];
            float *O = S == 1 ? x->o + kl_attn_head(&g->so, bh, g->H) + r0 * ldo : x->po + ((long)item * g->Lq + r0) * d;
            for (int r = 0; r < mr; r++) memset(O + r * ldo, 0, (size_t)d * sizeof(float));
            for (int r = 0; r < mr; r++) { m[r] = -INFINITY; l[r] = 0.0f; }
            for (int j0 = jlo; j0 < jhi; j0 += bc) {
                int nc = kl_min(bc, jhi - j0);
                int lo[KL_MR], hi[KL_MR], kmin = nc, kmax = 0;
                for (int r = 0; r < mr; r++) {
                    kl_attn_tile_range(g, h, r0 + r, j0, nc, &lo[r], &hi[r]);
                    if (hi[r] > lo[r]) { kmin = kl_min(kmin, lo[r]); kmax = kl_max(kmax, hi[r]); }
                }
                if (kmax <= kmin) continue;
                // s (mr, kmin:kmax) = Q K^T, K read in place (the block stays in L1 or L2 across the rows).
                for (int r = 0; r < mr; r++)
                    ops->dots(Q + r * ldq, K + (j0 + kmin) * ldk, ldk, kmax - kmin, d, sbuf + (long)r * bc + kmin);
                for (int r = 0; r < mr; r++) {
                    float *s = sbuf + (long)r * bc;
                    if (hi[r] <= lo[r]) {
                        memset(s + kmin, 0, (size_t)(kmax - kmin) * sizeof(float));
                        alpha[r] = 1.0f;
                        continue;
                    }
                    int n = hi[r] - lo[r];
                    float mx, sum, mnew;
                    if (slope == 0.0f) {
                        mx = ops->max(s + lo[r], n) * c2;
                        mnew = mx > m[r] ? mx : m[r];
                        sum = ops->exp2_sum(s + lo[r], n, c2, mnew);
                    } else {
                        float dist0 = (float)(r0 + r + g->off - j0 - lo[r]);
                        mx = ops->scale_bias_max(s + lo[r], n, c2, slope2, dist0);
                        mnew = mx > m[r] ? mx : m[r];
                        sum = ops->exp2_sum(s + lo[r], n, 1.0f, mnew);
                    }
                    if (lo[r] > kmin) memset(s + kmin, 0, (size_t)(lo[r] - kmin) * sizeof(float));
                    if (hi[r] < kmax) memset(s + hi[r], 0, (size_t)(kmax - hi[r]) * sizeof(float));
                    alpha[r] = exp2f(m[r] - mnew);
                    l[r] = alpha[r] * l[r] + sum;
                    m[r] = mnew;
                }
                // O (mr, d) = diag(alpha) O + P (mr, kmin:kmax) V (kmin:kmax, d), V read in place,
                // row by row (the gemm microkernel computes all KL_MR rows whatever mr is).
                for (int r = 0; r < mr; r++)
                    if (hi[r] > lo[r])
                        ops->pv(sbuf + (long)r * bc + kmin, V + (j0 + kmin) * ldv, ldv, kmax - kmin, d, alpha[r], O + r * ldo);
            }
            if (S > 1) {
                float *pm = x->pm + (long)item * g->Lq + r0, *pl = x->pl + (long)item * g->Lq + r0;
                for (int r = 0; r < mr; r++) { pm[r] = m[r]; pl[r] = l[r]; }
                continue;
            }
            for (int r = 0; r < mr; r++) {
                float *lse = x->lse ? x->lse + (long)bh * g->Lq + r0 + r : NULL;
                if (l[r] > 0.0f) {
                    ops->scale(O + r * ldo, d, 1.0f / l[r]);
                    if (lse) *lse = (m[r] + log2f(l[r])) * KL_LN2;
                } else if (lse) {
                    *lse = isnan(l[r]) ? l[r] : -INFINITY;
                }
            }
        }
    }
    (void)nthreads;
}

// The splits of each (b, h, row), merged: o = sum_s 2^(m_s - M) O_s / sum_s 2^(m_s - M) l_s.
static void merge_worker(void *vctx, int tid, int nthreads) {
    dec_ctx *x = vctx;
    const kl_attn_geom *g = &x->g;
    const int d = g->d, S = x->S;
    long rows = (long)g->B * g->H * g->Lq, lo, hi;
    kl_split(rows, tid, nthreads, &lo, &hi);
    for (long row = lo; row < hi; row++) {
        long bh = row / g->Lq, i = row % g->Lq;
        float M = -INFINITY, L = 0.0f, w[KL_MAX_THREADS * 2];
        for (int s = 0; s < S; s++) {
            float ms = x->pm[(bh * S + s) * g->Lq + i];
            if (ms > M) M = ms;
        }
        int nan = 0;
        for (int s = 0; s < S; s++) {
            long at = (bh * S + s) * g->Lq + i;
            float ls = x->pl[at];
            if (isnan(ls)) nan = 1;
            w[s] = ls > 0.0f ? exp2f(x->pm[at] - M) : 0.0f;
            L += w[s] * ls;
        }
        float *o = x->o + kl_attn_head(&g->so, (int)bh, g->H) + i * g->so.row;
        memset(o, 0, (size_t)d * sizeof(float));
        if (nan) L = NAN;
        if (L > 0.0f) {
            for (int s = 0; s < S; s++) {
                // No skip at weight 0: 0 x NaN keeps a NaN in a far-below split (as one split would).
                const float *os = x->po + ((bh * S + s) * g->Lq + i) * d;
                float ws = w[s] / L;
                for (int c = 0; c < d; c++) o[c] += ws * os[c];
            }
        } else if (nan) {
            for (int c = 0; c < d; c++) o[c] = NAN;
        }
        if (x->lse) x->lse[row] = L > 0.0f ? (M + log2f(L)) * KL_LN2 : (nan ? NAN : -INFINITY);
    }
}

static kl_status decode_check(const kl_attn_params *p, long capacity) {
    kl_status st = kl_attn_check(p);
    if (st != KL_OK) return st;
    if (p->q_len > KL_ATTN_DECODE_MAX_Q)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "q_len must be <= %d for decoding (got %d); use kl_attn_fwd",
                       KL_ATTN_DECODE_MAX_Q, p->q_len);
    if (p->q_len > p->kv_len)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "q_len (%d) must be <= kv_len (%d): the new queries' keys are in the cache",
                       p->q_len, p->kv_len);
    if (capacity < p->kv_len)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "capacity (%ld) must be >= kv_len (%d)", capacity, p->kv_len);
    if (capacity * p->head_dim > (1L << 31))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "capacity x head_dim exceeds 2^31 elements");
    return KL_OK;
}

size_t kl_attn_decode_workspace_bytes(const kl_attn_params *p, long capacity, int threads) {
    if (decode_check(p, capacity) != KL_OK || threads < 1 || threads > KL_MAX_THREADS) return 0;
    int qb, bc;
    kl_attn_tiles_for(p, &qb, &bc);  // the key tile; decoding has no query blocks
    int S = decode_splits(p, threads, bc);
    return (size_t)threads * per_thread_bytes(bc) + kl_round_up(partial_floats(p, S) * sizeof(float), 64);
}

kl_status kl_attn_decode(const kl_attn_params *p, long capacity, const float *q, const float *k_cache,
                         const float *v_cache, float *o, float *lse, void *ws, size_t ws_bytes, kl_pool *pool) {
    kl_status st = kl_init();
    if (st != KL_OK) return st;
    if ((st = decode_check(p, capacity)) != KL_OK) return st;
    if (pool == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "pool is NULL");
    if (!q || !k_cache || !v_cache || !o)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "%s is NULL", !q ? "q" : !k_cache ? "k_cache" : !v_cache ? "v_cache" : "o");
    int threads = kl_pool_threads(pool);
    size_t need = kl_attn_decode_workspace_bytes(p, capacity, threads);
    if ((st = kl_check_workspace(ws, ws_bytes, need)) != KL_OK) return st;
    kl_attn_geom gg;
    kl_attn_geom_init_rows(p, capacity, &gg);
    const int B = p->batch, H = p->heads, d = p->head_dim;
    long Lq = p->q_len, Lk = p->kv_len;
    if (kl_attn_views_overlap(o, &gg.so, Lq, q, &gg.sq, Lq, B, H, d) ||
        kl_attn_views_overlap(o, &gg.so, Lq, k_cache, &gg.sk, Lk, B, H, d) ||
        kl_attn_views_overlap(o, &gg.so, Lq, v_cache, &gg.sv, Lk, B, H, d))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "o overlaps q, k_cache or v_cache");
    size_t lse_bytes = (size_t)B * H * Lq * sizeof(float);
    if (lse && (kl_attn_view_overlaps_array(o, &gg.so, Lq, B, H, d, lse, lse_bytes) ||
                kl_attn_view_overlaps_array(q, &gg.sq, Lq, B, H, d, lse, lse_bytes) ||
                kl_attn_view_overlaps_array(k_cache, &gg.sk, Lk, B, H, d, lse, lse_bytes) ||
                kl_attn_view_overlaps_array(v_cache, &gg.sv, Lk, B, H, d, lse, lse_bytes)))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "lse overlaps o, q, k_cache or v_cache");
    kl_clear_error();

    dec_ctx x;
    memset(&x, 0, sizeof x);
    x.g = gg;
    x.ops = kl_ops_active();
    x.q = q; x.k = k_cache; x.v = v_cache; x.o = o; x.lse = lse;
    int qb;
    kl_attn_tiles_for(p, &qb, &x.bc);
    x.S = decode_splits(p, threads, x.bc);
    x.ws = ws;
    x.ws_per_thread = per_thread_bytes(x.bc);
    if (x.S > 1) {
        size_t rows = (size_t)p->batch * p->heads * x.S * p->q_len;
        x.po = (float *)((char *)ws + (size_t)threads * x.ws_per_thread);
        x.pm = x.po + rows * p->head_dim;
        x.pl = x.pm + rows;
    }
    x.items = p->batch * p->heads * x.S;
    atomic_init(&x.next, 0);
    kl_pool_run(pool, decode_worker, &x);
    if (x.S > 1) kl_pool_run(pool, merge_worker, &x);
    return KL_OK;
}

kl_status kl_attn_decode_cost(const kl_attn_params *p, long capacity, kl_cost *out) {
    kl_status st = decode_check(p, capacity);
    if (st != KL_OK) return st;
    if (out == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "out is NULL");
    kl_attn_geom g;
    kl_attn_geom_init(p, &g);
    double pairs = 0, keys = 0;
    for (int h = 0; h < g.H; h++) {
        int lo, hi;
        for (int i = 0; i < g.Lq; i++) {
            kl_attn_range(&g, h, i, &lo, &hi);
            pairs += hi - lo;
        }
        union_range(&g, h, 0, g.Lq, &lo, &hi);
        keys += hi - lo;
    }
    double B = p->batch, d = p->head_dim, qo = B * g.H * g.Lq * d * 4.0, lse = B * g.H * g.Lq * 4.0;
    double strips = (g.Lq + KL_MR - 1) / KL_MR;
    memset(out, 0, sizeof *out);
    out->flops = 4.0 * B * d * pairs;
    out->exps = B * pairs;
    out->min_bytes = B * keys * 2.0 * d * 4.0 + 2.0 * qo + lse;
    out->dram_bytes = out->min_bytes + qo + lse;  // + write-allocate of o and lse
    out->l3_bytes = out->dram_bytes;
    // A key block (bc rows of K and V) outlives L1 between row strips: each further strip re-reads it from L2.
    out->l2_bytes = out->dram_bytes + (strips - 1) * B * keys * 2.0 * d * 4.0;
    return KL_OK;
}
