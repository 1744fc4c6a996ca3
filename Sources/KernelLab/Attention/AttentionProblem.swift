/// One attention call at a shape, described once: q, k, v and the output
/// gradient uniform in [-1, 1] (seeds seed, +1, +2, +3), the outputs and
/// gradient tensors (empty unless `backward` is asked for), and how to run
/// either pass (`KernelProblem`). The attention benchmark, the roofline
/// runner and the traffic probe time this description, and the tests check
/// it against the float64 reference and finite differences. Tensors are
/// allocated once, so timed calls allocate nothing.
struct AttentionProblem: KernelProblem {
    let shape: AttentionShape
    let options: AttentionOptions
    let q, k, v, out, lse: Tensor
    let gradOut, dq, dk, dv: Tensor

    init(shape: AttentionShape, causal: Bool, seed: UInt64, backward: Bool) throws {
        self.shape = shape
        options = AttentionOptions(causal: causal)
        q = try Tensor.random(shape: shape.queryShape, seed: seed)
        k = try Tensor.random(shape: shape.keyShape, seed: seed &+ 1)
        v = try Tensor.random(shape: shape.keyShape, seed: seed &+ 2)
        out = try Tensor(shape: shape.queryShape)
        lse = try Tensor(shape: shape.lseShape)
        gradOut = try Tensor.random(shape: backward ? shape.queryShape : [0], seed: seed &+ 3)
        dq = try Tensor(shape: backward ? shape.queryShape : [0])
        dk = try Tensor(shape: backward ? shape.keyShape : [0])
        dv = try Tensor(shape: backward ? shape.keyShape : [0])
    }

    var impls: [KernelImpl] { [.unfused, .fused] }
    var passes: [KernelPass] { [.forward, .backward] }
    var inputs: [(name: String, tensor: Tensor)] { [("q", q), ("k", k), ("v", v)] }
    var outputs: [(name: String, tensor: Tensor, upstream: Tensor?)] {
        [("out", out, gradOut.count > 0 ? gradOut : nil), ("lse", lse, nil)]
    }
    var gradients: [(name: String, input: Tensor, gradient: Tensor)] {
        dq.count > 0 ? [("q", q, dq), ("k", k, dk), ("v", v, dv)] : []
    }

    func workspaceBytes(impl: KernelImpl, pass: KernelPass, threads: Int) throws -> Int {
        try Attention.workspaceBytes(shape: shape, options: options, impl: impl, pass: pass, threads: threads)
    }

    func cost(impl: KernelImpl, pass: KernelPass) throws -> KernelCost {
        try Attention.cost(shape: shape, options: options, impl: impl, pass: pass)
    }

    /// One forward call (it writes lse, which a backward reads, either way).
    func forward(impl: KernelImpl, forBackward: Bool = false, pool: ThreadPool, workspace: Workspace) throws {
        try Attention.forward(q: q, k: k, v: v, into: out, lse: lse, options: options, impl: impl, pool: pool, workspace: workspace)
    }

    /// One backward call, after a `forward` of the same `impl`.
    func backward(impl: KernelImpl, pool: ThreadPool, workspace: Workspace) throws {
        try Attention.backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: gradOut, into: dq, dk: dk, dv: dv,
                               options: options, impl: impl, pool: pool, workspace: workspace)
    }
}
