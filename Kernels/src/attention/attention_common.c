// Argument checks, tiles and the cost model of attention.
#include "attention_common.h"

kl_status kl_attn_check(const kl_attn_params *p) {
    if (p == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "attention params are NULL");
    if (p->batch <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "batch must be > 0 (got %d)", p->batch);
    if (p->heads <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "heads must be > 0 (got %d)", p->heads);
    if (p->q_len <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "q_len must be > 0 (got %d)", p->q_len);
    if (p->kv_len <= 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "kv_len must be > 0 (got %d)", p->kv_len);
    if (p->head_dim <= 0 || p->head_dim > 1024)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "head_dim must be in 1...1024 (got %d)", p->head_dim);
    if (p->causal != 0 && p->causal != 1)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "causal must be 0 or 1 (got %d)", p->causal);
    if (!(p->scale >= 0.0f) || isinf(p->scale))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "scale must be finite and >= 0 (0 = 1/sqrt(d))");
    if (p->alibi_slopes)
        for (int h = 0; h < p->heads; h++)
            if (!isfinite(p->alibi_slopes[h]))
                return kl_fail(KL_ERR_INVALID_ARGUMENT, "alibi_slopes[%d] is not finite", h);
    // Index arithmetic is done in long; a single head must fit int-sized rows.
    if ((long)p->q_len * p->head_dim > (1L << 31) || (long)p->kv_len * p->head_dim > (1L << 31))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "sequence x head_dim exceeds 2^31 elements");
    return KL_OK;
}

void kl_attn_geom_init(const kl_attn_params *p, kl_attn_geom *g) {
    g->B = p->batch;
    g->H = p->heads;
    g->Lq = p->q_len;
    g->Lk = p->kv_len;
    g->d = p->head_dim;
    g->causal = p->causal;
    g->off = p->kv_len - p->q_len;
    g->scale = p->scale > 0.0f ? p->scale : 1.0f / sqrtf((float)p->head_dim);
    g->slopes = p->alibi_slopes;
    g->windows = p->windows;
}

// Defaults chosen by measurement on Zen 4 (B=1, H=8, L=2048, d=64, 1 thread;
// fused forward GFLOP/s): q/kv 128/64: 80.0, 256/64: 83.1, 192/128: 85.2,
// 256/128: 86.8. A 128-key tile halves the per-row softmax overhead of a
// 64-key one; 256-row query blocks amortize packing K^T over 43 strips.
// K^T (d x 128) and V (128 x d) stay in L2 for d <= 128.
void kl_attn_default_tiles(const kl_attn_params *p, kl_attn_tiles *out) {
    (void)p;
    out->q_block = 256;
    out->kv_block = 128;
}

static _Atomic int kl_tile_q, kl_tile_kv;

void kl_attn_set_tiles(const kl_attn_tiles *t) {
    atomic_store(&kl_tile_q, t ? t->q_block : 0);
    atomic_store(&kl_tile_kv, t ? t->kv_block : 0);
}

void kl_attn_tiles_for(const kl_attn_params *p, int *q_block, int *kv_block) {
    kl_attn_tiles t;
    kl_attn_default_tiles(p, &t);
    int q = atomic_load(&kl_tile_q), kv = atomic_load(&kl_tile_kv);
    *q_block = q > 0 ? q : t.q_block;
    *kv_block = kv > 0 ? (int)kl_round_up((size_t)kv, 16) : t.kv_block;
}

// Cost model.
// FLOPs: FlashAttention's convention (forward 4 B H Lq Lk d, halved when causal,
// backward 2.5x). exps: one per score in the forward, one per score in the
// backward (P recomputed from lse); the same halving when causal.
// Bytes (fp32):
//   min_bytes: q, k, v, o, lse once (forward); plus dout, dq, dk, dv (backward).
//   dram_bytes, fused (estimate): K and V of a head are re-read once per query
//     block unless they fit in the last-level cache; q, o read/written once.
//     The backward re-reads q, dout, dq once per key block under the same rule.
//   Every output line is also read once before it is written (write-allocate:
//     plain stores to a line not in cache fetch it first), so dram_bytes adds
//     the output bytes once more: o, lse (forward); dq, dk, dv (backward).
//   dram_bytes, unfused (estimate): the above plus the materialized (Lq, Lk)
//     matrices. When one does not fit in the last-level cache, per head, in
//     passes over it (each a read, or a write-back): forward 7 = the first
//     sgemm's beta = 0 pass (OpenBLAS zeroes C first: fetch + write-back), its
//     update (read + write-back), softmax (read + write-back), the second sgemm
//     (read); backward 15 = two such sgemms (4 each), the elementwise dS pass
//     (reads S and dP, writes back P and dS: 4) and three sgemms reading P or
//     dS (3). When it fits, the buffer (reused by every head) costs one fetch
//     and one write-back: 2 passes per buffer (S; S and dP in the backward).
//   Checked against callgrind's cache simulation: make validate-traffic
//   (reports/traffic.md).
kl_status kl_attn_cost(const kl_attn_params *p, kl_impl impl, kl_pass pass, kl_cost *out) {
    kl_status st = kl_attn_check(p);
    if (st != KL_OK) return st;
    if (out == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cost output is NULL");
    double bh = (double)p->batch * p->heads, Lq = p->q_len, Lk = p->kv_len, d = p->head_dim;
    double frac = p->causal ? 0.5 : 1.0;
    double fwd = 4.0 * bh * Lq * Lk * d * frac;
    double qo = bh * Lq * d * 4.0, kv = bh * Lk * d * 4.0, lse = bh * Lq * 4.0;
    double llc = (double)kl_cache_bytes(3);
    if (llc <= 0) llc = 8.0 * 1024 * 1024;
    int qb, kb;
    kl_attn_tiles_for(p, &qb, &kb);
    double nqb = ceil(Lq / qb), nkb = ceil(Lk / kb);
    int bwd = pass == KL_PASS_BACKWARD;
    out->flops = bwd ? 2.5 * fwd : fwd;
    out->exps = bh * Lq * Lk * frac;
    out->min_bytes = bwd ? 3 * qo + lse + 2 * kv + qo + 2 * kv  // q o dout lse k v | dq dk dv
                         : qo + 2 * kv + qo + lse;              // q k v | o lse
    double outputs = bwd ? qo + 2 * kv : qo + lse;  // write-allocate fetch of every output line
    if (impl == KL_IMPL_FUSED) {
        double per_head_kv = 2.0 * Lk * d * 4.0, per_head_q = 3.0 * Lq * d * 4.0;
        if (!bwd) {
            double rereads = per_head_kv > llc ? (nqb * frac - 1 > 0 ? nqb * frac - 1 : 0) : 0;
            out->dram_bytes = out->min_bytes + bh * rereads * per_head_kv;
        } else {
            // q, dout and dq (read and written) are walked once per key block.
            double rereads = per_head_q > llc ? (nkb * frac - 1 > 0 ? nkb * frac - 1 : 0) : 0;
            out->dram_bytes = out->min_bytes + bh * rereads * (per_head_q + Lq * d * 4.0);
        }
    } else {
        double s = Lq * Lk * 4.0;
        double passes = bwd ? 15.0 : 7.0, buffers = bwd ? 2.0 : 1.0;
        out->dram_bytes = out->min_bytes + (buffers * s > llc ? bh * passes * s : 2.0 * buffers * s);
    }
    out->dram_bytes += outputs;
    return KL_OK;
}
