import CKernels

/// The Mamba-1 selective scan on fp32 tensors.
///
/// With delta' = softplus(delta + deltaBias) (or delta + deltaBias without
/// `deltaSoftplus`), per batch b, channel d and state n:
///
///     h_t = exp(delta'_t · A[d, n]) · h_{t-1} + delta'_t · B_t[n] · u_t
///     y_t = Σ_n C_t[n] · h_t + D[d] · u_t,   out_t = y_t · silu(z_t)
///
/// starting from h0 (zero when absent). Shapes: u, delta, z and out are
/// (B, D, L); A is (D, N); B and C are (B, G, N, L), or (B, N, L) for one
/// group; D and deltaBias are (D,); h0 and the last state are (B, D, N).
/// Channel d reads group d / (D / G) of B and C. D, z, deltaBias and h0 are
/// optional.
///
/// Every function validates shapes in Swift before it reaches C, and throws
/// `KernelLabError` naming the argument at fault. NaN or Inf in an input
/// propagates to the outputs that depend on it.
///
/// The forward can save the state at every chunk boundary (B·D·⌈L/chunk⌉·N
/// floats, `savedStatesShape(_:)`); given them, the fused backward skips
/// recomputing them, as FlashAttention's backward uses the saved lse.
///
/// The `into:` variants write into caller-owned tensors and, given a
/// `Workspace`, allocate no buffers, which is what benchmark loops need.
public enum Scan {
    /// Validates the inputs against each other and returns the sizes of the call.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming u, delta, A, B, C, D,
    ///   z, deltaBias or h0 with the shape it should have.
    public static func shape(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
        D: Tensor? = nil, z: Tensor? = nil, deltaBias: Tensor? = nil, h0: Tensor? = nil
    ) throws -> ScanShape {
        guard u.rank == 3, u.shape.allSatisfy({ $0 > 0 }) else {
            throw KernelLabError.shapeMismatch(argument: "u", expected: "(B, D, L) with every size positive", got: describeShape(u.shape))
        }
        let (b, d, l) = (u.shape[0], u.shape[1], u.shape[2])
        let sequence = "(B=\(b), D=\(d), L=\(l)), the shape of u"
        try expect(delta, u.shape, argument: "delta", expected: sequence)
        guard A.rank == 2, A.shape[0] == d, (1...ScanShape.maxState).contains(A.shape[1]) else {
            throw KernelLabError.shapeMismatch(argument: "A", expected: "(D=\(d), N) with 1 <= N <= \(ScanShape.maxState)", got: describeShape(A.shape))
        }
        let n = A.shape[1]
        // B fixes the groups: (B, G, N, L) with G dividing D, or (B, N, L) for G = 1.
        let groups: Int
        if B.rank == 3, B.shape == [b, n, l] {
            groups = 1
        } else if B.rank == 4, B.shape[0] == b, B.shape[1] > 0, d % B.shape[1] == 0, B.shape[2] == n, B.shape[3] == l {
            groups = B.shape[1]
        } else {
            throw KernelLabError.shapeMismatch(
                argument: "B", expected: "(B=\(b), G, N=\(n), L=\(l)) with G dividing D=\(d), or (B=\(b), N=\(n), L=\(l))",
                got: describeShape(B.shape))
        }
        let projection = [b, groups, n, l]
        guard C.shape == projection || (groups == 1 && C.shape == [b, n, l]) else {
            throw KernelLabError.shapeMismatch(argument: "C", expected: "(B=\(b), G=\(groups), N=\(n), L=\(l))", got: describeShape(C.shape))
        }
        if let D { try expect(D, [d], argument: "D", expected: "(D=\(d),)") }
        if let z { try expect(z, u.shape, argument: "z", expected: sequence) }
        if let deltaBias { try expect(deltaBias, [d], argument: "deltaBias", expected: "(D=\(d),)") }
        if let h0 { try expect(h0, [b, d, n], argument: "h0", expected: "(B=\(b), D=\(d), N=\(n))") }
        return try ScanShape(batch: b, channels: d, seqLen: l, state: n, groups: groups)
    }

    /// The shape of the chunk states a forward saves for the backward:
    /// (B, D, chunks, N), the state before every chunk of the sequence.
    ///
    /// The chunk length is the call's tile (`options.tiles`, else the
    /// default), so saved states are valid for backward calls with the same tiles.
    public static func savedStatesShape(_ shape: ScanShape, options: ScanOptions = ScanOptions()) -> [Int] {
        let count = shape.withCParams(options) { kl_scan_saved_count($0) }
        return [shape.batch, shape.channels, count / (shape.batch * shape.channels * shape.state), shape.state]
    }

    /// Runs the scan into new tensors: out (B, D, L), the last state
    /// (B, D, N) and, with `saveStates`, the chunk states for `backward`.
    ///
    /// - Parameters:
    ///   - pool: the threads to run on; `nil` runs on the calling thread.
    ///   - workspace: scratch memory to reuse; `nil` allocates it for this call.
    ///   - saveStates: also return the states `backward(saved:)` can reuse,
    ///     B·D·⌈L/chunk⌉·N floats (`savedStatesShape(_:)`).
    /// - Throws: `KernelLabError` for invalid shapes (naming the argument)
    ///   and for failures reported by the kernel.
    public static func forward(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
        D: Tensor? = nil, z: Tensor? = nil, deltaBias: Tensor? = nil, h0: Tensor? = nil,
        options: ScanOptions = ScanOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil, saveStates: Bool = false
    ) throws -> (out: Tensor, lastState: Tensor, saved: Tensor?) {
        let shape = try self.shape(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: h0)
        let out = try Tensor(shape: shape.sequenceShape)
        let lastState = try Tensor(shape: shape.stateShape)
        let saved = saveStates ? try Tensor(shape: savedStatesShape(shape, options: options)) : nil
        try forward(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: h0,
                    into: out, lastState: lastState, saved: saved,
                    options: options, impl: impl, pool: pool, workspace: workspace)
        return (out, lastState, saved)
    }

    /// Runs the scan into caller-owned `out` (B, D, L) and `lastState`
    /// (B, D, N), and the chunk states into `saved` when it is given.
    ///
    /// Outputs must not share memory with the inputs or with each other.
    /// With a `workspace` large enough, this call allocates no buffers.
    ///
    /// - Throws: as `forward(u:delta:A:B:C:D:z:deltaBias:h0:options:impl:pool:workspace:saveStates:)`,
    ///   and `KernelLabError.shapeMismatch` naming out, lastState or saved.
    public static func forward(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
        D: Tensor? = nil, z: Tensor? = nil, deltaBias: Tensor? = nil, h0: Tensor? = nil,
        into out: Tensor, lastState: Tensor, saved: Tensor? = nil,
        options: ScanOptions = ScanOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws {
        let operands = Operands(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: h0)
        let shape = try operands.shape()
        try expect(out, shape.sequenceShape, argument: "out", expected: sequenceDescription(shape))
        try expect(lastState, shape.stateShape, argument: "lastState", expected: stateDescription(shape))
        try validate(options)  // the tiles first: they fix the layout of saved
        if let saved { try expectSaved(saved, shape, options) }
        try checkDistinct(outputs: [("out", out), ("lastState", lastState)] + named("saved", saved),
                          inputs: operands.named)
        try ISA.initialize()  // a bad KERNELLAB_ISA surfaces with its explanation
        let pool = try pool ?? ThreadPool(threads: 1)

        try shape.withCParams(options) { params in
            let needed = kl_scan_fwd_workspace_bytes(params, impl.cValue, Int32(pool.threads))
            let workspace = try workspace ?? Workspace(bytes: needed)
            try workspace.ensure(bytes: needed)
            // The tensors own their storage; keeping them alive for the call
            // keeps every base pointer valid, and none outlives the call.
            let status = withExtendedLifetime((out, lastState, saved)) {
                operands.withUnsafeInputs { inputs in
                    workspace.withUnsafeMutableRawBufferPointer { scratch in
                        pool.withUnsafePool { pool in
                            kl_scan_fwd(params, impl.cValue, inputs,
                                        out.storage.base, lastState.storage.base, saved?.storage.base,
                                        scratch.baseAddress, scratch.count, pool)
                        }
                    }
                }
            }
            try check(status, "kl_scan_fwd")
        }
    }

    /// Computes the gradients of the scan into new tensors, given the inputs
    /// of the forward and `gradOut` (B, D, L), the gradient of the loss with
    /// respect to out.
    ///
    /// - Parameters:
    ///   - gradLast: the gradient with respect to the last state, (B, D, N);
    ///     `nil` when the loss does not depend on it.
    ///   - saved: the chunk states of a forward with `saveStates` on the same
    ///     inputs; `nil` makes the fused backward recompute them (one more
    ///     forward pass). The unfused backward ignores them.
    /// - Returns: every input's gradient; dD, dz and ddeltaBias only for the
    ///   inputs given; dh0 always.
    /// - Throws: `KernelLabError` for invalid shapes (naming the argument)
    ///   and for failures reported by the kernel.
    public static func backward(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
        D: Tensor? = nil, z: Tensor? = nil, deltaBias: Tensor? = nil, h0: Tensor? = nil,
        gradOut: Tensor, gradLast: Tensor? = nil, saved: Tensor? = nil,
        options: ScanOptions = ScanOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws -> ScanGradients {
        let shape = try self.shape(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: h0)
        let grads = ScanGradients(
            du: try Tensor(shape: shape.sequenceShape), ddelta: try Tensor(shape: shape.sequenceShape),
            dA: try Tensor(shape: shape.transitionShape),
            dB: try Tensor(shape: B.shape), dC: try Tensor(shape: C.shape),
            dD: try D.map { _ in try Tensor(shape: shape.channelShape) },
            dz: try z.map { _ in try Tensor(shape: shape.sequenceShape) },
            ddeltaBias: try deltaBias.map { _ in try Tensor(shape: shape.channelShape) },
            dh0: try Tensor(shape: shape.stateShape))
        try backward(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: h0,
                     gradOut: gradOut, gradLast: gradLast, saved: saved,
                     into: grads.du, ddelta: grads.ddelta, dA: grads.dA, dB: grads.dB, dC: grads.dC,
                     dD: grads.dD, dz: grads.dz, ddeltaBias: grads.ddeltaBias, dh0: grads.dh0,
                     options: options, impl: impl, pool: pool, workspace: workspace)
        return grads
    }

    /// Computes the gradients of the scan into caller-owned tensors, each
    /// shaped like its input (dB and dC exactly like B and C).
    ///
    /// dD, dz and ddeltaBias are required when D, z and deltaBias are given
    /// and must be `nil` otherwise; dh0 (B, D, N) is optional either way.
    /// Outputs must not share memory with the inputs or with each other.
    /// With a `workspace` large enough, this call allocates no buffers.
    ///
    /// - Throws: as `backward(u:delta:A:B:C:D:z:deltaBias:h0:gradOut:gradLast:saved:options:impl:pool:workspace:)`,
    ///   and `KernelLabError` naming a gradient of the wrong shape, a missing
    ///   or superfluous gradient.
    public static func backward(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
        D: Tensor? = nil, z: Tensor? = nil, deltaBias: Tensor? = nil, h0: Tensor? = nil,
        gradOut: Tensor, gradLast: Tensor? = nil, saved: Tensor? = nil,
        into du: Tensor, ddelta: Tensor, dA: Tensor, dB: Tensor, dC: Tensor,
        dD: Tensor? = nil, dz: Tensor? = nil, ddeltaBias: Tensor? = nil, dh0: Tensor? = nil,
        options: ScanOptions = ScanOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws {
        let operands = Operands(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: h0)
        let shape = try operands.shape()
        let sequence = sequenceDescription(shape)
        try expect(gradOut, shape.sequenceShape, argument: "gradOut", expected: sequence)
        if let gradLast { try expect(gradLast, shape.stateShape, argument: "gradLast", expected: stateDescription(shape)) }
        try validate(options)  // the tiles first: they fix the layout of saved
        if let saved { try expectSaved(saved, shape, options) }
        try expect(du, shape.sequenceShape, argument: "du", expected: sequence)
        try expect(ddelta, shape.sequenceShape, argument: "ddelta", expected: sequence)
        try expect(dA, shape.transitionShape, argument: "dA", expected: "(D=\(shape.channels), N=\(shape.state))")
        try expect(dB, B.shape, argument: "dB", expected: "\(describeShape(B.shape)), the shape of B")
        try expect(dC, C.shape, argument: "dC", expected: "\(describeShape(C.shape)), the shape of C")
        let channel = "(D=\(shape.channels),)"
        try expectGradient(dD, "dD", of: D, "D", shape.channelShape, channel)
        try expectGradient(dz, "dz", of: z, "z", shape.sequenceShape, sequence)
        try expectGradient(ddeltaBias, "ddeltaBias", of: deltaBias, "deltaBias", shape.channelShape, channel)
        if let dh0 { try expect(dh0, shape.stateShape, argument: "dh0", expected: stateDescription(shape)) }
        let outputs = [("du", du), ("ddelta", ddelta), ("dA", dA), ("dB", dB), ("dC", dC)]
            + named("dD", dD) + named("dz", dz) + named("ddeltaBias", ddeltaBias) + named("dh0", dh0)
        try checkDistinct(outputs: outputs,
                          inputs: operands.named + [("gradOut", gradOut)] + named("gradLast", gradLast) + named("saved", saved))
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)

        try shape.withCParams(options) { params in
            let needed = kl_scan_bwd_workspace_bytes(params, impl.cValue, Int32(pool.threads))
            let workspace = try workspace ?? Workspace(bytes: needed)
            try workspace.ensure(bytes: needed)
            // As in forward: the tensors stay alive, so their base pointers stay valid.
            let status = withExtendedLifetime((gradOut, gradLast, saved, outputs)) {
                var grads = kl_scan_grads(
                    du: du.storage.base, ddelta: ddelta.storage.base, dA: dA.storage.base,
                    dB: dB.storage.base, dC: dC.storage.base,
                    dD: dD?.storage.base, dz: dz?.storage.base,
                    ddelta_bias: ddeltaBias?.storage.base, dh0: dh0?.storage.base)
                return operands.withUnsafeInputs { inputs in
                    workspace.withUnsafeMutableRawBufferPointer { scratch in
                        pool.withUnsafePool { pool in
                            kl_scan_bwd(params, impl.cValue, inputs,
                                        gradOut.storage.base, gradLast.map { UnsafePointer($0.storage.base) },
                                        saved.map { UnsafePointer($0.storage.base) }, &grads,
                                        scratch.baseAddress, scratch.count, pool)
                        }
                    }
                }
            }
            try check(status, "kl_scan_bwd")
        }
    }

    /// The cost model of one call (`kl_scan_cost`). FLOPs count an exp as
    /// one operation: forward B·D·L·(6N + 8), backward B·D·L·(18N + 18);
    /// `exps` reports the transcendental evaluations apart.
    ///
    /// - Throws: `KernelLabError` for a C failure.
    public static func cost(shape: ScanShape, impl: KernelImpl = .fused, pass: KernelPass = .forward,
                            options: ScanOptions = ScanOptions()) throws -> KernelCost {
        try validate(options)
        var cost = kl_cost()
        try shape.withCParams(options) { try check(kl_scan_cost($0, impl.cValue, pass.cValue, &cost), "kl_scan_cost") }
        return KernelCost(cost)
    }

    /// The scratch memory one call needs ("peak extra bytes", apart from the
    /// saved states a forward may keep for the backward): size a `Workspace` with it.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for a bad thread count.
    public static func workspaceBytes(
        shape: ScanShape, impl: KernelImpl = .fused, pass: KernelPass = .forward, threads: Int = 1,
        options: ScanOptions = ScanOptions()
    ) throws -> Int {
        guard (1...ThreadPool.maxThreads).contains(threads) else {
            throw KernelLabError.invalidArgument(argument: "threads", reason: "must be in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        try validate(options)
        return shape.withCParams(options) { params in
            switch pass {
            case .forward: kl_scan_fwd_workspace_bytes(params, impl.cValue, Int32(threads))
            case .backward: kl_scan_bwd_workspace_bytes(params, impl.cValue, Int32(threads))
            }
        }
    }

    // MARK: - Validation

    /// The inputs of one call; the optional ones are nil when absent.
    struct Operands {
        let u, delta, A, B, C: Tensor
        let D, z, deltaBias, h0: Tensor?

        func shape() throws -> ScanShape {
            try Scan.shape(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: h0)
        }

        /// The tensors given, by argument name (for the aliasing check).
        var named: [(String, Tensor)] {
            [("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)]
                + Scan.named("D", D) + Scan.named("z", z) + Scan.named("deltaBias", deltaBias) + Scan.named("h0", h0)
        }

        /// Calls `body` with the C inputs, whose pointers are valid only inside `body`.
        func withUnsafeInputs<R>(_ body: (UnsafePointer<kl_scan_inputs>) throws -> R) rethrows -> R {
            try withExtendedLifetime((u, delta, A, B, C, D, z, deltaBias, h0)) {
                func pointer(_ tensor: Tensor?) -> UnsafePointer<Float>? {
                    tensor.map { UnsafePointer($0.storage.base) }
                }
                var inputs = kl_scan_inputs(
                    u: pointer(u), delta: pointer(delta), A: pointer(A), B: pointer(B), C: pointer(C),
                    D: pointer(D), z: pointer(z), delta_bias: pointer(deltaBias), h0: pointer(h0))
                return try withUnsafePointer(to: &inputs) { try body($0) }
            }
        }
    }

    static func named(_ name: String, _ tensor: Tensor?) -> [(String, Tensor)] {
        tensor.map { [(name, $0)] } ?? []
    }

    private static func expect(_ tensor: Tensor, _ shape: [Int], argument: String, expected: String) throws {
        guard tensor.shape == shape else {
            throw KernelLabError.shapeMismatch(argument: argument, expected: expected, got: describeShape(tensor.shape))
        }
    }

    static func validate(_ options: ScanOptions) throws {
        if let tiles = options.tiles, !(0...65_536).contains(tiles.chunk) || !(0...4096).contains(tiles.blockChannels) {
            throw KernelLabError.invalidArgument(
                argument: "tiles", reason: "chunk must be in 0...65536 and blockChannels in 0...4096 (0: default), got \(tiles.chunk)/\(tiles.blockChannels)")
        }
    }

    private static func expectSaved(_ saved: Tensor, _ shape: ScanShape, _ options: ScanOptions) throws {
        let expected = savedStatesShape(shape, options: options)
        try expect(saved, expected, argument: "saved",
                   expected: "(B=\(expected[0]), D=\(expected[1]), chunks=\(expected[2]), N=\(expected[3]))")
    }

    /// The kernel writes an optional input's gradient exactly when the input
    /// is given, so the two must come together.
    private static func expectGradient(
        _ gradient: Tensor?, _ name: String, of input: Tensor?, _ inputName: String, _ shape: [Int], _ expected: String
    ) throws {
        switch (gradient, input) {
        case (let gradient?, _?):
            try expect(gradient, shape, argument: name, expected: expected)
        case (nil, _?):
            throw KernelLabError.invalidArgument(argument: name, reason: "is required because \(inputName) is given")
        case (_?, nil):
            throw KernelLabError.invalidArgument(argument: name, reason: "must be nil because \(inputName) is not given")
        case (nil, nil):
            break
        }
    }

    private static func sequenceDescription(_ shape: ScanShape) -> String {
        "(B=\(shape.batch), D=\(shape.channels), L=\(shape.seqLen))"
    }

    private static func stateDescription(_ shape: ScanShape) -> String {
        "(B=\(shape.batch), D=\(shape.channels), N=\(shape.state))"
    }
}
