// Internal interfaces shared by the kernel framework and the ISA microkernels.
#ifndef KL_INTERNAL_H
#define KL_INTERNAL_H

#include "kernellab.h"
#include <math.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#define KL_X86 1
#else
#define KL_X86 0
#endif

// Largest thread pool (per-thread tables are sized by it).
#define KL_MAX_THREADS 256

// Register-tile rows of every gemm microkernel, and the widest n one call takes.
#define KL_MR 6
#define KL_NR_MAX 64

/// Per-ISA primitives. The framework loops (tiling, masking, threading) are
/// portable C and call only these.
typedef struct {
    /// Columns of the microkernel's register tile (its widest B row, KL_NR_MAX
    /// at most): a B operand packed as (k, nr) panels, each contiguous, is
    /// read as one sequential stream per call (see the fused attention).
    int nr;
    /// The fused attention's blocking on this ISA (BLIS's context: data that
    /// travels with the ISA chosen from the CPU): query rows per block (a
    /// forward work item, a backward inner block) and keys per tile, a
    /// multiple of 16. kl_attn_default_tiles reads them.
    int attn_q_block, attn_kv_block;
    /// C (m x n) = [rowscale .* C or C or 0] + A (m x k) * B (k x n)
    ///   a(r, kk) = a[r * rsa + kk * csa]   (strided, so A or A^T without a copy)
    ///   B row-major with leading dimension ldb; m <= KL_MR, n <= KL_NR_MAX.
    ///   acc = 0: overwrite C; acc = 1: accumulate, scaling row r of C by
    ///   rowscale[r] first when rowscale != NULL.
    void (*gemm)(int m, int n, int k, const float *a, long rsa, long csa,
                 const float *b, long ldb, float *c, long ldc,
                 const float *rowscale, int acc);
    /// Softmax is computed in base 2 with the scale folded into the exponent
    /// (2^(c s - m), c = scale * log2(e)): the max runs on raw scores and each
    /// exp saves the multiply by log2(e).
    /// Returns max over c < n of x[c] (n >= 1).
    float (*max)(const float *x, int n);
    /// x[c] = scale * x[c] - slope * |dist0 - c|; returns the max (n >= 1). (ALiBi path)
    float (*scale_bias_max)(float *x, int n, float scale, float slope, float dist0);
    /// x[c] = 2^(scale * x[c] - shift); returns the sum.
    float (*exp2_sum)(float *x, int n, float scale, float shift);
    /// x[c] = 2^(scale * x[c] - slope * |dist0 - c| - shift)   (backward: P from lse)
    void (*exp2_scaled)(float *x, int n, float scale, float slope, float dist0, float shift);
    /// ds[c] = p[c] * (ds[c] - dsub)   (ds holds dP on entry)
    void (*dsoftmax)(float *ds, const float *p, int n, float dsub);
    /// Returns sum a[c] * b[c].
    float (*dot)(const float *a, const float *b, int n);
    /// y[c] *= s
    void (*scale)(float *y, int n, float s);
    /// Decoding (one query, keys read in place, nothing packed):
    /// s[c] = q . k[c * ldk ..] over d, for c < n.
    void (*dots)(const float *q, const float *k, long ldk, int n, int d, float *s);
    /// o (d) = alpha o + sum_{c < n} p[c] v[c * ldv ..].
    void (*pv)(const float *p, const float *v, long ldv, int n, int d, float alpha, float *o);
    /// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (tile packing).
    void (*transpose)(const float *src, int rows, int cols, long lds, float *dst, long ldd);
    // Ceiling kernels (src/ceilings): flops of `iters` FMA-chain iterations;
    // streaming read (returns a sum so it is not optimized away), copy, triad.
    double (*peak_fma)(long iters, float seed);
    float (*bw_read)(const float *a, size_t n);
    void (*bw_copy)(float *restrict b, const float *restrict a, size_t n);
    void (*bw_triad)(float *restrict a, const float *restrict b, const float *restrict c, float s, size_t n);
} kl_ops;

/// Portable transpose (the scalar ISA's, and the edges of the vector ones).
void kl_transpose_scalar(const float *src, int rows, int cols, long lds, float *dst, long ldd);

const kl_ops *kl_ops_for(kl_isa isa);   // NULL if not compiled in
const kl_ops *kl_ops_active(void);      // after kl_init()

extern const kl_ops kl_ops_scalar;
#if KL_X86
extern const kl_ops kl_ops_avx2;
extern const kl_ops kl_ops_avx512;
// The ISAs' tile transposes (kl_ops.transpose), shared with the scan lanes.
void kl_transpose_avx2(const float *src, int rows, int cols, long lds, float *dst, long ldd);
void kl_transpose_avx512(const float *src, int rows, int cols, long lds, float *dst, long ldd);
// AVX2 streaming kernels, shared by the AVX-512 table (see ops_avx512.c).
void kl_bw_copy_avx2(float *restrict b, const float *restrict a, size_t n);
void kl_bw_triad_avx2(float *restrict a, const float *restrict b, const float *restrict c, float s, size_t n);
// AVX2 decoding primitives, shared by the AVX-512 table (see ops_avx512.c).
void kl_dots_avx2(const float *q, const float *k, long ldk, int n, int d, float *s);
void kl_pv_avx2(const float *p, const float *v, long ldv, int n, int d, float alpha, float *o);
#endif

/// Sets the calling thread's error detail and returns `status`.
kl_status kl_fail(kl_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kl_clear_error(void);

/// Checks a caller workspace: non-NULL when needed, large enough, 64-byte aligned.
kl_status kl_check_workspace(const void *ws, size_t have, size_t need);

#define KL_LOG2E 1.4426950408889634f
#define KL_LN2 0.6931471805599453f

static inline size_t kl_round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/// Thread tid's share [lo, hi) of n items: contiguous, sizes differing by at most one.
static inline void kl_split(long n, int tid, int nthreads, long *lo, long *hi) {
    *lo = n * tid / nthreads;
    *hi = n * (tid + 1) / nthreads;
}

/// Whether [a, a + abytes) and [b, b + bbytes) share a byte (NULL or empty: no).
static inline int kl_overlap(const void *a, size_t abytes, const void *b, size_t bbytes) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return a && b && abytes && bbytes && x < y + bbytes && y < x + abytes;
}
/// The same for two buffers of n floats.
static inline int kl_overlap_n(const float *a, const float *b, long n) {
    return n > 0 && kl_overlap(a, (size_t)n * sizeof(float), b, (size_t)n * sizeof(float));
}
static inline int kl_min(int a, int b) { return a < b ? a : b; }
static inline int kl_max(int a, int b) { return a > b ? a : b; }

/// Tiled C (m x n) (+)= A (m x k) B (k x n) over microkernel calls (any m, n).
void kl_gemm_tiled(const kl_ops *ops, int m, int n, int k, const float *a, long rsa, long csa,
                   const float *b, long ldb, float *c, long ldc, const float *rowscale, int acc);

/// Makes OpenBLAS use `threads` threads for the calls that follow.
void kl_blas_threads(int threads);

// ------------------------------------------------------------ scan lanes ---
// The fused scan vectorizes over channels: KL_SCAN_W channels are the lanes of
// one 16-float vector (one zmm, two ymm, or four xmm), and every per-chunk
// buffer is time-major, (len, W) or (len, N, W).
#define KL_SCAN_W 16

typedef struct {
    int len, N;
    const float *A2;   // (N, W)     A * log2(e)
    const float *dt;   // (len, W)   delta'
    const float *u;    // (len, W)
    const float *B;    // (len, N)   B of the lanes' group, time-major
    const float *C;    // (len, N)
    float *h;          // (N, W)     state, in/out
    float *y;          // (len, W)   out: <C_t, h_t>
    float *hs, *as;    // (len, N, W) or NULL: h_t and exp(delta'_t A) per step (backward)
} kl_scan_fwd_chunk;

typedef struct {
    int len, N;
    const float *A;            // (N, W)
    const float *dt, *u, *B, *C;
    const float *hs, *as;      // (len, N, W) from the recompute
    const float *h_in;         // (N, W) state before the chunk
    const float *dy;           // (len, W) gradient of <C_t, h_t>
    float *carry;              // (N, W) in: exp(dt A) G of the step after the chunk; out: same for the chunk's first step
    float *ddt;                // (len, W) out: gradient of delta'
    float *du;                 // (len, W) in/out: += gradient through the recurrence
    float *dA;                 // (N, W) in/out
    float *dBl, *dCl;          // (len, N, W) in/out: per-lane partials of dB, dC
} kl_scan_bwd_chunk;

typedef struct {
    void (*fwd_chunk)(const kl_scan_fwd_chunk *c);
    void (*bwd_chunk)(const kl_scan_bwd_chunk *c);
    /// dt (len, W): dt = delta + bias, then softplus if asked. bias: (W) or NULL.
    void (*delta_prep)(float *dt, int len, const float *bias, int softplus);
    /// ddt (len, W) *= d delta'/d delta = sigmoid(raw + bias) when softplus (raw: (len, W)).
    void (*delta_grad)(float *ddt, const float *raw, int len, const float *bias, int softplus);
    /// y (len, W) = (y + D u) * silu(z); D (W) and z (len, W) may be NULL.
    void (*gate_fwd)(float *y, const float *u, const float *z, const float *D, int len);
    /// From dout and y = <C, h>: dy (gradient of <C,h>), du = D dy, dz, dD (W, +=).
    void (*gate_bwd)(const float *dout, const float *y, const float *u, const float *z, const float *D,
                     float *dy, float *du, float *dz, float *dD, int len);
    /// The ISA's kl_ops.transpose: dst[c * ldd + r] = src[r * lds + c] (B, C to time-major).
    void (*transpose)(const float *src, int rows, int cols, long lds, float *dst, long ldd);
    /// out[r] = sum of the W lanes of row r of x (rows, W).
    void (*lane_sum)(const float *x, int rows, float *out);
    /// dst (len, W) time-major <- rows [0, nch) of src (rows of length ld) at
    /// columns [l0, l0 + len); lanes >= nch are zero.
    void (*load_lanes)(float *dst, const float *src, long ld, int nch, int l0, int len);
    /// The inverse: rows [0, nch) of dst at columns [l0, l0 + len) <- src (len, W).
    void (*store_lanes)(float *dst, const float *src, long ld, int nch, int l0, int len);
    /// One decoding step of nch <= W channels, state-major: per channel c,
    /// h_c (N) = 2^(dt[c] A_c log2 e) h_c + du[c] B and y[c] = <C, h_c>, with A
    /// and h (nch, N) rows, B, C (N), y (W).
    void (*step_block)(int nch, int N, const float *dt, const float *du, const float *A, const float *B, const float *C,
                       float *h, float *y);
} kl_scan_ops;

const kl_scan_ops *kl_scan_ops_for(kl_isa isa);

// ------------------------------------------------------ element-wise layers ---
/// AdamW's hyperparameters as the lanes take them (bias corrections folded).
typedef struct { float lr, beta1, beta2, eps, weight_decay, grad_scale, c1, c2; } kl_adamw_lanes;

typedef struct {
    /// y[i] = f(x[i]) for i < n (y == x allowed).
    void (*act_fwd)(kl_activation kind, long n, const float *x, float *y);
    /// dx[i] (+)= dy[i] f'(x[i]).
    void (*act_bwd)(kl_activation kind, long n, const float *x, const float *dy, float *dx, int accumulate);
    /// One AdamW step over n parameters (see kl_adamw).
    void (*adamw)(long n, float *p, const float *g, float *m, float *v, const kl_adamw_lanes *h);
    /// sum of x[i]^2, accumulated in double by blocks.
    double (*sum_squares)(long n, const float *x);
    /// LayerNorm (rms = 0; b may be NULL) or RMSNorm (rms = 1; b, mean unused) of rows (rows, d).
    void (*norm_fwd)(int rms, long rows, int d, const float *x, const float *w, const float *b, float eps, float *y,
                     float *mean, float *rstd);
    /// Their backward over rows: dx (+)= ..., dw and db (d) += (this thread's partials).
    void (*norm_bwd)(int rms, long rows, int d, const float *x, const float *w, const float *mean, const float *rstd,
                     const float *dy, float *dx, int accumulate, float *dw, float *db);
    /// Masked softmax cross-entropy of rows (rows, V) (see kl_cross_entropy).
    void (*xent_rows)(long rows, int V, const float *z, const int32_t *t, const float *mask, float scale, float *loss,
                      float *dz);
    /// The fused LSTM cell over rows (see kl_lstm_cell_fwd / _bwd).
    void (*lstm_fwd)(long rows, long H, const float *a, const float *cp, float *c, float *h);
    void (*lstm_bwd)(long rows, long H, const float *a, const float *cp, const float *c, const float *dh, const float *dcn,
                     float *da, float *dcp);
} kl_elementwise_ops;

const kl_elementwise_ops *kl_elementwise_ops_for(kl_isa isa);
extern const kl_elementwise_ops kl_elementwise_ops_scalar;
#if KL_X86
extern const kl_elementwise_ops kl_elementwise_ops_avx2, kl_elementwise_ops_avx512;
#endif
extern const kl_scan_ops kl_scan_ops_scalar;
#if KL_X86
extern const kl_scan_ops kl_scan_ops_avx2, kl_scan_ops_avx512;
#endif

#endif
