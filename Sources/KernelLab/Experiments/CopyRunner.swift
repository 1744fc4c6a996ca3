import Foundation

/// Where a run's progress goes: a bar on a terminal, plain lines elsewhere.
public final class RunProgress: @unchecked Sendable {
    public let isTerminal: Bool
    private let write: (String) -> Void
    private var lastLength = 0

    /// `write` receives text without a trailing newline policy of its own.
    public init(isTerminal: Bool = isatty(STDOUT_FILENO) != 0, write: @escaping (String) -> Void = { text in
        FileHandle.standardOutput.write(Data(text.utf8))
    }) {
        self.isTerminal = isTerminal
        self.write = write
    }

    /// A silent reporter (tests).
    public static var silent: RunProgress { RunProgress(isTerminal: false, write: { _ in }) }

    func update(label: String, step: Int, steps: Int, loss: Double, accuracy: Double?, elapsed: Double, evaluated: Bool) {
        let eta = step > 0 ? elapsed / Double(step) * Double(steps - step) : 0
        let acc = accuracy.map { String(format: "acc %.3f", $0) } ?? "acc   -  "
        if isTerminal {
            let width = 24, filled = steps > 0 ? width * step / steps : width
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let text = String(format: "\r%@ [%@] %d/%d loss %.4f %@ ETA %@", label, bar, step, steps, loss, acc, clock(eta))
            write(text + String(repeating: " ", count: max(0, lastLength - text.count)))
            lastLength = text.count
        } else if evaluated {
            write(String(format: "%@ step %d/%d loss %.4f %@ elapsed %@ ETA %@\n", label, step, steps, loss, acc, clock(elapsed), clock(eta)))
        }
    }

    func line(_ text: String) {
        if isTerminal && lastLength > 0 { write("\n"); lastLength = 0 }
        write(text + "\n")
    }
}

func clock(_ seconds: Double) -> String {
    let s = max(0, Int(seconds.rounded()))
    return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
}

/// Trains and evaluates the runs of a grid, each once: a finished run's
/// result file is read back instead of training again, and an interrupted
/// one resumes from its checkpoint on the same curve (the data of a step
/// depends only on the seed and the step, the trainer is bit-exact).
///
/// Files per run under `directory`: `<id>.json` (the result, written whole
/// when the run ends), `<id>.ckpt` and `<id>.partial.json` (the trainer's
/// state and the curve so far, every `evalEvery` steps; removed at the end).
public final class CopyRunner {
    public let directory: String
    public let threads: Int
    public let progress: RunProgress
    /// Set from a signal handler: the run checkpoints at its next step and throws `interrupted`.
    public var shouldStop: () -> Bool = { false }

    public struct Interrupted: Error, CustomStringConvertible {
        public let run: String
        public let step: Int
        public var description: String { "interrupted during \(run) at step \(step); its checkpoint is saved" }
    }

    public init(directory: String, threads: Int, progress: RunProgress = .silent) throws {
        self.directory = directory
        self.threads = threads
        self.progress = progress
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw KernelLabError.io(path: directory, reason: "cannot create the runs directory: \(error.localizedDescription)")
        }
    }

    func path(_ id: String, _ suffix: String) -> String { (directory as NSString).appendingPathComponent(id + suffix) }

    /// The stored result of `spec`, if its run has finished.
    public func finished(_ spec: CopyRunSpec) -> CopyRunResult? {
        guard let data = FileManager.default.contents(atPath: path(spec.id, ".json")),
              let result = try? JSONDecoder.lab.decode(CopyRunResult.self, from: data), result.spec == spec else { return nil }
        return result
    }

    /// Runs `spec` (or reads its finished result). `label` prefixes progress lines.
    public func run(_ spec: CopyRunSpec, label: String) throws -> CopyRunResult {
        if let done = finished(spec) {
            // A process killed between writing the result and removing its checkpoint and curve left them: remove them now.
            try? FileManager.default.removeItem(atPath: path(spec.id, ".ckpt"))
            try? FileManager.default.removeItem(atPath: path(spec.id, ".partial.json"))
            progress.line("\(label) done earlier (\(clock(done.wallSeconds)) of training), not re-run")
            return done
        }
        try spec.validate()
        let config = try spec.modelConfig()
        let model = try LanguageModel(config: config, seed: spec.seed)
        let trainer = try Trainer(model: model, options: spec.trainingOptions, threads: threads)
        let checkpoint = path(spec.id, ".ckpt"), partialPath = path(spec.id, ".partial.json")
        var partial = Partial(curve: [], examples: 0, seconds: 0, loss: 0)
        let driver = try Driver(spec: spec, model: model, threads: threads)
        func point(step: Int, loss: Double) throws -> CurvePoint {
            let measured = try driver.curve()
            return CurvePoint(step: step, examples: partial.examples, loss: loss, string: measured.string,
                              character: measured.character, train: measured.train)
        }
        if FileManager.default.fileExists(atPath: checkpoint) {
            try Checkpoint.load(checkpoint, into: trainer)
            // The curve is written before the checkpoint, so a process killed between the two
            // leaves a curve one evaluation ahead: its points up to the checkpoint stand and the
            // steps after it are trained again. A curve behind the checkpoint (or none) is
            // rebuilt: the data counts replayed, a missing evaluation done again (the state is
            // the same, so is its result; that step's loss is not known: NaN).
            if let data = FileManager.default.contents(atPath: partialPath), let saved = try? JSONDecoder.lab.decode(Partial.self, from: data) {
                partial = saved
            }
            partial.curve.removeAll { $0.step > trainer.step }
            if partial.step != trainer.step {
                partial.examples = (0..<trainer.step).reduce(0) { $0 + examples(driver, spec, step: $1) }
                if partial.step < trainer.step {
                    partial.loss = .nan
                    if isEvaluationStep(trainer.step, spec) && partial.curve.last?.step != trainer.step {
                        partial.curve.append(try point(step: trainer.step, loss: .nan))
                    }
                }
                partial.step = trainer.step
            }
            progress.line("\(label) resumed at step \(trainer.step)")
        }
        func stopReached() -> Bool {
            guard let target = spec.stopAccuracy, partial.curve.count >= 2 else { return false }
            return partial.curve.suffix(2).allSatisfy { $0.string >= target }
        }
        // The curve first, then the checkpoint (see the resume above).
        func save() throws {
            try writeFileAtomically(partialPath, bytes: Array(try JSONEncoder.sorted.encode(partial)))
            try Checkpoint.save(trainer, to: checkpoint)
        }
        let started = Date()
        let base = partial.seconds
        var lastAccuracy = partial.curve.last?.string
        while trainer.step < spec.steps && !stopReached() {
            var counted = 0
            let record = try trainer.trainStep { batch, micro in counted += driver.fill(batch, micro) }
            partial.examples += counted
            partial.loss = record.loss
            let evaluated = isEvaluationStep(record.step, spec)
            if evaluated {
                let added = try point(step: record.step, loss: record.loss)
                partial.curve.append(added)
                lastAccuracy = added.string
                partial.step = record.step
                partial.seconds = base + Date().timeIntervalSince(started)
                try save()
            }
            progress.update(label: label, step: record.step, steps: spec.steps, loss: record.loss, accuracy: lastAccuracy,
                            elapsed: base + Date().timeIntervalSince(started), evaluated: evaluated)
            if shouldStop() {
                partial.step = record.step
                partial.seconds = base + Date().timeIntervalSince(started)
                try save()
                progress.line("")
                throw Interrupted(run: label, step: trainer.step)
            }
        }
        let trainSeconds = base + Date().timeIntervalSince(started)
        let final = try driver.final()
        let result = CopyRunResult(spec: spec, id: spec.id, parameters: model.parameterCount, stateFloats: Self.stateFloats(config),
                                   steps: trainer.step, examplesSeen: partial.examples, tokensTrained: trainer.step * spec.batch * spec.seq,
                                   wallSeconds: trainSeconds, finalLoss: partial.loss, curve: partial.curve, accuracy: final.accuracy,
                                   generated: final.generated, trainAccuracy: final.train, shuffledAccuracy: final.shuffled, isa: try ISA.active.rawValue, threads: threads)
        try writeFileAtomically(path(spec.id, ".json"), bytes: Array(try JSONEncoder.pretty.encode(result)))
        try? FileManager.default.removeItem(atPath: checkpoint)
        try? FileManager.default.removeItem(atPath: partialPath)
        if let generated = final.generated {
            progress.line(String(format: "%@ done: %d steps, %@, loss %.4f, accuracy at length %d %.3f (generated %.3f)", label,
                                 trainer.step, clock(trainSeconds), partial.loss, spec.evalLength, lastAccuracy ?? .nan, generated.string))
        } else {
            progress.line(String(format: "%@ done: %d steps, %@, loss %.4f, held-out accuracy %.3f, training %.3f", label,
                                 trainer.step, clock(trainSeconds), partial.loss, lastAccuracy ?? .nan, final.train ?? .nan))
        }
        return result
    }

    /// Examples that start in a batch (each begins with `$`): what "examples seen" counts.
    static func examplesStarting(in batch: TokenBatch) -> Int {
        batch.tokens.reduce(0) { $0 + ($1 == CopyTask.bos ? 1 : 0) }
    }

    private func isEvaluationStep(_ step: Int, _ spec: CopyRunSpec) -> Bool {
        step % spec.evalEvery == 0 || step == spec.steps
    }

    /// Examples in optimizer step `step`'s batches (a replay of its data, for a curve lost
    /// after its checkpoint), micro-batch by micro-batch as `Trainer.trainStep` fills them.
    private func examples(_ driver: Driver, _ spec: CopyRunSpec, step: Int) -> Int {
        let batch = TokenBatch(batch: spec.batch, seq: spec.seq)
        let accumulation = spec.trainingOptions.accumulation
        return (0..<accumulation).reduce(0) { total, k in total + driver.fill(batch, step * accumulation + k) }
    }

    /// The training data of `spec`'s micro-step: fills a batch, returns the examples in it.
    static func trainingFill(_ spec: CopyRunSpec) throws -> (TokenBatch, Int) -> Int {
        if spec.task.kind == .modular {
            let task = try spec.task.makeModular(seed: spec.seed)
            return { batch, _ in task.fill(batch, pairs: task.training) }
        }
        let task = try spec.task.make()
        return { batch, micro in
            task.fill(batch, seed: spec.seed, step: micro)
            return CopyRunner.examplesStarting(in: batch)
        }
    }

    /// What differs between tasks: a step's data, the curve's evaluation, the final one.
    private struct Driver {
        /// Fills a training batch for micro-step `micro`; returns the examples in it.
        let fill: (TokenBatch, Int) -> Int
        let curve: () throws -> (string: Double, character: Double, train: Double?)
        let final: () throws -> (accuracy: [CopyAccuracy], generated: CopyAccuracy?, train: Double?, shuffled: [CopyAccuracy]?)

        init(spec: CopyRunSpec, model: LanguageModel, threads: Int) throws {
            if spec.task.kind == .modular {
                // Full batch: every step trains on the whole training split; evaluations
                // use batches of the same shape (no re-preparation of the model).
                let task = try spec.task.makeModular(seed: spec.seed)
                let scratch = TokenBatch(batch: spec.batch, seq: ModularAdditionTask.seq)
                func measure() throws -> (held: Double, train: Double) {
                    (try task.accuracy(model, pairs: task.heldOut, batch: scratch, threads: threads),
                     try task.accuracy(model, pairs: task.training, batch: scratch, threads: threads))
                }
                fill = try CopyRunner.trainingFill(spec)
                curve = {
                    let m = try measure()
                    return (m.held, m.held, m.train)
                }
                final = {
                    let m = try measure()
                    return ([CopyAccuracy(length: task.modulus, examples: task.heldOut.count, string: m.held, character: m.held)], nil, m.train, nil)
                }
                return
            }
            // Text copy trains on the training text and is evaluated on the held-out text
            // (natural order; shuffled too at the end); the other tasks on their own kind.
            let task: any SequenceTask = spec.task.kind == .text ? try spec.task.makeText(heldOut: true) : try spec.task.make()
            let shuffledTask = spec.task.kind == .text ? try spec.task.makeText(heldOut: true, shuffled: true) : nil
            let evalBatches = (spec.evalStrings + CopyRunSpec.evalBatch - 1) / CopyRunSpec.evalBatch
            let evalSeed = spec.seed &+ 0xE7A1
            func evaluate(_ task: any SequenceTask, _ length: Int) throws -> CopyAccuracy {
                try task.evaluate(model, batch: CopyRunSpec.evalBatch, seq: task.evaluationSeq(length: length), threads: threads,
                                  length: length, batches: evalBatches, seed: evalSeed &+ UInt64(length))
            }
            func evaluate(_ length: Int) throws -> CopyAccuracy { try evaluate(task, length) }
            fill = try CopyRunner.trainingFill(spec)
            curve = {
                let accuracy = try evaluate(spec.evalLength)
                return (accuracy.string, accuracy.character, nil)
            }
            final = {
                let accuracy = try spec.finalLengths.map(evaluate)
                let generated = try task.evaluateGenerated(model, batch: CopyRunSpec.evalBatch, threads: threads, length: spec.evalLength,
                                                           batches: evalBatches, seed: evalSeed &+ UInt64(spec.evalLength))
                let shuffled = try shuffledTask.map { shuffledTask in try spec.finalLengths.map { try evaluate(shuffledTask, $0) } }
                return (accuracy, generated, nil, shuffled)
            }
        }
    }

    /// Floats of the fixed-size recurrent state per sequence (Mamba: conv window and SSM state; LSTM: h and c).
    public static func stateFloats(_ config: ModelConfig) -> Int {
        config.pattern.reduce(0) { total, letter in
            switch letter {
            case "M": total + config.dInner * (config.dState + config.convKernel - 1)
            case "L": total + 2 * config.dModel
            default: total
            }
        }
    }

    private struct Partial: Codable {
        var step = 0
        var curve: [CurvePoint]
        var examples: Int
        var seconds: Double
        var loss: Double
    }
}
