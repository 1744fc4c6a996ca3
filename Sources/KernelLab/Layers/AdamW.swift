import CKernels

/// The AdamW optimizer step (`kl_adamw`): decoupled weight decay, bias
/// correction, and the clipping factor fused in, over flat fp32 buffers (the
/// training engine keeps parameters, gradients and both moments each in one
/// buffer, so a whole model steps in one call).
public struct AdamW: Sendable, Equatable {
    /// Step size.
    public var learningRate: Float
    /// First-moment decay.
    public var beta1: Float
    /// Second-moment decay.
    public var beta2: Float
    /// Added to the root of the second moment.
    public var epsilon: Float
    /// Decoupled weight decay (applied as `lr * weightDecay * p`).
    public var weightDecay: Float

    /// Creates the optimizer's hyperparameters (PyTorch's AdamW defaults).
    public init(learningRate: Float, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    /// Updates `parameters`, `m` and `v` in place from `gradients`, each
    /// scaled by `gradScale` first (see `GradientNorm.clipScale`). `step`
    /// counts updates from 1, this one included.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming a buffer whose element
    ///   count differs from `parameters`', `.invalidArgument` for shared
    ///   buffers, a step below 1 or hyperparameters out of range.
    ///
    /// `impl: .unfused` runs the unfused twin (`kl_adamw_unfused`: four
    /// passes over memory, one per update equation), for comparison.
    public func step(parameters: Tensor, gradients: Tensor, m: Tensor, v: Tensor, step: Int, gradScale: Float = 1,
                     impl: KernelImpl = .fused, pool: ThreadPool? = nil) throws {
        for (name, tensor) in [("gradients", gradients), ("m", m), ("v", v)] where tensor.count != parameters.count {
            throw KernelLabError.shapeMismatch(argument: name, expected: "\(parameters.count) elements (parameters')",
                                               got: describeShape(tensor.shape))
        }
        try checkDistinct(outputs: [("parameters", parameters), ("m", m), ("v", v)], inputs: [("gradients", gradients)])
        guard step >= 1 else { throw KernelLabError.invalidArgument(argument: "step", reason: "must be >= 1, got \(step)") }
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        var params = kl_adamw_params(lr: learningRate, beta1: beta1, beta2: beta2, eps: epsilon,
                                     weight_decay: weightDecay, grad_scale: gradScale)
        let status = withExtendedLifetime((parameters, gradients, m, v)) {
            pool.withUnsafePool {
                let run = impl == .fused ? kl_adamw : kl_adamw_unfused
                return run(parameters.count, parameters.storage.base, gradients.storage.base, m.storage.base, v.storage.base,
                           &params, step, $0)
            }
        }
        try check(status, impl == .fused ? "kl_adamw" : "kl_adamw_unfused")
    }

    /// FLOPs and bytes of one step over `count` parameters.
    public static func cost(count: Int, impl: KernelImpl = .fused) throws -> KernelCost {
        var cost = kl_cost()
        try check(impl == .fused ? kl_adamw_cost(count, &cost) : kl_adamw_unfused_cost(count, &cost), "kl_adamw_cost")
        return KernelCost(cost)
    }
}

/// The global gradient norm and its clipping factor.
public enum GradientNorm {
    /// `sqrt(sum of g^2)` over every element of every tensor, accumulated in
    /// double (`kl_sum_squares` per tensor).
    public static func global(_ tensors: [Tensor], pool: ThreadPool? = nil) throws -> Double {
        let pool = try pool ?? ThreadPool(threads: 1)
        var total = 0.0
        for tensor in tensors { total += try sumOfSquares(tensor, pool: pool) }
        return total.squareRoot()
    }

    /// The sum of squares of one tensor's elements, in double (`kl_sum_squares`).
    public static func sumOfSquares(_ tensor: Tensor, pool: ThreadPool? = nil) throws -> Double {
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        var sum = 0.0
        let status = withExtendedLifetime(tensor) {
            pool.withUnsafePool { kl_sum_squares(tensor.count, tensor.storage.base, &sum, $0) }
        }
        try check(status, "kl_sum_squares")
        return sum
    }

    /// FLOPs and bytes of the sum of squares over `count` elements (`kl_sum_squares_cost`).
    public static func cost(count: Int) throws -> KernelCost {
        var cost = kl_cost()
        try check(kl_sum_squares_cost(count, &cost), "kl_sum_squares_cost")
        return KernelCost(cost)
    }

    /// `min(1, maxNorm / norm)`: the `gradScale` that clips to `maxNorm`. A
    /// NaN norm gives NaN, so a diverged step shows in the parameters rather
    /// than being clipped into something finite.
    public static func clipScale(norm: Double, maxNorm: Double) -> Float {
        if norm.isNaN { return .nan }
        return norm > maxNorm ? Float(maxNorm / norm) : 1
    }
}
