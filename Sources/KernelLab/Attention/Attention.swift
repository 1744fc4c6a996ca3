import CKernels

/// Scaled dot-product attention on fp32 tensors in (B, H, L, d) layout.
///
/// Every function validates shapes and options in Swift before it reaches
/// C, and throws `KernelLabError` naming the argument at fault:
/// q is (B, H, Lq, d), k and v are (B, H, Lk, d), out and gradOut are
/// (B, H, Lq, d), lse is (B, H, Lq), `alibiSlopes` and `windows` have H entries.
/// Query i sits at key position i + Lk - Lq (queries align to the end of
/// the keys); a query that sees no key gets out = 0, lse = -inf and zero
/// gradients. NaN or Inf in an input propagates to the outputs that depend on it.
///
/// The `into:` variants write into caller-owned tensors and, given a
/// `Workspace`, allocate no buffers, which is what benchmark loops need.
public enum Attention {
    /// Validates q, k, v and `options` and returns the sizes of the call.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming q, k, v, alibiSlopes
    ///   or windows; `KernelLabError.invalidArgument` for a bad scale or slope.
    public static func shape(q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions = AttentionOptions()) throws -> AttentionShape {
        guard q.rank == 4, q.shape.allSatisfy({ $0 > 0 }) else {
            throw KernelLabError.shapeMismatch(argument: "q", expected: "(B, H, Lq, d) with every size positive", got: describeShape(q.shape))
        }
        let (b, h, d) = (q.shape[0], q.shape[1], q.shape[3])
        guard d <= AttentionShape.maxHeadDim else {
            throw KernelLabError.shapeMismatch(argument: "q", expected: "(B, H, Lq, d) with d <= \(AttentionShape.maxHeadDim)", got: describeShape(q.shape))
        }
        guard k.rank == 4, k.shape[0] == b, k.shape[1] == h, k.shape[2] > 0, k.shape[3] == d else {
            throw KernelLabError.shapeMismatch(argument: "k", expected: "(B=\(b), H=\(h), Lk, d=\(d)) with Lk positive", got: describeShape(k.shape))
        }
        let lk = k.shape[2]
        guard v.shape == k.shape else {
            throw KernelLabError.shapeMismatch(argument: "v", expected: "(B=\(b), H=\(h), Lk=\(lk), d=\(d)), the shape of k", got: describeShape(v.shape))
        }
        let shape = try AttentionShape(batch: b, heads: h, queryLength: q.shape[2], keyLength: lk, headDim: d)
        try validate(options, heads: h)
        return shape
    }

    /// Computes attention into new tensors: out (B, H, Lq, d) and lse (B, H, Lq),
    /// the log-sum-exp of each row's scaled, masked scores (what `backward` needs).
    ///
    /// - Parameters:
    ///   - pool: the threads to run on; `nil` runs on the calling thread.
    ///   - workspace: scratch memory to reuse; `nil` allocates it for this call.
    /// - Throws: `KernelLabError` for invalid shapes or options (naming the
    ///   argument) and for failures reported by the kernel.
    public static func forward(
        q: Tensor, k: Tensor, v: Tensor,
        options: AttentionOptions = AttentionOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws -> (out: Tensor, lse: Tensor) {
        let shape = try self.shape(q: q, k: k, v: v, options: options)
        let out = try Tensor(shape: shape.queryShape)
        let lse = try Tensor(shape: shape.lseShape)
        try forward(q: q, k: k, v: v, into: out, lse: lse, options: options, impl: impl, pool: pool, workspace: workspace)
        return (out, lse)
    }

    /// Computes attention into caller-owned `out` (B, H, Lq, d) and `lse` (B, H, Lq).
    ///
    /// Outputs must not share memory with the inputs or with each other.
    /// With a `workspace` large enough, this call allocates no buffers.
    ///
    /// - Throws: as `forward(q:k:v:options:impl:pool:workspace:)`, and
    ///   `KernelLabError.shapeMismatch` naming out or lse.
    public static func forward(
        q: Tensor, k: Tensor, v: Tensor, into out: Tensor, lse: Tensor,
        options: AttentionOptions = AttentionOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws {
        let shape = try self.shape(q: q, k: k, v: v, options: options)
        try expect(out, shape.queryShape, argument: "out", expected: queryDescription(shape))
        try expect(lse, shape.lseShape, argument: "lse", expected: "(B=\(shape.batch), H=\(shape.heads), Lq=\(shape.queryLength))")
        try checkDistinct(outputs: [("out", out), ("lse", lse)], inputs: [("q", q), ("k", k), ("v", v)])
        try ISA.initialize()  // a bad KERNELLAB_ISA surfaces with its explanation
        let pool = try pool ?? ThreadPool(threads: 1)

        try withParameters(shape, options) { params in
            try call("kl_attn_fwd", needed: kl_attn_fwd_workspace_bytes(params, impl.cValue, Int32(pool.threads)),
                     pool: pool, workspace: workspace, keeping: [q, k, v, out, lse]) { scratch, bytes, pool in
                kl_attn_fwd(params, impl.cValue, q.storage.base, k.storage.base, v.storage.base,
                            out.storage.base, lse.storage.base, scratch, bytes, pool)
            }
        }
    }

    /// Computes the gradients of attention into new tensors: dq (B, H, Lq, d),
    /// dk and dv (B, H, Lk, d), given the forward's `out` and `lse` and the
    /// gradient `gradOut` (B, H, Lq, d) of the loss with respect to `out`.
    ///
    /// - Throws: `KernelLabError` for invalid shapes or options (naming the
    ///   argument) and for failures reported by the kernel.
    public static func backward(
        q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, gradOut: Tensor,
        options: AttentionOptions = AttentionOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws -> (dq: Tensor, dk: Tensor, dv: Tensor) {
        let shape = try self.shape(q: q, k: k, v: v, options: options)
        let dq = try Tensor(shape: shape.queryShape)
        let dk = try Tensor(shape: shape.keyShape)
        let dv = try Tensor(shape: shape.keyShape)
        try backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: gradOut, into: dq, dk: dk, dv: dv,
                     options: options, impl: impl, pool: pool, workspace: workspace)
        return (dq, dk, dv)
    }

    /// Computes the gradients of attention into caller-owned `dq`, `dk`, `dv`.
    ///
    /// Outputs must not share memory with the inputs or with each other.
    /// With a `workspace` large enough, this call allocates no buffers.
    ///
    /// - Throws: as `backward(q:k:v:out:lse:gradOut:options:impl:pool:workspace:)`,
    ///   and `KernelLabError.shapeMismatch` naming dq, dk or dv.
    public static func backward(
        q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, gradOut: Tensor,
        into dq: Tensor, dk: Tensor, dv: Tensor,
        options: AttentionOptions = AttentionOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws {
        let shape = try self.shape(q: q, k: k, v: v, options: options)
        let queryExpected = queryDescription(shape)
        let keyExpected = "(B=\(shape.batch), H=\(shape.heads), Lk=\(shape.keyLength), d=\(shape.headDim))"
        try expect(out, shape.queryShape, argument: "out", expected: queryExpected)
        try expect(lse, shape.lseShape, argument: "lse", expected: "(B=\(shape.batch), H=\(shape.heads), Lq=\(shape.queryLength))")
        try expect(gradOut, shape.queryShape, argument: "gradOut", expected: queryExpected)
        try expect(dq, shape.queryShape, argument: "dq", expected: queryExpected)
        try expect(dk, shape.keyShape, argument: "dk", expected: keyExpected)
        try expect(dv, shape.keyShape, argument: "dv", expected: keyExpected)
        try checkDistinct(
            outputs: [("dq", dq), ("dk", dk), ("dv", dv)],
            inputs: [("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse), ("gradOut", gradOut)])
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)

        try withParameters(shape, options) { params in
            try call("kl_attn_bwd", needed: kl_attn_bwd_workspace_bytes(params, impl.cValue, Int32(pool.threads)),
                     pool: pool, workspace: workspace, keeping: [q, k, v, out, lse, gradOut, dq, dk, dv]) { scratch, bytes, pool in
                kl_attn_bwd(params, impl.cValue, q.storage.base, k.storage.base, v.storage.base,
                            out.storage.base, lse.storage.base, gradOut.storage.base,
                            dq.storage.base, dk.storage.base, dv.storage.base, scratch, bytes, pool)
            }
        }
    }

    /// The cost model of one call (`kl_attn_cost`). FLOPs follow
    /// FlashAttention's convention: forward 4·B·H·Lq·Lk·d, halved when causal
    /// with Lq == Lk; backward 2.5 times the forward.
    ///
    /// - Throws: `KernelLabError` for invalid options or a C failure.
    public static func cost(
        shape: AttentionShape, options: AttentionOptions = AttentionOptions(),
        impl: KernelImpl = .fused, pass: KernelPass = .forward
    ) throws -> KernelCost {
        try validate(options, heads: shape.heads)
        return try withParameters(shape, options) { params in
            var cost = kl_cost()
            try check(kl_attn_cost(params, impl.cValue, pass.cValue, &cost), "kl_attn_cost")
            return KernelCost(cost)
        }
    }

    /// The scratch memory one call needs, which is all the extra memory it
    /// uses ("peak extra bytes"): size a `Workspace` with it.
    ///
    /// - Throws: `KernelLabError` for invalid options or thread count.
    public static func workspaceBytes(
        shape: AttentionShape, options: AttentionOptions = AttentionOptions(),
        impl: KernelImpl = .fused, pass: KernelPass = .forward, threads: Int = 1
    ) throws -> Int {
        guard (1...ThreadPool.maxThreads).contains(threads) else {
            throw KernelLabError.invalidArgument(argument: "threads", reason: "must be in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        try validate(options, heads: shape.heads)
        return try withParameters(shape, options) { params in
            switch pass {
            case .forward: kl_attn_fwd_workspace_bytes(params, impl.cValue, Int32(threads))
            case .backward: kl_attn_bwd_workspace_bytes(params, impl.cValue, Int32(threads))
            }
        }
    }

    /// Runs one kernel call on `pool` with a workspace of `needed` bytes (the
    /// caller's, grown if short, or a new one) and throws on a failed status.
    /// The tensors in `keeping` own the storage the call reads and writes:
    /// they stay alive for the call, so their base pointers stay valid.
    static func call(
        _ name: String, needed: Int, pool: ThreadPool, workspace: Workspace?, keeping tensors: [Tensor],
        _ body: (UnsafeMutableRawPointer?, Int, OpaquePointer) -> kl_status
    ) throws {
        let workspace = try workspace ?? Workspace(bytes: needed)
        try workspace.ensure(bytes: needed)
        let status = withExtendedLifetime(tensors) {
            workspace.withUnsafeMutableRawBufferPointer { scratch in
                pool.withUnsafePool { body(scratch.baseAddress, scratch.count, $0) }
            }
        }
        try check(status, name)
    }

    // MARK: - Validation

    static func validate(_ options: AttentionOptions, heads: Int) throws {
        if let scale = options.scale, !(scale.isFinite && scale > 0) {
            // The C API reads 0 as "default", so an explicit 0 must not reach it.
            throw KernelLabError.invalidArgument(argument: "scale", reason: "must be finite and positive, got \(scale)")
        }
        if let slopes = options.alibiSlopes {
            guard slopes.count == heads else {
                throw KernelLabError.shapeMismatch(argument: "alibiSlopes", expected: "(H=\(heads),)", got: describeShape([slopes.count]))
            }
            if let bad = slopes.firstIndex(where: { !$0.isFinite }) {
                throw KernelLabError.invalidArgument(argument: "alibiSlopes", reason: "slope \(bad) is \(slopes[bad]); slopes must be finite")
            }
        }
        if let windows = options.windows, windows.count != heads {
            throw KernelLabError.shapeMismatch(argument: "windows", expected: "(H=\(heads),)", got: describeShape([windows.count]))
        }
        if let tiles = options.tiles, !(0...65_536).contains(tiles.queryBlock) || !(0...4096).contains(tiles.keyBlock) {
            throw KernelLabError.invalidArgument(
                argument: "tiles", reason: "queryBlock must be in 0...65536 and keyBlock in 0...4096 (0: default), got \(tiles.queryBlock)/\(tiles.keyBlock)")
        }
    }

    static func expect(_ tensor: Tensor, _ shape: [Int], argument: String, expected: String) throws {
        guard tensor.shape == shape else {
            throw KernelLabError.shapeMismatch(argument: argument, expected: expected, got: describeShape(tensor.shape))
        }
    }

    private static func queryDescription(_ shape: AttentionShape) -> String {
        "(B=\(shape.batch), H=\(shape.heads), Lq=\(shape.queryLength), d=\(shape.headDim))"
    }

    /// Calls `body` with C parameters whose slope and window pointers are
    /// valid only inside `body`.
    /// `layout`: the tensors' strides (nil: packed (B, H, L, d)).
    static func withParameters<R>(
        _ shape: AttentionShape, _ options: AttentionOptions, layout: kl_attn_layout? = nil,
        _ body: (UnsafePointer<kl_attn_params>) throws -> R
    ) throws -> R {
        try withOptionalBuffer(options.alibiSlopes) { slopes in
            try withOptionalBuffer(options.windows) { windows in
                try withOptionalBuffer(options.tiles.map { [$0.cValue] }) { tiles in
                    try withOptionalBuffer(layout.map { [$0] }) { layout in
                        var params = kl_attn_params(
                            batch: Int32(shape.batch), heads: Int32(shape.heads),
                            q_len: Int32(shape.queryLength), kv_len: Int32(shape.keyLength),
                            head_dim: Int32(shape.headDim),
                            causal: options.causal ? 1 : 0,
                            scale: options.scale ?? 0,  // 0 selects 1/sqrt(d) in C
                            alibi_slopes: slopes, windows: windows, tiles: tiles,
                            layout: layout, accumulate: options.accumulate ? 1 : 0)
                        return try withUnsafePointer(to: &params) { try body($0) }
                    }
                }
            }
        }
    }
}

/// Calls `body` with the array's base address, or nil for a nil array.
private func withOptionalBuffer<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    guard let array else { return try body(nil) }
    return try array.withUnsafeBufferPointer { try body($0.baseAddress) }
}
