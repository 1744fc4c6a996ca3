import ArgumentParser
import Foundation
import KernelLab

extension ModelConfig.Position: ExpressibleByArgument {}
extension TrainingOptions.Decay: ExpressibleByArgument {}

/// `kernel-lab train`: trains a model of the engine on the copy task.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a transformer, Mamba, LSTM or hybrid on the copy task, on the lab's kernels.",
        discussion: """
            The model comes from --config FILE (JSON: pattern or model + layers, vocab, \
            d_model, heads, position, ...) or from the flags; the copy task's vocabulary \
            is 30. Losses count only the copied tokens and the end token. With \
            --checkpoint, the state (parameters, AdamW moments, step) is written there \
            every --checkpoint-every steps and at the end, whole or not at all; \
            --resume continues from it, on the same loss curve bit for bit (same \
            options, ISA and threads).
            """)

    @Option(help: "Model config (JSON).") var config: String?
    @Option(help: "Layer pattern: A attention, M Mamba, L LSTM (e.g. AAAA, MMMM, LL, MMAM).") var pattern = "AA"
    @Option(name: .customLong("d-model"), help: "Model width.") var dModel = 64
    @Option(help: "Attention heads.") var heads = 4
    @Option(help: "Positions of attention blocks: nope, rope, alibi, hard_alibi.") var position = ModelConfig.Position.nope
    @Option(name: .customLong("d-state"), help: "Mamba state size N.") var dState = 16
    @Flag(help: "Untie the LM head from the embedding.") var untied = false

    @Option(name: .customLong("min-len"), help: "Shortest string.") var minLength = 5
    @Option(name: .customLong("max-len"), help: "Longest string.") var maxLength = 20
    @Option(help: "Optimizer steps.") var steps = 200
    @Option(help: "Peak learning rate.") var lr: Float = 1e-3
    @Option(help: "Warm-up steps.") var warmup = 20
    @Option(help: "Decay after warm-up: constant, linear, cosine.") var decay = TrainingOptions.Decay.linear
    @Option(name: .customLong("weight-decay"), help: "AdamW weight decay (matrices only).") var weightDecay: Float = 0.1
    @Option(help: "Global gradient-norm clip (0: none).") var clip: Float = 1
    @Option(help: "Micro-batches per step.") var accumulation = 1
    @Option(help: "Sequences per micro-batch.") var batch = 8
    @Option(help: "Context length (tokens per sequence).") var seq = 128
    @Option(help: "Seed of the initialization and the data.") var seed: UInt64 = 0
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: "Checkpoint file (safetensors).") var checkpoint: String?
    @Option(name: .customLong("checkpoint-every"), help: "Steps between checkpoints (0: only at the end).") var checkpointEvery = 0
    @Flag(help: "Continue from --checkpoint.") var resume = false
    @Option(name: .customLong("log-every"), help: "Steps between log lines.") var logEvery = 10
    @Option(name: .customLong("eval-lengths"), parsing: .upToNextOption, help: "String lengths to evaluate at the end.")
    var evalLengths: [Int] = []
    @Option(name: .customLong("eval-batches"), help: "Evaluation batches per length.") var evalBatches = 4

    func validate() throws {
        try validateThreads(threads)
        if resume && checkpoint == nil { throw ValidationError("--resume needs --checkpoint") }
        if minLength < 1 || maxLength < minLength { throw ValidationError("need 1 <= --min-len <= --max-len") }
        for (name, value) in [("--log-every", logEvery), ("--eval-batches", evalBatches)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if checkpointEvery < 0 { throw ValidationError("--checkpoint-every must be >= 0") }
    }

    func run() throws {
        let modelConfig: ModelConfig
        if let config {
            let url = URL(fileURLWithPath: config)
            guard let data = try? Data(contentsOf: url) else { throw ValidationError("cannot read --config '\(config)'") }
            modelConfig = try ModelConfig.decode(data, source: config)
        } else {
            modelConfig = try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: dModel, pattern: pattern, heads: heads,
                                          position: position, tiedEmbeddings: !untied, dState: dState)
        }
        guard modelConfig.vocabulary >= CopyTask.vocabulary else {
            throw ValidationError("the copy task needs vocab >= \(CopyTask.vocabulary), the config has \(modelConfig.vocabulary)")
        }
        let options = TrainingOptions(steps: steps, learningRate: lr, warmup: warmup, decay: decay, weightDecay: weightDecay,
                                      clip: clip, accumulation: accumulation, batch: batch, seq: seq, seed: seed)
        let threads = threadsOrAllCPUs(self.threads)
        let model = try LanguageModel(config: modelConfig, seed: seed)
        let trainer = try Trainer(model: model, options: options, threads: threads)
        print("model \(modelConfig.pattern): \(model.parameterCount) parameters")
        for (component, count) in model.table.componentCounts {
            print("  " + component.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%10d", count))
        }
        print(String(format: "activations and workspace: %.1f MiB for batch %d x seq %d", Double(model.activationBytes) / 1048576,
                     batch, seq))
        if resume, let checkpoint {
            try Checkpoint.load(checkpoint, into: trainer)
            print("resumed from \(checkpoint) at step \(trainer.step)")
        }
        let task = try CopyTask(lengths: minLength...maxLength)
        let interrupt = InterruptFlag()
        while trainer.step < steps {
            let record = try trainer.trainStep { batch, micro in task.fill(batch, seed: seed, step: micro) }
            if record.step % logEvery == 0 || record.step == steps {
                print(String(format: "step %5d  loss %.4f  grad norm %.3f  lr %.2e  %.1f ms", record.step, record.loss,
                             record.gradNorm, record.learningRate, record.seconds * 1e3))
            }
            if let checkpoint, checkpointEvery > 0, record.step % checkpointEvery == 0 {
                try Checkpoint.save(trainer, to: checkpoint)
            }
            if interrupt.isSet {
                if let checkpoint {
                    try Checkpoint.save(trainer, to: checkpoint)
                    printError("interrupted at step \(trainer.step); saved \(checkpoint). Resume with the same options and --resume.")
                } else {
                    printError("interrupted at step \(trainer.step); no --checkpoint was given, so nothing was saved.")
                }
                throw ExitCode(130)
            }
        }
        if let checkpoint {
            try Checkpoint.save(trainer, to: checkpoint)
            print("saved \(checkpoint) (step \(trainer.step))")
        }
        for length in evalLengths {
            let accuracy = try CopyTask.evaluate(model, batch: batch, seq: seq, threads: threads, length: length,
                                                 batches: evalBatches, seed: seed &+ 0xE7A1)
            let generated = try CopyTask.evaluateGenerated(model, batch: batch, threads: threads, length: length, batches: evalBatches,
                                                           seed: seed &+ 0xE7A1)
            print(String(format: "copy length %4d: string accuracy %.3f, character accuracy %.3f (%d strings, teacher-forced); "
                         + "generated: string %.3f, character %.3f", length, accuracy.string, accuracy.character, accuracy.examples,
                         generated.string, generated.character))
        }
    }
}

/// Set by SIGINT, so a training loop stops at the end of its step and saves.
final class InterruptFlag: @unchecked Sendable {
    nonisolated(unsafe) private static var flag: sig_atomic_t = 0
    init() {
        signal(SIGINT) { _ in InterruptFlag.flag = 1 }
    }
    var isSet: Bool { InterruptFlag.flag != 0 }
}
