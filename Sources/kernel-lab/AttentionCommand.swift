import ArgumentParser
import KernelLab

/// `kernel-lab attention`: times the attention kernels on random inputs.
struct AttentionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Time fused and unfused attention on random inputs, next to an OpenBLAS sgemm.",
        discussion: """
            Inputs, outputs and the workspace are allocated once; each timing is the \
            median of --repeats runs after --warmup runs. A backward pass is timed \
            alone (its forward runs once beforehand). GFLOP/s follow FlashAttention's \
            FLOP convention; "of sgemm" compares with a square sgemm on the same \
            threads; "peak extra" is the kernel's workspace, all the memory it adds.
            """)

    enum ImplChoice: String, CaseIterable, ExpressibleByArgument {
        case fused, unfused, both
    }

    enum PassChoice: String, CaseIterable, ExpressibleByArgument {
        case forward, backward, both
    }

    @Option(help: "Batch size B.")
    var batch: Int
    @Option(help: "Heads H.")
    var heads: Int
    @Option(help: "Query sequence length Lq.")
    var seq: Int
    @Option(name: .customLong("kv-seq"), help: "Key/value sequence length Lk (default: --seq).")
    var kvSeq: Int?
    @Option(name: .customLong("head-dim"), help: "Head dimension d.")
    var headDim: Int
    @Flag(help: "Causal masking.")
    var causal = false
    @Option(help: "Threads for the kernels and the sgemm (default: all CPUs).")
    var threads: Int?
    @Option(help: "Pass to time: forward, backward or both.")
    var pass: PassChoice = .forward
    @Option(help: "Implementation to time: fused, unfused or both.")
    var impl: ImplChoice = .both
    @Option(help: "Timed runs per measurement.")
    var repeats = 10
    @Option(help: "Untimed runs before timing.")
    var warmup = 2
    @Option(name: .customLong("sgemm-size"), help: "n of the reference n x n sgemm.")
    var sgemmSize = 2048
    @Option(help: "Kernel ISA to use (scalar, avx2, avx512; default: KERNELLAB_ISA or the best available).")
    var isa: ISA?
    @Option(help: "Seed of the random inputs.")
    var seed: UInt64 = 0
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--heads", heads), ("--seq", seq),
                              ("--kv-seq", kvSeq ?? seq), ("--head-dim", headDim)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if let threads, !(1...ThreadPool.maxThreads).contains(threads) {
            throw ValidationError("--threads must be in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
        guard sgemmSize >= 1 else { throw ValidationError("--sgemm-size must be positive, got \(sgemmSize)") }
    }

    func run() throws {
        if let isa { try ISA.set(isa) }
        let benchmark = AttentionBenchmark(
            shape: try AttentionShape(batch: batch, heads: heads, queryLength: seq, keyLength: kvSeq ?? seq, headDim: headDim),
            causal: causal,
            threads: threads ?? min(SystemInfo.cpuCount, ThreadPool.maxThreads),
            impls: impl == .both ? KernelImpl.allCases : [KernelImpl(rawValue: impl.rawValue)!],
            passes: pass == .both ? KernelPass.allCases : [KernelPass(rawValue: pass.rawValue)!],
            warmup: warmup, repeats: repeats, sgemmSize: sgemmSize, seed: seed)
        let report = try benchmark.run(progress: terminalProgress())
        print(json ? try report.json() : report.table())
    }
}
