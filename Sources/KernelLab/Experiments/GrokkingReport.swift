import Foundation

// The grokking experiment's report: steps to memorize and to generalize per
// model over seeds, the curves, and what they say about the hypothesis.

extension CopyExperiment {
    /// The first evaluated step whose training accuracy reached `threshold` (nil: never, in the budget).
    static func stepToMemorize(_ run: CopyRunResult, _ threshold: Double = 0.99) -> Int? {
        run.curve.first { ($0.train ?? 0) >= threshold }?.step
    }

    /// The first evaluated step whose held-out accuracy reached `threshold` (nil: never, in the budget).
    static func stepToGeneralize(_ run: CopyRunResult, _ threshold: Double = 0.95) -> Int? {
        run.curve.first { $0.string >= threshold }?.step
    }

    func grokking(_ groups: [LabelRuns], _ s: CopyScale) -> ([ClaimVerdict], String, [(String, String)]) {
        let g = s.grokking
        let total = g.modulus * g.modulus, trained = total * g.trainPercent / 100
        func steps(_ group: LabelRuns, _ find: (CopyRunResult) -> Int?) -> (SeedStatistic, reached: Int) {
            let found = group.runs.compactMap(find)
            return (SeedStatistic(found.map(Double.init)), found.count)
        }
        func cell(_ stat: SeedStatistic, _ reached: Int, _ of: Int) -> String {
            reached == 0 ? "never (0/\(of))" : stat.text("%.0f") + (reached < of ? ", \(reached)/\(of) seeds" : "")
        }
        var body = "## Steps to memorize and to generalize\n\n`a + b = c (mod \(g.modulus))`: \(trained) of the \(total) equations "
            + "(\(g.trainPercent)%) trained on, full batch, AdamW (lr \(g.learningRate), weight decay \(g.weightDecay), constant after "
            + "\(g.warmup) warmup steps), at most \(g.steps) steps, stopped once two evaluations in a row reach 95% held-out. Evaluated every "
            + "\(g.evalEvery) steps: memorized = training accuracy >= 99%, generalized = held-out accuracy >= 95%; a seed that never "
            + "reached one is counted apart (intervals over the seeds that did). Matched parameter counts (untied embeddings).\n\n"
        let rows = groups.map { group -> [String] in
            let n = group.runs.count
            let (m, mr) = steps(group, { Self.stepToMemorize($0) }), (gz, gr) = steps(group, { Self.stepToGeneralize($0) })
            let train = SeedStatistic(group.runs.compactMap(\.trainAccuracy)), held = group.accuracy(at: g.modulus)
            return [group.label, "\(group.parameters)", cell(m, mr, n), cell(gz, gr, n), train.text("%.3f"), held.text("%.3f")]
        }
        body += Markdown.table(["model", "parameters", "steps to memorize (train >= 99%)", "steps to generalize (held-out >= 95%)",
                                "final train accuracy", "final held-out accuracy"], rows) + "\n"
        // Mean curves; a seed stopped early keeps its last value (it had reached 95% twice).
        func meanCurve(_ group: LabelRuns, _ value: (CurvePoint) -> Double) -> [(x: Double, y: Double)] {
            let last = group.runs.map { $0.curve.last?.step ?? 0 }.max() ?? 0
            return stride(from: g.evalEvery, through: max(last, g.evalEvery), by: g.evalEvery).map { step in
                let ys = group.runs.compactMap { run in run.curve.last { $0.step <= step }.map(value) }
                return (Double(step), ys.isEmpty ? .nan : ys.reduce(0, +) / Double(ys.count))
            }
        }
        let held = LinePlot(title: "Held-out accuracy", xLabel: "step", yLabel: "accuracy",
                            series: groups.map { .init(name: $0.label, points: meanCurve($0) { $0.string }) })
        let train = LinePlot(title: "Training accuracy", xLabel: "step", yLabel: "accuracy",
                             series: groups.map { .init(name: $0.label, points: meanCurve($0) { $0.train ?? .nan }, dashed: true) })
        let svg = LinePlot.svg([train, held], caption: "Means over seeds; a run stopped early (95% held-out twice) keeps its last value.")

        var verdicts: [ClaimVerdict] = []
        func group(_ label: String) -> LabelRuns? { groups.first { $0.label == label } }
        if let t = group("transformer"), let m = group("mamba") {
            let (ts, tr) = steps(t, { Self.stepToGeneralize($0) }), (ms, mr) = steps(m, { Self.stepToGeneralize($0) })
            let (tn, mn) = (t.runs.count, m.runs.count)
            let verdict: Verdict
            if tr == 0 && mr == 0 {
                verdict = .inconclusive
            } else if mr == mn && tr == 0 {
                verdict = .reproduced
            } else if tr == tn && mr == 0 {
                verdict = .notReproduced
            } else if mr == mn && tr == tn && mn >= 2 {
                verdict = ms.mean + ms.halfWidth < ts.mean - ts.halfWidth ? .reproduced
                    : ts.mean + ts.halfWidth < ms.mean - ms.halfWidth ? .notReproduced : .inconclusive
            } else {
                verdict = mr > tr ? .partly : .inconclusive
            }
            verdicts.append(ClaimVerdict(
                claim: "A hypothesis raised beside the paper: a transformer can attend to the answer and may favour memorizing, so SSMs (Mamba) might grok modular addition sooner.",
                measured: "steps to generalize: Mamba \(cell(ms, mr, mn)), transformer \(cell(ts, tr, tn))"
                    + (group("lstm").map { l in let (ls, lr) = steps(l, { Self.stepToGeneralize($0) }); return ", LSTM \(cell(ls, lr, l.runs.count))" } ?? ""),
                verdict: verdict,
                rule: "every seed of both generalized and Mamba's 95% interval lies below the transformer's: reproduced (above: not reproduced; "
                    + "overlapping: inconclusive); Mamba generalized in every seed and the transformer in none: reproduced (the converse: not "
                    + "reproduced); more Mamba seeds generalized than transformer seeds: partly; none generalized: inconclusive"))
        }
        // The phenomenon itself: generalization long after memorization.
        let delayed = groups.map { group -> (String, [Int]) in
            (group.label, group.runs.compactMap { run in
                guard let mem = Self.stepToMemorize(run), let gen = Self.stepToGeneralize(run) else { return nil }
                return gen - mem
            })
        }
        let generalizedAny = delayed.contains { !$0.1.isEmpty }
        let late = delayed.filter { label, gaps in
            guard let group = group(label), gaps.count == group.runs.count, !gaps.isEmpty else { return false }
            return zip(group.runs, gaps).allSatisfy { run, gap in gap >= Self.stepToMemorize(run)! }
        }
        verdicts.append(ClaimVerdict(
            claim: "Grokking (Power et al. 2022): with strong weight decay, held-out accuracy rises long after the training set is memorized.",
            measured: delayed.map { label, gaps in "\(label): " + (gaps.isEmpty ? "no seed memorized and generalized"
                    : "generalized \(SeedStatistic(gaps.map(Double.init)).text("%.0f")) steps after memorizing") }.joined(separator: "; "),
            verdict: !generalizedAny ? .inconclusive : late.count == groups.count ? .reproduced : late.isEmpty ? .notReproduced : .partly,
            rule: "per model, every seed generalized at least as many steps after memorizing as memorizing took: reproduced for every model; "
                + "for some: partly; for none: not reproduced; no seed generalized: inconclusive"))
        return (verdicts, body, [("accuracy-vs-step.svg", svg)])
    }
}
