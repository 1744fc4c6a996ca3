import Foundation

// The roofline's view of a machine: the ceilings it needs, at one thread
// count, and the arithmetic that turns a kernel's cost into its bound.
//
// The ceilings are measured elsewhere (`kernel-lab ceilings`, the machine
// profile); this file only states what the report needs from them, as the
// `RooflineCeilingProvider` protocol, so the report does not depend on how
// or where the profile is stored.

/// What a roofline report says about the machine it ran on.
public struct RooflineMachine: Codable, Sendable, Equatable {
    /// The CPU brand string.
    public var cpuModel: String
    /// Online logical CPUs.
    public var cpuCount: Int
    /// NUMA nodes.
    public var numaNodes: Int
    /// L1 data, L2 and L3 cache sizes in bytes (0 when unknown).
    public var cacheBytes: SystemInfo.CacheSizes
    /// The ISA paths the CPU can run.
    public var supportedISAs: [ISA]
    /// OpenBLAS's core, when known.
    public var blasCore: String?

    /// Creates a description.
    public init(cpuModel: String, cpuCount: Int, numaNodes: Int = 1, l1Bytes: Int, l2Bytes: Int, l3Bytes: Int,
                supportedISAs: [ISA], blasCore: String? = nil) {
        self.cpuModel = cpuModel
        self.cpuCount = cpuCount
        self.numaNodes = numaNodes
        cacheBytes = SystemInfo.CacheSizes(l1: l1Bytes, l2: l2Bytes, l3: l3Bytes)
        self.supportedISAs = supportedISAs
        self.blasCore = blasCore
    }

    /// The machine this process runs on.
    public init(_ info: SystemInfo) {
        self.init(cpuModel: info.cpuModel, cpuCount: info.cpuCount, numaNodes: info.numaNodes,
                  l1Bytes: info.cacheBytes.l1, l2Bytes: info.cacheBytes.l2, l3Bytes: info.cacheBytes.l3,
                  supportedISAs: info.supportedISAs, blasCore: info.blasCore.isEmpty ? nil : info.blasCore)
    }

    enum CodingKeys: String, CodingKey {
        case cpuModel = "cpu_model"
        case cpuCount = "cpu_count"
        case numaNodes = "numa_nodes"
        case cacheBytes = "cache_bytes"
        case supportedISAs = "supported_isas"
        case blasCore = "blas_core"
    }
}

/// The measured ceilings of one machine at one thread count: everything a
/// roofline needs to bound a kernel. Rates are totals over all threads.
///
/// Keys are strings in the JSON (ISA and level names) so the file stays
/// readable: `{"peak_gflops": {"avx512": 230.1}, "bandwidth_gbs": {"dram": {"read": 41.2}}}`.
public struct RooflineCeilings: Codable, Sendable, Equatable {
    /// The thread count of every figure below.
    public var threads: Int
    /// Peak FMA GFLOP/s per ISA name.
    public var peakGflops: [String: Double]
    /// exp evaluations per second per ISA name (the softmax's vector exp).
    public var expPerSecond: [String: Double]
    /// GB/s per memory level name, then per bandwidth kernel name.
    public var bandwidthGBs: [String: [String: Double]]
    /// OpenBLAS sgemm GFLOP/s (a reference, not a roof), when measured.
    public var sgemmGflops: Double?

    /// Creates ceilings for `threads` threads.
    public init(threads: Int, peakGflops: [ISA: Double], expPerSecond: [ISA: Double],
                bandwidthGBs: [MemoryLevel: [BandwidthKernel: Double]], sgemmGflops: Double? = nil) {
        self.threads = threads
        self.peakGflops = Dictionary(uniqueKeysWithValues: peakGflops.map { ($0.key.rawValue, $0.value) })
        self.expPerSecond = Dictionary(uniqueKeysWithValues: expPerSecond.map { ($0.key.rawValue, $0.value) })
        self.bandwidthGBs = Dictionary(uniqueKeysWithValues: bandwidthGBs.map { level, kernels in
            (level.rawValue, Dictionary(uniqueKeysWithValues: kernels.map { ($0.key.rawValue, $0.value) }))
        })
        self.sgemmGflops = sgemmGflops
    }

    /// Peak GFLOP/s of `isa`, if measured.
    public func peakGflops(_ isa: ISA) -> Double? {
        peakGflops[isa.rawValue]
    }

    /// exp/s of `isa`, if measured.
    public func expPerSecond(_ isa: ISA) -> Double? {
        expPerSecond[isa.rawValue]
    }

    /// GB/s of `kernel` at `level`, if measured.
    public func bandwidthGBs(_ level: MemoryLevel, _ kernel: BandwidthKernel) -> Double? {
        bandwidthGBs[level.rawValue]?[kernel.rawValue]
    }

    /// The bandwidth roof of `level`: the fastest of the bandwidth kernels
    /// measured there (a roof is an upper bound), and which kernel it was.
    public func memoryRoof(_ level: MemoryLevel) -> (gbs: Double, kernel: BandwidthKernel)? {
        BandwidthKernel.allCases
            .compactMap { kernel in bandwidthGBs(level, kernel).map { (gbs: $0, kernel: kernel) } }
            .filter { $0.gbs > 0 && $0.gbs.isFinite }
            .max { $0.gbs < $1.gbs }
    }

    enum CodingKeys: String, CodingKey {
        case threads
        case peakGflops = "peak_gflops"
        case expPerSecond = "exp_per_second"
        case bandwidthGBs = "bandwidth_gbs"
        case sgemmGflops = "sgemm_gflops"
    }
}

/// A source of measured ceilings: the interface between the roofline report
/// and the machine profile. Anything that can say what a machine is and what
/// its ceilings are at a thread count can drive a report; the JSON table
/// `RooflineCeilingTable` is one such source.
public protocol RooflineCeilingProvider {
    /// The machine the ceilings were measured on.
    var rooflineMachine: RooflineMachine { get }
    /// Thread counts with measurements, ascending.
    var rooflineThreadCounts: [Int] { get }
    /// The ceilings measured with `threads` threads, or nil if there are none.
    func rooflineCeilings(threads: Int) -> RooflineCeilings?
}

extension RooflineCeilingProvider {
    /// The ceilings at `threads` threads.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `threads` when none
    ///   were measured at that count (ceilings do not scale linearly with
    ///   threads on a shared machine, so none are extrapolated).
    public func requireCeilings(threads: Int) throws -> RooflineCeilings {
        guard let ceilings = rooflineCeilings(threads: threads) else {
            let measured = rooflineThreadCounts.map(String.init).joined(separator: ", ")
            throw KernelLabError.invalidArgument(
                argument: "threads",
                reason: "the ceilings have no measurements for \(threads) thread(s) (measured: \(measured.isEmpty ? "none" : measured)); "
                    + "measure them with `kernel-lab ceilings --threads \(threads)`")
        }
        return ceilings
    }
}

/// Ceilings as a JSON document: a machine and one `RooflineCeilings` per
/// thread count. Test fixtures and `kernel-lab roofline --ceilings FILE` use it.
///
///     {"machine": {...}, "ceilings": [{"threads": 1, "peak_gflops": {...}, ...}, ...]}
public struct RooflineCeilingTable: Codable, Sendable, Equatable, RooflineCeilingProvider {
    /// The machine measured.
    public var machine: RooflineMachine
    /// One entry per thread count.
    public var ceilings: [RooflineCeilings]

    /// Creates a table.
    public init(machine: RooflineMachine, ceilings: [RooflineCeilings]) {
        self.machine = machine
        self.ceilings = ceilings
    }

    /// Reads a table from a JSON file.
    ///
    /// - Throws: `KernelLabError.io` if the file cannot be read,
    ///   `KernelLabError.invalidArgument` naming `ceilings` if it is not a
    ///   ceilings table (with the JSON path of the first problem).
    public init(contentsOf path: String) throws {
        let data = try readWholeFile(path)
        do {
            self = try JSONDecoder().decode(RooflineCeilingTable.self, from: data)
        } catch let error as DecodingError {
            throw KernelLabError.invalidArgument(argument: "ceilings", reason: "'\(path)' is not a ceilings table: \(describeDecodingError(error))")
        }
    }

    public var rooflineMachine: RooflineMachine { machine }

    public var rooflineThreadCounts: [Int] { ceilings.map(\.threads).sorted() }

    public func rooflineCeilings(threads: Int) -> RooflineCeilings? {
        ceilings.first { $0.threads == threads }
    }
}

// MARK: - The machine profile as a ceiling source

extension RooflineMachine {
    /// The machine of a stored profile.
    public init(_ machine: MachineProfile.Machine) {
        self.init(cpuModel: machine.cpuModel, cpuCount: machine.cpuCount, numaNodes: machine.numaNodes,
                  l1Bytes: machine.cacheBytes.l1, l2Bytes: machine.cacheBytes.l2, l3Bytes: machine.cacheBytes.l3,
                  supportedISAs: machine.supportedISAs, blasCore: machine.blasCore.isEmpty ? nil : machine.blasCore)
    }
}

/// `kernel-lab ceilings`' machine profile drives the roofline directly.
extension MachineProfile: RooflineCeilingProvider {
    public var rooflineMachine: RooflineMachine { RooflineMachine(machine) }

    public var rooflineThreadCounts: [Int] { machine.threads.sorted() }

    public func rooflineCeilings(threads: Int) -> RooflineCeilings? {
        var peaks: [ISA: Double] = [:], exps: [ISA: Double] = [:]
        for isa in ISA.allCases {
            peaks[isa] = peakGflops(isa, threads: threads)
            exps[isa] = expPerSecond(isa, threads: threads)
        }
        guard !peaks.isEmpty else { return nil }
        var bandwidth: [MemoryLevel: [BandwidthKernel: Double]] = [:]
        for level in MemoryLevel.allCases {
            for kernel in BandwidthKernel.allCases {
                if let gbs = bandwidthGBs(level, kernel, threads: threads) { bandwidth[level, default: [:]][kernel] = gbs }
            }
        }
        return RooflineCeilings(threads: threads, peakGflops: peaks, expPerSecond: exps,
                                bandwidthGBs: bandwidth, sgemmGflops: sgemmGflops(threads: threads))
    }
}

/// Reads ceilings from a JSON file: a machine profile written by
/// `kernel-lab ceilings`, or a `RooflineCeilingTable`.
///
/// - Throws: `KernelLabError.io` if unreadable, `KernelLabError.invalidArgument`
///   naming `ceilings` if it is neither.
public func loadRooflineCeilings(path: String) throws -> any RooflineCeilingProvider {
    let data = try readWholeFile(path)
    if let profile = try? JSONDecoder().decode(MachineProfile.self, from: data) {
        return profile
    }
    return try RooflineCeilingTable(contentsOf: path)
}

// MARK: - Bounds

/// What limits a kernel on the roofline.
public enum RooflineBoundKind: String, Codable, Sendable, CaseIterable {
    /// The peak FMA rate of the ISA in use.
    case compute
    /// The exp throughput, converted to GFLOP/s at the kernel's FLOPs per exp.
    case exp
    /// Bandwidth of a memory level times the kernel's intensity.
    case l1, l2, l3, dram

    init(_ level: MemoryLevel) {
        switch level {
        case .l1: self = .l1
        case .l2: self = .l2
        case .l3: self = .l3
        case .dram: self = .dram
        }
    }

    /// Whether the bound is a memory roof.
    public var isMemory: Bool {
        switch self {
        case .compute, .exp: false
        case .l1, .l2, .l3, .dram: true
        }
    }
}

/// The roofs one kernel call meets and the lowest of them, in GFLOP/s.
///
/// The bound is hierarchical: every memory level below the L1 with a
/// measured bandwidth is a roof, that bandwidth times the call's intensity
/// at that level (FLOPs over the modelled traffic that level serves, see
/// `KernelCost.bytes(servedBy:)`): L2 with `l2Bytes`, L3 with `l3Bytes`,
/// DRAM with `dramBytes`. The bound is the lowest of the validated memory
/// roofs (L3 and DRAM), the compute roof and the exp roof, and `kind` names
/// it. The L2 roof is computed and reported but does not bind: `l2Bytes` is
/// a rough estimate (checked against simulated L1 fetches only, off by up to
/// 35% for the fused kernels and blind to conflict misses).
public struct RooflineBound: Codable, Sendable, Equatable {
    /// The memory levels whose roofs are computed, fastest first. The L1 is
    /// not one: register-to-L1 traffic is not modelled.
    public static let memoryLevels: [MemoryLevel] = [.l2, .l3, .dram]
    /// The memory levels that can bind: those whose byte models agree with a
    /// cache simulation within 25% (`make validate-traffic`).
    public static let bindingLevels: [MemoryLevel] = [.l3, .dram]

    /// The binding limit.
    public var kind: RooflineBoundKind
    /// Its value: the attainable GFLOP/s.
    public var gflops: Double
    /// The compute roof (peak of the ISA in use).
    public var computeGflops: Double
    /// The exp roof in GFLOP/s-equivalent, `exp/s * flops / exps`; nil when
    /// the kernel evaluates no exps or exp throughput was not measured.
    public var expGflops: Double?
    /// The lowest binding memory roof.
    public var memoryGflops: Double
    /// The level of the lowest binding memory roof.
    public var memoryLevel: MemoryLevel
    /// Every memory roof computed, by level name (`l2`, `l3`, `dram`; `l2`
    /// informational, see `bindingLevels`).
    public var memoryRoofsGflops: [String: Double]

    /// The bound of a call of `cost` run on `isa`; see the type's description.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `ceilings` when the
    ///   peak of `isa` or the DRAM bandwidth was not measured.
    public init(cost: KernelCost, isa: ISA, ceilings: RooflineCeilings) throws {
        var bytes: [MemoryLevel: Double] = [:]
        for level in Self.memoryLevels { bytes[level] = cost.bytes(servedBy: level) }
        try self.init(flops: cost.flops, bytes: bytes, exps: cost.exps, isa: isa, ceilings: ceilings)
    }

    /// The bound of a call of `flops` FLOPs, `bytes[level]` bytes of traffic
    /// served by each memory level and `exps` exp evaluations. Levels without
    /// bytes or without a measured bandwidth are left out; DRAM is required.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `ceilings` when the
    ///   peak of `isa` or the DRAM bandwidth was not measured, naming `bytes`
    ///   when there are no DRAM bytes.
    public init(flops: Double, bytes: [MemoryLevel: Double], exps: Double, isa: ISA, ceilings: RooflineCeilings) throws {
        guard let peak = ceilings.peakGflops(isa), peak > 0, peak.isFinite else {
            throw KernelLabError.invalidArgument(
                argument: "ceilings", reason: "no peak GFLOP/s for ISA \(isa.rawValue) at \(ceilings.threads) thread(s)")
        }
        guard ceilings.memoryRoof(.dram) != nil else {
            throw KernelLabError.invalidArgument(
                argument: "ceilings", reason: "no \(MemoryLevel.dram.label) bandwidth at \(ceilings.threads) thread(s)")
        }
        guard bytes[.dram] != nil else {
            throw KernelLabError.invalidArgument(argument: "bytes", reason: "the DRAM bytes are required")
        }
        computeGflops = peak
        if exps > 0, let rate = ceilings.expPerSecond(isa), rate > 0 {
            expGflops = rate * (flops / exps) / 1e9
        }
        var roofs: [String: Double] = [:]
        var lowest: (level: MemoryLevel, gflops: Double)?
        for level in Self.memoryLevels {
            guard let levelBytes = bytes[level], let memory = ceilings.memoryRoof(level) else { continue }
            let roof = memory.gbs * (levelBytes > 0 ? flops / levelBytes : .infinity)
            roofs[level.rawValue] = roof
            // Ties go to the slower level (DRAM over L3).
            guard Self.bindingLevels.contains(level) else { continue }
            if lowest == nil || roof <= lowest!.gflops { lowest = (level, roof) }
        }
        memoryRoofsGflops = roofs
        memoryLevel = lowest!.level
        memoryGflops = lowest!.gflops
        // Ties go to the earlier roof: compute, then exp, then memory.
        var best = (RooflineBoundKind.compute, computeGflops)
        if let expGflops, expGflops < best.1 { best = (.exp, expGflops) }
        if memoryGflops < best.1 { best = (RooflineBoundKind(memoryLevel), memoryGflops) }
        (kind, gflops) = best
    }

    enum CodingKeys: String, CodingKey {
        case kind = "bound"
        case gflops = "bound_gflops"
        case computeGflops = "compute_roof_gflops"
        case expGflops = "exp_roof_gflops"
        case memoryGflops = "memory_roof_gflops"
        case memoryLevel = "memory_roof_level"
        case memoryRoofsGflops = "memory_roofs_gflops"
    }
}

/// FLOPs per modelled DRAM byte; infinite for a call that moves no bytes.
func rooflineIntensity(_ cost: KernelCost) -> Double {
    rooflineIntensity(flops: cost.flops, bytes: cost.dramBytes)
}

/// FLOPs per byte; infinite for no bytes.
func rooflineIntensity(flops: Double, bytes: Double) -> Double {
    bytes > 0 ? flops / bytes : .infinity
}

// MARK: - Accelerators

/// An accelerator's spec-sheet peaks (`Profiles/devices/*.json`), for
/// projecting this lab's FLOP and byte models onto its roofline.
public struct AcceleratorProfile: Codable, Sendable, Equatable {
    /// File-name id, e.g. `nvidia-a100-sxm4-80gb`.
    public var id: String
    /// Marketing name.
    public var name: String
    /// Where the figures come from, e.g. "spec-sheet".
    public var kind: String
    /// Caveats of the figures.
    public var note: String?
    /// Peak TFLOP/s by precision: `fp32`, `tf32_tensor`, `fp16_tensor`.
    public var peaksTflops: [String: Double]
    /// Memory.
    public var memory: Memory
    /// Citation per figure.
    public var sources: [String: String]?

    /// The device's memory.
    public struct Memory: Codable, Sendable, Equatable {
        /// e.g. "HBM2e".
        public var kind: String?
        /// Peak bandwidth in GB/s.
        public var bandwidthGBs: Double
        /// Capacity in GB.
        public var capacityGB: Double?

        enum CodingKeys: String, CodingKey {
            case kind
            case bandwidthGBs = "bandwidth_gbs"
            case capacityGB = "capacity_gb"
        }
    }

    /// The precisions projected, in report order.
    public static let precisions = ["fp32", "tf32_tensor", "fp16_tensor"]

    /// Reads one device file.
    ///
    /// - Throws: `KernelLabError.io` if unreadable, `KernelLabError.invalidArgument`
    ///   naming `devices` if malformed or without a positive fp32 peak and bandwidth.
    public init(contentsOf path: String) throws {
        let data = try readWholeFile(path)
        do {
            self = try JSONDecoder().decode(AcceleratorProfile.self, from: data)
        } catch let error as DecodingError {
            throw KernelLabError.invalidArgument(argument: "devices", reason: "'\(path)' is not a device profile: \(describeDecodingError(error))")
        }
        guard let fp32 = peaksTflops["fp32"], fp32 > 0, memory.bandwidthGBs > 0 else {
            throw KernelLabError.invalidArgument(
                argument: "devices", reason: "'\(path)' needs a positive peaks_tflops.fp32 and memory.bandwidth_gbs")
        }
    }

    /// Every `*.json` in `directory`, sorted by id; none if it does not exist.
    ///
    /// - Throws: as `init(contentsOf:)` for a file that is not a device profile.
    public static func loadAll(directory: String) throws -> [AcceleratorProfile] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return try names.filter { $0.hasSuffix(".json") }.sorted()
            .map { try AcceleratorProfile(contentsOf: (directory as NSString).appendingPathComponent($0)) }
            .sorted { $0.id < $1.id }
    }

    /// Peak GFLOP/s of `precision`, if listed.
    public func peakGflops(_ precision: String) -> Double? {
        peaksTflops[precision].map { $0 * 1e3 }
    }

    /// The roofline projection of a kernel with `intensity` FLOP/byte
    /// (model, not measurement): per precision, min(peak, bandwidth × intensity).
    public func project(intensity: Double) -> AcceleratorProjection {
        var byPrecision: [String: AcceleratorProjection.Roof] = [:]
        for precision in Self.precisions {
            guard let peak = peakGflops(precision), peak > 0 else { continue }
            let memory = memory.bandwidthGBs * intensity
            byPrecision[precision] = AcceleratorProjection.Roof(
                attainableGflops: min(peak, memory),
                bound: memory < peak ? .bandwidth : .compute,
                ridgeFlopPerByte: peak / self.memory.bandwidthGBs)
        }
        return AcceleratorProjection(byPrecision: byPrecision)
    }

    enum CodingKeys: String, CodingKey {
        case id, name, kind, note
        case peaksTflops = "peaks_tflops"
        case memory, sources
    }
}

/// A kernel projected onto an accelerator's roofline: what its FLOP and
/// byte models would allow there. A model, not a measurement.
public struct AcceleratorProjection: Codable, Sendable, Equatable {
    /// Whether the spec-sheet peak or the memory bandwidth limits.
    public enum Bound: String, Codable, Sendable {
        case compute, bandwidth
    }

    /// The projection at one peak.
    public struct Roof: Codable, Sendable, Equatable {
        /// min(peak, bandwidth × intensity), GFLOP/s.
        public var attainableGflops: Double
        /// Which of the two is lower.
        public var bound: Bound
        /// The device's ridge point at this peak, peak / bandwidth.
        public var ridgeFlopPerByte: Double

        enum CodingKeys: String, CodingKey {
            case attainableGflops = "attainable_gflops"
            case bound
            case ridgeFlopPerByte = "ridge_flop_per_byte"
        }
    }

    /// Per precision (`fp32`, `tf32_tensor`, `fp16_tensor`).
    public var byPrecision: [String: Roof]
    /// Always "model, not measurement".
    public var basis = "model, not measurement"

    /// The fp32 projection (the headline figure; the kernels here are fp32).
    public var fp32: Roof? { byPrecision["fp32"] }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(byPrecision, forKey: .byPrecision)
        try container.encode(basis, forKey: .basis)
        // fp32 repeated at the top for direct use: `projections.<device>.attainable_gflops`.
        try container.encodeIfPresent(fp32?.attainableGflops, forKey: .attainableGflops)
        try container.encodeIfPresent(fp32?.bound, forKey: .bound)
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        byPrecision = try container.decode([String: Roof].self, forKey: .byPrecision)
        basis = try container.decodeIfPresent(String.self, forKey: .basis) ?? "model, not measurement"
    }

    init(byPrecision: [String: Roof]) {
        self.byPrecision = byPrecision
    }

    enum CodingKeys: String, CodingKey {
        case byPrecision = "by_precision"
        case basis
        case attainableGflops = "attainable_gflops"
        case bound
    }
}

// MARK: - Helpers

/// Reads a whole file.
///
/// - Throws: `KernelLabError.io` with the reason.
func readWholeFile(_ path: String) throws -> Data {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw KernelLabError.io(path: path, reason: "no such file")
    }
    guard !isDirectory.boolValue else {
        throw KernelLabError.io(path: path, reason: "is a directory")
    }
    do {
        return try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        throw KernelLabError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
    }
}

/// A decoding error as "at cases[2].seq: expected a number" for people.
func describeDecodingError(_ error: DecodingError) -> String {
    func path(_ codingPath: [CodingKey]) -> String {
        let parts = codingPath.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }
        let joined = parts.joined()
        return joined.isEmpty ? "the top level" : String(joined.drop { $0 == "." })
    }
    switch error {
    case let .typeMismatch(type, context):
        return "at \(path(context.codingPath)): expected \(type)"
    case let .valueNotFound(type, context):
        return "at \(path(context.codingPath)): missing \(type)"
    case let .keyNotFound(key, context):
        return "at \(path(context.codingPath)): missing key '\(key.stringValue)'"
    case let .dataCorrupted(context):
        return "at \(path(context.codingPath)): \(context.debugDescription)"
    @unknown default:
        return String(describing: error)
    }
}
