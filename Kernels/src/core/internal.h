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

// Register-tile rows of every gemm microkernel, and the widest n one call takes.
#define KL_MR 6
#define KL_NR_MAX 64

/// Per-ISA primitives. The framework loops (tiling, masking, threading) are
/// portable C and call only these.
typedef struct {
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
} kl_ops;

const kl_ops *kl_ops_for(kl_isa isa);   // NULL if not compiled in
const kl_ops *kl_ops_active(void);      // after kl_init()

extern const kl_ops kl_ops_scalar;
#if KL_X86
extern const kl_ops kl_ops_avx2;
extern const kl_ops kl_ops_avx512;
#endif

/// Sets the calling thread's error detail and returns `status`.
kl_status kl_fail(kl_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kl_clear_error(void);

/// Checks a caller workspace: non-NULL when needed, large enough, 64-byte aligned.
kl_status kl_check_workspace(const void *ws, size_t have, size_t need);

#define KL_LOG2E 1.4426950408889634f
#define KL_LN2 0.6931471805599453f

static inline size_t kl_round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
static inline int kl_min(int a, int b) { return a < b ? a : b; }
static inline int kl_max(int a, int b) { return a > b ? a : b; }

/// Tiled C (m x n) (+)= A (m x k) B (k x n) over microkernel calls (any m, n).
void kl_gemm_tiled(const kl_ops *ops, int m, int n, int k, const float *a, long rsa, long csa,
                   const float *b, long ldb, float *c, long ldc, const float *rowscale, int acc);

/// Makes OpenBLAS use `threads` threads for the calls that follow.
void kl_blas_threads(int threads);

#endif
