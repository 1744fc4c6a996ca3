import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes the file at `path` whole or not at all: `body` writes into a new
/// temporary file in the same directory, which is flushed and then renamed
/// over `path`. On failure no partial file is left behind and an existing
/// file at `path` is unchanged. A process killed mid-write (SIGKILL runs no
/// cleanup) leaves its temporary file behind; the next successful write of
/// the same path removes those of dead processes on this host.
///
/// - Throws: `KernelLabError.io` when the directory does not exist or is not
///   writable, or a write, flush or rename fails; rethrows what `body` throws.
func writeFileAtomically(_ path: String, _ body: (borrowing FileDescriptor) throws -> Void) throws {
    let slash = path.lastIndex(of: "/")
    let directory = slash.map { path[..<$0].isEmpty ? "/" : String(path[..<$0]) } ?? "."
    let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
    guard !name.isEmpty else {
        throw KernelLabError.io(path: path, reason: "the path names a directory, not a file")
    }
    // Same directory, so that rename() is atomic (never across file systems).
    let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
    let prefix = (directory == "/" ? "" : directory) + "/"
    let temporaryPath = prefix + TemporaryName.make(for: name, pid: getpid(), suffix: suffix)

    var file: FileDescriptor
    do {
        file = try FileDescriptor.createExclusive(temporaryPath)
    } catch KernelLabError.io(_, let reason) {
        throw KernelLabError.io(path: path, reason: "cannot create a file in '\(directory)': \(reason)")
    }
    var renamed = false
    defer {
        if !renamed { _ = unlink(temporaryPath) }
    }
    try body(file)
    try file.sync(reportedPath: path)
    try file.close(reportedPath: path)
    guard rename(temporaryPath, path) == 0 else { throw FileDescriptor.ioError(path) }
    renamed = true
    TemporaryName.removeStale(of: name, in: directory)
}

/// Temporary files of `writeFileAtomically`: `.NAME.HOST.PID.RANDOM.tmp`.
/// The host keeps one machine from removing another's live temporary in a
/// directory they share (a sweep's output on NFS).
enum TemporaryName {
    static let host: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "host" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let name = String(decoding: bytes, as: UTF8.self).filter { $0.isLetter || $0.isNumber || $0 == "-" }
        return name.isEmpty ? "host" : name
    }()

    static func make(for name: String, pid: Int32, suffix: String) -> String {
        ".\(name).\(host).\(pid).\(suffix).tmp"
    }

    /// Removes the temporaries of `name` that processes of this host, now
    /// dead, left in `directory`. Best effort: errors are ignored.
    static func removeStale(of name: String, in directory: String) {
        let start = ".\(name).\(host).", end = ".tmp"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for entry in entries where entry.hasPrefix(start) && entry.hasSuffix(end) && entry.count > start.count + end.count {
            let middle = entry.dropFirst(start.count).dropLast(end.count)  // PID.RANDOM
            guard let dot = middle.firstIndex(of: "."), let pid = Int32(middle[..<dot]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) == -1 && errno == ESRCH {
                _ = unlink((directory == "/" ? "" : directory) + "/" + entry)
            }
        }
    }
}

/// Writes `bytes` to `path` whole or not at all; see `writeFileAtomically(_:_:)`.
func writeFileAtomically(_ path: String, bytes: [UInt8]) throws {
    try writeFileAtomically(path) { file in
        try bytes.withUnsafeBytes { try file.write($0, reportedPath: path) }
    }
}

/// Writes named text files into `directory` (created if missing), each
/// through a temporary file and a rename. Returns the paths written.
func writeDocuments(_ documents: [(name: String, text: String)], to directory: String) throws -> [String] {
    do {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
        throw KernelLabError.io(path: directory, reason: "cannot create the output directory: \(error.localizedDescription)")
    }
    var written: [String] = []
    for (name, text) in documents {
        let path = (directory as NSString).appendingPathComponent(name)
        try writeFileAtomically(path, bytes: Array(text.utf8))
        written.append(path)
    }
    return written
}
