import Foundation

/// A level of the memory hierarchy, as a bandwidth plateau of the sweep.
public enum MemoryLevel: String, CaseIterable, Codable, Sendable {
    /// The level-1 data cache (private to a core).
    case l1
    /// The level-2 cache (private to a core).
    case l2
    /// The last-level cache (shared).
    case l3
    /// Main memory.
    case dram

    /// "L1", "L2", "L3", "DRAM".
    public var label: String {
        self == .dram ? "DRAM" : rawValue.uppercased()
    }
}

/// One working set of the bandwidth sweep: the best of its timed trials.
public struct SweepPoint: Codable, Sendable, Equatable {
    /// The streaming kernel.
    public var kernel: BandwidthKernel
    /// Threads, each with its own arrays.
    public var threads: Int
    /// Bytes of arrays per thread (all of the kernel's arrays together).
    public var bytesPerThread: Int
    /// `bytesPerThread * threads`: what a shared cache has to hold.
    public var totalBytes: Int
    /// The plateau the point belongs to, or nil for a point in a transition
    /// between levels (kept for the curve, left out of every plateau).
    public var level: MemoryLevel?
    /// Kernel passes per timed trial.
    public var iterations: Int
    /// Best (highest) GB/s of the timed trials, STREAM's byte convention.
    public var gbs: Double
    /// GB/s of every timed trial, in order (the warm-up trial is not included).
    public var trialsGBs: [Double]

    enum CodingKeys: String, CodingKey {
        case kernel, threads
        case bytesPerThread = "bytes_per_thread"
        case totalBytes = "total_bytes"
        case level, iterations, gbs
        case trialsGBs = "trials_gbs"
    }
}

/// The working sets of the bandwidth sweep and how points map to plateaus.
///
/// Private levels (L1, L2) are judged by the bytes per thread, the shared L3
/// and DRAM by the bytes of all threads together. A point belongs to a level
/// only with a factor-2 margin on both sides (4x for DRAM), so transitions,
/// where part of the set spills to the next level, stay out of the plateaus:
/// - L1: bytes per thread <= L1/2
/// - L2: 2 L1 <= bytes per thread <= L2/2
/// - L3: bytes per thread >= 2 L2 and total <= L3/2
/// - DRAM: total >= 4 L3
public struct BandwidthSweep: Sendable, Equatable {
    /// Cache sizes in bytes used for the regions (unknown sizes replaced by
    /// `fallbackCaches`, see `usedFallback`).
    public var caches: SystemInfo.CacheSizes
    /// Whether a cache size was unknown and a typical size stood in for it.
    public var usedFallback: Bool

    /// Sizes assumed when the system reports 0 (unknown).
    public static let fallbackCaches = SystemInfo.CacheSizes(l1: 32 << 10, l2: 1 << 20, l3: 32 << 20)
    /// The smallest working set per thread.
    public static let minimumBytes = 8 << 10

    /// A sweep for these cache sizes.
    public init(caches: SystemInfo.CacheSizes) {
        let fallback = BandwidthSweep.fallbackCaches
        self.caches = SystemInfo.CacheSizes(
            l1: caches.l1 > 0 ? caches.l1 : fallback.l1,
            l2: caches.l2 > 0 ? caches.l2 : fallback.l2,
            l3: caches.l3 > 0 ? caches.l3 : fallback.l3)
        usedFallback = caches.l1 <= 0 || caches.l2 <= 0 || caches.l3 <= 0
    }

    /// The level a working set measures, or nil in a transition.
    public func level(bytesPerThread: Int, threads: Int) -> MemoryLevel? {
        let total = bytesPerThread * threads
        if bytesPerThread <= caches.l1 / 2 { return .l1 }
        if bytesPerThread >= 2 * caches.l1 && bytesPerThread <= caches.l2 / 2 { return .l2 }
        if bytesPerThread >= 2 * caches.l2 && total <= caches.l3 / 2 { return .l3 }
        if total >= 4 * caches.l3 { return .dram }
        return nil
    }

    /// Working sets per thread for `threads` threads: geometric from 8 KiB,
    /// `pointsPerOctave` per factor of 2, up to the first size whose total is
    /// at least `dramFactor` times L3 (so DRAM gets a point at 4x L3 and, for
    /// `dramFactor` 8 and one point per octave, a second at 8x). With
    /// `pointsPerOctave` 0, one point per level instead: the geometric middle
    /// of each level's region (the quick sweep). Sizes are multiples of 256 bytes.
    public func workingSets(threads: Int, pointsPerOctave: Int, dramFactor: Int) -> [Int] {
        let threads = max(threads, 1)
        let dramTotal = max(dramFactor, 4) * caches.l3
        func round256(_ x: Double) -> Int { max(Int((x / 256).rounded()) * 256, 256) }
        guard pointsPerOctave > 0 else {
            var sizes = [BandwidthSweep.minimumBytes]
            let regions: [(Double, Double)] = [
                (2 * Double(caches.l1), Double(caches.l2) / 2),
                (2 * Double(caches.l2), Double(caches.l3) / 2 / Double(threads)),
            ]
            for (low, high) in regions where low <= high {
                let middle = round256((low * high).squareRoot())
                // Rounding can step out of a narrow region; clamp back in.
                sizes.append(min(max(middle, Int(low.rounded(.up))), Int(high)))
            }
            sizes.append(round256((Double(dramTotal) / Double(threads)).rounded(.up)))
            return sizes
        }
        var sizes: [Int] = []
        var step = 0
        while true {
            let size = round256(Double(BandwidthSweep.minimumBytes) * pow(2, Double(step) / Double(pointsPerOctave)))
            if sizes.last != size { sizes.append(size) }
            if size * threads >= dramTotal { break }
            step += 1
        }
        return sizes
    }

    /// Plateaus: for each level, kernel and thread count, the median GB/s of
    /// the points in the level's region. Every point is already the best of
    /// its trials (STREAM's rule against interference, which only slows a
    /// run down); the median over the plateau then keeps one lucky or
    /// disturbed point from setting the level, which a max would not.
    /// Levels without points (e.g. no L3 region for many threads) are absent.
    public static func plateaus(_ points: [SweepPoint]) -> [MemoryLevel: [BandwidthKernel: [Int: Double]]] {
        var grouped: [MemoryLevel: [BandwidthKernel: [Int: [Double]]]] = [:]
        for point in points {
            guard let level = point.level else { continue }
            grouped[level, default: [:]][point.kernel, default: [:]][point.threads, default: []].append(point.gbs)
        }
        return grouped.mapValues { kernels in kernels.mapValues { threads in threads.mapValues(BandwidthSweep.median) } }
    }

    /// The median of a non-empty array (the mean of the middle two for an even count).
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
