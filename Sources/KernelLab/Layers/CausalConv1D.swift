import CKernels

/// Mamba's causal depthwise conv1d with bias (`kl_conv1d_fwd`/`_bwd`) over
/// `(B, D, L)`, kernel `(D, K)`, zero-padded on the left.
public enum CausalConv1D {
    /// `y[b, c, l] = bias[c] + sum_k weight[c, k] x[b, c, l - K + 1 + k]`.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming the tensor that does not fit.
    public static func forward(_ x: Tensor, weight: Tensor, bias: Tensor?, into y: Tensor, pool: ThreadPool? = nil) throws {
        let (B, D, L, K) = try shapes(x, weight, bias)
        guard y.shape == x.shape else {
            throw KernelLabError.shapeMismatch(argument: "y", expected: describeShape(x.shape) + " (x's shape)", got: describeShape(y.shape))
        }
        try checkDistinct(outputs: [("y", y)], inputs: [("x", x)])
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((x, weight, bias, y)) {
            pool.withUnsafePool { kl_conv1d_fwd(B, D, L, K, x.storage.base, weight.storage.base, bias?.storage.base, y.storage.base, $0) }
        }
        try check(status, "kl_conv1d_fwd")
    }

    /// The gradients of `x`, `weight` and (if given) `bias`; `accumulate` adds to them.
    public static func backward(_ x: Tensor, weight: Tensor, gradOut: Tensor, into dx: Tensor, dWeight: Tensor, dBias: Tensor?,
                                accumulate: Bool = false, pool: ThreadPool? = nil) throws {
        let (B, D, L, K) = try shapes(x, weight, dBias)
        for (name, tensor, shape) in [("gradOut", gradOut, x.shape), ("dx", dx, x.shape), ("dWeight", dWeight, weight.shape)]
            where tensor.shape != shape {
            throw KernelLabError.shapeMismatch(argument: name, expected: describeShape(shape), got: describeShape(tensor.shape))
        }
        try checkDistinct(outputs: [("dx", dx), ("dWeight", dWeight)], inputs: [("x", x), ("gradOut", gradOut), ("weight", weight)])
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((x, weight, gradOut, dx, dWeight, dBias)) {
            pool.withUnsafePool {
                kl_conv1d_bwd(B, D, L, K, x.storage.base, weight.storage.base, gradOut.storage.base, dx.storage.base,
                              dWeight.storage.base, dBias?.storage.base, accumulate ? 1 : 0, $0)
            }
        }
        try check(status, "kl_conv1d_bwd")
    }

    /// One decoding step: `x` and `y` are (B, D), the new time step; `state`
    /// is (B, D, K - 1), the last K - 1 inputs oldest first (zeros at the
    /// start of a sequence), shifted in place to end with x. Stepping a
    /// sequence equals `forward` over it.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming the tensor that does not fit.
    public static func step(_ x: Tensor, weight: Tensor, bias: Tensor?, state: Tensor, into y: Tensor, pool: ThreadPool? = nil) throws {
        guard x.rank == 2, x.shape.allSatisfy({ $0 >= 1 && $0 <= Int(Int32.max) }) else {
            throw KernelLabError.shapeMismatch(argument: "x", expected: "(B, D)", got: describeShape(x.shape))
        }
        let (B, D, K) = try (x.shape[0], x.shape[1], shapes(x.reshaped(x.shape + [1]), weight, bias).3)
        let expected = [("state", state, [B, D, Int(K) - 1]), ("y", y, [B, D])]
        for (name, tensor, shape) in expected where tensor.shape != shape {
            throw KernelLabError.shapeMismatch(argument: name, expected: describeShape(shape), got: describeShape(tensor.shape))
        }
        try checkDistinct(outputs: [("state", state), ("y", y)], inputs: [("x", x), ("weight", weight)] + (bias.map { [("bias", $0)] } ?? []))
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((x, weight, bias, state, y)) {
            pool.withUnsafePool {
                kl_conv1d_step(Int32(B), Int32(D), K, x.storage.base, weight.storage.base, bias?.storage.base, state.storage.base,
                               y.storage.base, $0)
            }
        }
        try check(status, "kl_conv1d_step")
    }

    private static func shapes(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) throws -> (Int32, Int32, Int32, Int32) {
        guard x.rank == 3, x.shape.allSatisfy({ $0 >= 1 && $0 <= Int(Int32.max) }) else {
            throw KernelLabError.shapeMismatch(argument: "x", expected: "(B, D, L)", got: describeShape(x.shape))
        }
        guard weight.rank == 2, weight.shape[0] == x.shape[1], (1...64).contains(weight.shape[1]) else {
            throw KernelLabError.shapeMismatch(argument: "weight", expected: "(D=\(x.shape[1]), K) with 1 <= K <= 64",
                                               got: describeShape(weight.shape))
        }
        if let bias, bias.shape != [x.shape[1]] {
            throw KernelLabError.shapeMismatch(argument: "bias", expected: "(D=\(x.shape[1]),)", got: describeShape(bias.shape))
        }
        return (Int32(x.shape[0]), Int32(x.shape[1]), Int32(x.shape[2]), Int32(weight.shape[1]))
    }
}

extension CausalConv1D {
    /// FLOPs and bytes of one call on `(batch, channels, length)` with kernel width `kernel`.
    public static func cost(batch: Int, channels: Int, length: Int, kernel: Int, pass: KernelPass) throws -> KernelCost {
        var cost = kl_cost()
        try check(kl_conv1d_cost(Int32(clamping: batch), Int32(clamping: channels), Int32(clamping: length), Int32(clamping: kernel),
                                 pass.cValue, &cost), "kl_conv1d_cost")
        return KernelCost(cost)
    }
}
