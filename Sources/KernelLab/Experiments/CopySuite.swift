import Foundation

/// Runs copying experiments end to end: plans, an up-front time estimate,
/// the training runs (each once, resumable), the reports under
/// `<directory>/<experiment>/` and the index `<directory>/index.html`.
/// Runs live in `<directory>/runs/`, shared by the experiments that ask for
/// the same run.
public final class CopySuite {
    public let directory: String
    public let threads: Int
    public let progress: RunProgress
    public let runner: CopyRunner

    public init(directory: String, threads: Int, progress: RunProgress) throws {
        self.directory = directory
        self.threads = threads
        self.progress = progress
        runner = try CopyRunner(directory: (directory as NSString).appendingPathComponent("runs"), threads: threads, progress: progress)
    }

    /// Upper bound of the training time of the plan's unfinished runs (every
    /// run to its full budget), from 2 timed steps of each model after one warm-up.
    public func estimate(_ plans: [CopyPlan]) throws -> (seconds: Double, runs: Int, done: Int) {
        var perStep: [String: Double] = [:]
        var total = 0.0, runs = 0, done = 0
        for plan in plans {
            for (_, spec) in plan.runs {
                runs += 1
                if runner.finished(spec) != nil { done += 1; continue }
                let key = "\(spec.config)|\(spec.batch)|\(spec.seq)|\(spec.task.kind)"
                if perStep[key] == nil {
                    let model = try LanguageModel(config: try spec.modelConfig(), seed: 0)
                    let trainer = try Trainer(model: model, options: TrainingOptions(steps: 3, batch: spec.batch, seq: spec.seq), threads: threads)
                    let fill = try CopyRunner.trainingFill(spec)
                    var seconds: [Double] = []
                    for _ in 0..<3 {
                        seconds.append(try trainer.trainStep { batch, micro in _ = fill(batch, micro) }.seconds)
                    }
                    perStep[key] = seconds.dropFirst().reduce(0, +) / 2
                }
                // Evaluations add about a tenth at these budgets.
                total += perStep[key]! * Double(spec.steps) * 1.1
            }
        }
        return (total, runs, done)
    }

    /// The distinct runs of `plans` (a run two experiments share counts once), in plan order.
    public static func distinctRuns(_ plans: [CopyPlan]) -> [(label: String, spec: CopyRunSpec)] {
        var seen = Set<String>()
        return plans.flatMap(\.runs).filter { seen.insert($0.spec.id).inserted }
    }

    /// Trains shard `index` of `count` (1-based) of the experiments' distinct
    /// runs: run i belongs to shard i mod count + 1. Shards share nothing but
    /// the runs directory, so they can run as separate processes or on
    /// separate machines (whose runs directories are then copied together);
    /// a later unsharded `run` finds every run finished and writes the reports.
    /// Returns the number of runs of the grid still unfinished.
    public func runShard(_ experiments: [CopyExperiment], preset: CopyPreset, seeds: Int, index: Int, count: Int,
                         scale: CopyScale? = nil) throws -> Int {
        guard count >= 1, (1...count).contains(index) else {
            throw KernelLabError.invalidArgument(argument: "shard", reason: "must be K/N with 1 <= K <= N, got \(index)/\(count)")
        }
        let scale = scale ?? .of(preset)
        let plans = try experiments.map { try $0.plan(scale: scale, preset: preset, seeds: seeds) }
        let runs = Self.distinctRuns(plans)
        let mine = runs.enumerated().filter { $0.offset % count == index - 1 }.map(\.element)
        progress.line("shard \(index)/\(count): \(mine.count) of the grid's \(runs.count) runs")
        for (i, run) in mine.enumerated() {
            _ = try runner.run(run.spec, label: "shard \(index)/\(count) [\(i + 1)/\(mine.count)] \(run.label) seed \(run.spec.seed)")
        }
        return runs.filter { runner.finished($0.spec) == nil }.count
    }

    /// Copies the finished runs of other output directories (shards run
    /// elsewhere) into this one's runs. A run present on both sides must hold
    /// the same result (its wall time and thread count aside). Returns how
    /// many runs were added.
    public func merge(from directories: [String]) throws -> Int {
        var added = 0
        for source in directories {
            let runs = (source as NSString).appendingPathComponent("runs")
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: runs) else {
                throw KernelLabError.io(path: runs, reason: "not a copy output directory (no runs/ folder)")
            }
            for name in names.sorted() where name.hasSuffix(".json") && !name.hasSuffix(".partial.json") {
                let path = (runs as NSString).appendingPathComponent(name)
                guard let data = FileManager.default.contents(atPath: path),
                      let result = try? JSONDecoder.lab.decode(CopyRunResult.self, from: data), result.id == result.spec.id,
                      name == result.id + ".json" else {
                    throw KernelLabError.io(path: path, reason: "not a finished run's result (or its name does not match its spec)")
                }
                if let existing = runner.finished(result.spec) {
                    var a = existing, b = result
                    (a.wallSeconds, a.threads, b.wallSeconds, b.threads) = (0, 0, 0, 0)
                    // Compared as bytes: a NaN loss (a diverged run) equals itself there.
                    guard try JSONEncoder.sorted.encode(a) == JSONEncoder.sorted.encode(b) else {
                        throw KernelLabError.invalidArgument(argument: "merge",
                                                             reason: "run \(result.id) differs between \(source) and \(directory) (different ISA or code?)")
                    }
                    continue
                }
                try writeFileAtomically(runner.path(result.id, ".json"), bytes: Array(data))
                added += 1
            }
        }
        return added
    }

    /// Runs `experiments` at `preset` and writes their reports. Returns the reports.
    /// With `train: false` nothing is trained: a run not finished already is an error naming it.
    public func run(_ experiments: [CopyExperiment], preset: CopyPreset, seeds: Int, scale: CopyScale? = nil,
                    train: Bool = true) throws -> [CopyExperimentReport] {
        let scale = scale ?? .of(preset)
        let plans = try experiments.map { try $0.plan(scale: scale, preset: preset, seeds: seeds) }
        if !train {
            let missing = Self.distinctRuns(plans).filter { runner.finished($0.spec) == nil }
            guard missing.isEmpty else {
                throw KernelLabError.invalidArgument(argument: "merge", reason: "\(missing.count) run(s) of the grid are in no slice, e.g. "
                                                     + missing.prefix(3).map(\.spec.id).joined(separator: ", "))
            }
        }
        let estimate = try estimate(plans)
        progress.line("\(estimate.runs) training runs (\(estimate.done) done earlier, shared runs counted per experiment); "
                      + "expected training time at most \(clock(estimate.seconds)) on \(threads) thread(s)")
        var reports: [CopyExperimentReport] = []
        for plan in plans {
            let started = Date()
            progress.line("== \(plan.experiment.rawValue) (\(preset.rawValue), \(seeds) seed(s)) ==")
            let context = "Preset `\(preset.rawValue)`, \(seeds) seed(s), \(threads) thread(s), ISA \(try ISA.active.rawValue). "
                + "Written by `kernel-lab copy run --experiment \(plan.experiment.rawValue) --preset \(preset.rawValue) --seeds \(seeds)`."
            let report: CopyExperimentReport
            if plan.experiment == .construction {
                let pool = try ThreadPool(threads: threads)
                let measured = try NGramConstruction.run(scale: scale, seeds: seeds, pool: pool, progress: progress)
                report = try measured.report(scale: scale, seeds: seeds, preset: preset, context: context)
            } else {
                var results: [CopyRunResult] = []
                for (index, run) in plan.runs.enumerated() {
                    let label = "[\(index + 1)/\(plan.runs.count)] \(run.label) seed \(run.spec.seed)"
                    results.append(try runner.run(run.spec, label: label))
                }
                report = try plan.experiment.report(plan: plan, results: results, context: context)
            }
            _ = try writeDocuments(report.documents, to: (directory as NSString).appendingPathComponent(plan.experiment.rawValue))
            progress.line("\(plan.experiment.rawValue): " + report.verdicts.map { $0.verdict.rawValue }.joined(separator: ", ")
                          + " (\(clock(Date().timeIntervalSince(started))))")
            reports.append(report)
        }
        try writeIndex()
        return reports
    }

    /// `index.html`: every experiment with a report in `directory`, its verdicts and its files.
    public func writeIndex() throws {
        var html = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>KernelLab: copying experiments</title>\n"
            + "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}li{margin:.2em 0}.v{font-weight:bold}</style></head><body>\n"
            + "<h1>Copying experiments</h1>\n<p>Transformers against fixed-state models on copying, after Jelassi et al. 2024, "
            + "trained and run on the lab's kernels.</p>\n"
        for experiment in CopyExperiment.allCases {
            let folder = (directory as NSString).appendingPathComponent(experiment.rawValue)
            guard let data = FileManager.default.contents(atPath: (folder as NSString).appendingPathComponent("results.json")),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
            html += "<h2>\(escapeXML(experiment.title))</h2>\n<p>preset \(escapeXML(json["preset"] as? String ?? "?")), "
                + "\(json["seeds"] as? Int ?? 0) seed(s): <a href=\"\(experiment.rawValue)/summary.md\">summary</a>, "
                + "<a href=\"\(experiment.rawValue)/results.json\">results.json</a>, <a href=\"\(experiment.rawValue)/curves.csv\">curves.csv</a>"
            let svgs = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".svg") }.sorted()
            for svg in svgs { html += ", <a href=\"\(experiment.rawValue)/\(svg)\">\(svg)</a>" }
            html += "</p>\n<ul>\n"
            for verdict in json["verdicts"] as? [[String: Any]] ?? [] {
                html += "<li><span class=\"v\">\(escapeXML(verdict["verdict"] as? String ?? ""))</span>: "
                    + "\(escapeXML(verdict["claim"] as? String ?? "")) <br><small>\(escapeXML(verdict["measured"] as? String ?? ""))</small></li>\n"
            }
            html += "</ul>\n"
            for svg in svgs { html += "<img src=\"\(experiment.rawValue)/\(svg)\" alt=\"\(svg)\" style=\"max-width:100%\">\n" }
        }
        html += "</body></html>\n"
        _ = try writeDocuments([("index.html", html)], to: directory)
    }
}
