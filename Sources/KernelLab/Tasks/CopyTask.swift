/// The copy task of "Repeat After Me" (Jelassi et al. 2024): `$ s | s .`
/// over 26 letters, examples packed back to back into fixed-length
/// training contexts, the loss only on the copy and its end token.
///
/// Tokens: 0...25 the letters a...z, 26 `$` (start), 27 `|` (separator),
/// 28 `.` (end), 29 `*` (padding): a vocabulary of 30. Every batch is a
/// function of (seed, step) alone, so a resumed run sees the same data.
public struct CopyTask: SequenceTask {
    public static let letters = 26
    public static let bos: Int32 = 26, separator: Int32 = 27, eos: Int32 = 28, padding: Int32 = 29
    public static let vocabulary = 30

    public let lengths: ClosedRange<Int>
    public var minimumLength: Int { 1 }

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

    public func example(length: Int, rng: inout SplitMix64) -> TaskExample {
        let s = randomLetters(length, &rng)
        return TaskExample(tokens: Self.example(s), answer: (length + 2)..<(2 * length + 3))
    }

    public func exampleTokens(length: Int) -> Int { 2 * length + 3 }

    /// `evaluate` of a copy task at one length (see `SequenceTask.evaluate`).
    public static func evaluate(_ model: LanguageModel, batch: Int, seq: Int, threads: Int, length: Int, batches: Int,
                                seed: UInt64) throws -> CopyAccuracy {
        try CopyTask(lengths: length...length).evaluate(model, batch: batch, seq: seq, threads: threads, length: length,
                                                        batches: batches, seed: seed)
    }

    /// `evaluateGenerated` of a copy task at one length (see `SequenceTask.evaluateGenerated`).
    public static func evaluateGenerated(_ model: LanguageModel, batch: Int, threads: Int, length: Int, batches: Int,
                                         seed: UInt64) throws -> CopyAccuracy {
        guard length >= 1 else { throw KernelLabError.invalidArgument(argument: "length", reason: "must be at least 1, got \(length)") }
        return try CopyTask(lengths: length...length).evaluateGenerated(model, batch: batch, threads: threads, length: length,
                                                                        batches: batches, seed: seed)
    }
}

/// The copy paper's n-gram lookup: a string `s` and a key, the n-gram at a
/// random place in `s`; the answer is the `answer` letters that follow the
/// key in `s`, then `.`. With the key before the string (prefix,
/// `$ g | s | a .`) a fixed-state model can watch for it while it reads;
/// after the string (suffix, `$ s | g a .`) it must have kept all of `s`.
///
/// The key occurs once in `s` (strings with a repeat of it are drawn
/// again), so every question has one answer.
public struct LookupTask: SequenceTask {
    public enum Key: String, Sendable, CaseIterable, Codable { case prefix, suffix }

    public let key: Key
    public let lengths: ClosedRange<Int>
    /// The key's letters (n) and the answer's.
    public let ngram: Int
    public let answer: Int
    public var minimumLength: Int { ngram + answer }

    /// - Throws: `KernelLabError.invalidArgument` unless `ngram, answer >= 1`
    ///   and every length holds a key and its answer.
    public init(key: Key, lengths: ClosedRange<Int>, ngram: Int = 3, answer: Int = 3) throws {
        guard ngram >= 1, answer >= 1 else {
            throw KernelLabError.invalidArgument(argument: "ngram", reason: "the key and the answer need at least 1 letter each")
        }
        guard lengths.lowerBound >= ngram + answer else {
            throw KernelLabError.invalidArgument(argument: "lengths",
                                                 reason: "must start at ngram + answer = \(ngram + answer) or more, got \(lengths)")
        }
        self.key = key
        self.lengths = lengths
        self.ngram = ngram
        self.answer = answer
    }

    public func exampleTokens(length: Int) -> Int {
        key == .prefix ? ngram + length + answer + 4 : length + ngram + answer + 3
    }

    public func example(length: Int, rng: inout SplitMix64) -> TaskExample {
        var s: [Int32] = [], start = 0, attempts = 0
        repeat {
            s = randomLetters(length, &rng)
            start = Int(rng.next() % UInt64(length - ngram - answer + 1))
            attempts += 1
        } while attempts < 64 && occurrences(of: Array(s[start..<(start + ngram)]), in: s).count > 1
        // Short keys in long strings repeat almost surely: then change one letter of each
        // other occurrence, outside the key, until the key is unique.
        while case let others = occurrences(of: Array(s[start..<(start + ngram)]), in: s).filter({ $0 != start }), let i = others.first {
            let j = i < start ? i : i + ngram - 1
            s[j] = (s[j] + 1) % Int32(CopyTask.letters)
        }
        let g = Array(s[start..<(start + ngram)]), a = Array(s[(start + ngram)..<(start + ngram + answer)])
        let tokens: [Int32]
        switch key {
        case .prefix: tokens = [CopyTask.bos] + g + [CopyTask.separator] + s + [CopyTask.separator] + a + [CopyTask.eos]
        case .suffix: tokens = [CopyTask.bos] + s + [CopyTask.separator] + g + a + [CopyTask.eos]
        }
        return TaskExample(tokens: tokens, answer: (tokens.count - answer - 1)..<tokens.count)
    }

    private func occurrences(of g: [Int32], in s: [Int32]) -> [Int] {
        (0...(s.count - g.count)).filter { s[$0..<($0 + g.count)].elementsEqual(g) }
    }
}
