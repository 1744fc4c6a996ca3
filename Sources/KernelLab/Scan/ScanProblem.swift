/// One selective-scan call at a shape, described once: its inputs (Mamba's
/// defaults), its output and gradient tensors, and how to run either pass.
/// The scan benchmark, the roofline runner and the traffic probe all time
/// this description, so their inputs cannot drift apart, and the tests check
/// it against the float64 reference and finite differences (`KernelProblem`).
///
/// Inputs: D, z and delta_bias given, softplus on, A[d, n] = -(n + 1)
/// (Mamba's S4D-real initialization), u, B, C, z uniform in [-1, 1], delta
/// uniform in `deltaRange` and delta_bias in `deltaBiasRange` (softplus⁻¹ of
/// Mamba's dt range 0.001...0.1), so delta' stays in a stable range; no h0
/// and no gradient into the last state, as in training. Tensors are
/// allocated once, so timed calls allocate nothing; the gradient tensors are
/// empty unless `backward` is asked for.
struct ScanProblem: KernelProblem {
    static let deltaRange: ClosedRange<Float> = -3...1
    static let deltaBiasRange: ClosedRange<Float> = -6.9 ... -2.25

    let shape: ScanShape
    let options = ScanOptions(deltaSoftplus: true)
    let u, delta, A, B, C, D, z, deltaBias: Tensor
    let out, lastState, saved: Tensor
    let gradOut, du, ddelta, dA, dB, dC, dD, dz, ddeltaBias: Tensor

    init(shape: ScanShape, seed: UInt64, backward: Bool) throws {
        self.shape = shape
        u = try Tensor.random(shape: shape.sequenceShape, seed: seed)
        delta = try Tensor.random(shape: shape.sequenceShape, seed: seed &+ 1, range: Self.deltaRange)
        let n = shape.state
        A = try Tensor(shape: shape.transitionShape, values: (0..<shape.channels * n).map { -Float($0 % n + 1) })
        B = try Tensor.random(shape: shape.projectionShape, seed: seed &+ 2)
        C = try Tensor.random(shape: shape.projectionShape, seed: seed &+ 3)
        D = try Tensor(shape: shape.channelShape, values: [Float](repeating: 1, count: shape.channels))
        z = try Tensor.random(shape: shape.sequenceShape, seed: seed &+ 4)
        deltaBias = try Tensor.random(shape: shape.channelShape, seed: seed &+ 5, range: Self.deltaBiasRange)
        out = try Tensor(shape: shape.sequenceShape)
        lastState = try Tensor(shape: shape.stateShape)
        func backwardOnly(_ s: [Int]) -> [Int] { backward ? s : [0] }
        saved = try Tensor(shape: backwardOnly(Scan.savedStatesShape(shape)))
        gradOut = try Tensor.random(shape: backwardOnly(shape.sequenceShape), seed: seed &+ 10)
        du = try Tensor(shape: backwardOnly(shape.sequenceShape))
        ddelta = try Tensor(shape: backwardOnly(shape.sequenceShape))
        dA = try Tensor(shape: backwardOnly(shape.transitionShape))
        dB = try Tensor(shape: backwardOnly(shape.projectionShape))
        dC = try Tensor(shape: backwardOnly(shape.projectionShape))
        dD = try Tensor(shape: backwardOnly(shape.channelShape))
        dz = try Tensor(shape: backwardOnly(shape.sequenceShape))
        ddeltaBias = try Tensor(shape: backwardOnly(shape.channelShape))
    }

    var impls: [KernelImpl] { [.unfused, .fused] }
    var passes: [KernelPass] { [.forward, .backward] }
    var inputs: [(name: String, tensor: Tensor)] {
        [("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z), ("delta_bias", deltaBias)]
    }
    var outputs: [(name: String, tensor: Tensor, upstream: Tensor?)] {
        [("out", out, gradOut.count > 0 ? gradOut : nil), ("last_state", lastState, nil)]
    }
    var gradients: [(name: String, input: Tensor, gradient: Tensor)] {
        du.count > 0
            ? [("u", u, du), ("delta", delta, ddelta), ("A", A, dA), ("B", B, dB), ("C", C, dC), ("D", D, dD), ("z", z, dz),
               ("delta_bias", deltaBias, ddeltaBias)]
            : []
    }

    func cost(impl: KernelImpl, pass: KernelPass) throws -> KernelCost { try Scan.cost(shape: shape, impl: impl, pass: pass) }

    func workspaceBytes(impl: KernelImpl, pass: KernelPass, threads: Int) throws -> Int {
        try Scan.workspaceBytes(shape: shape, impl: impl, pass: pass, threads: threads)
    }

    /// The saved chunk states a backward of `impl` is given: the fused one
    /// reuses them, the unfused one ignores them (it rematerializes every state).
    func savedStates(for impl: KernelImpl) -> Tensor? { impl == .fused ? saved : nil }

    /// One forward call; `forBackward` keeps the chunk states for a backward of `impl`.
    func forward(impl: KernelImpl, forBackward: Bool = false, pool: ThreadPool, workspace: Workspace) throws {
        try Scan.forward(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias,
                         into: out, lastState: lastState, saved: forBackward ? savedStates(for: impl) : nil,
                         options: options, impl: impl, pool: pool, workspace: workspace)
    }

    /// One backward call, after a `forward(impl:forBackward: true ...)`.
    func backward(impl: KernelImpl, pool: ThreadPool, workspace: Workspace) throws {
        try Scan.backward(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias,
                          gradOut: gradOut, saved: savedStates(for: impl),
                          into: du, ddelta: ddelta, dA: dA, dB: dB, dC: dC, dD: dD, dz: dz, ddeltaBias: ddeltaBias,
                          options: options, impl: impl, pool: pool, workspace: workspace)
    }
}
