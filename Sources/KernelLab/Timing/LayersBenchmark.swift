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

    /// The layer kernels this benchmark times, in order (AdamW last: its
    /// fused and unfused steps alternate call by call).
    public static func shapes(_ c: Config) throws -> [LayerShape] {
        let n = c.count / c.dim * c.dim, rows = n / c.dim
        var shapes = try [LayerShape.Op.silu, .geluTanh, .layerNorm, .rmsNorm].map { try LayerShape(op: $0, rows: rows, dim: c.dim) }
        shapes += try c.vocabularies.filter { n / $0 >= 1 }.map { try LayerShape(op: .crossEntropy, rows: n / $0, dim: $0) }
        shapes += try [LayerShape(op: .sumOfSquares, rows: rows, dim: c.dim), LayerShape(op: .adamw, rows: rows, dim: c.dim)]
        return shapes
    }

    /// - Throws: `KernelLabError` for a bad configuration or a kernel failure.
    public static func run(_ c: Config, progress: ((String) -> Void)? = nil) throws -> Result {
        guard c.count >= c.dim, c.dim >= 1, c.vocabularies.allSatisfy({ $0 >= 1 }), c.repeats >= 1, c.warmup >= 0 else {
            throw KernelLabError.invalidArgument(argument: "count", reason: "need count >= dim >= 1, vocabularies >= 1, repeats >= 1")
        }
        let pool = try ThreadPool(threads: c.threads)
        let workspace = try Workspace()
        var rows: [Row] = []
        var speedup = Double.nan
        for shape in try shapes(c) {
            // Each op's one description (`LayerProblem`), as `bench --suite layers` times it.
            let problem = try LayerProblem(shape: shape, seed: 1, backward: true)
            let name = shape.op == .crossEntropy ? "cross-entropy + gradient V\(shape.dim)" : shape.op.rawValue
            if shape.op == .adamw {
                // Fused and unfused alternately on the same buffers, so drift hits both.
                progress?("adamw fused and unfused")
                let (fused, unfused) = try Benchmark.measureAlternating(warmup: c.warmup, repeats: c.repeats, {
                    try problem.forward(impl: .fused, forBackward: false, pool: pool, workspace: workspace)
                }, {
                    try problem.forward(impl: .unfused, forBackward: false, pool: pool, workspace: workspace)
                })
                for (impl, samples, label) in [(KernelImpl.fused, fused, "adamw fused"), (.unfused, unfused, "adamw unfused (4 passes)")] {
                    let cost = try problem.cost(impl: impl, pass: .forward)
                    rows.append(Row(name: label, samples: samples, bytes: cost.dramBytes, flops: cost.flops))
                }
                speedup = Samples(seconds: zip(unfused.seconds, fused.seconds).map { $0 / $1 }).median
                continue
            }
            for pass in problem.passes {
                let label = problem.passes.count > 1 ? "\(name) \(pass.rawValue)" : name
                progress?(label)
                let samples = try problem.time(impl: .fused, pass: pass, warmup: c.warmup, repeats: c.repeats, pool: pool,
                                               workspace: workspace)
                let cost = try problem.cost(impl: .fused, pass: pass)
                rows.append(Row(name: label, samples: samples, bytes: cost.dramBytes, flops: cost.flops))
            }
        }
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
