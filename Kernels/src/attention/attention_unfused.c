// Unfused attention: the reference formulation with materialized (Lq, Lk)
// matrices. Heads run one after another; each GEMM is one cblas_sgemm using the
// pool's thread count, and the elementwise passes (mask, softmax, dS) are split
// over rows on the pool with the same vectorized primitives as the fused kernel
// (so the comparison isolates data movement, not exp quality).
//   forward:  S = scale Q K^T + bias;  P = softmax(S masked);  O = P V
//   backward: P = exp(S - lse);  dV = P^T dO;  dP = dO V^T;
//             dS = P * (dP - rowsum(dO * O));  dQ = scale dS K;  dK = scale dS^T Q
// Workspace: one (Lq, Lk) matrix forward, two backward: O(L^2).
#include "attention_common.h"
#include <cblas.h>
#include <string.h>

typedef struct {
    const kl_attn_geom *g;
    const kl_ops *ops;
    int h;
    float *s, *dp;                  // (Lq, Lk)
    const float *o, *dout;          // this head, (Lq, d)
    float *lse;                     // forward: written; backward: read
    int backward;
} rows_ctx;

// Forward rows: scale/bias/mask then softmax in place, lse out.
// Backward rows: P from lse in s, dS = P * (dP - D) in dp.
static void rows_worker(void *vctx, int tid, int nthreads) {
    rows_ctx *x = vctx;
    const kl_attn_geom *g = x->g;
    const kl_ops *ops = x->ops;
    int per = (g->Lq + nthreads - 1) / nthreads;
    int i0 = tid * per, i1 = kl_min(g->Lq, i0 + per);
    float slope2 = kl_attn_slope(g, x->h) * KL_LOG2E;  // base 2, as in the fused kernel
    for (int i = i0; i < i1; i++) {
        float *s = x->s + (long)i * g->Lk;
        int lo, hi;
        kl_attn_range(g, x->h, i, &lo, &hi);
        float dist0 = (float)(i + g->off - lo);
        if (hi > lo) {
            if (!x->backward) {
                // The GEMM already applied the scale; only log2(e) and the bias are left.
                float mx = ops->scale_bias_max(s + lo, hi - lo, KL_LOG2E, slope2, dist0);
                float sum = ops->exp2_sum(s + lo, hi - lo, 1.0f, mx);
                ops->scale(s + lo, hi - lo, 1.0f / sum);
                x->lse[i] = (mx + log2f(sum)) * KL_LN2;
            } else {
                ops->exp2_scaled(s + lo, hi - lo, KL_LOG2E, slope2, dist0, x->lse[i] * KL_LOG2E);
            }
        } else if (!x->backward) {
            x->lse[i] = -INFINITY;
        }
        if (lo > 0) memset(s, 0, (size_t)lo * sizeof(float));
        if (hi < lo) hi = lo;
        if (hi < g->Lk) memset(s + hi, 0, (size_t)(g->Lk - hi) * sizeof(float));
        if (x->backward) {
            float D = ops->dot(x->dout + i * g->so.row, x->o + i * g->so.row, g->d);
            ops->dsoftmax(x->dp + (long)i * g->Lk, s, g->Lk, D);
        }
    }
}

size_t kl_attn_unfused_workspace(const kl_attn_params *p, int backward) {
    size_t s = kl_round_up((size_t)p->q_len * p->kv_len * sizeof(float), 64);
    return backward ? 2 * s : s;
}

kl_status kl_attn_unfused_fwd(const kl_attn_params *p, const float *q, const float *k, const float *v,
                              float *o, float *lse, void *ws, size_t ws_bytes, kl_pool *pool) {
    kl_status st = kl_check_workspace(ws, ws_bytes, kl_attn_unfused_workspace(p, 0));
    if (st != KL_OK) return st;
    kl_attn_geom g;
    kl_attn_geom_init(p, &g);
    kl_blas_threads(kl_pool_threads(pool));
    rows_ctx x = {.g = &g, .ops = kl_ops_active(), .s = ws, .backward = 0};
    const int d = g.d;
    for (int bh = 0; bh < g.B * g.H; bh++) {
        const float *Q = q + kl_attn_head(&g.sq, bh, g.H), *K = k + kl_attn_head(&g.sk, bh, g.H);
        const float *V = v + kl_attn_head(&g.sv, bh, g.H);
        // s: (Lq, Lk) = scale * Q K^T  (rows of q, k, v, o at the layout's strides)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.Lq, g.Lk, d, g.scale, Q, g.sq.row, K, g.sk.row, 0.0f, x.s, g.Lk);
        x.h = bh % g.H;
        x.lse = lse + (long)bh * g.Lq;
        kl_pool_run(pool, rows_worker, &x);
        // o: (Lq, d) = P V
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.Lq, d, g.Lk, 1.0f, x.s, g.Lk, V, g.sv.row, 0.0f,
                    o + kl_attn_head(&g.so, bh, g.H), g.so.row);
    }
    return KL_OK;
}

kl_status kl_attn_unfused_bwd(const kl_attn_params *p, const float *q, const float *k, const float *v,
                              const float *o, const float *lse, const float *dout,
                              float *dq, float *dk, float *dv, void *ws, size_t ws_bytes, kl_pool *pool) {
    kl_status st = kl_check_workspace(ws, ws_bytes, kl_attn_unfused_workspace(p, 1));
    if (st != KL_OK) return st;
    kl_attn_geom g;
    kl_attn_geom_init(p, &g);
    kl_blas_threads(kl_pool_threads(pool));
    size_t half = kl_attn_unfused_workspace(p, 0);
    rows_ctx x = {.g = &g, .ops = kl_ops_active(), .s = ws, .dp = (float *)((char *)ws + half), .backward = 1};
    const int d = g.d, Lq = g.Lq, Lk = g.Lk;
    // Gradients take their tensor's layout; accumulate = 1 is beta = 1.
    const long ldq = g.sq.row, ldk = g.sk.row, ldv = g.sv.row, ldo = g.so.row;
    const float beta = g.accumulate ? 1.0f : 0.0f;
    for (int bh = 0; bh < g.B * g.H; bh++) {
        long qo = kl_attn_head(&g.sq, bh, g.H), ko = kl_attn_head(&g.sk, bh, g.H);
        long vo = kl_attn_head(&g.sv, bh, g.H), oo = kl_attn_head(&g.so, bh, g.H);
        // s = scale Q K^T;  dp = dO V^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, Lk, d, g.scale, q + qo, ldq, k + ko, ldk, 0.0f, x.s, Lk);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, Lk, d, 1.0f, dout + oo, ldo, v + vo, ldv, 0.0f, x.dp, Lk);
        x.h = bh % g.H;
        x.lse = (float *)(lse + (long)bh * Lq);  // read only in the backward
        x.o = o + oo;
        x.dout = dout + oo;
        kl_pool_run(pool, rows_worker, &x);
        // dv: (Lk, d) = P^T dO;  dq: (Lq, d) = scale dS K;  dk: (Lk, d) = scale dS^T Q
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Lk, d, Lq, 1.0f, x.s, Lk, dout + oo, ldo, beta, dv + vo, ldv);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Lq, d, Lk, g.scale, x.dp, Lk, k + ko, ldk, beta, dq + qo, ldq);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Lk, d, Lq, g.scale, x.dp, Lk, q + qo, ldq, beta, dk + ko, ldk);
    }
    return KL_OK;
}
