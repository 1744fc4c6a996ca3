import ArgumentParser
import Foundation
import KernelLab

/// `kernel-lab decode-bench`: whole models decoding, per token, against context length.
struct DecodeBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode-bench",
        abstract: "Time whole models decoding one token against context length, with their state's memory.",
        discussion: """
            For each model (transformer, Mamba, LSTM and an MMAM hybrid of --layers \
            blocks at --d-model; or one --pattern) and each --contexts length L: a \
            decoding state of capacity L, filled with random values as if L - 1 \
            tokens had been decoded, then the token at position L - 1 decoded \
            --repeats times after --warmup (median per token). Memory: the state \
            proper (KV caches, conv and SSM states, h and c) against its closed form \
            2 x attention layers x B x L x d_model x 4 for the KV cache, the whole \
            decoding arena, and the process's resident-set growth. Writes \
            decode-bench.md, .csv and .svg (time and state against context, log-log) \
            into --out. The kernel-level view is `kernel-lab decode`.
            """)

    @Option(help: "Vocabulary size.") var vocab = 32
    @Option(name: .customLong("d-model"), help: "Model width.") var dModel = 256
    @Option(help: "Blocks per model.") var layers = 4
    @Option(help: "Attention heads.") var heads = 8
    @Option(help: "One model of this layer pattern instead of the four defaults (A, M, L).") var pattern: String?
    @Option(parsing: .upToNextOption, help: "Context lengths.") var contexts = [128, 512, 2048, 8192, 32768, 65536]
    @Option(help: "Sequences decoded together.") var batch = 1
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: "Timed steps per point.") var repeats = 9
    @Option(help: "Untimed steps first.") var warmup = 3
    @Option(help: "Output directory.") var out = "reports/decode-bench"

    func validate() throws {
        try validateThreads(threads)
        for (name, value) in [("--vocab", vocab), ("--d-model", dModel), ("--layers", layers), ("--heads", heads), ("--batch", batch),
                              ("--repeats", repeats)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if let bad = contexts.first(where: { $0 < 1 }) { throw ValidationError("--contexts must be positive, got \(bad)") }
        if contexts.isEmpty { throw ValidationError("--contexts needs at least one length") }
        if warmup < 0 { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
    }

    func run() throws {
        let models: [ModelDecodeBenchmark.Model]
        if let pattern {
            models = [.init(name: pattern, config: try ModelConfig(vocabulary: vocab, dModel: dModel, pattern: pattern, heads: heads,
                                                                   position: .rope))]
        } else {
            models = try ModelDecodeBenchmark.defaultModels(vocabulary: vocab, dModel: dModel, layers: layers, heads: heads)
        }
        var config = ModelDecodeBenchmark.Config(models: models)
        (config.contexts, config.batch, config.threads) = (contexts, batch, threadsOrAllCPUs(threads))
        (config.warmup, config.repeats) = (warmup, repeats)
        let system = try SystemInfo.current()
        let rows = try ModelDecodeBenchmark.run(config, progress: terminalProgress())
        let setting = "\(system.activeISA.rawValue), \(config.threads) thread(s), batch \(batch), vocabulary \(vocab), d_model \(dModel), "
            + "\(layers) layers, \(heads) heads"
        let header = "# Decoding per token against context length\n\n\(system.cpuModel); \(setting). Median of \(repeats) steps after "
            + "\(warmup) warm-up, each at position L - 1 of a state filled with random values (as if L - 1 tokens had been decoded)."
        let markdown = ModelDecodeBenchmark.markdown(rows, header: header)
        print(markdown, terminator: "")
        let written = try ModelDecodeBenchmark.write(rows, header: header, caption: "\(system.cpuModel); \(setting)", to: out)
        for path in written { print("wrote \(path)") }
    }
}
