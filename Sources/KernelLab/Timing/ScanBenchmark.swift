import Foundation

/// Times the selective-scan kernels for one shape: each requested
/// implementation and pass, plus an OpenBLAS sgemm of the same thread count
/// as reference.
///
/// Inputs follow Mamba's defaults (`ScanProblem`, the op's one description,
/// which the roofline runner and the traffic probe time too).
///
/// A backward pass is timed alone, as in training: the forward runs once,
/// untimed, saving its chunk states, and the fused backward reuses them. Its
/// peak extra memory counts those saved states beside the workspace. The
/// unfused backward ignores saved states (it rematerializes every state), so
/// it is neither given nor charged them.
///
/// Inputs, outputs, saved states and one workspace (sized for the largest
/// call) are allocated once before timing, so timed loops allocate no buffers.
public struct ScanBenchmark: Sendable {
    /// The sizes of the call.
    public var shape: ScanShape
    /// Threads for the kernels and for the reference sgemm.
    public var threads: Int
    /// Implementations to time, in order.
    public var impls: [KernelImpl]
    /// Passes to time, in order.
    public var passes: [KernelPass]
    /// Untimed calls before timing.
    public var warmup: Int
    /// Timed calls; the report gives their median.
    public var repeats: Int
    /// The size n of the reference n x n sgemm.
    public var sgemmSize: Int
    /// Seed of the random inputs.
    public var seed: UInt64

    /// Creates a benchmark description; `run()` validates it.
    public init(
        shape: ScanShape, threads: Int = 1,
        impls: [KernelImpl] = KernelImpl.allCases, passes: [KernelPass] = [.forward],
        warmup: Int = 2, repeats: Int = 10, sgemmSize: Int = 2048, seed: UInt64 = 0
    ) {
        self.shape = shape
        self.threads = threads
        self.impls = impls
        self.passes = passes
        self.warmup = warmup
        self.repeats = repeats
        self.sgemmSize = sgemmSize
        self.seed = seed
    }

    /// Runs the benchmark. `progress`, if given, receives a line before each
    /// timed section (for a terminal; never part of the report).
    ///
    /// - Throws: `KernelLabError` for invalid settings or a kernel failure.
    public func run(progress: ((String) -> Void)? = nil) throws -> ScanBenchmarkReport {
        try validateBenchmarkSettings(impls: impls, passes: passes, warmup: warmup, repeats: repeats)
        let pool = try ThreadPool(threads: threads)
        let isa = try ISA.active

        // The op's one description gives the inputs, the timing, the cost and the workspace.
        let problem = try ScanProblem(shape: shape, seed: seed, backward: passes.contains(.backward))
        let workspace = try Workspace(bytes: try largestWorkspace(impls: impls, passes: passes) { impl, pass in
            try problem.workspaceBytes(impl: impl, pass: pass, threads: threads)
        })

        let sgemm = try referenceSgemm(n: sgemmSize, threads: threads, warmup: warmup, repeats: repeats, progress: progress)

        var results: [ScanBenchmarkResult] = []
        for pass in passes {
            for impl in impls {
                progress?("scan \(impl.rawValue) \(pass.rawValue) \(shape), \(threads) thread(s)")
                let savedBytes = pass == .backward ? (problem.savedStates(for: impl)?.count ?? 0) * MemoryLayout<Float>.stride : 0
                let samples = try problem.time(impl: impl, pass: pass, warmup: warmup, repeats: repeats, pool: pool,
                                               workspace: workspace)
                let cost = try problem.cost(impl: impl, pass: pass)
                let gflops = gigaflopsPerSecond(flops: cost.flops, seconds: samples.median)
                let workspaceBytes = try problem.workspaceBytes(impl: impl, pass: pass, threads: threads)
                results.append(ScanBenchmarkResult(
                    impl: impl, pass: pass, threads: threads, isa: isa, shape: shape,
                    samples: samples, flops: cost.flops, gflops: gflops,
                    fractionOfSgemm: sgemm.fraction(of: gflops),
                    workspaceBytes: workspaceBytes, savedStateBytes: savedBytes))
            }
        }
        return ScanBenchmarkReport(results: results, sgemm: sgemm)
    }
}

/// One timed (implementation, pass) of a scan benchmark.
public struct ScanBenchmarkResult: KernelBenchmarkResult {
    /// Always "scan".
    public var kernel = "scan"
    /// The implementation timed.
    public var impl: KernelImpl
    /// The pass timed.
    public var pass: KernelPass
    /// Threads of the pool.
    public var threads: Int
    /// The ISA path the kernels used.
    public var isa: ISA
    /// B.
    public var batch: Int
    /// D.
    public var channels: Int
    /// L.
    public var seq: Int
    /// N.
    public var state: Int
    /// G.
    public var groups: Int
    /// Timed runs.
    public var repeats: Int
    /// Median time of one call.
    public var medianSeconds: Double
    /// 10th-percentile time of one call.
    public var p10Seconds: Double
    /// 90th-percentile time of one call.
    public var p90Seconds: Double
    /// Fastest call.
    public var minSeconds: Double
    /// The median time per (batch, channel, step) element, in nanoseconds.
    public var nsPerElement: Double
    /// FLOPs of one call, by the kernel's convention (`Scan.cost`).
    public var flops: Double
    /// `flops` over the median time.
    public var gflops: Double
    /// `gflops` over the reference sgemm's GFLOP/s.
    public var fractionOfSgemm: Double
    /// The call's workspace.
    public var workspaceBytes: Int
    /// The forward's saved chunk states that the timed backward read (0 for
    /// the forward, and for the unfused backward, which does not use them).
    public var savedStateBytes: Int
    /// All the extra memory of the call: workspace plus saved states.
    public var peakExtraBytes: Int

    init(impl: KernelImpl, pass: KernelPass, threads: Int, isa: ISA, shape: ScanShape,
         samples: Samples, flops: Double, gflops: Double, fractionOfSgemm: Double,
         workspaceBytes: Int, savedStateBytes: Int) {
        self.impl = impl
        self.pass = pass
        self.threads = threads
        self.isa = isa
        batch = shape.batch
        channels = shape.channels
        seq = shape.seqLen
        state = shape.state
        groups = shape.groups
        repeats = samples.seconds.count
        medianSeconds = samples.median
        p10Seconds = samples.p10
        p90Seconds = samples.p90
        minSeconds = samples.min
        nsPerElement = samples.median * 1e9 / Double(shape.elements)
        self.flops = flops
        self.gflops = gflops
        self.fractionOfSgemm = fractionOfSgemm
        self.workspaceBytes = workspaceBytes
        self.savedStateBytes = savedStateBytes
        peakExtraBytes = workspaceBytes + savedStateBytes
    }

    enum CodingKeys: String, CodingKey {
        case kernel, impl, pass, threads, isa, batch, channels, seq, state, groups, repeats
        case medianSeconds = "median_seconds"
        case p10Seconds = "p10_seconds"
        case p90Seconds = "p90_seconds"
        case minSeconds = "min_seconds"
        case nsPerElement = "ns_per_element"
        case flops, gflops
        case fractionOfSgemm = "fraction_of_sgemm"
        case workspaceBytes = "workspace_bytes"
        case savedStateBytes = "saved_state_bytes"
        case peakExtraBytes = "peak_extra_bytes"
    }
}

/// The outcome of a `ScanBenchmark` run.
public typealias ScanBenchmarkReport = KernelBenchmarkReport<ScanBenchmarkResult>

extension KernelBenchmarkReport where Result == ScanBenchmarkResult {
    /// The report as an aligned text table followed by the sgemm reference
    /// and the fused/unfused speedups. A row's speedup is the unfused median
    /// of its pass over its own ("-" unless both implementations ran).
    public func table() -> String {
        var rows = [["impl", "pass", "threads", "isa", "shape BxDxLxNxG", "median ms", "ns/elem",
                     "GFLOP/s", "peak extra", "speedup"]]
        for r in results {
            let speedup = speedups[r.pass.rawValue].map { (fused: Double) in
                String(format: "%.2fx", r.impl == .fused ? fused : 1.0)
            } ?? "-"
            rows.append([
                r.impl.rawValue, r.pass.rawValue, String(r.threads), r.isa.rawValue,
                "\(r.batch)x\(r.channels)x\(r.seq)x\(r.state)x\(r.groups)",
                String(format: "%.3f", r.medianSeconds * 1e3), String(format: "%.2f", r.nsPerElement),
                String(format: "%.1f", r.gflops), formatBytes(r.peakExtraBytes), speedup,
            ])
        }
        return table(rows, rightAligned: [2, 5, 6, 7, 8, 9])
    }
}
