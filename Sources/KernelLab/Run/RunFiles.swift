import Foundation

// File handling shared by the `kernel-lab run` jobs.

/// Throws `.io` naming `argument` unless the directory that would hold
/// `path` exists, so a run fails before computing rather than after.
func checkParentDirectory(of path: String, argument: String) throws {
    let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw KernelLabError.io(path: path, reason: "cannot write \(argument): directory '\(directory)' does not exist")
    }
}

/// Creates the grads-dir of a run (and its parents) if missing.
func createGradsDirectory(_ path: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        throw KernelLabError.io(path: path, reason: "cannot create grads-dir: \(error.localizedDescription)")
    }
}

/// What a `kernel-lab run` job wrote (`AttentionRun.Outcome`, `ScanRun.Outcome`).
public struct RunOutcome<Shape: Equatable & Sendable>: Sendable, Equatable {
    /// The sizes of the call.
    public var shape: Shape
    /// Every file written, with the shape of its array, in writing order.
    public var written: [(path: String, shape: [Int])]
    /// The largest workspace one of the calls took (forward, or backward when
    /// gradients were asked for), as the kernel's workspace query states it.
    public var workspaceBytes: Int

    /// Equal shapes and equal files written, in the same order.
    public static func == (lhs: RunOutcome, rhs: RunOutcome) -> Bool {
        lhs.shape == rhs.shape && lhs.written.elementsEqual(rhs.written) { $0.path == $1.path && $0.shape == $1.shape }
    }
}

/// Throws `.invalidArgument` naming the missing one unless grad-out and
/// grads-dir are given together (or both left out).
func checkGradPaths(gradOutPath: String?, gradsDirectory: String?) throws {
    guard (gradOutPath == nil) == (gradsDirectory == nil) else {
        throw KernelLabError.invalidArgument(
            argument: gradOutPath == nil ? "grad-out" : "grads-dir",  // the missing one
            reason: "grad-out and grads-dir must be given together")
    }
}

/// Throws `.invalidArgument` unless `threads` is a usable pool size.
func checkRunThreads(_ threads: Int) throws {
    guard (1...ThreadPool.maxThreads).contains(threads) else {
        throw KernelLabError.invalidArgument(argument: "threads", reason: "must be in 1...\(ThreadPool.maxThreads), got \(threads)")
    }
}

/// Reads the `.npy` input `argument` of a run from `path`. With
/// `rejectNonfinite`, a NaN or Inf is an `.invalidArgument`; its reason
/// suggests --allow-nonfinite when `allowable` (the user could override it).
func loadRunInput(_ path: String, argument: String, rejectNonfinite: Bool, allowable: Bool = true) throws -> Tensor {
    let tensor = try Tensor(npyFile: path)
    if rejectNonfinite, let index = tensor.firstNonFiniteIndex {
        throw KernelLabError.invalidArgument(
            argument: argument,
            reason: "'\(path)' contains a non-finite value (\(tensor[index]) at flat index \(index))"
                + (allowable ? "; pass --allow-nonfinite to compute anyway (NaN and Inf then propagate)" : ""))
    }
    return tensor
}

/// Saves `tensor` to `path` and records it in `written`.
func saveOutput(_ tensor: Tensor, to path: String, written: inout [(path: String, shape: [Int])]) throws {
    try tensor.save(npyFile: path)
    written.append((path, tensor.shape))
}

/// Creates `directory` if missing and saves each present gradient as
/// `<name>.npy` in it, in order, recording them in `written`.
func saveGradients(_ gradients: [(name: String, tensor: Tensor?)], into directory: String,
                   written: inout [(path: String, shape: [Int])]) throws {
    try createGradsDirectory(directory)
    for case let (name, tensor?) in gradients {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("\(name).npy").path
        try saveOutput(tensor, to: path, written: &written)
    }
}
