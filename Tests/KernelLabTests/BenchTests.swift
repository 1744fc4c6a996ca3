import Foundation
import KernelLab
import XCTest

/// `kernel-lab bench`: the Mann-Whitney test, the comparison verdicts, the
/// baseline document and the exit codes, all on synthetic samples (nothing
/// is timed, nothing asserts a time).
final class BenchTests: TemporaryDirectoryTestCase {
    static let machine = BenchMachine(machineID: "test-machine", cpuModel: "Fixture CPU", cpuCount: 2, isa: .avx512, threads: 2,
                                      profileDate: "2026-01-01", peakGflops: 100, dramGBs: 20)

    /// `n` samples spread evenly over median * (1 ± spread), in a shuffled order.
    static func samples(_ median: Double, spread: Double = 0.02, n: Int = 10) -> [Double] {
        let values = (0..<n).map { median * (1 - spread + 2 * spread * Double($0) / Double(n - 1)) }
        return values.enumerated().sorted { ($0.offset * 7) % n < ($1.offset * 7) % n }.map(\.element)
    }

    static func result(_ id: String, _ samples: [Double], impl: KernelImpl = .fused, bound: Double? = 50,
                       unfused: [Double]? = nil) -> BenchCaseResult {
        BenchCaseResult(id: id, label: id, pass: .forward, impl: impl, samples: samples, flops: 1e9, dramBytes: 1e8,
                        boundGflops: bound, unfusedSamples: unfused)
    }

    static func run(_ cases: [BenchCaseResult], machine: BenchMachine = machine) -> BenchRun {
        BenchRun(suite: "synthetic", machine: machine, gitCommit: "abc", date: "2026-01-01T00:00:00Z", cases: cases)
    }

    func verdicts(_ comparison: BenchComparison) -> [String: BenchVerdict] {
        Dictionary(uniqueKeysWithValues: comparison.rows.map { ("\($0.id)/\($0.metric.rawValue)", $0.verdict) })
    }

    // MARK: - Mann-Whitney

    func testMannWhitneyExactSmallExamples() {
        // Fully separated 3 vs 3: only 1 of C(6, 3) = 20 orderings is as extreme.
        XCTAssertEqual(MannWhitney.u([4, 5, 6], [1, 2, 3]), 9)
        XCTAssertEqual(MannWhitney.pGreater([4, 5, 6], [1, 2, 3]), 0.05, accuracy: 1e-12)
        XCTAssertEqual(MannWhitney.pGreater([1, 2, 3], [4, 5, 6]), 1, accuracy: 1e-12)
        // 5 vs 5 separated: 1 / C(10, 5) = 1/252 (scipy: 0.003968253968).
        XCTAssertEqual(MannWhitney.pGreater([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]), 1.0 / 252, accuracy: 1e-12)
        // The null distribution of U for 2 vs 2 is 1,1,2,1,1 over 6 orderings.
        XCTAssertEqual(MannWhitney.exactCounts(2, 2), [1, 1, 2, 1, 1])
    }

    func testMannWhitneyNormalApproximationWithTies() {
        // scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic") -> U 26, p 0.027064514289866587.
        let x: [Double] = [19, 22, 16, 29, 24, 22], y: [Double] = [20, 11, 17, 12, 17]
        XCTAssertEqual(MannWhitney.u(x, y), 26)
        XCTAssertEqual(MannWhitney.pGreater(x, y), 0.027064514289866587, accuracy: 1e-9)
    }

    // MARK: - verdicts

    func testUnchangedRunPasses() {
        let baseline = Self.run([Self.result("a", Self.samples(1.0))])
        let current = Self.run([Self.result("a", Self.samples(1.01))])
        let comparison = BenchComparison(baseline: baseline, current: current)
        XCTAssertTrue(comparison.sameMachine)
        XCTAssertEqual(verdicts(comparison), ["a/time": .ok])
        XCTAssertEqual(comparison.exitCode, .ok)
    }

    func testClearSlowdownIsARegression() {
        let baseline = Self.run([Self.result("a", Self.samples(1.0)), Self.result("b", Self.samples(1.0))])
        let current = Self.run([Self.result("a", Self.samples(1.5)), Self.result("b", Self.samples(1.0))])
        let comparison = BenchComparison(baseline: baseline, current: current)
        XCTAssertEqual(verdicts(comparison), ["a/time": .regression, "b/time": .ok])
        XCTAssertEqual(comparison.exitCode, .regression)
        XCTAssertTrue(comparison.summary.contains("REGRESSION: a (time)"))
        let row = comparison.rows[0]
        XCTAssertEqual(row.change!, 0.5, accuracy: 1e-9)
        XCTAssertLessThan(row.p!, 0.01)
    }

    func testImprovementIsReportedNotAFailure() {
        let baseline = Self.run([Self.result("a", Self.samples(1.0))])
        let current = Self.run([Self.result("a", Self.samples(0.5))])
        let comparison = BenchComparison(baseline: baseline, current: current)
        XCTAssertEqual(verdicts(comparison), ["a/time": .improvement])
        XCTAssertEqual(comparison.exitCode, .ok)
    }

    func testLargeSpreadPastTheThresholdIsNoisyNotARegression() {
        // Medians 20% apart, but the samples interleave: the rank test cannot separate them.
        let baseline = Self.run([Self.result("a", [1.0, 0.5, 1.6, 0.7, 1.3, 2.0, 0.6, 1.1])])
        let current = Self.run([Self.result("a", [1.2, 0.6, 1.9, 0.8, 1.5, 2.2, 0.55, 1.4])])
        let comparison = BenchComparison(baseline: baseline, current: current)
        XCTAssertGreaterThan(comparison.rows[0].change!, 0.1)
        XCTAssertEqual(verdicts(comparison), ["a/time": .noisy])
        XCTAssertEqual(comparison.exitCode, .ok)
    }

    func testTooFewSamplesCannotRegress() {
        // 2 vs 2: the smallest p is 1/6, never below alpha.
        let comparison = BenchComparison(baseline: Self.run([Self.result("a", [1, 1.01])]),
                                         current: Self.run([Self.result("a", [3, 3.01])]))
        XCTAssertEqual(verdicts(comparison), ["a/time": .noisy])
    }

    func testThresholdsComeFromTheCaseOrTheOverride() {
        var loose = Self.result("a", Self.samples(1.3))
        loose.thresholds = BenchThresholds(time: 0.5)
        let baseline = Self.run([Self.result("a", Self.samples(1.0))])
        XCTAssertEqual(verdicts(BenchComparison(baseline: baseline, current: Self.run([loose]))), ["a/time": .ok])
        XCTAssertEqual(verdicts(BenchComparison(baseline: baseline, current: Self.run([loose]), thresholds: BenchThresholds(all: 0.1))),
                       ["a/time": .regression])
    }

    func testMissingAndNewCases() {
        let baseline = Self.run([Self.result("kept", Self.samples(1)), Self.result("gone", Self.samples(1))])
        let current = Self.run([Self.result("kept", Self.samples(1)), Self.result("added", Self.samples(1))])
        let comparison = BenchComparison(baseline: baseline, current: current)
        XCTAssertEqual(verdicts(comparison), ["kept/time": .ok, "added/time": .new, "gone/time": .missing])
        XCTAssertEqual(comparison.exitCode, .ok)
        XCTAssertEqual(comparison.rows.map(\.id), ["kept", "added", "gone"])
    }

    func testAnotherMachineComparesOnlyEfficiencyAndSpeedup() {
        var other = Self.machine
        other.machineID = "other-machine"
        // Twice as slow everywhere on a machine with half the bound: same
        // efficiency, same speedup, so nothing regressed.
        let baseline = Self.run([Self.result("f", Self.samples(1), bound: 50, unfused: Self.samples(3))], machine: other)
        let slower = Self.run([Self.result("f", Self.samples(2), bound: 25, unfused: Self.samples(6))])
        let comparison = BenchComparison(baseline: baseline, current: slower)
        XCTAssertFalse(comparison.sameMachine)
        XCTAssertEqual(verdicts(comparison), ["f/efficiency": .ok, "f/speedup": .ok])
        XCTAssertTrue(comparison.summary.contains("another machine"))
        XCTAssertEqual(comparison.exitCode, .ok)

        // The fused kernel loses its edge: speedup 3x -> 1.5x, efficiency halves.
        let lost = Self.run([Self.result("f", Self.samples(4), bound: 25, unfused: Self.samples(6))])
        let regressed = BenchComparison(baseline: baseline, current: lost)
        XCTAssertEqual(verdicts(regressed), ["f/efficiency": .regression, "f/speedup": .regression])
        XCTAssertEqual(regressed.exitCode, .regression)
    }

    func testCompareModesChooseTheMetrics() {
        let baseline = Self.run([Self.result("f", Self.samples(1), unfused: Self.samples(3))])
        // The machine got twice as slow: time regresses, the in-run speedup does not.
        let slower = Self.run([Self.result("f", Self.samples(2), unfused: Self.samples(6))])
        XCTAssertEqual(verdicts(BenchComparison(baseline: baseline, current: slower)), ["f/time": .regression])
        XCTAssertEqual(verdicts(BenchComparison(baseline: baseline, current: slower, mode: .ratios)),
                       ["f/efficiency": .regression, "f/speedup": .ok])
        let speedupOnly = BenchComparison(baseline: baseline, current: slower, mode: .speedup)
        XCTAssertEqual(verdicts(speedupOnly), ["f/speedup": .ok])
        XCTAssertEqual(speedupOnly.exitCode, .ok)
        XCTAssertTrue(speedupOnly.summary.contains("fused/unfused speedup"))
        // The fused kernel alone got 3x slower (a lost vector path): caught.
        let lost = Self.run([Self.result("f", Self.samples(3), unfused: Self.samples(3))])
        let caught = BenchComparison(baseline: baseline, current: lost, thresholds: BenchThresholds(all: 0.5), mode: .speedup)
        XCTAssertEqual(verdicts(caught), ["f/speedup": .regression])
        XCTAssertEqual(caught.exitCode, .regression)
    }

    func testAnotherMachineWithAnotherISAIsReportedNotGated() {
        var other = Self.machine
        other.machineID = "other-machine"
        let baseline = Self.run([Self.result("f", Self.samples(1), unfused: Self.samples(3))], machine: other)
        var avx2 = Self.machine
        avx2.isa = .avx2
        let current = Self.run([Self.result("f", Self.samples(3), unfused: Self.samples(3))], machine: avx2)
        let comparison = BenchComparison(baseline: baseline, current: current, mode: .speedup)
        XCTAssertEqual(verdicts(comparison), ["f/speedup": .regression])
        XCTAssertFalse(comparison.gated)
        XCTAssertEqual(comparison.exitCode, .ok)
        XCTAssertTrue(comparison.summary.contains("not gated"), comparison.summary)
        // The same hardware forced onto a slower ISA is the same machine: gated.
        let sameHardware = BenchComparison(baseline: Self.run(baseline.cases), current: current, mode: .speedup)
        XCTAssertTrue(sameHardware.gated)
        XCTAssertEqual(sameHardware.exitCode, .regression)
    }

    func testConfirmationKeepsOnlyRepeatedRegressions() {
        let baseline = Self.run([Self.result("a", Self.samples(1)), Self.result("b", Self.samples(1))])
        // Both look 3x slower in the first run (a burst of load)...
        var comparison = BenchComparison(baseline: baseline, current: Self.run([
            Self.result("a", Self.samples(3)), Self.result("b", Self.samples(3))]))
        XCTAssertEqual(Set(comparison.regressedIDs), ["a", "b"])
        // ...the re-measurement clears "a" and confirms "b".
        let recheck = BenchComparison(baseline: baseline, current: Self.run([
            Self.result("a", Self.samples(1.02)), Self.result("b", Self.samples(3))]))
        comparison.confirm(with: recheck)
        XCTAssertEqual(verdicts(comparison), ["a/time": .ok, "b/time": .regression])
        XCTAssertEqual(comparison.rows.map(\.verdictText), ["ok (re-measured)", "regression (confirmed)"])
        XCTAssertEqual(comparison.exitCode, .regression)
        // A re-measurement that clears everything passes the check.
        var cleared = BenchComparison(baseline: baseline, current: Self.run([Self.result("a", Self.samples(3))]))
        cleared.confirm(with: BenchComparison(baseline: baseline, current: Self.run([Self.result("a", Self.samples(1))])))
        XCTAssertEqual(cleared.exitCode, .ok)
        XCTAssertTrue(cleared.table(.text).contains("ok (re-measured)"))
    }

    func testStatisticsOfAResult() {
        let result = Self.result("a", [0.4, 0.1, 0.3, 0.2, 0.5], bound: 20, unfused: [0.8, 0.2, 0.6, 0.4, 1.0])
        XCTAssertEqual(result.median, 0.3, accuracy: 1e-12)
        XCTAssertEqual(result.relativeIQR, (0.4 - 0.2) / 0.3, accuracy: 1e-12)
        XCTAssertEqual(result.gflops, 1e9 / 0.3 / 1e9, accuracy: 1e-9)
        XCTAssertEqual(result.gbs, 1e8 / 0.3 / 1e9, accuracy: 1e-9)
        XCTAssertEqual(result.efficiency!, (1 / 0.3) / 20, accuracy: 1e-9)
        XCTAssertEqual(result.speedup!, 2, accuracy: 1e-12)
        XCTAssertNil(Self.result("b", [1], bound: nil).efficiency)
    }

    // MARK: - documents and exit codes

    func testBaselineRoundTrip() throws {
        let run = Self.run([Self.result("a", Self.samples(1)), Self.result("b", Self.samples(2), impl: .fused, unfused: Self.samples(3))])
        let file = path("baselines/m/proof.json")
        try run.save(path: file)
        XCTAssertEqual(try BenchRun.load(path: file), run)
        XCTAssertEqual(BenchRun.baselinePath(machineID: "m", name: "proof"), "Profiles/baselines/m/proof.json")
        XCTAssertThrowsError(try BenchRun.load(path: path("nope.json"))) { error in
            guard case KernelLabError.io(_, let reason)? = error as? KernelLabError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("no such baseline"))
        }
        try "{}".write(toFile: path("bad.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try BenchRun.load(path: path("bad.json")))
    }

    /// CI's reference baseline (`make bench-ci`) must cover the smoke suite as
    /// it is now, with enough samples for the rank test; a suite edit without
    /// a refreshed baseline fails here rather than silently checking nothing.
    func testCommittedCIBaselineCoversTheSmokeSuite() throws {
        let baselines = packageProfiles.appendingPathComponent("baselines")
        let files = try FileManager.default.subpathsOfDirectory(atPath: baselines.path).filter { $0.hasSuffix("/ci.json") }
        XCTAssertFalse(files.isEmpty, "no Profiles/baselines/<machine-id>/ci.json")
        let suite = try RooflineSuite.load("smoke", directory: packageProfiles.appendingPathComponent("suites").path)
        let expected = suite.runs.map { "\($0.case.label) \($0.pass.rawValue) \($0.impl.rawValue)" }
        for file in files {
            let baseline = try BenchRun.load(path: baselines.appendingPathComponent(file).path)
            XCTAssertEqual(baseline.suite, "smoke", file)
            XCTAssertEqual(baseline.machine.machineID + "/ci.json", file, "a baseline lives under its machine id")
            XCTAssertEqual(baseline.cases.map(\.id), expected, file)
            XCTAssertTrue(baseline.cases.allSatisfy { $0.samples.count >= 8 }, file)
            // Every fused run has its twin's samples, so CI has a speedup to compare.
            XCTAssertTrue(baseline.cases.filter { $0.impl == .fused }.allSatisfy { $0.speedup != nil }, file)
            // Unchanged against itself: the comparison CI runs passes.
            let comparison = BenchComparison(baseline: baseline, current: baseline, mode: .speedup)
            XCTAssertEqual(comparison.rows.count, expected.count / 2)
            XCTAssertEqual(comparison.exitCode, .ok)
            // The suite's floors sit under what the reference machine measured
            // (the baseline's cases carry floors or are checked with the suite's).
            var floored = baseline
            for index in floored.cases.indices {
                let label = floored.cases[index].label
                floored.cases[index].minSpeedup = suite.cases.first { $0.label == label }.map(\.minSpeedup)
            }
            let floors = BenchFloorCheck(run: floored, isa: baseline.machine.hardwareOrRunISA)
            XCTAssertEqual(floors.rows.count, expected.count / 2, file)
            XCTAssertFalse(floors.regressed, "\(file): \(floors.summary)")
        }
    }

    /// A committed baseline of the layers suite (`kernel-lab bench --suite
    /// layers --save-baseline layers`) covers the suite as it is now and
    /// passes against itself, with AdamW's speedup over its floor.
    func testCommittedLayerBaselinesCoverTheLayersSuite() throws {
        let baselines = packageProfiles.appendingPathComponent("baselines")
        let files = try FileManager.default.subpathsOfDirectory(atPath: baselines.path).filter { $0.hasSuffix("/layers.json") }
        XCTAssertFalse(files.isEmpty, "no Profiles/baselines/<machine-id>/layers.json")
        let suite = try RooflineSuite.load("layers", directory: packageProfiles.appendingPathComponent("suites").path)
        for file in files {
            let baseline = try BenchRun.load(path: baselines.appendingPathComponent(file).path)
            XCTAssertEqual(baseline.suite, "layers", file)
            XCTAssertEqual(baseline.cases.map(\.id), suite.runs.map { BenchCaseResult.id($0) }, file)
            XCTAssertTrue(baseline.cases.allSatisfy { $0.samples.count >= 8 }, file)
            XCTAssertEqual(BenchComparison(baseline: baseline, current: baseline).exitCode, .ok)
            let floors = BenchFloorCheck(run: baseline, isa: baseline.machine.hardwareOrRunISA)
            XCTAssertEqual(floors.rows.map(\.id), ["adamw 10240x1024 forward fused"], file)
            XCTAssertFalse(floors.regressed, "\(file): \(floors.summary)")
        }
    }

    // MARK: - floors

    func testSuiteFloorsParsePerISAAndPass() throws {
        let suite = try RooflineSuite(json: Data(#"""
            {"cases": [{"kernel": "scan", "impl": "both", "pass": "both", "batch": 1, "channels": 16, "seq": 8, "state": 2,
                        "min_speedup": {"avx2": {"forward": 2, "backward": 8}, "avx512": 5}}]}
            """#.utf8), name: "floors")
        XCTAssertEqual(suite.cases[0].minSpeedup, ["avx2/forward": 2, "avx2/backward": 8, "avx512": 5])
        for (json, argument) in [
            (#"{"sse9": 2}"#, "cases[0].min_speedup.sse9"),
            (#"{"avx2": 0}"#, "cases[0].min_speedup.avx2"),
            (#"{"avx2": {"sideways": 2}}"#, "cases[0].min_speedup.avx2.sideways"),
            (#"{"avx2": "fast"}"#, "cases[0].min_speedup.avx2"),
        ] {
            let text = #"{"cases": [{"kernel": "scan", "impl": "both", "batch": 1, "channels": 16, "seq": 8, "state": 2, "min_speedup": "#
                + json + "}]}"
            guard case .invalidArgument(let named, _)? = kernelLabError(try RooflineSuite(json: Data(text.utf8), name: "bad")) else {
                XCTFail("\(json) accepted"); continue
            }
            XCTAssertEqual(named, argument)
        }
        // A floor needs the twin it is a ratio over.
        let single = #"{"cases": [{"kernel": "scan", "impl": "fused", "batch": 1, "channels": 16, "seq": 8, "state": 2, "min_speedup": {"avx2": 2}}]}"#
        guard case .invalidArgument("cases[0].min_speedup", _)? = kernelLabError(try RooflineSuite(json: Data(single.utf8), name: "bad")) else {
            return XCTFail("a floor without a twin accepted")
        }
    }

    /// Speedup floors by the hardware's ISA (per pass first), and the vector
    /// gain of each fused run over its scalar path.
    func testFloorsGateOnTheHardwareISA() {
        var fwd = Self.result("k forward fused", Self.samples(1.0), unfused: Self.samples(3.0))
        fwd.minSpeedup = ["avx2/forward": 2.5, "avx2": 4, "avx512": 5]
        var bwd = Self.result("k backward fused", Self.samples(1.0), unfused: Self.samples(3.0))
        bwd.pass = .backward
        bwd.minSpeedup = fwd.minSpeedup
        let run = Self.run([fwd, bwd])
        // avx2 hardware: forward 3x over its 2.5x floor, backward 3x under the 4x one.
        let avx2 = BenchFloorCheck(run: run, isa: .avx2)
        XCTAssertEqual(avx2.rows.map(\.floor), [2.5, 4])
        XCTAssertEqual(avx2.rows.map(\.verdict), [.ok, .regression])
        XCTAssertEqual(avx2.regressedIDs, ["k backward fused"])
        XCTAssertTrue(avx2.summary.contains("UNDER THE FLOOR: k backward fused (speedup)"), avx2.summary)
        // No floor for scalar hardware: nothing applies, nothing fails.
        XCTAssertTrue(BenchFloorCheck(run: run, isa: .scalar).rows.isEmpty)
        // Vector gain: 4x over the scalar path passes, 1.1x (a kernel on the scalar path) fails.
        let gains = BenchFloorCheck(run: run, isa: .scalar, scalarSeconds: ["k forward fused": 4.0, "k backward fused": 1.1])
        XCTAssertEqual(gains.rows.map(\.kind), [.vectorGain, .vectorGain])
        XCTAssertEqual(gains.rows.map(\.verdict), [.ok, .regression])
        XCTAssertEqual(gains.rows[1].value, 1.1, accuracy: 1e-12)
        // A case's own floor (min_vector_gain) replaces the default: 1.1x passes a 1.05x floor.
        var ownFloor = run
        ownFloor.cases[1].minVectorGain = 1.05
        let own = BenchFloorCheck(run: ownFloor, isa: .scalar, scalarSeconds: ["k forward fused": 4.0, "k backward fused": 1.1])
        XCTAssertEqual(own.rows.map(\.floor), [BenchFloorCheck.defaultVectorGainFloor, 1.05])
        XCTAssertFalse(own.regressed)
        // --confirm: a failure the re-measurement does not repeat is ok (re-measured).
        var confirmed = avx2
        var better = run
        better.cases[1].unfusedSamples = Self.samples(5.0)
        confirmed.confirm(with: BenchFloorCheck(run: better, isa: .avx2))
        XCTAssertFalse(confirmed.regressed)
        XCTAssertEqual(confirmed.rows[1].verdictText, "ok (re-measured)")
        XCTAssertTrue(confirmed.table(.markdown).contains("| k backward fused | fused/unfused |"), confirmed.table(.markdown))
    }

    /// Another machine's baseline gates when it ran this hardware's best ISA,
    /// even if this run was forced narrower; --check falls back to one.
    func testSameISABaselineOfOtherHardwareGatesAForcedNarrowerRun() throws {
        let other = BenchMachine(machineID: "other-avx2", cpuModel: "Other", cpuCount: 2, isa: .avx2, threads: 2, hardwareISA: .avx2)
        let baseline = Self.run([Self.result("s forward fused", Self.samples(1.0), unfused: Self.samples(8.0))], machine: other)
        let here = BenchMachine(machineID: "here-avx2", cpuModel: "Here", cpuCount: 2, isa: .scalar, threads: 2, hardwareISA: .avx2)
        let slow = Self.run([Self.result("s forward fused", Self.samples(4.0), unfused: Self.samples(8.0))], machine: here)
        let comparison = BenchComparison(baseline: baseline, current: slow, mode: .speedup)
        XCTAssertTrue(comparison.gated)
        XCTAssertEqual(comparison.exitCode, .regression)

        // Resolution: this hardware's own, else one of another machine that ran its ISA, else none.
        let root = path("baselines")
        try baseline.save(path: root + "/other-avx2/ci.json")
        XCTAssertEqual(try BenchRun.resolveBaseline(name: "ci", machineID: "here-avx2", hardwareISA: .avx2, directory: root),
                       .sameISA(root + "/other-avx2/ci.json"))
        XCTAssertEqual(try BenchRun.resolveBaseline(name: "ci", machineID: "here-avx512", hardwareISA: .avx512, directory: root),
                       .none(root + "/here-avx512/ci.json"))
        try slow.save(path: root + "/here-avx2/ci.json")
        XCTAssertEqual(try BenchRun.resolveBaseline(name: "ci", machineID: "here-avx2", hardwareISA: .avx2, directory: root),
                       .thisMachine(root + "/here-avx2/ci.json"))
    }

    func testExitCodes() {
        XCTAssertEqual(BenchExitCode.ok.rawValue, 0)
        XCTAssertEqual(BenchExitCode.regression.rawValue, 1)
        XCTAssertEqual(BenchExitCode.usage.rawValue, 2)
        let baseline = Self.run([Self.result("a", Self.samples(1))])
        XCTAssertEqual(BenchComparison(baseline: baseline, current: Self.run([Self.result("a", Self.samples(0.5))])).exitCode, .ok)
        XCTAssertEqual(BenchComparison(baseline: baseline, current: Self.run([Self.result("a", Self.samples(2))])).exitCode, .regression)
        XCTAssertEqual(BenchComparison(baseline: baseline, current: Self.run([])).exitCode, .ok)
    }

    func testSuiteThresholdsParseAndOverridePerCase() throws {
        let suite = try RooflineSuite(json: Data("""
            {"thresholds": {"time": 0.25},
             "cases": [
               {"kernel": "scan", "batch": 1, "channels": 8, "seq": 16, "state": 4},
               {"kernel": "scan", "batch": 1, "channels": 8, "seq": 32, "state": 4, "thresholds": {"speedup": 0.4}}]}
            """.utf8), name: "t")
        XCTAssertEqual(suite.thresholds, BenchThresholds(time: 0.25))
        XCTAssertEqual(suite.cases[0].thresholds, BenchThresholds(time: 0.25))
        XCTAssertEqual(suite.cases[1].thresholds, BenchThresholds(time: 0.25, speedup: 0.4))
        XCTAssertThrowsError(try RooflineSuite(json: Data(#"{"thresholds": {"tme": 0.1}, "cases": [{"kernel": "scan", "batch": 1, "channels": 8, "seq": 16, "state": 4}]}"#.utf8), name: "t")) { error in
            XCTAssertEqual((error as? KernelLabError).map { "\($0)" }?.contains("thresholds.tme"), true)
        }
    }

    func testTablesInEveryFormat() {
        let baseline = Self.run([Self.result("a", Self.samples(1))])
        let current = Self.run([Self.result("a, odd", Self.samples(1)), Self.result("a", Self.samples(2))])
        let comparison = BenchComparison(baseline: baseline, current: current)
        XCTAssertTrue(comparison.table(.markdown).contains("| a | time |"))
        XCTAssertTrue(comparison.table(.csv).hasPrefix("case,metric,baseline,current,change,p,threshold,verdict\n\"a, odd\",time"))
        XCTAssertTrue(current.table(.text).contains("IQR/med"))
    }
}
