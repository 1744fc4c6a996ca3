import Foundation
import XCTest
@testable import KernelLab

final class CopyExperimentTests: XCTestCase {
    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "kernellab-copy-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    // MARK: generators

    func testLookupExamplesHaveTheirFormatAndAUniqueKey() throws {
        for key in LookupTask.Key.allCases {
            let task = try LookupTask(key: key, lengths: 6...20)
            var rng = SplitMix64(seed: 3)
            for length in [6, 7, 13, 20] {
                for _ in 0..<50 {
                    let e = task.example(length: length, rng: &rng)
                    XCTAssertEqual(e.tokens.count, task.exampleTokens(length: length))
                    XCTAssertEqual(e.tokens.first, CopyTask.bos)
                    XCTAssertEqual(e.tokens.last, CopyTask.eos)
                    XCTAssertEqual(e.answer, (e.tokens.count - 4)..<e.tokens.count)
                    let s: [Int32], g: [Int32]
                    switch key {
                    case .prefix:  // $ g | s | a .
                        g = Array(e.tokens[1...3]); s = Array(e.tokens[5..<(5 + length)])
                        XCTAssertEqual(e.tokens[4], CopyTask.separator)
                        XCTAssertEqual(e.tokens[5 + length], CopyTask.separator)
                    case .suffix:  // $ s | g a .
                        s = Array(e.tokens[1...length]); g = Array(e.tokens[(length + 2)...(length + 4)])
                        XCTAssertEqual(e.tokens[length + 1], CopyTask.separator)
                    }
                    let a = Array(e.tokens[(e.tokens.count - 4)..<(e.tokens.count - 1)])
                    let places = (0...(length - 3)).filter { Array(s[$0..<($0 + 3)]) == g }
                    XCTAssertEqual(places.count, 1, "the key occurs once")
                    XCTAssertEqual(Array(s[(places[0] + 3)..<(places[0] + 6)]), a, "the answer follows the key")
                    XCTAssertTrue(s.allSatisfy { (0..<26).contains($0) })
                }
            }
        }
        XCTAssertThrowsError(try LookupTask(key: .prefix, lengths: 5...9))  // 5 < ngram + answer
    }

    func testPackedBatchesMaskOnlyAnswersAndReproduceFromTheSeed() throws {
        let task = try LookupTask(key: .suffix, lengths: 6...10)
        let a = TokenBatch(batch: 3, seq: 64), b = TokenBatch(batch: 3, seq: 64), c = TokenBatch(batch: 3, seq: 64)
        task.fill(a, seed: 5, step: 2)
        task.fill(b, seed: 5, step: 2)
        task.fill(c, seed: 5, step: 3)
        XCTAssertEqual(a.tokens, b.tokens)
        XCTAssertEqual(a.mask, b.mask)
        XCTAssertNotEqual(a.tokens, c.tokens)
        // Masked targets are answer letters or the end; every end token is counted.
        for t in 0..<a.tokens.count {
            if a.targets[t] == CopyTask.eos { XCTAssertEqual(a.mask[t], 1) }
            if a.mask[t] == 1 { XCTAssertTrue(a.targets[t] == CopyTask.eos || (0..<26).contains(a.targets[t])) }
            if a.targets[t] == CopyTask.bos || a.targets[t] == CopyTask.separator { XCTAssertEqual(a.mask[t], 0) }
        }
        // 4 counted targets per whole example (3 answer letters and the end).
        let counted = a.mask.reduce(0, +), ends = a.targets.filter { $0 == CopyTask.eos }.count
        XCTAssertGreaterThanOrEqual(Int(counted), 4 * ends - 3 * 3)
        XCTAssertLessThanOrEqual(Int(counted), 4 * ends + 3 * 3)
    }

    func testEvaluationSpansAreTheAnswers() throws {
        let task = try LookupTask(key: .prefix, lengths: 6...12)
        let seq = task.evaluationSeq(length: 9)
        let batch = TokenBatch(batch: 2, seq: seq)
        let spans = try task.fillEvaluation(batch, length: 9, seed: 1)
        for (row, span) in spans.enumerated() {
            XCTAssertEqual(span.count, 4)
            XCTAssertEqual(batch.targets[row * seq + span.upperBound - 1], CopyTask.eos)
            for t in 0..<seq { XCTAssertEqual(batch.mask[row * seq + t], span.contains(t) ? 1 : 0) }
        }
        XCTAssertThrowsError(try task.fillEvaluation(TokenBatch(batch: 1, seq: seq - 1), length: 9, seed: 1))
        XCTAssertThrowsError(try task.fillEvaluation(batch, length: 5, seed: 1))
    }

    func testPhoneBookExamplesAnswerTheQueriedEntry() throws {
        let task = try PhoneBookTask(entries: 1...9)
        var rng = SplitMix64(seed: 8)
        for entries in [1, 2, 9] {
            for _ in 0..<30 {
                let e = task.example(length: entries, rng: &rng)
                XCTAssertEqual(e.tokens.count, task.exampleTokens(length: entries))
                XCTAssertEqual(e.answer.count, 11)
                XCTAssertEqual(e.tokens.last, CopyTask.eos)
                var names: [[Int32]] = [], numbers: [[Int32]] = []
                for i in 0..<entries {
                    let base = 1 + i * 17
                    names.append(Array(e.tokens[base..<(base + 5)]))
                    XCTAssertEqual(e.tokens[base + 5], PhoneBookTask.colon)
                    numbers.append(Array(e.tokens[(base + 6)..<(base + 16)]))
                    XCTAssertEqual(e.tokens[base + 16], CopyTask.separator)
                }
                XCTAssertEqual(Set(names).count, entries, "names are unique in a book")
                let q = 1 + entries * 17
                XCTAssertEqual(e.tokens[q], PhoneBookTask.query)
                let asked = try XCTUnwrap(names.firstIndex(of: Array(e.tokens[(q + 1)..<(q + 6)])))
                XCTAssertEqual(Array(e.tokens[e.answer.dropLast()]), numbers[asked])
                XCTAssertTrue(numbers.joined().allSatisfy { (PhoneBookTask.digit0..<PhoneBookTask.digit0 + 10).contains($0) })
                XCTAssertTrue(e.tokens.allSatisfy { (0..<Int32(task.vocabulary)).contains($0) })
            }
        }
    }

    func testBeyondExperimentsRunEndToEndAtSmokeScale() throws {
        let directory = try temporaryDirectory()
        try Self.writeFixtureCorpus(directory + "/fortunes")
        var scale = CopyScale.of(.smoke)
        scale.text.corpus = directory + "/fortunes"  // the fixture: tests do not need the fortunes package
        let reports = try CopySuite(directory: directory, threads: 1, progress: .silent).run(CopyExperiment.beyond, preset: .smoke, seeds: 2, scale: scale)
        XCTAssertEqual(reports.map(\.experiment), [.phoneBook, .hybrids, .grokking, .naturalText])
        XCTAssertEqual(reports.map(\.verdicts.count), [1, 2, 2, 2])
        let text = try storedRuns(directory).filter { $0.spec.task.kind == .text }
        XCTAssertEqual(text.count, 6)
        for run in text {
            XCTAssertEqual(run.accuracy.map(\.length), [4, 8])
            XCTAssertEqual(run.shuffledAccuracy?.map(\.length), [4, 8])
        }
        for report in reports {
            let folder = (directory as NSString).appendingPathComponent(report.experiment.rawValue)
            XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/summary.md"))
        }
        let hybrids = try String(contentsOfFile: directory + "/hybrids/summary.md", encoding: .utf8)
        for pattern in ["| MM |", "| AM |", "| MA |", "| AA |"] { XCTAssertTrue(hybrids.contains(pattern), pattern) }
        let phone = try String(contentsOfFile: directory + "/phonebook/summary.md", encoding: .utf8)
        XCTAssertTrue(phone.contains("| hybrid MA |"), phone)
        // Grokking: every run full batch on its split, its curve with both accuracies.
        let grokking = try storedRuns(directory).filter { $0.spec.task.kind == .modular }
        XCTAssertEqual(grokking.count, 6)
        for run in grokking {
            let task = try run.spec.task.makeModular(seed: run.spec.seed)
            XCTAssertEqual(run.spec.batch, task.training.count)
            XCTAssertEqual(run.examplesSeen, run.steps * task.training.count)
            XCTAssertFalse(run.curve.isEmpty)
            XCTAssertTrue(run.curve.allSatisfy { $0.train != nil && (0...1).contains($0.string) })
            XCTAssertEqual(run.accuracy.map(\.examples), [task.heldOut.count])
            XCTAssertNotNil(run.trainAccuracy)
        }
        XCTAssertTrue(try String(contentsOfFile: directory + "/grokking/summary.md", encoding: .utf8).contains("| transformer |"))
    }

    /// A small corpus in the fortunes format (entries between `%` lines).
    static func writeFixtureCorpus(_ directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let sentences = ["The quick brown fox jumps over the lazy dog.", "A stitch in time saves nine!", "Do not count your chickens.",
                         "All that glitters is not gold; said the bard.", "When in Rome, do as the Romans do.",
                         "Fortune favours the bold -- and the prepared.", "Every cloud has a silver lining.",
                         "Actions speak louder than words.", "Curiosity killed the cat, they say.", "Better late than never (2024)."]
        let entries = (0..<60).map { i in sentences[i % sentences.count] + " Entry \(String(UnicodeScalar(UInt8(97 + i % 26))))." }
        try (entries.joined(separator: "\n%\n") + "\n").write(toFile: directory + "/wisdom", atomically: true, encoding: .utf8)
        try "@@@@\n%\n####\n".write(toFile: directory + "/art", atomically: true, encoding: .utf8)  // skipped: pictures
        try Data([0, 1, 2]).write(to: URL(fileURLWithPath: directory + "/wisdom.dat"))
    }

    func testTextCorpusSplitsEntriesAndPassagesKeepTheirWords() throws {
        let directory = try temporaryDirectory() + "/fortunes"
        try Self.writeFixtureCorpus(directory)
        let corpus = try TextCorpus.load(directory: directory)
        let letters = Set((0..<26).map(Int32.init)).union([TextCorpus.space])
        XCTAssertTrue((corpus.train + corpus.heldOut).allSatisfy(letters.contains), "letters and spaces only")
        XCTAssertFalse(corpus.train.contains(where: { $0 == CopyTask.bos }))
        // Every 10th entry is held out: 6 of 60.
        func text(_ tokens: [Int32]) -> String {
            String(tokens.map { $0 == TextCorpus.space ? " " : Character(UnicodeScalar(UInt8(97 + $0))) })
        }
        XCTAssertTrue(text(corpus.train).hasPrefix("the quick brown fox jumps over the lazy dog entry a a stitch"), text(corpus.train).prefix(80).description)
        XCTAssertEqual(text(corpus.heldOut).components(separatedBy: "entry ").count - 1, 6)
        XCTAssertTrue(text(corpus.heldOut).hasPrefix("better late than never entry j"))
        XCTAssertTrue(corpus.trainWordStarts.allSatisfy { $0 == 0 || corpus.train[$0 - 1] == TextCorpus.space })

        let natural = try TextCopyTask(corpus: corpus, lengths: 1...40, heldOut: true)
        let shuffled = try TextCopyTask(corpus: corpus, lengths: 1...40, heldOut: true, shuffled: true)
        var a = SplitMix64(seed: 9), b = SplitMix64(seed: 9)
        var differed = 0
        for _ in 0..<50 {
            let p = natural.passage(length: 40, rng: &a), q = shuffled.passage(length: 40, rng: &b)
            XCTAssertEqual(p.count, 40)
            XCTAssertEqual(q.count, 40)
            // The same words (and so the same length), in another order.
            XCTAssertEqual(p.split(separator: TextCorpus.space).map(Array.init).sorted { $0.lexicographicallyPrecedes($1) },
                           q.split(separator: TextCorpus.space).map(Array.init).sorted { $0.lexicographicallyPrecedes($1) })
            XCTAssertTrue(text(corpus.heldOut).contains(text(p)), "a natural passage is a piece of the held-out text")
            differed += p == q ? 0 : 1
        }
        XCTAssertGreaterThan(differed, 25)
        // An example: `$ p | p .`, the copy and `.` answered, the first p trained on as well.
        var rng = SplitMix64(seed: 1)
        let example = natural.example(length: 12, rng: &rng)
        XCTAssertEqual(example.tokens.count, natural.exampleTokens(length: 12))
        XCTAssertEqual(Array(example.tokens[1..<13]), Array(example.tokens[14..<26]))
        XCTAssertEqual(example.answer, 14..<27)
        XCTAssertEqual(example.alsoTrained, 1..<13)
        let batch = TokenBatch(batch: 2, seq: 64)
        natural.fill(batch, seed: 3, step: 0)
        for i in 0..<batch.tokens.count where batch.tokens[i] == CopyTask.bos {
            XCTAssertEqual(batch.mask[i], 1, "the first letter of a passage is a language-model target")
        }
        XCTAssertThrowsError(try TextCorpus.load(directory: directory + "/missing")) { error in
            XCTAssertTrue("\(error)".contains("fortunes"), "\(error)")
        }
        XCTAssertThrowsError(try TextCopyTask(corpus: corpus, lengths: 1...100_000))
    }

    func testModularAdditionSplitsTheTableAndScoresOnlyTheAnswer() throws {
        let task = try ModularAdditionTask(modulus: 7, trainPercent: 30, splitSeed: 3)
        XCTAssertEqual(task.training.count, 14)
        XCTAssertEqual(task.heldOut.count, 35)
        XCTAssertEqual(Set(task.training + task.heldOut), Set(0..<49), "the two parts cover the table")
        XCTAssertTrue(Set(task.training).isDisjoint(with: task.heldOut))
        XCTAssertEqual(try ModularAdditionTask(modulus: 7, trainPercent: 30, splitSeed: 3).training, task.training)
        XCTAssertNotEqual(try ModularAdditionTask(modulus: 7, trainPercent: 30, splitSeed: 4).training, task.training)
        let batch = TokenBatch(batch: 16, seq: ModularAdditionTask.seq)
        XCTAssertEqual(task.fill(batch, pairs: task.training), 14)
        for row in 0..<16 {
            let base = row * 4
            XCTAssertEqual(batch.mask[base..<base + 3], [0, 0, 0])
            XCTAssertEqual(batch.mask[base + 3], row < 14 ? 1 : 0, "row \(row): padding rows count for nothing")
            guard row < 14 else { continue }
            let (a, b) = (task.training[row] / 7, task.training[row] % 7)
            XCTAssertEqual(Array(batch.tokens[base..<base + 4]), [Int32(a), task.plus, Int32(b), task.equals])
            XCTAssertEqual(batch.targets[base + 3], Int32((a + b) % 7))
        }
        XCTAssertThrowsError(try ModularAdditionTask(modulus: 7, trainPercent: 100, splitSeed: 0))
        XCTAssertThrowsError(try ModularAdditionTask(modulus: 1, trainPercent: 30, splitSeed: 0))
        // A spec whose batch is not the whole training split is refused before training.
        let config = try ModelConfig(vocabulary: 9, dModel: 8, pattern: "L")
        var spec = CopyRunSpec(model: "lstm", config: config, task: .modular(7, trainPercent: 30), steps: 2, batch: 13, seq: 4,
                               learningRate: 1e-3, warmup: 0, seed: 3, evalEvery: 1, evalLength: 7, finalLengths: [7], evalStrings: 1)
        XCTAssertThrowsError(try spec.validate())
        spec.batch = 14
        XCTAssertNoThrow(try spec.validate())
    }

    /// The grokking verdicts from hand-made curves: steps to memorize and to
    /// generalize per model, both ways.
    func testGrokkingVerdictsFollowTheMeasuredSteps() throws {
        func run(_ label: String, seed: UInt64, memorize: Int, generalize: Int?) throws -> CopyRunResult {
            let config = try ModelConfig(vocabulary: 9, dModel: 8, pattern: "L")
            let spec = CopyRunSpec(model: label, config: config, task: .modular(7, trainPercent: 30), steps: 2000, batch: 14, seq: 4,
                                   learningRate: 1e-3, warmup: 0, seed: seed, evalEvery: 25, evalLength: 7, finalLengths: [7], evalStrings: 1)
            let curve = stride(from: 25, through: 2000, by: 25).map { step in
                CurvePoint(step: step, examples: step * 14, loss: 0, string: generalize.map { step >= $0 ? 1 : 0.1 } ?? 0.1,
                           character: 0, train: step >= memorize ? 1 : 0.5)
            }
            return CopyRunResult(spec: spec, id: spec.id, parameters: 1, stateFloats: 0, steps: 2000, examplesSeen: 0, tokensTrained: 0,
                                 wallSeconds: 0, finalLoss: 0, curve: curve, accuracy: [], generated: nil, isa: "scalar", threads: 1)
        }
        func verdicts(transformer: Int?, mamba: Int?, memorize: Int = 100) throws -> [Verdict] {
            var results: [CopyRunResult] = [], runs: [(label: String, spec: CopyRunSpec)] = []
            for (label, at) in [("transformer", transformer), ("mamba", mamba), ("lstm", nil)] {
                for seed in UInt64(0)..<3 {
                    let r = try run(label, seed: seed, memorize: memorize, generalize: at.map { $0 + 25 * Int(seed) })
                    results.append(r)
                    runs.append((label, r.spec))
                }
            }
            let plan = CopyPlan(experiment: .grokking, preset: .smoke, scale: .of(.smoke), seeds: 3, runs: runs)
            return try CopyExperiment.grokking.report(plan: plan, results: results, context: "").verdicts.map(\.verdict)
        }
        XCTAssertEqual(CopyExperiment.stepToMemorize(try run("x", seed: 0, memorize: 300, generalize: nil)), 300)
        XCTAssertEqual(CopyExperiment.stepToGeneralize(try run("x", seed: 0, memorize: 300, generalize: 1000)), 1000)
        XCTAssertEqual(try verdicts(transformer: 1500, mamba: 400), [.reproduced, .partly])   // the LSTM never generalizes
        XCTAssertEqual(try verdicts(transformer: 400, mamba: 1500), [.notReproduced, .partly])
        XCTAssertEqual(try verdicts(transformer: 400, mamba: 425), [.inconclusive, .partly])  // overlapping intervals
        XCTAssertEqual(try verdicts(transformer: nil, mamba: 400), [.reproduced, .partly])
        XCTAssertEqual(try verdicts(transformer: nil, mamba: nil), [.inconclusive, .inconclusive])
        // Generalizing together with memorizing is not grokking.
        XCTAssertEqual(try verdicts(transformer: 100, mamba: 150, memorize: 100)[1], .notReproduced)
    }

    // MARK: metrics

    func testTallyScoresHandMadePredictions() {
        // Two rows of 6; answers at 2..<5 and 1..<4.
        let targets: [Int32] = [9, 9, 1, 2, 3, 9, 9, 4, 5, 6, 9, 9]
        let predictions: [Int32] = [0, 0, 1, 2, 3, 0, 0, 4, 7, 6, 0, 0]
        var tally = CopyAccuracy.Tally()
        tally.add(predictions: predictions, targets: targets, spans: [2..<5, 1..<4], seq: 6)
        let accuracy = tally.accuracy(length: 3)
        XCTAssertEqual(accuracy.examples, 2)
        XCTAssertEqual(accuracy.string, 0.5)  // the second row misses one letter
        XCTAssertEqual(accuracy.character, 5.0 / 6.0)
    }

    func testSeedStatisticUsesStudentT() {
        let s = SeedStatistic([1, 2, 3])
        XCTAssertEqual(s.mean, 2)
        XCTAssertEqual(s.halfWidth, 4.303 * (1.0 / 3).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(s.min, 1)
        XCTAssertEqual(SeedStatistic([0.5]).halfWidth, 0)
    }

    // MARK: the hand-built copier

    func testNGramCopierIsExactWithoutARepeatedNGramAndFailsWithOne() throws {
        let pool = try ThreadPool(threads: 2)
        var rng = SplitMix64(seed: 11)
        for n in 2...4 {
            let copier = try NGramCopier(n: n)
            for length in [1, 2, n, n + 1, 9, 17] {
                let strings = (0..<24).map { _ in randomLetters(length, &rng) }.filter { !NGramCopier.hasRepeatedNGram($0, n: n) }
                guard !strings.isEmpty else { continue }
                let accuracy = try copier.copyAccuracy(strings, pool: pool)
                XCTAssertEqual(accuracy.string, 1, "n=\(n) length \(length)")
                XCTAssertEqual(accuracy.character, 1)
            }
            // A planted repeat with different successors: the lookup is ambiguous and the copy breaks.
            let planted = NGramCopier.stringsWithRepeat(count: 16, length: 30, n: n, seed: 4)
            XCTAssertTrue(planted.allSatisfy { NGramCopier.hasRepeatedNGram($0, n: n) })
            XCTAssertLessThan(try copier.copyAccuracy(planted, pool: pool).string, 0.75)
        }
        // A hand-checked failure: "abab" with n = 1 repeats "a" and "b".
        XCTAssertTrue(NGramCopier.hasRepeatedNGram([0, 1, 0, 1], n: 1))
        XCTAssertFalse(NGramCopier.hasRepeatedNGram([0, 1, 0, 2], n: 2))
        XCTAssertEqual(NGramCopier.bound(length: 10, n: 2), 1 - 100.0 / 676, accuracy: 1e-12)
        XCTAssertEqual(NGramCopier.bound(length: 100, n: 2), 0)
        XCTAssertThrowsError(try NGramCopier(n: 0))
    }

    // MARK: verdicts can go either way

    private func fakeRun(_ label: String, seed: UInt64, reachAt examples: Int?, budget: Int = 100_000) throws -> CopyRunResult {
        let config = try ModelConfig(vocabulary: 30, dModel: 8, pattern: "A", heads: 2)
        let spec = CopyRunSpec(model: label, config: config, task: TaskSpec(kind: .copy, lengths: 1...4), steps: 10, batch: 1, seq: 16,
                               learningRate: 1e-3, warmup: 0, seed: seed, evalEvery: 1, evalLength: 4, finalLengths: [4], evalStrings: 16)
        var curve = [CurvePoint(step: 1, examples: 10, loss: 3, string: 0, character: 0)]
        if let examples { curve.append(CurvePoint(step: 2, examples: examples, loss: 0, string: 1, character: 1)) }
        curve.append(CurvePoint(step: 3, examples: budget, loss: 0, string: examples == nil ? 0 : 1, character: 0))
        return CopyRunResult(spec: spec, id: spec.id, parameters: 1, stateFloats: 0, steps: 3, examplesSeen: budget, tokensTrained: 0,
                             wallSeconds: 0, finalLoss: 0, curve: curve, accuracy: [], generated: nil, isa: "scalar", threads: 1)
    }

    private func efficiencyVerdict(transformer: Int?, mamba: Int?) throws -> Verdict {
        var results: [CopyRunResult] = []
        var runs: [(label: String, spec: CopyRunSpec)] = []
        for (label, at) in [("hard_alibi", transformer), ("mamba", mamba), ("lstm", nil)] {
            for seed in UInt64(0)..<3 {
                let run = try fakeRun(label, seed: seed, reachAt: at.map { $0 + Int(seed) })
                results.append(run)
                runs.append((label, run.spec))
            }
        }
        let plan = CopyPlan(experiment: .trainEfficiency, preset: .smoke, scale: .of(.smoke), seeds: 3, runs: runs)
        let report = try CopyExperiment.trainEfficiency.report(plan: plan, results: results, context: "")
        XCTAssertEqual(report.verdicts.count, 2)
        return report.verdicts[0].verdict
    }

    func testTrainingEfficiencyVerdictFollowsTheMeasuredRatio() throws {
        XCTAssertEqual(try efficiencyVerdict(transformer: 500, mamba: 80_000), .reproduced)
        XCTAssertEqual(try efficiencyVerdict(transformer: 5_000, mamba: 40_000), .partly)
        XCTAssertEqual(try efficiencyVerdict(transformer: 50_000, mamba: 2_000), .notReproduced)
        XCTAssertEqual(try efficiencyVerdict(transformer: nil, mamba: 2_000), .inconclusive)
    }

    // MARK: end to end

    /// Strips what legitimately differs between two trainings of one run (wall time).
    private func comparable(_ results: [CopyRunResult]) -> [CopyRunResult] {
        results.map { var r = $0; r.wallSeconds = 0; return r }.sorted { $0.id < $1.id }
    }

    private func storedRuns(_ directory: String) throws -> [CopyRunResult] {
        let runs = (directory as NSString).appendingPathComponent("runs")
        return try FileManager.default.contentsOfDirectory(atPath: runs).filter { $0.hasSuffix(".json") && !$0.hasSuffix(".partial.json") }
            .map { try JSONDecoder.lab.decode(CopyRunResult.self, from: Data(contentsOf: URL(fileURLWithPath: (runs as NSString).appendingPathComponent($0)))) }
    }

    func testEveryExperimentRunsEndToEndAtSmokeScaleAndShardsMatch() throws {
        let whole = try temporaryDirectory()
        let suite = try CopySuite(directory: whole, threads: 1, progress: .silent)
        let reports = try suite.run(CopyExperiment.copying, preset: .smoke, seeds: 2)
        XCTAssertEqual(reports.map(\.experiment), CopyExperiment.copying)
        for report in reports {
            XCTAssertFalse(report.verdicts.isEmpty)
            let folder = (whole as NSString).appendingPathComponent(report.experiment.rawValue)
            for name in ["summary.md", "results.json", "curves.csv"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent(name)), name)
            }
            let summary = try String(contentsOfFile: (folder as NSString).appendingPathComponent("summary.md"), encoding: .utf8)
            XCTAssertTrue(summary.contains("## The paper's claims beside this run"))
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: (folder as NSString).appendingPathComponent("results.json"))))
            XCTAssertNotNil((json as? [String: Any])?["verdicts"])
            XCTAssertTrue(try FileManager.default.contentsOfDirectory(atPath: folder).contains { $0.hasSuffix(".svg") })
        }
        let index = try String(contentsOfFile: (whole as NSString).appendingPathComponent("index.html"), encoding: .utf8)
        for experiment in CopyExperiment.copying { XCTAssertTrue(index.contains("\(experiment.rawValue)/summary.md")) }
        let first = try storedRuns(whole)
        // train-efficiency and length-generalization share their 12 runs: 12 + 4 (capacity) + 8 (lookup).
        XCTAssertEqual(first.count, 24)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: whole + "/runs").contains { $0.hasSuffix(".ckpt") })

        // A second run trains nothing: every result is read back unchanged.
        _ = try suite.run(CopyExperiment.copying, preset: .smoke, seeds: 2)
        XCTAssertEqual(try storedRuns(whole).sorted { $0.id < $1.id }, first.sorted { $0.id < $1.id })

        // Two shards, then the unsharded call for the reports: the same results.
        let sharded = try temporaryDirectory()
        let shards = try CopySuite(directory: sharded, threads: 1, progress: .silent)
        let left = try shards.runShard(CopyExperiment.copying, preset: .smoke, seeds: 2, index: 1, count: 2)
        XCTAssertEqual(left, 12)
        XCTAssertEqual(try shards.runShard(CopyExperiment.copying, preset: .smoke, seeds: 2, index: 2, count: 2), 0)
        _ = try shards.run(CopyExperiment.copying, preset: .smoke, seeds: 2)
        XCTAssertEqual(comparable(try storedRuns(sharded)), comparable(first))
        XCTAssertThrowsError(try shards.runShard(CopyExperiment.copying, preset: .smoke, seeds: 2, index: 3, count: 2))

        // Shards on two "machines" (directories), merged: the same results; a missing slice is an error.
        let (a, b, merged, half) = (try temporaryDirectory(), try temporaryDirectory(), try temporaryDirectory(), try temporaryDirectory())
        _ = try CopySuite(directory: a, threads: 1, progress: .silent).runShard(CopyExperiment.copying, preset: .smoke, seeds: 2, index: 1, count: 2)
        _ = try CopySuite(directory: b, threads: 1, progress: .silent).runShard(CopyExperiment.copying, preset: .smoke, seeds: 2, index: 2, count: 2)
        let joined = try CopySuite(directory: merged, threads: 1, progress: .silent)
        XCTAssertEqual(try joined.merge(from: [a, b]), 24)
        XCTAssertEqual(try joined.merge(from: [a]), 0)  // already there, and equal
        _ = try joined.run(CopyExperiment.copying, preset: .smoke, seeds: 2, train: false)
        XCTAssertEqual(comparable(try storedRuns(merged)), comparable(first))
        let incomplete = try CopySuite(directory: half, threads: 1, progress: .silent)
        _ = try incomplete.merge(from: [a])
        XCTAssertThrowsError(try incomplete.run(CopyExperiment.copying, preset: .smoke, seeds: 2, train: false))
        XCTAssertThrowsError(try incomplete.merge(from: [half + "/nothing"]))
    }

    func testAnInterruptedRunResumesOnTheSameCurve() throws {
        let config = try ModelConfig(vocabulary: 30, dModel: 16, pattern: "MA", heads: 2, dState: 4)
        let spec = CopyRunSpec(model: "hybrid", config: config, task: TaskSpec(kind: .copy, lengths: 1...4), steps: 12, batch: 2, seq: 32,
                               learningRate: 3e-3, warmup: 2, seed: 9, evalEvery: 4, evalLength: 4, finalLengths: [2, 4], evalStrings: 16)
        let straight = try CopyRunner(directory: try temporaryDirectory(), threads: 1).run(spec, label: "straight")

        let directory = try temporaryDirectory()
        let runner = try CopyRunner(directory: directory, threads: 1)
        // Ctrl-C: the run saves its state at the step it stopped (6, then 9) and continues from there.
        for stepsBeforeStop in [6, 3] {
            var calls = 0
            runner.shouldStop = { calls += 1; return calls == stepsBeforeStop }
            XCTAssertThrowsError(try runner.run(spec, label: "interrupted")) { XCTAssertTrue($0 is CopyRunner.Interrupted) }
            XCTAssertNil(runner.finished(spec))
        }
        runner.shouldStop = { false }
        let resumed = try runner.run(spec, label: "resumed")
        XCTAssertEqual(comparable([resumed]), comparable([straight]))
    }

    /// A kill between writing a run's result and removing its checkpoint and curve leaves all three; the next
    /// launch reads the result and removes the leftovers (a sweep must end with no partial files).
    func testAFinishedRunsLeftoversAreRemovedWhenItIsReadBack() throws {
        let config = try ModelConfig(vocabulary: 30, dModel: 16, pattern: "A", heads: 2)
        let spec = CopyRunSpec(model: "tiny", config: config, task: TaskSpec(kind: .copy, lengths: 1...3), steps: 4, batch: 2, seq: 24,
                               learningRate: 3e-3, warmup: 1, seed: 2, evalEvery: 2, evalLength: 3, finalLengths: [3], evalStrings: 8)
        let runner = try CopyRunner(directory: try temporaryDirectory(), threads: 1)
        let first = try runner.run(spec, label: "first")
        for suffix in [".ckpt", ".partial.json"] {
            XCTAssertTrue(FileManager.default.createFile(atPath: runner.path(spec.id, suffix), contents: Data("left by a kill".utf8)))
        }
        let again = try runner.run(spec, label: "again")
        XCTAssertEqual(again, first, "read back, not trained again")
        for suffix in [".ckpt", ".partial.json"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: runner.path(spec.id, suffix)), "\(suffix) left behind")
        }
    }

    func testAKilledRunResumesFromItsLastCheckpointWhateverStateItsCurveIsIn() throws {
        let config = try ModelConfig(vocabulary: 30, dModel: 16, pattern: "A", heads: 2)
        let spec = CopyRunSpec(model: "tiny", config: config, task: TaskSpec(kind: .copy, lengths: 1...3), steps: 10, batch: 2, seq: 24,
                               learningRate: 3e-3, warmup: 1, seed: 2, evalEvery: 4, evalLength: 3, finalLengths: [3], evalStrings: 16)
        let straight = try CopyRunner(directory: try temporaryDirectory(), threads: 1).run(spec, label: "straight")
        XCTAssertEqual(straight.curve.map(\.step), [4, 8, 10])

        // Stop at step `stop`, then make the curve file what a kill at the worst moment leaves.
        func resume(stop: Int, curve: (String) throws -> Void) throws -> CopyRunResult {
            let runner = try CopyRunner(directory: try temporaryDirectory(), threads: 1)
            var calls = 0
            runner.shouldStop = { calls += 1; return calls == stop }
            XCTAssertThrowsError(try runner.run(spec, label: "interrupted"))
            try curve(runner.path(spec.id, ".partial.json"))
            runner.shouldStop = { false }
            return try runner.run(spec, label: "resumed")
        }
        // Killed after the step-8 checkpoint's curve was replaced by a later one (stop at 9, curve
        // ahead of a checkpoint restored to step 8): steps 9-10 are trained again, nothing is lost.
        let a = try resume(stop: 8) { path in
            // The curve a later evaluation would have written: ahead of the checkpoint.
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
            json["step"] = 10
            json["examples"] = 999_999
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        }
        XCTAssertEqual(comparable([a]), comparable([straight]))
        // Killed with no curve at all at an evaluation step (4): it is evaluated again, its loss unknown.
        var b = try resume(stop: 4) { try FileManager.default.removeItem(atPath: $0) }
        XCTAssertEqual(b.examplesSeen, straight.examplesSeen)
        XCTAssertEqual(b.curve.map(\.string), straight.curve.map(\.string))
        XCTAssertEqual(b.curve.map(\.examples), straight.curve.map(\.examples))
        XCTAssertTrue(b.curve[0].loss.isNaN)
        b.curve = straight.curve
        XCTAssertEqual(comparable([b]), comparable([straight]))
        // Killed at the last step with no curve: the final loss is unknown (NaN), the rest the same.
        var c = try resume(stop: 10) { try FileManager.default.removeItem(atPath: $0) }
        XCTAssertTrue(c.finalLoss.isNaN)
        XCTAssertEqual(c.accuracy, straight.accuracy)
        XCTAssertEqual(c.curve.last?.string, straight.curve.last?.string)
        (c.curve, c.finalLoss) = (straight.curve, straight.finalLoss)
        XCTAssertEqual(comparable([c]), comparable([straight]))
    }
}
