// Fused attention in the FlashAttention-2 loop order.
//
// Forward: each work item is one (batch, head, query block). Key/value tiles
// stream through; a strip of KL_MR query rows computes its scores S (KL_MR x
// kv_block) with the gemm microkernel against the packed K^T tile, applies the
// scale, ALiBi and masks, updates the running max m and sum l (online softmax),
// and accumulates O = diag(alpha) O + P V in place. O is divided by l once at
// the end and lse = m + log(l) is kept for the backward. Workspace per thread:
// the packed K^T and V tiles, one score strip, m and l of the block: O(tile).
//
// Packing (BLIS's B panels): both B operands are packed once per (query
// block, key tile) as panels of nr columns (the ISA's register-tile width),
// each panel a contiguous (k, nr) block, so every microkernel call reads its
// B as one sequential stream, not k rows a tile-row apart; the packing is
// amortized over the br / KL_MR strips of the block.
//
// Backward: each work item is one (batch, head), so dq, dk and dv of that head
// are written by one thread only (no races, no atomics). When the heads do not
// fill the threads evenly (bwd_splits) a head is split S ways by key tile
// (tiles s, s + S, ..., so causal splits get equal work); split 0 accumulates into dq, split s > 0
// into its own (Lq, d) dQ partial, and a second pass sums the partials into dq
// by rows. Those partials, (S - 1) B H Lq d floats, are the only workspace
// beyond O(tile). Key tiles are the
// outer loop (dK, dV accumulate in a tile buffer); for each query block the
// probabilities are recomputed from lse, and
//   dV += P^T dO,  dP = dO V^T,  dS = scale P * (dP - D),  dK += dS^T Q,  dQ += dS K
// with D = rowsum(dO * O) recomputed per block (cheaper than an O(L) buffer
// walk and it keeps the workspace O(tile)). Five gemms per tile against the
// forward's two: the 2.5x FLOP convention.
//
// Layouts: q, k, v, o (and their gradients) are read and written at the
// call's row strides (kl_attn_layout), so a fused projection's output feeds
// the kernel in place. Strided rows are packed per block (rows_strided); the
// arithmetic is the packed call's, so results are bit for bit the same.
// accumulate = 1 adds dk, dv when a key tile is stored and starts dq from what
// the caller had; the softmax scale rides on dS so no pass rescales dq or dk.
#include "attention_common.h"
#include <string.h>

// ----------------------------------------------------------------- forward

typedef struct {
    kl_attn_geom g;
    const kl_ops *ops;
    const float *q, *k, *v;
    float *o, *lse;
    char *ws;
    size_t ws_per_thread;
    int br, bc, bcp, nqb, items;
    _Atomic int next;
} fwd_ctx;

typedef struct { float *kt, *vp, *s, *m, *l, *alpha, *qb, *ob; } fwd_scratch;

// Rows of a layout's tensors can be a projection's width apart (3 H d floats
// for q, k, v in a fused projection): rows at such a stride map to a few L1
// sets, so a block of them does not stay in L1 across the key tiles. Such a
// call copies the query block in and keeps the output block here, contiguous;
// a packed call reads and writes in place (qb, ob sized 0).
static int rows_strided(const kl_attn_strides *s, int d) { return s->row != d; }

// Panels are sized for the widest register tile (KL_NR_MAX), so the
// workspace does not depend on the ISA in use.
static size_t fwd_scratch_layout(int d, int br, int bcp, int pack_q, int pack_o, char *base, fwd_scratch *out) {
    size_t sizes[8] = {
        (size_t)d * kl_round_up((size_t)bcp, KL_NR_MAX) * sizeof(float),  // kt: (bc / nr, d, nr)  K tile^T in panels
        kl_round_up((size_t)d, KL_NR_MAX) * bcp * sizeof(float),           // vp: (d / nr, bc, nr)  V tile in panels
        (size_t)KL_MR * bcp * sizeof(float),   // s: (MR, bcp)  scores, then P, of one strip
        (size_t)br * sizeof(float),            // m: (br)       running row max
        (size_t)br * sizeof(float),            // l: (br)       running row sum
        (size_t)KL_MR * sizeof(float),         // alpha: (MR)   rescale factors of a strip
        pack_q ? (size_t)br * d * sizeof(float) : 0,  // qb: (br, d)  query block (strided q only)
        pack_o ? (size_t)br * d * sizeof(float) : 0,  // ob: (br, d)  output block (strided o only)
    };
    size_t off = 0;
    float **slots[8] = {&out->kt, &out->vp, &out->s, &out->m, &out->l, &out->alpha, &out->qb, &out->ob};
    for (int i = 0; i < 8; i++) {
        if (base) *slots[i] = (float *)(base + off);
        off += kl_round_up(sizes[i], 64);
    }
    return off;
}

static void fwd_worker(void *vctx, int tid, int nthreads) {
    fwd_ctx *x = vctx;
    const kl_attn_geom *g = &x->g;
    const kl_ops *ops = x->ops;
    const int d = g->d, br = x->br, bc = x->bc, bcp = x->bcp;
    fwd_scratch w;
    const int pack_q = rows_strided(&g->sq, d), pack_o = rows_strided(&g->so, d);
    fwd_scratch_layout(d, br, bcp, pack_q, pack_o, x->ws + (size_t)tid * x->ws_per_thread, &w);
    int item;
    while ((item = atomic_fetch_add(&x->next, 1)) < x->items) {
        // Causal blocks at the end of the sequence see the most keys: start them first.
        int bh = item / x->nqb, qb = x->nqb - 1 - item % x->nqb;
        int h = bh % g->H, q0 = qb * br, nr = kl_min(br, g->Lq - q0);
        float slope = kl_attn_slope(g, h), slope2 = slope * KL_LOG2E, c2 = g->scale * KL_LOG2E;
        // Rows of q, k, v, o are ldq, ldk, ldv, ldo floats apart (the call's layout).
        const long ldk = g->sk.row, ldv = g->sv.row, ldout = g->so.row;
        const float *Qsrc = x->q + kl_attn_head(&g->sq, bh, g->H) + q0 * g->sq.row;
        const float *K = x->k + kl_attn_head(&g->sk, bh, g->H);
        const float *V = x->v + kl_attn_head(&g->sv, bh, g->H);
        float *Oout = x->o + kl_attn_head(&g->so, bh, g->H) + q0 * ldout;
        // Q and O as the strips read them: in place, or packed (see rows_strided).
        const float *Q = pack_q ? w.qb : Qsrc;
        float *O = pack_o ? w.ob : Oout;
        const long ldq = pack_q ? d : g->sq.row, ldo = pack_o ? d : ldout;
        if (pack_q)
            for (int r = 0; r < nr; r++) memcpy(w.qb + (long)r * d, Qsrc + r * g->sq.row, (size_t)d * sizeof(float));
        for (int r = 0; r < nr; r++) memset(O + r * ldo, 0, (size_t)d * sizeof(float));
        for (int r = 0; r < nr; r++) { w.m[r] = -INFINITY; w.l[r] = 0.0f; }
        // Keys any row of the block can see (ranges grow monotonically with i).
        int jlo, jhi, lo2, hi2;
        kl_attn_range(g, h, q0, &jlo, &jhi);
        kl_attn_range(g, h, q0 + nr - 1, &lo2, &hi2);
        if (hi2 > jhi) jhi = hi2;
        if (jhi <= jlo) jhi = jlo = 0;
        const int pw = ops->nr;  // panel width
        for (int j0 = jlo / bc * bc; j0 < jhi; j0 += bc) {
            int nc = kl_min(bc, g->Lk - j0);
            // kt panel p: (d, pw) = K[j0 + p pw .., :]^T;  vp panel q: (nc, pw) = V[j0 .., q pw ..]
            for (int c0 = 0; c0 < nc; c0 += pw)
                ops->transpose(K + (j0 + c0) * ldk, kl_min(pw, nc - c0), d, ldk, w.kt + (long)c0 * d, pw);
            for (int c0 = 0; c0 < d; c0 += pw) {
                int w0 = kl_min(pw, d - c0);
                float *dst = w.vp + (long)c0 * bcp;
                for (int kk = 0; kk < nc; kk++)
                    memcpy(dst + (long)kk * pw, V + (j0 + kk) * ldv + c0, (size_t)w0 * sizeof(float));
            }
            for (int r0 = 0; r0 < nr; r0 += KL_MR) {
                int mr = kl_min(KL_MR, nr - r0);
                int lo[KL_MR], hi[KL_MR], any = 0, kmin = nc, kmax = 0;
                for (int r = 0; r < mr; r++) {
                    kl_attn_tile_range(g, h, q0 + r0 + r, j0, nc, &lo[r], &hi[r]);
                    if (hi[r] > lo[r]) {
                        any = 1;
                        kmin = kl_min(kmin, lo[r]);
                        kmax = kl_max(kmax, hi[r]);
                    }
                }
                if (!any) continue;  // fully masked strip x tile: skipped
                // s: (mr, kmin:kmax) = Q_strip (mr, d) K_tile^T (d, kmin:kmax), one call per
                // panel: panels no row of the strip sees (the masked part of a diagonal
                // tile) are not computed, and the softmax below never reads them.
                for (int c0 = kmin / pw * pw; c0 < kmax; c0 += pw)
                    ops->gemm(mr, kl_min(pw, nc - c0), d, Q + r0 * ldq, ldq, 1, w.kt + (long)c0 * d, pw,
                              w.s + c0, bcp, NULL, 0);
                for (int r = 0; r < mr; r++) {
                    float *s = w.s + (long)r * bcp;
                    float *m = &w.m[r0 + r], *l = &w.l[r0 + r];
                    // Only P[kmin:kmax) is read (by the P V product below).
                    if (hi[r] <= lo[r]) {
                        memset(s + kmin, 0, (size_t)(kmax - kmin) * sizeof(float));
                        w.alpha[r] = 1.0f;
                        continue;
                    }
                    // Base 2 (see kl_ops): m and l are kept in log2 units.
                    int n = hi[r] - lo[r];
                    float mx, sum, mnew;
                    if (slope == 0.0f) {
                        mx = ops->max(s + lo[r], n) * c2;  // c2 > 0, so the max commutes
                        mnew = mx > *m ? mx : *m;
                        sum = ops->exp2_sum(s + lo[r], n, c2, mnew);
                    } else {
                        float dist0 = (float)(q0 + r0 + r + g->off - j0 - lo[r]);
                        mx = ops->scale_bias_max(s + lo[r], n, c2, slope2, dist0);
                        mnew = mx > *m ? mx : *m;
                        sum = ops->exp2_sum(s + lo[r], n, 1.0f, mnew);
                    }
                    if (lo[r] > kmin) memset(s + kmin, 0, (size_t)(lo[r] - kmin) * sizeof(float));
                    if (hi[r] < kmax) memset(s + hi[r], 0, (size_t)(kmax - hi[r]) * sizeof(float));
                    float alpha = exp2f(*m - mnew);  // 0 when *m = -inf
                    *l = alpha * *l + sum;
                    *m = mnew;
                    w.alpha[r] = alpha;
                }
                // O_strip (mr, d) = diag(alpha) O_strip + P (mr, kmin:kmax) V (kmin:kmax, d), per panel
                for (int c0 = 0; c0 < d; c0 += pw)
                    ops->gemm(mr, kl_min(pw, d - c0), kmax - kmin, w.s + kmin, bcp, 1,
                              w.vp + (long)c0 * bcp + (long)kmin * pw, pw, O + r0 * ldo + c0, ldo, w.alpha, 1);
            }
        }
        float *LSE = x->lse + (long)bh * g->Lq + q0;
        for (int r = 0; r < nr; r++) {
            if (w.l[r] > 0.0f) {
                ops->scale(O + r * ldo, d, 1.0f / w.l[r]);
                LSE[r] = (w.m[r] + log2f(w.l[r])) * KL_LN2;
            } else {
                // No visible key: o = 0 and lse = -inf by convention; a NaN sum (NaN input) stays NaN.
                LSE[r] = isnan(w.l[r]) ? w.l[r] : -INFINITY;
            }
        }
        if (pack_o)
            for (int r = 0; r < nr; r++) memcpy(Oout + r * ldout, w.ob + (long)r * d, (size_t)d * sizeof(float));
    }
    (void)nthreads;
}

size_t kl_attn_fused_fwd_workspace(const kl_attn_params *p, int threads) {
    int br, bc;
    kl_attn_tiles_for(p, &br, &bc);
    kl_attn_geom g;
    kl_attn_geom_init(p, &g);
    return (size_t)threads * fwd_scratch_layout(p->head_dim, br, (int)kl_round_up((size_t)bc, 16), rows_strided(&g.sq, g.d),
                                                rows_strided(&g.so, g.d), NULL, &(fwd_scratch){0});
}

kl_status kl_attn_fused_fwd(const kl_attn_params *p, const float *q, const float *k, const float *v,
                            float *o, float *lse, void *ws, size_t ws_bytes, kl_pool *pool) {
    fwd_ctx x;
    kl_attn_geom_init(p, &x.g);
    x.ops = kl_ops_active();
    kl_attn_tiles_for(p, &x.br, &x.bc);
    x.bcp = (int)kl_round_up((size_t)x.bc, 16);
    int T = kl_pool_threads(pool);
    size_t need = kl_attn_fused_fwd_workspace(p, T);
    kl_status st = kl_check_workspace(ws, ws_bytes, need);
    if (st != KL_OK) return st;
    x.q = q; x.k = k; x.v = v; x.o = o; x.lse = lse;
    x.ws = ws;
    x.ws_per_thread = need / (size_t)T;
    x.nqb = (x.g.Lq + x.br - 1) / x.br;
    x.items = x.g.B * x.g.H * x.nqb;
    atomic_init(&x.next, 0);
    kl_pool_run(pool, fwd_worker, &x);
    return KL_OK;
}

// ---------------------------------------------------------------- backward

typedef struct {
    kl_attn_geom g;
    const kl_ops *ops;
    const float *q, *k, *v, *o, *lse, *dout;
    float *dq, *dk, *dv;
    char *ws;
    size_t ws_per_thread;
    float *dq_part;        // (B H (S - 1), Lq, d) dQ partials of splits s > 0, or NULL
    int pack;              // strided q, o or k rows: blocks packed per pair (bwd_scratch_layout)
    int br, bc, bcp, items;
    int splits;            // S: key-tile splits per head
    _Atomic int next;
} bwd_ctx;

// Key-tile splits per head: S = T / gcd(B H, T), so that B H S items fill
// every thread equally (1 head on 2 threads: 2; 3 heads on 2 threads: 2, not
// 2 rounds with one thread idle in the second). Not needed when the heads
// divide evenly or are many (>= 4 T: at most one round in four idles).
static int bwd_splits(const kl_attn_params *p, int threads, int kv_block) {
    long bh = (long)p->batch * p->heads;
    int tiles = (p->kv_len + kv_block - 1) / kv_block;
    if (bh % threads == 0 || bh >= 4L * threads || tiles < 2) return 1;
    long a = bh, b = threads;
    while (b) { long t = a % b; a = b; b = t; }  // a = gcd(B H, T)
    return kl_min(threads / (int)a, tiles);
}

typedef struct { float *kt, *vt, *p, *ds, *dk, *dv, *dd, *qb, *dob, *dqb, *kc; } bwd_scratch;

// pack: the call's q, o or k rows are strided (rows_strided), so each (key
// tile, query block) pair copies its q, dout and dq blocks and each key tile
// its K rows here (the forward's reason; dq is copied back after the pair).
static size_t bwd_scratch_layout(int d, int br, int bcp, int pack, char *base, bwd_scratch *out) {
    size_t blk = pack ? (size_t)br * d * sizeof(float) : 0;
    size_t sizes[11] = {
        (size_t)d * bcp * sizeof(float),    // kt: (d, bcp)   K tile transposed
        (size_t)d * bcp * sizeof(float),    // vt: (d, bcp)   V tile transposed
        (size_t)br * bcp * sizeof(float),   // p: (br, bcp)   probabilities of a query block
        (size_t)br * bcp * sizeof(float),   // ds: (br, bcp)  dP, then dS
        (size_t)bcp * d * sizeof(float),    // dk: (bc, d)    dK tile accumulator
        (size_t)bcp * d * sizeof(float),    // dv: (bc, d)    dV tile accumulator
        (size_t)br * sizeof(float),         // dd: (br)       D = rowsum(dO * O)
        blk, blk, blk,                      // qb, dob, dqb: (br, d) q, dout and dq blocks (strided only)
        pack ? (size_t)bcp * d * sizeof(float) : 0,  // kc: (bc, d) K tile rows (strided only)
    };
    float **slots[11] = {&out->kt, &out->vt, &out->p, &out->ds, &out->dk, &out->dv, &out->dd,
                         &out->qb, &out->dob, &out->dqb, &out->kc};
    size_t off = 0;
    for (int i = 0; i < 11; i++) {
        if (base) *slots[i] = (float *)(base + off);
        off += kl_round_up(sizes[i], 64);
    }
    return off;
}

static void bwd_worker(void *vctx, int tid, int nthreads) {
    bwd_ctx *x = vctx;
    const kl_attn_geom *g = &x->g;
    const kl_ops *ops = x->ops;
    const int d = g->d, br = x->br, bc = x->bc, bcp = x->bcp;
    bwd_scratch w;
    const int pack = x->pack;
    bwd_scratch_layout(d, br, bcp, pack, x->ws + (size_t)tid * x->ws_per_thread, &w);
    int item;
    const int S = x->splits;
    while ((item = atomic_fetch_add(&x->next, 1)) < x->items) {
        int bh = item / S, split = item % S;
        int h = bh % g->H;
        float slope2 = kl_attn_slope(g, h) * KL_LOG2E, c2 = g->scale * KL_LOG2E;
        // The layout's row strides (dq, dk, dv, dout: those of q, k, v, o); split partials are packed.
        const long ldq = g->sq.row, ldk = g->sk.row, ldv = g->sv.row, ldo = g->so.row;
        const long ldp = split == 0 ? ldq : d;
        const float *Q = x->q + kl_attn_head(&g->sq, bh, g->H), *O = x->o + kl_attn_head(&g->so, bh, g->H);
        const float *dO = x->dout + kl_attn_head(&g->so, bh, g->H), *LSE = x->lse + (long)bh * g->Lq;
        const float *K = x->k + kl_attn_head(&g->sk, bh, g->H), *V = x->v + kl_attn_head(&g->sv, bh, g->H);
        float *dQ = split == 0 ? x->dq + kl_attn_head(&g->sq, bh, g->H)
                               : x->dq_part + ((long)bh * (S - 1) + split - 1) * g->Lq * d;
        float *dK = x->dk + kl_attn_head(&g->sk, bh, g->H), *dV = x->dv + kl_attn_head(&g->sv, bh, g->H);
        if (split > 0 || !g->accumulate)
            for (int i = 0; i < g->Lq; i++) memset(dQ + i * ldp, 0, (size_t)d * sizeof(float));
        const int one_block = g->Lq <= br;
        int head_packed = 0;
        for (int j0 = split * bc; j0 < g->Lk; j0 += S * bc) {
            int nc = kl_min(bc, g->Lk - j0);
            memset(w.dk, 0, (size_t)nc * d * sizeof(float));
            memset(w.dv, 0, (size_t)nc * d * sizeof(float));
            int packed = 0;
            for (int q0 = 0; q0 < g->Lq; q0 += br) {
                int nr = kl_min(br, g->Lq - q0);
                // Skip query blocks that see none of this key tile (ranges are monotone in i).
                int lo1, hi1, lo2, hi2;
                kl_attn_range(g, h, q0, &lo1, &hi1);
                kl_attn_range(g, h, q0 + nr - 1, &lo2, &hi2);
                if (kl_max(hi1, hi2) <= j0 || kl_min(lo1, lo2) >= j0 + nc) continue;
                if (!packed) {
                    ops->transpose(K + j0 * ldk, nc, d, ldk, w.kt, bcp);  // kt: (d, bcp) = K tile^T
                    ops->transpose(V + j0 * ldv, nc, d, ldv, w.vt, bcp);
                    if (pack)
                        for (int c = 0; c < nc; c++) memcpy(w.kc + (long)c * d, K + (j0 + c) * ldk, (size_t)d * sizeof(float));
                    packed = 1;
                }
                // This pair's operands: in place, or packed blocks (lda d).
                const float *Kt = pack ? w.kc : K + j0 * ldk, *Qb = Q + q0 * ldq, *dOb = dO + q0 * ldo;
                float *dQb = dQ + q0 * ldp;
                long ldkt = pack ? d : ldk, ldqb = ldq, ldob = ldo, lddq = ldp;
                if (pack) {
                    // One query block per head (Lq <= br, training's usual case): packed once per head and
                    // dq written back once, not once per key tile.
                    if (!(one_block && head_packed))
                        for (int r = 0; r < nr; r++) {
                            memcpy(w.qb + (long)r * d, Qb + r * ldq, (size_t)d * sizeof(float));
                            memcpy(w.dob + (long)r * d, dOb + r * ldo, (size_t)d * sizeof(float));
                            memcpy(w.dqb + (long)r * d, dQb + r * ldp, (size_t)d * sizeof(float));
                        }
                    head_packed = 1;
                    Qb = w.qb; dOb = w.dob; dQb = w.dqb;
                    ldqb = ldob = lddq = d;
                }
                int active = 0;  // rows with visible keys in this tile
                for (int r0 = 0; r0 < nr; r0 += KL_MR) {
                    int mr = kl_min(KL_MR, nr - r0);
                    int lo[KL_MR], hi[KL_MR], any = 0;
                    for (int r = 0; r < mr; r++) {
                        kl_attn_tile_range(g, h, q0 + r0 + r, j0, nc, &lo[r], &hi[r]);
                        any |= hi[r] > lo[r];
                    }
                    float *P = w.p + (long)r0 * bcp, *dS = w.ds + (long)r0 * bcp;
                    if (!any) {
                        for (int r = 0; r < mr; r++) {
                            memset(P + (long)r * bcp, 0, (size_t)nc * sizeof(float));
                            memset(dS + (long)r * bcp, 0, (size_t)nc * sizeof(float));
                        }
                        continue;
                    }
                    active = 1;
                    // P = exp(scale * Q K^T + bias - lse), masked
                    kl_gemm_tiled(ops, mr, nc, d, Qb + r0 * ldqb, ldqb, 1, w.kt, bcp, P, bcp, NULL, 0);
                    // dP = dO V^T
                    kl_gemm_tiled(ops, mr, nc, d, dOb + r0 * ldob, ldob, 1, w.vt, bcp, dS, bcp, NULL, 0);
                    for (int r = 0; r < mr; r++) {
                        int i = q0 + r0 + r;
                        float *pr = P + (long)r * bcp, *dsr = dS + (long)r * bcp;
                        if (hi[r] <= lo[r]) {
                            memset(pr, 0, (size_t)nc * sizeof(float));
                            memset(dsr, 0, (size_t)nc * sizeof(float));
                            continue;
                        }
                        float dist0 = (float)(i + g->off - j0 - lo[r]);
                        ops->exp2_scaled(pr + lo[r], hi[r] - lo[r], c2, slope2, dist0, LSE[i] * KL_LOG2E);
                        if (lo[r] > 0) memset(pr, 0, (size_t)lo[r] * sizeof(float));
                        if (hi[r] < nc) memset(pr + hi[r], 0, (size_t)(nc - hi[r]) * sizeof(float));
                        float D = ops->dot(dO + i * ldo, O + i * ldo, d);
                        ops->dsoftmax(dsr, pr, nc, D);  // zero where P is zero
                        // dS carries the softmax scale, so dQ and dK need no pass of their own
                        // (which would also scale what an accumulating call found there).
                        ops->scale(dsr + lo[r], hi[r] - lo[r], g->scale);
                    }
                    // dQ_strip += dS (mr, nc) K_tile (nc, d)
                    kl_gemm_tiled(ops, mr, d, nc, dS, bcp, 1, Kt, ldkt, dQb + r0 * lddq, lddq, NULL, 1);
                }
                if (pack && !one_block)
                    for (int r = 0; r < nr; r++) memcpy(dQ + (q0 + r) * ldp, w.dqb + (long)r * d, (size_t)d * sizeof(float));
                if (!active) continue;
                // dV (nc, d) += P^T (nc, nr) dO (nr, d);  dK (nc, d) += dS^T (nc, nr) Q (nr, d)
                kl_gemm_tiled(ops, nc, d, nr, w.p, 1, bcp, dOb, ldob, w.dv, d, NULL, 1);
                kl_gemm_tiled(ops, nc, d, nr, w.ds, 1, bcp, Qb, ldqb, w.dk, d, NULL, 1);
            }
            for (int c = 0; c < nc; c++) {
                float *dv = dV + (j0 + c) * ldv, *dk = dK + (j0 + c) * ldk;
                const float *tv = w.dv + (long)c * d, *tk = w.dk + (long)c * d;
                if (g->accumulate) {
                    for (int e = 0; e < d; e++) { dv[e] += tv[e]; dk[e] += tk[e]; }
                } else {
                    memcpy(dv, tv, (size_t)d * sizeof(float));
                    memcpy(dk, tk, (size_t)d * sizeof(float));
                }
            }
        }
        if (pack && one_block && head_packed)
            for (int r = 0; r < g->Lq; r++) memcpy(dQ + r * ldp, w.dqb + (long)r * d, (size_t)d * sizeof(float));
    }
    (void)nthreads;
}

// dq += the partials of splits 1..S-1, rows split over threads.
static void bwd_reduce_worker(void *vctx, int tid, int nthreads) {
    bwd_ctx *x = vctx;
    const kl_attn_geom *g = &x->g;
    const int S = x->splits, d = g->d;
    long rows = (long)g->B * g->H * g->Lq;
    long lo = rows * tid / nthreads, hi = rows * (tid + 1) / nthreads;
    for (long r = lo; r < hi; r++) {
        long bh = r / g->Lq, i = r % g->Lq;
        float *dst = x->dq + kl_attn_head(&g->sq, (int)bh, g->H) + i * g->sq.row;
        for (int s = 1; s < S; s++) {
            const float *src = x->dq_part + ((bh * (S - 1) + s - 1) * g->Lq + i) * d;
            for (int c = 0; c < d; c++) dst[c] += src[c];
        }
    }
}

static int bwd_pack(const kl_attn_params *p) {
    kl_attn_geom g;
    kl_attn_geom_init(p, &g);
    return rows_strided(&g.sq, g.d) || rows_strided(&g.so, g.d) || rows_strided(&g.sk, g.d);
}

// Per-thread tile scratch, then the dQ partials of split heads.
size_t kl_attn_fused_bwd_workspace(const kl_attn_params *p, int threads) {
    int br, bc;
    kl_attn_tiles_for(p, &br, &bc);
    size_t per_thread = bwd_scratch_layout(p->head_dim, br, (int)kl_round_up((size_t)bc, 16), bwd_pack(p), NULL, &(bwd_scratch){0});
    int S = bwd_splits(p, threads, bc);
    size_t parts = (size_t)(S - 1) * p->batch * p->heads * p->q_len * p->head_dim * sizeof(float);
    return (size_t)threads * per_thread + parts;
}

kl_status kl_attn_fused_bwd(const kl_attn_params *p, const float *q, const float *k, const float *v,
                            const float *o, const float *lse, const float *dout,
                            float *dq, float *dk, float *dv, void *ws, size_t ws_bytes, kl_pool *pool) {
    bwd_ctx x;
    kl_attn_geom_init(p, &x.g);
    x.ops = kl_ops_active();
    kl_attn_tiles_for(p, &x.br, &x.bc);
    x.bcp = (int)kl_round_up((size_t)x.bc, 16);
    int T = kl_pool_threads(pool);
    size_t need = kl_attn_fused_bwd_workspace(p, T);
    kl_status st = kl_check_workspace(ws, ws_bytes, need);
    if (st != KL_OK) return st;
    x.q = q; x.k = k; x.v = v; x.o = o; x.lse = lse; x.dout = dout;
    x.dq = dq; x.dk = dk; x.dv = dv;
    x.ws = ws;
    x.pack = bwd_pack(p);
    x.ws_per_thread = bwd_scratch_layout(x.g.d, x.br, x.bcp, x.pack, NULL, &(bwd_scratch){0});
    x.splits = bwd_splits(p, T, x.bc);
    x.dq_part = x.splits > 1 ? (float *)((char *)ws + (size_t)T * x.ws_per_thread) : NULL;
    x.items = x.g.B * x.g.H * x.splits;
    atomic_init(&x.next, 0);
    kl_pool_run(pool, bwd_worker, &x);
    if (x.splits > 1) kl_pool_run(pool, bwd_reduce_worker, &x);
    return KL_OK;
}
