// Scalar (portable C) primitives. Builds on any target; the compiler may use
// the baseline vector unit (SSE2 on x86-64) but nothing that needs dispatch.
#include "../core/internal.h"

// c: (m, n) += a: (m, k) * b: (k, n), m <= KL_MR, n <= KL_NR_MAX
static void gemm_scalar(int m, int n, int k, const float *a, long rsa, long csa,
                        const float *b, long ldb, float *c, long ldc,
                        const float *rowscale, int acc) {
    float t[KL_MR][KL_NR_MAX];
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) t[r][j] = 0.0f;
    for (int kk = 0; kk < k; kk++) {
        const float *bk = b + (long)kk * ldb;
        for (int r = 0; r < m; r++) {
            float ar = a[r * rsa + kk * csa];
            for (int j = 0; j < n; j++) t[r][j] += ar * bk[j];
        }
    }
    for (int r = 0; r < m; r++) {
        float *cr = c + (long)r * ldc;
        float s = rowscale ? rowscale[r] : 1.0f;
        for (int j = 0; j < n; j++) cr[j] = acc ? s * cr[j] + t[r][j] : t[r][j];
    }
}

static float scale_bias_max_scalar(float *x, int n, float scale, float slope, float dist0) {
    float mx = -INFINITY;
    for (int c = 0; c < n; c++) {
        float v = scale * x[c] - slope * fabsf(dist0 - (float)c);
        x[c] = v;
        mx = v > mx ? v : mx;
    }
    return mx;
}

static float max_scalar(const float *x, int n) {
    float mx = -INFINITY;
    for (int c = 0; c < n; c++) mx = x[c] > mx ? x[c] : mx;
    return mx;
}

static float exp2_sum_scalar(float *x, int n, float scale, float shift) {
    float s = 0.0f;
    for (int c = 0; c < n; c++) { x[c] = exp2f(scale * x[c] - shift); s += x[c]; }
    return s;
}

static void exp2_scaled_scalar(float *x, int n, float scale, float slope, float dist0, float shift) {
    for (int c = 0; c < n; c++) x[c] = exp2f(scale * x[c] - slope * fabsf(dist0 - (float)c) - shift);
}

static void dsoftmax_scalar(float *ds, const float *p, int n, float dsub) {
    for (int c = 0; c < n; c++) ds[c] = p[c] * (ds[c] - dsub);
}

static float dot_scalar(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int c = 0; c < n; c++) s += a[c] * b[c];
    return s;
}

static void scale_scalar(float *y, int n, float s) {
    for (int c = 0; c < n; c++) y[c] *= s;
}

static void dots_scalar(const float *q, const float *k, long ldk, int n, int d, float *s) {
    for (int c = 0; c < n; c++) s[c] = dot_scalar(q, k + (long)c * ldk, d);
}

static void pv_scalar(const float *p, const float *v, long ldv, int n, int d, float alpha, float *o) {
    for (int x = 0; x < d; x++) o[x] *= alpha;
    for (int c = 0; c < n; c++)
        for (int x = 0; x < d; x++) o[x] += p[c] * v[(long)c * ldv + x];
}

// 8 independent chains of multiply then add (2 flops each): the portable
// build has no FMA instruction, and fmaf would be a library call.
static double peak_fma_scalar(long iters, float seed) {
    float c[8], m = 0.999999f, a = 1e-7f;
    for (int i = 0; i < 8; i++) c[i] = seed + (float)i;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 8; i++) c[i] = c[i] * m + a;
    float s = 0.0f;
    for (int i = 0; i < 8; i++) s += c[i];
    __asm__ volatile("" : : "r"(&s) : "memory");  // keep the chains alive
    return (double)iters * 8 * 2;
}

static float bw_read_scalar(const float *a, size_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) { s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]; }
    for (; i < n; i++) s0 += a[i];
    return s0 + s1 + s2 + s3;
}

static void bw_copy_scalar(float *restrict b, const float *restrict a, size_t n) {
    for (size_t i = 0; i < n; i++) b[i] = a[i];
}

static void bw_triad_scalar(float *restrict a, const float *restrict b, const float *restrict c, float s, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}

const kl_ops kl_ops_scalar = {
    .nr = 16,
    // The portable loops are compute-bound at any tile (Zen 5: 256/128 and
    // 128/64 within 5%), so the vector ISAs' tiles keep workspaces alike.
    .attn_q_block = 256,
    .attn_kv_block = 128,
    .gemm = gemm_scalar,
    .max = max_scalar,
    .scale_bias_max = scale_bias_max_scalar,
    .exp2_sum = exp2_sum_scalar,
    .exp2_scaled = exp2_scaled_scalar,
    .dsoftmax = dsoftmax_scalar,
    .dot = dot_scalar,
    .scale = scale_scalar,
    .dots = dots_scalar,
    .pv = pv_scalar,
    .transpose = kl_transpose_scalar,
    .peak_fma = peak_fma_scalar,
    .bw_read = bw_read_scalar,
    .bw_copy = bw_copy_scalar,
    .bw_triad = bw_triad_scalar,
};
