import Foundation

/// Times the attention kernels for one shape: each requested implementation
/// and pass, plus an OpenBLAS sgemm of the same thread count as reference.
///
/// Inputs, outputs and one workspace (sized for the largest call) are
/// allocated once before timing, so timed loops allocate no buffers.
public struct AttentionBenchmark: Sendable {
    /// The sizes of the call.
    public var shape: AttentionShape
    /// Causal masking.
    public var causal: Bool
    /// Threads for the kernels and for the reference sgemm.
    public var threads: Int
    /// Implementations to time, in order.
    public var impls: [KernelImpl]
    /// Passes to time, in order. A backward pass is timed alone: its forward
    /// runs once, untimed, to produce out and lse.
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
        shape: AttentionShape, causal: Bool = false, threads: Int = 1,
        impls: [KernelImpl] = KernelImpl.allCases, passes: [KernelPass] = [.forward],
        warmup: Int = 2, repeats: Int = 10, sgemmSize: Int = 2048, seed: UInt64 = 0
    ) {
        self.shape = shape
        self.causal = causal
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
    public func run(progress: ((String) -> Void)? = nil) throws -> AttentionBenchmarkReport {
        try validateBenchmarkSettings(impls: impls, passes: passes, warmup: warmup, repeats: repeats)
        let pool = try ThreadPool(threads: threads)
        let isa = try ISA.active
        // The op's one description gives the inputs, the timing, the cost and the workspace.
        let problem = try AttentionProblem(shape: shape, causal: causal, seed: seed, backward: passes.contains(.backward))
        let workspace = try Workspace(bytes: try largestWorkspace(impls: impls, passes: passes) { impl, pass in
            try problem.workspaceBytes(impl: impl, pass: pass, threads: threads)
        })

        let sgemm = try referenceSgemm(n: sgemmSize, threads: threads, warmup: warmup, repeats: repeats, progress: progress)

        var results: [AttentionBenchmarkResult] = []
        for pass in passes {
            for impl in impls {
                progress?("attention \(impl.rawValue) \(pass.rawValue) \(shape)\(causal ? " causal" : ""), \(threads) thread(s)")
                let samples = try problem.time(impl: impl, pass: pass, warmup: warmup, repeats: repeats, pool: pool,
                                               workspace: workspace)
                let cost = try problem.cost(impl: impl, pass: pass)
                let gflops = gigaflopsPerSecond(flops: cost.flops, seconds: samples.median)
                results.append(AttentionBenchmarkResult(
                    impl: impl, pass: pass, threads: threads, isa: isa, shape: shape, causal: causal,
                    samples: samples, flops: cost.flops, gflops: gflops,
                    fractionOfSgemm: sgemm.fraction(of: gflops),
                    peakExtraBytes: try problem.workspaceBytes(impl: impl, pass: pass, threads: threads)))
            }
        }
        return AttentionBenchmarkReport(results: results, sgemm: sgemm)
    }
}

/// One timed (implementation, pass) of an attention benchmark.
public struct AttentionBenchmarkResult: KernelBenchmarkResult {
    /// Always "attention".
    public var kernel = "attention"
    /// The implementation timed.
    public var impl: KernelImpl
    /// The pass timed.
    public var pass: KernelPass
    /// Threads of the pool (and of OpenBLAS for the unfused kernel).
    public var threads: Int
    /// The ISA path the kernels used.
    public var isa: ISA
    /// B.
    public var batch: Int
    /// H.
    public var heads: Int
    /// Lq.
    public var seq: Int
    /// Lk.
    public var kvSeq: Int
    /// d.
    public var headDim: Int
    /// Causal masking.
    public var causal: Bool
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
    /// FLOPs of one call, by the kernel's convention (`Attention.cost`).
    public var flops: Double
    /// `flops` over the median time.
    public var gflops: Double
    /// `gflops` over the reference sgemm's GFLOP/s.
    public var fractionOfSgemm: Double
    /// The call's workspace: all the extra memory it uses.
    public var peakExtraBytes: Int

    init(impl: KernelImpl, pass: KernelPass, threads: Int, isa: ISA, shape: AttentionShape, causal: Bool,
         samples: Samples, flops: Double, gflops: Double, fractionOfSgemm: Double, peakExtraBytes: Int) {
        self.impl = impl
        self.pass = pass
        self.threads = threads
        self.isa = isa
        batch = shape.batch
        heads = shape.heads
        seq = shape.queryLength
        kvSeq = shape.keyLength
        headDim = shape.headDim
        self.causal = causal
        repeats = samples.seconds.count
        medianSeconds = samples.median
        p10Seconds = samples.p10
        p90Seconds = samples.p90
        minSeconds = samples.min
        self.flops = flops
        self.gflops = gflops
        self.fractionOfSgemm = fractionOfSgemm
        self.peakExtraBytes = peakExtraBytes
    }

    enum CodingKeys: String, CodingKey {
        case kernel, impl, pass, threads, isa, batch, heads, seq
        case kvSeq = "kv_seq"
        case headDim = "head_dim"
        case causal, repeats
        case medianSeconds = "median_seconds"
        case p10Seconds = "p10_seconds"
        case p90Seconds = "p90_seconds"
        case minSeconds = "min_seconds"
        case flops, gflops
        case fractionOfSgemm = "fraction_of_sgemm"
        case peakExtraBytes = "peak_extra_bytes"
    }
}

/// The outcome of an `AttentionBenchmark` run.
public typealias AttentionBenchmarkReport = KernelBenchmarkReport<AttentionBenchmarkResult>

extension KernelBenchmarkReport where Result == AttentionBenchmarkResult {
    /// The report as an aligned text table followed by the sgemm reference
    /// and the fused/unfused speedups.
    public func table() -> String {
        var rows = [["impl", "pass", "threads", "isa", "shape BxHxLqxLkxd", "causal",
                     "median ms", "GFLOP/s", "of sgemm", "peak extra"]]
        for r in results {
            rows.append([
                r.impl.rawValue, r.pass.rawValue, String(r.threads), r.isa.rawValue,
                "\(r.batch)x\(r.heads)x\(r.seq)x\(r.kvSeq)x\(r.headDim)", r.causal ? "yes" : "no",
                String(format: "%.3f", r.medianSeconds * 1e3), String(format: "%.1f", r.gflops),
                String(format: "%.1f%%", r.fractionOfSgemm * 100), formatBytes(r.peakExtraBytes),
            ])
        }
        return table(rows, rightAligned: [2, 6, 7, 8, 9])
    }
}
