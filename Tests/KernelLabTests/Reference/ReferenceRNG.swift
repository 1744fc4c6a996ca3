import KernelLab

/// Deterministic inputs for the reference tests: the library's SplitMix64,
/// with the uniform draws the attention and scan tests use.
struct ReferenceRNG: Sendable {
    private var generator: SplitMix64
    init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { generator.next() }

    /// Uniform in [-1, 1).
    mutating func uniform() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) * 2 - 1
    }

    /// Uniform in [lo, hi).
    mutating func uniform(_ lo: Double, _ hi: Double) -> Double {
        lo + (hi - lo) * Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `n` values uniform in [-scale, scale).
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in Float(uniform()) * scale }
    }

    /// `n` values uniform in [lo, hi).
    mutating func floats(_ n: Int, _ lo: Double, _ hi: Double) -> [Float] {
        (0..<n).map { _ in Float(uniform(lo, hi)) }
    }

    mutating func index(below n: Int) -> Int { Int(next() % UInt64(n)) }
}
