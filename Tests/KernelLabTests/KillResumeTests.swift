import Foundation
@testable import KernelLab
import XCTest

/// Interrupted work (issue "Reliability", item 4): a training run killed
/// with SIGKILL at random points, relaunched with --resume each time, ends
/// with the same state as a run never interrupted; the checkpoint on disk is
/// whole after every kill.
final class KillResumeTests: TemporaryDirectoryTestCase {
    func testTrainingKilledAtRandomPointsEndsWithTheSameCheckpoint() throws {
        let steps = 150
        let common = ["train", "--pattern", "MA", "--d-model", "16", "--heads", "2", "--d-state", "4", "--batch", "2", "--seq", "32",
                      "--min-len", "2", "--max-len", "6", "--threads", "1", "--steps", "\(steps)", "--checkpoint-every", "3",
                      "--log-every", "1000"]
        let straight = path("straight.safetensors"), killed = path("killed.safetensors")
        let run = try launchKernelLab(common + ["--checkpoint", straight])
        XCTAssertEqual(run.status, 0, run.stderr)

        // Kill points by progress, not by the clock (a loaded machine shifts every time):
        // once the checkpoint on disk reaches a seeded random step, wait a random 0-15 ms
        // (so the kill lands mid-step or mid-write) and SIGKILL. Target 0 kills during start-up.
        var rng = SplitMix64(seed: 42)
        let targets = [0] + Array(Set((0..<6).map { _ in 5 + Int(rng.next() % UInt64(steps - 15)) })).sorted()
        func step() -> Int { (try? Checkpoint.metadata(killed).step) ?? 0 }
        var kills = 0, whole = 0
        for target in targets {
            let process = Process()
            process.executableURL = try kernelLabExecutable()
            process.arguments = common + ["--checkpoint", killed] + (FileManager.default.fileExists(atPath: killed) ? ["--resume"] : [])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            while process.isRunning && step() < target { usleep(500) }
            usleep(UInt32(rng.next() % 15_000))
            guard process.isRunning else {
                process.waitUntilExit()
                XCTFail("the run ended (status \(process.terminationStatus)) before its kill at step \(target)")
                continue
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            kills += 1
            if FileManager.default.fileExists(atPath: killed) {
                // Whole or absent, never half-written: it parses and names its step.
                XCTAssertNoThrow(try Checkpoint.metadata(killed))
                whole += 1
            }
        }
        let last = try launchKernelLab(common + ["--checkpoint", killed, "--resume"])
        XCTAssertEqual(last.status, 0, last.stderr)
        print("kill and resume: \(kills) SIGKILLs at steps >= \(targets), \(whole) with a checkpoint on disk (each whole), then a clean finish")
        XCTAssertGreaterThanOrEqual(kills, 5)
        XCTAssertEqual(try Checkpoint.metadata(killed).step, steps)
        // A kill mid-write leaves a temporary file; the next write removes it.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".tmp") }
        XCTAssertEqual(leftovers, [], "temporary files left by the killed writers")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: killed)), try Data(contentsOf: URL(fileURLWithPath: straight)),
                       "parameters, AdamW moments and step equal an uninterrupted run's, byte for byte")
    }

    /// A sweep (`copy run`, a grid of training runs) killed with SIGKILL
    /// at random points and relaunched each time ends with the same runs as
    /// one never interrupted; each run file on disk is whole after every kill.
    func testSweepKilledAtRandomPointsEndsWithTheSameRuns() throws {
        let common = ["copy", "run", "--experiment", "train-efficiency", "--preset", "smoke", "--seeds", "1", "--threads", "1"]
        let straight = path("straight"), killed = path("killed")
        let run = try launchKernelLab(common + ["--out", straight])
        XCTAssertEqual(run.status, 0, run.stderr)
        func finished(_ out: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: out + "/runs")) ?? []).filter { $0.hasSuffix(".json") && !$0.hasSuffix(".partial.json") }.sorted()
        }
        let total = finished(straight).count
        XCTAssertGreaterThanOrEqual(total, 4)

        // Kill once k runs are finished (k seeded, in order), after a random
        // 0-20 ms, so the kill lands mid-run, mid-checkpoint or mid-report.
        var rng = SplitMix64(seed: 7)
        let targets = [0] + (0..<5).map { _ in Int(rng.next() % UInt64(total - 1)) }.sorted()
        var kills = 0
        for target in targets {
            let process = Process()
            process.executableURL = try kernelLabExecutable()
            process.arguments = common + ["--out", killed]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            while process.isRunning && finished(killed).count < target { usleep(200) }
            usleep(UInt32(rng.next() % 20_000))
            guard process.isRunning else { process.waitUntilExit(); continue }  // finished first: a kill point missed
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            kills += 1
            for name in finished(killed) {
                XCTAssertNoThrow(try decodeRun(killed + "/runs/" + name), "\(name) is not whole after a kill")
            }
        }
        let last = try launchKernelLab(common + ["--out", killed])
        XCTAssertEqual(last.status, 0, last.stderr)
        print("sweep kill and resume: \(kills) SIGKILLs of \(targets.count) kill points (after \(targets) finished runs), then a clean finish")
        XCTAssertGreaterThanOrEqual(kills, 3)
        XCTAssertEqual(finished(killed), finished(straight))
        for name in finished(straight) {
            var a = try decodeRun(straight + "/runs/" + name), b = try decodeRun(killed + "/runs/" + name)
            a.wallSeconds = 0
            b.wallSeconds = 0
            XCTAssertEqual(a, b, "\(name): the resumed sweep trained another run")
        }
        let leftovers = try FileManager.default.subpathsOfDirectory(atPath: killed).filter { $0.hasSuffix(".tmp") || $0.hasSuffix(".partial.json") }
        XCTAssertEqual(leftovers, [], "temporary or partial files left behind")
        XCTAssertTrue(FileManager.default.fileExists(atPath: killed + "/train-efficiency/results.json"))
    }

    private func decodeRun(_ path: String) throws -> CopyRunResult {
        try JSONDecoder.lab.decode(CopyRunResult.self, from: try Data(contentsOf: URL(fileURLWithPath: path)))
    }
}
