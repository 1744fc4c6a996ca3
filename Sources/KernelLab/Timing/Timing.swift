#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock timings of repeated runs, in seconds, in the order measured.
public struct Samples: Sendable, Equatable {
    /// Every timed run.
    public let seconds: [Double]

    /// Wraps measured durations; `seconds` must not be empty.
    public init(seconds: [Double]) {
        precondition(!seconds.isEmpty, "Samples needs at least one measurement")
        self.seconds = seconds
    }

    /// The median (the 50th percentile).
    public var median: Double { percentile(50) }
    /// The 10th percentile.
    public var p10: Double { percentile(10) }
    /// The 90th percentile.
    public var p90: Double { percentile(90) }
    /// The fastest run.
    public var min: Double { seconds.min()! }
    /// The slowest run.
    public var max: Double { seconds.max()! }
    /// The arithmetic mean.
    public var mean: Double { seconds.reduce(0, +) / Double(seconds.count) }

    /// The `p`-th percentile (0...100) with linear interpolation between
    /// order statistics, as NumPy's default.
    public func percentile(_ p: Double) -> Double {
        let sorted = seconds.sorted()
        let rank = Swift.min(Swift.max(p, 0), 100) / 100 * Double(sorted.count - 1)
        let lower = Int(rank.rounded(.down))
        let upper = Swift.min(lower + 1, sorted.count - 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - Double(lower))
    }
}

/// Timing primitives for benchmarks.
public enum Benchmark {
    /// Runs `body` `warmup` times untimed, then `repeats` times timed with
    /// the monotonic clock, and returns every timed sample.
    ///
    /// - Throws: `KernelLabError.invalidArgument` unless `warmup >= 0` and
    ///   `repeats >= 1`; rethrows what `body` throws.
    public static func measure(warmup: Int, repeats: Int, _ body: () throws -> Void) throws -> Samples {
        guard warmup >= 0 else {
            throw KernelLabError.invalidArgument(argument: "warmup", reason: "must be >= 0, got \(warmup)")
        }
        guard repeats >= 1 else {
            throw KernelLabError.invalidArgument(argument: "repeats", reason: "must be >= 1, got \(repeats)")
        }
        for _ in 0..<warmup {
            try body()
        }
        // Reserved up front so that the timed loop does not allocate.
        var seconds = [Double](repeating: 0, count: repeats)
        for index in 0..<repeats {
            let start = monotonicSeconds()
            try body()
            seconds[index] = monotonicSeconds() - start
        }
        return Samples(seconds: seconds)
    }

    /// Times `a` and `b` alternately, call by call (after `warmup` untimed
    /// pairs), so drift on a shared machine hits both alike: ratios of the
    /// two are then measured in the same run.
    public static func measureAlternating(warmup: Int, repeats: Int, _ a: () throws -> Void,
                                          _ b: () throws -> Void) throws -> (Samples, Samples) {
        guard warmup >= 0, repeats >= 1 else {
            throw KernelLabError.invalidArgument(argument: "repeats", reason: "must be >= 1 (warmup >= 0), got \(repeats)")
        }
        for _ in 0..<warmup {
            try a()
            try b()
        }
        var sa = [Double](repeating: 0, count: repeats), sb = sa
        for index in 0..<repeats {
            var start = monotonicSeconds()
            try a()
            sa[index] = monotonicSeconds() - start
            start = monotonicSeconds()
            try b()
            sb[index] = monotonicSeconds() - start
        }
        return (Samples(seconds: sa), Samples(seconds: sb))
    }

    /// Seconds on CLOCK_MONOTONIC: unaffected by wall-clock adjustments, and
    /// (unlike CLOCK_BOOTTIME) not counting suspended time.
    public static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
    }

    /// Consumes `value` in a way the optimizer cannot see through, so that
    /// the computation producing it is not removed as dead code.
    @inline(never) @_optimize(none)
    public static func blackHole<T>(_ value: T) {}
}
