// AVX-512 primitives (F, VL, DQ, BW). Microkernel: 6 rows x up to 4 zmm
// (64 columns) of accumulators = 24 registers; B rows are loaded once per k and
// A is broadcast, so one k step is 4 loads + 6 broadcasts + 24 FMAs.
#include "../core/internal.h"
#if KL_X86
#include <immintrin.h>

#define KL_T512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma,avx2")))
#define KL_INLINE512 static inline __attribute__((always_inline, target("avx512f,avx512vl,avx512dq,avx512bw,fma,avx2")))

static inline __mmask16 tail_mask(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }

// Vector 2^x: x = n + r, |r| <= 1/2, degree-5 minimax polynomial of 2^r
// (relative error <= 1.9e-7), scaled by 2^n with vscalefps, which also
// flushes very negative n to 0. The lower clamp turns -inf into 0 instead of NaN.
KL_INLINE512 __m512 exp2_512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-150.0f), x);  // x second: a NaN x stays NaN
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(0.0013264727080180088f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.009671512862187807f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.05550733745645608f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.24022242081843181f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.693146977596588f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// NV (1..4) is a compile-time constant after inlining, so the accumulator
// array lives in registers.
KL_INLINE512 void gemm512_nv(const int NV, int m, int n, int k, const float *a, long rsa, long csa,
                             const float *b, long ldb, float *c, long ldc, const float *rowscale, int acc) {
    const __mmask16 last = tail_mask(n - 16 * (NV - 1));
    const float *ar[KL_MR];
    for (int r = 0; r < KL_MR; r++) ar[r] = a + (r < m ? r : m - 1) * rsa;  // clamp ragged rows
    __m512 t[KL_MR][4];
    for (int r = 0; r < KL_MR; r++)
        for (int v = 0; v < NV; v++) t[r][v] = _mm512_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        const float *bk = b + (long)kk * ldb;
        __m512 bv[4];
        for (int v = 0; v < NV - 1; v++) bv[v] = _mm512_loadu_ps(bk + 16 * v);
        bv[NV - 1] = _mm512_maskz_loadu_ps(last, bk + 16 * (NV - 1));
        long off = kk * csa;
        for (int r = 0; r < KL_MR; r++) {
            __m512 av = _mm512_set1_ps(ar[r][off]);
            for (int v = 0; v < NV; v++) t[r][v] = _mm512_fmadd_ps(av, bv[v], t[r][v]);
        }
    }
    for (int r = 0; r < m; r++) {
        float *cr = c + (long)r * ldc;
        for (int v = 0; v < NV; v++) {
            __mmask16 mk = v == NV - 1 ? last : (__mmask16)0xFFFF;
            __m512 out = t[r][v];
            if (acc) {
                __m512 old = _mm512_maskz_loadu_ps(mk, cr + 16 * v);
                out = rowscale ? _mm512_fmadd_ps(old, _mm512_set1_ps(rowscale[r]), out)
                               : _mm512_add_ps(old, out);
            }
            _mm512_mask_storeu_ps(cr + 16 * v, mk, out);
        }
    }
}

KL_T512 static void gemm_avx512(int m, int n, int k, const float *a, long rsa, long csa,
                                const float *b, long ldb, float *c, long ldc,
                                const float *rowscale, int acc) {
    switch ((n + 15) / 16) {
    case 1: gemm512_nv(1, m, n, k, a, rsa, csa, b, ldb, c, ldc, rowscale, acc); break;
    case 2: gemm512_nv(2, m, n, k, a, rsa, csa, b, ldb, c, ldc, rowscale, acc); break;
    case 3: gemm512_nv(3, m, n, k, a, rsa, csa, b, ldb, c, ldc, rowscale, acc); break;
    default: gemm512_nv(4, m, n, k, a, rsa, csa, b, ldb, c, ldc, rowscale, acc); break;
    }
}

KL_INLINE512 __m512 alibi512(float slope, float dist0, int c) {
    __m512 idx = _mm512_add_ps(_mm512_set1_ps((float)c),
                               _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512 d = _mm512_sub_ps(_mm512_set1_ps(dist0), idx);
    return _mm512_mul_ps(_mm512_set1_ps(slope), _mm512_abs_ps(d));
}

KL_T512 static float scale_bias_max_avx512(float *x, int n, float scale, float slope, float dist0) {
    __m512 mx = _mm512_set1_ps(-INFINITY), s = _mm512_set1_ps(scale);
    for (int c = 0; c < n; c += 16) {
        __mmask16 mk = tail_mask(n - c);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + c), s);
        if (slope != 0.0f) v = _mm512_sub_ps(v, alibi512(slope, dist0, c));
        _mm512_mask_storeu_ps(x + c, mk, v);
        mx = _mm512_mask_max_ps(mx, mk, mx, v);
    }
    return _mm512_reduce_max_ps(mx);
}

KL_T512 static float max_avx512(const float *x, int n) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int c = 0; c < n; c += 16) {
        __mmask16 mk = tail_mask(n - c);
        mx = _mm512_mask_max_ps(mx, mk, mx, _mm512_maskz_loadu_ps(mk, x + c));
    }
    return _mm512_reduce_max_ps(mx);
}

KL_T512 static float exp2_sum_avx512(float *x, int n, float scale, float shift) {
    __m512 sum = _mm512_setzero_ps(), sc = _mm512_set1_ps(scale), sh = _mm512_set1_ps(shift);
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        __m512 e = exp2_512(_mm512_fmsub_ps(_mm512_loadu_ps(x + c), sc, sh));
        _mm512_storeu_ps(x + c, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (c < n) {
        __mmask16 mk = tail_mask(n - c);
        __m512 e = exp2_512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, x + c), sc, sh));
        _mm512_mask_storeu_ps(x + c, mk, e);
        sum = _mm512_mask_add_ps(sum, mk, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

KL_T512 static void exp2_scaled_avx512(float *x, int n, float scale, float slope, float dist0, float shift) {
    __m512 s = _mm512_set1_ps(scale), sh = _mm512_set1_ps(shift);
    for (int c = 0; c < n; c += 16) {
        __mmask16 mk = tail_mask(n - c);
        __m512 v = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, x + c), s, sh);
        if (slope != 0.0f) v = _mm512_sub_ps(v, alibi512(slope, dist0, c));
        _mm512_mask_storeu_ps(x + c, mk, exp2_512(v));
    }
}

KL_T512 static void dsoftmax_avx512(float *ds, const float *p, int n, float dsub) {
    __m512 d = _mm512_set1_ps(dsub);
    for (int c = 0; c < n; c += 16) {
        __mmask16 mk = tail_mask(n - c);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, p + c),
                                 _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, ds + c), d));
        _mm512_mask_storeu_ps(ds + c, mk, v);
    }
}

KL_T512 static float dot_avx512(const float *a, const float *b, int n) {
    __m512 s = _mm512_setzero_ps();
    for (int c = 0; c < n; c += 16) {
        __mmask16 mk = tail_mask(n - c);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + c), _mm512_maskz_loadu_ps(mk, b + c), s);
    }
    return _mm512_reduce_add_ps(s);
}

KL_T512 static void scale_avx512(float *y, int n, float s) {
    __m512 sv = _mm512_set1_ps(s);
    for (int c = 0; c < n; c += 16) {
        __mmask16 mk = tail_mask(n - c);
        _mm512_mask_storeu_ps(y + c, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, y + c), sv));
    }
}

// 16 x 16 transpose in registers: for s = 8, 4, 2, 1 swap the off-diagonal
// s x s blocks of every 2s x 2s block, two vpermt2ps per row pair.
// kl_t16_index[stage][0] picks the low half of a pair, [1] the high half
// (indices >= 16 select from the second row).
static const int32_t kl_t16_index[4][2][16] = {
    {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
     {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
    {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
     {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
    {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
     {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
    {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
     {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}},
};

KL_INLINE512 void transpose16x16(__m512 r[16]) {
    for (int stage = 0; stage < 4; stage++) {
        const int s = 8 >> stage;
        const __m512i lo = _mm512_loadu_si512(kl_t16_index[stage][0]);
        const __m512i hi = _mm512_loadu_si512(kl_t16_index[stage][1]);
        for (int i = 0; i < 16; i++) {
            if (i & s) continue;
            __m512 a = r[i], b = r[i + s];
            r[i] = _mm512_permutex2var_ps(a, lo, b);
            r[i + s] = _mm512_permutex2var_ps(a, hi, b);
        }
    }
}

KL_T512 void kl_transpose_avx512(const float *src, int rows, int cols, long lds, float *dst, long ldd) {
    int r16 = rows / 16 * 16, c16 = cols / 16 * 16;
    __m512 t[16];
    for (int r0 = 0; r0 < r16; r0 += 16)
        for (int c0 = 0; c0 < c16; c0 += 16) {
            for (int i = 0; i < 16; i++) t[i] = _mm512_loadu_ps(src + (long)(r0 + i) * lds + c0);
            transpose16x16(t);
            for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (long)(c0 + i) * ldd + r0, t[i]);
        }
    // Ragged edges: the right strip of full row blocks, then the bottom rows.
    if (c16 < cols) kl_transpose_scalar(src + c16, r16, cols - c16, lds, dst + (long)c16 * ldd, ldd);
    if (r16 < rows) kl_transpose_scalar(src + (long)r16 * lds, rows - r16, cols, lds, dst + r16, ldd);
}

// 16 independent zmm FMA chains (more than latency x throughput needs).
KL_T512 static double peak_fma_avx512(long iters, float seed) {
    __m512 c[16], m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 16; i++) c[i] = _mm512_set1_ps(seed + (float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++) c[i] = _mm512_fmadd_ps(c[i], m, a);
    __m512 s = c[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, c[i]);
    float r = _mm512_reduce_add_ps(s);
    __asm__ volatile("" : : "r"(&r) : "memory");
    return (double)iters * 16 * 16 * 2;
}

KL_T512 static float bw_read_avx512(const float *a, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) r += a[i];
    return r;
}

// The storing kernels are the AVX2 ones even here: on Zen 4 (256-bit data
// paths, 512-bit stores split in two) zmm copy and triad measured 10-25% less
// DRAM bandwidth than ymm (1 thread, 256 MiB: triad 19.7-20.0 GB/s zmm vs
// 22.8-27.1 ymm), and a ceiling should be the best the machine sustains.
// Loads are the other way round (L1 read: 208 GB/s zmm, 158 ymm).
// The decoding primitives (dots, pv) are the AVX2 ones too, for now: their
// loops are bound by the cache's bytes, not the vector width.

const kl_ops kl_ops_avx512 = {
    .nr = 64,
    // Zen 4 (B=1 H=8 L=2048 d=64, 1 thread, fused forward GFLOP/s): q/kv
    // 128/64: 80.0, 256/64: 83.1, 192/128: 85.2, 256/128: 86.8: a 128-key
    // tile halves the per-row softmax overhead of a 64-key one, 256-row
    // blocks amortize the packing over 43 strips. Zen 5 (B=1 H=4 L=2048,
    // fraction of the in-run sgemm, fwd/bwd, one process): d=64 256/128
    // 1.71/1.82, 256/256 1.77/1.80, 512/256 1.79/1.89; d=128 causal 256/64
    // 1.51/1.56, 256/128 1.57/1.48, 256/256 1.58/1.52: within run-to-run noise.
    .attn_q_block = 256,
    .attn_kv_block = 128,
    .gemm = gemm_avx512,
    .max = max_avx512,
    .scale_bias_max = scale_bias_max_avx512,
    .exp2_sum = exp2_sum_avx512,
    .exp2_scaled = exp2_scaled_avx512,
    .dsoftmax = dsoftmax_avx512,
    .dot = dot_avx512,
    .scale = scale_avx512,
    .dots = kl_dots_avx2,
    .pv = kl_pv_avx2,
    .transpose = kl_transpose_avx512,
    .peak_fma = peak_fma_avx512,
    .bw_read = bw_read_avx512,
    .bw_copy = kl_bw_copy_avx2,
    .bw_triad = kl_bw_triad_avx2,
};
#endif
