import ArgumentParser
import Foundation
import KernelLab

/// `kernel-lab train-bench`: training throughput and memory of whole models, and where a step's time goes.
struct TrainBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-bench",
        abstract: "Time full training steps of a transformer and a Mamba model; with --profile, every op of a step on the roofline.",
        discussion: """
            Each model (vocabulary 32, --layers blocks at --d-model; the transformer with \
            --heads heads, MLP 4x, RoPE; Mamba with N = 16, expand 2) trains on random \
            batches of --batch x --seq tokens, every position in the loss. A step is \
            forward, backward, global gradient norm and AdamW; tokens/s = batch x seq \
            over the median step after --warmup. Memory: parameters, gradients and AdamW's \
            moments (16 bytes per parameter), the activation arena and workspaces, and the \
            process's resident-set growth. --profile times every op of --profile-steps steps \
            on its own and places it by its cost model against this machine's roofs \
            (Profiles/machines/, from make report). With --torch PYTHON (a Python with \
            torch, e.g. make compare's .venv-compare/bin/python), the same models in \
            PyTorch eager run right after each of the lab's measurements \
            (Sources/compare/train_bench.py). Writes train-bench.md, .csv and the profile \
            SVGs into --out.
            """)

    @Option(help: "Vocabulary size.") var vocab = 32
    @Option(name: .customLong("d-model"), help: "Model width.") var dModel = 256
    @Option(help: "Blocks per model.") var layers = 4
    @Option(help: "Attention heads.") var heads = 8
    @Option(help: "Models: transformer, mamba, or a layer pattern such as MMAM.") var models: [String] = ["transformer", "mamba"]
    @Option(help: "Sequences per step.") var batch = 16
    @Option(help: "Tokens per sequence.") var seq = 256
    @Option(parsing: .upToNextOption, help: "Thread counts.") var threads = [1, 2]
    @Option(help: "Timed steps.") var repeats = 5
    @Option(help: "Untimed steps first.") var warmup = 2
    @Flag(help: "Time every op of a step and place it on the roofline.") var profile = false
    @Option(name: .customLong("profile-steps"), help: "Steps the profile averages.") var profileSteps = 2
    @Option(help: "A Python with torch: the same models in PyTorch eager, side by side.") var torch: String?
    @Flag(help: "With --torch: also time all-Mamba models with mambapy's blocks (its Python must have mambapy).") var mambapy = false
    @Option(help: "Output directory.") var out = "reports/train-bench"

    func validate() throws {
        for t in threads { try validateThreads(t) }
        if threads.isEmpty { throw ValidationError("--threads needs at least one count") }
        for (name, value) in [("--vocab", vocab), ("--d-model", dModel), ("--layers", layers), ("--heads", heads), ("--batch", batch),
                              ("--seq", seq), ("--repeats", repeats), ("--profile-steps", profileSteps)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if warmup < 0 { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
        if dModel % heads != 0 { throw ValidationError("--d-model (\(dModel)) must be a multiple of --heads (\(heads))") }
    }

    func modelList() throws -> [ModelDecodeBenchmark.Model] {
        let defaults = try TrainBenchmark.defaultModels(vocabulary: vocab, dModel: dModel, layers: layers, heads: heads)
        return try models.map { name in
            if let known = defaults.first(where: { $0.name == name }) { return known }
            return .init(name: name, config: try ModelConfig(vocabulary: vocab, dModel: dModel, pattern: name, heads: heads, position: .rope))
        }
    }

    func run() throws {
        let system = try SystemInfo.current()
        let profileFile = try MachineProfile.load(for: system)
        var roofs: [Int: TrainBenchmark.Roofs] = [:]
        for t in threads { roofs[t] = profileFile.flatMap { TrainBenchmark.Roofs(profile: $0, isa: system.activeISA, threads: t) } }
        var rows: [TrainBenchmark.Row] = []
        var peers: [TorchPeer.Result] = []
        for model in try modelList() {
            var config = TrainBenchmark.Config(models: [model])
            (config.batch, config.seq, config.threads) = (batch, seq, threads)
            (config.warmup, config.repeats, config.profileSteps) = (warmup, repeats, profile ? profileSteps : 0)
            let measured = try TrainBenchmark.run(config, progress: terminalProgress())
            rows += measured
            if let torch {
                for row in measured {
                    terminalProgress()?("torch \(model.name) \(row.threads) thread(s)")
                    peers.append(try TorchPeer.run(python: torch, model: model, row: row, warmup: warmup, repeats: repeats))
                    if mambapy && model.config.pattern.allSatisfy({ $0 == "M" }) {
                        terminalProgress()?("mambapy \(model.name) \(row.threads) thread(s)")
                        peers.append(try TorchPeer.run(python: torch, model: model, row: row, warmup: warmup, repeats: repeats, impl: "mambapy"))
                    }
                }
            }
        }
        let setting = "\(system.activeISA.rawValue), vocabulary \(vocab), d_model \(dModel), \(layers) layers, \(heads) heads, batch \(batch) x seq \(seq)"
        var header = "# Training throughput\n\n\(system.cpuModel); \(setting). Median of \(repeats) steps after \(warmup) warm-up; "
            + "a step is forward, backward, gradient norm and AdamW on random tokens."
        if !peers.isEmpty { header += "\n\n" + TorchPeer.markdown(peers, rows: rows) }
        let markdown = TrainBenchmark.markdown(rows, header: header, roofs: roofs)
        print(markdown, terminator: "")
        let written = try TrainBenchmark.write(rows, header: header, caption: "\(system.cpuModel); \(setting)", roofs: roofs, to: out)
        for path in written { print("wrote \(path)") }
    }
}
