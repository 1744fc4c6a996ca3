import Foundation

/// The measured ceilings of one machine: peak FLOP/s per ISA, exp
/// throughput, cache and DRAM bandwidth plateaus, sgemm, with the machine
/// they were measured on and how. Saved as JSON under
/// `Profiles/machines/<machine-id>.json` and reused by later runs on the
/// same machine (see `MachineProfile.loadOrMeasure`).
///
/// Rates are keyed by thread count as a string ("1", "2", ...) so that the
/// JSON reads `{"avx512": {"1": 117.1, "2": 231.0}}`; use the typed
/// accessors (`peakGflops(_:threads:)`, ...) from Swift.
public struct MachineProfile: Codable, Sendable, Equatable {
    /// The JSON layout version; a stored profile of another version is re-measured.
    public static let formatVersion = 1

    /// `formatVersion` when written.
    public var version: Int
    /// `MachineProfile.machineID(for:)` of the machine measured.
    public var machineID: String
    /// When the measurement finished, ISO 8601 (UTC).
    public var date: String
    /// Whether the quick settings were used (fewer sweep points and trials).
    public var quick: Bool
    /// The machine and library configuration.
    public var machine: Machine
    /// How it was measured: durations, trials, sweep density, sizes.
    public var settings: CeilingsSettings
    /// Peak fp32 GFLOP/s: ISA name, then thread count.
    public var peakGflops: [String: [String: Double]]
    /// exp (2^x) evaluations per second: ISA name, then thread count.
    public var expPerSecond: [String: [String: Double]]
    /// Bandwidth plateaus in GB/s (STREAM bytes): level (`l1`, `l2`, `l3`,
    /// `dram`), then kernel (`read`, `copy`, `triad`), then thread count.
    public var bandwidthGBs: [String: [String: [String: Double]]]
    /// OpenBLAS sgemm GFLOP/s (n x n, median): thread count.
    public var sgemmGflops: [String: Double]
    /// The lab's DRAM triad next to an independent STREAM-style triad.
    public var streamCheck: StreamCheck
    /// Local and remote DRAM bandwidth (remote only with several NUMA nodes).
    public var numa: NumaBandwidth
    /// Every point of the bandwidth sweep.
    public var sweep: [SweepPoint]
    /// How each ceiling was measured, keyed like the ceilings
    /// (`peak_gflops`, `exp_per_second`, `bandwidth_gbs`, `sweep`,
    /// `sgemm_gflops`, `stream_check`, `numa`).
    public var method: [String: String]
    /// Wall time of the whole measurement.
    public var measurementSeconds: Double
    /// Wall time of each phase: `compute` (FLOP/s and exp/s), `sweep`,
    /// `stream_check`, `numa`, `sgemm`.
    public var phaseSeconds: [String: Double]
    /// Signs that the measurement was disturbed (e.g. peak FLOP/s not
    /// scaling with threads because another process shared the CPUs); empty
    /// when none.
    public var warnings: [String]

    enum CodingKeys: String, CodingKey {
        case version
        case machineID = "machine_id"
        case date, quick, machine, settings
        case peakGflops = "peak_gflops"
        case expPerSecond = "exp_per_second"
        case bandwidthGBs = "bandwidth_gbs"
        case sgemmGflops = "sgemm_gflops"
        case streamCheck = "stream_check"
        case numa, sweep, method
        case measurementSeconds = "measurement_seconds"
        case phaseSeconds = "phase_seconds"
        case warnings
    }

    /// The machine a profile was measured on.
    public struct Machine: Codable, Sendable, Equatable {
        /// The CPU brand string.
        public var cpuModel: String
        /// Online logical CPUs.
        public var cpuCount: Int
        /// Configured NUMA nodes.
        public var numaNodes: Int
        /// L1 data, L2 and L3 sizes in bytes (0 when unknown).
        public var cacheBytes: SystemInfo.CacheSizes
        /// The ISA paths the CPU can run.
        public var supportedISAs: [ISA]
        /// The ISA of the bandwidth kernels (the kernels' active path).
        public var isa: ISA
        /// The thread counts measured.
        public var threads: [Int]
        /// The Swift compiler that built the measuring code.
        public var compiler: String
        /// OpenBLAS's build configuration.
        public var blasConfig: String
        /// The OpenBLAS core selected at run time.
        public var blasCore: String

        enum CodingKeys: String, CodingKey {
            case cpuModel = "cpu_model"
            case cpuCount = "cpu_count"
            case numaNodes = "numa_nodes"
            case cacheBytes = "cache_bytes"
            case supportedISAs = "supported_isas"
            case isa, threads, compiler
            case blasConfig = "blas_config"
            case blasCore = "blas_core"
        }

        init(system: SystemInfo, threads: [Int]) {
            cpuModel = system.cpuModel
            cpuCount = system.cpuCount
            numaNodes = system.numaNodes
            cacheBytes = system.cacheBytes
            supportedISAs = system.supportedISAs
            isa = system.activeISA
            self.threads = threads
            compiler = MachineProfile.compiler
            blasConfig = system.blasConfig
            blasCore = system.blasCore
        }
    }

    /// The cross-check behind "DRAM triad within 10% of an independent
    /// STREAM-style measurement", per thread count.
    public struct StreamCheck: Codable, Sendable, Equatable {
        /// Bytes of each of the check's three arrays.
        public var arrayBytes: Int
        /// Best pass of `kl_ceiling_stream_triad_check`, GB/s, per thread count.
        public var streamTriadGBs: [String: Double]
        /// Best pass of the lab's triad kernel over the same bytes, interleaved
        /// with the check's passes, GB/s.
        public var labTriadGBs: [String: Double]
        /// `labTriadGBs / streamTriadGBs`.
        public var ratio: [String: Double]
        /// Median over the interleaved rounds of lab pass / check pass (nil
        /// in profiles measured before the check was paired).
        public var pairedRatioMedian: [String: Double]?
        /// The sweep's DRAM triad plateau, GB/s (nil in older profiles).
        public var sweepTriadGBs: [String: Double]?

        /// Creates a check record.
        public init(arrayBytes: Int, streamTriadGBs: [String: Double], labTriadGBs: [String: Double],
                    ratio: [String: Double], pairedRatioMedian: [String: Double]? = nil,
                    sweepTriadGBs: [String: Double]? = nil) {
            self.arrayBytes = arrayBytes
            self.streamTriadGBs = streamTriadGBs
            self.labTriadGBs = labTriadGBs
            self.ratio = ratio
            self.pairedRatioMedian = pairedRatioMedian
            self.sweepTriadGBs = sweepTriadGBs
        }

        enum CodingKeys: String, CodingKey {
            case arrayBytes = "array_bytes"
            case streamTriadGBs = "stream_triad_gbs"
            case labTriadGBs = "lab_triad_gbs"
            case ratio
            case pairedRatioMedian = "paired_ratio_median"
            case sweepTriadGBs = "sweep_triad_gbs"
        }
    }

    /// DRAM bandwidth by NUMA placement, measured with one thread.
    public struct NumaBandwidth: Codable, Sendable, Equatable {
        /// Configured NUMA nodes.
        public var nodes: Int
        /// Whether remote bandwidth exists (more than one node).
        public var remoteApplicable: Bool
        /// Why remote bandwidth is absent, or how it was measured.
        public var note: String
        /// Arrays first touched by the measuring thread: kernel, GB/s.
        public var localGBs: [String: Double]?
        /// The slowest node the arrays were bound to: kernel, GB/s.
        public var remoteGBs: [String: Double]?
        /// Arrays bound to each node: node, then kernel, GB/s.
        public var byNodeGBs: [String: [String: Double]]?

        enum CodingKeys: String, CodingKey {
            case nodes
            case remoteApplicable = "remote_applicable"
            case note
            case localGBs = "local_gbs"
            case remoteGBs = "remote_gbs"
            case byNodeGBs = "by_node_gbs"
        }
    }

    // MARK: - typed access

    /// Peak GFLOP/s of `isa` on `threads` threads, if measured.
    public func peakGflops(_ isa: ISA, threads: Int) -> Double? {
        peakGflops[isa.rawValue]?[String(threads)]
    }

    /// exp evaluations per second of `isa` on `threads` threads, if measured.
    public func expPerSecond(_ isa: ISA, threads: Int) -> Double? {
        expPerSecond[isa.rawValue]?[String(threads)]
    }

    /// The `level` plateau of `kernel` on `threads` threads in GB/s, if measured.
    public func bandwidthGBs(_ level: MemoryLevel, _ kernel: BandwidthKernel, threads: Int) -> Double? {
        bandwidthGBs[level.rawValue]?[kernel.rawValue]?[String(threads)]
    }

    /// OpenBLAS sgemm GFLOP/s on `threads` threads, if measured.
    public func sgemmGflops(threads: Int) -> Double? {
        sgemmGflops[String(threads)]
    }

    // MARK: - identity

    /// A stable slug naming the machine: CPU model, active ISA, CPU count
    /// and cache sizes, e.g. `amd-epyc-avx512-2cpu-l1-32k-l2-1m-l3-32m`. Two
    /// machines with the same id are expected to have the same ceilings.
    public static func machineID(for system: SystemInfo) -> String {
        var model = system.cpuModel.lowercased()
        // Trademark marks and the "@ 2.90GHz" tail say nothing about the part.
        for mark in ["(r)", "(tm)", "(c)"] {
            model = model.replacingOccurrences(of: mark, with: " ")
        }
        if let at = model.firstIndex(of: "@") { model = String(model[..<at]) }
        var slug = ""
        for scalar in model.unicodeScalars {
            if scalar.isASCII, CharacterSet.alphanumerics.contains(scalar) {
                slug.unicodeScalars.append(scalar)
            } else if !slug.isEmpty, slug.last != "-" {
                slug.append("-")
            }
        }
        while slug.last == "-" { slug.removeLast() }
        if slug.isEmpty || slug == "unknown" { slug = "unknown-cpu" }
        let caches = system.cacheBytes
        return "\(slug)-\(system.activeISA.rawValue)-\(system.cpuCount)cpu"
            + "-l1-\(sizeSlug(caches.l1))-l2-\(sizeSlug(caches.l2))-l3-\(sizeSlug(caches.l3))"
    }

    /// `Profiles/machines/<machine-id>.json`, relative to the working directory.
    public static func defaultPath(machineID: String) -> String {
        "Profiles/machines/\(machineID).json"
    }

    /// 32768 -> "32k", 1048576 -> "1m", 1572864 -> "1536k", 0 -> "0".
    private static func sizeSlug(_ bytes: Int) -> String {
        if bytes > 0, bytes % (1 << 20) == 0 { return "\(bytes >> 20)m" }
        if bytes > 0, bytes % (1 << 10) == 0 { return "\(bytes >> 10)k" }
        return "\(max(bytes, 0))"
    }

    /// The compiler of this build (the clang of the C kernels is not visible
    /// from Swift; `blas_config` names OpenBLAS's build).
    static var compiler: String {
        #if compiler(>=6.4)
        "swift >= 6.4"
        #elseif compiler(>=6.3)
        "swift 6.3"
        #elseif compiler(>=6.2)
        "swift 6.2"
        #elseif compiler(>=6.1)
        "swift 6.1"
        #else
        "swift 6.0"
        #endif
    }
}

// MARK: - storage and reuse

/// What `MachineProfile.loadOrMeasure` did.
public enum ProfileDecision: Sendable, Equatable {
    /// The stored profile was used as is.
    case reused
    /// The ceilings were measured (and saved), for `reason`.
    case measured(reason: String)
}

extension MachineProfile {
    /// Why this stored profile cannot stand for a measurement of `machineID`
    /// with `settings`, or nil when it can: same format and machine, at
    /// least the requested thread counts, and not quick when a full
    /// measurement is asked for (a full profile serves a quick request).
    public func mismatch(machineID: String, settings: CeilingsSettings) -> String? {
        if version != MachineProfile.formatVersion {
            return "stored profile has format version \(version), this build writes \(MachineProfile.formatVersion)"
        }
        if self.machineID != machineID {
            return "stored profile is for machine '\(self.machineID)', this machine is '\(machineID)'"
        }
        if quick && !settings.quick {
            return "stored profile was measured with --quick"
        }
        let missing = settings.threads.filter { !self.settings.threads.contains($0) }
        if !missing.isEmpty {
            return "stored profile lacks thread counts \(missing.map(String.init).joined(separator: ", "))"
        }
        return nil
    }

    /// The committed profile of the machine `system` describes
    /// (`Profiles/machines/<machine-id>.json`), or nil when there is none.
    ///
    /// - Throws: as `load(path:)`.
    public static func load(for system: SystemInfo) throws -> MachineProfile? {
        try load(path: defaultPath(machineID: machineID(for: system)))
    }

    /// Reads a profile from `path`, or returns nil when there is no file.
    ///
    /// - Throws: `KernelLabError.io` when the file exists but cannot be read
    ///   or is not a profile.
    public static func load(path: String) throws -> MachineProfile? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw KernelLabError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        do {
            return try JSONDecoder().decode(MachineProfile.self, from: data)
        } catch {
            throw KernelLabError.io(path: path, reason: "not a machine profile: \(error)")
        }
    }

    /// Writes the profile as JSON to `path` whole or not at all (temporary
    /// file and rename), creating missing parent directories.
    ///
    /// - Throws: `KernelLabError.io` when the directory cannot be created or
    ///   the file cannot be written.
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

    /// The profile as one JSON object with sorted keys.
    public func json() throws -> String {
        try encodeJSON(self)
    }

    /// Returns the profile stored at `path` when it fits `machineID` and
    /// `settings` and `remeasure` is false; otherwise calls `measure` and
    /// saves its profile at `path`. A stored file that cannot be read is
    /// measured over (the reason says why).
    ///
    /// - Throws: what `measure` throws; `KernelLabError.io` when saving fails.
    public static func loadOrMeasure(
        path: String, machineID: String, settings: CeilingsSettings, remeasure: Bool,
        measure: () throws -> MachineProfile
    ) throws -> (profile: MachineProfile, decision: ProfileDecision) {
        let reason: String
        if remeasure {
            reason = "--remeasure given"
        } else {
            do {
                if let stored = try load(path: path) {
                    guard let mismatch = stored.mismatch(machineID: machineID, settings: settings) else {
                        return (stored, .reused)
                    }
                    reason = mismatch
                } else {
                    reason = "no profile at '\(path)'"
                }
            } catch let error as KernelLabError {
                reason = error.description
            }
        }
        let profile = try measure()
        try profile.save(path: path)
        return (profile, .measured(reason: reason))
    }
}
