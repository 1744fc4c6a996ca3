// General matrix multiply through OpenBLAS: the entry every linear layer of
// the training engine uses, and the square sgemm the benchmarks measure.
//
//   c: (m, n) = alpha op(a) op(b) + beta c        row-major, leading dimensions lda, ldb, ldc
//   op(a): (m, k); a is stored (m, k) (KL_NO_TRANS) or (k, m) (KL_TRANS)
//   op(b): (k, n); b is stored (k, n) or (n, k)
//
// beta = 0 overwrites c without reading it (a NaN left in c does not
// propagate, as BLAS specifies); beta = 1 accumulates, which is how gradients
// of tied weights and of accumulated micro-batches add up without a buffer.
// The pool's thread count is handed to OpenBLAS, whose own threads run the
// call (the pool's workers stay asleep), so a comparison against OpenBLAS
// always runs the same thread count.
//
// Cost (kl_gemm_cost): 2 m n k FLOPs; compulsory bytes 4 (m k + k n + m n),
// plus m n more when beta != 0 (c is read). DRAM traffic is taken as the
// compulsory bytes: an estimate, true when the operands of a blocked GEMM
// fit its cache blocking, low for a skinny product that re-reads a big
// operand per panel.
#include "../core/internal.h"
#include <cblas.h>
#include <limits.h>
#include <string.h>

static size_t gemm_extent(int rows, int cols, long ld) {
    return rows > 0 && cols > 0 ? ((size_t)(rows - 1) * (size_t)ld + (size_t)cols) * sizeof(float) : 0;
}

kl_status kl_gemm(kl_trans ta, kl_trans tb, int m, int n, int k, float alpha, const float *a, long lda,
                  const float *b, long ldb, float beta, float *c, long ldc, kl_pool *pool) {
    if (ta != KL_NO_TRANS && ta != KL_TRANS) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: ta must be KL_NO_TRANS or KL_TRANS");
    if (tb != KL_NO_TRANS && tb != KL_TRANS) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: tb must be KL_NO_TRANS or KL_TRANS");
    if (m < 0 || n < 0 || k < 0)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: sizes must be >= 0 (m=%d n=%d k=%d)", m, n, k);
    if (!pool) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: pool is NULL");
    // Stored shapes: a (ar, ac), b (br, bc).
    int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    // A leading dimension is at least the stored row's length, and at least 1 (BLAS's rule).
    if (lda < kl_max(ac, 1))
        return kl_fail(KL_ERR_SHAPE, "gemm: lda = %ld, expected >= %d (a is stored (%d, %d))", lda, kl_max(ac, 1), ar, ac);
    if (ldb < kl_max(bc, 1))
        return kl_fail(KL_ERR_SHAPE, "gemm: ldb = %ld, expected >= %d (b is stored (%d, %d))", ldb, kl_max(bc, 1), br, bc);
    if (ldc < kl_max(n, 1))
        return kl_fail(KL_ERR_SHAPE, "gemm: ldc = %ld, expected >= %d (c is (%d, %d))", ldc, kl_max(n, 1), m, n);
    if (lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: leading dimensions must be <= %d (OpenBLAS takes int)", INT_MAX);
    if (m == 0 || n == 0) return KL_OK;
    if (!c) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: c is NULL");
    if (k > 0 && (!a || !b)) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: %s is NULL", a ? "b" : "a");
    size_t cx = gemm_extent(m, n, ldc);
    if (k > 0 && kl_overlap(c, cx, a, gemm_extent(ar, ac, lda))) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: c overlaps a");
    if (k > 0 && kl_overlap(c, cx, b, gemm_extent(br, bc, ldb))) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm: c overlaps b");
    if (k == 0 || alpha == 0.0f) {
        // No product: c = beta c (0 writes zeros, as BLAS's beta = 0 does).
        for (int i = 0; i < m; i++) {
            float *row = c + (long)i * ldc;
            if (beta == 0.0f) memset(row, 0, (size_t)n * sizeof(float));
            else if (beta != 1.0f) for (int j = 0; j < n; j++) row[j] *= beta;
        }
        return KL_OK;
    }
    kl_blas_threads(kl_pool_threads(pool));
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                (int)lda, b, (int)ldb, beta, c, (int)ldc);
    return KL_OK;
}

kl_status kl_gemm_cost(int m, int n, int k, float beta, kl_cost *out) {
    if (!out) return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm_cost: out is NULL");
    if (m < 0 || n < 0 || k < 0)
        return kl_fail(KL_ERR_INVALID_ARGUMENT, "gemm_cost: sizes must be >= 0 (m=%d n=%d k=%d)", m, n, k);
    double mn = (double)m * n;
    out->flops = 2.0 * mn * k;
    out->min_bytes = 4.0 * ((double)m * k + (double)k * n + mn * (beta != 0.0f ? 2.0 : 1.0));
    out->dram_bytes = out->l3_bytes = out->l2_bytes = out->min_bytes;
    out->exps = 0;
    return KL_OK;
}
