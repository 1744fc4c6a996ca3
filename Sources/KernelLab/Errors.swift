import CKernels

/// A failure status reported by the C kernel layer (a `kl_status` other than `KL_OK`).
public enum KernelStatus: Sendable, Hashable, CustomStringConvertible {
    /// `KL_ERR_INVALID_ARGUMENT`: a null pointer, a non-positive size or a bad option.
    case invalidArgument
    /// `KL_ERR_SHAPE`: shapes that do not agree.
    case shape
    /// `KL_ERR_WORKSPACE`: workspace missing, too small or misaligned.
    case workspace
    /// `KL_ERR_ALLOC`: out of memory.
    case allocation
    /// `KL_ERR_UNSUPPORTED_ISA`: the requested ISA is not available on this CPU.
    case unsupportedISA
    /// `KL_ERR_THREADS`: thread creation failed or a bad thread count.
    case threads
    /// A status code this version of the Swift layer does not know.
    case unknown(UInt32)

    /// Maps a C status; `KL_OK` has no case here, so callers test for it first.
    init(_ status: kl_status) {
        switch status {
        case KL_ERR_INVALID_ARGUMENT: self = .invalidArgument
        case KL_ERR_SHAPE: self = .shape
        case KL_ERR_WORKSPACE: self = .workspace
        case KL_ERR_ALLOC: self = .allocation
        case KL_ERR_UNSUPPORTED_ISA: self = .unsupportedISA
        case KL_ERR_THREADS: self = .threads
        default: self = .unknown(status.rawValue)
        }
    }

    /// The C enumerator's name, e.g. `KL_ERR_SHAPE`.
    public var description: String {
        switch self {
        case .invalidArgument: "KL_ERR_INVALID_ARGUMENT"
        case .shape: "KL_ERR_SHAPE"
        case .workspace: "KL_ERR_WORKSPACE"
        case .allocation: "KL_ERR_ALLOC"
        case .unsupportedISA: "KL_ERR_UNSUPPORTED_ISA"
        case .threads: "KL_ERR_THREADS"
        case .unknown(let code): "kl_status(\(code))"
        }
    }
}

/// Errors thrown by KernelLab. Each case names what was wrong and, where it
/// applies, the argument at fault and what was expected, so that a message can
/// be shown to a user as is.
public enum KernelLabError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A tensor argument has the wrong shape. `expected` uses the symbolic
    /// dimension names of the API, e.g. `(B=2, H=4, Lk, d=64)`.
    case shapeMismatch(argument: String, expected: String, got: String)
    /// An argument has a value outside its domain.
    case invalidArgument(argument: String, reason: String)
    /// A file is not a NumPy `.npy` file that KernelLab can read.
    case npy(path: String, reason: String)
    /// A file could not be opened, read, written or renamed.
    case io(path: String, reason: String)
    /// An instruction set was requested that this build or CPU cannot run.
    case unsupportedISA(name: String, reason: String)
    /// A C kernel returned a failure status; `detail` carries `kl_last_error()`.
    case kernel(status: KernelStatus, detail: String)

    /// A one-line message for people, naming the argument or file at fault.
    public var description: String {
        switch self {
        case let .shapeMismatch(argument, expected, got):
            "argument '\(argument)' has shape \(got); expected \(expected)"
        case let .invalidArgument(argument, reason):
            "invalid argument '\(argument)': \(reason)"
        case let .npy(path, reason):
            "cannot read '\(path)' as .npy: \(reason)"
        case let .io(path, reason):
            "'\(path)': \(reason)"
        case let .unsupportedISA(name, reason):
            "ISA '\(name)' cannot be used: \(reason)"
        case let .kernel(status, detail):
            detail.isEmpty ? "kernel failed with \(status)" : "kernel failed with \(status): \(detail)"
        }
    }
}

/// Converts a C status into a thrown `KernelLabError`.
///
/// `operation` names the C call (it prefixes the detail) and `isa` names the
/// ISA involved, for `KL_ERR_UNSUPPORTED_ISA`.
func check(_ status: kl_status, _ operation: @autoclosure () -> String, isa: String? = nil) throws {
    guard status != KL_OK else { return }
    let detail = cString(kl_last_error())
    let kernelStatus = KernelStatus(status)
    if kernelStatus == .unsupportedISA {
        throw KernelLabError.unsupportedISA(
            name: isa ?? "unknown",
            reason: detail.isEmpty ? "\(operation()) reported \(kernelStatus)" : detail)
    }
    throw KernelLabError.kernel(
        status: kernelStatus,
        detail: detail.isEmpty ? operation() : "\(operation()): \(detail)")
}

/// Copies a C string owned by the C layer; a null pointer reads as "".
func cString(_ pointer: UnsafePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}

/// Formats a shape the way NumPy prints it: `()`, `(5,)`, `(2, 3)`.
func describeShape(_ shape: [Int]) -> String {
    shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
}

/// Kernels read inputs while writing outputs, so an output must not overlap
/// an input or another output. Throws naming the first output that does.
func checkDistinct(outputs: [(String, Tensor)], inputs: [(String, Tensor)]) throws {
    for (index, (name, tensor)) in outputs.enumerated() {
        for (otherName, other) in inputs + outputs[..<index] where tensor.sharesStorage(with: other) {
            throw KernelLabError.invalidArgument(argument: name, reason: "must not share memory with '\(otherName)'")
        }
    }
}

/// Throws `.invalidArgument` naming the first dimension that is not in
/// 1...Int32.max (the C API takes `int`).
func checkCDimensions(_ dimensions: [(String, Int)]) throws {
    for (name, value) in dimensions {
        guard value > 0 else {
            throw KernelLabError.invalidArgument(argument: name, reason: "must be positive, got \(value)")
        }
        guard value <= Int(Int32.max) else {
            throw KernelLabError.invalidArgument(argument: name, reason: "\(value) exceeds the C API limit of \(Int32.max)")
        }
    }
}
