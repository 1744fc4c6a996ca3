import CKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An instruction-set path of the kernels. The C layer picks one at start-up
/// (the `KERNELLAB_ISA` environment variable, else the best the CPU supports)
/// and can switch at run time to measure each path in one process.
public enum ISA: String, CaseIterable, Codable, Sendable {
    /// Portable C.
    case scalar
    /// AVX2 + FMA.
    case avx2
    /// AVX-512 F/VL/DQ/BW.
    case avx512

    /// Parses "scalar", "avx2" or "avx512" (case-insensitive).
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `argument` and the accepted values.
    public init(parsing name: String, argument: String = "isa") throws {
        guard let isa = ISA(rawValue: name.lowercased()) else {
            throw KernelLabError.invalidArgument(
                argument: argument,
                reason: "unknown ISA '\(name)'; expected one of \(ISA.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = isa
    }

    init(_ isa: kl_isa) {
        switch isa {
        case KL_ISA_AVX2: self = .avx2
        case KL_ISA_AVX512: self = .avx512
        default: self = .scalar
        }
    }

    var cValue: kl_isa {
        switch self {
        case .scalar: KL_ISA_SCALAR
        case .avx2: KL_ISA_AVX2
        case .avx512: KL_ISA_AVX512
        }
    }

    /// Whether this CPU (and build) can run the path.
    public var isSupported: Bool {
        kl_isa_supported(cValue) != 0
    }

    /// The paths this CPU can run, slowest first.
    public static var supported: [ISA] {
        allCases.filter(\.isSupported)
    }

    /// The path the kernels use now.
    ///
    /// - Throws: `KernelLabError.unsupportedISA` if start-up failed, e.g.
    ///   `KERNELLAB_ISA` names an unknown or unsupported ISA.
    public static var active: ISA {
        get throws {
            try initialize()
            return ISA(kl_isa_active())
        }
    }

    /// Makes `isa` the active path for subsequent kernel calls in this
    /// process. An explicit choice also overrides a bad `KERNELLAB_ISA`.
    ///
    /// - Throws: `KernelLabError.unsupportedISA` if this CPU cannot run it.
    public static func set(_ isa: ISA) throws {
        guard isa.isSupported else {
            throw KernelLabError.unsupportedISA(
                name: isa.rawValue,
                reason: "this CPU does not support it (supported: \(supported.map(\.rawValue).joined(separator: ", ")))")
        }
        try check(kl_isa_set(isa.cValue), "kl_isa_set", isa: isa.rawValue)
    }

    /// Runs the C layer's one-time start-up (`kl_init`) and surfaces its
    /// failure as an error. Every KernelLab entry point that reaches a kernel
    /// calls this; calling it again is cheap.
    ///
    /// - Throws: `KernelLabError.unsupportedISA` when `KERNELLAB_ISA` is set to
    ///   something this CPU cannot run.
    public static func initialize() throws {
        let status = kl_init()
        guard status != KL_OK else { return }
        let detail = cString(kl_last_error())
        if let requested = getenv("KERNELLAB_ISA").map({ String(cString: $0) }), !requested.isEmpty {
            let choices = supported.map(\.rawValue).joined(separator: ", ")
            throw KernelLabError.unsupportedISA(
                name: requested,
                reason: (detail.isEmpty ? "KERNELLAB_ISA='\(requested)' is not usable" : detail)
                    + "; unset KERNELLAB_ISA or set it to an ISA this CPU supports (\(choices))")
        }
        try check(status, "kl_init")
    }
}
