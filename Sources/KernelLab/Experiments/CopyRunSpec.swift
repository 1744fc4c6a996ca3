import Foundation

/// The task a run trains on: copy, n-gram lookup with the key before or
/// after the string, phone-book lookup, or modular addition (grokking).
public struct TaskSpec: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case copy, prefix, suffix, phonebook, modular, text }
    public var kind: Kind
    public var minLength: Int
    public var maxLength: Int
    /// Lookup only: the key's and the answer's letters.
    public var ngram: Int
    public var answer: Int
    /// Modular addition only: the modulus p and the percent of the p x p equations trained on.
    public var modulus: Int?
    public var trainPercent: Int?
    /// Text copy only: the directory of the corpus (Debian's fortunes data files).
    public var corpus: String?

    /// Copying passages of `lengths` characters of the text in `corpus`.
    public static func text(_ lengths: ClosedRange<Int>, corpus: String = TextCorpus.defaultDirectory) -> TaskSpec {
        var spec = TaskSpec(kind: .text, lengths: lengths)
        spec.corpus = corpus
        return spec
    }

    /// The text-copy task on the training text, or on the held-out text in natural or shuffled order.
    public func makeText(heldOut: Bool = false, shuffled: Bool = false) throws -> TextCopyTask {
        guard kind == .text else { throw KernelLabError.invalidArgument(argument: "task", reason: "\(kind.rawValue) is not text copy") }
        return try TextCopyTask(corpus: try TextCorpus.cached(corpus ?? TextCorpus.defaultDirectory), lengths: lengths,
                                heldOut: heldOut, shuffled: shuffled)
    }

    /// Modular addition mod `modulus`, `trainPercent`% of the table trained on (full batch).
    public static func modular(_ modulus: Int, trainPercent: Int) -> TaskSpec {
        var spec = TaskSpec(kind: .modular, lengths: 1...1)
        spec.modulus = modulus
        spec.trainPercent = trainPercent
        return spec
    }

    /// The modular-addition task with the split of `seed`.
    /// - Throws: `KernelLabError.invalidArgument` for another kind or a bad modulus or split.
    public func makeModular(seed: UInt64) throws -> ModularAdditionTask {
        guard kind == .modular, let modulus, let trainPercent else {
            throw KernelLabError.invalidArgument(argument: "task", reason: "\(kind.rawValue) is not modular addition (needs modulus and trainPercent)")
        }
        return try ModularAdditionTask(modulus: modulus, trainPercent: trainPercent, splitSeed: seed)
    }

    public init(kind: Kind, lengths: ClosedRange<Int>, ngram: Int = 3, answer: Int = 3) {
        self.kind = kind
        minLength = lengths.lowerBound
        maxLength = lengths.upperBound
        self.ngram = ngram
        self.answer = answer
    }

    public var lengths: ClosedRange<Int> { minLength...max(minLength, maxLength) }

    /// - Throws: `KernelLabError.invalidArgument` for lengths the task cannot use.
    public func make() throws -> any SequenceTask {
        guard maxLength >= minLength else {
            throw KernelLabError.invalidArgument(argument: "lengths", reason: "need min <= max, got \(minLength)...\(maxLength)")
        }
        switch kind {
        case .copy: return try CopyTask(lengths: lengths)
        case .prefix: return try LookupTask(key: .prefix, lengths: lengths, ngram: ngram, answer: answer)
        case .suffix: return try LookupTask(key: .suffix, lengths: lengths, ngram: ngram, answer: answer)
        case .phonebook: return try PhoneBookTask(entries: lengths)
        case .text: return try makeText()
        case .modular:
            throw KernelLabError.invalidArgument(argument: "task", reason: "modular addition is not a sequence task (see makeModular)")
        }
    }
}

/// One training run of an experiment's grid: a model, a task, a budget, a
/// seed, and what to evaluate. Its `id` names its files; two experiments
/// that ask for the same run share it (it is trained once).
public struct CopyRunSpec: Codable, Equatable, Sendable {
    /// The model's label in tables and plots (e.g. `hard_alibi`, `mamba`).
    public var model: String
    /// The model config as `ModelConfig.jsonString` writes it.
    public var config: String
    public var task: TaskSpec
    public var steps: Int
    public var batch: Int
    public var seq: Int
    public var learningRate: Float
    public var warmup: Int
    public var weightDecay: Float
    public var seed: UInt64
    /// Steps between in-training evaluations at `evalLength` (the learning curve, and checkpoints).
    public var evalEvery: Int
    public var evalLength: Int
    /// Stop once two evaluations in a row reach this string accuracy (nil: train every step).
    public var stopAccuracy: Double?
    /// Lengths of the final evaluation.
    public var finalLengths: [Int]
    /// Strings per evaluation (rounded up to whole batches of `evalBatch`).
    public var evalStrings: Int
    /// The learning-rate schedule after warmup (nil: linear decay to zero).
    public var decay: TrainingOptions.Decay?

    public init(model: String, config: ModelConfig, task: TaskSpec, steps: Int, batch: Int, seq: Int, learningRate: Float,
                warmup: Int, weightDecay: Float = 0.1, seed: UInt64, evalEvery: Int, evalLength: Int, stopAccuracy: Double? = nil,
                finalLengths: [Int], evalStrings: Int) {
        self.model = model
        self.config = config.jsonString
        self.task = task
        self.steps = steps
        self.batch = batch
        self.seq = seq
        self.learningRate = learningRate
        self.warmup = warmup
        self.weightDecay = weightDecay
        self.seed = seed
        self.evalEvery = evalEvery
        self.evalLength = evalLength
        self.stopAccuracy = stopAccuracy
        self.finalLengths = finalLengths
        self.evalStrings = evalStrings
    }

    public static let evalBatch = 16

    /// Checks what training cannot (every evaluation must be possible before the first step).
    /// - Throws: `KernelLabError.invalidArgument` naming the field.
    public func validate() throws {
        func fail(_ field: String, _ reason: String) -> KernelLabError { .invalidArgument(argument: field, reason: reason) }
        try trainingOptions.validate()
        guard evalEvery >= 1 else { throw fail("evalEvery", "must be at least 1, got \(evalEvery)") }
        guard evalStrings >= 1 else { throw fail("evalStrings", "must be at least 1, got \(evalStrings)") }
        if task.kind == .modular {
            let modular = try task.makeModular(seed: seed)
            guard batch == modular.training.count, seq == ModularAdditionTask.seq else {
                throw fail("batch", "modular addition trains full batch: batch \(modular.training.count), seq \(ModularAdditionTask.seq); got \(batch), \(seq)")
            }
            guard try modelConfig().vocabulary >= modular.vocabulary else {
                throw fail("config", "the model's vocabulary lacks the task's \(modular.vocabulary) tokens")
            }
            return
        }
        let task = try task.make()
        let vocabulary = try modelConfig().vocabulary
        guard vocabulary >= task.vocabulary else {
            throw fail("config", "the model's vocabulary (\(vocabulary)) lacks the task's tokens (\(task.vocabulary))")
        }
        for length in [evalLength] + finalLengths where length < task.minimumLength {
            throw fail("evalLength", "evaluation length \(length) is below the task's minimum \(task.minimumLength)")
        }
    }

    public func modelConfig() throws -> ModelConfig {
        try ModelConfig.decode(Data(config.utf8), source: "run \(model)")
    }

    /// `<model>-<task>-s<seed>-<hash of the whole spec>`: readable, and distinct for distinct specs.
    public var id: String {
        let data = try! JSONEncoder.sorted.encode(self)
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
        for byte in data { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return "\(model)-\(task.kind.rawValue)-s\(seed)-" + String(hash, radix: 16).suffix(8)
    }

    public var trainingOptions: TrainingOptions {
        TrainingOptions(steps: steps, learningRate: learningRate, warmup: warmup, decay: decay ?? .linear, weightDecay: weightDecay,
                        clip: 1, batch: batch, seq: seq, seed: seed)
    }
}

/// One point of a run's learning curve.
public struct CurvePoint: Codable, Equatable, Sendable {
    public var step: Int
    public var examples: Int
    public var loss: Double
    public var string: Double
    public var character: Double
    /// Modular addition: accuracy on the training split (`string` is the held-out one's).
    public var train: Double?
}

/// What a run measured.
public struct CopyRunResult: Codable, Equatable, Sendable {
    public var spec: CopyRunSpec
    public var id: String
    public var parameters: Int
    /// Fixed-state models: floats of the recurrent state per sequence (Mamba: conv + SSM; LSTM: h and c); attention blocks add a KV cache that grows.
    public var stateFloats: Int
    public var steps: Int
    public var examplesSeen: Int
    public var tokensTrained: Int
    public var wallSeconds: Double
    public var finalLoss: Double
    public var curve: [CurvePoint]
    /// Teacher-forced, per final length.
    public var accuracy: [CopyAccuracy]
    /// Greedy generation at `evalLength`, the check of the teacher-forced figure.
    public var generated: CopyAccuracy?
    /// Modular addition: final accuracy on the training split (`accuracy` holds the held-out one's, at length p).
    public var trainAccuracy: Double?
    /// Text copy: accuracy on held-out passages with their words shuffled (`accuracy`: the same, in natural order).
    public var shuffledAccuracy: [CopyAccuracy]?
    public var isa: String
    public var threads: Int
}

extension TrainingOptions.Decay: Codable {}

// A diverged run's NaN loss is a result too: non-finite numbers are written as strings.
extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }
    static var pretty: JSONEncoder {
        let encoder = sorted
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        return encoder
    }
}

extension JSONDecoder {
    static var lab: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return decoder
    }
}
