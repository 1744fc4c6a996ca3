import Foundation

// Machinery shared by the kernel benchmarks (`AttentionBenchmark`,
// `ScanBenchmark`): settings checks, the in-run sgemm reference, and the
// report with its fused/unfused speedups, JSON and table footer.

/// One timed (implementation, pass) of a kernel benchmark.
public protocol KernelBenchmarkResult: Codable, Sendable, Equatable {
    /// The implementation timed.
    var impl: KernelImpl { get }
    /// The pass timed.
    var pass: KernelPass { get }
    /// Threads of the pool.
    var threads: Int { get }
    /// Median time of one call.
    var medianSeconds: Double { get }
}

/// Throws `KernelLabError.invalidArgument` unless the settings common to the
/// kernel benchmarks are usable.
func validateBenchmarkSettings(impls: [KernelImpl], passes: [KernelPass], warmup: Int, repeats: Int) throws {
    guard !impls.isEmpty else {
        throw KernelLabError.invalidArgument(argument: "impls", reason: "name at least one implementation")
    }
    guard !passes.isEmpty else {
        throw KernelLabError.invalidArgument(argument: "passes", reason: "name at least one pass")
    }
    guard warmup >= 0 else {
        throw KernelLabError.invalidArgument(argument: "warmup", reason: "must be >= 0, got \(warmup)")
    }
    guard repeats >= 1 else {
        throw KernelLabError.invalidArgument(argument: "repeats", reason: "must be >= 1, got \(repeats)")
    }
}

/// The largest `bytes(impl, pass)` over every requested (implementation,
/// pass): the size of the one workspace a benchmark allocates.
func largestWorkspace(impls: [KernelImpl], passes: [KernelPass],
                      _ bytes: (KernelImpl, KernelPass) throws -> Int) rethrows -> Int {
    var largest = 0
    for impl in impls {
        for pass in passes {
            largest = max(largest, try bytes(impl, pass))
        }
    }
    return largest
}

/// Times the reference n x n sgemm of a benchmark run, announcing it to `progress`.
func referenceSgemm(n: Int, threads: Int, warmup: Int, repeats: Int,
                    progress: ((String) -> Void)?) throws -> SgemmBenchmark.Result {
    progress?("sgemm n=\(n), \(threads) thread(s)")
    return try SgemmBenchmark.run(n: n, threads: threads, warmup: max(warmup, 1), repeats: repeats)
}

extension SgemmBenchmark.Result {
    /// `gflops` as a fraction of this sgemm's GFLOP/s (0 if that is 0).
    func fraction(of gflops: Double) -> Double {
        self.gflops > 0 ? gflops / self.gflops : 0
    }
}

/// The outcome of a kernel benchmark run (`AttentionBenchmarkReport`,
/// `ScanBenchmarkReport`).
public struct KernelBenchmarkReport<Result: KernelBenchmarkResult>: Codable, Sendable, Equatable {
    /// One entry per (pass, implementation), in the order run.
    public var results: [Result]
    /// GFLOP/s of the reference sgemm in the same run.
    public var sgemmGflops: Double
    /// Its matrix size n.
    public var sgemmSize: Int
    /// The CPU the run was on.
    public var cpuModel: String
    /// Per pass ("forward", "backward"): the unfused median time over the
    /// fused one, i.e. how many times faster the fused kernel is. Only for
    /// passes where both implementations ran.
    public var speedups: [String: Double]

    init(results: [Result], sgemm: SgemmBenchmark.Result) {
        self.results = results
        sgemmGflops = sgemm.gflops
        sgemmSize = sgemm.n
        cpuModel = (try? SystemInfo.current().cpuModel) ?? "unknown"
        var speedups: [String: Double] = [:]
        for pass in KernelPass.allCases {
            let rows = results.filter { $0.pass == pass }
            if let fused = rows.first(where: { $0.impl == .fused }),
               let unfused = rows.first(where: { $0.impl == .unfused }),
               fused.medianSeconds > 0 {
                speedups[pass.rawValue] = unfused.medianSeconds / fused.medianSeconds
            }
        }
        self.speedups = speedups
    }

    enum CodingKeys: String, CodingKey {
        case results
        case sgemmGflops = "sgemm_gflops"
        case sgemmSize = "sgemm_n"
        case cpuModel = "cpu_model"
        case speedups
    }

    /// The report as one JSON object with sorted keys.
    public func json() throws -> String {
        try encodeJSON(self)
    }

    /// `rows` laid out as a table, followed by the sgemm reference and the
    /// fused/unfused speedups.
    func table(_ rows: [[String]], rightAligned: Set<Int>) -> String {
        var lines = [formatTable(rows, rightAligned: rightAligned)]
        let threads = results.first?.threads ?? 1
        lines.append(String(format: "sgemm n=%d, %d thread(s): %.1f GFLOP/s", sgemmSize, threads, sgemmGflops))
        if !speedups.isEmpty {
            let parts = KernelPass.allCases.compactMap { pass in
                speedups[pass.rawValue].map { "\(pass.rawValue) " + String(format: "%.2fx", $0) }
            }
            lines.append("speedup fused over unfused: " + parts.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
