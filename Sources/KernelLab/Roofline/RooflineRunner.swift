import Foundation

/// The timing of one suite run (a case at one pass and implementation) and
/// its cost model.
public struct RooflineMeasurement: Sendable {
    /// What was run.
    public var run: RooflineRun
    /// The timed calls.
    public var samples: Samples
    /// FLOPs, bytes and exps of one call (`kl_attn_cost` / `kl_scan_cost`).
    public var cost: KernelCost
    /// The call's workspace, its peak extra memory.
    public var workspaceBytes: Int

    /// Creates a measurement (the runner makes them; tests may too).
    public init(run: RooflineRun, samples: Samples, cost: KernelCost, workspaceBytes: Int) {
        self.run = run
        self.samples = samples
        self.cost = cost
        self.workspaceBytes = workspaceBytes
    }
}

/// Runs the cases of a suite through the Swift kernel APIs and times them.
///
/// One pool and one workspace serve the whole suite; each case's inputs and
/// outputs are allocated once, before its timed loops, so the loops allocate
/// nothing. A backward pass is timed alone, as the benchmarks do: its forward
/// runs once, untimed (the fused scan's forward saves its chunk states for
/// the backward, as in training).
public struct RooflineRunner: Sendable {
    /// Threads for every kernel (and OpenBLAS in the unfused ones).
    public var threads: Int
    /// Seed of the random inputs.
    public var seed: UInt64

    /// Creates a runner.
    public init(threads: Int, seed: UInt64 = 0) {
        self.threads = threads
        self.seed = seed
    }

    /// Measures every run of `suite`, in the suite's order. `progress`
    /// receives a line before each run (for a terminal; never part of a report).
    ///
    /// - Throws: `KernelLabError` for a bad thread count or a kernel failure.
    public func measure(_ suite: RooflineSuite, progress: ((String) -> Void)? = nil) throws -> [RooflineMeasurement] {
        let pool = try ThreadPool(threads: threads)
        let workspace = try Workspace()
        let runs = suite.runs
        var measurements: [RooflineMeasurement] = []
        measurements.reserveCapacity(runs.count)
        for (caseIndex, item) in suite.cases.enumerated() {
            let caseRuns = runs.filter { $0.caseIndex == caseIndex }
            let report = { (run: RooflineRun) in
                let position = measurements.count + 1
                progress?("[\(position)/\(runs.count)] \(item.label) \(run.pass.rawValue) \(run.impl.rawValue), "
                          + "\(self.threads) thread(s), \(run.warmup) warm-up + \(run.repeats) timed")
            }
            // The op's one description, made once per case (its gradients only when a backward runs).
            let problem = try item.shape.problem(seed: seed, backward: caseRuns.contains { $0.pass == .backward })
            for run in caseRuns {
                report(run)
                measurements.append(try problem.measure(run, pool: pool, workspace: workspace))
            }
        }
        return measurements
    }
}

extension RooflineCase.Shape {
    /// The op's one description at this shape.
    func problem(seed: UInt64, backward: Bool) throws -> any KernelProblem {
        switch self {
        case let .attention(shape, causal): try AttentionProblem(shape: shape, causal: causal, seed: seed, backward: backward)
        case let .scan(shape): try ScanProblem(shape: shape, seed: seed, backward: backward)
        case let .layer(shape): try LayerProblem(shape: shape, seed: seed, backward: backward)
        }
    }
}
