// Causal depthwise conv1d with bias, Mamba's short convolution (K = 4 there;
// any K here), over (B, D, L) with zero padding on the left:
//   y[b, c, l] = bias[c] + sum_{k < K} w[c, k] x[b, c, l - K + 1 + k]
// backward:
//   dx[b, c, l] (+)= sum_k w[c, k] dy[b, c, l + K - 1 - k]
//   dw[c, k] (+)= sum_{b, l} dy[b, c, l] x[b, c, l - K + 1 + k];  dbias[c] (+)= sum_{b, l} dy[b, c, l]
// Threads split the channels, so the weight gradients of a channel have one
// writer (all batches of it) and the sums run in a fixed order.
// Cost: 2 K FLOPs per output element forward, 4 K backward; bytes: x and y
// once (forward), x, dy, dx once (backward), the weights besides.
#include "../core/internal.h"
#include <string.h>

typedef struct {
    int B, D, L, K, accumulate;
    const float *x, *w, *bias, *dy;
    float *y, *dx, *dw, *dbias;
} conv_ctx;

// Each row runs k-outer, l-inner (the backward over chunks of KL_CONV_CHUNK
// outputs), so the inner loops are contiguous, branch-free and vectorize;
// every output still sums bias + w[0] x + w[1] x + ... in ascending k, as
// the plain loop does.
// The weight gradients keep KL_CONV_LANES independent partial sums per k
// (float within a chunk, double across chunks and batches, summed in a fixed
// order at the end), so they are not one long chain of dependent adds.
#define KL_CONV_CHUNK 256
#define KL_CONV_LANES 8

static void conv_fwd_worker(void *vctx, int tid, int nthreads) {
    conv_ctx *c = vctx;
    long c0, c1;
    kl_split(c->D, tid, nthreads, &c0, &c1);
    int K = c->K, L = c->L;
    for (int b = 0; b < c->B; b++)
        for (int ch = (int)c0; ch < (int)c1; ch++) {
            const float *x = c->x + ((long)b * c->D + ch) * L, *w = c->w + (long)ch * K;
            float *y = c->y + ((long)b * c->D + ch) * L;
            float bias = c->bias ? c->bias[ch] : 0.0f;
            for (int l = 0; l < L; l++) y[l] = bias;
            for (int k = 0; k < K; k++) {
                int shift = K - 1 - k;  // y[l] += w[k] x[l - shift], for l >= shift
                float wk = w[k];
                for (int l = shift; l < L; l++) y[l] += wk * x[l - shift];
            }
        }
}

// part[j] = sum over i = j (mod 8) of a[i] b[i] (b = NULL: of a[i]), in float:
// eight independent sums, so the blocks of 8 vectorize without reordering any one sum.
static void lane_dot(const float *a, const float *b, int n, float part[KL_CONV_LANES]) {
    for (int j = 0; j < KL_CONV_LANES; j++) part[j] = 0;
    int i = 0;
    if (b) {
        for (; i + KL_CONV_LANES <= n; i += KL_CONV_LANES)
            for (int j = 0; j < KL_CONV_LANES; j++) part[j] += a[i + j] * b[i + j];
        for (; i < n; i++) part[i % KL_CONV_LANES] += a[i] * b[i];
    } else {
        for (; i + KL_CONV_LANES <= n; i += KL_CONV_LANES)
            for (int j = 0; j < KL_CONV_LANES; j++) part[j] += a[i + j];
        for (; i < n; i++) part[i % KL_CONV_LANES] += a[i];
    }
}

static void conv_bwd_worker(void *vctx, int tid, int nthreads) {
    conv_ctx *c = vctx;
    long c0, c1;
    kl_split(c->D, tid, nthreads, &c0, &c1);
    int K = c->K, L = c->L;
    float s[KL_CONV_CHUNK];
    for (int ch = (int)c0; ch < (int)c1; ch++) {
        const float *w = c->w + (long)ch * K;
        float *dw = c->dw + (long)ch * K;
        double dws[64][KL_CONV_LANES], dbs[KL_CONV_LANES];  // K <= 64, checked; sums of all batches in double
        memset(dws, 0, sizeof(double) * KL_CONV_LANES * (size_t)K);
        memset(dbs, 0, sizeof dbs);
        for (int b = 0; b < c->B; b++) {
            const float *x = c->x + ((long)b * c->D + ch) * L, *dy = c->dy + ((long)b * c->D + ch) * L;
            float *dx = c->dx + ((long)b * c->D + ch) * L;
            for (int l0 = 0; l0 < L; l0 += KL_CONV_CHUNK) {
                int n = L - l0 < KL_CONV_CHUNK ? L - l0 : KL_CONV_CHUNK;
                // dx[l] (+)= sum_k w[k] dy[l + shift], shift = K - 1 - k, for l + shift < L.
                for (int i = 0; i < n; i++) s[i] = 0;
                for (int k = 0; k < K; k++) {
                    int shift = K - 1 - k, m = L - shift - l0 < n ? L - shift - l0 : n;
                    float wk = w[k];
                    for (int i = 0; i < m; i++) s[i] += wk * dy[l0 + i + shift];
                }
                if (c->accumulate) for (int i = 0; i < n; i++) dx[l0 + i] += s[i];
                else memcpy(dx + l0, s, sizeof(float) * (size_t)n);
                // dw[k] += sum_l dy[l] x[l - shift] for l >= shift; dbias += sum_l dy[l].
                // Lanes of float partial sums over the chunk (blocks of 8 vectorize), then into the double totals.
                float part[KL_CONV_LANES];
                lane_dot(dy + l0, NULL, n, part);
                for (int j = 0; j < KL_CONV_LANES; j++) dbs[j] += part[j];
                for (int k = 0; k < K; k++) {
                    int shift = K - 1 - k, i0 = shift > l0 ? shift - l0 : 0;
                    if (i0 >= n) continue;
                    lane_dot(dy + l0 + i0, x + l0 + i0 - shift, n - i0, part);
                    for (int j = 0; j < KL_CONV_LANES; j++) dws[k][j] += part[j];
                }
            }
        }
        for (int k = 0; k < K; k++) {
            double sum = 0;
            for (int j = 0; j < KL_CONV_LANES; j++) sum += dws[k][j];
            dw[k] = (float)((c->accumulate ? dw[k] : 0.0f) + sum);
        }
        double db = 0;
        for (int j = 0; j < KL_CONV_LANES; j++) db += dbs[j];
        if (c->dbias) c->dbias[ch] = (float)((c->accumulate ? c->dbias[ch] : 0.0f) + db);
    }
}

static kl_status conv_check(int B, int D, int L, int K, const void *x, const void *w, const void *out, kl_pool *pool) {
    if (B < 1 || D < 1 || L < 1 || K < 1 || K > 64)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d: need B, D, L >= 1 and 1 <= K <= 64 (got %d, %d, %d, %d)", B, D, L, K);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d: pool is NULL");
    if (!x || !w || !out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d: a tensor is NULL");
    return KL_OK;
}

kl_status kl_conv1d_fwd(int B, int D, int L, int K, const float *x, const float *weight, const float *bias, float *y,
                        kl_pool *pool) {
    kl_status st = conv_check(B, D, L, K, x, weight, y, pool);
    if (st != KL_OK) return st;
    long n = (long)B * D * L;
    if (kl_overlap_n(y, x, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d: y overlaps x");
    conv_ctx c = {B, D, L, K, 0, x, weight, bias, NULL, y, NULL, NULL, NULL};
    kl_pool_run(pool, conv_fwd_worker, &c);
    return KL_OK;
}

kl_status kl_conv1d_bwd(int B, int D, int L, int K, const float *x, const float *weight, const float *dy, float *dx,
                        float *dweight, float *dbias, int accumulate, kl_pool *pool) {
    kl_status st = conv_check(B, D, L, K, x, weight, dx, pool);
    if (st != KL_OK) return st;
    if (!dy || !dweight) return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d: dy or dweight is NULL");
    long n = (long)B * D * L;
    if (kl_overlap_n(dx, x, n) || kl_overlap_n(dx, dy, n))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d: dx overlaps x or dy");
    conv_ctx c = {B, D, L, K, accumulate != 0, x, weight, NULL, dy, NULL, dx, dweight, dbias};
    kl_pool_run(pool, conv_bwd_worker, &c);
    return KL_OK;
}

kl_status kl_conv1d_cost(int B, int D, int L, int K, kl_pass pass, kl_cost *out) {
    if (!out || B < 1 || D < 1 || L < 1 || K < 1) return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d cost: bad shape or NULL out");
    double e = (double)B * D * L;
    int b = pass == KL_PASS_BACKWARD;
    out->flops = e * (b ? 4.0 : 2.0) * K;
    out->exps = 0;
    out->min_bytes = 4.0 * e * (b ? 3.0 : 2.0) + 4.0 * (double)D * (K + 1) * (b ? 2.0 : 1.0);
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;
    return KL_OK;
}

// One decoding step: the state holds the last K - 1 inputs (oldest first), so
//   y = bias + sum_{k < K - 1} w[k] state[k] + w[K - 1] x,  then state <- [state[1:], x]
// the same sum, in the same order, as the forward's at the sequence's last step.
typedef struct {
    int B, D, K;
    const float *x, *w, *bias;
    float *state, *y;
} conv_step_ctx;

static void conv_step_worker(void *vctx, int tid, int nthreads) {
    conv_step_ctx *c = vctx;
    long lo, hi;
    kl_split((long)c->B * c->D, tid, nthreads, &lo, &hi);
    const int K = c->K;
    for (long r = lo; r < hi; r++) {
        int ch = (int)(r % c->D);
        const float *w = c->w + (long)ch * K;
        float *st = K > 1 ? c->state + r * (K - 1) : NULL;  // K = 1 keeps no state (and may pass NULL)
        float xv = c->x[r], s = c->bias ? c->bias[ch] : 0.0f;
        for (int k = 0; k < K - 1; k++) s += w[k] * st[k];
        s += w[K - 1] * xv;
        for (int k = 0; k + 1 < K - 1; k++) st[k] = st[k + 1];
        if (K > 1) st[K - 2] = xv;
        c->y[r] = s;
    }
}

kl_status kl_conv1d_step(int B, int D, int K, const float *x, const float *weight, const float *bias, float *state,
                         float *y, kl_pool *pool) {
    kl_status st = conv_check(B, D, 1, K, x, weight, y, pool);
    if (st != KL_OK) return st;
    long n = (long)B * D;
    if (K > 1 && !state) return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d step: state is NULL");
    if (K > 1 && (kl_overlap(state, (size_t)n * (K - 1) * sizeof(float), x, (size_t)n * sizeof(float)) ||
                  kl_overlap(state, (size_t)n * (K - 1) * sizeof(float), y, (size_t)n * sizeof(float))))
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d step: state overlaps x or y");
    if (y != x && kl_overlap_n(y, x, n)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "conv1d step: y partly overlaps x");
    conv_step_ctx c = {B, D, K, x, weight, bias, state, y};
    kl_pool_run(pool, conv_step_worker, &c);
    return KL_OK;
}
