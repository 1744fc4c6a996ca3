import CKernels
import Foundation

/// Training throughput of whole models on the engine: tokens per second of
/// full optimizer steps (forward, backward, gradient norm, AdamW) and the
/// memory they hold, and with `profile` the time of every op of a step beside
/// its cost model (FLOPs and bytes), so each op is placed against the
/// machine's roofs.
///
/// Batches are random tokens with every position counted in the loss (the
/// step's work does not depend on the values; the copy task's masks would
/// not change it either).
public enum TrainBenchmark {
    public struct Config: Sendable {
        public var models: [ModelDecodeBenchmark.Model]
        public var batch = 16, seq = 256
        public var threads = [1, 2]
        public var warmup = 2, repeats = 5
        /// Steps timed op by op (0: no profile).
        public var profileSteps = 0
        public var seed: UInt64 = 0
        public init(models: [ModelDecodeBenchmark.Model]) { self.models = models }
    }

    /// The issue's models: vocabulary 32, d_model 256, 4 layers; the
    /// transformer with 8 heads, MLP 4x and RoPE; Mamba with N = 16, expand 2.
    public static func defaultModels(vocabulary: Int = 32, dModel: Int = 256, layers: Int = 4, heads: Int = 8) throws
        -> [ModelDecodeBenchmark.Model]
    {
        // The decode benchmark's transformer and Mamba: the same configurations.
        try ModelDecodeBenchmark.defaultModels(vocabulary: vocabulary, dModel: dModel, layers: layers, heads: heads)
            .filter { ["transformer", "mamba"].contains($0.name) }
    }

    /// One op of a step, summed over its calls (all layers of its kind).
    public struct Op: Sendable {
        /// "attention fwd", "mamba bwd", "model fwd", "optimizer", ...
        public var scope: String
        public var name: String
        public var callsPerStep: Double
        public var secondsPerStep: Double
        /// Cost model per step; nil where the op has none (small Swift loops).
        public var flops: Double?, bytes: Double?
        public var gflops: Double? { flops.map { $0 / secondsPerStep / 1e9 } }
        public var gbs: Double? { bytes.map { $0 / secondsPerStep / 1e9 } }
        /// FLOPs per modelled byte.
        public var intensity: Double? {
            guard let flops, let bytes, bytes > 0 else { return nil }
            return flops / bytes
        }
    }

    public struct Row: Sendable {
        public var model: String
        public var pattern: String
        public var threads: Int
        public var batch: Int, seq: Int
        /// Seconds per optimizer step.
        public var step: Samples
        public var parameters: Int
        /// Parameters, gradients and AdamW's two moments: 16 bytes per parameter.
        public var parameterStateBytes: Int
        /// The activation arena and the kernels' workspace.
        public var activationBytes: Int
        /// Resident-set growth from before the model was made to after the timed steps.
        public var residentGrowthBytes: Int?
        /// The profile (empty without `profileSteps`), most expensive first.
        public var ops: [Op]
        /// Wall time of the profiled steps, per step (the ops' sum falls short by the glue between them).
        public var profiledStepSeconds: Double?
        public var tokensPerSecond: Double { Double(batch * seq) / step.median }
        public var accountedBytes: Int { parameterStateBytes + activationBytes }
    }

    public static func run(_ c: Config, progress: ((String) -> Void)? = nil) throws -> [Row] {
        guard !c.models.isEmpty, !c.threads.isEmpty else {
            throw KernelLabError.invalidArgument(argument: "models", reason: "need at least one model and one thread count")
        }
        guard c.profileSteps >= 0 else {
            throw KernelLabError.invalidArgument(argument: "profileSteps", reason: "must be >= 0, got \(c.profileSteps)")
        }
        var rows: [Row] = []
        for entry in c.models {
            for threads in c.threads {
                progress?("\(entry.name) \(threads) thread(s)")
                rows.append(try measure(entry, threads: threads, c))
            }
        }
        return rows
    }

    private static func measure(_ entry: ModelDecodeBenchmark.Model, threads: Int, _ c: Config) throws -> Row {
        let before = ProcessMemory.residentBytes()
        let model = try LanguageModel(config: entry.config, seed: c.seed)
        let options = TrainingOptions(steps: 1_000_000, learningRate: 1e-4, batch: c.batch, seq: c.seq, seed: c.seed)
        let trainer = try Trainer(model: model, options: options, threads: threads)
        var rng = SplitMix64(seed: c.seed ^ 0x5eed)
        let V = UInt64(entry.config.vocabulary)
        // One fixed random batch: the fill itself stays out of the step's time.
        let tokens = (0..<(c.batch * c.seq)).map { _ in Int32(rng.next() % V) }
        let fill: (TokenBatch, Int) -> Void = { batch, _ in
            if batch.tokens != tokens {
                batch.tokens = tokens
                for i in 0..<tokens.count { batch.targets[i] = tokens[(i + 1) % tokens.count] }
                batch.mask = [Float](repeating: 1, count: tokens.count)
            }
        }
        let samples = try Benchmark.measure(warmup: c.warmup, repeats: c.repeats) { _ = try trainer.trainStep(fill) }
        var ops: [Op] = [], profiled: Double?
        if c.profileSteps > 0 {
            let profiler = OpProfiler()
            OpProfiler.active = profiler
            defer { OpProfiler.active = nil }
            let start = OpProfiler.now()
            for _ in 0..<c.profileSteps { _ = try trainer.trainStep(fill) }
            profiled = (OpProfiler.now() - start) / Double(c.profileSteps)
            let steps = Double(c.profileSteps)
            ops = profiler.entries.map { e in
                Op(scope: e.scope, name: e.name, callsPerStep: Double(e.calls) / steps, secondsPerStep: e.seconds / steps,
                   flops: e.costed ? e.flops / steps : nil, bytes: e.costed ? e.bytes / steps : nil)
            }.sorted { $0.secondsPerStep > $1.secondsPerStep }
        }
        let after = ProcessMemory.residentBytes()
        return Row(model: entry.name, pattern: entry.config.pattern, threads: threads, batch: c.batch, seq: c.seq, step: samples,
                   parameters: model.parameterCount, parameterStateBytes: 16 * model.parameterCount,
                   activationBytes: model.activationBytes, residentGrowthBytes: before.flatMap { b in after.map { $0 - b } },
                   ops: ops, profiledStepSeconds: profiled)
    }

    // MARK: - documents

    /// The machine's roofs for placing ops: compute peak and the read bandwidths of L3 and DRAM.
    public struct Roofs: Sendable {
        public var peakGflops: Double
        public var l3GBs: Double, dramGBs: Double
        public init(peakGflops: Double, l3GBs: Double, dramGBs: Double) {
            self.peakGflops = peakGflops
            self.l3GBs = l3GBs
            self.dramGBs = dramGBs
        }

        /// From a machine profile at `isa` and `threads`; nil where it lacks a figure.
        public init?(profile: MachineProfile, isa: ISA, threads: Int) {
            guard let peak = profile.peakGflops(isa, threads: threads),
                  let l3 = profile.bandwidthGBs(.l3, .read, threads: threads),
                  let dram = profile.bandwidthGBs(.dram, .read, threads: threads) else { return nil }
            self.init(peakGflops: peak, l3GBs: l3, dramGBs: dram)
        }

        /// The L3 and DRAM roofs as dashed lines over intensities a little wider than `xs`.
        func series(spanning xs: [Double]) -> [LinePlot.Series] {
            let lo = min(xs.min() ?? 0.1, 0.1) / 2, hi = max(xs.max() ?? 100, peakGflops / dramGBs) * 2
            return [("L3 roof", l3GBs), ("DRAM roof", dramGBs)].map { name, bw in
                LinePlot.Series(name: name + String(format: " %.0f GB/s", bw),
                                points: [(x: lo, y: lo * bw), (x: peakGflops / bw, y: peakGflops), (x: hi, y: peakGflops)], dashed: true)
            }
        }

        /// The roof an op of this intensity meets when its bytes stream from `bandwidth`.
        func attainable(_ intensity: Double, _ bandwidth: Double) -> Double { min(peakGflops, intensity * bandwidth) }
    }

    public static func markdown(_ rows: [Row], header: String, roofs: [Int: Roofs] = [:]) -> String {
        var out = header + "\n\n"
        out += "| model | threads | batch x seq | ms/step (median) | p10-p90 | tokens/s | parameters | params+grads+AdamW | activations | accounted | RSS growth |\n"
        out += "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rows {
            out += "| \(r.model) | \(r.threads) | \(r.batch) x \(r.seq) | " + String(format: "%.1f | %.1f-%.1f | %.0f", r.step.median * 1e3,
                                                                            r.step.p10 * 1e3, r.step.p90 * 1e3, r.tokensPerSecond)
                + " | \(r.parameters) | \(formatBytes(r.parameterStateBytes)) | \(formatBytes(r.activationBytes)) | "
                + "\(formatBytes(r.accountedBytes)) | " + (r.residentGrowthBytes.map { formatBytes(max($0, 0)) } ?? "-") + " |\n"
        }
        let models = rows.reduce(into: [String]()) { if !$0.contains($1.model) { $0.append($1.model) } }
        var lines: [String] = []
        for name in models {
            let mine = rows.filter { $0.model == name }
            if let one = mine.first(where: { $0.threads == 1 }), let more = mine.first(where: { $0.threads > 1 }) {
                lines.append("- \(name): \(more.threads) threads run " + String(format: "%.2fx", more.tokensPerSecond / one.tokensPerSecond)
                             + " the tokens/s of 1 thread")
            }
        }
        if models.count >= 2 {
            for t in Set(rows.map(\.threads)).sorted() {
                let a = rows.first { $0.model == models[0] && $0.threads == t }, b = rows.first { $0.model == models[1] && $0.threads == t }
                if let a, let b {
                    lines.append("- \(t) thread(s): \(b.model) runs " + String(format: "%.2fx", b.tokensPerSecond / a.tokensPerSecond)
                                 + " the tokens/s of \(a.model)")
                }
            }
        }
        if !lines.isEmpty { out += "\n" + lines.joined(separator: "\n") + "\n" }
        for r in rows where !r.ops.isEmpty {
            out += profileMarkdown(r, roofs: roofs[r.threads])
        }
        return out
    }

    /// One row's profile: each op's share of the step and its place against the roofs.
    static func profileMarkdown(_ r: Row, roofs: Roofs?) -> String {
        let total = r.ops.reduce(0) { $0 + $1.secondsPerStep }
        var out = "\n## Where the time goes: \(r.model), \(r.threads) thread(s)\n\n"
        out += "Profiled step " + String(format: "%.1f ms", (r.profiledStepSeconds ?? 0) * 1e3) + "; its ops sum to "
            + String(format: "%.1f ms", total * 1e3) + " (the rest is glue between calls). "
        if let roofs {
            out += String(format: "Roofs: peak %.0f GFLOP/s, L3 %.0f GB/s, DRAM %.0f GB/s (ridge %.1f and %.1f FLOP/byte). ", roofs.peakGflops,
                          roofs.l3GBs, roofs.dramGBs, roofs.peakGflops / roofs.l3GBs, roofs.peakGflops / roofs.dramGBs)
            out += "\"Bound\" compares the op's intensity with the DRAM ridge; \"of roof\" is its GFLOP/s over min(peak, intensity x L3 "
                + "bandwidth), or for a pure move its GB/s over the L3's (the L3 roof is the one an op whose tensors fit the L3 can "
                + "meet). Bytes are each op's cost model (compulsory traffic for most; see the kernels).\n\n"
        } else {
            out += "(No machine profile: run make report for the roofs.)\n\n"
        }
        out += "| scope | op | calls | ms/step | share | GFLOP/s | GB/s (model) | FLOP/byte | bound | of roof |\n"
        out += "|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n"
        for op in r.ops {
            var cells = [op.scope, op.name, String(format: "%.0f", op.callsPerStep), String(format: "%.2f", op.secondsPerStep * 1e3),
                         String(format: "%.1f%%", 100 * op.secondsPerStep / max(total, 1e-12))]
            cells.append(op.gflops.map { String(format: "%.1f", $0) } ?? "-")
            cells.append(op.gbs.map { String(format: "%.1f", $0) } ?? "-")
            cells.append(op.intensity.map { String(format: "%.2f", $0) } ?? "-")
            if let roofs, let i = op.intensity, let g = op.gflops, i > 0 {
                cells.append(i >= roofs.peakGflops / roofs.dramGBs ? "compute" : "memory")
                cells.append(String(format: "%.0f%%", 100 * g / max(roofs.attainable(i, roofs.l3GBs), 1e-12)))
            } else if let roofs, let bw = op.gbs, op.flops == 0 {
                // A pure move: its bytes against the L3's bandwidth.
                cells += ["memory", String(format: "%.0f%%", 100 * bw / roofs.l3GBs)]
            } else {
                cells += ["-", "-"]
            }
            out += "| " + cells.joined(separator: " | ") + " |\n"
        }
        // By scope: how the step splits between the blocks' passes, the model's ends and the optimizer.
        var byScope: [(String, Double)] = []
        for op in r.ops {
            if let i = byScope.firstIndex(where: { $0.0 == op.scope }) { byScope[i].1 += op.secondsPerStep } else { byScope.append((op.scope, op.secondsPerStep)) }
        }
        out += "\nBy scope: " + byScope.sorted { $0.1 > $1.1 }.map { String(format: "%@ %.1f%%", $0.0, 100 * $0.1 / max(total, 1e-12)) }
            .joined(separator: ", ") + "\n"
        return out
    }

    public static func csv(_ rows: [Row]) -> String {
        var out = "model,pattern,threads,batch,seq,scope,op,calls_per_step,seconds_per_step,flops_per_step,bytes_per_step,step_median_s,tokens_per_s,"
            + "parameters,parameter_state_bytes,activation_bytes,rss_growth_bytes\n"
        for r in rows {
            let tail = ",\(r.step.median),\(r.tokensPerSecond),\(r.parameters),\(r.parameterStateBytes),\(r.activationBytes),"
                + "\(r.residentGrowthBytes.map(String.init) ?? "")\n"
            out += "\(r.model),\(r.pattern),\(r.threads),\(r.batch),\(r.seq),step,step,1,\(r.step.median),,," + tail.dropFirst(1)
            for op in r.ops {
                out += "\(r.model),\(r.pattern),\(r.threads),\(r.batch),\(r.seq),\(op.scope),\"\(op.name)\",\(op.callsPerStep),"
                    + "\(op.secondsPerStep),\(op.flops.map { String($0) } ?? ""),\(op.bytes.map { String($0) } ?? "")" + tail
            }
        }
        return out
    }

    /// Roofline of one profiled row: each op with a cost model at (FLOP/byte, GFLOP/s), one colour per scope, beside the roofs.
    public static func roofline(_ r: Row, roofs: Roofs?, caption: String) -> String {
        let placed = r.ops.filter { ($0.flops ?? 0) > 0 && ($0.bytes ?? 0) > 0 }
        let total = r.ops.reduce(0) { $0 + $1.secondsPerStep }  // shares as in the table: of the profiled ops' sum
        var scopes: [String] = []
        for op in placed where !scopes.contains(op.scope) { scopes.append(op.scope) }
        var series = scopes.map { scope in
            let mine = placed.filter { $0.scope == scope }
            return LinePlot.Series(name: scope, points: mine.map { (x: $0.intensity!, y: $0.gflops!) },
                                   labels: mine.map { $0.name + String(format: " %.0f%%", 100 * $0.secondsPerStep / max(total, 1e-12)) })
        }
        if let roofs { series += roofs.series(spanning: placed.compactMap(\.intensity)) }
        return LinePlot.svg([
            LinePlot(title: "\(r.model) training step, \(r.threads) thread(s): ops on the roofline", xLabel: "FLOPs per modelled byte",
                     yLabel: "GFLOP/s", logX: true, logY: true, series: series),
        ], caption: caption + "; label: op and its share of the step")
    }

    /// Writes train-bench.md, .csv and one roofline SVG per profiled row into `directory`.
    @discardableResult
    public static func write(_ rows: [Row], header: String, caption: String, roofs: [Int: Roofs], to directory: String) throws -> [String] {
        var documents = [("train-bench.md", markdown(rows, header: header, roofs: roofs)), ("train-bench.csv", csv(rows))]
        for r in rows where !r.ops.isEmpty {
            documents.append(("train-bench-\(r.model.replacingOccurrences(of: " ", with: "-"))-\(r.threads)t.svg",
                              roofline(r, roofs: roofs[r.threads], caption: caption)))
        }
        return try writeDocuments(documents.map { (name: $0.0, text: $0.1) }, to: directory)
    }
}
