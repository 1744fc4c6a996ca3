import Foundation

/// How large an experiment is run: `smoke` takes seconds (it checks the
/// pipeline, its numbers mean nothing); `quick` fits `make copy`'s budget on
/// 2 cores; `paper` is closer to the paper's lengths and takes hours.
public enum CopyPreset: String, CaseIterable, Codable, Sendable { case smoke, quick, paper }

/// The copying experiments of `kernel-lab copy run`.
public enum CopyExperiment: String, CaseIterable, Codable, Sendable {
    case trainEfficiency = "train-efficiency"
    case lengthGeneralization = "length-generalization"
    case construction = "ngram-construction"
    case capacity = "state-capacity"
    case lookup = "prefix-suffix-lookup"
    // Beyond copying (issue "Beyond copying"): `make beyond`.
    case phoneBook = "phonebook"
    case hybrids = "hybrids"
    case grokking = "grokking"
    case naturalText = "natural-vs-shuffled"

    /// The copy paper's experiments (`--experiment all`, `make copy`).
    public static var copying: [CopyExperiment] { [.trainEfficiency, .lengthGeneralization, .construction, .capacity, .lookup] }
    /// What lies beyond them (`--experiment beyond`, `make beyond`).
    public static var beyond: [CopyExperiment] { [.phoneBook, .hybrids, .grokking, .naturalText] }

    public var title: String {
        switch self {
        case .trainEfficiency: "Training efficiency: copy accuracy against examples seen"
        case .lengthGeneralization: "Length generalization: train on short strings, copy long ones"
        case .construction: "The constructive side: a hand-built n-gram copier (Theorem 2.3)"
        case .capacity: "The capacity side: Mamba models with shrinking state (Theorem 2.7)"
        case .lookup: "Prefix and suffix n-gram lookup"
        case .phoneBook: "Phone-book lookup: accuracy against the number of entries"
        case .hybrids: "Hybrids: how many attention layers buy how much copying"
        case .grokking: "Grokking: modular addition, memorizing against generalizing"
        case .naturalText: "Copying English text: natural against shuffled word order"
        }
    }
}

/// The sizes of a preset: models, lengths, budgets.
public struct CopyScale: Codable, Equatable, Sendable {
    public var dModel: Int
    public var layers: Int
    public var heads: Int
    public var batch: Int
    public var seq: Int
    /// Peak learning rates: transformers, and the recurrent models (Mamba, LSTM). Fixed per
    /// family before the runs from one pilot each at the quick scale (transformers learned at
    /// 1e-3 and not at 3e-3; Mamba and the LSTM did not learn at 1e-3 in the budget).
    public var learningRate: Float
    public var recurrentLearningRate: Float
    public var warmup: Int
    public var evalStrings: Int
    /// Copy (experiments 1 and 2): strings of 1...trainLength, `copySteps` steps at most.
    public var trainLength: Int
    public var copySteps: Int
    public var copyEvalEvery: Int
    /// Multiples of the training length of experiment 2's evaluation.
    public var generalizationFactors: [Double]
    /// Experiment 3: lengths and strings per length, n = 2...6.
    public var constructionLengths: [Int]
    public var constructionStrings: Int
    /// Experiment 4: Mamba of this width and depth, these state sizes.
    public var capacityDModel: Int
    public var capacityLayers: Int
    public var capacityStates: [Int]
    public var capacityTrainLength: Int
    public var capacitySteps: Int
    /// Experiment 5: train on lookupTrainLength at most, test to lookupTestLength.
    public var lookupTrainLength: Int
    public var lookupTestLengths: [Int]
    public var lookupSteps: Int
    public var lookupSeq: Int
    /// Phone books of 1...phoneBookEntries entries, tested on phoneBookTestEntries.
    public var phoneBookEntries: Int
    public var phoneBookTestEntries: [Int]
    public var phoneBookSteps: Int
    public var phoneBookSeq: Int
    /// Hybrids: these layer patterns (all of one depth), widths matched to the all-attention one at hybridDModel.
    public var hybridDModel: Int
    public var hybridPatterns: [String]
    public var hybridSteps: Int
    /// Grokking: a + b mod p, trained on a fixed share of the table.
    public var grokking = GrokkingScale()
    /// Natural against shuffled text: passages of the fortunes corpus.
    public var text = TextScale()

    /// The learning rate of a model's family: the transformers' when at least half its
    /// blocks are attention (so `MA` and `AAMM` too), else the recurrent models' (`MMMA`).
    public func learningRate(_ config: ModelConfig) -> Float {
        2 * config.pattern.filter { $0 == "A" }.count >= config.pattern.count ? learningRate : recurrentLearningRate
    }

    public static func of(_ preset: CopyPreset) -> CopyScale {
        var scale = sized(preset)
        scale.grokking = .of(preset)
        scale.text = .of(preset)
        return scale
    }

    private static func sized(_ preset: CopyPreset) -> CopyScale {
        switch preset {
        case .smoke:
            CopyScale(dModel: 16, layers: 1, heads: 2, batch: 4, seq: 32, learningRate: 3e-3, recurrentLearningRate: 3e-3, warmup: 2, evalStrings: 16,
                      trainLength: 4, copySteps: 6, copyEvalEvery: 3, generalizationFactors: [1, 2],
                      constructionLengths: [5, 10], constructionStrings: 8,
                      capacityDModel: 8, capacityLayers: 1, capacityStates: [1, 2], capacityTrainLength: 4, capacitySteps: 6,
                      lookupTrainLength: 8, lookupTestLengths: [6, 8, 12], lookupSteps: 6, lookupSeq: 32,
                      phoneBookEntries: 2, phoneBookTestEntries: [1, 2, 3], phoneBookSteps: 6, phoneBookSeq: 64,
                      hybridDModel: 16, hybridPatterns: ["MM", "AM", "MA", "AA"], hybridSteps: 6)
        case .quick:
            CopyScale(dModel: 64, layers: 2, heads: 8, batch: 16, seq: 128, learningRate: 1e-3, recurrentLearningRate: 3e-3, warmup: 100,
                      evalStrings: 64, trainLength: 16, copySteps: 2500, copyEvalEvery: 100, generalizationFactors: [0.5, 1, 1.5, 2, 3, 5, 10, 20],
                      constructionLengths: [5, 10, 20, 40, 80, 160, 320], constructionStrings: 96,
                      capacityDModel: 64, capacityLayers: 2, capacityStates: [1, 2, 4, 8, 16], capacityTrainLength: 16, capacitySteps: 3000,
                      lookupTrainLength: 20, lookupTestLengths: [10, 20, 30, 40, 60, 100], lookupSteps: 2500, lookupSeq: 128,
                      phoneBookEntries: 12, phoneBookTestEntries: [2, 4, 8, 12, 16, 24], phoneBookSteps: 2000, phoneBookSeq: 256,
                      hybridDModel: 48, hybridPatterns: ["MMMM", "AMMM", "MAMM", "MMMA", "AAMM", "AAAA"], hybridSteps: 2000)
        case .paper:
            CopyScale(dModel: 256, layers: 4, heads: 16, batch: 16, seq: 256, learningRate: 5e-4, recurrentLearningRate: 1e-3, warmup: 200, evalStrings: 128,
                      trainLength: 50, copySteps: 8000, copyEvalEvery: 250, generalizationFactors: [0.5, 1, 1.5, 2, 3, 5, 10, 20],
                      constructionLengths: [5, 10, 20, 50, 100, 200, 500, 1000], constructionStrings: 256,
                      capacityDModel: 64, capacityLayers: 2, capacityStates: [1, 2, 4, 8, 16], capacityTrainLength: 64, capacitySteps: 6000,
                      lookupTrainLength: 30, lookupTestLengths: [10, 20, 30, 40, 50, 70, 100], lookupSteps: 6000, lookupSeq: 256,
                      phoneBookEntries: 40, phoneBookTestEntries: [5, 10, 20, 40, 70, 100], phoneBookSteps: 8000, phoneBookSeq: 1024,
                      hybridDModel: 128, hybridPatterns: ["MMMM", "AMMM", "MAMM", "MMMA", "AAMM", "AAAA"], hybridSteps: 8000)
        }
    }
}

/// The sizes of the grokking experiment: modular addition mod `modulus` on
/// `trainPercent`% of the table, full batch, AdamW with strong weight decay
/// (Power et al. 2022; Nanda et al. 2023 used p = 113, 30%, weight decay 1,
/// lr 1e-3, a 1-layer transformer of width 128, about 10^4 steps to grok).
public struct GrokkingScale: Codable, Equatable, Sendable {
    public var modulus = 97
    public var trainPercent = 40
    /// The transformer's width and depth; Mamba and the LSTM are matched to its parameter count.
    public var dModel = 64
    public var layers = 1
    public var heads = 4
    public var steps = 2000
    public var evalEvery = 25
    public var learningRate: Float = 1e-3
    public var weightDecay: Float = 1
    public var warmup = 10

    public init() {}

    public static func of(_ preset: CopyPreset) -> GrokkingScale {
        var g = GrokkingScale()
        switch preset {
        case .smoke:
            (g.modulus, g.trainPercent, g.dModel, g.steps, g.evalEvery, g.warmup) = (7, 50, 16, 6, 3, 2)
        case .quick:
            break
        case .paper:
            (g.modulus, g.trainPercent, g.dModel, g.steps, g.evalEvery, g.learningRate) = (113, 30, 128, 20000, 100, 1e-3)
        }
        return g
    }
}

/// The sizes of the natural-vs-shuffled experiment: language models of the
/// fortunes text that also copy its passages, tested on held-out passages.
public struct TextScale: Codable, Equatable, Sendable {
    /// The corpus directory (`KERNELLAB_TEXT_CORPUS` overrides Debian's).
    public var corpus = ProcessInfo.processInfo.environment["KERNELLAB_TEXT_CORPUS"] ?? TextCorpus.defaultDirectory
    public var dModel = 64
    public var layers = 2
    public var heads = 8
    /// Passages of 1...trainLength characters; tested at testLengths.
    public var trainLength = 24
    public var testLengths = [8, 16, 24, 32]
    public var steps = 1500
    public var evalEvery = 100
    public var batch = 16
    public var seq = 128

    public init() {}

    public static func of(_ preset: CopyPreset) -> TextScale {
        var t = TextScale()
        switch preset {
        case .smoke:
            (t.dModel, t.layers, t.heads, t.trainLength, t.testLengths, t.steps, t.evalEvery, t.batch, t.seq) = (16, 1, 2, 8, [4, 8], 6, 3, 4, 32)
        case .quick:
            break
        case .paper:
            (t.dModel, t.layers, t.heads, t.trainLength, t.testLengths, t.steps, t.evalEvery, t.seq) = (256, 4, 16, 128, [32, 64, 128, 192, 256], 8000, 250, 512)
        }
        return t
    }
}

/// The runs an experiment trains, each with the label it is reported under.
public struct CopyPlan: Sendable {
    public var experiment: CopyExperiment
    public var preset: CopyPreset
    public var scale: CopyScale
    public var seeds: Int
    public var runs: [(label: String, spec: CopyRunSpec)]
}

extension CopyExperiment {
    /// The models of experiments 1 and 2: four transformers (the paper's
    /// positions) and Mamba and an LSTM of about the same parameter count.
    static func copyModels(_ scale: CopyScale) throws -> [(String, ModelConfig)] {
        let pattern = String(repeating: "A", count: scale.layers)
        var models: [(String, ModelConfig)] = []
        for (label, position) in [("rope", ModelConfig.Position.rope), ("nope", .nope), ("alibi", .alibi), ("hard_alibi", .hardAlibi)] {
            models.append((label, try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: scale.dModel, pattern: pattern,
                                                  heads: scale.heads, position: position)))
        }
        let target = parameterCount(models[0].1)
        models.append(("mamba", try matched(target, pattern: String(repeating: "M", count: scale.layers))))
        models.append(("lstm", try matched(target, pattern: String(repeating: "L", count: scale.layers))))
        return models
    }

    static func parameterCount(_ config: ModelConfig) -> Int { ParameterTableBuilder.build(config).0.parameterCount }

    /// `transformer` and a Mamba and an LSTM of `layers` blocks matched to its parameter
    /// count, with its vocabulary and tying: the three families an experiment compares.
    static func withRecurrentTwins(_ transformer: (String, ModelConfig), layers: Int) throws -> [(String, ModelConfig)] {
        let (target, c) = (parameterCount(transformer.1), transformer.1)
        return [transformer,
                ("mamba", try matched(target, pattern: String(repeating: "M", count: layers), vocabulary: c.vocabulary, tied: c.tiedEmbeddings)),
                ("lstm", try matched(target, pattern: String(repeating: "L", count: layers), vocabulary: c.vocabulary, tied: c.tiedEmbeddings))]
    }

    /// The width (a multiple of 8) whose model of `pattern` has the parameter count nearest `target`.
    static func matched(_ target: Int, pattern: String, vocabulary: Int = CopyTask.vocabulary, heads: Int = 8,
                        position: ModelConfig.Position = .hardAlibi, dState: Int = 16, tied: Bool = true) throws -> ModelConfig {
        var best: ModelConfig?
        for width in stride(from: 8, through: 2048, by: 8) where !pattern.contains("A") || width % heads == 0 {
            let config = try ModelConfig(vocabulary: vocabulary, dModel: width, pattern: pattern, heads: pattern.contains("A") ? heads : 4,
                                         position: position, tiedEmbeddings: tied, dState: dState)
            if best == nil || abs(parameterCount(config) - target) < abs(parameterCount(best!) - target) { best = config }
            if parameterCount(config) > target { break }
        }
        return best!
    }

    /// The runs of this experiment at `preset` over `seeds` seeds (0..<seeds).
    /// - Throws: `KernelLabError.invalidArgument` unless `seeds >= 1`.
    public func plan(preset: CopyPreset, seeds: Int) throws -> CopyPlan {
        guard (1...100).contains(seeds) else {
            throw KernelLabError.invalidArgument(argument: "seeds", reason: "must be in 1...100, got \(seeds)")
        }
        return try plan(scale: .of(preset), preset: preset, seeds: seeds)
    }

    /// The runs at an explicit scale (tests use tiny ones).
    public func plan(scale: CopyScale, preset: CopyPreset, seeds: Int) throws -> CopyPlan {
        var runs: [(String, CopyRunSpec)] = []
        let s = scale
        switch self {
        case .trainEfficiency, .lengthGeneralization:
            // One set of runs serves both: trained to perfect in-distribution
            // accuracy (or the budget), the curve at the training length on the
            // way (experiment 1), the long lengths at the end (experiment 2).
            let lengths = Self.generalizationLengths(s)
            for (label, config) in try Self.copyModels(s) {
                for seed in 0..<seeds {
                    runs.append((label, CopyRunSpec(model: label, config: config, task: TaskSpec(kind: .copy, lengths: 1...s.trainLength),
                                                    steps: s.copySteps, batch: s.batch, seq: s.seq, learningRate: s.learningRate(config),
                                                    warmup: s.warmup, seed: UInt64(seed), evalEvery: s.copyEvalEvery,
                                                    evalLength: s.trainLength, stopAccuracy: 0.99, finalLengths: lengths,
                                                    evalStrings: s.evalStrings)))
                }
            }
        case .construction:
            break
        case .capacity:
            let lengths = Array(Set([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64].filter { $0 <= s.capacityTrainLength } + [s.capacityTrainLength])).sorted()
            for n in s.capacityStates {
                let config = try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: s.capacityDModel,
                                             pattern: String(repeating: "M", count: s.capacityLayers), dState: n)
                for seed in 0..<seeds {
                    runs.append(("N=\(n)", CopyRunSpec(model: "mamba-n\(n)", config: config,
                                                        task: TaskSpec(kind: .copy, lengths: 1...s.capacityTrainLength),
                                                        steps: s.capacitySteps, batch: s.batch, seq: s.seq, learningRate: s.recurrentLearningRate,
                                                        warmup: s.warmup, seed: UInt64(seed), evalEvery: s.copyEvalEvery,
                                                        evalLength: s.capacityTrainLength / 2, finalLengths: lengths, evalStrings: s.evalStrings)))
                }
            }
        case .lookup:
            let transformer = try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: s.dModel, pattern: String(repeating: "A", count: s.layers),
                                              heads: s.heads, position: .hardAlibi)
            let mamba = try Self.matched(Self.parameterCount(transformer), pattern: String(repeating: "M", count: s.layers))
            for kind in [TaskSpec.Kind.prefix, .suffix] {
                for (label, config) in [("hard_alibi", transformer), ("mamba", mamba)] {
                    for seed in 0..<seeds {
                        runs.append(("\(label) \(kind.rawValue)", CopyRunSpec(
                            model: label, config: config, task: TaskSpec(kind: kind, lengths: 6...s.lookupTrainLength),
                            steps: s.lookupSteps, batch: s.batch, seq: s.lookupSeq, learningRate: s.learningRate(config), warmup: s.warmup,
                            seed: UInt64(seed), evalEvery: s.copyEvalEvery, evalLength: s.lookupTrainLength, stopAccuracy: 0.99,
                            finalLengths: s.lookupTestLengths, evalStrings: s.evalStrings)))
                    }
                }
            }
        case .phoneBook:
            let V = PhoneBookTask.vocabulary
            let transformer = try ModelConfig(vocabulary: V, dModel: s.dModel, pattern: String(repeating: "A", count: s.layers),
                                              heads: s.heads, position: .hardAlibi)
            let target = Self.parameterCount(transformer)
            let models = try Self.withRecurrentTwins(("hard_alibi", transformer), layers: s.layers) + [
                          ("hybrid " + "M" + String(repeating: "A", count: max(s.layers - 1, 1)),
                           try Self.matched(target, pattern: "M" + String(repeating: "A", count: max(s.layers - 1, 1)), vocabulary: V, heads: s.heads))]
            let lengths = Array(Set(s.phoneBookTestEntries + [s.phoneBookEntries])).sorted()
            for (label, config) in models {
                for seed in 0..<seeds {
                    runs.append((label, CopyRunSpec(model: label.replacingOccurrences(of: " ", with: "-"), config: config,
                                                    task: TaskSpec(kind: .phonebook, lengths: 1...s.phoneBookEntries),
                                                    steps: s.phoneBookSteps, batch: s.batch, seq: s.phoneBookSeq, learningRate: s.learningRate(config),
                                                    warmup: s.warmup, seed: UInt64(seed), evalEvery: s.copyEvalEvery, evalLength: s.phoneBookEntries,
                                                    stopAccuracy: 0.99, finalLengths: lengths, evalStrings: s.evalStrings)))
                }
            }
        case .hybrids:
            guard let all = s.hybridPatterns.first(where: { !$0.contains("M") && !$0.contains("L") }) else {
                throw KernelLabError.invalidArgument(argument: "hybridPatterns", reason: "needs an all-attention pattern to match the others to")
            }
            let reference = try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: s.hybridDModel, pattern: all, heads: s.heads, position: .hardAlibi)
            let target = Self.parameterCount(reference)
            let lengths = Self.generalizationLengths(s)
            for pattern in s.hybridPatterns {
                let config = pattern == all ? reference : try Self.matched(target, pattern: pattern, heads: s.heads)
                for seed in 0..<seeds {
                    runs.append((pattern, CopyRunSpec(model: "pattern-\(pattern)", config: config, task: TaskSpec(kind: .copy, lengths: 1...s.trainLength),
                                                      steps: s.hybridSteps, batch: s.batch, seq: s.seq, learningRate: s.learningRate(config),
                                                      warmup: s.warmup, seed: UInt64(seed), evalEvery: s.copyEvalEvery, evalLength: s.trainLength,
                                                      stopAccuracy: 0.99, finalLengths: lengths, evalStrings: s.evalStrings)))
                }
            }
        case .grokking:
            let g = s.grokking
            let task = TaskSpec.modular(g.modulus, trainPercent: g.trainPercent)
            let V = g.modulus + 2
            let transformer = try ModelConfig(vocabulary: V, dModel: g.dModel, pattern: String(repeating: "A", count: g.layers),
                                              heads: g.heads, position: .rope, tiedEmbeddings: false)
            for (label, config) in try Self.withRecurrentTwins(("transformer", transformer), layers: g.layers) {
                for seed in 0..<seeds {
                    let split = try task.makeModular(seed: UInt64(seed))
                    var spec = CopyRunSpec(model: label, config: config, task: task, steps: g.steps, batch: split.training.count,
                                           seq: ModularAdditionTask.seq, learningRate: g.learningRate, warmup: g.warmup,
                                           weightDecay: g.weightDecay, seed: UInt64(seed), evalEvery: g.evalEvery, evalLength: g.modulus,
                                           stopAccuracy: 0.95, finalLengths: [g.modulus], evalStrings: 1)
                    spec.decay = .constant
                    runs.append((label, spec))
                }
            }
        case .naturalText:
            let t = s.text, V = TextCorpus.vocabulary
            let transformer = try ModelConfig(vocabulary: V, dModel: t.dModel, pattern: String(repeating: "A", count: t.layers),
                                              heads: t.heads, position: .hardAlibi)
            for (label, config) in try Self.withRecurrentTwins(("hard_alibi", transformer), layers: t.layers) {
                for seed in 0..<seeds {
                    runs.append((label, CopyRunSpec(model: label, config: config, task: .text(1...t.trainLength, corpus: t.corpus),
                                                    steps: t.steps, batch: t.batch, seq: t.seq, learningRate: s.learningRate(config),
                                                    warmup: s.warmup, seed: UInt64(seed), evalEvery: t.evalEvery, evalLength: t.trainLength,
                                                    finalLengths: t.testLengths, evalStrings: s.evalStrings)))
                }
            }
        }
        return CopyPlan(experiment: self, preset: preset, scale: s, seeds: seeds, runs: runs)
    }

    static func generalizationLengths(_ s: CopyScale) -> [Int] {
        Array(Set(s.generalizationFactors.map { max(1, Int((Double(s.trainLength) * $0).rounded())) })).sorted()
    }
}
