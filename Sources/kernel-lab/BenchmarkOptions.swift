import ArgumentParser
import KernelLab

/// The options shared by the kernel benchmark commands (`attention`, `scan`),
/// after their shape options: threads, pass, implementation, timing, sgemm
/// reference, ISA, seed and output format.
struct BenchmarkOptions: ParsableArguments {
    enum ImplChoice: String, CaseIterable, ExpressibleByArgument {
        case fused, unfused, both
    }

    enum PassChoice: String, CaseIterable, ExpressibleByArgument {
        case forward, backward, both
    }

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

    /// Checks these options; the commands call it after checking their
    /// shape, so that shape errors are reported first.
    func check() throws {
        try validateThreads(threads)
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
        guard sgemmSize >= 1 else { throw ValidationError("--sgemm-size must be positive, got \(sgemmSize)") }
    }

    /// `--threads`, or all CPUs.
    var resolvedThreads: Int { threadsOrAllCPUs(threads) }

    /// The implementations `--impl` names.
    var impls: [KernelImpl] { impl == .both ? KernelImpl.allCases : [KernelImpl(rawValue: impl.rawValue)!] }

    /// The passes `--pass` names.
    var passes: [KernelPass] { pass == .both ? KernelPass.allCases : [KernelPass(rawValue: pass.rawValue)!] }

    /// Selects `--isa`, if given, before anything runs.
    func selectISA() throws {
        if let isa { try ISA.set(isa) }
    }

}
