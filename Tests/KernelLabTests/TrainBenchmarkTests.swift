import CKernels
import Foundation
@testable import KernelLab
import XCTest

/// `kernel-lab train-bench`: the profile accounts for every kernel call with
/// its cost model, does not change what a step computes, and the documents
/// carry what they claim. Nothing here asserts a time.
final class TrainBenchmarkTests: XCTestCase {
    private func models() throws -> [ModelDecodeBenchmark.Model] {
        [.init(name: "transformer", config: try ModelConfig(vocabulary: 11, dModel: 16, pattern: "AA", heads: 2, position: .rope)),
         .init(name: "mamba", config: try ModelConfig(vocabulary: 11, dModel: 16, pattern: "M", dState: 4))]
    }

    func testProfileCoversTheStepWithCostModels() throws {
        var config = TrainBenchmark.Config(models: try models())
        (config.batch, config.seq, config.threads, config.warmup, config.repeats, config.profileSteps) = (2, 9, [1, 2], 0, 1, 2)
        let rows = try TrainBenchmark.run(config)
        XCTAssertNil(OpProfiler.active, "the profiler is removed after the profiled steps")
        XCTAssertEqual(rows.map(\.threads), [1, 2, 1, 2])
        for r in rows {
            XCTAssertEqual(r.parameterStateBytes, 16 * r.parameters)
            XCTAssertEqual(r.accountedBytes, r.parameterStateBytes + r.activationBytes)
            let sum = r.ops.reduce(0) { $0 + $1.secondsPerStep }
            XCTAssertLessThanOrEqual(sum, try XCTUnwrap(r.profiledStepSeconds) * 1.001, "ops are timed inside the step")
            XCTAssertTrue(r.ops.allSatisfy { $0.callsPerStep > 0 })
            let names = Set(r.ops.map { $0.scope + "/" + $0.name })
            for required in ["model fwd/embedding", "model fwd/lm head", "model fwd/cross entropy", "model bwd/lm head", "optimizer/adamw",
                             "optimizer/gradient norm"] {
                XCTAssertTrue(names.contains(required), "\(required) missing from \(names.sorted())")
            }
        }
        // The attention op's FLOPs are its cost model's, once per layer per step.
        let transformer = rows[0]
        let attention = try XCTUnwrap(transformer.ops.first { $0.scope == "attention fwd" && $0.name == "attention" })
        XCTAssertEqual(attention.callsPerStep, 2)
        var p = kl_attn_params(batch: 2, heads: 2, q_len: 9, kv_len: 9, head_dim: 8, causal: 1, scale: 0, alibi_slopes: nil,
                               windows: nil, tiles: nil, layout: nil, accumulate: 0)
        var cost = kl_cost()
        XCTAssertEqual(kl_attn_cost(&p, KL_IMPL_FUSED, KL_PASS_FORWARD, &cost), KL_OK)
        XCTAssertEqual(try XCTUnwrap(attention.flops), 2 * cost.flops, accuracy: 1e-6 * cost.flops)
        let mamba = rows[2]
        XCTAssertTrue(mamba.ops.contains { $0.scope == "mamba bwd" && $0.name == "selective scan" && ($0.flops ?? 0) > 0 })
        XCTAssertTrue(mamba.ops.contains { $0.name == "residual copy" && $0.flops == 0 && ($0.bytes ?? 0) > 0 }, "a pure move: bytes, no FLOPs")
        // The kernels read the projections' outputs in place: no layout moves are left in a step.
        for r in rows {
            XCTAssertFalse(r.ops.contains { ["heads split", "heads merge", "to channel-major"].contains($0.name) },
                           "\(r.model): \(r.ops.map(\.name))")
        }

        let roofs = [1: TrainBenchmark.Roofs(peakGflops: 100, l3GBs: 50, dramGBs: 10)]
        let markdown = TrainBenchmark.markdown(rows, header: "# t", roofs: roofs)
        XCTAssertTrue(markdown.contains("## Where the time goes: transformer, 1 thread(s)"), markdown)
        XCTAssertTrue(markdown.contains("| attention fwd | attention | 2 |"), markdown)
        XCTAssertTrue(markdown.contains("2 threads run"), markdown)
        XCTAssertEqual(TrainBenchmark.csv(rows).split(separator: "\n").count, 1 + rows.reduce(0) { $0 + 1 + $1.ops.count })
        let svg = TrainBenchmark.roofline(transformer, roofs: roofs[1], caption: "t")
        XCTAssertTrue(svg.contains("L3 roof 50 GB/s") && svg.contains("DRAM roof 10 GB/s") && svg.contains("attention fwd"))
    }

    /// A profiled step computes the same bits as an unprofiled one.
    func testProfilingDoesNotChangeTheStep() throws {
        let config = try ModelConfig(vocabulary: CopyTask.vocabulary, dModel: 16, pattern: "MA", heads: 2, dState: 4)
        func losses(profiled: Bool) throws -> [Double] {
            let model = try LanguageModel(config: config, seed: 5)
            let trainer = try Trainer(model: model, options: TrainingOptions(steps: 10, batch: 2, seq: 8), threads: 2)
            let task = try CopyTask(lengths: 2...3)
            if profiled { OpProfiler.active = OpProfiler() }
            defer { OpProfiler.active = nil }
            return try (0..<3).map { _ in try trainer.trainStep { task.fill($0, seed: 1, step: $1) }.loss }
        }
        XCTAssertEqual(try losses(profiled: true), try losses(profiled: false))
    }

    func testBadSettingsAreErrors() throws {
        var config = TrainBenchmark.Config(models: [])
        XCTAssertThrowsError(try TrainBenchmark.run(config))
        config = TrainBenchmark.Config(models: try models())
        config.profileSteps = -1
        XCTAssertThrowsError(try TrainBenchmark.run(config))
        config.profileSteps = 0
        config.threads = []
        XCTAssertThrowsError(try TrainBenchmark.run(config))
    }
}
