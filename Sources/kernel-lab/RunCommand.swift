import ArgumentParser
import KernelLab

/// `kernel-lab run`: kernels on the user's own arrays, one subcommand per kernel.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a kernel on your own .npy arrays.",
        subcommands: [RunAttentionCommand.self, RunScanCommand.self])
}

/// `kernel-lab run attention`.
struct RunAttentionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Compute attention on float32 .npy arrays and write the outputs as .npy.",
        discussion: """
            q is (B, H, Lq, d), k and v are (B, H, Lk, d); arrays must be float32 \
            ('<f4') in C order. Writes out (B, H, Lq, d) and, with --lse, the row \
            log-sum-exp (B, H, Lq). With --grad-out (B, H, Lq, d), also writes \
            dq.npy, dk.npy and dv.npy into --grads-dir. Inputs containing NaN or \
            Inf are rejected unless --allow-nonfinite is given.
            """)

    @Option(help: "Queries, (B, H, Lq, d).")
    var q: String
    @Option(help: "Keys, (B, H, Lk, d).")
    var k: String
    @Option(help: "Values, (B, H, Lk, d).")
    var v: String
    @Flag(help: "Causal masking (queries aligned to the end of the keys).")
    var causal = false
    @Option(help: "Softmax scale (default: 1/sqrt(d)).")
    var scale: Float?
    @Option(name: .customLong("alibi-slopes"), help: "ALiBi slopes, a (H,) array.")
    var alibiSlopes: String?
    @Option(help: "Implementation: fused or unfused.")
    var impl: KernelImpl = .fused
    @Option(help: "Threads (default: all CPUs).")
    var threads: Int?
    @Option(help: "Output file for out, (B, H, Lq, d).")
    var out: String
    @Option(help: "Output file for lse, (B, H, Lq).")
    var lse: String?
    @Option(name: .customLong("grad-out"), help: "Gradient of the loss with respect to out, (B, H, Lq, d).")
    var gradOut: String?
    @Option(name: .customLong("grads-dir"), help: "Directory for dq.npy, dk.npy, dv.npy (created if missing).")
    var gradsDir: String?
    @Flag(name: .customLong("allow-nonfinite"), help: "Accept NaN/Inf inputs; they propagate to the outputs.")
    var allowNonfinite = false

    func validate() throws {
        try validateGradOptions(gradOut: gradOut, gradsDir: gradsDir)
        try validateThreads(threads)
        if let scale, !(scale.isFinite && scale > 0) {
            throw ValidationError("--scale must be finite and positive, got \(scale)")
        }
    }

    func run() throws {
        let job = AttentionRun(
            qPath: q, kPath: k, vPath: v, outPath: out,
            options: AttentionOptions(causal: causal, scale: scale),
            alibiSlopesPath: alibiSlopes, impl: impl,
            threads: threadsOrAllCPUs(threads),
            lsePath: lse, gradOutPath: gradOut, gradsDirectory: gradsDir,
            allowNonfinite: allowNonfinite)
        let outcome = try job.execute()
        printWritten(outcome.written)
        printMemory(outcome.workspaceBytes, impl: impl)
    }
}

/// `kernel-lab run scan`.
struct RunScanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Compute the Mamba selective scan on float32 .npy arrays and write the outputs as .npy.",
        discussion: """
            u, delta and z are (B, D, L); A is (D, N); B and C are (B, G, N, L), or \
            (B, N, L) for one group; D and delta-bias are (D,); h0 is (B, D, N). \
            Arrays must be float32 ('<f4') in C order. Writes out (B, D, L) and, with \
            --last-state, the final state (B, D, N). With --grad-out (B, D, L) (and \
            optionally --grad-last (B, D, N)), also writes du.npy, ddelta.npy, dA.npy, \
            dB.npy, dC.npy and, for the optional inputs given, dD.npy, dz.npy, \
            ddelta_bias.npy and dh0.npy into --grads-dir. Inputs containing NaN or \
            Inf are rejected unless --allow-nonfinite is given.
            """)

    @Option(help: "Input sequence u, (B, D, L).")
    var u: String
    @Option(help: "Step sizes delta, (B, D, L).")
    var delta: String
    @Option(name: .customLong("A"), help: "State matrix A, (D, N).")
    var aPath: String
    @Option(name: .customLong("B"), help: "Input projection B, (B, G, N, L) or (B, N, L).")
    var bPath: String
    @Option(name: .customLong("C"), help: "Output projection C, shaped like B.")
    var cPath: String
    @Option(name: .customLong("D"), help: "Skip connection D, (D,).")
    var dPath: String?
    @Option(help: "Gate z, (B, D, L): out = y * silu(z).")
    var z: String?
    @Option(name: .customLong("delta-bias"), help: "Bias added to delta, (D,).")
    var deltaBias: String?
    @Option(help: "Initial state h0, (B, D, N) (default: zeros).")
    var h0: String?
    @Flag(help: "Apply softplus to delta + delta-bias.")
    var softplus = false
    @Option(help: "Implementation: fused or unfused.")
    var impl: KernelImpl = .fused
    @Option(help: "Threads (default: all CPUs).")
    var threads: Int?
    @Option(help: "Output file for out, (B, D, L).")
    var out: String
    @Option(name: .customLong("last-state"), help: "Output file for the last state, (B, D, N).")
    var lastState: String?
    @Option(name: .customLong("grad-out"), help: "Gradient of the loss with respect to out, (B, D, L).")
    var gradOut: String?
    @Option(name: .customLong("grad-last"), help: "Gradient of the loss with respect to the last state, (B, D, N).")
    var gradLast: String?
    @Option(name: .customLong("grads-dir"), help: "Directory for the gradient .npy files (created if missing).")
    var gradsDir: String?
    @Flag(name: .customLong("allow-nonfinite"), help: "Accept NaN/Inf inputs; they propagate to the outputs.")
    var allowNonfinite = false

    func validate() throws {
        try validateGradOptions(gradOut: gradOut, gradsDir: gradsDir)
        if gradLast != nil, gradOut == nil {
            throw ValidationError("--grad-last needs --grad-out and --grads-dir")
        }
        try validateThreads(threads)
    }

    func run() throws {
        let job = ScanRun(
            uPath: u, deltaPath: delta, aPath: aPath, bPath: bPath, cPath: cPath, outPath: out,
            dPath: dPath, zPath: z, deltaBiasPath: deltaBias, h0Path: h0,
            options: ScanOptions(deltaSoftplus: softplus), impl: impl,
            threads: threadsOrAllCPUs(threads),
            lastStatePath: lastState, gradOutPath: gradOut, gradLastPath: gradLast,
            gradsDirectory: gradsDir, allowNonfinite: allowNonfinite)
        let outcome = try job.execute()
        printWritten(outcome.written)
        printMemory(outcome.workspaceBytes, impl: impl)
    }
}
