/// One example of a sequence task: its tokens, and the span of them the
/// model is scored on (the answer and its end token; each is predicted from
/// the tokens before it).
public struct TaskExample: Equatable, Sendable {
    public var tokens: [Int32]
    public var answer: Range<Int>
    /// Tokens scored in training besides the answer, never in evaluation
    /// (a language-model loss on the context); empty for the synthetic tasks.
    public var alsoTrained: Range<Int>

    public init(tokens: [Int32], answer: Range<Int>, alsoTrained: Range<Int> = 0..<0) {
        self.tokens = tokens
        self.answer = answer
        self.alsoTrained = alsoTrained
    }
}

/// A synthetic task over the copy paper's tokens (see `CopyTask`; a task
/// may add tokens of its own after them): examples whose length is the variable,
/// packed back to back for training, one per row for evaluation.
///
/// Conforming types say how one example of a given string length looks and
/// how many tokens it takes; packing, masks and both evaluations are shared.
public protocol SequenceTask: Sendable {
    /// String lengths of the training examples, uniform in this range.
    var lengths: ClosedRange<Int> { get }
    /// The shortest string length `example(length:rng:)` accepts.
    var minimumLength: Int { get }
    /// A random example whose string has `length` letters.
    func example(length: Int, rng: inout SplitMix64) -> TaskExample
    /// Tokens of an example of `length` (every example of one length has the same layout).
    func exampleTokens(length: Int) -> Int
    /// The tokens a model of the task must know (30 unless the task adds its own).
    var vocabulary: Int { get }
}

extension SequenceTask {
    public var vocabulary: Int { CopyTask.vocabulary }

    /// Fills `batch` for training step `step`: each row a context of examples
    /// packed back to back (the last one cut off), targets the next tokens,
    /// the mask 1 where the target is part of an answer. Every batch is a
    /// function of (seed, step) alone, so a resumed run sees the same data.
    public func fill(_ batch: TokenBatch, seed: UInt64, step: Int) {
        let T = batch.seq
        for row in 0..<batch.batch {
            var rng = SplitMix64(seed: seed ^ (UInt64(step) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(row) &* 0xC2B2_AE3D_27D4_EB4F))
            // T + 1 tokens: inputs are [0, T), targets [1, T + 1).
            var stream: [Int32] = []
            var counts: [Bool] = []
            stream.reserveCapacity(T + 1 + exampleTokens(length: lengths.upperBound))
            while stream.count < T + 1 {
                let n = lengths.lowerBound + Int(rng.next() % UInt64(lengths.count))
                let example = example(length: n, rng: &rng)
                for (i, token) in example.tokens.enumerated() {
                    stream.append(token)
                    counts.append(example.answer.contains(i) || example.alsoTrained.contains(i))
                }
            }
            for t in 0..<T {
                batch.tokens[row * T + t] = stream[t]
                batch.targets[row * T + t] = stream[t + 1]
                batch.mask[row * T + t] = counts[t + 1] ? 1 : 0
            }
        }
    }

    /// One example per row, padded: for evaluation at a single length.
    /// Returns the span of predicted positions per row (targets of the answer).
    public func fillEvaluation(_ batch: TokenBatch, length: Int, seed: UInt64) throws -> [Range<Int>] {
        try checkEvaluation(length: length, seq: batch.seq)
        var rng = SplitMix64(seed: seed)
        var spans: [Range<Int>] = []
        for row in 0..<batch.batch {
            let example = example(length: length, rng: &rng)
            var tokens = example.tokens
            tokens += [Int32](repeating: CopyTask.padding, count: batch.seq + 1 - tokens.count)
            for t in 0..<batch.seq {
                batch.tokens[row * batch.seq + t] = tokens[t]
                batch.targets[row * batch.seq + t] = tokens[t + 1]
                batch.mask[row * batch.seq + t] = example.answer.contains(t + 1) ? 1 : 0
            }
            spans.append((example.answer.lowerBound - 1)..<(example.answer.upperBound - 1))
        }
        return spans
    }

    /// The context an evaluation at `length` needs: the example less its last token.
    public func evaluationSeq(length: Int) -> Int { exampleTokens(length: length) - 1 }

    func checkEvaluation(length: Int, seq: Int) throws {
        guard length >= minimumLength else {
            throw KernelLabError.invalidArgument(argument: "length", reason: "must be at least \(minimumLength) for this task, got \(length)")
        }
        guard exampleTokens(length: length) <= seq + 1 else {
            throw KernelLabError.invalidArgument(argument: "length",
                                                 reason: "an example of length \(length) needs seq >= \(evaluationSeq(length: length)), got \(seq)")
        }
    }

    /// Teacher-forced evaluation: one example per row, one forward, argmax
    /// at every answer position; `batches` batches of the model's shape.
    /// String accuracy is the exact match of the whole answer (as the paper).
    public func evaluate(_ model: LanguageModel, batch: Int, seq: Int, threads: Int, length: Int, batches: Int,
                         seed: UInt64) throws -> CopyAccuracy {
        try model.prepare(batch: batch, seq: seq, threads: threads)
        let data = TokenBatch(batch: batch, seq: seq)
        var predictions: [Int32] = []
        var tally = CopyAccuracy.Tally()
        for k in 0..<batches {
            let spans = try fillEvaluation(data, length: length, seed: seed &+ UInt64(k) &* 0x9E37_79B9_7F4A_7C15)
            _ = try model.forward(data, training: false)
            try model.predictions(into: &predictions)
            tally.add(predictions: predictions, targets: data.targets, spans: spans, seq: seq)
        }
        return tally.accuracy(length: length)
    }

    /// Generated evaluation: each row is prompted with the tokens before its
    /// answer and decodes the answer greedily (KV cache and recurrent
    /// states). The examples are those `evaluate` scores for the same seed,
    /// so the two string accuracies agree (an answer right under teacher
    /// forcing is the path greedy decoding takes). Character accuracy
    /// differs: after a wrong token the model continues from its own output.
    public func evaluateGenerated(_ model: LanguageModel, batch: Int, threads: Int, length: Int, batches: Int,
                                  seed: UInt64) throws -> CopyAccuracy {
        guard batches >= 1 else {
            throw KernelLabError.invalidArgument(argument: "batches", reason: "must be at least 1, got \(batches)")
        }
        let seq = evaluationSeq(length: length)
        try checkEvaluation(length: length, seq: seq)
        let data = TokenBatch(batch: batch, seq: seq)
        try model.prepareDecoding(batch: batch, capacity: seq, threads: threads)
        defer { model.releaseDecoding() }
        var tally = CopyAccuracy.Tally()
        for k in 0..<batches {
            let spans = try fillEvaluation(data, length: length, seed: seed &+ UInt64(k) &* 0x9E37_79B9_7F4A_7C15)
            let P = spans[0].lowerBound + 1, count = spans[0].count
            var prompts = [Int32](repeating: 0, count: batch * P)
            for row in 0..<batch {
                for t in 0..<P { prompts[row * P + t] = data.tokens[row * seq + t] }
            }
            let generated = try model.generate(prompts: prompts, promptLength: P, count: count)
            // Generated answers as rows of `count`, scored against the targets' answer spans.
            let targets = (0..<batch).flatMap { row in data.targets[(row * seq + spans[row].lowerBound)..<(row * seq + spans[row].upperBound)] }
            tally.add(predictions: generated, targets: targets, spans: [Range<Int>](repeating: 0..<count, count: batch), seq: count)
        }
        return tally.accuracy(length: length)
    }
}

/// Accuracy of a model on one task at one string length.
public struct CopyAccuracy: Equatable, Sendable, Codable {
    public var length: Int
    public var examples: Int
    /// Exact match of the whole answer and its end token (teacher-forced argmax, as the paper).
    public var string: Double
    /// Fraction of answer characters (and end tokens) predicted right.
    public var character: Double

    public init(length: Int, examples: Int, string: Double, character: Double) {
        self.length = length
        self.examples = examples
        self.string = string
        self.character = character
    }

    /// Counts of right answers over batches of predictions.
    public struct Tally: Equatable, Sendable {
        public var rows = 0, exact = 0, positions = 0, right = 0
        public init() {}

        /// Scores rows of `seq` predictions against their targets on each row's answer span.
        public mutating func add(predictions: [Int32], targets: [Int32], spans: [Range<Int>], seq: Int) {
            for (row, span) in spans.enumerated() {
                var all = true
                for t in span {
                    let ok = predictions[row * seq + t] == targets[row * seq + t]
                    right += ok ? 1 : 0
                    all = all && ok
                }
                positions += span.count
                exact += all ? 1 : 0
                rows += 1
            }
        }

        public func accuracy(length: Int) -> CopyAccuracy {
            CopyAccuracy(length: length, examples: rows, string: rows > 0 ? Double(exact) / Double(rows) : 0,
                         character: positions > 0 ? Double(right) / Double(positions) : 0)
        }
    }
}

/// Random letters a...z as tokens.
func randomLetters(_ count: Int, _ rng: inout SplitMix64) -> [Int32] {
    (0..<count).map { _ in Int32(rng.next() % UInt64(CopyTask.letters)) }
}
