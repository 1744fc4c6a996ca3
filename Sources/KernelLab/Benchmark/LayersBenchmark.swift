import CKernels

/// The memory-bound layer kernels at a size past the caches: each one's
/// median time, its modelled bytes over that time (GB/s), and, given the
/// machine's DRAM triad bandwidth, the fraction of it reached. AdamW also runs
/// its unfused twin (four passes) in the same loop, call by call.
public enum LayersBenchmark {
    public struct Config: Sendable {
        /// Elements of the element-wise kernels and parameters of AdamW.
        public var count = 1 << 24
        /// Row length of the norms; the cross-entropy's vocabulary.
        public var dim = 1024, vocabulary = 8192
        public var threads = 1, warmup = 2, repeats = 9
        public init() {}
    }

    public struct Row: Sendable {
        public var name: String
        public var samples: Samples
        /// The cost model's DRAM bytes of one call.
        public var bytes: Double
        public var gbs: Double { bytes / samples.median / 1e9 }
    }

    public struct Result: Sendable {
        public var config: Config
        public var rows: [Row]
        /// Median of the per-call ratios unfused / fused AdamW.
        public var adamwSpeedup: Double
    }

    /// - Throws: `KernelLabError` for a bad configuration or a kernel failure.
    public static func run(_ c: Config, progress: ((String) -> Void)? = nil) throws -> Result {
        guard c.count >= c.dim, c.dim >= 1, c.vocabulary >= 1, c.repeats >= 1, c.warmup >= 0 else {
            throw KernelLabError.invalidArgument(argument: "count", reason: "need count >= dim >= 1, vocabulary >= 1, repeats >= 1")
        }
        let pool = try ThreadPool(threads: c.threads)
        let n = c.count / c.dim * c.dim, rowsN = n / c.dim
        let x = try Tensor.random(shape: [rowsN, c.dim], seed: 1), y = try Tensor(shape: [rowsN, c.dim])
        let dy = try Tensor.random(shape: [rowsN, c.dim], seed: 2), dx = try Tensor(shape: [rowsN, c.dim])
        var rows: [Row] = []
        func time(_ name: String, _ cost: KernelCost, _ body: () throws -> Void) throws {
            progress?(name)
            rows.append(Row(name: name, samples: try Benchmark.measure(warmup: c.warmup, repeats: c.repeats, body), bytes: cost.dramBytes))
        }
        for act in [Activation.silu, .geluTanh] {
            try time("\(act.rawValue) forward", act.cost(count: n, pass: .forward)) { try act.forward(x, into: y, pool: pool) }
            try time("\(act.rawValue) backward", act.cost(count: n, pass: .backward)) {
                try act.backward(x, gradOut: dy, into: dx, pool: pool)
            }
        }
        let w = try Tensor.random(shape: [c.dim], seed: 3), b = try Tensor.random(shape: [c.dim], seed: 4)
        let mean = try Tensor(shape: [rowsN]), rstd = try Tensor(shape: [rowsN])
        let dw = try Tensor(shape: [c.dim]), db = try Tensor(shape: [c.dim]), workspace = try Workspace()
        try time("layernorm forward", Normalization.layerNorm.cost(rows: rowsN, dim: c.dim, pass: .forward)) {
            try Normalization.layerNorm.forward(x, weight: w, bias: b, into: y, mean: mean, rstd: rstd, pool: pool)
        }
        try time("layernorm backward", Normalization.layerNorm.cost(rows: rowsN, dim: c.dim, pass: .backward)) {
            try Normalization.layerNorm.backward(x, weight: w, mean: mean, rstd: rstd, gradOut: dy, into: dx, dWeight: dw,
                                                 dBias: db, pool: pool, workspace: workspace)
        }
        try time("rmsnorm forward", Normalization.rmsNorm.cost(rows: rowsN, dim: c.dim, pass: .forward)) {
            try Normalization.rmsNorm.forward(x, weight: w, into: y, mean: nil, rstd: rstd, pool: pool)
        }
        let vRows = n / c.vocabulary
        if vRows >= 1 {
            let logits = try Tensor.random(shape: [vRows, c.vocabulary], seed: 5), grad = try Tensor(shape: [vRows, c.vocabulary])
            let targets = (0..<vRows).map { Int32($0 % c.vocabulary) }
            try time("cross-entropy + gradient", CrossEntropy.cost(rows: vRows, vocabulary: c.vocabulary)) {
                _ = try CrossEntropy.compute(logits: logits, targets: targets, gradient: grad, pool: pool)
            }
        }
        let flat = try x.reshaped([n])
        try time("sum of squares", KernelCost(flops: 2 * Double(n), minBytes: 4 * Double(n), dramBytes: 4 * Double(n), exps: 0)) {
            Benchmark.blackHole(Float(try GradientNorm.global([flat], pool: pool)))
        }
        // AdamW, fused and unfused alternately on the same buffers.
        progress?("adamw fused and unfused")
        let p = try Tensor.random(shape: [n], seed: 6), g = try Tensor.random(shape: [n], seed: 7)
        let m = try Tensor(shape: [n]), v = try Tensor(shape: [n])
        let opt = AdamW(learningRate: 1e-3)
        var step = 0
        let (fused, unfused) = try Benchmark.measureAlternating(warmup: c.warmup, repeats: c.repeats, {
            step += 1
            try opt.step(parameters: p, gradients: g, m: m, v: v, step: step, pool: pool)
        }, {
            step += 1
            try opt.step(parameters: p, gradients: g, m: m, v: v, step: step, impl: .unfused, pool: pool)
        })
        rows.append(Row(name: "adamw fused", samples: fused, bytes: try AdamW.cost(count: n).dramBytes))
        rows.append(Row(name: "adamw unfused (4 passes)", samples: unfused, bytes: try AdamW.cost(count: n, impl: .unfused).dramBytes))
        let speedup = Samples(seconds: zip(unfused.seconds, fused.seconds).map { $0 / $1 }).median
        return Result(config: c, rows: rows, adamwSpeedup: speedup)
    }
}
