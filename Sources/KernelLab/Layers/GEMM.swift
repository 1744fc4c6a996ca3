import CKernels

/// General matrix multiply on 2-D tensors, through OpenBLAS (`kl_gemm`):
/// `c = alpha op(a) op(b) + beta c`, the product every linear layer is made of.
///
/// `op(x)` is `x` or its transpose, so a layer's backward needs no copy:
/// `dX = dY W^T` and `dW += X^T dY` are calls with `transposeB` and
/// `transposeA`. `beta: 1` accumulates into `c` (gradients of tied weights,
/// micro-batches); `beta: 0` overwrites it without reading it. The pool's
/// thread count is OpenBLAS's for the call.
public enum GEMM {
    /// Writes `alpha op(a) op(b) + beta c` into `c`.
    ///
    /// - Parameters:
    ///   - a: `(m, k)`, or `(k, m)` when `transposeA`.
    ///   - b: `(k, n)`, or `(n, k)` when `transposeB`.
    ///   - c: `(m, n)`; must not share memory with `a` or `b`.
    /// - Throws: `KernelLabError.shapeMismatch` naming the operand whose
    ///   shape does not fit, `.invalidArgument` for an output that shares
    ///   memory with an input, and kernel failures.
    public static func multiply(_ a: Tensor, transposeA: Bool = false, _ b: Tensor, transposeB: Bool = false,
                                into c: Tensor, alpha: Float = 1, beta: Float = 0, pool: ThreadPool? = nil) throws {
        guard a.rank == 2 else {
            throw KernelLabError.shapeMismatch(argument: "a", expected: transposeA ? "(k, m)" : "(m, k)", got: describeShape(a.shape))
        }
        let (m, k) = transposeA ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
        let expectedB = transposeB ? "(n, k=\(k))" : "(k=\(k), n)"
        guard b.rank == 2, (transposeB ? b.shape[1] : b.shape[0]) == k else {
            throw KernelLabError.shapeMismatch(argument: "b", expected: expectedB, got: describeShape(b.shape))
        }
        let n = transposeB ? b.shape[0] : b.shape[1]
        guard c.shape == [m, n] else {
            throw KernelLabError.shapeMismatch(argument: "c", expected: "(m=\(m), n=\(n))", got: describeShape(c.shape))
        }
        for (name, value) in [("m", m), ("n", n), ("k", k)] where value > Int(Int32.max) {
            throw KernelLabError.invalidArgument(argument: name, reason: "\(value) exceeds the C API limit of \(Int32.max)")
        }
        try checkDistinct(outputs: [("c", c)], inputs: [("a", a), ("b", b)])
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((a, b, c)) {
            pool.withUnsafePool { pool in
                kl_gemm(transposeA ? KL_TRANS : KL_NO_TRANS, transposeB ? KL_TRANS : KL_NO_TRANS,
                        Int32(m), Int32(n), Int32(k), alpha, a.storage.base, max(a.shape[1], 1), b.storage.base, max(b.shape[1], 1),
                        beta, c.storage.base, max(n, 1), pool)
            }
        }
        try check(status, "kl_gemm")
    }

    /// FLOPs (`2 m n k`) and bytes (compulsory, `c` read too when `beta != 0`)
    /// of one call.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for a negative size.
    public static func cost(m: Int, n: Int, k: Int, beta: Float = 0) throws -> KernelCost {
        for (name, value) in [("m", m), ("n", n), ("k", k)] where value < 0 || value > Int(Int32.max) {
            throw KernelLabError.invalidArgument(argument: name, reason: "must be in 0...\(Int32.max), got \(value)")
        }
        var cost = kl_cost()
        try check(kl_gemm_cost(Int32(m), Int32(n), Int32(k), beta, &cost), "kl_gemm_cost")
        return KernelCost(cost)
    }
}
