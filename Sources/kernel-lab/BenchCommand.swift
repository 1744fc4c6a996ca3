import ArgumentParser
import Foundation
import KernelLab

extension BenchTableFormat: ExpressibleByArgument {}
extension BenchCompareMode: ExpressibleByArgument {}

/// `kernel-lab bench`: times a suite, saves it as a baseline or checks it
/// against one. Exits 0 when nothing regressed, 1 on a regression, 2 on a
/// usage error (unknown suite, missing baseline, kernel failure; option
/// parsing errors keep ArgumentParser's 64).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Time a suite; save it as a baseline or check it against one (throughput regression testing).",
        discussion: """
            Runs every case of the suite (Profiles/suites/NAME.json, as `roofline` does) and \
            prints each run's median, p10, p90, IQR/median, GFLOP/s, modelled GB/s, roofline \
            efficiency (from this machine's profile in Profiles/machines, when there is one; \
            bench never measures ceilings) and fused/unfused speedup. --save-baseline NAME \
            writes Profiles/baselines/<machine-id>/NAME.json; --check NAME compares with it: \
            a metric regresses when its median is worse than the threshold AND a one-sided \
            Mann-Whitney U test (alpha 0.01) separates the samples. A baseline from another \
            machine compares only roofline efficiency and speedups (--compare ratios or \
            speedup asks for that anywhere). When this hardware has no baseline NAME, \
            --check NAME falls back to a committed one (Profiles/baselines/*/NAME.json) \
            that ran this hardware's best ISA. --floors also checks each fused kernel's \
            speedup against the suite's min_speedup for this hardware's best ISA, which \
            needs no baseline at all. --confirm re-measures the cases that regressed and \
            keeps only the regressions the second run confirms. Exit status: 0 no \
            regression, 1 regression, 2 usage error.
            """)

    @Option(help: "Suite name in Profiles/suites (smoke, default, full) or a path to a suite file.")
    var suite = "default"
    @Option(help: "Timed calls per run (default: the suite's, at least 8 so the rank test can reach alpha).")
    var repeats: Int?
    @Option(help: "Untimed calls per run (default: the suite's).")
    var warmup: Int?
    @Option(help: "Threads for every kernel (default: all CPUs).")
    var threads: Int?
    @Flag(help: "Print the run (and the comparison) as JSON instead of tables.")
    var json = false
    @Option(help: "Table format: text, markdown or csv.")
    var format: BenchTableFormat = .text
    @Option(name: .customLong("save-baseline"), help: "Save the run as Profiles/baselines/<machine-id>/NAME.json.")
    var saveBaseline: String?
    @Option(help: "Compare with the baseline NAME (or a path to a baseline file).")
    var check: String?
    @Option(help: "Metrics to compare: auto (time on the same machine, efficiency and speedup on another), ratios (efficiency and speedup), speedup (fused/unfused only; CI).")
    var compare: BenchCompareMode = .auto
    @Flag(help: "Re-measure the cases that regressed and keep only confirmed regressions.")
    var confirm = false
    @Flag(help: "Gate on the suite's speedup floors (min_speedup) of this hardware's best ISA; needs no baseline.")
    var floors = false
    @Option(help: "Replace every threshold of the suite with this fraction (0.1 = 10%).")
    var threshold: Double?
    @Option(help: "Significance level of the Mann-Whitney test.")
    var alpha = BenchComparison.defaultAlpha
    @Option(help: "Kernel ISA to use (scalar, avx2, avx512; default: KERNELLAB_ISA or the best available).")
    var isa: ISA?
    @Option(help: "Seed of the random inputs.")
    var seed: UInt64 = 0

    func validate() throws {
        try validateThreads(threads)
        if let repeats, repeats < 1 { throw ValidationError("--repeats must be at least 1, got \(repeats)") }
        if let warmup, warmup < 0 { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
        if let threshold, !(threshold > 0 && threshold <= 10) {
            throw ValidationError("--threshold must be a fraction in (0, 10], got \(threshold)")
        }
        if !(alpha > 0 && alpha < 1) { throw ValidationError("--alpha must be in (0, 1), got \(alpha)") }
        if check == nil, compare != .auto {
            throw ValidationError("--compare needs --check NAME")
        }
        if check == nil, !floors, confirm {
            throw ValidationError("--confirm needs --check NAME or --floors")
        }
        for (flag, name) in [("--save-baseline", saveBaseline), ("--check", check)] {
            if let name, name.isEmpty { throw ValidationError("\(flag) must name a baseline") }
        }
    }

    func run() throws {
        do {
            let code = try bench()
            if code != .ok { throw ExitCode(code.rawValue) }
        } catch let error as KernelLabError {
            // Anything but a verdict is a usage error, so that 1 always means "regressed".
            printError("error: \(error)")
            throw ExitCode(BenchExitCode.usage.rawValue)
        }
    }

    /// Median seconds of every fused run of `suite` with a vector-gain floor
    /// on the scalar path, by bench case id (3 timed calls after 1 warm-up:
    /// the gain it feeds is 3x-12x, not a 10% effect). The active ISA is
    /// restored afterwards.
    private func scalarMedians(_ suite: RooflineSuite, threads: Int, progress: ((String) -> Void)?) throws -> [String: Double] {
        var fusedOnly = suite
        fusedOnly.cases = suite.cases.compactMap { item in
            guard item.impls.contains(.fused), item.minVectorGain != nil else { return nil }
            var copy = item
            copy.impls = [.fused]
            copy.warmup = 1
            copy.repeats = 3
            return copy
        }
        guard !fusedOnly.cases.isEmpty else { return [:] }
        let active = try ISA.active
        try ISA.set(.scalar)
        defer { try? ISA.set(active) }
        printError("timing the fused kernels on the scalar path too (vector-gain floor)")
        let measurements = try RooflineRunner(threads: threads, seed: seed).measure(fusedOnly, progress: progress)
        return Dictionary(measurements.map { (BenchCaseResult.id($0.run), $0.samples.median) },
                          uniquingKeysWith: { first, _ in first })
    }

    private func bench() throws -> BenchExitCode {
        if let isa { try ISA.set(isa) }
        let progress = terminalProgress()
        let threads = threadsOrAllCPUs(self.threads)
        // Everything that can fail cheaply is checked before any timing.
        var suite = try RooflineSuite.load(self.suite)
        suite.warmup = warmup ?? suite.warmup
        for index in suite.cases.indices {
            // At least 8 by default: with n a side the smallest one-sided p is 1 / C(2n, n).
            suite.cases[index].repeats = repeats ?? max(8, suite.cases[index].repeats ?? suite.repeats)
            if let warmup { suite.cases[index].warmup = warmup }
        }
        let system = try SystemInfo.current()
        let machineID = BenchMachine.hardwareID(for: system)
        let hardwareISA = BenchMachine.bestISA(of: system)
        var baseline: BenchRun?
        if let check {
            if check.contains("/") || check.hasSuffix(".json") {
                baseline = try BenchRun.load(path: check)
            } else {
                switch try BenchRun.resolveBaseline(name: check, machineID: machineID, hardwareISA: hardwareISA) {
                case .thisMachine(let path):
                    baseline = try BenchRun.load(path: path)
                case .sameISA(let path):
                    printError("note: no baseline '\(check)' of this hardware (\(machineID)); comparing with \(path), "
                               + "which ran \(hardwareISA.rawValue) on other hardware (commit one of this hardware with --save-baseline \(check))")
                    baseline = try BenchRun.load(path: path)
                case .none(let path):
                    guard floors else { throw KernelLabError.io(path: path, reason: "no such baseline, and none of another machine ran \(hardwareISA.rawValue)") }
                    printError("note: no baseline '\(check)' of this hardware or of another \(hardwareISA.rawValue) machine; "
                               + "gating on the suite's speedup floors only")
                }
            }
        }
        let activeISA = try ISA.active
        // The bounds come from the hardware's stored profile (it holds every
        // ISA's peak); bench never measures ceilings, it would take minutes.
        let profile = try? MachineProfile.load(path: MachineProfile.defaultPath(machineID: machineID))
        let ceilings = profile.flatMap { $0.rooflineCeilings(threads: threads) }
        if ceilings == nil {
            printError("note: no machine profile with \(threads) thread(s) at \(MachineProfile.defaultPath(machineID: machineID)); "
                       + "efficiency omitted (run `kernel-lab ceilings` to measure one)")
        }
        let machine = BenchMachine(
            machineID: machineID, cpuModel: system.cpuModel, cpuCount: system.cpuCount, isa: activeISA, threads: threads,
            profileDate: ceilings == nil ? nil : profile?.date, peakGflops: ceilings?.peakGflops(activeISA),
            dramGBs: ceilings?.memoryRoof(.dram)?.gbs, hardwareISA: hardwareISA)

        let measurements = try RooflineRunner(threads: threads, seed: seed).measure(suite, progress: progress)
        let run = try BenchRun(
            suite: suite, measurements: measurements, machine: machine, ceilings: ceilings,
            gitCommit: BenchRun.gitCommit(), date: ISO8601DateFormatter().string(from: Date()))
        let thresholds = threshold.map { BenchThresholds(all: $0) }
        var comparison = baseline.map {
            BenchComparison(baseline: $0, current: run, alpha: alpha, thresholds: thresholds, mode: compare)
        }
        // The vector gain: each fused run once more on the scalar path.
        let scalarSeconds = floors && hardwareISA != .scalar ? try scalarMedians(suite, threads: threads, progress: progress) : [:]
        var floorCheck = floors ? BenchFloorCheck(run: run, isa: hardwareISA, scalarSeconds: scalarSeconds) : nil
        let failedIDs = Set((comparison?.regressed == true ? comparison!.regressedIDs : []) + (floorCheck?.regressedIDs ?? []))
        if confirm, !failedIDs.isEmpty {
            // Re-measure whole cases (both twins of a speedup) that regressed.
            let labels = Set(run.cases.filter { failedIDs.contains($0.id) }.map(\.label))
            var again = suite
            again.cases = suite.cases.filter { labels.contains($0.label) }
            printError("re-measuring \(again.cases.count) case(s) that regressed: \(labels.sorted().joined(separator: ", "))")
            let rerun = try BenchRun(
                suite: again, measurements: try RooflineRunner(threads: threads, seed: seed).measure(again, progress: progress),
                machine: machine, ceilings: ceilings, gitCommit: run.gitCommit, date: run.date)
            if let baseline {
                comparison?.confirm(with: BenchComparison(baseline: baseline, current: rerun, alpha: alpha,
                                                          thresholds: thresholds, mode: compare))
            }
            let scalarAgain = floors && hardwareISA != .scalar ? try scalarMedians(again, threads: threads, progress: progress) : [:]
            floorCheck?.confirm(with: BenchFloorCheck(run: rerun, isa: hardwareISA, scalarSeconds: scalarAgain))
        }

        if let saveBaseline {
            let path = saveBaseline.contains("/") || saveBaseline.hasSuffix(".json")
                ? saveBaseline : BenchRun.baselinePath(machineID: machineID, name: saveBaseline)
            try run.save(path: path)
            printError("saved baseline \(path)")
        }
        if json {
            struct Output: Encodable {
                var run: BenchRun
                var comparison: BenchComparison?
                var floors: BenchFloorCheck?
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(Output(run: run, comparison: comparison, floors: floorCheck)), as: UTF8.self))
        } else {
            if format != .csv {
                print("suite \(run.suite) on \(machine.machineID), isa \(activeISA.rawValue), \(threads) thread(s), commit \(run.gitCommit.prefix(12))")
                print()
            }
            print(run.table(format))
            if let comparison {
                print()
                print(comparison.table(format))
            }
            if let floorCheck {
                print()
                print(floorCheck.table(format))
            }
        }
        return comparison?.regressed == true || floorCheck?.regressed == true ? .regression : .ok
    }
}
