import Foundation
import XCTest

// Helpers shared by the test classes: temporary directories and launching
// the built `kernel-lab` executable.

/// `Profiles/` of this package, found from this file's path.
let packageProfiles = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Profiles")

/// A fresh directory under the system temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("kernellab-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A test case with a fresh temporary `directory` per test, removed afterwards.
class TemporaryDirectoryTestCase: XCTestCase {
    /// This test's temporary directory.
    var directory: URL!

    override func setUpWithError() throws {
        try super.setUpWithError()
        directory = try makeTemporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
        try super.tearDownWithError()
    }

    /// The path of `name` inside `directory`.
    func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }
}

/// The built `kernel-lab` next to the test bundle, or a skip when this build
/// did not produce it.
func kernelLabExecutable() throws -> URL {
    var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
    candidates.append(Bundle.main.bundleURL)
    for directory in candidates {
        let url = directory.appendingPathComponent("kernel-lab")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    throw XCTSkip("kernel-lab executable not built next to the tests")
}

/// Runs `kernel-lab` with `arguments` (and extra `environment` variables)
/// and returns its exit status and output.
func launchKernelLab(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    let process = Process()
    process.executableURL = try kernelLabExecutable()
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read before waiting, so a full pipe cannot block the child.
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}
