import CKernels

/// The memory-bound layer kernels at a size past the caches: each one's
/// median time, its modelled bytes over that time (GB/s), and, given the
/// machine's DRAM triad bandwidth, the fraction of it reached. AdamW also runs
/// its unfused twin (four passes) in the same loop, call by call.
public enum LayersBenchmark {
    public struct Config: Sendable {
        /// Elements of the element-wise kernels and parameters of AdamW.
        public var count = 1 << 24
        /// Row length of the norms.
        public var dim = 1024
        /// The cross-entropy's vocabularies: a copy task's 32, a middle one, GPT-2's 50257.
        public var vocabularies = [32, 8192, 50257]
        public var threads = 1, warmup = 2, repeats = 9
        public init() {}
    }

    public struct Row: Sendable {
        public var name: String
        public var samples: Samples
        /// The cost model's DRAM bytes and FLOPs of one call.
        public var bytes: Double
        public var flops: Double
        public var gbs: Double { bytes / samples.median / 1e9 }
        public var gflops: Double { flops / samples.median / 1e9 }
        /// FLOPs per modelled byte (the roofline's x).
        public var intensity: Double { flops / max(bytes, 1) }
    }

    public struct Result: Sendable {
        public var config: Config
        public var rows: [Row]
        /// Median of the per-call ratios unfused / fused AdamW.
        public var adamwSpeedup: Double
    }

    /// - Throws: `KernelLabError` for a bad configuration or a kernel failure.
    public static func run(_ c: Config, progress: ((String) -> Void)? = nil) throws -> Result {
        guard c.count >= c.dim, c.dim >= 1, c.vocabularies.allSatisfy({ $0 >= 1 }), c.repeats >= 1, c.warmup >= 0 else {
            throw KernelLabError.invalidArgument(argument: "count", reason: "need count >= dim >= 1, vocabularies >= 1, repeats >= 1")
        }
        let pool = try ThreadPool(threads: c.threads)
        let n = c.count / c.dim * c.dim, rowsN = n / c.dim
        let x = try Tensor.random(shape: [rowsN, c.dim], seed: 1), y = try Tensor(shape: [rowsN, c.dim])
        let dy = try Tensor.random(shape: [rowsN, c.dim], seed: 2), dx = try Tensor(shape: [rowsN, c.dim])
        var rows: [Row] = []
        func time(_ name: String, _ cost: KernelCost, _ body: () throws -> Void) throws {
            progress?(name)
            rows.append(Row(name: name, samples: try Benchmark.measure(warmup: c.warmup, repeats: c.repeats, body), bytes: cost.dramBytes,
                            flops: cost.flops))
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
        for vocabulary in c.vocabularies {
            let vRows = n / vocabulary
            guard vRows >= 1 else { continue }
            let logits = try Tensor.random(shape: [vRows, vocabulary], seed: 5), grad = try Tensor(shape: [vRows, vocabulary])
            let targets = (0..<vRows).map { Int32($0 % vocabulary) }
            try time("cross-entropy + gradient V\(vocabulary)", CrossEntropy.cost(rows: vRows, vocabulary: vocabulary)) {
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
        let fusedCost = try AdamW.cost(count: n), unfusedCost = try AdamW.cost(count: n, impl: .unfused)
        rows.append(Row(name: "adamw fused", samples: fused, bytes: fusedCost.dramBytes, flops: fusedCost.flops))
        rows.append(Row(name: "adamw unfused (4 passes)", samples: unfused, bytes: unfusedCost.dramBytes, flops: unfusedCost.flops))
        let speedup = Samples(seconds: zip(unfused.seconds, fused.seconds).map { $0 / $1 }).median
        return Result(config: c, rows: rows, adamwSpeedup: speedup)
    }
}

// MARK: - Report

extension LayersBenchmark {
    /// The machine's figures a report divides by (from its profile, at the run's threads).
    public struct Roofs: Sendable {
        public var triadGBs: Double
        public var roofs: TrainBenchmark.Roofs
        public init(triadGBs: Double, roofs: TrainBenchmark.Roofs) {
            self.triadGBs = triadGBs
            self.roofs = roofs
        }
    }

    /// A table: each kernel's time, GB/s and their share of the DRAM triad, its
    /// intensity and place on the roofline (memory- or compute-bound by the DRAM
    /// ridge; GFLOP/s over the DRAM and L3 roofs at its intensity).
    public static func markdown(_ r: Result, header: String, roofs: Roofs?) -> String {
        var out = header + "\n\n"
        out += "| kernel | median ms | p10-p90 ms | GB/s (model) | of triad | FLOP/byte | GFLOP/s | bound | of DRAM roof | of L3 roof |\n"
        out += "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
        for row in r.rows {
            let s = row.samples
            var line = "| \(row.name) | " + String(format: "%.3f | %.3f-%.3f | %.1f | ", s.median * 1e3, s.p10 * 1e3, s.p90 * 1e3, row.gbs)
            guard let roofs else {
                out += line + String(format: "- | %.2f | %.1f | - | - | - |\n", row.intensity, row.gflops)
                continue
            }
            let m = roofs.roofs, ridge = m.peakGflops / m.dramGBs
            let dram = min(m.peakGflops, row.intensity * m.dramGBs), l3 = min(m.peakGflops, row.intensity * m.l3GBs)
            // A pure move (no FLOPs) is placed by bandwidth alone.
            let ofDram = row.flops > 0 ? row.gflops / dram : row.gbs / m.dramGBs
            let ofL3 = row.flops > 0 ? row.gflops / l3 : row.gbs / m.l3GBs
            line += String(format: "%.0f%% | %.2f | %.1f | ", 100 * row.gbs / roofs.triadGBs, row.intensity, row.gflops)
                + (row.intensity < ridge ? "memory" : "compute") + String(format: " | %.0f%% | %.0f%% |\n", 100 * ofDram, 100 * ofL3)
            out += line
        }
        out += String(format: "\nAdamW fused over unfused: %.2fx (median of per-call ratios, the two alternating on the same buffers).\n",
                      r.adamwSpeedup)
        return out
    }

    public static func csv(_ r: Result) -> String {
        var out = "kernel,median_s,p10_s,p90_s,bytes,flops,gbs,gflops,intensity\n"
        for row in r.rows {
            out += "\"\(row.name)\"," + String(format: "%.9g,%.9g,%.9g,%.9g,%.9g,%.6g,%.6g,%.6g\n", row.samples.median, row.samples.p10,
                                                 row.samples.p90, row.bytes, row.flops, row.gbs, row.gflops, row.intensity)
        }
        return out
    }

    /// The kernels as points on the roofline, beside the DRAM and L3 roofs.
    public static func roofline(_ r: Result, roofs: Roofs?, caption: String) -> String {
        let placed = r.rows.filter { $0.flops > 0 }
        var series = [LinePlot.Series(name: "layer kernels", points: placed.map { (x: $0.intensity, y: $0.gflops) },
                                      labels: placed.map(\.name))]
        if let m = roofs?.roofs { series += m.series(spanning: placed.map(\.intensity)) }
        return LinePlot.svg([
            LinePlot(title: "layer kernels on the roofline (\(r.config.threads) thread(s), \(r.config.count) elements)",
                     xLabel: "FLOPs per modelled byte", yLabel: "GFLOP/s", logX: true, logY: true, series: series),
        ], caption: caption)
    }

    /// Writes layers.md, layers.csv and layers-roofline.svg into `directory`, each whole or not at all.
    @discardableResult
    public static func write(_ r: Result, header: String, caption: String, roofs: Roofs?, to directory: String) throws -> [String] {
        try writeDocuments([(name: "layers.md", text: markdown(r, header: header, roofs: roofs)), (name: "layers.csv", text: csv(r)),
                            (name: "layers-roofline.svg", text: roofline(r, roofs: roofs, caption: caption))], to: directory)
    }
}
