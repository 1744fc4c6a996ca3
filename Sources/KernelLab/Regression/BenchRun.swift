import Foundation

/// Relative changes beyond which `kernel-lab bench --check` calls a metric
/// worse (0.1 = 10%). Set per suite and per case with a `thresholds` object
/// in the suite file, e.g. `"thresholds": {"time": 0.25}`.
public struct BenchThresholds: Codable, Sendable, Equatable {
    /// Median time, same machine: slower by more than this fraction.
    public var time: Double
    /// Roofline efficiency (attained / bound): lower by more than this fraction.
    public var efficiency: Double
    /// Fused/unfused speedup: lower by more than this fraction.
    public var speedup: Double

    /// Creates thresholds; the defaults are 10% for every metric.
    public init(time: Double = 0.10, efficiency: Double = 0.10, speedup: Double = 0.10) {
        self.time = time
        self.efficiency = efficiency
        self.speedup = speedup
    }

    /// Every metric's threshold set to `value` (`--threshold`).
    public init(all value: Double) {
        self.init(time: value, efficiency: value, speedup: value)
    }
}

/// The machine a bench run was measured on, as stored in a baseline.
public struct BenchMachine: Codable, Sendable, Equatable {
    /// `BenchMachine.hardwareID(for:)`: the machine id of the best ISA, so
    /// that a run with `KERNELLAB_ISA=scalar` on the same hardware is the
    /// same machine (and a slower ISA is a regression, not another machine).
    public var machineID: String
    /// The CPU model string.
    public var cpuModel: String
    /// Online logical CPUs.
    public var cpuCount: Int
    /// The ISA the kernels ran with.
    public var isa: ISA
    /// The best ISA of the hardware (the one `machineID` names), which may
    /// be wider than `isa` when a run forced a narrower path; nil in
    /// baselines written before it was recorded (then taken to be `isa`).
    public var hardwareISA: ISA?
    /// Threads of every kernel.
    public var threads: Int
    /// Date of the machine profile that gave the roofline bounds, if any.
    public var profileDate: String?
    /// The profile's compute roof of `isa` at `threads`, GFLOP/s.
    public var peakGflops: Double?
    /// The profile's DRAM bandwidth roof at `threads`, GB/s.
    public var dramGBs: Double?

    /// Creates a machine summary.
    public init(machineID: String, cpuModel: String, cpuCount: Int, isa: ISA, threads: Int,
                profileDate: String? = nil, peakGflops: Double? = nil, dramGBs: Double? = nil, hardwareISA: ISA? = nil) {
        self.hardwareISA = hardwareISA
        self.machineID = machineID
        self.cpuModel = cpuModel
        self.cpuCount = cpuCount
        self.isa = isa
        self.threads = threads
        self.profileDate = profileDate
        self.peakGflops = peakGflops
        self.dramGBs = dramGBs
    }

    /// The machine id of `system` with its best supported ISA in place of
    /// the active one: the hardware, not the code path.
    public static func hardwareID(for system: SystemInfo) -> String {
        var hardware = system
        hardware.activeISA = bestISA(of: system)
        return MachineProfile.machineID(for: hardware)
    }

    /// The widest ISA `system` supports (its active one if it lists none).
    public static func bestISA(of system: SystemInfo) -> ISA {
        system.supportedISAs.max { ISA.allCases.firstIndex(of: $0)! < ISA.allCases.firstIndex(of: $1)! } ?? system.activeISA
    }

    /// `hardwareISA`, or `isa` for a baseline that did not record it.
    public var hardwareOrRunISA: ISA { hardwareISA ?? isa }

    enum CodingKeys: String, CodingKey {
        case machineID = "machine_id"
        case cpuModel = "cpu_model"
        case cpuCount = "cpu_count"
        case isa, threads
        case hardwareISA = "hardware_isa"
        case profileDate = "profile_date"
        case peakGflops = "peak_gflops"
        case dramGBs = "dram_gbs"
    }
}

/// One timed run of a bench suite: a case at one pass and implementation,
/// with every sample and the statistics derived from them.
public struct BenchCaseResult: Codable, Sendable, Equatable {
    /// Unique within a suite: "label pass impl", e.g. "attn L1024 forward fused".
    public var id: String
    /// The case's label.
    public var label: String
    /// The pass.
    public var pass: KernelPass
    /// The implementation.
    public var impl: KernelImpl
    /// Every timed call, seconds, in the order measured.
    public var samples: [Double]
    /// FLOPs of one call (`kl_attn_cost` / `kl_scan_cost`).
    public var flops: Double
    /// Modelled DRAM bytes of one call.
    public var dramBytes: Double
    /// The roofline bound of this machine's profile, GFLOP/s, if known.
    public var boundGflops: Double?
    /// The unfused twin's samples, for a fused run whose twin was measured:
    /// the speedup is their ratio.
    public var unfusedSamples: [Double]?
    /// Regression thresholds from the suite.
    public var thresholds: BenchThresholds
    /// The case's speedup floors by ISA name (`min_speedup`), for a fused
    /// run with a twin; nil when the case states none.
    public var minSpeedup: [String: Double]?
    /// The fused run's vector-gain floor (`min_vector_gain`), nil when its case
    /// states none or the run is unfused.
    public var minVectorGain: Double?

    /// Creates a result.
    public init(id: String, label: String, pass: KernelPass, impl: KernelImpl, samples: [Double], flops: Double,
                dramBytes: Double, boundGflops: Double? = nil, unfusedSamples: [Double]? = nil,
                thresholds: BenchThresholds = BenchThresholds(), minSpeedup: [String: Double]? = nil,
                minVectorGain: Double? = nil) {
        self.minSpeedup = minSpeedup
        self.minVectorGain = minVectorGain
        self.id = id
        self.label = label
        self.pass = pass
        self.impl = impl
        self.samples = samples
        self.flops = flops
        self.dramBytes = dramBytes
        self.boundGflops = boundGflops
        self.unfusedSamples = unfusedSamples
        self.thresholds = thresholds
    }

    /// The id of `run`'s result: "label pass impl".
    public static func id(_ run: RooflineRun) -> String {
        "\(run.case.label) \(run.pass.rawValue) \(run.impl.rawValue)"
    }

    /// The timing statistics.
    public var stats: Samples { Samples(seconds: samples) }
    /// Median seconds.
    public var median: Double { stats.median }
    /// Robust spread: interquartile range over the median.
    public var relativeIQR: Double { relativeSpread(samples) }
    /// GFLOP/s at the median.
    public var gflops: Double { flops / median / 1e9 }
    /// Modelled DRAM GB/s at the median.
    public var gbs: Double { dramBytes / median / 1e9 }
    /// Attained / attainable GFLOP/s at the median, when the bound is known.
    public var efficiency: Double? { efficiencySamples.map { Samples(seconds: $0).median } }
    /// Per-sample efficiencies (a monotone map of the times, so the rank
    /// test on them is the rank test on the times).
    public var efficiencySamples: [Double]? {
        guard let boundGflops, boundGflops > 0 else { return nil }
        return samples.map { flops / $0 / 1e9 / boundGflops }
    }
    /// Unfused median / fused median, for a fused run with its twin.
    public var speedup: Double? { speedupSamples.map { Samples(seconds: $0).median } }
    /// Per-call speedups, unfused call i over fused call i (the twins ran
    /// back to back, so pairing them cancels some of the machine's drift).
    public var speedupSamples: [Double]? {
        guard let unfusedSamples, !unfusedSamples.isEmpty else { return nil }
        let count = min(unfusedSamples.count, samples.count)
        return (0..<count).map { unfusedSamples[$0] / samples[$0] }
    }

    enum CodingKeys: String, CodingKey {
        case id, label, pass, impl, samples, flops, thresholds
        case dramBytes = "dram_bytes"
        case boundGflops = "bound_gflops"
        case unfusedSamples = "unfused_samples"
        case minSpeedup = "min_speedup"
        case minVectorGain = "min_vector_gain"
    }
}

/// IQR / median of `values` (0 for a zero median).
func relativeSpread(_ values: [Double]) -> Double {
    let samples = Samples(seconds: values)
    let median = samples.median
    return median != 0 ? (samples.percentile(75) - samples.percentile(25)) / abs(median) : 0
}

/// A whole bench run: what `--save-baseline` stores in
/// `Profiles/baselines/<machine-id>/NAME.json` and `--check` reads back.
public struct BenchRun: Codable, Sendable, Equatable {
    /// The document format this build writes.
    public static let formatVersion = 1
    /// The document's format version.
    public var version: Int
    /// The suite's name.
    public var suite: String
    /// Where it ran.
    public var machine: BenchMachine
    /// `git rev-parse HEAD` of the tree, or "unknown".
    public var gitCommit: String
    /// When it ran, ISO 8601.
    public var date: String
    /// The runs, in the suite's order.
    public var cases: [BenchCaseResult]

    /// Creates a run document.
    public init(suite: String, machine: BenchMachine, gitCommit: String, date: String, cases: [BenchCaseResult]) {
        version = BenchRun.formatVersion
        self.suite = suite
        self.machine = machine
        self.gitCommit = gitCommit
        self.date = date
        self.cases = cases
    }

    enum CodingKeys: String, CodingKey {
        case version, suite, machine, date, cases
        case gitCommit = "git_commit"
    }

    /// Builds the results of `measurements` (from `RooflineRunner`), taking
    /// bounds from `ceilings` when given (as the roofline report does).
    public init(suite: RooflineSuite, measurements: [RooflineMeasurement], machine: BenchMachine,
                ceilings: RooflineCeilings?, gitCommit: String, date: String) throws {
        var results: [BenchCaseResult] = []
        for measurement in measurements {
            let run = measurement.run
            var bound: Double?
            if let ceilings {
                bound = try? RooflineBound(cost: measurement.cost, isa: machine.isa, ceilings: ceilings).gflops
            }
            var unfused: [Double]?
            if run.impl == .fused {
                unfused = measurements.first {
                    $0.run.caseIndex == run.caseIndex && $0.run.pass == run.pass && $0.run.impl == .unfused
                }?.samples.seconds
            }
            results.append(BenchCaseResult(
                id: BenchCaseResult.id(run), label: run.case.label,
                pass: run.pass, impl: run.impl, samples: measurement.samples.seconds,
                flops: measurement.cost.flops, dramBytes: measurement.cost.dramBytes,
                boundGflops: bound, unfusedSamples: unfused, thresholds: run.case.thresholds,
                minSpeedup: unfused != nil && !run.case.minSpeedup.isEmpty ? run.case.minSpeedup : nil,
                minVectorGain: run.impl == .fused ? run.case.minVectorGain : nil))
        }
        self.init(suite: suite.name, machine: machine, gitCommit: gitCommit, date: date, cases: results)
    }

    /// `Profiles/baselines/<machine-id>/NAME.json`, relative to the working directory.
    public static func baselinePath(machineID: String, name: String) -> String {
        "Profiles/baselines/\(machineID)/\(name).json"
    }

    /// Where `--check NAME` found its baseline.
    public enum BaselineChoice: Equatable, Sendable {
        /// This hardware's own.
        case thisMachine(String)
        /// None of this hardware; this one ran `hardwareISA` on other hardware.
        case sameISA(String)
        /// Neither: the path this hardware's would have.
        case none(String)
    }

    /// This hardware's baseline NAME if there is one, else the first (by
    /// machine id) of `directory`/*/NAME.json whose run used `hardwareISA`:
    /// its speedups, measured on the same code path, gate here too.
    /// Unreadable candidates are skipped.
    public static func resolveBaseline(name: String, machineID: String, hardwareISA: ISA,
                                       directory: String = "Profiles/baselines") throws -> BaselineChoice {
        let own = "\(directory)/\(machineID)/\(name).json"
        if FileManager.default.fileExists(atPath: own) { return .thisMachine(own) }
        let machines = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for other in machines.sorted() where other != machineID {
            let path = "\(directory)/\(other)/\(name).json"
            guard FileManager.default.fileExists(atPath: path), let candidate = try? BenchRun.load(path: path) else { continue }
            if candidate.machine.isa == hardwareISA { return .sameISA(path) }
        }
        return .none(own)
    }

    /// The run as one JSON object with sorted keys.
    public func json() throws -> String {
        try encodeJSON(self)
    }

    /// Writes the run to `path` whole or not at all, creating missing
    /// parent directories.
    ///
    /// - Throws: `KernelLabError.io` when the directory or file cannot be written.
    public func save(path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw KernelLabError.io(path: path, reason: "cannot create directory '\(directory)': \(error.localizedDescription)")
            }
        }
        try writeFileAtomically(path, bytes: Array((try json() + "\n").utf8))
    }

    /// Reads a run document.
    ///
    /// - Throws: `KernelLabError.io` when the file is missing, unreadable or
    ///   not a bench run of this format.
    public static func load(path: String) throws -> BenchRun {
        guard FileManager.default.fileExists(atPath: path) else {
            throw KernelLabError.io(path: path, reason: "no such baseline (save one with --save-baseline)")
        }
        let run: BenchRun
        do {
            run = try JSONDecoder().decode(BenchRun.self, from: try readWholeFile(path))
        } catch let error as KernelLabError {
            throw error
        } catch {
            throw KernelLabError.io(path: path, reason: "not a bench baseline: \(error)")
        }
        guard run.version == formatVersion else {
            throw KernelLabError.io(path: path, reason: "baseline has format version \(run.version), this build reads \(formatVersion)")
        }
        return run
    }

    /// `git rev-parse HEAD` in the working directory, or "unknown" when git
    /// is missing or this is not a repository.
    public static func gitCommit() -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "rev-parse", "HEAD"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return "unknown"
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let commit = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return process.terminationStatus == 0 && !commit.isEmpty ? commit : "unknown"
    }

    // MARK: - tables

    /// One row per run: median, p10, p90, spread, GFLOP/s, GB/s, efficiency
    /// and speedup, as text, Markdown or CSV.
    public func table(_ format: BenchTableFormat) -> String {
        let header = ["case", "median ms", "p10 ms", "p90 ms", "IQR/med", "GFLOP/s", "GB/s", "eff", "speedup", "n"]
        let rows = cases.map { result -> [String] in
            let stats = result.stats
            return [result.id, ms(stats.median), ms(stats.p10), ms(stats.p90),
                    String(format: "%.1f%%", result.relativeIQR * 100),
                    String(format: "%.1f", result.gflops), String(format: "%.1f", result.gbs),
                    result.efficiency.map { String(format: "%.1f%%", $0 * 100) } ?? "-",
                    result.speedup.map { String(format: "%.2fx", $0) } ?? "-",
                    "\(result.samples.count)"]
        }
        return renderTable([header] + rows, format: format, rightAligned: Set(1..<header.count))
    }
}

private func ms(_ seconds: Double) -> String { String(format: "%.3f", seconds * 1e3) }

/// How `kernel-lab bench` prints tables.
public enum BenchTableFormat: String, CaseIterable, Sendable {
    /// Aligned columns.
    case text
    /// A GitHub-flavoured Markdown table.
    case markdown
    /// Comma-separated values with a header line.
    case csv
}

/// Renders rows (the first is the header) in `format`.
func renderTable(_ rows: [[String]], format: BenchTableFormat, rightAligned: Set<Int> = []) -> String {
    switch format {
    case .text:
        return formatTable(rows, rightAligned: rightAligned)
    case .markdown:
        guard let header = rows.first else { return "" }
        let rule = header.indices.map { rightAligned.contains($0) ? "---:" : "---" }
        return ([header, rule] + rows.dropFirst()).map { "| " + $0.joined(separator: " | ") + " |" }.joined(separator: "\n")
    case .csv:
        return rows.map { row in
            row.map { $0.contains(",") || $0.contains("\"") ? "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : $0 }
                .joined(separator: ",")
        }.joined(separator: "\n")
    }
}
