import KernelLab
import XCTest

/// Incremental decoding (KV cache, conv and SSM state, LSTM h and c) against
/// the full forward: the logits at every position must agree.
final class DecodingTests: XCTestCase {
    private func tokens(_ count: Int, vocabulary: Int, seed: UInt64) -> [Int32] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in Int32(rng.next() % UInt64(vocabulary)) }
    }

    private func checkIncremental(_ config: ModelConfig, batch: Int = 2, seq: Int = 11, threads: Int = 1,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try LanguageModel(config: config, seed: 21)
        try model.prepare(batch: batch, seq: seq, threads: threads)
        let data = TokenBatch(batch: batch, seq: seq)
        data.tokens = tokens(batch * seq, vocabulary: config.vocabulary, seed: 4)
        _ = try model.forward(data, training: false)
        let full = try model.forwardLogits()
        try model.prepareDecoding(batch: batch, capacity: seq, threads: threads)
        let V = config.vocabulary
        var logits: [Float] = [], worst: Float = 0, largest: Float = 0
        for t in 0..<seq {
            XCTAssertEqual(model.decodingPosition, t)
            try model.decodeStep((0..<batch).map { data.tokens[$0 * seq + t] }, logits: &logits)
            for b in 0..<batch {
                for v in 0..<V {
                    let want = full[(b * seq + t) * V + v], got = logits[b * V + v]
                    worst = max(worst, abs(want - got))
                    largest = max(largest, abs(want))
                }
            }
        }
        XCTAssertGreaterThan(largest, 0.01, "logits are not all zero", file: file, line: line)
        XCTAssertLessThan(worst, 2e-5 + 2e-5 * largest, "\(config.pattern) \(config.position): decode differs from the forward by \(worst)",
                          file: file, line: line)
        // A full state is an error, not an overrun.
        XCTAssertThrowsError(try model.decodeStep([Int32](repeating: 0, count: batch), logits: &logits), file: file, line: line)
    }

    func testTransformerRoPE() throws {
        try checkIncremental(try ModelConfig(vocabulary: 13, dModel: 16, pattern: "AA", heads: 2, position: .rope, rotaryDims: 4))
    }

    func testTransformerNoPEUntiedTwoThreads() throws {
        try checkIncremental(try ModelConfig(vocabulary: 13, dModel: 16, pattern: "AA", heads: 2, position: .nope, tiedEmbeddings: false),
                             threads: 2)
    }

    func testTransformerALiBi() throws {
        try checkIncremental(try ModelConfig(vocabulary: 13, dModel: 16, pattern: "A", heads: 4, position: .alibi))
    }

    func testTransformerHardALiBiWindows() throws {
        // Windows of 1, 2 and 3 keys and one unlimited head: the window passes the sequence's first positions.
        try checkIncremental(try ModelConfig(vocabulary: 13, dModel: 16, pattern: "A", heads: 4, position: .hardAlibi,
                                             windows: [1, 2, 3, 0]), seq: 9)
    }

    func testMamba() throws {
        try checkIncremental(try ModelConfig(vocabulary: 13, dModel: 16, pattern: "MM", dState: 4), seq: 13, threads: 2)
    }

    func testLSTM() throws {
        try checkIncremental(try ModelConfig(vocabulary: 13, dModel: 16, pattern: "LL"))
    }

    func testHybrid() throws {
        try checkIncremental(try ModelConfig(vocabulary: 13, dModel: 16, pattern: "MAL", heads: 2, position: .rope, dState: 4), threads: 2)
    }

    /// Greedy tokens are the argmax of the full forward over the prompt and what was generated so far.
    func testGreedyDecodingAgreesWithTheForward() throws {
        let config = try ModelConfig(vocabulary: 13, dModel: 16, pattern: "MA", heads: 2, position: .rope, dState: 4)
        let model = try LanguageModel(config: config, seed: 3)
        let B = 2, P = 4, count = 6, T = P + count - 1
        let prompts = tokens(B * P, vocabulary: 13, seed: 9)
        try model.prepareDecoding(batch: B, capacity: T, threads: 1)
        let generated = try model.generate(prompts: prompts, promptLength: P, count: count)
        XCTAssertEqual(generated.count, B * count)
        try model.prepare(batch: B, seq: T, threads: 1)
        let data = TokenBatch(batch: B, seq: T)
        for b in 0..<B {
            for t in 0..<T { data.tokens[b * T + t] = t < P ? prompts[b * P + t] : generated[b * count + t - P] }
        }
        _ = try model.forward(data, training: false)
        var predictions: [Int32] = []
        try model.predictions(into: &predictions)
        for b in 0..<B {
            XCTAssertEqual(Array(predictions[(b * T + P - 1)..<(b * T + T)]), Array(generated[(b * count)..<(b * count + count)]))
        }
        XCTAssertThrowsError(try model.generate(prompts: prompts, promptLength: P, count: count + 1)) { error in
            XCTAssertTrue("\(error)".contains("capacity"), "\(error)")
        }
    }

    /// The state the seeds' trade-off is about: a KV cache of exactly
    /// 2 x layers x L x d_model floats, against a recurrent state of fixed size.
    func testStateSizes() throws {
        let D = 32
        let transformer = try LanguageModel(config: try ModelConfig(vocabulary: 13, dModel: D, pattern: "AAA", heads: 4), seed: 1)
        let mamba = try LanguageModel(config: try ModelConfig(vocabulary: 13, dModel: D, pattern: "MMM", dState: 8), seed: 1)
        let lstm = try LanguageModel(config: try ModelConfig(vocabulary: 13, dModel: D, pattern: "LLL"), seed: 1)
        for L in [16, 64] {
            try transformer.prepareDecoding(batch: 1, capacity: L, threads: 1)
            XCTAssertEqual(transformer.decodingStateBytes, 2 * 3 * L * D * 4)
            try mamba.prepareDecoding(batch: 1, capacity: L, threads: 1)
            XCTAssertEqual(mamba.decodingStateBytes, 3 * 2 * D * (4 - 1 + 8) * 4, "conv window and SSM state of each layer, whatever L")
            try lstm.prepareDecoding(batch: 1, capacity: L, threads: 1)
            XCTAssertEqual(lstm.decodingStateBytes, 3 * 2 * D * 4)
        }
    }

    func testBadDecodingCallsAreErrors() throws {
        let model = try LanguageModel(config: try ModelConfig(vocabulary: 13, dModel: 16, pattern: "A", heads: 2), seed: 1)
        var logits: [Float] = []
        XCTAssertThrowsError(try model.decodeStep([1], logits: &logits)) { XCTAssertTrue("\($0)".contains("prepareDecoding"), "\($0)") }
        try model.prepareDecoding(batch: 2, capacity: 4, threads: 1)
        XCTAssertThrowsError(try model.decodeStep([1], logits: &logits)) { XCTAssertTrue("\($0)".contains("tokens"), "\($0)") }
        XCTAssertThrowsError(try model.decodeStep([1, 13], logits: &logits)) {
            XCTAssertEqual($0 as? KernelLabError,
                           .invalidArgument(argument: "tokens", reason: "tokens[1] = 13 is outside the vocabulary 0..<13"))
        }
        XCTAssertEqual(model.decodingPosition, 0, "a rejected step decodes nothing")
        XCTAssertThrowsError(try model.prepareDecoding(batch: 0, capacity: 4, threads: 1)) { XCTAssertTrue("\($0)".contains("batch"), "\($0)") }
    }

    /// Generated copies (prompt `$ s |`, greedy decoding) are exact on the same
    /// strings where teacher-forced argmax is: the two string accuracies agree.
    func testGeneratedCopyAccuracyMatchesTeacherForced() throws {
        let config = try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: 32, pattern: "MA", heads: 2, position: .rope, dState: 8)
        let model = try LanguageModel(config: config, seed: 1)
        let trainer = try Trainer(model: model, options: TrainingOptions(steps: 120, learningRate: 3e-3, warmup: 10, batch: 8, seq: 32),
                                  threads: 2)
        let task = try CopyTask(lengths: 1...3)
        for _ in 0..<120 { _ = try trainer.trainStep { task.fill($0, seed: 2, step: $1) } }
        var informative = false
        for length in 1...3 {
            let forced = try CopyTask.evaluate(model, batch: 8, seq: 2 * length + 2, threads: 2, length: length, batches: 4, seed: 7)
            let generated = try CopyTask.evaluateGenerated(model, batch: 8, threads: 2, length: length, batches: 4, seed: 7)
            XCTAssertEqual(generated.examples, forced.examples)
            XCTAssertEqual(generated.string, forced.string, "length \(length)")
            XCTAssertLessThanOrEqual(generated.character, 1)
            if forced.string > 0 && forced.string < 1 { informative = true }
        }
        XCTAssertTrue(informative, "some length should be partly copied after 120 steps, or the test checks nothing")
    }
}
