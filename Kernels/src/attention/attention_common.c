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
    if (p->tiles && (p->tiles->q_block < 0 || p->tiles->q_block > 65536 || p->tiles->kv_block < 0 ||
                     p->tiles->kv_block > 4096))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "tiles must be q_block in 0...65536 and kv_block in 0...4096 (0: default), got %d/%d",
                       p->tiles->q_block, p->tiles->kv_block);
    // Index arithmetic is done in long; a single head must fit int-sized rows.
    if ((long)p->q_len * p->head_dim > (1L << 31) || (long)p->kv_len * p->head_dim > (1L << 31))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "sequence x head_dim exceeds 2^31 elements");
    return kl_attn_check_layout(p);
}

static int strides_zero(const kl_attn_strides *s) { return s->batch == 0 && s->head == 0 && s->row == 0; }

// A layout's strides for one tensor; all zero takes the packed (H L d, L d, d).
static kl_attn_strides strides_or_packed(const kl_attn_strides *s, int H, long L, int d) {
    if (s && !strides_zero(s)) return *s;
    return (kl_attn_strides){(long)H * L * d, L * d, d};
}

// No two elements of one view share memory: with the axes sorted by stride,
// each stride is at least the span of the axes inside it (a sufficient test).
static kl_status check_strides(const char *name, const kl_attn_strides *s, int B, int H, long L, int d) {
    if (strides_zero(s)) return KL_OK;
    if (s->batch < 0 || s->head < 0 || s->row < 0)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "layout.%s: strides must be >= 0 (got batch %ld, head %ld, row %ld)", name,
                       s->batch, s->head, s->row);
    long st[3] = {s->batch, s->head, s->row}, n[3] = {B, H, L};
    int order[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (st[order[j]] < st[order[i]]) { int t = order[i]; order[i] = order[j]; order[j] = t; }
    long span = d;  // the contiguous last axis
    for (int i = 0; i < 3; i++) {
        int a = order[i];
        if (n[a] == 1) continue;
        if (st[a] < span)
            return kl_fail(KL_ERR_INVALID_ARGUMENT,
                           "layout.%s: overlapping strides (batch %ld, head %ld, row %ld for B=%d H=%d L=%ld d=%d): "
                           "each stride must be at least the span of the axes inside it",
                           name, s->batch, s->head, s->row, B, H, L, d);
        if (st[a] > (1L << 40) / (n[a] > 0 ? n[a] : 1))
            return kl_fail(KL_ERR_INVALID_ARGUMENT, "layout.%s: strides exceed 2^40 elements", name);
        span = st[a] * (n[a] - 1) + span;
    }
    return KL_OK;
}

kl_status kl_attn_check_layout(const kl_attn_params *p) {
    if (p->accumulate != 0 && p->accumulate != 1)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "accumulate must be 0 or 1 (got %d)", p->accumulate);
    if (!p->layout) return KL_OK;
    const kl_attn_layout *l = p->layout;
    kl_status st;
    if ((st = check_strides("q", &l->q, p->batch, p->heads, p->q_len, p->head_dim)) != KL_OK) return st;
    if ((st = check_strides("k", &l->k, p->batch, p->heads, p->kv_len, p->head_dim)) != KL_OK) return st;
    if ((st = check_strides("v", &l->v, p->batch, p->heads, p->kv_len, p->head_dim)) != KL_OK) return st;
    return check_strides("o", &l->o, p->batch, p->heads, p->q_len, p->head_dim);
}

// Floats from a view's base to one past its last element.
static long view_span(const kl_attn_strides *s, long L, int B, int H, int d) {
    return (long)(B - 1) * s->batch + (long)(H - 1) * s->head + (L - 1) * s->row + d;
}

int kl_attn_views_overlap(const float *a, const kl_attn_strides *sa, long La, const float *b,
                          const kl_attn_strides *sb, long Lb, int B, int H, int d) {
    long delta = (long)(b - a);  // b's base, in floats from a's
    if (delta >= view_span(sa, La, B, H, d) || -delta >= view_span(sb, Lb, B, H, d)) return 0;
    long R = sa->row;
    long wa = (long)(H - 1) * sa->head + d, wb = (long)(H - 1) * sb->head + d;
    int grid = R > 0 && sb->row == R && sa->batch % R == 0 && sb->batch % R == 0 && wa <= R && wb <= R &&
               (B == 1 || (sa->batch > 0 && sb->batch > 0));
    if (!grid) return 1;
    long c = ((delta % R) + R) % R;  // b's first column within a's rows
    return !(c >= wa && c + wb <= R);
}

int kl_attn_view_overlaps_array(const float *a, const kl_attn_strides *sa, long La, int B, int H, int d,
                                const void *b, size_t bbytes) {
    return kl_overlap(a, (size_t)view_span(sa, La, B, H, d) * sizeof(float), b, bbytes);
}

void kl_attn_geom_init_rows(const kl_attn_params *p, long kv_rows, kl_attn_geom *g) {
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
    const kl_attn_layout *l = p->layout;
    g->sq = strides_or_packed(l ? &l->q : NULL, p->heads, p->q_len, p->head_dim);
    g->sk = strides_or_packed(l ? &l->k : NULL, p->heads, kv_rows, p->head_dim);
    g->sv = strides_or_packed(l ? &l->v : NULL, p->heads, kv_rows, p->head_dim);
    g->so = strides_or_packed(l ? &l->o : NULL, p->heads, p->q_len, p->head_dim);
    g->accumulate = p->accumulate;
}

// The active ISA's blocking (kl_ops.attn_q_block, attn_kv_block): the
// tables in src/isa say how each was measured.
void kl_attn_default_tiles(const kl_attn_params *p, kl_attn_tiles *out) {
    (void)p;
    const kl_ops *ops = kl_ops_active();
    out->q_block = ops->attn_q_block;
    out->kv_block = ops->attn_kv_block;
}

void kl_attn_tiles_for(const kl_attn_params *p, int *q_block, int *kv_block) {
    kl_attn_tiles t;
    kl_attn_default_tiles(p, &t);
    int q = p->tiles ? p->tiles->q_block : 0, kv = p->tiles ? p->tiles->kv_block : 0;
    *q_block = q > 0 ? q : t.q_block;
    *kv_block = kv > 0 ? (int)kl_round_up((size_t)kv, 16) : t.kv_block;
}

// Cost model.
// FLOPs: FlashAttention's convention (forward 4 B H Lq Lk d, halved when causal,
// backward 2.5x). exps: one per score in the forward, one per score in the
// backward (P recomputed from lse); the same halving when causal.
// Bytes (fp32):
//   min_bytes: q, k, v, o, lse once (forward); plus dout, dq, dk, dv (backward).
//   Traffic is one function, attn_traffic(cap), of the capacity of the cache
//   above a boundary: dram_bytes = f(LLC), l3_bytes = f(L2), l2_bytes = f(L1d)
//   (per-core L1 and L2: the threads split the work by heads and query blocks,
//   so one core's cache holds one work item's working set). Every figure
//   starts from min_bytes plus the write-allocate fetch of every output line
//   (plain stores to a line not in cache fetch it first): o, lse (forward);
//   dq, dk, dv (backward). Terms are added when a working set exceeds cap:
//   fused forward (work item: one head's query block; K/V tiles stream past it)
//     head:  K and V of a head (2 Lk d) beside the block's working set (q and o
//            blocks, the K^T tile, a score strip): K and V are re-read once per
//            query block (nqb * frac - 1 extra). Validated at the LLC and L2.
//     block: q and o blocks, the K^T and V tiles: q is re-read and o read and
//            written back once per key tile (nkb * frac - 1 extra). L1 only.
//     tile:  K^T and V tiles and a strip of KL_MR rows: each strip streams the
//            K^T tile and the V tile (the microkernel's B operands) and the K^T
//            tile is fetched and written back per (query block, key tile).
//            L1 only; an estimate (the score strip is taken to stay in L1).
//   fused backward (work item: one head; key tiles outer, query blocks inner)
//     head:  q, o, dout, dq, lse of a head beside the tile workspace (K^T, V^T,
//            P, dS, dK, dV): q, o, dout, lse and dq are re-read and dq written
//            back once per key tile (nkb * frac - 1 extra). Validated at the LLC
//            and L2.
//     tile:  the tile workspace (always larger than L1): per (key tile, query
//            block) each strip streams K^T, V^T and the K tile; P and dS are
//            fetched and written back; the dV and dK gemms stream the dout and
//            q blocks, a line per row of P and dS and their accumulators once per
//            KL_MR keys; K^T and V^T are fetched and written back per key tile.
//            L1 only; a ROUGH estimate (hardware prefetch and partial reuse
//            between strips are not modelled), not validated.
//   unfused: the materialized (Lq, Lk) matrices. When they do not fit in cap,
//     per head, in passes over them (each a read, or a write-back): forward 7 =
//     the first sgemm's beta = 0 pass (OpenBLAS zeroes C first: fetch +
//     write-back), its update (read + write-back), softmax (read + write-back),
//     the second sgemm (read); backward 15 = two such sgemms (4 each), the
//     elementwise dS pass (reads S and dP, writes back P and dS: 4) and three
//     sgemms reading P or dS (3). When they fit, the buffer (reused by every
//     head) costs one fetch and one write-back: 2 passes per buffer (S; S and
//     dP in the backward). Validated at the LLC and L2. At L1 the sgemms' own
//     operand streams are added: GotoBLAS blocking keeps a kc x nr panel of B
//     in L1 and streams the packed A block from L2 once per nr columns,
//     4 m n k / nr bytes per sgemm (2 sgemms forward, 5 backward). A ROUGH
//     estimate: nr = 8 is calibrated on callgrind's D1 misses for OpenBLAS's
//     Haswell kernels (nr = 4, the register tile's width, gave twice the
//     simulated fetches); other BLAS cores block differently.
//   Checked against callgrind's cache simulation: make validate-traffic
//   (reports/traffic.md).
#define KL_BLAS_NR 8.0  // effective columns per A-block stream (see above)

typedef struct {
    double bh, Lq, Lk, d, frac;   // frac: the visible share of the scores (1/2 when causal)
    double qb, kb, bcp;           // tiles, clipped to the sequence; bcp: kb padded to 16
    double nqb, nkb, strips;      // query blocks, key tiles, KL_MR-row strips over Lq
    double base;                  // min_bytes + write-allocate fetch of the outputs
    int bwd, unfused;
} attn_model;

// Bytes across the boundary below a cache of cap bytes; level 1 is the L1d
// (where the sgemm microkernel's streams count).
static double attn_traffic(const attn_model *m, double cap, int level) {
    const double f = 4.0;  // bytes per float
    double bh = m->bh, Lq = m->Lq, Lk = m->Lk, d = m->d, frac = m->frac;
    double qb = m->qb, kb = m->kb, bcp = m->bcp, nqb = m->nqb, nkb = m->nkb;
    double bytes = m->base;
    if (m->unfused) {
        double s = Lq * Lk * f;
        double passes = m->bwd ? 15.0 : 7.0, buffers = m->bwd ? 2.0 : 1.0, gemms = m->bwd ? 5.0 : 2.0;
        bytes += buffers * s > cap ? bh * passes * s : 2.0 * buffers * s;
        if (level == 1) bytes += bh * gemms * Lq * Lk * d * f / KL_BLAS_NR;
        return bytes;
    }
    double kt = d * bcp * f, ktile = kb * d * f;  // K^T tile (workspace), K or V tile
    if (!m->bwd) {
        double head = 2.0 * Lk * d * f;
        double block = 2.0 * qb * d * f + kt + KL_MR * bcp * f;  // q, o blocks, K^T, score strip
        double tile = kt + ktile + KL_MR * (2.0 * d + bcp) * f;  // K^T, V tile, one strip's q, o, s
        if (head + block > cap) bytes += bh * fmax(nqb * frac - 1.0, 0.0) * head;
        if (block + ktile > cap) bytes += bh * fmax(nkb * frac - 1.0, 0.0) * 3.0 * Lq * d * f;
        if (tile > cap)  // V per strip instead of per block; K^T per strip, fetched + written back per tile
            bytes += bh * frac * ((m->strips - nqb) * Lk * d * f + m->strips * nkb * kt + nqb * nkb * 2.0 * kt);
    } else {
        double head = (4.0 * Lq * d + Lq) * f;                            // q, o, dout, dq, lse
        double ws = (4.0 * d * bcp + 2.0 * qb * bcp + qb) * f;            // kt, vt, dk, dv, p, ds, dd
        if (head + ws > cap) bytes += bh * fmax(nkb * frac - 1.0, 0.0) * (5.0 * Lq * d + Lq) * f;
        if (ws > cap) {
            double pairs = bh * frac * nkb * nqb, kstrips = ceil(kb / KL_MR);
            bytes += bh * frac * m->strips * nkb * (2.0 * kt + ktile)      // strips: K^T, V^T, K tile
                     + pairs * 4.0 * qb * bcp * f                          // P, dS fetched + written back
                     + pairs * kstrips * 2.0 * qb * (d * f + 64.0)         // dV, dK gemms: dout, q blocks, P, dS lines
                     + pairs * 4.0 * kb * d * f                            // dV, dK accumulators read + written back
                     + bh * nkb * 4.0 * kt;                                // K^T, V^T fetched + written back
        }
    }
    return bytes;
}

kl_status kl_attn_cost(const kl_attn_params *p, kl_impl impl, kl_pass pass, kl_cost *out) {
    kl_status st = kl_attn_check(p);
    if (st != KL_OK) return st;
    if (out == NULL) return kl_fail(KL_ERR_INVALID_ARGUMENT, "cost output is NULL");
    double bh = (double)p->batch * p->heads, Lq = p->q_len, Lk = p->kv_len, d = p->head_dim;
    double frac = p->causal ? 0.5 : 1.0;
    double fwd = 4.0 * bh * Lq * Lk * d * frac;
    double qo = bh * Lq * d * 4.0, kv = bh * Lk * d * 4.0, lse = bh * Lq * 4.0;
    int qb, kb;
    kl_attn_tiles_for(p, &qb, &kb);
    int bwd = pass == KL_PASS_BACKWARD;
    out->flops = bwd ? 2.5 * fwd : fwd;
    out->exps = bh * Lq * Lk * frac;
    out->min_bytes = bwd ? 3 * qo + lse + 2 * kv + qo + 2 * kv  // q o dout lse k v | dq dk dv
                         : qo + 2 * kv + qo + lse;              // q k v | o lse
    double outputs = bwd ? qo + 2 * kv : qo + lse;  // write-allocate fetch of every output line
    attn_model m = {
        .bh = bh, .Lq = Lq, .Lk = Lk, .d = d, .frac = frac,
        .qb = fmin(qb, Lq), .kb = fmin(kb, Lk), .bcp = (double)kl_round_up((size_t)kb, 16),
        .nqb = ceil(Lq / qb), .nkb = ceil(Lk / kb),
        // KL_MR-row strips: full query blocks, then the last partial one
        .strips = floor(Lq / qb) * ceil((double)qb / KL_MR) + ceil(fmod(Lq, qb) / KL_MR),
        .base = out->min_bytes + outputs, .bwd = bwd, .unfused = impl != KL_IMPL_FUSED,
    };
    // Unknown sizes fall back to common ones (32 KiB, 512 KiB, 8 MiB).
    double l1 = (double)kl_cache_bytes(1), l2 = (double)kl_cache_bytes(2), llc = (double)kl_cache_bytes(3);
    out->dram_bytes = attn_traffic(&m, llc > 0 ? llc : 8.0 * 1024 * 1024, 3);
    out->l3_bytes = attn_traffic(&m, l2 > 0 ? l2 : 512.0 * 1024, 2);
    out->l2_bytes = attn_traffic(&m, l1 > 0 ? l1 : 32.0 * 1024, 1);
    return KL_OK;
}
