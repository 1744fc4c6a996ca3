import CKernels

/// The keys and values a decoder keeps: two (B, H, capacity, d) tensors whose
/// first `length` rows per head are valid. Appending writes rows in place; the
/// cache never reallocates, so its resident size is fixed by `capacity`.
public final class KVCache {
    public let batch: Int
    public let heads: Int
    public let capacity: Int
    public let headDim: Int
    /// Rows written so far in every head.
    public private(set) var length = 0
    /// (B, H, capacity, d); rows at and past `length` are unspecified.
    public let keys: Tensor
    /// (B, H, capacity, d), as `keys`.
    public let values: Tensor

    /// - Throws: `KernelLabError.invalidArgument` naming a size that is not
    ///   positive or that the C API cannot address.
    public init(batch: Int, heads: Int, capacity: Int, headDim: Int) throws {
        try checkCDimensions([("batch", batch), ("heads", heads), ("capacity", capacity), ("headDim", headDim)])
        guard headDim <= AttentionShape.maxHeadDim else {
            throw KernelLabError.invalidArgument(argument: "headDim", reason: "must be <= \(AttentionShape.maxHeadDim), got \(headDim)")
        }
        guard capacity.multipliedReportingOverflow(by: headDim).partialValue <= 1 << 31 else {
            throw KernelLabError.invalidArgument(argument: "capacity", reason: "capacity x headDim must be <= 2^31")
        }
        (self.batch, self.heads, self.capacity, self.headDim) = (batch, heads, capacity, headDim)
        keys = try Tensor(shape: [batch, heads, capacity, headDim])
        values = try Tensor(shape: [batch, heads, capacity, headDim])
    }

    /// Bytes the cache holds resident: 2 B H capacity d floats.
    public var residentBytes: Int { 2 * keys.count * MemoryLayout<Float>.size }

    /// Appends T rows per head: k and v are (B, H, T, d).
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming k or v, or
    ///   `.invalidArgument` when the rows would pass `capacity` (nothing is written then).
    public func append(k: Tensor, v: Tensor) throws {
        guard k.rank == 4, k.shape[0] == batch, k.shape[1] == heads, k.shape[2] >= 1, k.shape[3] == headDim else {
            throw KernelLabError.shapeMismatch(argument: "k", expected: "(B=\(batch), H=\(heads), T, d=\(headDim)) with T >= 1",
                                               got: describeShape(k.shape))
        }
        guard v.shape == k.shape else {
            throw KernelLabError.shapeMismatch(argument: "v", expected: describeShape(k.shape) + " (the shape of k)", got: describeShape(v.shape))
        }
        let t = k.shape[2]
        guard t <= capacity - length else {
            throw KernelLabError.invalidArgument(argument: "k", reason: "\(t) new rows do not fit: \(length) of \(capacity) are used")
        }
        withExtendedLifetime((k, v)) {
            for bh in 0..<(batch * heads) {
                let dst = (bh * capacity + length) * headDim, src = bh * t * headDim
                keys.storage.base.advanced(by: dst).update(from: k.storage.base.advanced(by: src), count: t * headDim)
                values.storage.base.advanced(by: dst).update(from: v.storage.base.advanced(by: src), count: t * headDim)
            }
        }
        length += t
    }

    /// Forgets every row (the memory stays).
    public func reset() { length = 0 }
}

extension Attention {
    /// One decoding step: attention of `q` (B, H, T, d), T new queries
    /// (T <= `decodeMaxQueries`), over the first `cache.length` rows of the
    /// cache, which already hold the new queries' own keys and values. Query i
    /// sits at position i + length - T, so `causal` masks the later new keys.
    /// Writes `out` (B, H, T, d) and, when given, `lse` (B, H, T).
    ///
    /// Equal to `forward` on the cache's first `length` rows up to rounding;
    /// the result depends on the thread count (a head's keys are split over
    /// threads when the heads do not fill them).
    ///
    /// - Throws: `KernelLabError` naming q, out, lse or an option.
    public static func decode(
        q: Tensor, cache: KVCache, into out: Tensor, lse: Tensor? = nil,
        options: AttentionOptions = AttentionOptions(), pool: ThreadPool? = nil, workspace: Workspace? = nil
    ) throws {
        let shape = try decodeShape(q: q, cache: cache, options: options)
        let queryExpected = "(B=\(shape.batch), H=\(shape.heads), T=\(shape.queryLength), d=\(shape.headDim))"
        guard out.shape == shape.queryShape else {
            throw KernelLabError.shapeMismatch(argument: "out", expected: queryExpected + ", the shape of q", got: describeShape(out.shape))
        }
        if let lse, lse.shape != shape.lseShape {
            throw KernelLabError.shapeMismatch(argument: "lse", expected: "(B=\(shape.batch), H=\(shape.heads), T=\(shape.queryLength))",
                                               got: describeShape(lse.shape))
        }
        let inputs = [("q", q), ("cache.keys", cache.keys), ("cache.values", cache.values)]
        try checkDistinct(outputs: [("out", out)] + (lse.map { [("lse", $0)] } ?? []), inputs: inputs)
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        try withParameters(shape, options) { params in
            let needed = kl_attn_decode_workspace_bytes(params, cache.capacity, Int32(pool.threads))
            let workspace = try workspace ?? Workspace(bytes: needed)
            try workspace.ensure(bytes: needed)
            let status = withExtendedLifetime((q, cache, out, lse)) {
                workspace.withUnsafeMutableRawBufferPointer { scratch in
                    pool.withUnsafePool { pool in
                        kl_attn_decode(params, cache.capacity, q.storage.base, cache.keys.storage.base,
                                       cache.values.storage.base, out.storage.base, lse?.storage.base,
                                       scratch.baseAddress, scratch.count, pool)
                    }
                }
            }
            try check(status, "kl_attn_decode")
        }
    }

    /// The most new queries one `decode` call takes.
    public static let decodeMaxQueries = Int(KL_ATTN_DECODE_MAX_Q)

    /// The call's sizes as `forward` would see them: Lq = T, Lk = cache.length.
    public static func decodeShape(q: Tensor, cache: KVCache, options: AttentionOptions = AttentionOptions()) throws -> AttentionShape {
        guard q.rank == 4, q.shape[0] == cache.batch, q.shape[1] == cache.heads, q.shape[3] == cache.headDim,
              (1...decodeMaxQueries).contains(q.shape[2]) else {
            throw KernelLabError.shapeMismatch(
                argument: "q", expected: "(B=\(cache.batch), H=\(cache.heads), T, d=\(cache.headDim)) with 1 <= T <= \(decodeMaxQueries)",
                got: describeShape(q.shape))
        }
        guard q.shape[2] <= cache.length else {
            throw KernelLabError.invalidArgument(
                argument: "cache", reason: "holds \(cache.length) rows; append the \(q.shape[2]) new queries' keys and values first")
        }
        try validate(options, heads: cache.heads)
        return try AttentionShape(batch: cache.batch, heads: cache.heads, queryLength: q.shape[2], keyLength: cache.length,
                                  headDim: cache.headDim)
    }

    /// The scratch memory of one `decode` call on `threads` threads.
    public static func decodeWorkspaceBytes(shape: AttentionShape, capacity: Int, options: AttentionOptions = AttentionOptions(),
                                            threads: Int) throws -> Int {
        try validate(options, heads: shape.heads)
        return try withParameters(shape, options) { Int(kl_attn_decode_workspace_bytes($0, capacity, Int32(clamping: threads))) }
    }

    /// The cost model of one `decode` call (`kl_attn_decode_cost`): exact
    /// FLOPs and exps over the visible pairs, the K and V rows read once.
    public static func decodeCost(shape: AttentionShape, capacity: Int, options: AttentionOptions = AttentionOptions()) throws -> KernelCost {
        try validate(options, heads: shape.heads)
        return try withParameters(shape, options) { params in
            var cost = kl_cost()
            try check(kl_attn_decode_cost(params, capacity, &cost), "kl_attn_decode_cost")
            return KernelCost(cost)
        }
    }
}
