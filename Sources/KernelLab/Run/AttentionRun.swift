import Foundation

/// Attention on a user's arrays: reads q, k, v (and optionally ALiBi slopes
/// and the output gradient) from `.npy` files, computes, and writes the
/// results as `.npy` files. Backs `kernel-lab run attention`.
///
/// Errors name the argument by its command-line spelling (q, k, v,
/// alibi-slopes, grad-out, grads-dir, out, lse) and are thrown before any
/// output is written when the inputs are at fault.
public struct AttentionRun: Sendable {
    /// Path of q, (B, H, Lq, d).
    public var qPath: String
    /// Path of k, (B, H, Lk, d).
    public var kPath: String
    /// Path of v, (B, H, Lk, d).
    public var vPath: String
    /// Masking, scale and implementation; `options.alibiSlopes` is replaced
    /// by the contents of `alibiSlopesPath` when that is set.
    public var options: AttentionOptions
    /// A `.npy` file with one ALiBi slope per head, shape (H,).
    public var alibiSlopesPath: String?
    /// The implementation to run.
    public var impl: KernelImpl
    /// Threads of the pool.
    public var threads: Int
    /// Where to write out (B, H, Lq, d).
    public var outPath: String
    /// Where to write lse (B, H, Lq), if wanted.
    public var lsePath: String?
    /// The gradient of the loss with respect to out, (B, H, Lq, d). With it,
    /// dq.npy, dk.npy and dv.npy are written into `gradsDirectory`.
    public var gradOutPath: String?
    /// The directory for dq.npy, dk.npy, dv.npy; created if missing.
    public var gradsDirectory: String?
    /// Skip the check that inputs are finite (NaN and Inf then propagate).
    public var allowNonfinite: Bool

    /// Describes a run; `execute()` validates it.
    public init(
        qPath: String, kPath: String, vPath: String, outPath: String,
        options: AttentionOptions = AttentionOptions(), alibiSlopesPath: String? = nil,
        impl: KernelImpl = .fused, threads: Int = 1, lsePath: String? = nil,
        gradOutPath: String? = nil, gradsDirectory: String? = nil, allowNonfinite: Bool = false
    ) {
        self.qPath = qPath
        self.kPath = kPath
        self.vPath = vPath
        self.outPath = outPath
        self.options = options
        self.alibiSlopesPath = alibiSlopesPath
        self.impl = impl
        self.threads = threads
        self.lsePath = lsePath
        self.gradOutPath = gradOutPath
        self.gradsDirectory = gradsDirectory
        self.allowNonfinite = allowNonfinite
    }

    /// What a run wrote.
    public typealias Outcome = RunOutcome<AttentionShape>

    /// Reads, validates, computes and writes.
    ///
    /// - Throws: `KernelLabError` naming the argument at fault: `.io` and
    ///   `.npy` for files, `.shapeMismatch` for inconsistent arrays,
    ///   `.invalidArgument` for non-finite inputs (unless allowed) or options.
    public func execute() throws -> Outcome {
        try checkGradPaths(gradOutPath: gradOutPath, gradsDirectory: gradsDirectory)
        try checkRunThreads(threads)
        // Fail on an unwritable destination before the (possibly long) computation.
        try checkParentDirectory(of: outPath, argument: "out")
        if let lsePath { try checkParentDirectory(of: lsePath, argument: "lse") }

        let q = try load(qPath, argument: "q")
        let k = try load(kPath, argument: "k")
        let v = try load(vPath, argument: "v")
        var options = options
        let shape = try Attention.shape(q: q, k: k, v: v, options: AttentionOptions(causal: options.causal))
        if let alibiSlopesPath {
            let slopes = try load(alibiSlopesPath, argument: "alibi-slopes", checkFinite: true)
            guard slopes.shape == [shape.heads] else {
                throw KernelLabError.shapeMismatch(argument: "alibi-slopes", expected: "(H=\(shape.heads),)", got: describeShape(slopes.shape))
            }
            options.alibiSlopes = slopes.toArray()
        }
        let gradOut = try gradOutPath.map { try load($0, argument: "grad-out") }
        if let gradOut, gradOut.shape != shape.queryShape {
            throw KernelLabError.shapeMismatch(
                argument: "grad-out",
                expected: "(B=\(shape.batch), H=\(shape.heads), Lq=\(shape.queryLength), d=\(shape.headDim)), the shape of q",
                got: describeShape(gradOut.shape))
        }

        let pool = try ThreadPool(threads: threads)
        let (out, lse) = try Attention.forward(q: q, k: k, v: v, options: options, impl: impl, pool: pool)
        var written: [(path: String, shape: [Int])] = []
        try saveOutput(out, to: outPath, written: &written)
        if let lsePath { try saveOutput(lse, to: lsePath, written: &written) }
        if let gradOut, let gradsDirectory {
            let grads = try Attention.backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: gradOut,
                                               options: options, impl: impl, pool: pool)
            try saveGradients([("dq", grads.dq), ("dk", grads.dk), ("dv", grads.dv)],
                              into: gradsDirectory, written: &written)
        }
        var workspace = try Attention.workspaceBytes(shape: shape, options: options, impl: impl, pass: .forward, threads: threads)
        if gradOut != nil {
            workspace = max(workspace, try Attention.workspaceBytes(shape: shape, options: options, impl: impl, pass: .backward, threads: threads))
        }
        return Outcome(shape: shape, written: written, workspaceBytes: workspace)
    }

    private func load(_ path: String, argument: String, checkFinite: Bool? = nil) throws -> Tensor {
        try loadRunInput(path, argument: argument, rejectNonfinite: checkFinite ?? !allowNonfinite,
                         allowable: checkFinite == nil)
    }
}
