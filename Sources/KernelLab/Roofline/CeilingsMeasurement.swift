import Foundation

/// How long and how often the ceilings are measured.
public struct CeilingsSettings: Codable, Sendable, Equatable {
    /// The quick preset (for tests and smoke runs): fewer points and trials.
    public var quick: Bool
    /// Thread counts to measure, ascending.
    public var threads: [Int]
    /// Target length of one timed trial of the FLOP and exp kernels.
    public var computeTrialSeconds: Double
    /// Target length of one timed trial of a bandwidth kernel.
    public var bandwidthTrialSeconds: Double
    /// Calibration runs grow until one lasts this long; the trial length is
    /// then extrapolated from its rate.
    public var calibrationSeconds: Double
    /// Timed trials after the (discarded) warm-up trial; the best is kept.
    public var timedTrials: Int
    /// Sweep density: working sets per factor of 2; 0 = one per cache level.
    public var sweepPointsPerOctave: Int
    /// The sweep ends at the first working set of at least this many times L3 in total.
    public var sweepDRAMFactor: Int
    /// n of the n x n reference sgemm.
    public var sgemmSize: Int
    /// Timed sgemm calls (after one warm-up); the median is kept.
    public var sgemmRepeats: Int
    /// Passes of the STREAM-style check (the first is discarded).
    public var streamTrials: Int

    enum CodingKeys: String, CodingKey {
        case quick, threads
        case computeTrialSeconds = "compute_trial_seconds"
        case bandwidthTrialSeconds = "bandwidth_trial_seconds"
        case calibrationSeconds = "calibration_seconds"
        case timedTrials = "timed_trials"
        case sweepPointsPerOctave = "sweep_points_per_octave"
        case sweepDRAMFactor = "sweep_dram_factor"
        case sgemmSize = "sgemm_n"
        case sgemmRepeats = "sgemm_repeats"
        case streamTrials = "stream_trials"
    }

    /// The full measurement on threads 1...`maxThreads`: trials of 0.2 s
    /// (compute) and 0.1 s (bandwidth), best of 3 after a warm-up, one sweep
    /// point per octave up to 8x L3, sgemm n = 2048. About a minute on 2 CPUs.
    public static func full(maxThreads: Int) -> CeilingsSettings {
        CeilingsSettings(
            quick: false, threads: Array(1...max(maxThreads, 1)),
            computeTrialSeconds: 0.2, bandwidthTrialSeconds: 0.1, calibrationSeconds: 0.01,
            timedTrials: 3, sweepPointsPerOctave: 1, sweepDRAMFactor: 8,
            sgemmSize: 2048, sgemmRepeats: 5, streamTrials: 10)
    }

    /// The quick measurement: trials of 20 ms, best of 2 after a warm-up,
    /// one sweep point per level, sgemm n = 1024. Seconds, not a minute.
    public static func quick(maxThreads: Int) -> CeilingsSettings {
        CeilingsSettings(
            quick: true, threads: Array(1...max(maxThreads, 1)),
            computeTrialSeconds: 0.02, bandwidthTrialSeconds: 0.02, calibrationSeconds: 0.004,
            timedTrials: 2, sweepPointsPerOctave: 0, sweepDRAMFactor: 4,
            sgemmSize: 1024, sgemmRepeats: 2, streamTrials: 4)
    }

    /// Checks every field.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming the first bad field.
    public func validate() throws {
        guard !threads.isEmpty, threads.allSatisfy({ (1...ThreadPool.maxThreads).contains($0) }) else {
            throw KernelLabError.invalidArgument(
                argument: "threads", reason: "must be a non-empty list of counts in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        for (name, value) in [("computeTrialSeconds", computeTrialSeconds), ("bandwidthTrialSeconds", bandwidthTrialSeconds),
                              ("calibrationSeconds", calibrationSeconds)] where !(value.isFinite && value > 0) {
            throw KernelLabError.invalidArgument(argument: name, reason: "must be finite and positive, got \(value)")
        }
        for (name, value, minimum) in [("timedTrials", timedTrials, 1), ("sweepPointsPerOctave", sweepPointsPerOctave, 0),
                                       ("sweepDRAMFactor", sweepDRAMFactor, 4), ("sgemmSize", sgemmSize, 1),
                                       ("sgemmRepeats", sgemmRepeats, 1), ("streamTrials", streamTrials, 2)] where value < minimum {
            throw KernelLabError.invalidArgument(argument: name, reason: "must be >= \(minimum), got \(value)")
        }
    }
}

/// The timed runs behind the ceilings. `KernelCeilingMeasurer` calls the
/// C kernels; tests substitute a deterministic fake to check the trial,
/// sweep and reuse logic without timing anything.
public protocol CeilingMeasurer {
    /// One `kl_ceiling_flops` run.
    func flops(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun
    /// One `kl_ceiling_exp` run.
    func exp(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun
    /// One `kl_ceiling_bandwidth` run (`node` nil: arrays local to each thread).
    func bandwidth(isa: ISA, kernel: BandwidthKernel, bytesPerThread: Int, iterations: Int,
                   node: Int?, threads: Int) throws -> CeilingRun
    /// The STREAM-style triad check: its best pass.
    func streamTriadCheck(arrayBytes: Int, trials: Int, threads: Int) throws -> CeilingRun
    /// OpenBLAS sgemm GFLOP/s for n x n (median of `repeats` after a warm-up).
    func sgemmGflops(n: Int, threads: Int, repeats: Int) throws -> Double
}

/// Measures with the C ceiling kernels and OpenBLAS, keeping one thread pool
/// per thread count for the whole measurement.
public final class KernelCeilingMeasurer: CeilingMeasurer {
    private var pools: [Int: ThreadPool] = [:]

    /// Creates a measurer; pools are created on first use.
    public init() {}

    private func pool(_ threads: Int) throws -> ThreadPool {
        if let pool = pools[threads] { return pool }
        let pool = try ThreadPool(threads: threads)
        pools[threads] = pool
        return pool
    }

    public func flops(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun {
        try Ceilings.flops(isa: isa, iterations: iterations, pool: pool(threads))
    }

    public func exp(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun {
        try Ceilings.exp(isa: isa, iterations: iterations, pool: pool(threads))
    }

    public func bandwidth(isa: ISA, kernel: BandwidthKernel, bytesPerThread: Int, iterations: Int,
                          node: Int?, threads: Int) throws -> CeilingRun {
        try Ceilings.bandwidth(isa: isa, kernel: kernel, bytesPerThread: bytesPerThread, iterations: iterations,
                               node: node, pool: pool(threads))
    }

    public func streamTriadCheck(arrayBytes: Int, trials: Int, threads: Int) throws -> CeilingRun {
        try Ceilings.streamTriadCheck(arrayBytes: arrayBytes, trials: trials, pool: pool(threads))
    }

    public func sgemmGflops(n: Int, threads: Int, repeats: Int) throws -> Double {
        try SgemmBenchmark.run(n: n, threads: threads, warmup: 1, repeats: repeats).gflops
    }
}

/// The best of several timed trials of one ceiling kernel.
struct TrialOutcome: Equatable {
    /// Iterations of each timed trial.
    var iterations: Int
    /// Rate (amount per second) of each timed trial, in order.
    var rates: [Double]
    /// The highest rate: interference on a shared machine only slows a run.
    var best: Double { rates.max() ?? 0 }
}

/// Measures every ceiling of this machine and assembles a `MachineProfile`.
///
/// Each ceiling point follows STREAM's rules: calibrate the iteration count
/// so that one trial lasts the target time, run one warm-up trial and
/// discard it, run `timedTrials` more and keep the best. Sgemm runs last,
/// because OpenBLAS's idle threads spin for a while after a call and would
/// steal a core from the next measurement.
public struct CeilingsMeasurement {
    /// Durations, trials and sweep density.
    public var settings: CeilingsSettings
    /// The machine (its caches place the sweep; its ISA runs the bandwidth kernels).
    public var system: SystemInfo
    /// The clock for the profile's date.
    public var now: () -> Date
    /// The monotonic clock for the measurement's own wall time.
    public var monotonicSeconds: () -> Double

    /// Describes a measurement; `run` validates the settings.
    public init(settings: CeilingsSettings, system: SystemInfo, now: @escaping () -> Date = Date.init,
                monotonicSeconds: @escaping () -> Double = Benchmark.monotonicSeconds) {
        self.settings = settings
        self.system = system
        self.now = now
        self.monotonicSeconds = monotonicSeconds
    }

    /// Runs every measurement with `measurer`. `progress`, if given, gets a
    /// line before each group (for a terminal; never part of the profile).
    ///
    /// - Throws: `KernelLabError.invalidArgument` for bad settings; what the
    ///   measurer throws; `KernelLabError.kernel` if a run reports a zero time
    ///   or a non-finite rate.
    public func run(measurer: CeilingMeasurer, progress: ((String) -> Void)? = nil) throws -> MachineProfile {
        try settings.validate()
        var clock = PhaseClock(monotonicSeconds)
        let isa = system.activeISA
        let isas = system.supportedISAs.isEmpty ? [isa] : system.supportedISAs
        let sweep = BandwidthSweep(caches: system.cacheBytes)

        let (peak, exps) = try measureCompute(measurer, isas: isas, progress: progress)
        clock.end("compute")
        // STREAM's rule for its arrays: each at least 4x the last-level cache.
        let streamArrayBytes = 4 * sweep.caches.l3
        var points: [SweepPoint] = []
        var paired: [String: PairedTriad] = [:]
        for threads in settings.threads {
            points += try measureSweep(measurer, isa: isa, sweep: sweep, threads: threads, progress: progress)
            clock.end("sweep")
            paired[String(threads)] = try measurePairedTriad(measurer, isa: isa, arrayBytes: streamArrayBytes,
                                                             threads: threads, progress: progress)
            clock.end("stream_check")
        }
        var bandwidth: [String: [String: [String: Double]]] = [:]
        for (level, kernels) in BandwidthSweep.plateaus(points) {
            for (kernel, byThreads) in kernels {
                for (threads, gbs) in byThreads {
                    bandwidth[level.rawValue, default: [:]][kernel.rawValue, default: [:]][String(threads)] = roundedToFourDigits(gbs)
                }
            }
        }
        let dram = MemoryLevel.dram.rawValue, triad = BandwidthKernel.triad.rawValue
        let sweepTriad = bandwidth[dram]?[triad] ?? [:]
        // The DRAM triad ceiling is the lab kernel's best DRAM-sized rate:
        // the sweep's plateau or its single passes of the paired check,
        // whichever is faster (STREAM's best-of rule over all its trials).
        for (key, pair) in paired {
            bandwidth[dram, default: [:]][triad, default: [:]][key] = max(sweepTriad[key] ?? 0, pair.labBest)
        }
        let streamCheck = MachineProfile.StreamCheck(
            arrayBytes: streamArrayBytes,
            streamTriadGBs: paired.mapValues(\.streamBest), labTriadGBs: paired.mapValues(\.labBest),
            ratio: paired.mapValues { roundedToFourDigits($0.labBest / $0.streamBest) },
            pairedRatioMedian: paired.mapValues(\.medianRatio), sweepTriadGBs: sweepTriad)
        let numa = try measureNuma(measurer, isa: isa, caches: sweep.caches, progress: progress)
        clock.end("numa")
        let sgemm = try measureSgemm(measurer, progress: progress)
        clock.end("sgemm")

        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return MachineProfile(
            version: MachineProfile.formatVersion,
            machineID: MachineProfile.machineID(for: system),
            date: formatter.string(from: now()),
            quick: settings.quick,
            machine: MachineProfile.Machine(system: system, threads: settings.threads),
            settings: settings,
            peakGflops: peak, expPerSecond: exps, bandwidthGBs: bandwidth, sgemmGflops: sgemm,
            streamCheck: streamCheck, numa: numa, sweep: points,
            method: methods(isa: isa, isas: isas, sweep: sweep, streamArrayBytes: streamArrayBytes),
            measurementSeconds: clock.total, phaseSeconds: clock.phases,
            warnings: scalingWarnings(peak: peak[isa.rawValue] ?? [:], isa: isa))
    }

    /// FMA throughput is per core: with T threads on T CPUs the peak must be
    /// close to T times the 1-thread peak. Much less means another process
    /// ran on the CPUs meanwhile, and every multi-thread number is suspect.
    func scalingWarnings(peak: [String: Double], isa: ISA) -> [String] {
        guard let single = peak["1"], single > 0 else { return [] }
        return settings.threads.filter { $0 > 1 && $0 <= system.cpuCount }.compactMap { threads in
            guard let value = peak[String(threads)], value < 0.8 * Double(threads) * single else { return nil }
            return "peak \(isa.rawValue) GFLOP/s on \(threads) threads is " + String(format: "%.2f", value / single)
                + "x the 1-thread value (expected about \(threads)x): another process probably used the CPUs during "
                + "the measurement; measure again on a quiet machine (--remeasure)"
        }
    }

    // MARK: - phases

    /// Peak GFLOP/s and exp/s, each keyed by ISA name and thread count.
    private func measureCompute(_ measurer: CeilingMeasurer, isas: [ISA], progress: ((String) -> Void)?)
        throws -> (peak: [String: [String: Double]], exps: [String: [String: Double]]) {
        var peak: [String: [String: Double]] = [:]
        var exps: [String: [String: Double]] = [:]
        for threads in settings.threads {
            for isa in isas {
                progress?("peak FLOP/s \(isa.rawValue), \(threads) thread(s)")
                let flops = try trials(initialIterations: 20_000, targetSeconds: settings.computeTrialSeconds) {
                    try measurer.flops(isa: isa, iterations: $0, threads: threads)
                }
                peak[isa.rawValue, default: [:]][String(threads)] = roundedToFourDigits(flops.best / 1e9)
                progress?("exp throughput \(isa.rawValue), \(threads) thread(s)")
                let exp = try trials(initialIterations: 64, targetSeconds: settings.computeTrialSeconds) {
                    try measurer.exp(isa: isa, iterations: $0, threads: threads)
                }
                exps[isa.rawValue, default: [:]][String(threads)] = roundedToFourDigits(exp.best)
            }
        }
        return (peak, exps)
    }

    /// Every working set of the sweep for every kernel, on `threads` threads.
    private func measureSweep(_ measurer: CeilingMeasurer, isa: ISA, sweep: BandwidthSweep, threads: Int,
                              progress: ((String) -> Void)?) throws -> [SweepPoint] {
        var points: [SweepPoint] = []
        let sizes = sweep.workingSets(threads: threads, pointsPerOctave: settings.sweepPointsPerOctave,
                                      dramFactor: settings.sweepDRAMFactor)
        for bytes in sizes {
            progress?("bandwidth \(formatBytes(bytes))/thread, \(threads) thread(s)")
            for kernel in BandwidthKernel.allCases {
                let outcome = try bandwidthTrials(measurer, isa: isa, kernel: kernel, bytesPerThread: bytes,
                                                  node: nil, threads: threads)
                points.append(SweepPoint(
                    kernel: kernel, threads: threads, bytesPerThread: bytes, totalBytes: bytes * threads,
                    level: sweep.level(bytesPerThread: bytes, threads: threads),
                    iterations: outcome.iterations, gbs: roundedToFourDigits(outcome.best / 1e9),
                    trialsGBs: outcome.rates.map { roundedToFourDigits($0 / 1e9) }))
            }
        }
        return points
    }

    /// The lab's DRAM triad against the STREAM-style triad under one protocol.
    struct PairedTriad {
        /// Best single pass of the lab kernel, GB/s.
        var labBest: Double
        /// Best single pass of the STREAM-style check, GB/s.
        var streamBest: Double
        /// Median over rounds of lab pass / STREAM pass.
        var medianRatio: Double
    }

    /// The cross-check of the DRAM triad: `streamTrials` rounds, each one
    /// timed pass of the lab triad kernel and one of the STREAM-style loop
    /// (after its discarded first pass) over the same bytes (3 arrays of
    /// `arrayBytes`), in alternating order. DRAM bandwidth of a shared host
    /// drifts by tens of percent within a minute, and a best-of-10 of short
    /// passes beats a best-of-3 of long trials by drift alone, so the two
    /// kernels are compared under one protocol, interleaved.
    private func measurePairedTriad(_ measurer: CeilingMeasurer, isa: ISA, arrayBytes: Int, threads: Int,
                                    progress: ((String) -> Void)?) throws -> PairedTriad {
        progress?("DRAM triad: lab kernel and STREAM-style check, \(settings.streamTrials) interleaved rounds, \(threads) thread(s)")
        let bytesPerThread = (3 * arrayBytes + threads - 1) / threads
        var lab: [Double] = [], stream: [Double] = []
        for round in 0..<settings.streamTrials {
            let labRun = {
                lab.append(try self.finiteRate(try measurer.bandwidth(isa: isa, kernel: .triad, bytesPerThread: bytesPerThread,
                                                                      iterations: 1, node: nil, threads: threads),
                                               "kl_ceiling_bandwidth") / 1e9)
            }
            let streamRun = {
                stream.append(try self.finiteRate(try measurer.streamTriadCheck(arrayBytes: arrayBytes, trials: 2, threads: threads),
                                                  "kl_ceiling_stream_triad_check") / 1e9)
            }
            if round % 2 == 0 {
                try labRun()
                try streamRun()
            } else {
                try streamRun()
                try labRun()
            }
        }
        let ratios = zip(lab, stream).map { $0 / $1 }
        return PairedTriad(labBest: roundedToFourDigits(lab.max() ?? 0), streamBest: roundedToFourDigits(stream.max() ?? 0),
                           medianRatio: roundedToFourDigits(Samples(seconds: ratios).median))
    }

    /// OpenBLAS sgemm GFLOP/s per thread count.
    private func measureSgemm(_ measurer: CeilingMeasurer, progress: ((String) -> Void)?) throws -> [String: Double] {
        var sgemm: [String: Double] = [:]
        for threads in settings.threads {
            progress?("sgemm n=\(settings.sgemmSize), \(threads) thread(s)")
            let gflops = try measurer.sgemmGflops(n: settings.sgemmSize, threads: threads, repeats: settings.sgemmRepeats)
            guard gflops.isFinite, gflops > 0 else {
                throw KernelLabError.kernel(status: .invalidArgument, detail: "sgemm n=\(settings.sgemmSize) reported \(gflops) GFLOP/s")
            }
            sgemm[String(threads)] = roundedToFourDigits(gflops)
        }
        return sgemm
    }

    // MARK: - trials

    /// Calibrates, warms up, and returns `timedTrials` timed trials.
    ///
    /// Calibration starts at `initialIterations` and grows the count until a
    /// run lasts `calibrationSeconds`; the trial count is then its rate
    /// times `targetSeconds` (for the bandwidth kernels this is STREAM's
    /// `iters = target_bytes / working_set` with target_bytes from the
    /// calibrated rate, so every trial lasts about the target whatever level
    /// the working set sits in). The first run of at least half the target
    /// is the warm-up and is discarded: the last calibration run when it was
    /// already that long (a bandwidth run allocates its arrays, which costs
    /// more than the run itself at DRAM sizes), else one more run.
    func trials(initialIterations: Int, targetSeconds: Double,
                _ run: (Int) throws -> CeilingRun) throws -> TrialOutcome {
        let maximumIterations = 1 << 40
        var iterations = max(initialIterations, 1)
        var calibration = try run(iterations)
        while calibration.seconds < settings.calibrationSeconds, iterations < maximumIterations {
            // Grow by the shortfall (at least 2x, at most 1000x per step).
            let factor = calibration.seconds > 0 ? settings.calibrationSeconds * 1.5 / calibration.seconds : 1000
            iterations = min(Int((Double(iterations) * min(max(factor, 2), 1000)).rounded(.up)), maximumIterations)
            calibration = try run(iterations)
        }
        let scaled = Double(iterations) * targetSeconds / max(calibration.seconds, 1e-9)
        let trialIterations = min(max(Int(scaled.rounded(.up)), 1), maximumIterations)
        if calibration.seconds < targetSeconds / 2 {
            _ = try run(trialIterations)  // warm-up: discarded
        }
        var rates: [Double] = []
        for _ in 0..<settings.timedTrials {
            rates.append(try finiteRate(try run(trialIterations), "ceiling run"))
        }
        return TrialOutcome(iterations: trialIterations, rates: rates)
    }

    private func bandwidthTrials(_ measurer: CeilingMeasurer, isa: ISA, kernel: BandwidthKernel, bytesPerThread: Int,
                                 node: Int?, threads: Int) throws -> TrialOutcome {
        // Start from a guess of 16 GB/s per thread (DRAM-like): a DRAM-sized
        // set then needs no further calibration and its first run is the
        // warm-up; cache-sized sets run faster and calibrate once more.
        let guess = settings.bandwidthTrialSeconds * 16e9 / Double(bytesPerThread)
        return try trials(initialIterations: max(1, Int(guess.rounded(.up))), targetSeconds: settings.bandwidthTrialSeconds) {
            try measurer.bandwidth(isa: isa, kernel: kernel, bytesPerThread: bytesPerThread, iterations: $0,
                                   node: node, threads: threads)
        }
    }

    private func finiteRate(_ run: CeilingRun, _ operation: String) throws -> Double {
        guard run.seconds > 0, run.rate.isFinite, run.rate > 0 else {
            throw KernelLabError.kernel(
                status: .invalidArgument,
                detail: "\(operation) reported \(run.amount) in \(run.seconds) s; cannot form a rate")
        }
        return run.rate
    }

    // MARK: - NUMA

    private func measureNuma(_ measurer: CeilingMeasurer, isa: ISA, caches: SystemInfo.CacheSizes,
                             progress: ((String) -> Void)?) throws -> MachineProfile.NumaBandwidth {
        let nodes = max(system.numaNodes, 1)
        guard nodes > 1 else {
            return MachineProfile.NumaBandwidth(
                nodes: nodes, remoteApplicable: false,
                note: "not applicable: 1 NUMA node, all memory is local", localGBs: nil, remoteGBs: nil, byNodeGBs: nil)
        }
        let bytes = 4 * caches.l3
        var local: [String: Double] = [:]
        var remote: [String: Double] = [:]
        var byNode: [String: [String: Double]] = [:]
        for kernel in BandwidthKernel.allCases {
            progress?("NUMA \(kernel.rawValue), local and \(nodes) nodes, 1 thread")
            local[kernel.rawValue] = roundedToFourDigits(try bandwidthTrials(measurer, isa: isa, kernel: kernel, bytesPerThread: bytes,
                                                                 node: nil, threads: 1).best / 1e9)
            for node in 0..<nodes {
                let gbs = roundedToFourDigits(try bandwidthTrials(measurer, isa: isa, kernel: kernel, bytesPerThread: bytes,
                                                      node: node, threads: 1).best / 1e9)
                byNode[String(node), default: [:]][kernel.rawValue] = gbs
                remote[kernel.rawValue] = min(remote[kernel.rawValue] ?? .infinity, gbs)
            }
        }
        return MachineProfile.NumaBandwidth(
            nodes: nodes, remoteApplicable: true,
            note: "1 thread (the caller, unpinned), \(formatBytes(bytes)) of arrays; local: first touch by the thread; "
                + "by node: arrays bound to the node (kl_ceiling_bandwidth's node argument); remote: the slowest node",
            localGBs: local, remoteGBs: remote, byNodeGBs: byNode)
    }

    // MARK: - method notes

    private func methods(isa: ISA, isas: [ISA], sweep: BandwidthSweep, streamArrayBytes: Int) -> [String: String] {
        let s = settings
        let trialRule = "calibrated iterations, 1 warm-up trial discarded, best of \(s.timedTrials) timed trials"
        let caches = sweep.caches
        let cacheNote = "L1 \(formatBytes(caches.l1)), L2 \(formatBytes(caches.l2)), L3 \(formatBytes(caches.l3))"
            + (sweep.usedFallback ? " (a size the system did not report was replaced by a typical one)" : "")
        let density = s.sweepPointsPerOctave > 0
            ? "geometric from \(formatBytes(BandwidthSweep.minimumBytes)) per thread, \(s.sweepPointsPerOctave) per octave, "
                + "up to \(s.sweepDRAMFactor)x L3 in total"
            : "one working set per level (the geometric middle of its region) and \(s.sweepDRAMFactor)x L3 in total for DRAM"
        return [
            "peak_gflops": "kl_ceiling_flops per ISA (\(isas.map(\.rawValue).joined(separator: ", "))): per thread "
                + "independent FMA chains (avx512: 16 zmm, avx2: 12 ymm; scalar: 8 chains of multiply + add), "
                + "2 FLOPs per FMA lane; \(trialRule) of >= \(s.computeTrialSeconds) s; threads start at a barrier, "
                + "the slowest thread's time counts",
            "exp_per_second": "kl_ceiling_exp per ISA: the softmax's vector 2^x over an L1-resident buffer of 4096 floats "
                + "per thread (load, exp, store, sum); \(trialRule) of >= \(s.computeTrialSeconds) s",
            "bandwidth_gbs": "kl_ceiling_bandwidth (\(isa.rawValue) kernels), arrays NUMA-local and first touched by their "
                + "thread; STREAM byte convention: read 4, copy 8, triad 12 bytes per float, write-allocate traffic NOT counted "
                + "(copy and triad move 1.5x and 1.33x the counted bytes through DRAM); plateau = median of the sweep points "
                + "in the level's region (\(cacheNote)): l1 bytes/thread <= L1/2; l2 2 L1 <= bytes/thread <= L2/2; "
                + "l3 bytes/thread >= 2 L2 and total <= L3/2; dram total >= 4 L3",
            "sweep": "working set = all arrays of one thread (read 1, copy 2, triad 3 arrays), \(density); per point "
                + "\(trialRule) of >= \(s.bandwidthTrialSeconds) s; gbs = best trial",
            "sgemm_gflops": "OpenBLAS cblas_sgemm n=\(s.sgemmSize) square, row-major, OpenBLAS threads = thread count, "
                + "1 warm-up then the median of \(s.sgemmRepeats) calls, 2 n^3 FLOPs; measured last (idle OpenBLAS threads spin)",
            "stream_check": "kl_ceiling_stream_triad_check: plain C a[i] = b[i] + s c[i] (baseline ISA, no intrinsics), "
                + "3 arrays of \(formatBytes(streamArrayBytes)) (4x L3) shared by the threads in static slices, first touch "
                + "by the threads, each pass timed on the caller fork/join included, 12 bytes per float. Paired with the lab "
                + "triad kernel over the same bytes: \(s.streamTrials) rounds right after the sweep of the same thread count, "
                + "each one timed lab pass and one STREAM pass (after its discarded first), in alternating order; best pass "
                + "of each kept, ratio = lab best / STREAM best, paired_ratio_median = median of the rounds' ratios. "
                + "The DRAM triad ceiling is the larger of the sweep plateau (sweep_triad_gbs) and the lab's best pass here",
            "numa": system.numaNodes > 1
                ? "kl_ceiling_bandwidth at 4x L3, 1 thread: local (first touch) and bound to each node (node argument); \(trialRule)"
                : "not measured: 1 NUMA node, so there is no remote memory",
        ]
    }
}

/// Wall time per phase of a measurement, so the budget of a full run can be checked.
private struct PhaseClock {
    private let clock: () -> Double
    private let start: Double
    private var phaseStart: Double
    /// Seconds of each ended phase, by name.
    private(set) var phases: [String: Double] = [:]

    init(_ clock: @escaping () -> Double) {
        self.clock = clock
        start = clock()
        phaseStart = start
    }

    /// Ends the running phase, adding its time to `name`, and starts the next.
    mutating func end(_ name: String) {
        let now = clock()
        phases[name] = roundedToFourDigits(phases[name, default: 0] + now - phaseStart)
        phaseStart = now
    }

    /// Seconds from the start to the end of the last phase.
    var total: Double { roundedToFourDigits(phaseStart - start) }
}

/// Rounds to 4 significant digits: measurement noise is far above that, and
/// the stored JSON stays readable and diffable (117.1, not 117.09837412).
func roundedToFourDigits(_ value: Double) -> Double {
    guard value.isFinite else { return value }
    // Through the decimal text, so that JSON prints the short form exactly.
    return Double(String(format: "%.4g", value)) ?? value
}
