import ArgumentParser
import KernelLab

/// `kernel-lab scan`: times the selective-scan kernels on random inputs.
struct ScanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Time fused and unfused Mamba selective scan on random inputs, next to an OpenBLAS sgemm.",
        discussion: """
            Inputs follow Mamba's defaults (D, z and delta_bias given, softplus on, \
            A = -(1..N) per channel). Inputs, outputs and the workspace are allocated \
            once; each timing is the median of --repeats runs after --warmup runs. A \
            backward pass is timed alone, as in training: its forward runs once \
            beforehand and saves its chunk states, which the fused backward reuses. \
            "ns/elem" is the median over B*D*L; "peak extra" is the kernel's workspace \
            plus, for the fused backward, the saved states.
            """)

    @Option(help: "Batch size B.")
    var batch: Int
    @Option(help: "Channels D.")
    var channels: Int
    @Option(help: "Sequence length L.")
    var seq: Int
    @Option(help: "State size N per channel (at most \(ScanShape.maxState)).")
    var state: Int
    @Option(help: "Groups G sharing B and C (must divide --channels).")
    var groups = 1
    @OptionGroup var options: BenchmarkOptions

    func validate() throws {
        for (name, value) in [("--batch", batch), ("--channels", channels), ("--seq", seq),
                              ("--state", state), ("--groups", groups)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        guard state <= ScanShape.maxState else {
            throw ValidationError("--state must be at most \(ScanShape.maxState), got \(state)")
        }
        guard channels % groups == 0 else {
            throw ValidationError("--groups must divide --channels (\(channels)), got \(groups)")
        }
        try options.check()
    }

    func run() throws {
        try options.selectISA()
        let benchmark = ScanBenchmark(
            shape: try ScanShape(batch: batch, channels: channels, seqLen: seq, state: state, groups: groups),
            threads: options.resolvedThreads, impls: options.impls, passes: options.passes,
            warmup: options.warmup, repeats: options.repeats, sgemmSize: options.sgemmSize, seed: options.seed)
        let report = try benchmark.run(progress: terminalProgress())
        print(options.json ? try report.json() : report.table())
    }
}
