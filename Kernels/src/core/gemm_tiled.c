// Portable tiling over the gemm microkernel (rows by KL_MR, columns by
// KL_NR_MAX) and the portable transpose.
#include "internal.h"

void kl_gemm_tiled(const kl_ops *ops, int m, int n, int k, const float *a, long rsa, long csa,
                   const float *b, long ldb, float *c, long ldc, const float *rowscale, int acc) {
    for (int n0 = 0; n0 < n; n0 += KL_NR_MAX) {
        int nc = kl_min(KL_NR_MAX, n - n0);
        for (int m0 = 0; m0 < m; m0 += KL_MR)
            ops->gemm(kl_min(KL_MR, m - m0), nc, k, a + m0 * rsa, rsa, csa, b + n0, ldb,
                      c + (long)m0 * ldc + n0, ldc, rowscale ? rowscale + m0 : NULL, acc);
    }
}

void kl_transpose_scalar(const float *src, int rows, int cols, long lds, float *dst, long ldd) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) dst[(long)c * ldd + r] = src[(long)r * lds + c];
}
