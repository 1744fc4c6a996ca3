import ArgumentParser
import KernelLab

/// `kernel-lab run`: kernels on the user's own arrays, one subcommand per kernel.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a kernel on your own .npy arrays.",
        subcommands: [RunAttentionCommand.self])
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
        if (gradOut == nil) != (gradsDir == nil) {
            throw ValidationError("--grad-out and --grads-dir must be given together")
        }
        if let threads, !(1...ThreadPool.maxThreads).contains(threads) {
            throw ValidationError("--threads must be in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        if let scale, !(scale.isFinite && scale > 0) {
            throw ValidationError("--scale must be finite and positive, got \(scale)")
        }
    }

    func run() throws {
        let job = AttentionRun(
            qPath: q, kPath: k, vPath: v, outPath: out,
            options: AttentionOptions(causal: causal, scale: scale),
            alibiSlopesPath: alibiSlopes, impl: impl,
            threads: threads ?? min(SystemInfo.cpuCount, ThreadPool.maxThreads),
            lsePath: lse, gradOutPath: gradOut, gradsDirectory: gradsDir,
            allowNonfinite: allowNonfinite)
        let outcome = try job.execute()
        for file in outcome.written {
            print("wrote \(file.path) \(describe(shape: file.shape))")
        }
    }
}
