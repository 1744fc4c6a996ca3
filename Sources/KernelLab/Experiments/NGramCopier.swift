import Foundation

/// The constructive side of the copy paper (Theorem 2.3): a two-layer
/// transformer that copies by n-gram lookup, built by hand (no training) and
/// run on the lab's fused attention kernel.
///
/// Layer 1 is n + 1 Hard-ALiBi heads with windows 1...n+1 and zero queries
/// and keys, so head w averages the one-hot tokens of its last w positions;
/// its MLP turns the differences of those averages back into the one-hot
/// tokens at offsets 0...n (and rounds them). Layer 2 is one head whose query
/// at t is the n-gram ending at t, whose key at j is the n-gram ending at
/// j - 1, and whose value at j is the token at j: a key that matches the
/// query's n-gram hands back the token that followed that n-gram in the
/// string. Offsets are weighted 2^-k, so the most recent tokens decide: near
/// the start of the copy, where fewer than n copied tokens exist, `|` reads
/// as `$` and the only key that matches every offset present is the
/// string's start. The separator's value is the end token, so the copy stops
/// where the string did. The lookup fails where the n-gram before a
/// position occurs twice in the string, which is what the bound
/// 1 - L^2 D^-n counts.
public struct NGramCopier: Sendable {
    public let n: Int
    /// Layer 2's softmax scale: large enough that the best key takes
    /// nearly all the weight (its margin over any other is at least 2^(1-n)).
    public let sharpness: Float
    static let width = 32  // one-hot width per slot: 30 tokens, padded

    /// - Throws: `KernelLabError.invalidArgument` unless `1 <= n <= 16`.
    public init(n: Int) throws {
        guard (1...16).contains(n) else {
            throw KernelLabError.invalidArgument(argument: "n", reason: "must be in 1...16, got \(n)")
        }
        self.n = n
        sharpness = 40 * Float(1 << (n - 1))
    }

    /// Greedy next-token predictions at every position of `tokens` (B, T),
    /// teacher-forced (each from the true tokens before it).
    public func predict(_ tokens: [Int32], batch B: Int, seq T: Int, pool: ThreadPool? = nil) throws -> [Int32] {
        guard B >= 1, T >= 1, tokens.count == B * T else {
            throw KernelLabError.shapeMismatch(argument: "tokens", expected: "(B, T) with B, T >= 1", got: "\(tokens.count) tokens")
        }
        guard tokens.allSatisfy({ (0..<Int32(CopyTask.vocabulary)).contains($0) }) else {
            throw KernelLabError.invalidArgument(argument: "tokens", reason: "must be in 0..<\(CopyTask.vocabulary)")
        }
        let W = Self.width, H1 = n + 1
        // Layer 1: (B, H1, T, W), uniform attention inside each head's window.
        var oneHot = [Float](repeating: 0, count: B * H1 * T * W)
        for b in 0..<B {
            for h in 0..<H1 {
                for t in 0..<T { oneHot[((b * H1 + h) * T + t) * W + Int(tokens[b * T + t])] = 1 }
            }
        }
        let zeros = try Tensor(shape: [B, H1, T, W])
        let values = try Tensor(shape: [B, H1, T, W], values: oneHot)
        let windows = (1...H1).map { Int32($0) }
        let (averages, _) = try Attention.forward(q: zeros, k: zeros, v: values,
                                                  options: AttentionOptions(causal: true, windows: windows), pool: pool)
        let avg = averages.toArray()
        // The MLP: the token at offset k is c(k+1) a(k+1) - c(k) a(k) with c(w) = min(w, t+1)
        // positions in window w; rounded to its argmax (nil before the sequence starts).
        func token(_ b: Int, _ t: Int, _ k: Int) -> Int? {
            guard t - k >= 0 else { return nil }
            var best = 0, bestValue = -Float.infinity
            for v in 0..<CopyTask.vocabulary {
                let upper = Float(min(k + 1, t + 1)) * avg[((b * H1 + k) * T + t) * W + v]
                let lower = k == 0 ? 0 : Float(min(k, t + 1)) * avg[((b * H1 + k - 1) * T + t) * W + v]
                if upper - lower > bestValue { bestValue = upper - lower; best = v }
            }
            return best
        }
        // Layer 2: query = n-gram ending at t, key = n-gram ending at t - 1, value = token at t.
        let D = n * W
        // The kernel takes one head dimension for q, k and v: the value uses the first W of D.
        var q = [Float](repeating: 0, count: B * T * D), k = q, v = q
        let start = Int(CopyTask.bos), separator = Int(CopyTask.separator)
        for b in 0..<B {
            for t in 0..<T {
                for offset in 0..<n {
                    let weight = Float(pow(2.0, -Double(offset)))
                    if var x = token(b, t, offset) {
                        if x == separator { x = start }
                        q[(b * T + t) * D + offset * W + x] = weight
                    }
                    if var x = token(b, t, offset + 1) {
                        if x == separator { x = start }
                        k[(b * T + t) * D + offset * W + x] = 1
                    }
                }
                let x = token(b, t, 0)!
                v[(b * T + t) * D + (x == separator ? Int(CopyTask.eos) : x)] = 1
            }
        }
        let (out, _) = try Attention.forward(q: try Tensor(shape: [B, 1, T, D], values: q), k: try Tensor(shape: [B, 1, T, D], values: k),
                                             v: try Tensor(shape: [B, 1, T, D], values: v),
                                             options: AttentionOptions(causal: true, scale: sharpness), pool: pool)
        let o = out.toArray()
        return (0..<(B * T)).map { row in
            var best = 0
            for x in 1..<CopyTask.vocabulary where o[row * D + x] > o[row * D + best] { best = x }
            return Int32(best)
        }
    }

    /// Copy accuracy on `strings` (all of one length), teacher-forced as the
    /// paper scores its models: the whole copy and `.` exact (string), and per character.
    public func copyAccuracy(_ strings: [[Int32]], pool: ThreadPool? = nil) throws -> CopyAccuracy {
        guard let L = strings.first?.count, L >= 1, strings.allSatisfy({ $0.count == L }) else {
            throw KernelLabError.invalidArgument(argument: "strings", reason: "need one or more strings of one length >= 1")
        }
        let T = 2 * L + 2
        var tokens: [Int32] = []
        for s in strings { tokens += CopyTask.example(s).dropLast() }
        let predictions = try predict(tokens, batch: strings.count, seq: T, pool: pool)
        // Targets: each token's successor; scored on the copy and `.` (positions L + 1 ... 2L + 1).
        var targets: [Int32] = []
        for s in strings { targets += CopyTask.example(s).dropFirst() }
        var tally = CopyAccuracy.Tally()
        tally.add(predictions: predictions, targets: targets, spans: [Range<Int>](repeating: (L + 1)..<(2 * L + 2), count: strings.count), seq: T)
        return tally.accuracy(length: L)
    }

    /// Whether some n-gram occurs twice in `s` (where the lookup is ambiguous).
    public static func hasRepeatedNGram(_ s: [Int32], n: Int) -> Bool {
        guard s.count > n else { return false }
        var seen = Set<[Int32]>()
        for i in 0...(s.count - n) where !seen.insert(Array(s[i..<(i + n)])).inserted { return true }
        return false
    }

    /// The paper's lower bound on the copy accuracy at length L: 1 - L^2 D^-n
    /// (Theorem 2.3, D = 26 letters), clipped at 0.
    public static func bound(length: Int, n: Int, alphabet: Int = CopyTask.letters) -> Double {
        max(0, 1 - Double(length * length) * pow(Double(alphabet), -Double(n)))
    }

    /// Random strings with one n-gram planted twice (not overlapping, the
    /// letters after each copy differ): the lookup's failure case.
    public static func stringsWithRepeat(count: Int, length: Int, n: Int, seed: UInt64) -> [[Int32]] {
        precondition(length >= 2 * n + 2)
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            while true {
                var s = randomLetters(length, &rng)
                let g = randomLetters(n, &rng)
                let i = Int(rng.next() % UInt64(length - 2 * n - 1))
                let j = i + n + 1 + Int(rng.next() % UInt64(length - n - (i + n + 1)))
                for (o, x) in g.enumerated() { s[i + o] = x; s[j + o] = x }
                let nextI = i + n < length ? s[i + n] : -1, nextJ = j + n < length ? s[j + n] : -2
                if nextI != nextJ { return s }
            }
        }
    }
}
