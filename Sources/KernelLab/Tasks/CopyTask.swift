/// The copy task of "Repeat After Me" (Jelassi et al. 2024): `$ s | s .`
/// over 26 letters, examples packed back to back into fixed-length
/// training contexts, the loss only on the copy and its end token.
///
/// Tokens: 0...25 the letters a...z, 26 `$` (start), 27 `|` (separator),
/// 28 `.` (end), 29 `*` (padding): a vocabulary of 30. Every batch is a
/// function of (seed, step) alone, so a resumed run sees the same data.
public struct CopyTask: Sendable {
    public static let letters = 26
    public static let bos: Int32 = 26, separator: Int32 = 27, eos: Int32 = 28, padding: Int32 = 29
    public static let vocabulary = 30

    /// String lengths, uniform in this range.
    public let lengths: ClosedRange<Int>

    /// - Throws: `KernelLabError.invalidArgument` unless `1 <= min <= max`.
    public init(lengths: ClosedRange<Int>) throws {
        guard lengths.lowerBound >= 1 else {
            throw KernelLabError.invalidArgument(argument: "lengths", reason: "must start at 1 or more, got \(lengths)")
        }
        self.lengths = lengths
    }

    /// The tokens of one example for the string `s`: `$ s | s .`.
    public static func example(_ s: [Int32]) -> [Int32] {
        [bos] + s + [separator] + s + [eos]
    }

    /// Fills `batch` for training step `step`: each row a context of examples
    /// packed back to back (the last one cut off), targets the next tokens,
    /// the mask 1 where the target is part of a copy or its end token.
    public func fill(_ batch: TokenBatch, seed: UInt64, step: Int) {
        let T = batch.seq
        for row in 0..<batch.batch {
            var rng = SplitMix64(seed: seed ^ (UInt64(step) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(row) &* 0xC2B2_AE3D_27D4_EB4F))
            // T + 1 tokens: inputs are [0, T), targets [1, T + 1).
            var stream: [Int32] = []
            var counts: [Bool] = []
            stream.reserveCapacity(T + 1 + 2 * lengths.upperBound + 3)
            while stream.count < T + 1 {
                let n = lengths.lowerBound + Int(rng.next() % UInt64(lengths.count))
                let s = (0..<n).map { _ in Int32(rng.next() % UInt64(Self.letters)) }
                let example = Self.example(s)
                for (i, token) in example.enumerated() {
                    stream.append(token)
                    // Position i is counted when it is predicted: the copy (after the separator) and the end.
                    counts.append(i > n + 1)
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
    /// Returns the span of predicted positions per row (the copy and `.`).
    public func fillEvaluation(_ batch: TokenBatch, length: Int, seed: UInt64) throws -> [Range<Int>] {
        guard 2 * length + 3 <= batch.seq + 1 else {
            throw KernelLabError.invalidArgument(argument: "length",
                                                 reason: "an example of length \(length) needs seq >= \(2 * length + 2), got \(batch.seq)")
        }
        var rng = SplitMix64(seed: seed)
        var spans: [Range<Int>] = []
        for row in 0..<batch.batch {
            let s = (0..<length).map { _ in Int32(rng.next() % UInt64(Self.letters)) }
            var tokens = Self.example(s)
            tokens += [Int32](repeating: Self.padding, count: batch.seq + 1 - tokens.count)
            for t in 0..<batch.seq {
                batch.tokens[row * batch.seq + t] = tokens[t]
                batch.targets[row * batch.seq + t] = tokens[t + 1]
                let counted = t >= length + 1 && t <= 2 * length + 1
                batch.mask[row * batch.seq + t] = counted ? 1 : 0
            }
            spans.append((length + 1)..<(2 * length + 2))
        }
        return spans
    }
}

/// Accuracy of a model on copying strings of one length.
public struct CopyAccuracy: Equatable, Sendable {
    public var length: Int
    public var examples: Int
    /// Exact match of the whole copy and its end token (teacher-forced argmax, as the paper).
    public var string: Double
    /// Fraction of copied characters (and end tokens) predicted right.
    public var character: Double
}

extension CopyTask {
    /// Teacher-forced evaluation: one example per row, one forward, argmax
    /// at every predicted position; `batches` batches of the model's shape.
    public static func evaluate(_ model: LanguageModel, batch: Int, seq: Int, threads: Int, length: Int, batches: Int,
                                seed: UInt64) throws -> CopyAccuracy {
        try model.prepare(batch: batch, seq: seq, threads: threads)
        let task = try CopyTask(lengths: length...length)
        let data = TokenBatch(batch: batch, seq: seq)
        var predictions: [Int32] = []
        var exact = 0, rows = 0, right = 0, positions = 0
        for k in 0..<batches {
            let spans = try task.fillEvaluation(data, length: length, seed: seed &+ UInt64(k) &* 0x9E37_79B9_7F4A_7C15)
            _ = try model.forward(data, training: false)
            try model.predictions(into: &predictions)
            for (row, span) in spans.enumerated() {
                var all = true
                for t in span {
                    let ok = predictions[row * seq + t] == data.targets[row * seq + t]
                    right += ok ? 1 : 0
                    all = all && ok
                }
                positions += span.count
                exact += all ? 1 : 0
                rows += 1
            }
        }
        return CopyAccuracy(length: length, examples: rows, string: Double(exact) / Double(rows),
                            character: Double(right) / Double(positions))
    }
}

extension CopyTask {
    /// Generated evaluation: each row is prompted with `$ s |` and decodes
    /// length + 1 tokens greedily (KV cache and recurrent states), which must
    /// be `s .`. The strings are those `evaluate` scores for the same seed,
    /// so the two string accuracies agree (a copy right under teacher forcing
    /// is the path greedy decoding takes). Character accuracy differs: after
    /// a wrong token the model continues from its own output.
    public static func evaluateGenerated(_ model: LanguageModel, batch: Int, threads: Int, length: Int, batches: Int,
                                         seed: UInt64) throws -> CopyAccuracy {
        guard length >= 1, batches >= 1 else {
            throw KernelLabError.invalidArgument(argument: "length", reason: "length and batches must be >= 1")
        }
        let task = try CopyTask(lengths: length...length)
        let seq = 2 * length + 2
        let data = TokenBatch(batch: batch, seq: seq)
        try model.prepareDecoding(batch: batch, capacity: seq, threads: threads)
        defer { model.releaseDecoding() }
        var exact = 0, rows = 0, right = 0, positions = 0
        for k in 0..<batches {
            _ = try task.fillEvaluation(data, length: length, seed: seed &+ UInt64(k) &* 0x9E37_79B9_7F4A_7C15)
            let P = length + 2
            var prompts = [Int32](repeating: 0, count: batch * P)
            for row in 0..<batch {
                for t in 0..<P { prompts[row * P + t] = data.tokens[row * seq + t] }
            }
            let generated = try model.generate(prompts: prompts, promptLength: P, count: length + 1)
            for row in 0..<batch {
                var all = true
                for i in 0...length {
                    let ok = generated[row * (length + 1) + i] == data.targets[row * seq + length + 1 + i]
                    right += ok ? 1 : 0
                    all = all && ok
                }
                positions += length + 1
                exact += all ? 1 : 0
                rows += 1
            }
        }
        return CopyAccuracy(length: length, examples: rows, string: Double(exact) / Double(rows),
                            character: Double(right) / Double(positions))
    }
}
