import Foundation
import KernelLab
import XCTest

/// Interrupted work (issue "Reliability", item 4): a training run killed
/// with SIGKILL at random points, relaunched with --resume each time, ends
/// with the same state as a run never interrupted; the checkpoint on disk is
/// whole after every kill.
final class KillResumeTests: TemporaryDirectoryTestCase {
    func testTrainingKilledAtRandomPointsEndsWithTheSameCheckpoint() throws {
        let common = ["train", "--pattern", "MA", "--d-model", "16", "--heads", "2", "--d-state", "4", "--batch", "2", "--seq", "32",
                      "--min-len", "2", "--max-len", "6", "--threads", "1", "--steps", "150", "--checkpoint-every", "3", "--log-every", "100"]
        let straight = path("straight.safetensors"), killed = path("killed.safetensors")
        let started = Date()
        let run = try launchKernelLab(common + ["--checkpoint", straight])
        XCTAssertEqual(run.status, 0, run.stderr)
        let duration = Date().timeIntervalSince(started)

        var rng = SplitMix64(seed: 42)
        var kills = 0, survived = 0
        for _ in 0..<40 {
            let process = Process()
            process.executableURL = try kernelLabExecutable()
            let resume = FileManager.default.fileExists(atPath: killed)
            process.arguments = common + ["--checkpoint", killed] + (resume ? ["--resume"] : [])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // A kill point in the first half of an uninterrupted run's time (start-up included):
            // each relaunch resumes further on, so most of them die mid-run.
            let deadline = Date().addingTimeInterval(duration * (0.05 + 0.4 * Double(rng.next() % 1000) / 1000))
            while process.isRunning && Date() < deadline { usleep(2000) }
            if process.isRunning && kills < 6 {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                kills += 1
                if FileManager.default.fileExists(atPath: killed) {
                    // Whole or absent, never half-written: it parses and names its step.
                    XCTAssertNoThrow(try Checkpoint.metadata(killed))
                    survived += 1
                }
                continue
            }
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0)
            break
        }
        print("kill and resume: \(kills) SIGKILLs, \(survived) of them with a checkpoint on disk (each whole), then a clean finish")
        XCTAssertGreaterThanOrEqual(kills, 3, "the run was too quick to kill")
        XCTAssertGreaterThanOrEqual(survived, 1)
        XCTAssertEqual(try Checkpoint.metadata(killed).step, 150)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: killed)), try Data(contentsOf: URL(fileURLWithPath: straight)),
                       "parameters, AdamW moments and step equal an uninterrupted run's, byte for byte")
    }
}
