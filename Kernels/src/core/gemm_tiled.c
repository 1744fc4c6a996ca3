// Portable tiling over the gemm microkernel: rows by KL_MR, columns by KL_NR_MAX.
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
