import Foundation

/// The machine-independent gate of `kernel-lab bench --floors`: claims that
/// hold on any machine of an ISA, checked against the run alone, so hardware
/// with no committed baseline is still gated.
///
/// - Speedup floors: each case's fused/unfused speedup must reach the suite's
///   `min_speedup` for the hardware's best ISA (per pass when given so). The
///   floors sit well below what the machines measured: they catch a fused
///   kernel that stops beating its unfused twin, not a 20% slip.
/// - Vector gain: on hardware with a vector ISA, each fused run is timed once
///   more on the portable scalar path in the same process, and must be at
///   least `vectorGainFloor` times faster. A fused kernel that falls to scalar
///   speed (a dispatch bug, a forced `KERNELLAB_ISA=scalar`, a vector path
///   that spills to memory) has a gain near 1 on any machine.
///
/// Both use the hardware's best ISA, not the run's: a run forced to a
/// narrower path is the regression to catch.
public struct BenchFloorCheck: Codable, Sendable, Equatable {
    /// What a floor row checks.
    public enum Kind: String, Codable, Sendable {
        /// Unfused median over fused median, against `min_speedup`.
        case speedup
        /// Scalar-path median over the run's median, against the vector-gain floor.
        case vectorGain = "vector_gain"
    }

    /// One checked floor.
    public struct Row: Codable, Sendable, Equatable {
        /// The case id ("label pass fused").
        public var id: String
        /// The ratio checked.
        public var kind: Kind
        /// The floor.
        public var floor: Double
        /// The measured ratio (medians).
        public var value: Double
        /// `.regression` under the floor, else `.ok`.
        public var verdict: BenchVerdict
        /// True when this row comes from a re-measurement (`--confirm`).
        public var remeasured: Bool?

        /// The verdict as printed.
        public var verdictText: String {
            guard remeasured == true else { return verdict == .regression ? "under the floor" : "ok" }
            return verdict == .regression ? "under the floor (confirmed)" : "ok (re-measured)"
        }
    }

    /// The default vector-gain floor: AVX2 and AVX-512 fused kernels measured
    /// 3x-12x their scalar path (README, "In CI"); a kernel on the scalar path
    /// measures 1x within noise.
    public static let defaultVectorGainFloor = 1.5

    /// The ISA whose floors apply: the hardware's best.
    public var isa: ISA
    /// The rows, speedup floors first.
    public var rows: [Row]

    /// Checks `run`: every fused run with a twin and a floor for `isa`, and,
    /// when `scalarSeconds` is given (median seconds of the scalar path by
    /// case id), every such fused run's vector gain against its own floor
    /// (`minVectorGain`), else `vectorGainFloor`.
    public init(run: BenchRun, isa: ISA, scalarSeconds: [String: Double] = [:],
                vectorGainFloor: Double = BenchFloorCheck.defaultVectorGainFloor) {
        self.isa = isa
        var rows: [Row] = []
        for result in run.cases {
            guard let floors = result.minSpeedup, let speedup = result.speedup,
                  let floor = floors["\(isa.rawValue)/\(result.pass.rawValue)"] ?? floors[isa.rawValue] else { continue }
            rows.append(Row(id: result.id, kind: .speedup, floor: floor, value: speedup,
                            verdict: speedup < floor ? .regression : .ok))
        }
        for result in run.cases where result.impl == .fused {
            guard let scalar = scalarSeconds[result.id], result.median > 0 else { continue }
            let gain = scalar / result.median, floor = result.minVectorGain ?? vectorGainFloor
            rows.append(Row(id: result.id, kind: .vectorGain, floor: floor, value: gain,
                            verdict: gain < floor ? .regression : .ok))
        }
        self.rows = rows
    }

    /// Whether any floor failed.
    public var regressed: Bool { rows.contains { $0.verdict == .regression } }

    /// The ids of the cases under a floor.
    public var regressedIDs: [String] { rows.filter { $0.verdict == .regression }.map(\.id) }

    /// Replaces each failed row by the same row of `recheck` (a re-measurement
    /// of those cases): a floor fails only when the second run confirms it.
    public mutating func confirm(with recheck: BenchFloorCheck) {
        for index in rows.indices where rows[index].verdict == .regression {
            let row = rows[index]
            guard var again = recheck.rows.first(where: { $0.id == row.id && $0.kind == row.kind }) else { continue }
            again.remeasured = true
            rows[index] = again
        }
    }

    /// What was checked and the outcome, then the rows: case, ratio, floor,
    /// measured, verdict.
    public func table(_ format: BenchTableFormat) -> String {
        let header = ["case", "ratio", "floor", "measured", "verdict"]
        let body = rows.map { row -> [String] in
            [row.id, row.kind == .speedup ? "fused/unfused" : "vector/scalar",
             String(format: "%.2fx", row.floor), String(format: "%.2fx", row.value), row.verdictText]
        }
        let table = renderTable([header] + body, format: format, rightAligned: [2, 3])
        return format == .csv ? table : summary + "\n\n" + table
    }

    /// One line: which floors, and which cases fell under them.
    public var summary: String {
        let failed = rows.filter { $0.verdict == .regression }.map { "\($0.id) (\($0.kind.rawValue))" }
        let what = "floors of \(isa.rawValue) hardware (the suite's min_speedup"
            + (rows.contains { $0.kind == .vectorGain } ? ", and each fused kernel against its scalar path)" : ")")
        if rows.isEmpty { return what + ": none apply." }
        return what + ": " + (failed.isEmpty ? "all \(rows.count) met" : "UNDER THE FLOOR: " + failed.joined(separator: "; "))
    }
}
