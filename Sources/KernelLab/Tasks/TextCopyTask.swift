import Foundation

/// English text for the natural-vs-shuffled copy experiment: Debian's
/// `fortunes` data files (entries separated by lines holding `%`), lowered
/// to the letters a...z and single spaces (every other character ends a
/// word), every `heldOutEvery`-th entry held out. Two token streams, each the
/// entries joined by spaces; letters are the copy task's tokens 0...25 and
/// the space is token 30.
public struct TextCorpus: Sendable {
    public static let space: Int32 = 30
    public static let vocabulary = 31
    public static let defaultDirectory = "/usr/share/games/fortunes"
    /// Files of the package that hold pictures, not prose.
    static let skipped: Set<String> = ["art", "ascii-art"]

    public let train: [Int32]
    public let heldOut: [Int32]
    /// Positions in each stream where a word starts.
    public let trainWordStarts: [Int]
    public let heldOutWordStarts: [Int]

    /// - Throws: `KernelLabError.invalidArgument` unless both parts hold some text.
    public init(entries: [String], heldOutEvery: Int = 10) throws {
        guard heldOutEvery >= 2 else {
            throw KernelLabError.invalidArgument(argument: "heldOutEvery", reason: "must be at least 2, got \(heldOutEvery)")
        }
        var train: [Int32] = [], held: [Int32] = []
        for (index, entry) in entries.enumerated() {
            let words = Self.words(entry)
            guard !words.isEmpty else { continue }
            let tokens = Self.tokens(words)
            if index % heldOutEvery == heldOutEvery - 1 {
                if !held.isEmpty { held.append(Self.space) }
                held += tokens
            } else {
                if !train.isEmpty { train.append(Self.space) }
                train += tokens
            }
        }
        guard train.count >= 100, held.count >= 100 else {
            throw KernelLabError.invalidArgument(argument: "corpus", reason: "needs at least 100 letters in each part, got \(train.count) and \(held.count)")
        }
        self.train = train
        heldOut = held
        trainWordStarts = Self.wordStarts(train)
        heldOutWordStarts = Self.wordStarts(held)
    }

    /// Reads every data file of `directory` (sorted by name; `.dat` and `.u8` indexes skipped).
    /// - Throws: `KernelLabError.io` naming the directory and the package when it is missing.
    public static func load(directory: String = defaultDirectory, heldOutEvery: Int = 10) throws -> TextCorpus {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw KernelLabError.io(path: directory, reason: "no text corpus here: install Debian's fortunes package (make beyond installs it)")
        }
        var entries: [String] = []
        for name in names.sorted() where !name.hasSuffix(".dat") && !name.hasSuffix(".u8") && !name.hasPrefix(".") && !skipped.contains(name) {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            let text = String(decoding: data, as: UTF8.self)
            var current = ""
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line == "%" {
                    entries.append(current)
                    current = ""
                } else {
                    current += line + "\n"
                }
            }
            if !current.isEmpty { entries.append(current) }
        }
        return try TextCorpus(entries: entries, heldOutEvery: heldOutEvery)
    }

    /// The words of `text`: runs of letters, lowered.
    static func words(_ text: String) -> [[Int32]] {
        var words: [[Int32]] = [], word: [Int32] = []
        for byte in text.utf8 {
            if (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) {
                word.append(Int32((byte | 0x20) - UInt8(ascii: "a")))
            } else if !word.isEmpty {
                words.append(word)
                word = []
            }
        }
        if !word.isEmpty { words.append(word) }
        return words
    }

    static func tokens(_ words: [[Int32]]) -> [Int32] {
        var out: [Int32] = []
        for (i, word) in words.enumerated() {
            if i > 0 { out.append(space) }
            out += word
        }
        return out
    }

    nonisolated(unsafe) private static var cache: [String: TextCorpus] = [:]
    private static let cacheLock = NSLock()

    /// `load(directory:)`, read once per process.
    public static func cached(_ directory: String) throws -> TextCorpus {
        cacheLock.lock()
        defer { cacheLock.unlock() }
        if let corpus = cache[directory] { return corpus }
        let corpus = try load(directory: directory)
        cache[directory] = corpus
        return corpus
    }

    static func wordStarts(_ stream: [Int32]) -> [Int] {
        stream.indices.filter { ($0 == 0 || stream[$0 - 1] == space) && stream[$0] != space }
    }
}

/// Copying English: `$ p | p .` where `p` is a passage of `length`
/// characters (letters and spaces) from the training or the held-out text,
/// starting at a word, its words in their natural order or shuffled (the
/// same words and length, so only the order differs). Training also scores
/// the first `p` (the model is a language model of the text as well); the
/// copy and `.` are the answer. Tokens: the copy task's 30 and the space: 31.
public struct TextCopyTask: SequenceTask {
    public let corpus: TextCorpus
    public let lengths: ClosedRange<Int>
    public let heldOut: Bool
    public let shuffled: Bool
    public var minimumLength: Int { 1 }
    public var vocabulary: Int { TextCorpus.vocabulary }

    /// - Throws: `KernelLabError.invalidArgument` unless `1 <= min` and passages of `max` fit the text.
    public init(corpus: TextCorpus, lengths: ClosedRange<Int>, heldOut: Bool = false, shuffled: Bool = false) throws {
        let stream = heldOut ? corpus.heldOut : corpus.train
        guard lengths.lowerBound >= 1, lengths.upperBound * 4 <= stream.count else {
            throw KernelLabError.invalidArgument(argument: "lengths", reason: "must lie in 1...\(stream.count / 4) for this text, got \(lengths)")
        }
        self.corpus = corpus
        self.lengths = lengths
        self.heldOut = heldOut
        self.shuffled = shuffled
    }

    public func exampleTokens(length: Int) -> Int { 2 * length + 3 }

    /// A passage of `length` tokens starting at a random word.
    public func passage(length: Int, rng: inout SplitMix64) -> [Int32] {
        let stream = heldOut ? corpus.heldOut : corpus.train
        let starts = heldOut ? corpus.heldOutWordStarts : corpus.trainWordStarts
        // A start that leaves room for the passage: drawn again when too near
        // the end (the streams are far longer than any passage: rare).
        var start = starts[Int(rng.next() % UInt64(starts.count))]
        while start + length > stream.count { start = starts[Int(rng.next() % UInt64(starts.count))] }
        // Drawn whether or not it is used, so natural and shuffled tasks of one
        // seed take the same passages.
        var order = SplitMix64(seed: rng.next())
        var passage = Array(stream[start..<(start + length)])
        if shuffled {
            var words = passage.split(separator: TextCorpus.space, omittingEmptySubsequences: false).map(Array.init)
            for i in stride(from: words.count - 1, to: 0, by: -1) { words.swapAt(i, Int(order.next() % UInt64(i + 1))) }
            passage = Array(words.joined(separator: [TextCorpus.space]))
        }
        return passage
    }

    public func example(length: Int, rng: inout SplitMix64) -> TaskExample {
        let p = passage(length: length, rng: &rng)
        return TaskExample(tokens: [CopyTask.bos] + p + [CopyTask.separator] + p + [CopyTask.eos],
                           answer: (length + 2)..<(2 * length + 3), alsoTrained: 1..<(length + 1))
    }
}
