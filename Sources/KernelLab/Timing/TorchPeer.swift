import Foundation

/// The PyTorch eager peer of a train-bench row (`Sources/compare/train_bench.py`,
/// run with a Python that has torch): the same pattern, sizes, batch and
/// threads, timed the same way (median step after a warm-up), just after
/// the lab's own measurement so both see the machine in the same state.
public enum TorchPeer {
    public struct Result: Sendable {
        public var model: String
        /// `torch` (the lab's model in PyTorch eager) or `mambapy` (mambapy's Mamba blocks).
        public var impl: String
        public var threads: Int
        public var torchVersion: String
        public var parameters: Int
        public var stepMedian: Double
        public var tokensPerSecond: Double
    }

    /// Runs the script (found beside the working directory's Sources/compare)
    /// and parses its JSON line.
    ///
    /// - Throws: `KernelLabError.io` when the script is missing, fails, or prints no result.
    public static func run(python: String, model: ModelDecodeBenchmark.Model, row: TrainBenchmark.Row, warmup: Int, repeats: Int,
                           impl: String = "torch", script: String = "Sources/compare/train_bench.py") throws -> Result {
        guard FileManager.default.fileExists(atPath: script) else {
            throw KernelLabError.io(path: script, reason: "the torch peer script is missing (run from the repository's root)")
        }
        let c = model.config
        let arguments = [script, "--pattern", c.pattern, "--vocab", "\(c.vocabulary)", "--d-model", "\(c.dModel)", "--heads", "\(c.heads)",
                         "--d-state", "\(c.dState)", "--expand", "\(c.expand)", "--conv", "\(c.convKernel)", "--dt-rank", "\(c.dtRank)",
                         "--batch", "\(row.batch)", "--seq", "\(row.seq)", "--threads", "\(row.threads)", "--warmup", "\(warmup)",
                         "--repeats", "\(repeats)", "--impl", impl]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        for key in ["OMP_NUM_THREADS", "MKL_NUM_THREADS"] { environment[key] = "\(row.threads)" }
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch {
            throw KernelLabError.io(path: python, reason: "cannot start the torch peer: \(error.localizedDescription)")
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let median = object["step_median_s"] as? Double, let tokens = object["tokens_per_s"] as? Double else {
            throw KernelLabError.io(path: script, reason: "the torch peer failed (status \(process.terminationStatus)): "
                                        + errors.split(separator: "\n").suffix(3).joined(separator: " / "))
        }
        let version = (object["torch"] as? String ?? "?") + ((object["mambapy"] as? String).map { ", mambapy \($0)" } ?? "")
        return Result(model: model.name, impl: impl, threads: row.threads, torchVersion: version,
                      parameters: object["parameters"] as? Int ?? 0, stepMedian: median, tokensPerSecond: tokens)
    }

    /// The side-by-side table: lab and torch tokens/s per (model, threads) and their ratio.
    public static func markdown(_ peers: [Result], rows: [TrainBenchmark.Row]) -> String {
        var out = "Beside PyTorch \(peers.first?.torchVersion ?? "") eager (Sources/compare/train_bench.py, the same model and step, "
            + "measured right after the lab's; peer `torch` is the lab's model written in PyTorch, `mambapy` is mambapy's Mamba blocks "
            + "with its parallel scan):\n\n"
        out += "| model | threads | peer | lab tokens/s | peer tokens/s | lab / peer | lab parameters | peer parameters |\n"
        out += "|---|---:|---|---:|---:|---:|---:|---:|\n"
        for p in peers {
            guard let r = rows.first(where: { $0.model == p.model && $0.threads == p.threads }) else { continue }
            out += "| \(p.model) | \(p.threads) | \(p.impl) | " + String(format: "%.0f | %.0f | %.2fx", r.tokensPerSecond, p.tokensPerSecond,
                                                                         r.tokensPerSecond / p.tokensPerSecond)
                + " | \(r.parameters) | \(p.parameters) |\n"
        }
        return out
    }
}
