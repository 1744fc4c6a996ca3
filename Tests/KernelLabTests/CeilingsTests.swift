import Foundation
import KernelLab
import XCTest

/// A measurer with made-up, deterministic rates and no real time: each run
/// "lasts" amount / rate seconds. It records every run, and the first
/// full-length run of each series (the warm-up) reports a rate 10x too high,
/// so a warm-up that was not discarded would show in the results.
private final class FakeMeasurer: CeilingMeasurer {
    let settings: CeilingsSettings
    let caches: SystemInfo.CacheSizes
    /// Runs per series key ("flops/avx512/2", "bandwidth/triad/8192/1", ...): iterations and seconds.
    var runs: [String: [(iterations: Int, seconds: Double)]] = [:]
    var streamCalls: [(arrayBytes: Int, trials: Int, threads: Int)] = []
    var sgemmCalls: [Int] = []
    /// Each thread beyond the first adds this fraction of a core's FLOP/s (1: perfect scaling).
    var flopsScaling = 1.0

    init(settings: CeilingsSettings, caches: SystemInfo.CacheSizes) {
        self.settings = settings
        self.caches = caches
    }

    static func gflops(_ isa: ISA) -> Double {
        switch isa {
        case .scalar: 10
        case .avx2: 100
        case .avx512: 200
        }
    }

    /// GB/s per thread of the level a working set falls in.
    func gbsPerThread(bytesPerThread: Int, threads: Int) -> Double {
        if bytesPerThread <= caches.l1 { return 200 }
        if bytesPerThread <= caches.l2 { return 100 }
        if bytesPerThread * threads <= caches.l3 { return 80 }
        return 20
    }

    private func record(_ key: String, iterations: Int, amount: Double, rate: Double, target: Double) -> CeilingRun {
        let seconds = amount / rate
        var series = runs[key, default: []]
        let isWarmup = seconds >= target / 2 && !series.contains { $0.seconds >= target / 2 }
        series.append((iterations, seconds))
        runs[key] = series
        // Same time (calibration reads it), 10x the amount: a 10x rate.
        return CeilingRun(seconds: seconds, amount: isWarmup ? amount * 10 : amount)
    }

    func flops(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun {
        record("flops/\(isa.rawValue)/\(threads)", iterations: iterations, amount: Double(iterations * 512 * threads),
               rate: FakeMeasurer.gflops(isa) * 1e9 * (1 + Double(threads - 1) * flopsScaling),
               target: settings.computeTrialSeconds)
    }

    func exp(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun {
        record("exp/\(isa.rawValue)/\(threads)", iterations: iterations, amount: Double(iterations * 4096 * threads),
               rate: FakeMeasurer.gflops(isa) * 1e8 * Double(threads), target: settings.computeTrialSeconds)
    }

    func bandwidth(isa: ISA, kernel: BandwidthKernel, bytesPerThread: Int, iterations: Int,
                   node: Int?, threads: Int) throws -> CeilingRun {
        let gbs = gbsPerThread(bytesPerThread: bytesPerThread, threads: threads) * Double(threads)
        return record("bandwidth/\(kernel.rawValue)/\(bytesPerThread)/\(threads)", iterations: iterations,
                      amount: Double(bytesPerThread * threads) * Double(iterations), rate: gbs * 1e9,
                      target: settings.bandwidthTrialSeconds)
    }

    func streamTriadCheck(arrayBytes: Int, trials: Int, threads: Int) throws -> CeilingRun {
        streamCalls.append((arrayBytes, trials, threads))
        return CeilingRun(seconds: 1, amount: 25e9 * Double(threads))  // 25 GB/s per thread
    }

    func sgemmGflops(n: Int, threads: Int, repeats: Int) throws -> Double {
        sgemmCalls.append(threads)
        return 150 * Double(threads)
    }
}

/// A fixed clock for the profile's date and a monotonic clock that advances
/// one second per reading: nothing in these tests depends on real time.
private func fakeMeasurement(_ settings: CeilingsSettings, system: SystemInfo) -> CeilingsMeasurement {
    var tick = 0.0
    return CeilingsMeasurement(settings: settings, system: system,
                               now: { Date(timeIntervalSince1970: 1_800_000_000) },
                               monotonicSeconds: { tick += 1; return tick })
}

/// This machine's facts with made-up, fixed CPU and caches, so the tests do
/// not depend on the machine they run on.
private func fakeSystem(cpuModel: String = "AMD EPYC 9654 96-Core Processor", cpus: Int = 2,
                        l1: Int = 32 << 10, l2: Int = 1 << 20, l3: Int = 32 << 20) throws -> SystemInfo {
    var system = try SystemInfo.current()
    system.cpuModel = cpuModel
    system.cpuCount = cpus
    system.numaNodes = 1
    system.activeISA = .avx512
    system.supportedISAs = [.scalar, .avx2, .avx512]
    system.cacheBytes = SystemInfo.CacheSizes(l1: l1, l2: l2, l3: l3)
    return system
}

final class CeilingsTests: TemporaryDirectoryTestCase {
    private func fakeProfile(_ settings: CeilingsSettings = .full(maxThreads: 2), system: SystemInfo? = nil) throws -> MachineProfile {
        let system = try system ?? fakeSystem()
        return try fakeMeasurement(settings, system: system)
            .run(measurer: FakeMeasurer(settings: settings, caches: system.cacheBytes))
    }

    // MARK: - the real kernels, once

    /// The quick measurement on this machine: required keys, sane relations,
    /// positive finite values, a JSON round trip. No time is asserted.
    func testQuickMeasurementOnThisMachine() throws {
        let system = try SystemInfo.current()
        let settings = CeilingsSettings.quick(maxThreads: min(SystemInfo.cpuCount, 2))
        let profilePath = path("profile.json")
        let (profile, decision) = try MachineProfile.loadOrMeasure(
            path: profilePath, machineID: MachineProfile.machineID(for: system), settings: settings, remeasure: false
        ) {
            try CeilingsMeasurement(settings: settings, system: system).run(measurer: KernelCeilingMeasurer())
        }
        XCTAssertEqual(decision, .measured(reason: "no profile at '\(profilePath)'"))
        XCTAssertTrue(profile.quick)

        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(profile.json().utf8)) as? [String: Any])
        for key in ["peak_gflops", "exp_per_second", "bandwidth_gbs", "sgemm_gflops", "machine", "sweep", "method",
                    "stream_check", "numa", "machine_id", "date"] {
            XCTAssertNotNil(object[key], "missing \(key)")
        }
        let machine = try XCTUnwrap(object["machine"] as? [String: Any])
        for key in ["cpu_model", "cache_bytes", "isa", "threads", "supported_isas", "blas_config", "blas_core"] {
            XCTAssertNotNil(machine[key], "machine lacks \(key)")
        }
        let bandwidth = try XCTUnwrap(object["bandwidth_gbs"] as? [String: [String: [String: Double]]])
        XCTAssertNotNil(bandwidth["l1"])
        XCTAssertNotNil(bandwidth["dram"])

        // Every number is positive and finite.
        func numbers(_ value: Any) -> [Double] {
            switch value {
            case let d as Double: [d]
            case let a as [Any]: a.flatMap(numbers)
            case let o as [String: Any]: o.values.flatMap(numbers)
            default: []
            }
        }
        for key in ["peak_gflops", "exp_per_second", "bandwidth_gbs", "sgemm_gflops", "stream_check"] {
            let values = numbers(object[key]!)
            XCTAssertFalse(values.isEmpty, key)
            XCTAssertTrue(values.allSatisfy { $0.isFinite && $0 > 0 }, "\(key): \(values)")
        }

        let best = ISA.supported.last ?? .scalar
        for threads in settings.threads {
            let key = String(threads)
            XCTAssertNotNil(profile.sgemmGflops(threads: threads))
            XCTAssertNotNil(profile.streamCheck.streamTriadGBs[key])
            // Every ISA's peak and every kernel's bandwidth at L1 and DRAM are
            // there. No measured relation is asserted: even "L1 beats DRAM"
            // fails for the scalar read loop on a scalar-only host (one load
            // a cycle sustains DRAM's rate), and tests assert no time.
            XCTAssertNotNil(profile.peakGflops(best, threads: threads))
            XCTAssertNotNil(profile.peakGflops(.scalar, threads: threads))
            for kernel in BandwidthKernel.allCases {
                XCTAssertNotNil(profile.bandwidthGBs(.l1, kernel, threads: threads), "\(kernel) T=\(threads)")
                XCTAssertNotNil(profile.bandwidthGBs(.dram, kernel, threads: threads), "\(kernel) T=\(threads)")
            }
            for level in MemoryLevel.allCases where profile.sweep.contains(where: { $0.level == level && $0.threads == threads }) {
                XCTAssertNotNil(profile.bandwidthGBs(level, .triad, threads: threads), "\(level) T=\(threads)")
            }
        }
        XCTAssertEqual(try XCTUnwrap(MachineProfile.load(path: profilePath)), profile)
        XCTAssertTrue(profile.table().contains("triad (lab kernel) vs STREAM-style check"))
    }

    // MARK: - measurement logic, with a fake measurer

    func testTrialsCalibrateDiscardTheWarmupAndKeepTheBest() throws {
        let settings = CeilingsSettings.full(maxThreads: 2)
        let system = try fakeSystem()
        let fake = FakeMeasurer(settings: settings, caches: system.cacheBytes)
        let profile = try fakeMeasurement(settings, system: system).run(measurer: fake)

        // The DRAM cross-check's single passes (3 arrays of 4x L3) are not calibrated trials.
        let l3 = system.cacheBytes.l3
        let pairedKeys = Set([1, 2].map { "bandwidth/triad/\((12 * l3 + $0 - 1) / $0)/\($0)" })
        for (key, series) in fake.runs where !pairedKeys.contains(key) {
            let target = key.hasPrefix("bandwidth") ? settings.bandwidthTrialSeconds : settings.computeTrialSeconds
            let full = series.filter { $0.seconds >= target / 2 }
            // Calibration runs, then one warm-up (at least half the target; the
            // last calibration run when it was that long), then the timed
            // trials, all of one length >= the target.
            XCTAssertEqual(full.count, 1 + settings.timedTrials, key)
            let timed = series.suffix(settings.timedTrials)
            XCTAssertEqual(Set(timed.map { $0.iterations }).count, 1, key)
            XCTAssertTrue(timed.allSatisfy { $0.seconds >= target * 0.999 }, key)
            XCTAssertTrue(series.prefix(series.count - full.count).allSatisfy { $0.seconds < target / 2 }, key)
        }
        // DRAM-sized sets start near full length, so their first run is the warm-up.
        XCTAssertTrue(fake.runs.contains { $0.key.hasPrefix("bandwidth/") && $0.value.count == 1 + settings.timedTrials })
        // The fake's true rates come back: the 10x warm-up was discarded.
        for isa in ISA.allCases {
            for threads in [1, 2] {
                XCTAssertEqual(profile.peakGflops(isa, threads: threads), FakeMeasurer.gflops(isa) * Double(threads), "\(isa)")
                XCTAssertEqual(profile.expPerSecond(isa, threads: threads), FakeMeasurer.gflops(isa) * 1e8 * Double(threads))
            }
            XCTAssertGreaterThan(try XCTUnwrap(profile.peakGflops(.avx512, threads: 1)), try XCTUnwrap(profile.peakGflops(.scalar, threads: 1)))
        }
        XCTAssertEqual(profile.sgemmGflops, ["1": 150, "2": 300])
        XCTAssertEqual(profile.warnings, [], "the fake's peak scales with threads")
        XCTAssertEqual(fake.sgemmCalls, [1, 2])
        XCTAssertEqual(profile.date, "2027-01-15T08:00:00Z")
        // The fake monotonic clock advances 1 s per reading: start, then one
        // reading per phase, sweep and check alternating per thread count.
        XCTAssertEqual(profile.phaseSeconds, ["compute": 1, "sweep": 2, "stream_check": 2, "numa": 1, "sgemm": 1])
        XCTAssertEqual(profile.measurementSeconds, 7)
    }

    func testSweepCoversEveryLevelAndPlateausAreMedians() throws {
        let settings = CeilingsSettings.full(maxThreads: 2)
        let system = try fakeSystem()
        let fake = FakeMeasurer(settings: settings, caches: system.cacheBytes)
        let profile = try fakeMeasurement(settings, system: system).run(measurer: fake)
        let l3 = system.cacheBytes.l3

        for threads in [1, 2] {
            let sizes = Array(Set(profile.sweep.filter { $0.threads == threads }.map(\.bytesPerThread))).sorted()
            XCTAssertEqual(sizes.first, 8 << 10)
            // One point per octave, up to at least 4x (here 8x) L3 in total.
            XCTAssertEqual(zip(sizes, sizes.dropFirst()).map { $1 / $0 }, Array(repeating: 2, count: sizes.count - 1))
            XCTAssertGreaterThanOrEqual(sizes.last! * threads, 8 * l3)
            for kernel in BandwidthKernel.allCases {
                XCTAssertEqual(profile.sweep.filter { $0.threads == threads && $0.kernel == kernel }.count, sizes.count)
                let t = Double(threads)
                XCTAssertEqual(profile.bandwidthGBs(.l1, kernel, threads: threads), 200 * t)
                XCTAssertEqual(profile.bandwidthGBs(.l2, kernel, threads: threads), 100 * t)
                XCTAssertEqual(profile.bandwidthGBs(.l3, kernel, threads: threads), 80 * t)
                XCTAssertEqual(profile.bandwidthGBs(.dram, kernel, threads: threads), 20 * t)
            }
            // DRAM points have at least 4x L3 in total; transitions belong to no level.
            for point in profile.sweep where point.threads == threads {
                if point.level == .dram { XCTAssertGreaterThanOrEqual(point.totalBytes, 4 * l3) }
                if point.bytesPerThread == 32 << 10 { XCTAssertNil(point.level) }
                XCTAssertEqual(point.trialsGBs.count, settings.timedTrials)
            }
            // Paired check: the lab's single passes over 3 arrays of 4x L3 (20 GB/s
            // a thread) against the check's 25; the ceiling keeps the faster of
            // the sweep plateau and those passes.
            let key = String(threads)
            XCTAssertEqual(profile.streamCheck.streamTriadGBs[key], 25 * Double(threads))
            XCTAssertEqual(profile.streamCheck.labTriadGBs[key], 20 * Double(threads))
            XCTAssertEqual(profile.streamCheck.ratio[key], 0.8)
            XCTAssertEqual(profile.streamCheck.pairedRatioMedian?[key], 0.8)
            XCTAssertEqual(profile.streamCheck.sweepTriadGBs?[key], 20 * Double(threads))
            let passes = try XCTUnwrap(fake.runs["bandwidth/triad/\((12 * l3 + threads - 1) / threads)/\(threads)"])
            XCTAssertEqual(passes.map(\.iterations), Array(repeating: 1, count: settings.streamTrials))
        }
        // Each round: one timed pass after the check's discarded first.
        XCTAssertEqual(fake.streamCalls.map { $0.arrayBytes }, Array(repeating: 4 * l3, count: 2 * settings.streamTrials))
        XCTAssertEqual(Set(fake.streamCalls.map { $0.trials }), [2])
        XCTAssertEqual(fake.streamCalls.map { $0.threads }, Array(repeating: 1, count: settings.streamTrials)
                       + Array(repeating: 2, count: settings.streamTrials))
        XCTAssertFalse(profile.numa.remoteApplicable)
        XCTAssertTrue(profile.numa.note.contains("not applicable"))
        XCTAssertTrue(try XCTUnwrap(profile.method["bandwidth_gbs"]).contains("write-allocate"))

        // Plateaus are medians: one disturbed point does not move them.
        var points = profile.sweep.filter { $0.threads == 1 && $0.kernel == .read && $0.level == .l2 }
        XCTAssertGreaterThanOrEqual(points.count, 3)
        points[0].gbs = 1
        XCTAssertEqual(BandwidthSweep.plateaus(points)[.l2]?[.read]?[1], 100)
    }

    func testPeakThatDoesNotScaleWithThreadsIsFlagged() throws {
        let settings = CeilingsSettings.quick(maxThreads: 2)
        let system = try fakeSystem()
        let fake = FakeMeasurer(settings: settings, caches: system.cacheBytes)
        fake.flopsScaling = 0.2
        let profile = try fakeMeasurement(settings, system: system).run(measurer: fake)
        XCTAssertEqual(profile.warnings.count, 1)
        XCTAssertTrue(profile.warnings[0].hasPrefix("peak avx512 GFLOP/s on 2 threads is 1.20x the 1-thread value"),
                      profile.warnings[0])
        XCTAssertTrue(profile.table().contains("warning: peak avx512"))
    }

    func testQuickSweepHasOnePointPerLevel() throws {
        let sweep = BandwidthSweep(caches: SystemInfo.CacheSizes(l1: 32 << 10, l2: 1 << 20, l3: 32 << 20))
        for threads in [1, 2] {
            let sizes = sweep.workingSets(threads: threads, pointsPerOctave: 0, dramFactor: 4)
            XCTAssertEqual(sizes.map { sweep.level(bytesPerThread: $0, threads: threads) }, [.l1, .l2, .l3, .dram], "\(sizes)")
        }
        // With many threads the L3 region vanishes (2 L2 per thread > L3/2 in total); the point is left out.
        let many = sweep.workingSets(threads: 32, pointsPerOctave: 0, dramFactor: 4)
        XCTAssertEqual(many.map { sweep.level(bytesPerThread: $0, threads: 32) }, [.l1, .l2, .dram])
        // Unknown cache sizes fall back to typical ones, and say so.
        let unknown = BandwidthSweep(caches: SystemInfo.CacheSizes(l1: 0, l2: 0, l3: 0))
        XCTAssertTrue(unknown.usedFallback)
        XCTAssertEqual(unknown.caches, BandwidthSweep.fallbackCaches)
    }

    // MARK: - the profile

    func testProfileRoundTripsThroughJSON() throws {
        let profile = try fakeProfile()
        let data = Data(try profile.json().utf8)
        XCTAssertEqual(try JSONDecoder().decode(MachineProfile.self, from: data), profile)

        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let peak = try XCTUnwrap(object["peak_gflops"] as? [String: [String: Double]])
        XCTAssertEqual(peak["avx512"], ["1": 200, "2": 400])
        let bandwidth = try XCTUnwrap(object["bandwidth_gbs"] as? [String: [String: [String: Double]]])
        XCTAssertEqual(Set(bandwidth.keys), ["l1", "l2", "l3", "dram"])
        XCTAssertEqual(bandwidth["dram"]?["triad"], ["1": 20, "2": 40])
        XCTAssertEqual(object["sgemm_gflops"] as? [String: Double], ["1": 150, "2": 300])
        let method = try XCTUnwrap(object["method"] as? [String: String])
        XCTAssertTrue(Set(method.keys).isSuperset(of: ["peak_gflops", "exp_per_second", "bandwidth_gbs", "sweep",
                                                       "sgemm_gflops", "stream_check", "numa"]))
        let sweep = try XCTUnwrap(object["sweep"] as? [[String: Any]])
        XCTAssertEqual(sweep.count, profile.sweep.count)
        XCTAssertNotNil(sweep.first?["bytes_per_thread"] as? Int)

        // Saved whole, parent directories created, no temporary file left behind.
        let file = path("machines/nested/profile.json")
        try profile.save(path: file)
        XCTAssertEqual(try MachineProfile.load(path: file), profile)
        try profile.save(path: file)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("machines/nested")), ["profile.json"])
        XCTAssertNil(try MachineProfile.load(path: path("absent.json")))
    }

    func testMachineIDIsStableAndNamesTheMachine() throws {
        let system = try fakeSystem()
        let id = MachineProfile.machineID(for: system)
        XCTAssertEqual(id, "amd-epyc-9654-96-core-processor-avx512-2cpu-l1-32k-l2-1m-l3-32m")
        XCTAssertEqual(MachineProfile.machineID(for: try fakeSystem()), id)
        XCTAssertEqual(MachineProfile.machineID(for: try fakeSystem(cpuModel: "AMD EPYC")), "amd-epyc-avx512-2cpu-l1-32k-l2-1m-l3-32m")
        XCTAssertEqual(MachineProfile.machineID(for: try fakeSystem(cpuModel: "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", l2: 1280 << 10)),
                       "intel-xeon-platinum-8375c-cpu-avx512-2cpu-l1-32k-l2-1280k-l3-32m")
        XCTAssertEqual(MachineProfile.machineID(for: try fakeSystem(cpuModel: "", l3: 0)), "unknown-cpu-avx512-2cpu-l1-32k-l2-1m-l3-0")
        // Anything that changes the ceilings changes the id.
        var other = system
        other.activeISA = .avx2
        let variants = [other, try fakeSystem(cpus: 4), try fakeSystem(l3: 16 << 20)]
        XCTAssertEqual(Set(([system] + variants).map(MachineProfile.machineID(for:))).count, 4)
        // The current machine's id is a slug, the same on every call.
        let current = MachineProfile.machineID(for: try SystemInfo.current())
        XCTAssertEqual(current, MachineProfile.machineID(for: try SystemInfo.current()))
        XCTAssertTrue(current.allSatisfy { $0.isLetter && $0.isLowercase || $0.isNumber || $0 == "-" }, current)
        XCTAssertEqual(MachineProfile.defaultPath(machineID: current), "Profiles/machines/\(current).json")
    }

    func testReuseOrRemeasure() throws {
        let file = path("profile.json")
        let system = try fakeSystem()
        let id = MachineProfile.machineID(for: system)
        let full = CeilingsSettings.full(maxThreads: 2)
        var measured = 0
        func run(_ settings: CeilingsSettings, machineID: String = id, remeasure: Bool = false) throws -> ProfileDecision {
            let (_, decision) = try MachineProfile.loadOrMeasure(
                path: file, machineID: machineID, settings: settings, remeasure: remeasure
            ) {
                measured += 1
                return try fakeProfile(settings, system: system)
            }
            return decision
        }

        XCTAssertEqual(try run(full), .measured(reason: "no profile at '\(file)'"))
        XCTAssertEqual(measured, 1)
        XCTAssertEqual(try run(full), .reused)
        XCTAssertEqual(try run(.quick(maxThreads: 2)), .reused, "a full profile serves a quick request")
        XCTAssertEqual(try run(.full(maxThreads: 1)), .reused, "fewer threads than stored")
        XCTAssertEqual(measured, 1)

        XCTAssertEqual(try run(full, remeasure: true), .measured(reason: "--remeasure given"))
        XCTAssertEqual(try run(.full(maxThreads: 4)), .measured(reason: "stored profile lacks thread counts 3, 4"))
        XCTAssertEqual(try run(full, machineID: "other-machine"),
                       .measured(reason: "stored profile is for machine '\(id)', this machine is 'other-machine'"))
        XCTAssertEqual(measured, 4)

        // A quick profile does not serve a full request.
        XCTAssertEqual(try run(.quick(maxThreads: 2), remeasure: true), .measured(reason: "--remeasure given"))
        XCTAssertEqual(try run(full), .measured(reason: "stored profile was measured with --quick"))
        XCTAssertEqual(measured, 6)

        // An unreadable file is measured over.
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: file))
        guard case .measured(let reason) = try run(full) else { return XCTFail("expected a measurement") }
        XCTAssertTrue(reason.contains("not a machine profile"), reason)
        XCTAssertEqual(try run(full), .reused)
        XCTAssertEqual(measured, 7)

        // A failed measurement leaves the stored profile alone.
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        struct Failure: Error {}
        XCTAssertThrowsError(try MachineProfile.loadOrMeasure(path: file, machineID: id, settings: full, remeasure: true) {
            throw Failure()
        })
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)), before)
    }

    // MARK: - arguments

    func testBadArgumentsAreNamed() throws {
        let pool = try ThreadPool(threads: 1)
        let isa = try ISA.active
        XCTAssertThrows(.invalidArgument(argument: "iterations", reason: "must be >= 1, got 0"),
                        try Ceilings.flops(isa: isa, iterations: 0, pool: pool))
        XCTAssertThrows(.invalidArgument(argument: "bytesPerThread", reason: "must be >= 256, got 8"),
                        try Ceilings.bandwidth(isa: isa, kernel: .read, bytesPerThread: 8, iterations: 1, pool: pool))
        XCTAssertThrows(.invalidArgument(argument: "node", reason: "must be in 0..<\(try SystemInfo.current().numaNodes), got 99"),
                        try Ceilings.bandwidth(isa: isa, kernel: .read, bytesPerThread: 4096, iterations: 1, node: 99, pool: pool))
        XCTAssertThrows(.invalidArgument(argument: "trials", reason: "must be >= 2 (the first is discarded), got 1"),
                        try Ceilings.streamTriadCheck(trials: 1, pool: pool))
        XCTAssertThrows(.invalidArgument(argument: "arrayBytes", reason: "must be >= 4096, got 100"),
                        try Ceilings.streamTriadCheck(arrayBytes: 100, pool: pool))

        var settings = CeilingsSettings.quick(maxThreads: 1)
        settings.timedTrials = 0
        XCTAssertThrows(.invalidArgument(argument: "timedTrials", reason: "must be >= 1, got 0"), try settings.validate())
        settings = .quick(maxThreads: 1)
        settings.threads = []
        guard case .invalidArgument(let argument, _)? = kernelLabError(try settings.validate()) else {
            return XCTFail("expected invalidArgument")
        }
        XCTAssertEqual(argument, "threads")
        settings = .quick(maxThreads: 1)
        settings.bandwidthTrialSeconds = .nan
        XCTAssertThrows(.invalidArgument(argument: "bandwidthTrialSeconds", reason: "must be finite and positive, got nan"),
                        try settings.validate())
    }

    // MARK: - the executable

    /// `kernel-lab ceilings` reuses a stored profile for this machine (so no
    /// measurement runs here) and prints it as one JSON object or as tables.
    func testExecutableReusesTheStoredProfile() throws {
        let system = try SystemInfo.current()
        let threads = min(SystemInfo.cpuCount, ThreadPool.maxThreads)
        let stored = try fakeProfile(.quick(maxThreads: threads), system: system)
        let file = path("machine.json")
        try stored.save(path: file)

        let json = try launchKernelLab(["ceilings", "--quick", "--json", "--out", file])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertEqual(try JSONDecoder().decode(MachineProfile.self, from: Data(json.stdout.utf8)), stored)

        let text = try launchKernelLab(["ceilings", "--quick", "--out", file])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("reused \(file)"), text.stdout)
        XCTAssertTrue(text.stdout.contains("triad (lab kernel) vs STREAM-style check"), text.stdout)
        XCTAssertTrue(text.stdout.contains("write-allocate traffic not counted"), text.stdout)

        let bad = try launchKernelLab(["ceilings", "--threads", "0", "--out", file])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--threads"), bad.stderr)
    }
}
