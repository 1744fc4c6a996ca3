import Foundation
import KernelLab
import XCTest

/// The trainer and its checkpoints: bit-exact reproducibility and resume,
/// gradient accumulation, the schedule, strict checkpoint reading, and that
/// every architecture can overfit a fixed batch.
final class TrainingTests: XCTestCase {
    private let task = try! CopyTask(lengths: 2...5)

    private func tinyConfig(_ pattern: String, dModel: Int = 16, position: ModelConfig.Position = .rope) throws -> ModelConfig {
        try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: dModel, pattern: pattern, heads: 2, position: position, dState: 4)
    }

    private func options(steps: Int, accumulation: Int = 1, batch: Int = 3, seq: Int = 20, lr: Float = 3e-3) -> TrainingOptions {
        TrainingOptions(steps: steps, learningRate: lr, warmup: 2, decay: .cosine, minLearningRateFraction: 0.1,
                        weightDecay: 0.1, clip: 0.5, accumulation: accumulation, batch: batch, seq: seq, seed: 42)
    }

    private func run(_ trainer: Trainer, until step: Int) throws -> [StepRecord] {
        var records: [StepRecord] = []
        while trainer.step < step {
            records.append(try trainer.trainStep { batch, micro in self.task.fill(batch, seed: trainer.options.seed, step: micro) })
        }
        return records
    }

    /// Bit-for-bit equality of two parameter buffers, naming the first tensor that differs.
    private func assertSameBits(_ a: [Float], _ b: [Float], _ model: LanguageModel, _ message: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, file: file, line: line)
        guard a.count == b.count, let i = a.indices.first(where: { a[$0].bitPattern != b[$0].bitPattern }) else { return }
        let entry = model.table.entries.last { $0.offset <= i }
        XCTFail("\(message): differ first at \(i) (\(entry.map { "\($0.name)[\(i - $0.offset)]" } ?? "?")): \(a[i]) vs \(b[i])",
                file: file, line: line)
    }

    private func temporaryPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kernellab-training-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent(name).path
    }

    func testSameSeedGivesTheSameCurveBitForBit() throws {
        let config = try tinyConfig("AML")
        var runs: [([StepRecord], [Float])] = []
        for _ in 0..<2 {
            let trainer = try Trainer(model: try LanguageModel(config: config, seed: 5), options: options(steps: 5, accumulation: 2), threads: 2)
            runs.append((try run(trainer, until: 5), trainer.model.flatParameters))
        }
        XCTAssertEqual(runs[0].0.map(\.loss), runs[1].0.map(\.loss))
        XCTAssertEqual(runs[0].0.map(\.gradNorm), runs[1].0.map(\.gradNorm))
        assertSameBits(runs[0].1, runs[1].1, try LanguageModel(config: config, seed: 5), "two runs")
        // Another seed changes the initialization: the check can fail.
        let other = try LanguageModel(config: config, seed: 6)
        XCTAssertNotEqual(other.flatParameters, try LanguageModel(config: config, seed: 5).flatParameters)
    }

    func testResumeContinuesTheSameCurveBitForBit() throws {
        let config = try tinyConfig("AM")
        let opts = options(steps: 6)
        let straight = try Trainer(model: try LanguageModel(config: config, seed: 1), options: opts, threads: 2)
        let expected = try run(straight, until: 6)

        let path = temporaryPath("run.safetensors")
        let first = try Trainer(model: try LanguageModel(config: config, seed: 1), options: opts, threads: 2)
        let before = try run(first, until: 3)
        try Checkpoint.save(first, to: path)
        XCTAssertEqual(try Checkpoint.metadata(path).step, 3)
        // A fresh model from another seed: everything must come from the file.
        let resumed = try Trainer(model: try LanguageModel(config: config, seed: 99), options: opts, threads: 2)
        try Checkpoint.load(path, into: resumed)
        assertSameBits(resumed.model.flatParameters, first.model.flatParameters, resumed.model, "round trip")
        let after = try run(resumed, until: 6)
        XCTAssertEqual((before + after).map(\.loss), expected.map(\.loss))
        assertSameBits(resumed.model.flatParameters, straight.model.flatParameters, resumed.model, "resumed vs straight")
    }

    func testAccumulatedMicroBatchesMatchOneLargeBatch() throws {
        // Every position counts, so the mean over 2 micro-batches of 2 rows is the mean over 4 rows.
        let config = try tinyConfig("AM")
        var rng = SplitMix64(seed: 8)
        let rows = (0..<4).map { _ in (0..<13).map { _ in Int32(rng.next() % UInt64(CopyTask.vocabulary)) } }
        func fill(_ batch: TokenBatch, first: Int) {
            for r in 0..<batch.batch {
                for t in 0..<batch.seq {
                    batch.tokens[r * batch.seq + t] = rows[first + r][t]
                    batch.targets[r * batch.seq + t] = rows[first + r][t + 1]
                    batch.mask[r * batch.seq + t] = 1
                }
            }
        }
        let whole = try Trainer(model: try LanguageModel(config: config, seed: 2), options: options(steps: 1, batch: 4, seq: 12), threads: 1)
        let split = try Trainer(model: try LanguageModel(config: config, seed: 2),
                                options: options(steps: 1, accumulation: 2, batch: 2, seq: 12), threads: 1)
        let a = try whole.trainStep { batch, _ in fill(batch, first: 0) }
        let b = try split.trainStep { batch, micro in fill(batch, first: 2 * micro) }
        XCTAssertEqual(a.loss, b.loss, accuracy: 1e-5 * a.loss)
        XCTAssertEqual(a.gradNorm, b.gradNorm, accuracy: 1e-4 * a.gradNorm)
        let start = try LanguageModel(config: config, seed: 2).flatParameters
        let pa = whole.model.flatParameters, pb = split.model.flatParameters
        var worst: Float = 0, moved: Float = 0
        for i in pa.indices {
            worst = max(worst, abs(pa[i] - pb[i]))
            moved = max(moved, abs(pa[i] - start[i]))
        }
        XCTAssertGreaterThan(moved, 1e-4, "the step moved the parameters")
        XCTAssertLessThan(worst, 1e-3 * moved, "accumulation must give the large batch's update")
    }

    func testScheduleWarmsUpThenDecays() {
        var o = options(steps: 10)
        o.warmup = 4
        XCTAssertEqual(o.learningRate(at: 1), 0.25 * o.learningRate, accuracy: 1e-9)
        XCTAssertEqual(o.learningRate(at: 4), o.learningRate, accuracy: 1e-9)
        XCTAssertEqual(o.learningRate(at: 10), 0.1 * o.learningRate, accuracy: 1e-8)  // the floor
        o.decay = .linear
        XCTAssertEqual(o.learningRate(at: 7), o.learningRate * (0.1 + 0.9 * 0.5), accuracy: 1e-8)
        o.decay = .constant
        XCTAssertEqual(o.learningRate(at: 9), o.learningRate)
    }

    func testBadOptionsNameTheField() throws {
        let model = try LanguageModel(config: try tinyConfig("A"), seed: 0)
        for (bad, field) in [(options(steps: 0), "steps"), (options(steps: 3, accumulation: 0), "accumulation"),
                             (options(steps: 3, lr: -1), "lr")] {
            XCTAssertThrowsError(try Trainer(model: model, options: bad, threads: 1)) { error in
                XCTAssertTrue("\(error)".contains(field), "\(error)")
            }
        }
    }

    // MARK: Checkpoint files

    private func savedCheckpoint() throws -> (String, Trainer) {
        let trainer = try Trainer(model: try LanguageModel(config: try tinyConfig("MA"), seed: 3), options: options(steps: 4), threads: 1)
        _ = try run(trainer, until: 2)
        let path = temporaryPath("ckpt.safetensors")
        try Checkpoint.save(trainer, to: path)
        return (path, trainer)
    }

    private func assertLoadFails(_ path: String, into trainer: Trainer, mentions words: [String],
                                 file: StaticString = #filePath, line: UInt = #line) {
        let before = trainer.model.flatParameters
        XCTAssertThrowsError(try Checkpoint.load(path, into: trainer), file: file, line: line) { error in
            let text = "\(error)"
            for word in words { XCTAssertTrue(text.contains(word), "'\(word)' not in: \(text)", file: file, line: line) }
        }
        assertSameBits(trainer.model.flatParameters, before, trainer.model, "a failed load changes nothing", file: file, line: line)
    }

    func testCheckpointIsSafetensors() throws {
        let (path, trainer) = try savedCheckpoint()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let length = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(length % 8, 0)
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as! [String: Any]
        let embedding = header["embedding.weight"] as! [String: Any]
        XCTAssertEqual(embedding["dtype"] as? String, "F32")
        XCTAssertEqual(embedding["shape"] as? [Int], [CopyTask.vocabulary, 16])
        // The data are the parameters, little-endian fp32, where the offsets say.
        let offsets = embedding["data_offsets"] as! [Int]
        let first = bytes[(8 + length + offsets[0])..<(8 + length + offsets[0] + 4)]
        let value = Float(bitPattern: first.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) })
        XCTAssertEqual(value, try trainer.model.parameter("embedding.weight")[0])
        let parameters = trainer.model.table.entries.reduce(0) { $0 + $1.count }
        XCTAssertEqual(parameters, trainer.model.parameterCount)
        XCTAssertEqual(bytes.count, 8 + length + 4 * parameters + 2 * 4 * trainer.model.table.count, "parameters, then m and v")
    }

    func testTruncatedCheckpointIsAClearError() throws {
        let (path, trainer) = try savedCheckpoint()
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes.removeLast(12)
        try bytes.write(to: URL(fileURLWithPath: path))
        assertLoadFails(path, into: trainer, mentions: ["checkpoint", "truncated"])
        try Data(bytes.prefix(5)).write(to: URL(fileURLWithPath: path))
        assertLoadFails(path, into: trainer, mentions: ["too short"])
    }

    func testCorruptHeaderIsAClearError() throws {
        let (path, trainer) = try savedCheckpoint()
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        var huge = original
        huge[7] = 0x7f  // a header length past the file
        try huge.write(to: URL(fileURLWithPath: path))
        assertLoadFails(path, into: trainer, mentions: ["header length"])

        var garbled = original
        garbled[8] = UInt8(ascii: "#")
        try garbled.write(to: URL(fileURLWithPath: path))
        assertLoadFails(path, into: trainer, mentions: ["not a JSON object"])

        var f16 = original
        let needle = Array("\"F32\"".utf8)
        let at = (8..<(original.count - needle.count)).first { i in needle.indices.allSatisfy { original[i + $0] == needle[$0] } }!
        f16[at + 2] = UInt8(ascii: "1"); f16[at + 3] = UInt8(ascii: "6")
        try f16.write(to: URL(fileURLWithPath: path))
        assertLoadFails(path, into: trainer, mentions: ["dtype", "F16"])
    }

    func testMismatchedCheckpointNamesTheField() throws {
        let (path, _) = try savedCheckpoint()
        let wider = try Trainer(model: try LanguageModel(config: try tinyConfig("MA", dModel: 24), seed: 3), options: options(steps: 4), threads: 1)
        assertLoadFails(path, into: wider, mentions: ["d_model", "24"])
        let longer = try Trainer(model: try LanguageModel(config: try tinyConfig("MA"), seed: 3), options: options(steps: 9), threads: 1)
        assertLoadFails(path, into: longer, mentions: ["steps"])
        assertLoadFails(path + ".missing", into: longer, mentions: [".missing"])
    }

    func testFailedSaveLeavesNoPartialFile() throws {
        let (path, trainer) = try savedCheckpoint()
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        _ = try run(trainer, until: 3)
        // A directory in the way: the write must fail and leave the old file whole.
        let blocked = path + ".dir"
        try FileManager.default.createDirectory(atPath: blocked, withIntermediateDirectories: false)
        XCTAssertThrowsError(try Checkpoint.save(trainer, to: blocked))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), good)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent)
        XCTAssertEqual(leftovers.sorted(), ["ckpt.safetensors", "ckpt.safetensors.dir"])
    }

    // MARK: Learning

    /// Each architecture drives the loss on one fixed batch to near zero (so
    /// every block's gradient is usable for training, not only correct).
    func testEveryArchitectureOverfitsAFixedBatch() throws {
        for (pattern, steps) in [("AA", 150), ("MM", 150), ("L", 200), ("MA", 150)] {
            let config = try tinyConfig(pattern, dModel: 32)
            var o = options(steps: steps, batch: 2, seq: 16, lr: 1e-2)
            o.weightDecay = 0; o.clip = 1; o.warmup = 10
            let trainer = try Trainer(model: try LanguageModel(config: config, seed: 4), options: o, threads: 2)
            var records: [StepRecord] = []
            while trainer.step < steps {
                records.append(try trainer.trainStep { batch, _ in self.task.fill(batch, seed: 77, step: 0) })  // always batch 0
            }
            XCTAssertGreaterThan(records[0].loss, 1.5, pattern)
            XCTAssertLessThan(records.last!.loss, 0.05, "\(pattern) did not overfit: loss \(records.last!.loss)")
        }
    }

    // MARK: Data

    func testCopyBatchesMaskExactlyTheCopies() throws {
        let batch = TokenBatch(batch: 4, seq: 40)
        task.fill(batch, seed: 1, step: 7)
        for row in 0..<4 {
            let tokens = Array(batch.tokens[(row * 40)..<(row * 40 + 40)])
            let targets = Array(batch.targets[(row * 40)..<(row * 40 + 40)])
            XCTAssertEqual(tokens[0], CopyTask.bos)
            XCTAssertEqual(Array(tokens.dropFirst()), Array(targets.dropLast()), "targets are the next tokens")
            // Walk the examples: counted targets are exactly the copied letters and the end token.
            var t = 0
            while t < 40, tokens[t] == CopyTask.bos {
                var n = 0
                while t + 1 + n < 40, tokens[t + 1 + n] != CopyTask.separator { n += 1 }
                XCTAssertTrue((2...5).contains(n) || t + 1 + n >= 40, "length \(n)")
                for i in 0..<(2 * n + 3) where t + i < 40 {
                    let counted = batch.mask[row * 40 + t + i] != 0
                    XCTAssertEqual(counted, i >= n + 1 && i <= 2 * n + 1, "row \(row) position \(t + i)")
                    if i >= n + 1, i <= 2 * n { XCTAssertEqual(targets[t + i], tokens[t + i - n], "the copy of letter \(i - n - 1)") }
                    if i == 2 * n + 1 { XCTAssertEqual(targets[t + i], CopyTask.eos) }
                }
                t += 2 * n + 3
            }
        }
        let again = TokenBatch(batch: 4, seq: 40), next = TokenBatch(batch: 4, seq: 40)
        task.fill(again, seed: 1, step: 7)
        task.fill(next, seed: 1, step: 8)
        XCTAssertEqual(again.tokens, batch.tokens, "a batch is a function of (seed, step)")
        XCTAssertNotEqual(next.tokens, batch.tokens)
    }

    func testConfigFilesGiveClearErrors() throws {
        func error(_ json: String) -> String {
            do { _ = try ModelConfig.decode(Data(json.utf8), source: "test.json"); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(error(#"{"pattern": "AXM", "vocab": 30, "d_model": 16}"#).contains("pattern"))
        XCTAssertTrue(error(#"{"pattern": "AM", "vocab": 30, "d_model": 16, "dropout": 0.1}"#).contains("dropout"))
        XCTAssertTrue(error(#"{"model": "transformer", "layers": 2, "vocab": 30, "d_model": 18, "heads": 4}"#).contains("heads"))
        XCTAssertTrue(error(#"{"model": "rnn", "layers": 2, "vocab": 30, "d_model": 16}"#).contains("rnn"))
        XCTAssertTrue(error(#"{"pattern": "A", "vocab": 30}"#).contains("d_model"))
        let config = try ModelConfig.decode(Data(#"{"model": "mamba", "layers": 3, "vocab": 30, "d_model": 16}"#.utf8), source: "t")
        XCTAssertEqual(config.pattern, "MMM")
    }
}
