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

    enum ImplChoice: String, CaseIterable, ExpressibleByArgument {
        case fused, unfused, both
    }

    enum PassChoice: String, CaseIterable, ExpressibleByArgument {
        case forward, backward, both
    }

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
        if let threads, !(1...ThreadPool.maxThreads).contains(threads) {
            throw ValidationError("--threads must be in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
        guard sgemmSize >= 1 else { throw ValidationError("--sgemm-size must be positive, got \(sgemmSize)") }
    }

    func run() throws {
        if let isa { try ISA.set(isa) }
        let benchmark = ScanBenchmark(
            shape: try ScanShape(batch: batch, channels: channels, seqLen: seq, state: state, groups: groups),
            threads: threads ?? min(SystemInfo.cpuCount, ThreadPool.maxThreads),
            impls: impl == .both ? KernelImpl.allCases : [KernelImpl(rawValue: impl.rawValue)!],
            passes: pass == .both ? KernelPass.allCases : [KernelPass(rawValue: pass.rawValue)!],
            warmup: warmup, repeats: repeats, sgemmSize: sgemmSize, seed: seed)
        let report = try benchmark.run(progress: terminalProgress())
        print(json ? try report.json() : report.table())
    }
}
