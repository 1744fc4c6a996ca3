import Foundation
import KernelLab
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
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: killed)), try Data(contentsOf: URL(fileURLWithPath: straight)),
                       "parameters, AdamW moments and step equal an uninterrupted run's, byte for byte")
    }
}
