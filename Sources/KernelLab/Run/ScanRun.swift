import Foundation

/// The selective scan on a user's arrays: reads the inputs (and optionally
/// the output gradients) from `.npy` files, computes, and writes the results
/// as `.npy` files. Backs `kernel-lab run scan`.
///
/// Errors name the argument by its command-line spelling (u, delta, A, B, C,
/// D, z, delta-bias, h0, grad-out, grad-last, grads-dir, out, last-state) and
/// are thrown before any output is written when the inputs are at fault.
public struct ScanRun: Sendable {
    /// Path of u, (B, D, L).
    public var uPath: String
    /// Path of delta, (B, D, L).
    public var deltaPath: String
    /// Path of A, (D, N).
    public var aPath: String
    /// Path of B, (B, G, N, L) or (B, N, L).
    public var bPath: String
    /// Path of C, shaped like B.
    public var cPath: String
    /// Path of D, (D,), if given.
    public var dPath: String?
    /// Path of z, (B, D, L), if given.
    public var zPath: String?
    /// Path of delta_bias, (D,), if given.
    public var deltaBiasPath: String?
    /// Path of h0, (B, D, N), if given.
    public var h0Path: String?
    /// Softplus on delta.
    public var options: ScanOptions
    /// The implementation to run.
    public var impl: KernelImpl
    /// Threads of the pool.
    public var threads: Int
    /// Where to write out (B, D, L).
    public var outPath: String
    /// Where to write the last state (B, D, N), if wanted.
    public var lastStatePath: String?
    /// The gradient of the loss with respect to out, (B, D, L). With it,
    /// du.npy, ddelta.npy, dA.npy, dB.npy, dC.npy and, for the optional
    /// inputs given, dD.npy, dz.npy, ddelta_bias.npy and dh0.npy are written
    /// into `gradsDirectory`.
    public var gradOutPath: String?
    /// The gradient with respect to the last state, (B, D, N); needs `gradOutPath`.
    public var gradLastPath: String?
    /// The directory for the gradients; created if missing.
    public var gradsDirectory: String?
    /// Skip the check that inputs are finite (NaN and Inf then propagate).
    public var allowNonfinite: Bool

    /// Describes a run; `execute()` validates it.
    public init(
        uPath: String, deltaPath: String, aPath: String, bPath: String, cPath: String, outPath: String,
        dPath: String? = nil, zPath: String? = nil, deltaBiasPath: String? = nil, h0Path: String? = nil,
        options: ScanOptions = ScanOptions(), impl: KernelImpl = .fused, threads: Int = 1,
        lastStatePath: String? = nil, gradOutPath: String? = nil, gradLastPath: String? = nil,
        gradsDirectory: String? = nil, allowNonfinite: Bool = false
    ) {
        self.uPath = uPath
        self.deltaPath = deltaPath
        self.aPath = aPath
        self.bPath = bPath
        self.cPath = cPath
        self.outPath = outPath
        self.dPath = dPath
        self.zPath = zPath
        self.deltaBiasPath = deltaBiasPath
        self.h0Path = h0Path
        self.options = options
        self.impl = impl
        self.threads = threads
        self.lastStatePath = lastStatePath
        self.gradOutPath = gradOutPath
        self.gradLastPath = gradLastPath
        self.gradsDirectory = gradsDirectory
        self.allowNonfinite = allowNonfinite
    }

    /// What a run wrote.
    public typealias Outcome = RunOutcome<ScanShape>

    /// Reads, validates, computes and writes.
    ///
    /// - Throws: `KernelLabError` naming the argument at fault: `.io` and
    ///   `.npy` for files, `.shapeMismatch` for inconsistent arrays,
    ///   `.invalidArgument` for non-finite inputs (unless allowed) or options.
    public func execute() throws -> Outcome {
        try checkGradPaths(gradOutPath: gradOutPath, gradsDirectory: gradsDirectory)
        if gradLastPath != nil, gradOutPath == nil {
            throw KernelLabError.invalidArgument(argument: "grad-last", reason: "needs grad-out and grads-dir")
        }
        try checkRunThreads(threads)
        // Fail on an unwritable destination before the (possibly long) computation.
        try checkParentDirectory(of: outPath, argument: "out")
        if let lastStatePath { try checkParentDirectory(of: lastStatePath, argument: "last-state") }

        let u = try load(uPath, argument: "u")
        let delta = try load(deltaPath, argument: "delta")
        let a = try load(aPath, argument: "A")
        let b = try load(bPath, argument: "B")
        let c = try load(cPath, argument: "C")
        let d = try dPath.map { try load($0, argument: "D") }
        let z = try zPath.map { try load($0, argument: "z") }
        let deltaBias = try deltaBiasPath.map { try load($0, argument: "delta-bias") }
        let h0 = try h0Path.map { try load($0, argument: "h0") }
        let shape: ScanShape
        do {
            shape = try Scan.shape(u: u, delta: delta, A: a, B: b, C: c, D: d, z: z, deltaBias: deltaBias, h0: h0)
        } catch KernelLabError.shapeMismatch("deltaBias", let expected, let got) {
            throw KernelLabError.shapeMismatch(argument: "delta-bias", expected: expected, got: got)
        }
        let gradOut = try gradOutPath.map { try load($0, argument: "grad-out") }
        if let gradOut, gradOut.shape != shape.sequenceShape {
            throw KernelLabError.shapeMismatch(
                argument: "grad-out",
                expected: "(B=\(shape.batch), D=\(shape.channels), L=\(shape.seqLen)), the shape of u",
                got: describeShape(gradOut.shape))
        }
        let gradLast = try gradLastPath.map { try load($0, argument: "grad-last") }
        if let gradLast, gradLast.shape != shape.stateShape {
            throw KernelLabError.shapeMismatch(
                argument: "grad-last", expected: "(B=\(shape.batch), D=\(shape.channels), N=\(shape.state))",
                got: describeShape(gradLast.shape))
        }

        let pool = try ThreadPool(threads: threads)
        let forward = try Scan.forward(u: u, delta: delta, A: a, B: b, C: c, D: d, z: z, deltaBias: deltaBias, h0: h0,
                                       options: options, impl: impl, pool: pool, saveStates: gradOut != nil)
        var written: [(path: String, shape: [Int])] = []
        try saveOutput(forward.out, to: outPath, written: &written)
        if let lastStatePath { try saveOutput(forward.lastState, to: lastStatePath, written: &written) }
        if let gradOut, let gradsDirectory {
            let grads = try Scan.backward(u: u, delta: delta, A: a, B: b, C: c, D: d, z: z, deltaBias: deltaBias, h0: h0,
                                          gradOut: gradOut, gradLast: gradLast, saved: forward.saved,
                                          options: options, impl: impl, pool: pool)
            try saveGradients([
                ("du", grads.du), ("ddelta", grads.ddelta), ("dA", grads.dA), ("dB", grads.dB), ("dC", grads.dC),
                ("dD", grads.dD), ("dz", grads.dz), ("ddelta_bias", grads.ddeltaBias),
                ("dh0", h0 == nil ? nil : grads.dh0),
            ], into: gradsDirectory, written: &written)
        }
        var workspace = try Scan.workspaceBytes(shape: shape, impl: impl, pass: .forward, threads: threads, options: options)
        if gradOut != nil {
            workspace = max(workspace, try Scan.workspaceBytes(shape: shape, impl: impl, pass: .backward, threads: threads, options: options))
        }
        return Outcome(shape: shape, written: written, workspaceBytes: workspace)
    }

    private func load(_ path: String, argument: String) throws -> Tensor {
        try loadRunInput(path, argument: argument, rejectNonfinite: !allowNonfinite)
    }
}
