import CKernels

/// LayerNorm and RMSNorm over a tensor's last dimension (`kl_layernorm_*`,
/// `kl_rmsnorm_*`): the pre-norms of the transformer and Mamba blocks.
/// The forward saves each row's `rstd` (and LayerNorm's `mean`) for the
/// backward, which needs no other state.
public enum Normalization: String, CaseIterable, Codable, Sendable {
    /// `(x - mean) rstd weight + bias`, `rstd = 1 / sqrt(var + eps)`.
    case layerNorm = "layer_norm"
    /// `x rstd weight`, `rstd = 1 / sqrt(mean(x^2) + eps)`.
    case rmsNorm = "rms_norm"

    /// Normalizes the rows of `x` (the last dimension, `d`) into `y` (`x`'s
    /// shape, may be `x`); writes `rstd` and, for LayerNorm, `mean` (one per
    /// row: `x`'s shape without its last dimension).
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming the tensor that does
    ///   not fit; `.invalidArgument` for a bias or mean RMSNorm does not take
    ///   or a missing one LayerNorm needs; kernel failures.
    public func forward(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, epsilon: Float = 1e-5, into y: Tensor,
                        mean: Tensor?, rstd: Tensor, pool: ThreadPool? = nil) throws {
        let (rows, d) = try Self.rowsAndDim(x)
        try expect(weight, [d], "weight", "(d=\(d),)")
        if let bias { try expect(bias, [d], "bias", "(d=\(d),)") }
        try expect(y, x.shape, "y", describeShape(x.shape) + " (x's shape)")
        try expect(rstd, Array(x.shape.dropLast()), "rstd", describeShape(Array(x.shape.dropLast())))
        try checkStatistics(mean: mean, bias: bias, x: x)
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((x, weight, bias, y, mean, rstd)) {
            pool.withUnsafePool { pool -> kl_status in
                switch self {
                case .layerNorm:
                    kl_layernorm_fwd(rows, Int32(d), x.storage.base, weight.storage.base, bias?.storage.base, epsilon,
                                     y.storage.base, mean!.storage.base, rstd.storage.base, pool)
                case .rmsNorm:
                    kl_rmsnorm_fwd(rows, Int32(d), x.storage.base, weight.storage.base, epsilon, y.storage.base,
                                   rstd.storage.base, pool)
                }
            }
        }
        try check(status, "kl_\(rawValue.replacingOccurrences(of: "_", with: ""))_fwd")
    }

    /// The gradients from the forward's `mean` and `rstd`: `dx` (`x`'s shape;
    /// may be `gradOut`), `dWeight` and, for LayerNorm, `dBias` (`(d,)`).
    /// `accumulate` adds all of them to what they hold.
    public func backward(_ x: Tensor, weight: Tensor, mean: Tensor?, rstd: Tensor, gradOut: Tensor, into dx: Tensor,
                         dWeight: Tensor, dBias: Tensor? = nil, accumulate: Bool = false,
                         pool: ThreadPool? = nil, workspace: Workspace? = nil) throws {
        let (rows, d) = try Self.rowsAndDim(x)
        try expect(weight, [d], "weight", "(d=\(d),)")
        try expect(gradOut, x.shape, "gradOut", describeShape(x.shape) + " (x's shape)")
        try expect(dx, x.shape, "dx", describeShape(x.shape) + " (x's shape)")
        try expect(dWeight, [d], "dWeight", "(d=\(d),)")
        try expect(rstd, Array(x.shape.dropLast()), "rstd", describeShape(Array(x.shape.dropLast())))
        try checkStatistics(mean: mean, bias: dBias, x: x)
        if self == .layerNorm, dBias == nil {
            throw KernelLabError.invalidArgument(argument: "dBias", reason: "LayerNorm's backward writes the bias gradient; pass a (d=\(d),) tensor")
        }
        if let dBias { try expect(dBias, [d], "dBias", "(d=\(d),)") }
        try checkDistinct(outputs: [("dx", dx), ("dWeight", dWeight)] + (dBias.map { [("dBias", $0)] } ?? []),
                          inputs: [("x", x), ("weight", weight)])
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let needed = Self.backwardWorkspaceBytes(dim: d, threads: pool.threads)
        let workspace = try workspace ?? Workspace(bytes: needed)
        try workspace.ensure(bytes: needed)
        let status = withExtendedLifetime((x, weight, mean, rstd, gradOut, dx, dWeight, dBias)) {
            workspace.withUnsafeMutableRawBufferPointer { scratch in
                pool.withUnsafePool { pool -> kl_status in
                    switch self {
                    case .layerNorm:
                        kl_layernorm_bwd(rows, Int32(d), x.storage.base, weight.storage.base, mean!.storage.base, rstd.storage.base,
                                         gradOut.storage.base, dx.storage.base, dWeight.storage.base, dBias!.storage.base,
                                         accumulate ? 1 : 0, scratch.baseAddress, scratch.count, pool)
                    case .rmsNorm:
                        kl_rmsnorm_bwd(rows, Int32(d), x.storage.base, weight.storage.base, rstd.storage.base, gradOut.storage.base,
                                       dx.storage.base, dWeight.storage.base, accumulate ? 1 : 0, scratch.baseAddress,
                                       scratch.count, pool)
                    }
                }
            }
        }
        try check(status, "kl_\(rawValue.replacingOccurrences(of: "_", with: ""))_bwd")
    }

    /// The backward's workspace (per-thread partial sums of the weight gradients).
    public static func backwardWorkspaceBytes(dim: Int, threads: Int) -> Int {
        Int(kl_norm_bwd_workspace_bytes(Int32(clamping: dim), Int32(clamping: threads)))
    }

    /// FLOPs and bytes of one call over `rows` rows of `dim`.
    public func cost(rows: Int, dim: Int, pass: KernelPass, accumulate: Bool = false) throws -> KernelCost {
        var cost = kl_cost()
        try check(kl_norm_cost(self == .rmsNorm ? 1 : 0, rows, Int32(clamping: dim), pass.cValue, accumulate ? 1 : 0, &cost),
                  "kl_norm_cost")
        return KernelCost(cost)
    }

    private static func rowsAndDim(_ x: Tensor) throws -> (Int, Int) {
        guard let d = x.shape.last, d >= 1, d <= Int(Int32.max) else {
            throw KernelLabError.shapeMismatch(argument: "x", expected: "(..., d) with d >= 1", got: describeShape(x.shape))
        }
        return (x.count / d, d)
    }

    /// LayerNorm needs `mean` (and its bias or bias gradient, `bias`);
    /// RMSNorm takes neither.
    private func checkStatistics(mean: Tensor?, bias: Tensor?, x: Tensor) throws {
        switch self {
        case .layerNorm:
            guard let mean else { throw KernelLabError.invalidArgument(argument: "mean", reason: "LayerNorm needs it") }
            try expect(mean, Array(x.shape.dropLast()), "mean", describeShape(Array(x.shape.dropLast())))
        case .rmsNorm:
            if mean != nil { throw KernelLabError.invalidArgument(argument: "mean", reason: "RMSNorm has no mean; pass nil") }
            if bias != nil { throw KernelLabError.invalidArgument(argument: "bias", reason: "RMSNorm has no bias; pass nil") }
        }
    }

    private func expect(_ tensor: Tensor, _ shape: [Int], _ argument: String, _ expected: String) throws {
        guard tensor.shape == shape else {
            throw KernelLabError.shapeMismatch(argument: argument, expected: expected, got: describeShape(tensor.shape))
        }
    }
}
