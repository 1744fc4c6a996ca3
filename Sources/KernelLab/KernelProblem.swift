/// One kernel call at one shape, described once, as ggml's test-backend-ops
/// describes an op: its seeded inputs, its outputs with the upstream gradient
/// each receives, the gradients of its differentiable inputs, how to run
/// each pass and implementation, and its cost model. The roofline runner and
/// the benchmarks time this description; the tests' float64 reference checks,
/// finite-difference checks and fused-vs-unfused checks run on it
/// (`KernelProblemTests`), so what is timed is what is checked.
///
/// Tensors are allocated when the description is made, so timed calls
/// allocate nothing. A backward runs after a `forward(forBackward: true)` of
/// the same implementation (which saves what the backward reads).
protocol KernelProblem {
    /// The implementations this op has: fused, and its unfused twin when it has one.
    var impls: [KernelImpl] { get }
    /// The passes this op has (a fused loss-and-gradient kernel has only the forward).
    var passes: [KernelPass] { get }
    /// Every input by name (the reference reads them; some are updated in place).
    var inputs: [(name: String, tensor: Tensor)] { get }
    /// The outputs by name, each with the upstream gradient its backward
    /// receives (nil when none flows into it, e.g. attention's lse).
    var outputs: [(name: String, tensor: Tensor, upstream: Tensor?)] { get }
    /// The differentiable inputs beside their gradients, filled by the
    /// backward (or by the forward of a fused loss-and-gradient kernel);
    /// empty unless the description was made for a backward.
    var gradients: [(name: String, input: Tensor, gradient: Tensor)] { get }

    /// One forward call; `forBackward` saves what a backward of `impl` reads.
    func forward(impl: KernelImpl, forBackward: Bool, pool: ThreadPool, workspace: Workspace) throws
    /// One backward call, after a `forward(forBackward: true)` of the same `impl`.
    func backward(impl: KernelImpl, pool: ThreadPool, workspace: Workspace) throws
    /// FLOPs, bytes and exps of one call.
    func cost(impl: KernelImpl, pass: KernelPass) throws -> KernelCost
    /// The workspace one call needs (its peak extra memory).
    func workspaceBytes(impl: KernelImpl, pass: KernelPass, threads: Int) throws -> Int
}

extension KernelProblem {
    /// Times one pass of `impl`: `warmup` untimed calls, then `repeats` timed
    /// ones on `pool` and `workspace`, which is grown first so no timed call
    /// allocates. A backward's forward runs once, untimed, as in training.
    func time(impl: KernelImpl, pass: KernelPass, warmup: Int, repeats: Int, pool: ThreadPool,
              workspace: Workspace) throws -> Samples {
        try workspace.ensure(bytes: try workspaceBytes(impl: impl, pass: pass, threads: pool.threads))
        let samples: Samples
        switch pass {
        case .forward:
            samples = try Benchmark.measure(warmup: warmup, repeats: repeats) {
                try forward(impl: impl, forBackward: false, pool: pool, workspace: workspace)
            }
        case .backward:
            try forward(impl: impl, forBackward: true, pool: pool, workspace: workspace)
            samples = try Benchmark.measure(warmup: warmup, repeats: repeats) {
                try backward(impl: impl, pool: pool, workspace: workspace)
            }
        }
        for output in outputs where output.tensor.count > 0 { Benchmark.blackHole(output.tensor[0]) }
        for gradient in gradients where gradient.gradient.count > 0 { Benchmark.blackHole(gradient.gradient[0]) }
        return samples
    }

    /// Times a suite run and states its cost and workspace.
    func measure(_ run: RooflineRun, pool: ThreadPool, workspace: Workspace) throws -> RooflineMeasurement {
        let samples = try time(impl: run.impl, pass: run.pass, warmup: run.warmup, repeats: run.repeats, pool: pool,
                               workspace: workspace)
        return RooflineMeasurement(run: run, samples: samples, cost: try cost(impl: run.impl, pass: run.pass),
                                   workspaceBytes: try workspaceBytes(impl: run.impl, pass: run.pass, threads: pool.threads))
    }
}
