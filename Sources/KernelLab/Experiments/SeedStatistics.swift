import Foundation

/// A mean over seeds with its 95% confidence interval (Student's t, n - 1
/// degrees of freedom) and the range; what a summary quotes for one figure.
public struct SeedStatistic: Codable, Equatable, Sendable {
    public var n: Int
    public var mean: Double
    /// Half-width of the 95% interval (0 with one seed: no interval).
    public var halfWidth: Double
    public var min: Double
    public var max: Double

    public init(_ values: [Double]) {
        n = values.count
        mean = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
        min = values.min() ?? .nan
        max = values.max() ?? .nan
        if values.count >= 2 {
            let m = mean
            let variance = values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)
            halfWidth = Self.t975(values.count - 1) * (variance / Double(values.count)).squareRoot()
        } else {
            halfWidth = 0
        }
    }

    /// The 97.5% quantile of Student's t with `dof` degrees of freedom.
    static func t975(_ dof: Int) -> Double {
        let table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                     2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                     2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
        if dof >= 1 && dof <= table.count { return table[dof - 1] }
        // Rounded up to the next tabulated degrees of freedom: the interval errs wide.
        return dof <= 40 ? 2.042 : dof <= 60 ? 2.021 : dof <= 120 ? 2.000 : 1.980
    }

    /// `0.93 ± 0.04 (0.90-0.97, 3 seeds)`, with `format` for the numbers.
    public func text(_ format: String = "%.3f") -> String {
        guard n > 0 else { return "n/a" }
        let m = String(format: format, mean)
        if n == 1 { return "\(m) (1 seed)" }
        return "\(m) ± \(String(format: format, halfWidth)) (\(String(format: format, min))-\(String(format: format, max)), \(n) seeds)"
    }
}
