import Foundation
import KernelLab

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One reader of a file users hand the lab, as the fuzzers drive it: bytes in,
/// accepted, or rejected with a thrown error. Anything else (a trap, a
/// sanitizer report, a broken invariant on an accepted input) is a bug.
///
/// The libFuzzer harness (`make fuzz`) and the regression tests
/// (`FuzzRegressionTests`) call the same `run`, so a crash the fuzzer finds
/// replays in `make test` once its input is kept in `Tests/Fuzz/Regressions`.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// `Tensor(npyFile:)`, then a save and re-read of what it accepted.
    case npy
    /// `RooflineSuite(json:)`: bench and roofline suites.
    case suite
    /// `BenchRun.load(path:)`: committed bench baselines.
    case baseline
    /// `ModelConfig.decode`, then a round trip through its JSON.
    case config
    /// `RooflinePeersFile(json:)`: the peers `make compare` measures.
    case peers
    /// `MachineProfile.load(path:)`: measured machine profiles.
    case profile
    /// `Checkpoint.metadata` and `Checkpoint.load` into a fixed tiny trainer.
    case checkpoint

    /// The directories of this target's seed inputs, relative to the package
    /// root: the committed files the lab itself reads where there are some
    /// (suites, baselines, machine profiles: the seeds follow the format),
    /// else `Tests/Fuzz/Corpus/NAME`.
    public func seedDirectories(root: String = ".") -> [String] {
        switch self {
        case .suite: return [root + "/Profiles/suites"]
        case .profile: return [root + "/Profiles/machines"]
        case .baseline:
            let baselines = root + "/Profiles/baselines"
            let machines = (try? FileManager.default.contentsOfDirectory(atPath: baselines)) ?? []
            return machines.sorted().map { baselines + "/" + $0 }
        default: return [root + "/Tests/Fuzz/Corpus/" + rawValue]
        }
    }

    /// Every seed file of this target.
    public func seeds(root: String = ".") -> [String] {
        seedDirectories(root: root).flatMap { directory in
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { !$0.hasPrefix(".") }.sorted().map { directory + "/" + $0 }
        }
    }

    /// Feeds `bytes` to the reader. Returns true when it accepted them (and
    /// the invariants of an accepted input held), false when it threw.
    @discardableResult
    public func run(_ bytes: [UInt8]) -> Bool {
        do {
            switch self {
            case .npy:
                let path = try Scratch.write(bytes, name: "input.npy")
                let tensor = try Tensor(npyFile: path)
                let count = tensor.shape.reduce(1, *)
                check(count == tensor.count, "count \(tensor.count) is not the product of shape \(tensor.shape)")
                check(bytes.count >= 4 * count + 10, "\(bytes.count) bytes cannot hold \(count) floats and a header")
                let again = try Scratch.path("again.npy")
                try tensor.save(npyFile: again)
                let reread = try Tensor(npyFile: again)
                check(reread.shape == tensor.shape, "the shape changed in a round trip")
                check(reread.toArray().map(\.bitPattern) == tensor.toArray().map(\.bitPattern), "the data changed in a round trip")
            case .suite:
                let suite = try RooflineSuite(json: Data(bytes), name: "fuzz", source: "fuzz")
                check(!suite.cases.isEmpty, "a suite was accepted with no cases")
            case .baseline:
                _ = try BenchRun.load(path: try Scratch.write(bytes, name: "baseline.json"))
            case .config:
                let config = try ModelConfig.decode(Data(bytes), source: "fuzz")
                let again = try ModelConfig.decode(Data(config.jsonString.utf8), source: "round trip")
                check(again == config, "the config changed in a round trip through its JSON")
            case .peers:
                _ = try RooflinePeersFile(json: Data(bytes), source: "fuzz")
            case .profile:
                _ = try MachineProfile.load(path: try Scratch.write(bytes, name: "profile.json"))
            case .checkpoint:
                let path = try Scratch.write(bytes, name: "input.ckpt")
                let metadata = try Checkpoint.metadata(path)
                let trainer = try FuzzCheckpoint.trainer()
                guard metadata.config == trainer.model.config, metadata.options == trainer.options else { return true }
                try Checkpoint.load(path, into: trainer)
                check(trainer.step == metadata.step, "load restored step \(trainer.step), the header says \(metadata.step)")
            }
            return true
        } catch {
            return false
        }
    }

    /// A bug in an accepted input: trap, so that libFuzzer keeps the input
    /// and the regression test fails.
    private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fatalError("fuzz target \(rawValue): \(message())") }
    }
}

/// The tiny model and options whose checkpoints the `checkpoint` target can
/// load whole (any other valid checkpoint stops after its metadata).
public enum FuzzCheckpoint {
    public static let configJSON = #"{"pattern": "AML", "vocab": 8, "d_model": 8, "heads": 2, "position": "rope", "rotary_dims": 2, "d_state": 2}"#
    public static let options = TrainingOptions(steps: 4, learningRate: 1e-3, batch: 2, seq: 6, seed: 7)

    nonisolated(unsafe) private static var cached: Trainer?

    /// The trainer checkpoints are loaded into (made once per process).
    public static func trainer() throws -> Trainer {
        if let cached { return cached }
        let config = try ModelConfig.decode(Data(configJSON.utf8), source: "fuzz checkpoint config")
        let trainer = try Trainer(model: try LanguageModel(config: config, seed: 1), options: options, threads: 1)
        cached = trainer
        return trainer
    }

    /// Writes the corpus's seed checkpoint: a fresh trainer of this config
    /// after two steps on a fixed batch.
    public static func writeSeed(to path: String) throws {
        let config = try ModelConfig.decode(Data(configJSON.utf8), source: "fuzz checkpoint config")
        let trainer = try Trainer(model: try LanguageModel(config: config, seed: 1), options: options, threads: 1)
        for _ in 0..<2 {
            _ = try trainer.trainStep { batch, _ in
                for i in 0..<batch.tokens.count {
                    batch.tokens[i] = Int32(i % 8)
                    batch.targets[i] = Int32((i + 1) % 8)
                    batch.mask[i] = i % 2 == 0 ? 1 : 0
                }
            }
        }
        try Checkpoint.save(trainer, to: path)
    }
}

/// Files of one process in a private temporary directory: the file readers
/// are fuzzed through real files, as users reach them.
enum Scratch {
    nonisolated(unsafe) private static var directory: String?

    static func path(_ name: String) throws -> String {
        if directory == nil {
            let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
            var template = Array("\(base)/kernellab-fuzz.XXXXXX".utf8CString)
            guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
            directory = String(cString: made)
            atexit { if let made = Scratch.directory { try? FileManager.default.removeItem(atPath: made) } }
        }
        return directory! + "/" + name
    }

    static func write(_ bytes: [UInt8], name: String) throws -> String {
        let path = try path(name)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw CocoaError(.fileWriteUnknown) }
        return path
    }
}
