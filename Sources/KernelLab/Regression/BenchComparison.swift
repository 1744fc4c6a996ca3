import Foundation

/// The Mann-Whitney U (Wilcoxon rank-sum) test: whether one set of samples
/// tends to be larger than another, assuming nothing about their
/// distributions (timings are skewed and have outliers, so no t-test).
public enum MannWhitney {
    /// U of `x` against `y`: the pairs (x_i, y_j) with x_i > y_j, ties
    /// counting one half.
    public static func u(_ x: [Double], _ y: [Double]) -> Double {
        var u = 0.0
        for a in x {
            for b in y {
                u += a > b ? 1 : (a == b ? 0.5 : 0)
            }
        }
        return u
    }

    /// The one-sided p-value of "`x` tends to be larger than `y`".
    ///
    /// Exact (the null distribution of U by counting) when there are no
    /// ties and at most 400 pairs; otherwise the normal approximation with
    /// the tie-corrected variance and a continuity correction. 1 when either
    /// side is empty.
    public static func pGreater(_ x: [Double], _ y: [Double]) -> Double {
        let n1 = x.count, n2 = y.count
        guard n1 > 0, n2 > 0 else { return 1 }
        let uObserved = u(x, y)
        let all = x + y
        let hasTies = Set(all).count != all.count
        if !hasTies, n1 * n2 <= 400 {
            // counts[u] = arrangements of n1 x's among n2 y's giving U = u.
            let counts = exactCounts(n1, n2)
            let total = counts.reduce(0, +)
            let threshold = Int(uObserved.rounded())
            return counts[threshold...].reduce(0, +) / total
        }
        let mean = Double(n1 * n2) / 2
        let n = Double(n1 + n2)
        // Tie correction: sum of t^3 - t over groups of equal values.
        var groups: [Double: Int] = [:]
        for value in all { groups[value, default: 0] += 1 }
        let tieTerm = groups.values.reduce(0.0) { $0 + Double($1 * $1 * $1 - $1) }
        let variance = Double(n1 * n2) / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { return uObserved > mean ? 0 : 1 }
        let z = (uObserved - mean - 0.5) / variance.squareRoot()
        return 0.5 * erfc(z / 2.0.squareRoot())
    }

    /// The number of orderings of `n1` and `n2` distinct values for each U in
    /// 0...n1*n2 (as Doubles: C(40, 20) overflows nothing there).
    public static func exactCounts(_ n1: Int, _ n2: Int) -> [Double] {
        // f[i][j][u]: i values of x and j of y. The largest value is an x
        // (it beats all j y's, U += j) or a y (U unchanged).
        var table = [[[Double]]](repeating: [[Double]](repeating: [], count: n2 + 1), count: n1 + 1)
        for i in 0...n1 {
            for j in 0...n2 {
                var row = [Double](repeating: 0, count: i * j + 1)
                if i == 0 || j == 0 {
                    row[0] = 1
                } else {
                    for u in 0...(i * j) {
                        if u >= j, u - j < table[i - 1][j].count { row[u] += table[i - 1][j][u - j] }
                        if u < table[i][j - 1].count { row[u] += table[i][j - 1][u] }
                    }
                }
                table[i][j] = row
            }
        }
        return table[n1][n2]
    }
}

/// What a comparison concluded about one metric of one case.
public enum BenchVerdict: String, Codable, Sendable, CaseIterable {
    /// Within the threshold.
    case ok
    /// Worse than the threshold and beyond the noise of both runs.
    case regression
    /// Better than the threshold and beyond the noise (reported, never a failure).
    case improvement
    /// Beyond the threshold, but the rank test cannot tell the runs apart.
    case noisy
    /// In the baseline, not in this run.
    case missing
    /// In this run, not in the baseline.
    case new
}

/// The metric a comparison row is about.
public enum BenchMetric: String, Codable, Sendable {
    /// Median seconds (lower is better); compared on the same machine only.
    case time
    /// Roofline efficiency (higher is better); machine-independent.
    case efficiency
    /// Fused/unfused speedup (higher is better); machine-independent.
    case speedup

    /// Whether a larger value is better.
    public var higherIsBetter: Bool { self != .time }
}

/// Which metrics `kernel-lab bench --check` compares (`--compare`).
public enum BenchCompareMode: String, Codable, Sendable, CaseIterable {
    /// Median time against a baseline from this machine; roofline efficiency
    /// and speedup against one from another machine.
    case auto
    /// Roofline efficiency and fused/unfused speedup, on any machine.
    case ratios
    /// Only the fused/unfused speedup. Both twins are timed in the same run,
    /// so the machine's speed and most of its drift cancel: the CI mode.
    case speedup

    /// The metrics compared when the baseline is (or is not) from this machine.
    public func metrics(sameMachine: Bool) -> [BenchMetric] {
        switch self {
        case .auto: sameMachine ? [.time] : [.efficiency, .speedup]
        case .ratios: [.efficiency, .speedup]
        case .speedup: [.speedup]
        }
    }
}

/// One row of a comparison: a metric of a case in the baseline and now.
public struct BenchComparisonRow: Codable, Sendable, Equatable {
    /// The case id.
    public var id: String
    /// The metric.
    public var metric: BenchMetric
    /// The baseline's median, if the case is in the baseline.
    public var baseline: Double?
    /// This run's median, if the case is in this run.
    public var current: Double?
    /// (current - baseline) / baseline.
    public var change: Double?
    /// One-sided Mann-Whitney p-value in the direction of the change.
    public var p: Double?
    /// The threshold applied (a fraction).
    public var threshold: Double?
    /// The verdict.
    public var verdict: BenchVerdict
    /// True when this row comes from a re-measurement of a first-run
    /// regression (`--confirm`); nil otherwise.
    public var remeasured: Bool?

    /// The verdict as printed: "regression (confirmed)" or "ok (re-measured)"
    /// after a re-measurement.
    public var verdictText: String {
        guard remeasured == true else { return verdict.rawValue }
        return verdict == .regression ? "regression (confirmed)" : "\(verdict.rawValue) (re-measured)"
    }
}

/// A bench run compared with a baseline.
///
/// A metric regresses when its median is worse than the threshold (per
/// metric, from the suite and case) AND a one-sided Mann-Whitney U test on
/// the samples of both runs says the current samples are worse at level
/// `alpha`. A change past the threshold that the test cannot separate from
/// noise is `noisy`, not a failure. With n samples per side the smallest
/// attainable p is 1 / C(2n, n), so fewer than 5 samples a side can never
/// reach alpha = 0.01: bench runs at least 8.
///
/// On the same machine (equal `machine_id`) the metric is the time. A
/// baseline from another machine compares only what does not depend on the
/// machine: roofline efficiency and fused/unfused speedup (`mode` can ask for
/// those, or the speedup alone, on any machine). A baseline from another
/// machine gates when it ran this run's ISA or this hardware's best ISA (so
/// a run forced to a narrower path is checked against what the hardware
/// should reach); one that ran another ISA is reported but never gates: the
/// ratios depend on the code path.
public struct BenchComparison: Codable, Sendable, Equatable {
    /// The significance level of the rank test.
    public var alpha: Double
    /// Whether the baseline came from the same machine.
    public var sameMachine: Bool
    /// The baseline's machine id.
    public var baselineMachineID: String
    /// This run's machine id.
    public var currentMachineID: String
    /// The metrics compared.
    public var metrics: [BenchMetric]
    /// False when the baseline is from another machine with another ISA:
    /// the rows are printed, but a regression does not fail the check.
    public var gated: Bool
    /// The baseline's ISA and this run's.
    public var baselineISA: ISA
    /// This run's ISA.
    public var currentISA: ISA
    /// Threads of the baseline's kernels and this run's.
    public var baselineThreads: Int
    /// Threads of this run's kernels.
    public var currentThreads: Int
    /// The rows, in the current run's order, then missing cases.
    public var rows: [BenchComparisonRow]

    /// The default significance level.
    public static let defaultAlpha = 0.01

    /// Compares `current` with `baseline`; `thresholds`, when given, replace
    /// the suite's for every case (`--threshold`).
    public init(baseline: BenchRun, current: BenchRun, alpha: Double = defaultAlpha, thresholds: BenchThresholds? = nil,
                mode: BenchCompareMode = .auto) {
        self.alpha = alpha
        baselineMachineID = baseline.machine.machineID
        currentMachineID = current.machine.machineID
        sameMachine = baselineMachineID == currentMachineID
        baselineISA = baseline.machine.isa
        currentISA = current.machine.isa
        baselineThreads = baseline.machine.threads
        currentThreads = current.machine.threads
        // On the same hardware a slower ISA is exactly what must be caught;
        // on other hardware, so is a run below what this hardware's best ISA
        // reached there.
        gated = sameMachine || baselineISA == currentISA || baselineISA == current.machine.hardwareOrRunISA
        let metrics = mode.metrics(sameMachine: sameMachine)
        self.metrics = metrics
        let baselineByID = Dictionary(baseline.cases.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let currentIDs = Set(current.cases.map(\.id))
        var rows: [BenchComparisonRow] = []
        for result in current.cases {
            let limits = thresholds ?? result.thresholds
            guard let old = baselineByID[result.id] else {
                for metric in metrics {
                    guard let now = BenchComparison.samples(result, metric) else { continue }
                    rows.append(BenchComparisonRow(id: result.id, metric: metric, current: Samples(seconds: now).median, verdict: .new))
                }
                continue
            }
            for metric in metrics {
                guard let now = BenchComparison.samples(result, metric), let before = BenchComparison.samples(old, metric) else {
                    continue
                }
                rows.append(BenchComparison.compare(id: result.id, metric: metric, baseline: before, current: now,
                                                    threshold: BenchComparison.threshold(limits, metric), alpha: alpha))
            }
        }
        for old in baseline.cases where !currentIDs.contains(old.id) {
            for metric in metrics {
                guard let before = BenchComparison.samples(old, metric) else { continue }
                rows.append(BenchComparisonRow(id: old.id, metric: metric, baseline: Samples(seconds: before).median, verdict: .missing))
            }
        }
        self.rows = rows
    }

    /// Whether any row regressed (and the comparison gates).
    public var regressed: Bool { gated && rows.contains { $0.verdict == .regression } }

    /// The ids of the cases with a regressed row.
    public var regressedIDs: [String] { rows.filter { $0.verdict == .regression }.map(\.id) }

    /// Replaces each regressed row by the same row of `recheck`, a comparison
    /// of a re-measurement of those cases with the same baseline: a
    /// regression stands only when the second measurement confirms it, so a
    /// burst of load during one run cannot fail a check on its own.
    public mutating func confirm(with recheck: BenchComparison) {
        for index in rows.indices where rows[index].verdict == .regression {
            let row = rows[index]
            guard var again = recheck.rows.first(where: { $0.id == row.id && $0.metric == row.metric }) else { continue }
            again.remeasured = true
            rows[index] = again
        }
    }

    /// The exit status of `kernel-lab bench --check`.
    public var exitCode: BenchExitCode { regressed ? .regression : .ok }

    /// The samples of `metric` of `result`, or nil when it has none.
    static func samples(_ result: BenchCaseResult, _ metric: BenchMetric) -> [Double]? {
        switch metric {
        case .time: result.samples
        case .efficiency: result.efficiencySamples
        case .speedup: result.speedupSamples
        }
    }

    static func threshold(_ thresholds: BenchThresholds, _ metric: BenchMetric) -> Double {
        switch metric {
        case .time: thresholds.time
        case .efficiency: thresholds.efficiency
        case .speedup: thresholds.speedup
        }
    }

    /// The verdict on one metric from both runs' samples.
    public static func compare(id: String, metric: BenchMetric, baseline: [Double], current: [Double],
                               threshold: Double, alpha: Double) -> BenchComparisonRow {
        let before = Samples(seconds: baseline).median
        let now = Samples(seconds: current).median
        let change = before != 0 ? (now - before) / abs(before) : 0
        // Worse is slower for time, lower for the ratios.
        let worse = metric.higherIsBetter ? change < -threshold : change > threshold
        let better = metric.higherIsBetter ? change > threshold : change < -threshold
        let pWorse = metric.higherIsBetter ? MannWhitney.pGreater(baseline, current) : MannWhitney.pGreater(current, baseline)
        let pBetter = metric.higherIsBetter ? MannWhitney.pGreater(current, baseline) : MannWhitney.pGreater(baseline, current)
        let verdict: BenchVerdict
        let p: Double
        if worse {
            p = pWorse
            verdict = pWorse < alpha ? .regression : .noisy
        } else if better {
            p = pBetter
            verdict = pBetter < alpha ? .improvement : .noisy
        } else {
            p = min(pWorse, pBetter)
            verdict = .ok
        }
        return BenchComparisonRow(id: id, metric: metric, baseline: before, current: now, change: change,
                                  p: p, threshold: threshold, verdict: verdict)
    }

    /// The comparison as a table: case, metric, baseline and current
    /// medians, change %, p, threshold and verdict, preceded by a line saying
    /// what was compared.
    public func table(_ format: BenchTableFormat) -> String {
        let header = ["case", "metric", "baseline", "current", "change", "p", "threshold", "verdict"]
        let rows = self.rows.map { row -> [String] in
            [row.id, row.metric.rawValue, value(row.baseline, row.metric), value(row.current, row.metric),
             row.change.map { String(format: "%+.1f%%", $0 * 100) } ?? "-",
             row.p.map { String(format: "%.3g", $0) } ?? "-",
             row.threshold.map { String(format: "%.0f%%", $0 * 100) } ?? "-",
             row.verdictText]
        }
        let table = renderTable([header] + rows, format: format, rightAligned: [2, 3, 4, 5, 6])
        return format == .csv ? table : summary + "\n\n" + table
    }

    /// What was compared, and the outcome, in one or two lines.
    public var summary: String {
        var lines: [String] = []
        let names = metrics.map { metric -> String in
            switch metric {
            case .time: "median time"
            case .efficiency: "roofline efficiency"
            case .speedup: "fused/unfused speedup"
            }
        }.joined(separator: ", ")
        if sameMachine {
            lines.append("same machine (\(currentMachineID)): comparing \(names).")
        } else {
            lines.append("baseline is from another machine (\(baselineMachineID); this is \(currentMachineID)): "
                         + "comparing only machine-independent metrics (\(names)).")
        }
        if baselineThreads != currentThreads {
            lines.append("the baseline ran \(baselineThreads) thread(s), this run \(currentThreads): expect changes from scaling alone.")
        }
        if !gated {
            lines.append("the baseline ran \(baselineISA.rawValue) and this run \(currentISA.rawValue) on other hardware: "
                         + "reported, not gated (the ratios depend on the code path).")
        }
        let counts = BenchVerdict.allCases.compactMap { verdict -> String? in
            let count = rows.filter { $0.verdict == verdict }.count
            return count > 0 ? "\(count) \(verdict.rawValue)" : nil
        }
        let regressions = rows.filter { $0.verdict == .regression }.map { "\($0.id) (\($0.metric.rawValue))" }
        lines.append((regressions.isEmpty ? "no regression" : (gated ? "REGRESSION: " : "worse, not gated: ")
                      + regressions.joined(separator: "; "))
                     + " [" + counts.joined(separator: ", ") + "; Mann-Whitney alpha \(alpha)]")
        return lines.joined(separator: "\n")
    }

    private func value(_ value: Double?, _ metric: BenchMetric) -> String {
        guard let value else { return "-" }
        switch metric {
        case .time: return String(format: "%.3f ms", value * 1e3)
        case .efficiency: return String(format: "%.1f%%", value * 100)
        case .speedup: return String(format: "%.2fx", value)
        }
    }
}

/// Exit statuses of `kernel-lab bench`: 1 means a regression and nothing else.
public enum BenchExitCode: Int32, Sendable {
    /// Nothing regressed (or nothing was checked).
    case ok = 0
    /// At least one metric regressed.
    case regression = 1
    /// A usage error: unknown suite, missing or unreadable baseline, bad
    /// options, or a kernel failure.
    case usage = 2
}
