// AVX2 + FMA primitives. 16 ymm registers: the microkernel keeps 6 rows x 2 ymm
// (16 columns) of accumulators = 12 registers, plus 2 for B and 1 broadcast,
// and walks n <= 64 in 16-column panels.
#include "../core/internal.h"
#if KL_X86
#include <immintrin.h>

#define KL_T256 __attribute__((target("avx2,fma")))
#define KL_INLINE256 static inline __attribute__((always_inline, target("avx2,fma")))

// Lane masks for maskload/maskstore: mask_table[8 - n .. 16 - n) has n ones.
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
KL_INLINE256 __m256i tail8(int n) { return _mm256_loadu_si256((const __m256i *)(mask_table + 8 - (n >= 8 ? 8 : n))); }

// 2^x as in the AVX-512 path; 2^n is built in the exponent field, so x is
// clamped to [-126, 127] where that is exact (2^-126 underflows to ~0 anyway).
KL_INLINE256 __m256 exp2_256(__m256 x) {
    // x second: maxps/minps return the second operand when either is NaN, so NaN propagates.
    x = _mm256_max_ps(_mm256_set1_ps(-126.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(127.0f), x);
    __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(0.0013264727080180088f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.009671512862187807f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.05550733745645608f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.24022242081843181f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.693146977596588f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

KL_INLINE256 float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

KL_INLINE256 float hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// One 16-column panel (n16 <= 16 valid columns) of c: (m, n16) (+)= a: (m, k) * b: (k, n16).
KL_INLINE256 void panel256(int m, int n16, int k, const float *ar[KL_MR], long csa,
                           const float *b, long ldb, float *c, long ldc, const float *rowscale, int acc) {
    const __m256i m0 = tail8(n16), m1 = tail8(n16 - 8 > 0 ? n16 - 8 : 0);
    const int full = n16 == 16;
    __m256 t[KL_MR][2];
    for (int r = 0; r < KL_MR; r++) t[r][0] = t[r][1] = _mm256_setzero_ps();
    for (int kk = 0; kk < k; kk++) {
        const float *bk = b + (long)kk * ldb;
        __m256 b0 = full ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
        __m256 b1 = full ? _mm256_loadu_ps(bk + 8) : _mm256_maskload_ps(bk + 8, m1);
        long off = kk * csa;
        for (int r = 0; r < KL_MR; r++) {
            __m256 av = _mm256_broadcast_ss(ar[r] + off);
            t[r][0] = _mm256_fmadd_ps(av, b0, t[r][0]);
            t[r][1] = _mm256_fmadd_ps(av, b1, t[r][1]);
        }
    }
    // Plain loads and stores for full panels: AMD's Zen 1-3 run vmaskmovps
    // stores as long microcoded sequences, and a masked epilogue per 6 x 16
    // panel would then cost as much as the k = 64 loop it ends.
    if (full) {
        for (int r = 0; r < m; r++) {
            float *cr = c + (long)r * ldc;
            __m256 o0 = t[r][0], o1 = t[r][1];
            if (acc) {
                __m256 s = _mm256_set1_ps(rowscale ? rowscale[r] : 1.0f);
                o0 = _mm256_fmadd_ps(_mm256_loadu_ps(cr), s, o0);
                o1 = _mm256_fmadd_ps(_mm256_loadu_ps(cr + 8), s, o1);
            }
            _mm256_storeu_ps(cr, o0);
            _mm256_storeu_ps(cr + 8, o1);
        }
        return;
    }
    for (int r = 0; r < m; r++) {
        float *cr = c + (long)r * ldc;
        __m256 o0 = t[r][0], o1 = t[r][1];
        if (acc) {
            __m256 s = _mm256_set1_ps(rowscale ? rowscale[r] : 1.0f);
            o0 = _mm256_fmadd_ps(_mm256_maskload_ps(cr, m0), s, o0);
            o1 = _mm256_fmadd_ps(_mm256_maskload_ps(cr + 8, m1), s, o1);
        }
        _mm256_maskstore_ps(cr, m0, o0);
        _mm256_maskstore_ps(cr + 8, m1, o1);
    }
}

KL_T256 static void gemm_avx2(int m, int n, int k, const float *a, long rsa, long csa,
                              const float *b, long ldb, float *c, long ldc,
                              const float *rowscale, int acc) {
    const float *ar[KL_MR];
    for (int r = 0; r < KL_MR; r++) ar[r] = a + (r < m ? r : m - 1) * rsa;  // clamp ragged rows
    for (int j = 0; j < n; j += 16)
        panel256(m, kl_min(16, n - j), k, ar, csa, b + j, ldb, c + j, ldc, rowscale, acc);
}

KL_INLINE256 __m256 alibi256(float slope, float dist0, int c) {
    __m256 idx = _mm256_add_ps(_mm256_set1_ps((float)c), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 d = _mm256_sub_ps(_mm256_set1_ps(dist0), idx);
    d = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), d);  // |d|
    return _mm256_mul_ps(_mm256_set1_ps(slope), d);
}

KL_T256 static float scale_bias_max_avx2(float *x, int n, float scale, float slope, float dist0) {
    __m256 mx = _mm256_set1_ps(-INFINITY), s = _mm256_set1_ps(scale);
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + c), s);
        if (slope != 0.0f) v = _mm256_sub_ps(v, alibi256(slope, dist0, c));
        _mm256_storeu_ps(x + c, v);
        mx = _mm256_max_ps(mx, v);
    }
    float m = hmax256(mx);
    for (; c < n; c++) {
        float v = scale * x[c] - slope * fabsf(dist0 - (float)c);
        x[c] = v;
        m = v > m ? v : m;
    }
    return m;
}

KL_T256 static float max_avx2(const float *x, int n) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int c = 0;
    for (; c + 8 <= n; c += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + c));
    float m = hmax256(mx);
    for (; c < n; c++) m = x[c] > m ? x[c] : m;
    return m;
}

KL_T256 static float exp2_sum_avx2(float *x, int n, float scale, float shift) {
    __m256 sum = _mm256_setzero_ps(), sc = _mm256_set1_ps(scale), sh = _mm256_set1_ps(shift);
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 e = exp2_256(_mm256_fmsub_ps(_mm256_loadu_ps(x + c), sc, sh));
        _mm256_storeu_ps(x + c, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (c < n) {
        __m256i mk = tail8(n - c);
        __m256 e = exp2_256(_mm256_fmsub_ps(_mm256_maskload_ps(x + c, mk), sc, sh));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(mk));
        _mm256_maskstore_ps(x + c, mk, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum256(sum);
}

// The element-wise loops below run plain loads and stores over full vectors
// and mask only the tail (see panel256 on masked stores).
KL_T256 static void exp2_scaled_avx2(float *x, int n, float scale, float slope, float dist0, float shift) {
    __m256 s = _mm256_set1_ps(scale), sh = _mm256_set1_ps(shift);
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 v = _mm256_fmsub_ps(_mm256_loadu_ps(x + c), s, sh);
        if (slope != 0.0f) v = _mm256_sub_ps(v, alibi256(slope, dist0, c));
        _mm256_storeu_ps(x + c, exp2_256(v));
    }
    if (c < n) {
        __m256i mk = tail8(n - c);
        __m256 v = _mm256_fmsub_ps(_mm256_maskload_ps(x + c, mk), s, sh);
        if (slope != 0.0f) v = _mm256_sub_ps(v, alibi256(slope, dist0, c));
        _mm256_maskstore_ps(x + c, mk, exp2_256(v));
    }
}

KL_T256 static void dsoftmax_avx2(float *ds, const float *p, int n, float dsub) {
    __m256 d = _mm256_set1_ps(dsub);
    int c = 0;
    for (; c + 8 <= n; c += 8)
        _mm256_storeu_ps(ds + c, _mm256_mul_ps(_mm256_loadu_ps(p + c), _mm256_sub_ps(_mm256_loadu_ps(ds + c), d)));
    if (c < n) {
        __m256i mk = tail8(n - c);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(p + c, mk), _mm256_sub_ps(_mm256_maskload_ps(ds + c, mk), d));
        _mm256_maskstore_ps(ds + c, mk, v);
    }
}

KL_T256 static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), s1);
    }
    for (; c < n; c += 8) {
        __m256i mk = tail8(n - c);
        s0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + c, mk), _mm256_maskload_ps(b + c, mk), s0);
    }
    return hsum256(_mm256_add_ps(s0, s1));
}

KL_T256 static void scale_avx2(float *y, int n, float s) {
    __m256 sv = _mm256_set1_ps(s);
    int c = 0;
    for (; c + 8 <= n; c += 8) _mm256_storeu_ps(y + c, _mm256_mul_ps(_mm256_loadu_ps(y + c), sv));
    if (c < n) {
        __m256i mk = tail8(n - c);
        _mm256_maskstore_ps(y + c, mk, _mm256_mul_ps(_mm256_maskload_ps(y + c, mk), sv));
    }
}

// dst[c * ldd + r] = src[r * lds + c]: 8 x 8 blocks transposed in registers
// (unpack, shuffle, permute), the ragged edges by the portable loop.
KL_T256 void kl_transpose_avx2(const float *src, int rows, int cols, long lds, float *dst, long ldd) {
    int r8 = rows & ~7, c8 = cols & ~7;
    for (int r = 0; r < r8; r += 8) {
        for (int c = 0; c < c8; c += 8) {
            const float *s = src + (long)r * lds + c;
            __m256 a0 = _mm256_loadu_ps(s), a1 = _mm256_loadu_ps(s + lds), a2 = _mm256_loadu_ps(s + 2 * lds),
                   a3 = _mm256_loadu_ps(s + 3 * lds), a4 = _mm256_loadu_ps(s + 4 * lds), a5 = _mm256_loadu_ps(s + 5 * lds),
                   a6 = _mm256_loadu_ps(s + 6 * lds), a7 = _mm256_loadu_ps(s + 7 * lds);
            __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1), t2 = _mm256_unpacklo_ps(a2, a3),
                   t3 = _mm256_unpackhi_ps(a2, a3), t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5),
                   t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
            float *d = dst + (long)c * ldd + r;
            _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    // Edges: the rows below r8 (all columns) and the columns right of c8.
    if (r8 < rows) kl_transpose_scalar(src + (long)r8 * lds, rows - r8, cols, lds, dst + r8, ldd);
    if (c8 < cols && r8 > 0) kl_transpose_scalar(src + c8, r8, cols - c8, lds, dst + (long)c8 * ldd, ldd);
}

// 12 independent ymm FMA chains: latency 4 x 2 pipes needs at least 8.
KL_T256 static double peak_fma_avx2(long iters, float seed) {
    __m256 c[12], m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) c[i] = _mm256_set1_ps(seed + (float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) c[i] = _mm256_fmadd_ps(c[i], m, a);
    __m256 s = c[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, c[i]);
    float r = hsum256(s);
    __asm__ volatile("" : : "r"(&r) : "memory");
    return (double)iters * 12 * 8 * 2;
}

KL_T256 static float bw_read_avx2(const float *a, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    float r = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) r += a[i];
    return r;
}

KL_T256 void kl_bw_copy_avx2(float *restrict b, const float *restrict a, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(b + i, _mm256_loadu_ps(a + i));
    for (; i < n; i++) b[i] = a[i];
}

KL_T256 void kl_bw_triad_avx2(float *restrict a, const float *restrict b, const float *restrict c, float s, size_t n) {
    __m256 sv = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(c + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) a[i] = b[i] + s * c[i];
}

// s[c] = q . k_c for 8 keys at a time: one q chunk load feeds 8 FMAs, and the
// 8 accumulators reduce to one vector of 8 sums by a horizontal-add tree
// (the gemm microkernel would need K^T packed; dot per key pays a full
// horizontal sum per key).
KL_T256 void kl_dots_avx2(const float *q, const float *k, long ldk, int n, int d, float *s) {
    const __m256i mt = tail8(d & 7);
    const int d8 = d & ~7;
    int c = 0;
    for (; c + 8 <= n; c += 8) {
        const float *kc = k + (long)c * ldk;
        __m256 a[8];
        for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_ps();
        int x = 0;
        for (; x < d8; x += 8) {
            __m256 qv = _mm256_loadu_ps(q + x);
            for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kc + j * ldk + x), a[j]);
        }
        if (x < d) {
            __m256 qv = _mm256_maskload_ps(q + x, mt);
            for (int j = 0; j < 8; j++) a[j] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(kc + j * ldk + x, mt), a[j]);
        }
        // hadd(a0, a1) = [a0 01, a0 23, a1 01, a1 23 | same for the high halves]: after two
        // levels each 128-bit half holds partial sums of 4 keys; the halves then add.
        __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
        __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
        __m256 g0 = _mm256_hadd_ps(h01, h23), g1 = _mm256_hadd_ps(h45, h67);  // keys 0-3 | 0-3, 4-7 | 4-7
        __m256 lo = _mm256_permute2f128_ps(g0, g1, 0x20), hi = _mm256_permute2f128_ps(g0, g1, 0x31);
        _mm256_storeu_ps(s + c, _mm256_add_ps(lo, hi));
    }
    for (; c < n; c++) s[c] = dot_avx2(q, k + (long)c * ldk, d);
}

// o = alpha o + sum_c p[c] v_c: o in registers, 64 columns (8 ymm) at a time.
KL_T256 void kl_pv_avx2(const float *p, const float *v, long ldv, int n, int d, float alpha, float *o) {
    const __m256 al = _mm256_set1_ps(alpha);
    for (int x0 = 0; x0 < d; x0 += 64) {
        int w = kl_min(64, d - x0), nv = (w + 7) / 8;
        __m256i mk[8];
        __m256 acc[8];
        for (int j = 0; j < 8; j++) {
            mk[j] = tail8(w - 8 * j > 0 ? w - 8 * j : 0);
            acc[j] = j < nv ? _mm256_mul_ps(al, _mm256_maskload_ps(o + x0 + 8 * j, mk[j])) : _mm256_setzero_ps();
        }
        const float *vc = v + x0;
        if (w == 64) {
            for (int c = 0; c < n; c++, vc += ldv) {
                __m256 pc = _mm256_broadcast_ss(p + c);
                for (int j = 0; j < 8; j++) acc[j] = _mm256_fmadd_ps(pc, _mm256_loadu_ps(vc + 8 * j), acc[j]);
            }
        } else {
            for (int c = 0; c < n; c++, vc += ldv) {
                __m256 pc = _mm256_broadcast_ss(p + c);
                for (int j = 0; j < nv; j++) acc[j] = _mm256_fmadd_ps(pc, _mm256_maskload_ps(vc + 8 * j, mk[j]), acc[j]);
            }
        }
        for (int j = 0; j < nv; j++) _mm256_maskstore_ps(o + x0 + 8 * j, mk[j], acc[j]);
    }
}

const kl_ops kl_ops_avx2 = {
    .nr = 16,
    // Zen 5 under AVX2 (B=1 H=4 L=2048, fraction of the in-run sgemm,
    // fwd/bwd, each line one process): d=64 128/128 0.83/0.93, 256/128
    // 0.85/0.93, 256/256 0.88/0.95, 512/128 0.85/0.94; d=128 causal 256/64
    // 0.85/0.85, 256/128 0.86/0.85, 256/256 0.84/0.83: 256-key tiles gain 3%
    // at d = 64 and lose 2% at d = 128, with twice the backward's P and dS. K^T and V of a 128-key tile are
    // 32 KiB each at d = 64: the L1d of Zen 3 holds one, so the packed
    // panels stream from L2 there (a machine to tune on when one is at hand).
    .attn_q_block = 256,
    .attn_kv_block = 128,
    .gemm = gemm_avx2,
    .max = max_avx2,
    .scale_bias_max = scale_bias_max_avx2,
    .exp2_sum = exp2_sum_avx2,
    .exp2_scaled = exp2_scaled_avx2,
    .dsoftmax = dsoftmax_avx2,
    .dot = dot_avx2,
    .scale = scale_avx2,
    .dots = kl_dots_avx2,
    .pv = kl_pv_avx2,
    .transpose = kl_transpose_avx2,
    .peak_fma = peak_fma_avx2,
    .bw_read = bw_read_avx2,
    .bw_copy = kl_bw_copy_avx2,
    .bw_triad = kl_bw_triad_avx2,
};
#endif
