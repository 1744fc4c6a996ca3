import Foundation
import KernelLab
import XCTest

/// The library side of the commands (AttentionBenchmark, AttentionRun) and,
/// when it has been built, the `kernel-lab` executable itself. Nothing here
/// asserts a time.
final class CLITests: TemporaryDirectoryTestCase {
    // MARK: - attention benchmark

    func testBenchmarkReportAndJSON() throws {
        let shape = try AttentionShape(batch: 1, heads: 2, queryLength: 8, keyLength: 12, headDim: 8)
        let benchmark = AttentionBenchmark(shape: shape, causal: true, threads: 1, passes: KernelPass.allCases,
                                           warmup: 0, repeats: 2, sgemmSize: 16)
        let report = try benchmark.run()
        XCTAssertEqual(report.results.map { "\($0.pass.rawValue)/\($0.impl.rawValue)" },
                       ["forward/fused", "forward/unfused", "backward/fused", "backward/unfused"])
        XCTAssertEqual(Set(report.speedups.keys), ["forward", "backward"])
        for result in report.results {
            XCTAssertEqual(result.repeats, 2)
            XCTAssertEqual(result.flops, try Attention.cost(shape: shape, options: AttentionOptions(causal: true),
                                                            impl: result.impl, pass: result.pass).flops)
            XCTAssertEqual(result.peakExtraBytes, try Attention.workspaceBytes(
                shape: shape, options: AttentionOptions(causal: true), impl: result.impl, pass: result.pass, threads: 1))
        }

        let object = try JSONSerialization.jsonObject(with: Data(try report.json().utf8)) as? [String: Any]
        XCTAssertNotNil(object?["sgemm_gflops"] as? Double)
        XCTAssertNotNil(object?["speedups"] as? [String: Double])
        let results = try XCTUnwrap(object?["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, 4)
        let required = ["kernel", "impl", "pass", "threads", "isa", "batch", "heads", "seq", "kv_seq", "head_dim",
                        "causal", "median_seconds", "gflops", "peak_extra_bytes"]
        for result in results {
            XCTAssertTrue(Set(result.keys).isSuperset(of: required), "missing \(Set(required).subtracting(result.keys))")
            XCTAssertEqual(result["kernel"] as? String, "attention")
            XCTAssertEqual(result["seq"] as? Int, 8)
            XCTAssertEqual(result["kv_seq"] as? Int, 12)
            XCTAssertEqual(result["causal"] as? Bool, true)
        }

        let table = report.table()
        XCTAssertTrue(table.contains("peak extra"), table)
        XCTAssertTrue(table.contains("sgemm n=16"), table)
        XCTAssertTrue(table.contains("speedup fused over unfused: forward"), table)
    }

    func testBenchmarkRejectsBadSettings() throws {
        let shape = try AttentionShape(batch: 1, heads: 1, queryLength: 4, keyLength: 4, headDim: 4)
        XCTAssertThrows(.invalidArgument(argument: "repeats", reason: "must be >= 1, got 0"),
                        try AttentionBenchmark(shape: shape, repeats: 0, sgemmSize: 8).run())
        XCTAssertThrows(.invalidArgument(argument: "impls", reason: "name at least one implementation"),
                        try AttentionBenchmark(shape: shape, impls: [], sgemmSize: 8).run())
        XCTAssertThrows(.invalidArgument(argument: "threads", reason: "must be in 1...256, got 0"),
                        try AttentionBenchmark(shape: shape, threads: 0, sgemmSize: 8).run())
    }

    // MARK: - run attention

    private func writeInputs(b: Int = 1, h: Int = 2, lq: Int = 4, lk: Int = 6, d: Int = 8) throws {
        try Tensor.random(shape: [b, h, lq, d], seed: 1).save(npyFile: path("q.npy"))
        try Tensor.random(shape: [b, h, lk, d], seed: 2).save(npyFile: path("k.npy"))
        try Tensor.random(shape: [b, h, lk, d], seed: 3).save(npyFile: path("v.npy"))
        try Tensor.random(shape: [b, h, lq, d], seed: 4).save(npyFile: path("do.npy"))
    }

    private func runJob(_ configure: (inout AttentionRun) -> Void = { _ in }) throws -> AttentionRun.Outcome {
        var job = AttentionRun(qPath: path("q.npy"), kPath: path("k.npy"), vPath: path("v.npy"), outPath: path("o.npy"))
        configure(&job)
        return try job.execute()
    }

    func testRunWritesOutputsAndGradients() throws {
        try writeInputs()
        let grads = path("grads/nested")
        let outcome = try runJob {
            $0.options.causal = true
            $0.lsePath = path("lse.npy")
            $0.gradOutPath = path("do.npy")
            $0.gradsDirectory = grads
            $0.threads = 2
        }
        XCTAssertEqual(outcome.written.map(\.path),
                       [path("o.npy"), path("lse.npy"), grads + "/dq.npy", grads + "/dk.npy", grads + "/dv.npy"])

        let q = try Tensor(npyFile: path("q.npy")), k = try Tensor(npyFile: path("k.npy")), v = try Tensor(npyFile: path("v.npy"))
        let expected = try Attention.forward(q: q, k: k, v: v, options: AttentionOptions(causal: true))
        XCTAssertLessThan(try Tensor(npyFile: path("o.npy")).maxAbsDifference(expected.out), 1e-5)
        XCTAssertLessThan(try Tensor(npyFile: path("lse.npy")).maxAbsDifference(expected.lse), 1e-5)
        XCTAssertEqual(try Tensor(npyFile: grads + "/dq.npy").shape, [1, 2, 4, 8])
        XCTAssertEqual(try Tensor(npyFile: grads + "/dk.npy").shape, [1, 2, 6, 8])
        XCTAssertEqual(try Tensor(npyFile: grads + "/dv.npy").shape, [1, 2, 6, 8])
    }

    func testRunRejectsNonfiniteInputsUnlessAllowed() throws {
        try writeInputs()
        let k = try Tensor(npyFile: path("k.npy"))
        k[5] = .nan
        try k.save(npyFile: path("k.npy"))
        guard case .invalidArgument("k", let reason)? = kernelLabError(try runJob()) else {
            return XCTFail("NaN in k accepted")
        }
        XCTAssertTrue(reason.contains("flat index 5"), reason)
        XCTAssertTrue(reason.contains("--allow-nonfinite"), reason)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.npy")))

        // Allowed, the run completes and the NaN reaches the output. k[5] is
        // key 0 of head 0, which every (non-causal) query of head 0 attends:
        // all of head 0 depends on it, none of head 1 does.
        for impl in KernelImpl.allCases {
            let outcome = try runJob { $0.allowNonfinite = true; $0.impl = impl }
            XCTAssertEqual(outcome.written.map(\.path), [path("o.npy")])
            let out = try Tensor(npyFile: path("o.npy"))
            XCTAssertEqual(out.shape, [1, 2, 4, 8])
            let values = out.toArray()
            XCTAssertTrue(values[..<32].allSatisfy(\.isNaN), "\(impl): head 0 is \(values[..<32])")
            XCTAssertTrue(values[32...].allSatisfy(\.isFinite), "\(impl): head 1 is \(values[32...])")
        }
    }

    func testRunValidatesArguments() throws {
        try writeInputs()
        XCTAssertThrows(.invalidArgument(argument: "grads-dir", reason: "grad-out and grads-dir must be given together"),
                        try runJob { $0.gradOutPath = self.path("do.npy") })
        guard case .io(_, let reason)? = kernelLabError(try runJob { $0.outPath = self.path("missing/o.npy") }) else {
            return XCTFail("missing output directory accepted")
        }
        XCTAssertTrue(reason.contains("does not exist"), reason)

        try Tensor(shape: [3], values: [1, 2, 3]).save(npyFile: path("slopes.npy"))
        XCTAssertThrows(.shapeMismatch(argument: "alibi-slopes", expected: "(H=2,)", got: "(3,)"),
                        try runJob { $0.alibiSlopesPath = self.path("slopes.npy") })

        try Tensor.random(shape: [1, 2, 4, 8], seed: 9).save(npyFile: path("v.npy"))
        XCTAssertThrows(.shapeMismatch(argument: "v", expected: "(B=1, H=2, Lk=6, d=8), the shape of k", got: "(1, 2, 4, 8)"),
                        try runJob())

        guard case .io(path("absent.npy"), _)? = kernelLabError(try runJob { $0.qPath = self.path("absent.npy") }) else {
            return XCTFail("missing input accepted")
        }
    }

    // MARK: - the executable

    private func launch(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        try launchKernelLab(arguments, environment: environment)
    }

    func testExecutableInfoAndBadISA() throws {
        let info = try launch(["info", "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])

        let bogus = try launch(["info"], environment: ["KERNELLAB_ISA": "bogus"])
        XCTAssertNotEqual(bogus.status, 0)
        XCTAssertTrue(bogus.stderr.contains("KERNELLAB_ISA") && bogus.stderr.contains("bogus"), bogus.stderr)
        XCTAssertEqual(bogus.stdout, "")
    }

    /// KERNELLAB_ISA_MAX reproduces a narrower CPU: a scalar-only host here,
    /// whatever this one supports; an unknown cap is an error.
    func testExecutableISACap() throws {
        let capped = try launch(["info", "--json"], environment: ["KERNELLAB_ISA_MAX": "scalar"])
        XCTAssertEqual(capped.status, 0, capped.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(capped.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["isa"] as? String, "scalar")
        XCTAssertEqual(object["supported_isas"] as? [String], ["scalar"])

        let over = try launch(["info"], environment: ["KERNELLAB_ISA_MAX": "scalar", "KERNELLAB_ISA": "avx2"])
        XCTAssertNotEqual(over.status, 0)
        XCTAssertTrue(over.stderr.contains("KERNELLAB_ISA=avx2 is not supported"), over.stderr)

        let bogus = try launch(["info"], environment: ["KERNELLAB_ISA_MAX": "sse9"])
        XCTAssertNotEqual(bogus.status, 0)
        XCTAssertTrue(bogus.stderr.contains("KERNELLAB_ISA_MAX='sse9'"), bogus.stderr)
    }

    func testExecutableAttentionJSONIsClean() throws {
        let run = try launch(["attention", "--batch", "1", "--heads", "1", "--seq", "8", "--head-dim", "8",
                              "--threads", "1", "--repeats", "1", "--warmup", "0", "--sgemm-size", "16",
                              "--pass", "both", "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((object["results"] as? [Any])?.count, 4)

        let bad = try launch(["attention", "--batch", "1", "--heads", "1", "--seq", "8", "--head-dim", "8", "--threads", "0"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--threads"), bad.stderr)
    }

    /// `kernel-lab decode` prints one row per context and one per step kernel; bad settings are named.
    func testExecutableDecodeTable() throws {
        let run = try launch(["decode", "--heads", "2", "--head-dim", "24", "--contexts", "16", "200", "--channels", "40",
                              "--state", "5", "--threads", "2", "--repeats", "2", "--warmup", "0"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stdout.split(separator: "\n")
        XCTAssertTrue(lines.contains { $0.hasPrefix("     16 ") } && lines.contains { $0.hasPrefix("    200 ") }, run.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("scan step D40 N5") } && lines.contains { $0.hasPrefix("conv step D40 K4") }, run.stdout)
        let bad = try launch(["decode", "--contexts", "0"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--contexts must be positive, got 0"), bad.stderr)
    }

    /// `kernel-lab decode-bench` prints a row per context and writes its documents; bad settings are named.
    func testExecutableDecodeBench() throws {
        let out = path("decode-bench")
        let run = try launch(["decode-bench", "--pattern", "MA", "--d-model", "16", "--heads", "2", "--vocab", "7", "--contexts", "8", "40",
                              "--threads", "1", "--repeats", "1", "--warmup", "0", "--out", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("| MA | 8 |") && run.stdout.contains("| MA | 40 |"), run.stdout)
        for name in ["decode-bench.md", "decode-bench.csv", "decode-bench.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + name), name)
        }
        let bad = try launch(["decode-bench", "--contexts", "0"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--contexts must be positive, got 0"), bad.stderr)
        let pattern = try launch(["decode-bench", "--pattern", "AXA", "--contexts", "8"])
        XCTAssertNotEqual(pattern.status, 0)
        XCTAssertTrue(pattern.stderr.contains("pattern"), pattern.stderr)
    }

    /// `kernel-lab train-bench` prints its table and profile and writes its documents; bad settings are named.
    func testExecutableTrainBench() throws {
        let out = path("train-bench")
        let run = try launch(["train-bench", "--models", "MA", "--d-model", "16", "--heads", "2", "--layers", "2", "--batch", "2",
                              "--seq", "8", "--threads", "1", "--repeats", "1", "--warmup", "0", "--profile", "--profile-steps", "1",
                              "--out", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("| MA | 1 | 2 x 8 |") && run.stdout.contains("## Where the time goes: MA, 1 thread(s)"), run.stdout)
        for name in ["train-bench.md", "train-bench.csv", "train-bench-MA-1t.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + name), name)
        }
        let bad = try launch(["train-bench", "--d-model", "30", "--heads", "4"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--d-model (30) must be a multiple of --heads (4)"), bad.stderr)
        let torch = try launch(["train-bench", "--models", "M", "--d-model", "16", "--layers", "1", "--batch", "1", "--seq", "4",
                                "--threads", "1", "--repeats", "1", "--warmup", "0", "--torch", "/nonexistent/python", "--out", out])
        XCTAssertNotEqual(torch.status, 0)
        XCTAssertTrue(torch.stderr.contains("torch peer"), torch.stderr)
    }

    /// `kernel-lab train`: a short run saves a checkpoint and resumes from it; a corrupt
    /// checkpoint, a bad config file and an unknown model exit non-zero with a message naming them.
    func testExecutableTrainCheckpointsAndErrors() throws {
        let checkpoint = path("run.safetensors")
        let common = ["train", "--pattern", "MA", "--d-model", "16", "--heads", "2", "--d-state", "4", "--batch", "2", "--seq", "24",
                      "--min-len", "2", "--max-len", "4", "--threads", "1", "--log-every", "1", "--checkpoint", checkpoint]
        let first = try launch(common + ["--steps", "2"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("parameters") && first.stdout.contains("step     2") && first.stdout.contains("saved"), first.stdout)
        // Resuming needs the same options (the schedule depends on --steps): the finished run resumes at its end.
        let resumed = try launch(common + ["--steps", "2", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resumed from \(checkpoint) at step 2"), resumed.stdout)
        let changed = try launch(common + ["--steps", "3", "--resume"])
        XCTAssertNotEqual(changed.status, 0)
        XCTAssertTrue(changed.stderr.contains("steps = 2, this run has 3"), changed.stderr)

        try Data([0x10, 0, 0, 0, 0, 0, 0, 0] + Array("{not json".utf8)).write(to: URL(fileURLWithPath: checkpoint))
        let corrupt = try launch(common + ["--steps", "2", "--resume"])
        XCTAssertNotEqual(corrupt.status, 0)
        XCTAssertTrue(corrupt.stderr.contains("run.safetensors"), corrupt.stderr)

        let config = path("bad.json")
        try Data(#"{"model": "rnn", "layers": 2, "d_model": 16}"#.utf8).write(to: URL(fileURLWithPath: config))
        let bad = try launch(["train", "--config", config, "--steps", "1"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("unknown model 'rnn'"), bad.stderr)
        let pattern = try launch(["train", "--pattern", "AQ", "--steps", "1"])
        XCTAssertNotEqual(pattern.status, 0)
        XCTAssertTrue(pattern.stderr.contains("pattern"), pattern.stderr)
    }

    /// `kernel-lab copy`: list, a smoke run with its reports, shards then merge, and bad arguments named.
    func testExecutableCopyRunShardMergeAndErrors() throws {
        let list = try launch(["copy", "list", "--preset", "smoke"])
        XCTAssertEqual(list.status, 0, list.stderr)
        for experiment in CopyExperiment.allCases { XCTAssertTrue(list.stdout.contains(experiment.rawValue), list.stdout) }
        let out = path("copying")
        let run = try launch(["copy", "run", "--experiment", "ngram-construction", "state-capacity", "--preset", "smoke", "--seeds", "2",
                              "--threads", "1", "--out", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("ngram-construction:") && run.stdout.contains("wrote \(out)/index.html"), run.stdout)
        for name in ["ngram-construction/summary.md", "state-capacity/results.json", "state-capacity/capacity.svg", "index.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + name), name)
        }
        let slices = [path("slice-1"), path("slice-2")]
        for (k, slice) in slices.enumerated() {
            let shard = try launch(["copy", "run", "--experiment", "state-capacity", "--preset", "smoke", "--seeds", "2", "--threads", "1",
                                    "--shard", "\(k + 1)/2", "--out", slice])
            XCTAssertEqual(shard.status, 0, shard.stderr)
            XCTAssertTrue(shard.stdout.contains("shard \(k + 1)/2 done"), shard.stdout)
        }
        let merged = try launch(["copy", "merge", "--experiment", "state-capacity", "--preset", "smoke", "--seeds", "2",
                                 "--out", path("merged")] + slices)
        XCTAssertEqual(merged.status, 0, merged.stderr)
        XCTAssertTrue(merged.stdout.contains("merged 4 run(s) from 2 slice(s)"), merged.stdout)
        let missing = try launch(["copy", "merge", "--experiment", "state-capacity", "--preset", "smoke", "--seeds", "2",
                                  "--out", path("half"), slices[0]])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("in no slice"), missing.stderr)
        for (arguments, message) in [(["copy", "run", "--experiment", "copying"], "unknown experiment 'copying'"),
                                     (["copy", "run", "--shard", "3/2"], "--shard must be K/N"),
                                     (["copy", "run", "--seeds", "0"], "--seeds must be in 1...100")] {
            let bad = try launch(arguments)
            XCTAssertNotEqual(bad.status, 0, arguments.joined(separator: " "))
            XCTAssertTrue(bad.stderr.contains(message), bad.stderr)
        }
    }

    /// `kernel-lab layers` prints a row per kernel and AdamW's fused/unfused ratio.
    func testExecutableLayersTable() throws {
        let out = path("layers-report")
        let run = try launch(["layers", "--count", "4096", "--dim", "64", "--vocabularies", "32", "100", "--threads", "2",
                              "--repeats", "1", "--warmup", "0", "--out", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        for name in ["silu forward", "gelu_tanh backward", "layer_norm backward", "rms_norm backward", "cross-entropy + gradient V32",
                     "cross-entropy + gradient V100", "adamw unfused (4 passes)"] {
            XCTAssertTrue(run.stdout.contains(name), "\(name) missing: \(run.stdout)")
        }
        XCTAssertTrue(run.stdout.contains("adamw: fused over unfused"), run.stdout)
        // The report: a table row and a chart point per kernel (every one has FLOPs in its cost model).
        let table = try String(contentsOfFile: out + "/layers.md", encoding: .utf8)
        XCTAssertTrue(table.contains("| cross-entropy + gradient V100 |") && table.contains("| adamw fused |"), table)
        let csv = try String(contentsOfFile: out + "/layers.csv", encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 1 + table.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| kernel") }.count)
        let svg = try String(contentsOfFile: out + "/layers-roofline.svg", encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<?xml") || svg.hasPrefix("<svg"), String(svg.prefix(80)))
        XCTAssertTrue(svg.contains("silu forward") && svg.contains("adamw unfused"), "labels on the chart")
        let bad = try launch(["layers", "--count", "10", "--dim", "64"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--dim (64) must be <= --count (10)"), bad.stderr)
    }

    func testExecutableRunAttentionErrors() throws {
        try writeInputs()
        let missing = try launch(["run", "attention", "--q", path("nope.npy"), "--k", path("k.npy"), "--v", path("v.npy"),
                                  "--out", path("o.npy")])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("nope.npy"), missing.stderr)

        let ok = try launch(["run", "attention", "--q", path("q.npy"), "--k", path("k.npy"), "--v", path("v.npy"),
                             "--out", path("o.npy"), "--threads", "1", "--impl", "unfused"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertEqual(try Tensor(npyFile: path("o.npy")).shape, [1, 2, 4, 8])
    }
}
