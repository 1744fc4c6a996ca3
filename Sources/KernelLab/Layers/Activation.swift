import CKernels

/// Element-wise activations of the models' layers (`kl_act_fwd`,
/// `kl_act_bwd`), vectorized per ISA: SiLU (Mamba's gate and conv),
/// GELU in its tanh form (the transformer MLP), softplus (Mamba's dt).
public enum Activation: String, CaseIterable, Codable, Sendable {
    /// `x sigmoid(x)`.
    case silu
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    case geluTanh = "gelu_tanh"
    /// `log(1 + e^x)` (`e^x` below -15, where `1 + e^x` rounds the answer away).
    case softplus

    var cValue: kl_activation {
        switch self {
        case .silu: KL_ACT_SILU
        case .geluTanh: KL_ACT_GELU_TANH
        case .softplus: KL_ACT_SOFTPLUS
        }
    }

    /// Writes `f(x)` into `out`, which has `x`'s shape and may be `x` itself
    /// (in place).
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming `out`; kernel failures.
    public func forward(_ x: Tensor, into out: Tensor, pool: ThreadPool? = nil) throws {
        try Self.expect(out, like: x, argument: "out")
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((x, out)) {
            pool.withUnsafePool { kl_act_fwd(cValue, x.count, x.storage.base, out.storage.base, $0) }
        }
        try check(status, "kl_act_fwd")
    }

    /// `f(x)` in a new tensor.
    public func forward(_ x: Tensor, pool: ThreadPool? = nil) throws -> Tensor {
        let out = try Tensor(shape: x.shape)
        try forward(x, into: out, pool: pool)
        return out
    }

    /// Writes `gradOut * f'(x)` into `dx`, or adds it to `dx` when
    /// `accumulate` (a gradient summed over uses). `dx` may be `gradOut`
    /// itself, never `x`.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming `gradOut` or `dx`,
    ///   `.invalidArgument` when `dx` shares memory with `x`; kernel failures.
    public func backward(_ x: Tensor, gradOut: Tensor, into dx: Tensor, accumulate: Bool = false,
                         pool: ThreadPool? = nil) throws {
        try Self.expect(gradOut, like: x, argument: "gradOut")
        try Self.expect(dx, like: x, argument: "dx")
        try checkDistinct(outputs: [("dx", dx)], inputs: [("x", x)])
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((x, gradOut, dx)) {
            pool.withUnsafePool {
                kl_act_bwd(cValue, x.count, x.storage.base, gradOut.storage.base, dx.storage.base, accumulate ? 1 : 0, $0)
            }
        }
        try check(status, "kl_act_bwd")
    }

    /// FLOPs, exps and bytes of one call over `count` elements.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for a negative count.
    public func cost(count: Int, pass: KernelPass, accumulate: Bool = false) throws -> KernelCost {
        guard count >= 0 else { throw KernelLabError.invalidArgument(argument: "count", reason: "must be >= 0, got \(count)") }
        var cost = kl_cost()
        try check(kl_act_cost(cValue, count, pass.cValue, accumulate ? 1 : 0, &cost), "kl_act_cost")
        return KernelCost(cost)
    }

    private static func expect(_ tensor: Tensor, like x: Tensor, argument: String) throws {
        guard tensor.shape == x.shape else {
            throw KernelLabError.shapeMismatch(argument: argument, expected: describeShape(x.shape) + " (x's shape)",
                                               got: describeShape(tensor.shape))
        }
    }
}
