import CKernels

/// Self-attention read in place from a fused QKV projection.
///
/// A linear layer with 3·H·d outputs writes, per token, q, k and v of every
/// head side by side: qkv is (B, L, 3, H, d). These calls hand the kernels
/// strides into that tensor (`kl_attn_layout`) instead of permuting it into
/// three (B, H, L, d) tensors, and write `out` as (B, L, H, d), the layout the
/// output projection reads; the backward writes dq, dk and dv into one
/// (B, L, 3, H, d) `dqkv`, the input gradient of the projection. lse stays
/// (B, H, L). Results are those of the packed calls on the permuted tensors,
/// bit for bit for the fused kernel.
extension Attention {
    /// The strides of q, k, v (in a (B, L, 3, H, d) qkv) and of out (B, L, H, d).
    /// The three are at offsets 0, H·d and 2·H·d of qkv.
    public static func packedQKVLayout(length: Int, heads: Int, headDim: Int) -> kl_attn_layout {
        let hd = heads * headDim
        let qkv = kl_attn_strides(batch: 3 * length * hd, head: headDim, row: 3 * hd)
        return kl_attn_layout(q: qkv, k: qkv, v: qkv, o: kl_attn_strides(batch: length * hd, head: headDim, row: hd))
    }

    /// Validates qkv (B, L, 3, H, d) and returns the shape of the call.
    public static func packedShape(qkv: Tensor, options: AttentionOptions = AttentionOptions()) throws -> AttentionShape {
        guard qkv.rank == 5, qkv.shape[2] == 3, qkv.shape.allSatisfy({ $0 > 0 }) else {
            throw KernelLabError.shapeMismatch(argument: "qkv", expected: "(B, L, 3, H, d) with every size positive",
                                               got: describeShape(qkv.shape))
        }
        let (b, l, h, d) = (qkv.shape[0], qkv.shape[1], qkv.shape[3], qkv.shape[4])
        guard d <= AttentionShape.maxHeadDim else {
            throw KernelLabError.shapeMismatch(argument: "qkv", expected: "(B, L, 3, H, d) with d <= \(AttentionShape.maxHeadDim)",
                                               got: describeShape(qkv.shape))
        }
        let shape = try AttentionShape(batch: b, heads: h, queryLength: l, keyLength: l, headDim: d)
        try validate(options, heads: h)
        return shape
    }

    /// Self-attention of a fused projection's output: out (B, L, H, d) and
    /// lse (B, H, L) from qkv (B, L, 3, H, d), with no copy of q, k or v.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming qkv, out or lse, and
    ///   as `forward(q:k:v:into:lse:options:impl:pool:workspace:)`.
    public static func forward(
        qkv: Tensor, into out: Tensor, lse: Tensor,
        options: AttentionOptions = AttentionOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws {
        let shape = try packedShape(qkv: qkv, options: options)
        let (b, l, h, d) = (shape.batch, shape.queryLength, shape.heads, shape.headDim)
        try expect(out, [b, l, h, d], argument: "out", expected: "(B=\(b), L=\(l), H=\(h), d=\(d))")
        try expect(lse, shape.lseShape, argument: "lse", expected: "(B=\(b), H=\(h), L=\(l))")
        try checkDistinct(outputs: [("out", out), ("lse", lse)], inputs: [("qkv", qkv)])
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let layout = packedQKVLayout(length: l, heads: h, headDim: d)
        try withParameters(shape, options, layout: layout) { params in
            try call("kl_attn_fwd", needed: kl_attn_fwd_workspace_bytes(params, impl.cValue, Int32(pool.threads)),
                     pool: pool, workspace: workspace, keeping: [qkv, out, lse]) { scratch, bytes, pool in
                let q = qkv.storage.base
                return kl_attn_fwd(params, impl.cValue, q, q + h * d, q + 2 * h * d, out.storage.base, lse.storage.base,
                                   scratch, bytes, pool)
            }
        }
    }

    /// The gradients of `forward(qkv:into:lse:)`: dqkv (B, L, 3, H, d) from
    /// gradOut (B, L, H, d), written, or added with `options.accumulate`.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming out, lse, gradOut or
    ///   dqkv, and as `backward(q:k:v:out:lse:gradOut:into:dk:dv:options:impl:pool:workspace:)`.
    public static func backward(
        qkv: Tensor, out: Tensor, lse: Tensor, gradOut: Tensor, into dqkv: Tensor,
        options: AttentionOptions = AttentionOptions(), impl: KernelImpl = .fused,
        pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws {
        let shape = try packedShape(qkv: qkv, options: options)
        let (b, l, h, d) = (shape.batch, shape.queryLength, shape.heads, shape.headDim)
        let tokens = "(B=\(b), L=\(l), H=\(h), d=\(d))"
        try expect(out, [b, l, h, d], argument: "out", expected: tokens)
        try expect(lse, shape.lseShape, argument: "lse", expected: "(B=\(b), H=\(h), L=\(l))")
        try expect(gradOut, [b, l, h, d], argument: "gradOut", expected: tokens)
        try expect(dqkv, qkv.shape, argument: "dqkv", expected: "(B=\(b), L=\(l), 3, H=\(h), d=\(d)), the shape of qkv")
        try checkDistinct(outputs: [("dqkv", dqkv)],
                          inputs: [("qkv", qkv), ("out", out), ("lse", lse), ("gradOut", gradOut)])
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let layout = packedQKVLayout(length: l, heads: h, headDim: d)
        try withParameters(shape, options, layout: layout) { params in
            try call("kl_attn_bwd", needed: kl_attn_bwd_workspace_bytes(params, impl.cValue, Int32(pool.threads)),
                     pool: pool, workspace: workspace, keeping: [qkv, out, lse, gradOut, dqkv]) { scratch, bytes, pool in
                let q = qkv.storage.base, dq = dqkv.storage.base, hd = h * d
                return kl_attn_bwd(params, impl.cValue, q, q + hd, q + 2 * hd, out.storage.base, lse.storage.base,
                                   gradOut.storage.base, dq, dq + hd, dq + 2 * hd, scratch, bytes, pool)
            }
        }
    }
}
