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
