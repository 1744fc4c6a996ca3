// Linear layer on kl_gemm (the training engine's projections), and the
// layout moves between a projection's (B, T, ...) rows and the (B, H, T, e)
// or (B, D, T) layouts the attention and scan kernels read.
//
//   x: (rows, in); w: (out, in) (PyTorch's layout); b: (out) or NULL; y: (rows, out)
//   forward   y (+)= x w^T + b
//   backward  dx (+)= dy w;  dw += dy^T x;  db += column sums of dy
// Weight gradients always accumulate (the engine zeroes them once per step,
// so micro-batches and tied weights add up with no buffer of their own).
//
// Cost (kl_linear_cost): the GEMMs' 2 rows in out FLOPs per product (two
// products backward, one without dx), plus rows out adds for the bias each
// way; bytes: every operand once (y, dx, dw read too when they accumulate).
#include "../core/internal.h"
#include <limits.h>
#include <string.h>

static kl_status linear_check(long rows, int in, int out, const float *x, const float *w, kl_pool *pool) {
    if (rows < 0 || rows > INT_MAX || in < 1 || out < 1)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: need 0 <= rows <= %d, in >= 1, out >= 1 (got %ld, %d, %d)",
                       INT_MAX, rows, in, out);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: pool is NULL");
    if (!w || (rows > 0 && !x)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: %s is NULL", w ? "x" : "w");
    return KL_OK;
}

kl_status kl_linear_fwd(long rows, int in, int out, const float *x, const float *w, const float *b, float *y,
                        int accumulate, kl_pool *pool) {
    kl_status st = linear_check(rows, in, out, x, w, pool);
    if (st != KL_OK) return st;
    if (rows == 0) return KL_OK;
    if (!y) return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: y is NULL");
    if (kl_overlap_n(y, b, b ? out : 0)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: y overlaps b");
    float beta = accumulate ? 1.0f : 0.0f;
    if (b) {
        // The bias first, so the product accumulates onto it in one pass.
        for (long r = 0; r < rows; r++) {
            float *row = y + r * out;
            if (accumulate) for (int j = 0; j < out; j++) row[j] += b[j];
            else memcpy(row, b, (size_t)out * sizeof(float));
        }
        beta = 1.0f;
    }
    return kl_gemm(KL_NO_TRANS, KL_TRANS, (int)rows, out, in, 1.0f, x, in, w, in, beta, y, out, pool);
}

kl_status kl_linear_bwd(long rows, int in, int out, const float *x, const float *w, const float *dy, float *dx,
                        float *dw, float *db, int accumulate_dx, kl_pool *pool) {
    kl_status st = linear_check(rows, in, out, x, w, pool);
    if (st != KL_OK) return st;
    if (!dw) return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: dw is NULL");
    if (rows == 0) return KL_OK;
    if (!dy) return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: dy is NULL");
    if (dx) {
        st = kl_gemm(KL_NO_TRANS, KL_NO_TRANS, (int)rows, in, out, 1.0f, dy, out, w, in, accumulate_dx ? 1.0f : 0.0f,
                     dx, in, pool);
        if (st != KL_OK) return st;
    }
    st = kl_gemm(KL_TRANS, KL_NO_TRANS, out, in, (int)rows, 1.0f, dy, out, x, in, 1.0f, dw, in, pool);
    if (st != KL_OK) return st;
    if (db) {
        if (kl_overlap_n(db, dy, out)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear: db overlaps dy");
        // Rows in order: the sum does not depend on the thread count.
        for (long r = 0; r < rows; r++) {
            const float *g = dy + r * out;
            for (int j = 0; j < out; j++) db[j] += g[j];
        }
    }
    return KL_OK;
}

kl_status kl_linear_cost(long rows, int in, int out, int with_bias, int with_dx, kl_pass pass, kl_cost *c) {
    if (!c || rows < 0 || in < 1 || out < 1)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "linear cost: need out, rows >= 0, in >= 1, out >= 1");
    double r = (double)rows, io = (double)in * out;
    c->exps = 0;
    if (pass == KL_PASS_FORWARD) {
        c->flops = 2.0 * r * io + (with_bias ? r * out : 0);
        c->min_bytes = 4.0 * (r * in + io + r * out + (with_bias ? out : 0));
    } else {
        c->flops = (with_dx ? 4.0 : 2.0) * r * io + (with_bias ? r * out : 0);
        // dy, x, w read; dw read and written; dx written; db read and written.
        c->min_bytes = 4.0 * (r * out + r * in + (with_dx ? io + r * in : 0) + 2.0 * io + (with_bias ? 2.0 * out : 0));
    }
    c->dram_bytes = c->l3_bytes = c->l2_bytes = c->min_bytes;  // an estimate, as kl_gemm_cost's
    return KL_OK;
}

// ----------------------------------------------------------------- layout ---

typedef struct {
    int B, T, P, H, e, merge;
    const float *x;
    float *y;
} heads_ctx;

// One work item per (p, b, h): T rows of e floats each.
static void heads_worker(void *vctx, int tid, int nthreads) {
    const heads_ctx *c = vctx;
    long items = (long)c->P * c->B * c->H, lo, hi;
    kl_split(items, tid, nthreads, &lo, &hi);
    size_t row = (size_t)c->e * sizeof(float);
    for (long it = lo; it < hi; it++) {
        long p = it / ((long)c->B * c->H), b = it / c->H % c->B, h = it % c->H;
        long packed = it * c->T * c->e;                               // (P, B, H, T, e)
        long strided = ((b * c->T) * c->P + p) * c->H * c->e + h * c->e; // (B, T, P, H, e) at t = 0
        long step = (long)c->P * c->H * c->e;
        for (long t = 0; t < c->T; t++) {
            if (c->merge) memcpy(c->y + strided + t * step, c->x + packed + t * c->e, row);
            else memcpy(c->y + packed + t * c->e, c->x + strided + t * step, row);
        }
    }
}

// e = 1 (Mamba's (B, T, 2, D) <-> (2, B, D, T)): per (p, b) a (T, H) matrix
// with row stride P H transposed to (H, T), or back. Row copies of one float
// would run at a few hundred MB/s; tiles of 16 x 16 keep both sides' cache
// lines in use. Work items are (p, b, block of 16 t), so two threads split
// even a single sequence.
#define KL_TRANSPOSE_TILE 16
static void heads_transpose_worker(void *vctx, int tid, int nthreads) {
    const heads_ctx *c = vctx;
    long tblocks = (c->T + KL_TRANSPOSE_TILE - 1) / KL_TRANSPOSE_TILE;
    long items = (long)c->P * c->B * tblocks, lo, hi;
    kl_split(items, tid, nthreads, &lo, &hi);
    long H = c->H, stride = (long)c->P * H;
    for (long it = lo; it < hi; it++) {
        long pb = it / tblocks, t0 = it % tblocks * KL_TRANSPOSE_TILE;
        long p = pb / c->B, b = pb % c->B;
        long t1 = t0 + KL_TRANSPOSE_TILE < c->T ? t0 + KL_TRANSPOSE_TILE : c->T;
        const float *src = c->x;
        float *dst = c->y;
        long strided0 = (b * c->T) * stride + p * H;  // (B, T, P, H) at (b, 0, p, 0)
        long packed0 = pb * c->T * H;                  // (P, B, H, T) at (p, b, 0, 0)
        for (long h0 = 0; h0 < H; h0 += KL_TRANSPOSE_TILE) {
            long h1 = h0 + KL_TRANSPOSE_TILE < H ? h0 + KL_TRANSPOSE_TILE : H;
            if (c->merge) {
                for (long t = t0; t < t1; t++)
                    for (long h = h0; h < h1; h++) dst[strided0 + t * stride + h] = src[packed0 + h * c->T + t];
            } else {
                for (long h = h0; h < h1; h++)
                    for (long t = t0; t < t1; t++) dst[packed0 + h * c->T + t] = src[strided0 + t * stride + h];
            }
        }
    }
}

static kl_status heads_run(int merge, int B, int T, int P, int H, int e, const float *x, float *y, kl_pool *pool) {
    if (B < 1 || T < 1 || P < 1 || H < 1 || e < 1)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "heads_%s: sizes must be >= 1 (B=%d T=%d P=%d H=%d e=%d)",
                       merge ? "merge" : "split", B, T, P, H, e);
    if (!x || !y || !pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "heads_%s: a pointer is NULL", merge ? "merge" : "split");
    long n = (long)B * T * P * H * e;
    if (kl_overlap_n(x, y, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "heads_%s: y overlaps x", merge ? "merge" : "split");
    heads_ctx c = {B, T, P, H, e, merge, x, y};
    kl_pool_run(pool, e == 1 ? heads_transpose_worker : heads_worker, &c);
    return KL_OK;
}

kl_status kl_heads_split(int B, int T, int P, int H, int e, const float *x, float *y, kl_pool *pool) {
    return heads_run(0, B, T, P, H, e, x, y, pool);
}

kl_status kl_heads_merge(int B, int T, int P, int H, int e, const float *x, float *y, kl_pool *pool) {
    return heads_run(1, B, T, P, H, e, x, y, pool);
}

// Cost of a split or merge of n floats: no FLOPs; each float read once and
// written once (8 n bytes): the floor. Strided reads (the tiled transpose of
// e = 1, short memcpy rows otherwise) keep the moves below it in practice.
kl_status kl_permute_cost(long n, kl_cost *c) {
    if (!c || n < 0) return kl_fail(KL_ERR_INVALID_ARGUMENT, "permute cost: need out and n >= 0");
    c->flops = c->exps = 0;
    c->min_bytes = c->dram_bytes = c->l3_bytes = c->l2_bytes = 8.0 * (double)n;
    return KL_OK;
}

// ------------------------------------------------------------------- RoPE ---
// Rotary positions, GPT-NeoX's form (rotate_half): the first `rot` of each
// head's d dimensions are rotated in pairs (i, i + rot/2) by the angle
// pos * base^(-2i/rot). The table holds (cos, sin) per (t, i), computed once
// per length (positions are data); the backward is the inverse rotation.

kl_status kl_rope_table(int T, int rot, float base, long pos0, float *table) {
    if (T < 1 || rot < 2 || rot % 2 || !(base > 1.0f) || pos0 < 0 || !table)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "rope_table: need T >= 1, even rot >= 2, base > 1, pos0 >= 0, a table");
    int half = rot / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double angle = (double)(pos0 + t) * pow((double)base, -2.0 * i / rot);
            table[((long)t * half + i) * 2] = (float)cos(angle);
            table[((long)t * half + i) * 2 + 1] = (float)sin(angle);
        }
    return KL_OK;
}

typedef struct {
    long B;
    int T, V, d, rot, inverse;
    long sb, st, sv;   // strides of (B, T, V, d), d contiguous
    const float *table;
    float *x;
} rope_ctx;

// Threads split the (b, t) positions; each rotates its V vectors.
static void rope_worker(void *vctx, int tid, int nthreads) {
    const rope_ctx *c = vctx;
    long lo, hi;
    kl_split(c->B * c->T, tid, nthreads, &lo, &hi);
    int half = c->rot / 2;
    float sign = c->inverse ? -1.0f : 1.0f;
    for (long bt = lo; bt < hi; bt++) {
        long b = bt / c->T;
        int t = (int)(bt % c->T);
        const float *cs = c->table + (long)t * half * 2;
        for (int j = 0; j < c->V; j++) {
            float *v = c->x + b * c->sb + t * c->st + j * c->sv;
            for (int i = 0; i < half; i++) {
                float co = cs[2 * i], si = sign * cs[2 * i + 1], a = v[i], bb = v[i + half];
                v[i] = a * co - bb * si;
                v[i + half] = bb * co + a * si;
            }
        }
    }
}

kl_status kl_rope_strided(long B, int T, int V, long sb, long st, long sv, int d, int rot, const float *table,
                          int inverse, float *x, kl_pool *pool) {
    if (B < 0 || T < 1 || V < 1 || d < 1 || rot < 2 || rot % 2 || rot > d)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "rope: need B >= 0, T >= 1, V >= 1, even 2 <= rot <= d (got B=%ld T=%d V=%d d=%d rot=%d)",
                       B, T, V, d, rot);
    if (sb < 0 || st < 0 || sv < 0 || (V > 1 && sv < d) || (T > 1 && st < d) || (B > 1 && sb < d))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "rope: strides must be >= d = %d where their axis has more than one entry (got %ld, %ld, %ld)",
                       d, sb, st, sv);
    if (!pool || !table || (B > 0 && !x)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "rope: a pointer is NULL");
    rope_ctx c = {B, T, V, d, rot, inverse != 0, sb, st, sv, table, x};
    if (B > 0) kl_pool_run(pool, rope_worker, &c);
    return KL_OK;
}

kl_status kl_rope(long rows, int T, int d, int rot, const float *table, int inverse, float *x, kl_pool *pool) {
    if (rows < 0 || T < 1 || d < 1 || rot < 2 || rot % 2 || rot > d)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "rope: need rows >= 0, T >= 1, even 2 <= rot <= d (got rows=%ld T=%d d=%d rot=%d)",
                       rows, T, d, rot);
    return kl_rope_strided(rows, T, 1, (long)T * d, d, d, d, rot, table, inverse, x, pool);
}

// Cost of kl_rope: 6 FLOPs per rotated pair (4 multiplies, 2 adds), i.e. 3
// per rotated float; the rotated floats read and written in place (8 bytes
// each) and the table once (its rot floats per position). Floats outside the
// first rot of each row are not touched.
kl_status kl_rope_cost(long rows, int T, int rot, kl_cost *c) {
    if (!c || rows < 0 || T < 1 || rot < 2) return kl_fail(KL_ERR_INVALID_ARGUMENT, "rope cost: need out, rows >= 0, T >= 1, rot >= 2");
    double rotated = (double)rows * T * rot;
    c->flops = 3.0 * rotated;
    c->exps = 0;
    c->min_bytes = c->dram_bytes = c->l3_bytes = c->l2_bytes = 8.0 * rotated + 4.0 * (double)T * rot;
    return KL_OK;
}
