/// Modular addition for grokking: every equation `a + b = c (mod p)` of the
/// p x p table, split once at random into a training part (a fixed fraction,
/// trained on whole, one equation per row: full batch) and the held-out
/// rest. Rows are `a + b =` and the model predicts `c` at `=`; the loss and
/// the accuracy count that one token only.
///
/// Tokens: the residues 0..<p, then `+` (p) and `=` (p + 1): a vocabulary of p + 2.
public struct ModularAdditionTask: Sendable {
    public let modulus: Int
    /// Equations trained on, as indices a * p + b, in a seeded random order.
    public let training: [Int]
    /// The others.
    public let heldOut: [Int]
    public static let seq = 4

    public var plus: Int32 { Int32(modulus) }
    public var equals: Int32 { Int32(modulus + 1) }
    public var vocabulary: Int { modulus + 2 }

    /// - Throws: `KernelLabError.invalidArgument` unless `2 <= p <= 1000` and
    ///   the split leaves both parts non-empty.
    public init(modulus p: Int, trainPercent: Int, splitSeed: UInt64) throws {
        guard (2...1000).contains(p) else {
            throw KernelLabError.invalidArgument(argument: "modulus", reason: "must be in 2...1000, got \(p)")
        }
        let count = p * p * trainPercent / 100
        guard (1..<p * p).contains(count), (1...99).contains(trainPercent) else {
            throw KernelLabError.invalidArgument(argument: "trainPercent", reason: "must leave both parts non-empty (1...99 of \(p * p)), got \(trainPercent)")
        }
        // Fisher-Yates with the seed: the split is a function of (p, percent, seed) alone.
        var order = Array(0..<(p * p))
        var rng = SplitMix64(seed: splitSeed ^ 0x6A09_E667_F3BC_C909)
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
        modulus = p
        training = Array(order[..<count])
        heldOut = Array(order[count...])
    }

    /// Writes equations `pairs` (from `start`, at most `batch.batch`) one per
    /// row; rows past the end are padding (mask 0). Returns the rows written.
    @discardableResult
    public func fill(_ batch: TokenBatch, pairs: [Int], start: Int = 0) -> Int {
        precondition(batch.seq == Self.seq, "modular addition rows are \(Self.seq) tokens")
        let rows = max(0, min(batch.batch, pairs.count - start))
        for row in 0..<batch.batch {
            let pair = row < rows ? pairs[start + row] : 0
            let (a, b) = (Int32(pair / modulus), Int32(pair % modulus))
            let c = Int32((pair / modulus + pair % modulus) % modulus)
            let base = row * Self.seq
            let tokens: [Int32] = [a, plus, b, equals], targets: [Int32] = [plus, b, equals, c]
            for t in 0..<Self.seq {
                batch.tokens[base + t] = tokens[t]
                batch.targets[base + t] = targets[t]
                batch.mask[base + t] = row < rows && t == Self.seq - 1 ? 1 : 0
            }
        }
        return rows
    }

    /// Fraction of `pairs` whose answer the model's argmax gets right, in
    /// batches of `batch.batch` rows (the shape the model is prepared for).
    public func accuracy(_ model: LanguageModel, pairs: [Int], batch: TokenBatch, threads: Int) throws -> Double {
        try model.prepare(batch: batch.batch, seq: Self.seq, threads: threads)
        var predictions: [Int32] = []
        var right = 0
        var start = 0
        while start < pairs.count {
            let rows = fill(batch, pairs: pairs, start: start)
            _ = try model.forward(batch, training: false)
            try model.predictions(into: &predictions)
            for row in 0..<rows {
                let t = row * Self.seq + Self.seq - 1
                right += predictions[t] == batch.targets[t] ? 1 : 0
            }
            start += rows
        }
        return pairs.isEmpty ? .nan : Double(right) / Double(pairs.count)
    }
}
