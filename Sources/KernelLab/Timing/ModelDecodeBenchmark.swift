import Foundation

/// Per-token time and memory of whole models decoding one token, against
/// context length: the transformer's KV cache grows with the context, the
/// Mamba and LSTM states do not (the other side of the copy paper's trade-off).
///
/// Each (model, context L) is measured on a fresh decoding state of capacity
/// L whose every value is filled with small random numbers as if L - 1
/// tokens had been decoded (`fillDecodingState`: decoding 65536 tokens first
/// would take minutes and not change the time of a step); each timed call
/// then decodes the token at position L - 1 (attention reads all L cached
/// keys). Memory is the model's own accounting (state bytes, the whole
/// decoding arena) and the process's resident-set growth from before the
/// state was made to after the timed steps (/proc/self/status VmRSS).
public enum ModelDecodeBenchmark {
    /// A model to decode with, by name.
    public struct Model: Sendable {
        public var name: String
        public var config: ModelConfig
        public init(name: String, config: ModelConfig) {
            self.name = name
            self.config = config
        }
    }

    public struct Config: Sendable {
        public var models: [Model]
        public var contexts = [128, 512, 2048, 8192, 32768, 65536]
        public var batch = 1, threads = 1, warmup = 3, repeats = 9
        public var seed: UInt64 = 0
        public init(models: [Model]) { self.models = models }
    }

    /// The configuration: vocabulary 32, d_model 256, 4 layers; the
    /// transformer with 8 heads and RoPE, Mamba with N = 16 and expand 2, the
    /// LSTM, and the hybrid MMAM (one attention layer in four).
    public static func defaultModels(vocabulary: Int = 32, dModel: Int = 256, layers: Int = 4, heads: Int = 8) throws -> [Model] {
        let attention = String(repeating: "A", count: layers), mamba = String(repeating: "M", count: layers)
        var hybrid = Array(mamba)
        if layers >= 2 { hybrid[layers - 2] = "A" }
        return [
            Model(name: "transformer", config: try ModelConfig(vocabulary: vocabulary, dModel: dModel, pattern: attention, heads: heads,
                                                                position: .rope)),
            Model(name: "mamba", config: try ModelConfig(vocabulary: vocabulary, dModel: dModel, pattern: mamba)),
            Model(name: "lstm", config: try ModelConfig(vocabulary: vocabulary, dModel: dModel, pattern: String(repeating: "L", count: layers))),
            Model(name: "hybrid " + String(hybrid), config: try ModelConfig(vocabulary: vocabulary, dModel: dModel, pattern: String(hybrid),
                                                                             heads: heads, position: .rope)),
        ]
    }

    public struct Row: Sendable {
        public var model: String
        public var pattern: String
        public var context: Int
        /// Seconds per decoding step (one token per sequence).
        public var step: Samples
        /// Bytes of state proper (KV caches, conv and SSM states, h and c).
        public var stateBytes: Int
        /// The same from the closed form (`expectedStateBytes`).
        public var expectedStateBytes: Int
        /// Bytes of the KV caches alone: 2 x attention layers x B x L x d_model x 4.
        public var kvCacheBytes: Int
        /// The whole decoding arena: state, step buffers, workspace.
        public var arenaBytes: Int
        /// Resident-set growth over the measurement; nil without /proc.
        public var residentGrowthBytes: Int?
        public var parameterBytes: Int
        public var batch: Int
        public var tokensPerSecond: Double { Double(batch) / step.median }
    }

    /// State bytes of `config` at `batch` x `capacity`, in closed form:
    /// attention 2 B L D floats (K and V), Mamba B d_inner (K - 1 + N), LSTM 2 B D.
    public static func expectedStateBytes(_ config: ModelConfig, batch: Int, capacity: Int) -> Int {
        var floats = 0
        for kind in config.pattern {
            switch kind {
            case "A": floats += 2 * batch * capacity * config.dModel
            case "M": floats += batch * config.dInner * (config.convKernel - 1 + config.dState)
            case "L": floats += 2 * batch * config.dModel
            default: break
            }
        }
        return floats * 4
    }

    public static func run(_ c: Config, progress: ((String) -> Void)? = nil) throws -> [Row] {
        guard !c.models.isEmpty, !c.contexts.isEmpty, c.contexts.allSatisfy({ $0 >= 1 }) else {
            throw KernelLabError.invalidArgument(argument: "contexts", reason: "need at least one model and positive context lengths")
        }
        var rows: [Row] = []
        for entry in c.models {
            let model = try LanguageModel(config: entry.config, seed: c.seed)
            let attentionLayers = entry.config.pattern.filter { $0 == "A" }.count
            let tokens = (0..<c.batch).map { Int32($0 % entry.config.vocabulary) }
            var logits: [Float] = []
            for L in c.contexts {
                progress?("\(entry.name) L=\(L)")
                let before = ProcessMemory.residentBytes()
                let arena = try model.prepareDecoding(batch: c.batch, capacity: L, threads: c.threads)
                try model.fillDecodingState(position: L - 1, seed: c.seed &+ UInt64(L))
                let samples = try Benchmark.measure(warmup: c.warmup, repeats: c.repeats) {
                    try model.rewindDecoding(to: L - 1)
                    try model.decodeStep(tokens, logits: &logits)
                }
                let after = ProcessMemory.residentBytes()
                rows.append(Row(model: entry.name, pattern: entry.config.pattern, context: L, step: samples,
                                stateBytes: model.decodingStateBytes,
                                expectedStateBytes: expectedStateBytes(entry.config, batch: c.batch, capacity: L),
                                kvCacheBytes: 2 * attentionLayers * c.batch * L * entry.config.dModel * 4, arenaBytes: arena,
                                residentGrowthBytes: before.flatMap { b in after.map { $0 - b } },
                                parameterBytes: model.parameterCount * 4, batch: c.batch))
                model.releaseDecoding()
            }
        }
        return rows
    }

    /// The table: one row per (model, context).
    public static func markdown(_ rows: [Row], header: String) -> String {
        var out = header + "\n\n"
        out += "| model | context | ms/token (median) | p10-p90 | tokens/s | state | of which KV cache | state = closed form | decoding arena | RSS growth |\n"
        out += "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
        for r in rows {
            out += "| \(r.model) | \(r.context) | " + String(format: "%.4f", r.step.median * 1e3) + " | "
                + String(format: "%.4f-%.4f", r.step.p10 * 1e3, r.step.p90 * 1e3) + " | " + String(format: "%.0f", r.tokensPerSecond)
                + " | \(formatBytes(r.stateBytes)) | \(formatBytes(r.kvCacheBytes)) | "
                + (r.stateBytes == r.expectedStateBytes ? "exact" : "differs: \(r.expectedStateBytes) B") + " | \(formatBytes(r.arenaBytes)) | "
                + (r.residentGrowthBytes.map { formatBytes(max($0, 0)) } ?? "-") + " |\n"
        }
        let models = rows.reduce(into: [String]()) { if !$0.contains($1.model) { $0.append($1.model) } }
        out += "\nGrowth of the per-token time and of the state from the shortest to the longest context:\n\n"
        for name in models {
            let mine = rows.filter { $0.model == name }
            guard let first = mine.first, let last = mine.last, mine.count > 1 else { continue }
            out += "- \(name) (\(first.pattern), \(formatBytes(first.parameterBytes)) of parameters): L \(first.context) -> \(last.context): time x"
                + String(format: "%.2f", last.step.median / first.step.median) + ", state x"
                + String(format: "%.2f", Double(last.stateBytes) / Double(max(first.stateBytes, 1))) + "\n"
        }
        return out
    }

    public static func csv(_ rows: [Row]) -> String {
        var out = "model,pattern,context,batch,step_median_s,step_p10_s,step_p90_s,tokens_per_s,state_bytes,kv_cache_bytes,arena_bytes,rss_growth_bytes,parameter_bytes\n"
        for r in rows {
            out += "\(r.model),\(r.pattern),\(r.context),\(r.batch),\(r.step.median),\(r.step.p10),\(r.step.p90),\(r.tokensPerSecond),"
                + "\(r.stateBytes),\(r.kvCacheBytes),\(r.arenaBytes),\(r.residentGrowthBytes.map(String.init) ?? ""),\(r.parameterBytes)\n"
        }
        return out
    }

    /// Two log-log panels: per-token time and state against context.
    public static func svg(_ rows: [Row], caption: String) -> String {
        let models = rows.reduce(into: [String]()) { if !$0.contains($1.model) { $0.append($1.model) } }
        func series(_ value: (Row) -> Double) -> [LinePlot.Series] {
            models.map { name in
                LinePlot.Series(name: name, points: rows.filter { $0.model == name }.map { (x: Double($0.context), y: value($0)) })
            }
        }
        return LinePlot.svg([
            LinePlot(title: "Time per token", xLabel: "context length (tokens)", yLabel: "ms per token (median)", logX: true, logY: true,
                     series: series { $0.step.median * 1e3 }),
            LinePlot(title: "Decoding state", xLabel: "context length (tokens)", yLabel: "state (MiB)", logX: true, logY: true,
                     series: series { Double($0.stateBytes) / 1_048_576 }),
        ], caption: caption)
    }

    /// Writes decode-bench.md, .csv and .svg into `directory`, each whole or not at all.
    @discardableResult
    public static func write(_ rows: [Row], header: String, caption: String, to directory: String) throws -> [String] {
        try writeDocuments([("decode-bench.md", markdown(rows, header: header)), ("decode-bench.csv", csv(rows)),
                            ("decode-bench.svg", svg(rows, caption: caption))], to: directory)
    }
}
