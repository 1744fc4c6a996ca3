import CKernels

/// Options of one attention call (everything but the tensors).
public struct AttentionOptions: Sendable, Equatable {
    /// Causal masking: query i (aligned to the end of the keys, at position
    /// i + Lk - Lq) sees keys up to its own position.
    public var causal: Bool
    /// Softmax scale; `nil` means 1/sqrt(d). Must be finite and positive.
    public var scale: Float?
    /// ALiBi slope per head, (H); adds -slope[h] * |i' - j| to the scaled score.
    public var alibiSlopes: [Float]?
    /// Sliding-window length per head, (H); query i' sees keys with
    /// 0 <= i' - j < window[h]. A window <= 0 is unlimited.
    public var windows: [Int32]?
    /// The fused kernels' tiles for this call; `nil` takes the active ISA's.
    public var tiles: AttentionTiles?
    /// Backward only: add the gradients into dq, dk and dv (or dqkv) instead
    /// of overwriting them (gradient accumulation, a gradient shared by uses).
    public var accumulate: Bool

    /// Creates options; the defaults give plain, non-causal softmax attention.
    public init(causal: Bool = false, scale: Float? = nil, alibiSlopes: [Float]? = nil, windows: [Int32]? = nil,
                tiles: AttentionTiles? = nil, accumulate: Bool = false) {
        self.causal = causal
        self.scale = scale
        self.alibiSlopes = alibiSlopes
        self.windows = windows
        self.tiles = tiles
        self.accumulate = accumulate
    }
}

/// Tile sizes of the fused attention (`kl_attn_tiles`), per call: query rows
/// per block (1...65536) and keys per tile (1...4096, rounded up to 16); 0
/// takes the default.
public struct AttentionTiles: Sendable, Equatable {
    public var queryBlock: Int
    public var keyBlock: Int

    public init(queryBlock: Int = 0, keyBlock: Int = 0) {
        self.queryBlock = queryBlock
        self.keyBlock = keyBlock
    }

    var cValue: kl_attn_tiles { kl_attn_tiles(q_block: Int32(clamping: queryBlock), kv_block: Int32(clamping: keyBlock)) }
}

/// Which implementation of a kernel to run.
public enum KernelImpl: String, CaseIterable, Codable, Sendable {
    /// One pass over tiles that keeps intermediates in cache: attention's online
    /// softmax never materializes the score matrix; the scan never writes its
    /// (B, D, L, N) states.
    case fused
    /// The textbook sequence of operations with every intermediate materialized:
    /// OpenBLAS GEMMs around a softmax over the score matrix (attention), one
    /// pass per tensor op over (B, D, L, N) tensors (the scan).
    case unfused

    var cValue: kl_impl {
        switch self {
        case .fused: KL_IMPL_FUSED
        case .unfused: KL_IMPL_UNFUSED
        }
    }
}

/// The direction of a kernel call.
public enum KernelPass: String, CaseIterable, Codable, Sendable {
    /// Outputs from inputs.
    case forward
    /// Input gradients from the output gradient.
    case backward

    var cValue: kl_pass {
        switch self {
        case .forward: KL_PASS_FORWARD
        case .backward: KL_PASS_BACKWARD
        }
    }
}

/// The sizes of one attention call: q is (B, H, Lq, d), k and v are (B, H, Lk, d).
public struct AttentionShape: Sendable, Hashable, Codable, CustomStringConvertible {
    /// B.
    public let batch: Int
    /// H.
    public let heads: Int
    /// Lq, the number of queries per head.
    public let queryLength: Int
    /// Lk, the number of keys (and values) per head.
    public let keyLength: Int
    /// d, the head dimension.
    public let headDim: Int

    /// Creates a shape.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming the dimension unless
    ///   every size is in 1...Int32.max (the C API takes `int`) and
    ///   `headDim <= maxHeadDim`.
    public init(batch: Int, heads: Int, queryLength: Int, keyLength: Int, headDim: Int) throws {
        try checkCDimensions([("batch", batch), ("heads", heads), ("queryLength", queryLength),
                              ("keyLength", keyLength), ("headDim", headDim)])
        guard headDim <= AttentionShape.maxHeadDim else {
            throw KernelLabError.invalidArgument(argument: "headDim", reason: "must be at most \(AttentionShape.maxHeadDim), got \(headDim)")
        }
        self.batch = batch
        self.heads = heads
        self.queryLength = queryLength
        self.keyLength = keyLength
        self.headDim = headDim
    }

    /// The largest head dimension the kernels accept.
    public static let maxHeadDim = 1024

    /// (B, H, Lq, d): the shape of q, out, gradOut and dq.
    public var queryShape: [Int] { [batch, heads, queryLength, headDim] }
    /// (B, H, Lk, d): the shape of k, v, dk and dv.
    public var keyShape: [Int] { [batch, heads, keyLength, headDim] }
    /// (B, H, Lq): the shape of lse.
    public var lseShape: [Int] { [batch, heads, queryLength] }

    /// "B×H×Lq×Lk×d", e.g. `2x4x1024x1024x64`.
    public var description: String {
        "\(batch)x\(heads)x\(queryLength)x\(keyLength)x\(headDim)"
    }

    enum CodingKeys: String, CodingKey {
        case batch, heads
        case queryLength = "seq"
        case keyLength = "kv_seq"
        case headDim = "head_dim"
    }
}

/// FLOPs and bytes of one kernel call, from the C cost model (`kl_cost`).
///
/// The byte fields model the traffic across each cache boundary, each the
/// same model evaluated at that boundary's capacity: `dramBytes` below the
/// last-level cache, `l3Bytes` below the L2, `l2Bytes` below the L1d. They
/// are estimates; `l2Bytes` is the roughest (see the C comments and
/// `make validate-traffic`).
public struct KernelCost: Sendable, Equatable, Codable {
    /// Floating-point operations, following the kernel's stated convention.
    public var flops: Double
    /// Compulsory traffic: inputs read once, outputs written once.
    public var minBytes: Double
    /// Modelled DRAM traffic including re-reads and materialized intermediates.
    public var dramBytes: Double
    /// Modelled traffic between L3 and L2: L2 misses plus L2 write-backs.
    public var l3Bytes: Double
    /// Modelled traffic between L2 and L1d: L1d misses plus L1d write-backs.
    public var l2Bytes: Double
    /// Transcendental evaluations (exp/log), counted apart from `flops`.
    public var exps: Double

    /// Creates a cost; the cache-level bytes default to `dramBytes` (a call
    /// whose traffic does not depend on the level).
    public init(flops: Double, minBytes: Double, dramBytes: Double, l3Bytes: Double? = nil, l2Bytes: Double? = nil,
                exps: Double) {
        self.flops = flops
        self.minBytes = minBytes
        self.dramBytes = dramBytes
        self.l3Bytes = l3Bytes ?? dramBytes
        self.l2Bytes = l2Bytes ?? l3Bytes ?? dramBytes
        self.exps = exps
    }

    init(_ cost: kl_cost) {
        self.init(flops: cost.flops, minBytes: cost.min_bytes, dramBytes: cost.dram_bytes,
                  l3Bytes: cost.l3_bytes, l2Bytes: cost.l2_bytes, exps: cost.exps)
    }

    /// The modelled traffic served by `level`: `l2Bytes` for the L2, `l3Bytes` for
    /// the L3, `dramBytes` for DRAM; nil for the L1 (register traffic is not
    /// modelled).
    public func bytes(servedBy level: MemoryLevel) -> Double? {
        switch level {
        case .l1: nil
        case .l2: l2Bytes
        case .l3: l3Bytes
        case .dram: dramBytes
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let dram = try c.decode(Double.self, forKey: .dramBytes)
        // Files written before the hierarchical model carry DRAM bytes only.
        self.init(flops: try c.decode(Double.self, forKey: .flops), minBytes: try c.decode(Double.self, forKey: .minBytes),
                  dramBytes: dram, l3Bytes: try c.decodeIfPresent(Double.self, forKey: .l3Bytes),
                  l2Bytes: try c.decodeIfPresent(Double.self, forKey: .l2Bytes), exps: try c.decode(Double.self, forKey: .exps))
    }

    enum CodingKeys: String, CodingKey {
        case flops
        case minBytes = "min_bytes"
        case dramBytes = "dram_bytes"
        case l3Bytes = "l3_bytes"
        case l2Bytes = "l2_bytes"
        case exps
    }
}
