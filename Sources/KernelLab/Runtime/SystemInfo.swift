import CKernels

/// The machine and library configuration that a measurement depends on.
public struct SystemInfo: Codable, Sendable, Equatable {
    /// The CPU brand string, or "unknown".
    public var cpuModel: String
    /// The ISA path the kernels use.
    public var activeISA: ISA
    /// The ISA paths this CPU can run.
    public var supportedISAs: [ISA]
    /// Online logical CPUs.
    public var cpuCount: Int
    /// Configured NUMA nodes (1 without NUMA support).
    public var numaNodes: Int
    /// OpenBLAS's build configuration string.
    public var blasConfig: String
    /// The OpenBLAS core (kernel family) selected at run time.
    public var blasCore: String
    /// L1 data, L2 and L3 cache sizes in bytes (0 when unknown).
    public var cacheBytes: CacheSizes

    /// Cache sizes in bytes per level.
    public struct CacheSizes: Codable, Sendable, Equatable {
        /// Level 1 data cache.
        public var l1: Int
        /// Level 2 cache.
        public var l2: Int
        /// Level 3 cache.
        public var l3: Int

        /// Sizes in bytes; 0 for an unknown level.
        public init(l1: Int, l2: Int, l3: Int) {
            self.l1 = l1
            self.l2 = l2
            self.l3 = l3
        }
    }

    enum CodingKeys: String, CodingKey {
        case cpuModel = "cpu_model"
        case activeISA = "isa"
        case supportedISAs = "supported_isas"
        case cpuCount = "cpu_count"
        case numaNodes = "numa_nodes"
        case blasConfig = "blas_config"
        case blasCore = "blas_core"
        case cacheBytes = "cache_bytes"
    }

    /// Queries the C layer.
    ///
    /// - Throws: `KernelLabError.unsupportedISA` if start-up failed (e.g. a bad `KERNELLAB_ISA`).
    public static func current() throws -> SystemInfo {
        SystemInfo(
            cpuModel: cString(kl_cpu_model()).isEmpty ? "unknown" : cString(kl_cpu_model()),
            activeISA: try ISA.active,
            supportedISAs: ISA.supported,
            cpuCount: Int(kl_cpu_count()),
            numaNodes: Int(kl_numa_nodes()),
            blasConfig: cString(kl_blas_config()),
            blasCore: cString(kl_blas_core()),
            cacheBytes: CacheSizes(l1: kl_cache_bytes(1), l2: kl_cache_bytes(2), l3: kl_cache_bytes(3)))
    }

    /// Online logical CPUs (at least 1).
    public static var cpuCount: Int {
        max(Int(kl_cpu_count()), 1)
    }
}

extension SystemInfo {
    /// The information as one JSON object with sorted keys.
    public func json() throws -> String {
        try encodeJSON(self)
    }

    /// The information as aligned "name  value" lines.
    public func table() -> String {
        let supported = supportedISAs.map(\.rawValue).joined(separator: ", ")
        func cache(_ bytes: Int) -> String { bytes > 0 ? formatBytes(bytes) : "unknown" }
        return formatTable([
            ["cpu", cpuModel],
            ["isa", "\(activeISA.rawValue) (supported: \(supported.isEmpty ? "none" : supported))"],
            ["threads", "\(cpuCount) logical CPUs"],
            ["numa nodes", String(numaNodes)],
            ["openblas", blasConfig.isEmpty ? "unknown" : blasConfig],
            ["openblas core", blasCore.isEmpty ? "unknown" : blasCore],
            ["cache", "L1d \(cache(cacheBytes.l1)), L2 \(cache(cacheBytes.l2)), L3 \(cache(cacheBytes.l3))"],
        ])
    }
}
