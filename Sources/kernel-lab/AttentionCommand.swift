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
    @OptionGroup var options: BenchmarkOptions

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--heads", heads), ("--seq", seq),
                              ("--kv-seq", kvSeq ?? seq), ("--head-dim", headDim)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        try options.check()
    }

    func run() throws {
        try options.selectISA()
        let benchmark = AttentionBenchmark(
            shape: try AttentionShape(batch: batch, heads: heads, queryLength: seq, keyLength: kvSeq ?? seq, headDim: headDim),
            causal: causal,
            threads: options.resolvedThreads, impls: options.impls, passes: options.passes,
            warmup: options.warmup, repeats: options.repeats, sgemmSize: options.sgemmSize, seed: options.seed)
        let report = try benchmark.run(progress: terminalProgress())
        print(options.json ? try report.json() : report.table())
    }
}
