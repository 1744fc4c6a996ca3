import CKernels

extension Scan {
    /// One decoding step of the scan (`kl_scan_step`), `state` updated in place:
    /// u, delta, z and out are (B, D); A is (D, N); B and C are (B, G, N), or
    /// (B, N) for one group; D and deltaBias are (D,); state is (B, D, N),
    /// h_{t-1} in and h_t out. Stepping a sequence token by token equals
    /// `forward` over it up to rounding (the tests check this).
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming the tensor that does
    ///   not fit, `.invalidArgument` when an output shares memory with an input.
    public static func step(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
        D: Tensor? = nil, z: Tensor? = nil, deltaBias: Tensor? = nil,
        state: Tensor, into out: Tensor, options: ScanOptions = ScanOptions(), pool: ThreadPool? = nil
    ) throws {
        let shape = try stepShape(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias)
        let (b, d, n) = (shape.batch, shape.channels, shape.state)
        for (name, tensor, expected) in [("state", state, [b, d, n]), ("out", out, [b, d])] where tensor.shape != expected {
            throw KernelLabError.shapeMismatch(argument: name, expected: describeShape(expected), got: describeShape(tensor.shape))
        }
        // The state is the step's h0: in and out, so it is not among the inputs.
        let operands = Operands(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, deltaBias: deltaBias, h0: nil)
        try checkDistinct(outputs: [("state", state), ("out", out)], inputs: operands.named)
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((state, out)) {
            operands.withUnsafeInputs { inputs in
                shape.withCParams(options) { params in
                    pool.withUnsafePool { kl_scan_step(params, inputs, state.storage.base, out.storage.base, $0) }
                }
            }
        }
        try check(status, "kl_scan_step")
    }

    /// Validates one step's inputs; the shape returned has seqLen 1.
    public static func stepShape(
        u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor? = nil, z: Tensor? = nil, deltaBias: Tensor? = nil
    ) throws -> ScanShape {
        guard u.rank == 2, u.shape.allSatisfy({ $0 > 0 }) else {
            throw KernelLabError.shapeMismatch(argument: "u", expected: "(B, D) with every size positive", got: describeShape(u.shape))
        }
        let (b, d) = (u.shape[0], u.shape[1])
        for (name, t) in [("delta", delta), ("z", z)] {
            if let t, t.shape != u.shape {
                throw KernelLabError.shapeMismatch(argument: name, expected: "(B=\(b), D=\(d)), the shape of u", got: describeShape(t.shape))
            }
        }
        guard A.rank == 2, A.shape[0] == d, (1...ScanShape.maxState).contains(A.shape[1]) else {
            throw KernelLabError.shapeMismatch(argument: "A", expected: "(D=\(d), N) with 1 <= N <= \(ScanShape.maxState)", got: describeShape(A.shape))
        }
        let n = A.shape[1]
        let groups: Int
        if B.shape == [b, n] {
            groups = 1
        } else if B.rank == 3, B.shape[0] == b, B.shape[1] > 0, d % B.shape[1] == 0, B.shape[2] == n {
            groups = B.shape[1]
        } else {
            throw KernelLabError.shapeMismatch(argument: "B", expected: "(B=\(b), G, N=\(n)) with G dividing D=\(d), or (B=\(b), N=\(n))",
                                               got: describeShape(B.shape))
        }
        guard C.shape == B.shape else {
            throw KernelLabError.shapeMismatch(argument: "C", expected: describeShape(B.shape) + ", the shape of B", got: describeShape(C.shape))
        }
        for (name, t) in [("D", D), ("deltaBias", deltaBias)] {
            if let t, t.shape != [d] {
                throw KernelLabError.shapeMismatch(argument: name, expected: "(D=\(d),)", got: describeShape(t.shape))
            }
        }
        return try ScanShape(batch: b, channels: d, seqLen: 1, state: n, groups: groups)
    }

    /// FLOPs and bytes of one step (`kl_scan_step_cost`); `shape.seqLen` must be 1.
    public static func stepCost(shape: ScanShape) throws -> KernelCost {
        var cost = kl_cost()
        try shape.withCParams(ScanOptions()) { try check(kl_scan_step_cost($0, &cost), "kl_scan_step_cost") }
        return KernelCost(cost)
    }
}
