import ArgumentParser
import Foundation
import KernelLab

extension CopyPreset: ExpressibleByArgument {}

/// `kernel-lab copy`: the copying experiments.
struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copying experiments: transformers against Mamba and LSTM models (Jelassi et al. 2024).",
        subcommands: [Run.self, Merge.self, List.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the experiments and what each preset runs.")
        @Option(help: "Preset: smoke, quick, paper.") var preset = CopyPreset.quick
        @Option(help: "Seeds per model.") var seeds = 3

        func run() throws {
            for experiment in CopyExperiment.allCases {
                let plan = try experiment.plan(preset: preset, seeds: seeds)
                let steps = plan.runs.reduce(0) { $0 + $1.spec.steps }
                let tokens = plan.runs.reduce(0) { $0 + $1.spec.steps * $1.spec.batch * $1.spec.seq }
                print(experiment.rawValue.padding(toLength: 22, withPad: " ", startingAt: 0) + experiment.title)
                print("    \(preset.rawValue): \(plan.runs.count) training runs, at most \(steps) steps, \(tokens) tokens")
            }
        }
    }

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Join the runs of shards that ran elsewhere into one output directory and write its reports.",
            discussion: """
                Each SLICE is the --out directory of a `copy run --shard K/N` (copied from \
                the machine that ran it). Their finished runs are copied into --out/runs/ \
                (a run on both sides must hold the same result), then the reports are \
                written as `copy run` writes them, without training: a run of the grid in \
                no slice is an error naming it. A grid gives the same results however it \
                was sharded.
                """)

        @Argument(help: "Output directories of the shards.") var slices: [String]
        @Option(parsing: .upToNextOption, help: "Experiments (or all).") var experiment: [String] = ["all"]
        @Option(help: "Preset the shards ran.") var preset = CopyPreset.quick
        @Option(help: "Seeds the shards ran.") var seeds = 3
        @Option(help: "Output directory.") var out = "reports/copying"

        func run() throws {
            let experiments = try Run.parse(["--experiment"] + experiment).experiments()
            let suite = try CopySuite(directory: out, threads: 1, progress: RunProgress(isTerminal: false))
            let added = try suite.merge(from: slices)
            print("merged \(added) run(s) from \(slices.count) slice(s) into \(out)/runs")
            let reports = try suite.run(experiments, preset: preset, seeds: seeds, train: false)
            for report in reports {
                print("\(report.experiment.rawValue): " + report.verdicts.map(\.verdict.rawValue).joined(separator: ", "))
            }
            print("wrote \(out)/index.html")
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run experiments and write their reports (reports/copying/ by default).",
            discussion: """
                Each experiment writes <out>/<experiment>/: summary.md (the paper's claims \
                beside the measured numbers, intervals over seeds, a verdict), results.json, \
                curves.csv and SVG plots; <out>/index.html links them. Training runs are \
                kept in <out>/runs/: a finished run is not trained again, an interrupted \
                one (Ctrl-C, or a killed process) resumes from its last checkpoint when \
                the same command is run again. train-efficiency and length-generalization \
                share their runs. Presets: smoke (seconds, checks the pipeline), quick \
                (make copy, under 45 minutes on 2 cores), paper (hours; the expected time \
                is printed before training starts).
                """)

        @Option(parsing: .upToNextOption, help: "Experiments, or all (the copy paper's five) or beyond (phonebook, hybrids): \(CopyExperiment.allCases.map(\.rawValue).joined(separator: ", ")).")
        var experiment: [String] = ["all"]
        @Option(help: "Preset: smoke, quick, paper.") var preset = CopyPreset.quick
        @Option(help: "Seeds per model (intervals need 3 or more).") var seeds = 3
        @Option(help: "Threads (default: all CPUs).") var threads: Int?
        @Option(help: "Output directory.") var out = "reports/copying"
        @Option(help: "Train only shard K of N of the grid's runs (K/N); a later run without --shard writes the reports.")
        var shard: String?

        func shardParts() throws -> (Int, Int)? {
            guard let shard else { return nil }
            let parts = shard.split(separator: "/").map { Int($0) }
            guard parts.count == 2, let k = parts[0], let n = parts[1], n >= 1, (1...n).contains(k) else {
                throw ValidationError("--shard must be K/N with 1 <= K <= N, got '\(shard)'")
            }
            return (k, n)
        }

        func validate() throws {
            try validateThreads(threads)
            guard (1...100).contains(seeds) else { throw ValidationError("--seeds must be in 1...100, got \(seeds)") }
            _ = try experiments()
            _ = try shardParts()
        }

        func experiments() throws -> [CopyExperiment] {
            if experiment == ["all"] { return CopyExperiment.copying }
            if experiment == ["beyond"] { return CopyExperiment.beyond }
            return try experiment.map { name in
                guard let value = CopyExperiment(rawValue: name) else {
                    throw ValidationError("unknown experiment '\(name)'; expected all, beyond or one of "
                                          + CopyExperiment.allCases.map(\.rawValue).joined(separator: ", "))
                }
                return value
            }
        }

        func run() throws {
            let shard = try shardParts()
            // Shards usually share a terminal: plain lines, each naming its shard.
            let progress = shard == nil ? RunProgress() : RunProgress(isTerminal: false)
            let suite = try CopySuite(directory: out, threads: threadsOrAllCPUs(threads), progress: progress)
            let interrupt = InterruptFlag()
            suite.runner.shouldStop = { interrupt.isSet }
            do {
                if let (k, n) = shard {
                    let remaining = try suite.runShard(try experiments(), preset: preset, seeds: seeds, index: k, count: n)
                    print("shard \(k)/\(n) done; \(remaining) run(s) of the grid unfinished"
                          + (remaining == 0 ? ": run again without --shard for the reports" : " (other shards)"))
                    return
                }
                let reports = try suite.run(try experiments(), preset: preset, seeds: seeds)
                for report in reports {
                    print("\(report.experiment.rawValue):")
                    for v in report.verdicts { print("  \(v.verdict.rawValue): \(v.claim)") }
                }
                print("wrote \(out)/index.html")
            } catch let stop as CopyRunner.Interrupted {
                printError("\(stop). Run the same command again to resume.")
                throw ExitCode(130)
            }
        }
    }
}
