import Foundation
import KernelLab
import KernelLabFuzzTargets
import XCTest

/// The fuzz targets' committed inputs, replayed through the same `run` the
/// libFuzzer harness calls: the seed corpus (every seed must still be
/// accepted, so the fuzzers start from inputs that reach deep into each
/// reader) and every crash `make fuzz` found (kept in Tests/Fuzz/Regressions;
/// each must now run without a trap).
final class FuzzRegressionTests: XCTestCase {
    static let fuzz = packageProfiles.deletingLastPathComponent().appendingPathComponent("Tests/Fuzz")

    private func files(_ kind: String, _ target: FuzzTarget) -> [URL] {
        let directory = Self.fuzz.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
        return ((try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? [])
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
    }

    func testEveryTargetHasSeedsAndEverySeedIsAccepted() throws {
        for target in FuzzTarget.allCases {
            let seeds = target.seeds(root: packageProfiles.deletingLastPathComponent().path)
            XCTAssertFalse(seeds.isEmpty, "no seed corpus for fuzz target \(target.rawValue)")
            for seed in seeds {
                XCTAssertTrue(target.run(Array(try Data(contentsOf: URL(fileURLWithPath: seed)))), "\(target.rawValue) rejects its seed \(seed)")
            }
        }
    }

    func testKeptCrashesRunWithoutATrap() throws {
        var replayed = 0
        for target in FuzzTarget.allCases {
            for input in files("Regressions", target) {
                // A trap here fails the whole test run, as it failed the fuzzer.
                let accepted = target.run(Array(try Data(contentsOf: input)))
                if input.lastPathComponent.hasPrefix("reject-") {
                    XCTAssertFalse(accepted, "\(target.rawValue) accepts \(input.lastPathComponent)")
                }
                replayed += 1
            }
        }
        XCTAssertGreaterThan(replayed, 0)
    }

    /// The first crash: a config with `windows` but no Hard-ALiBi was accepted,
    /// and its checkpoint then failed to resume (the key was dropped from the
    /// stored config). Keys that shape no layer are now errors naming the key.
    func testConfigKeysThatShapeNoLayerAreRejected() throws {
        func reason(_ json: String) -> String? {
            do {
                _ = try ModelConfig.decode(Data(json.utf8), source: "test")
                return nil
            } catch KernelLabError.invalidArgument(let argument, let reason) {
                return argument + ": " + reason
            } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(reason(#"{"pattern": "AM", "vocab": 30, "d_model": 16, "windows": [1, 0, 2, 0]}"#)?.contains("windows"), true)
        XCTAssertEqual(reason(#"{"pattern": "AM", "vocab": 30, "d_model": 16, "rotary_dims": 2}"#)?.contains("rotary_dims"), true)
        XCTAssertEqual(reason(#"{"pattern": "MM", "vocab": 30, "d_model": 16, "heads": 2}"#)?.contains("heads"), true)
        XCTAssertEqual(reason(#"{"pattern": "AL", "vocab": 30, "d_model": 16, "d_state": 4}"#)?.contains("d_state"), true)
        XCTAssertNil(reason(#"{"pattern": "AM", "vocab": 30, "d_model": 16, "heads": 4, "position": "hard_alibi", "windows": [1, 0, 2, 0], "d_state": 4}"#))
        // A config made in code with fields its pattern does not use equals
        // the one its JSON gives back (`train --pattern MM --position rope`
        // must resume from its own checkpoint).
        for (pattern, position) in [("MM", ModelConfig.Position.hardAlibi), ("LA", .alibi), ("AA", .nope)] {
            let made = try ModelConfig(vocabulary: 30, dModel: 16, pattern: pattern, heads: 2, position: position, rotaryDims: 4,
                                       ropeBase: 500, windows: [3, 0], mlpRatio: 2, dState: 4, expand: 3, convKernel: 2, dtRank: 3)
            XCTAssertEqual(try ModelConfig.decode(Data(made.jsonString.utf8), source: "round trip"), made, pattern)
        }
        // Every accepted config survives the checkpoint's JSON.
        let config = try ModelConfig.decode(Data(#"{"pattern": "MAL", "vocab": 30, "d_model": 16, "position": "rope", "rope_base": 500, "norm_eps": 1e-6}"#.utf8), source: "test")
        XCTAssertEqual(try ModelConfig.decode(Data(config.jsonString.utf8), source: "again"), config)
    }
}
