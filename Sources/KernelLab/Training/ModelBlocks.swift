import CKernels
import Foundation

// The blocks of the training engine, llm.c's way: each is a plain forward
// and backward over pointers into the model's flat buffers, with its
// activations at offsets planned once per (batch, seq) and its backward
// scratch carved from one region all blocks share. Weight gradients always
// accumulate (the trainer zeroes them once per step).

typealias FloatPointer = UnsafeMutablePointer<Float>

/// Reserves activation slots in the arena (offsets in floats, 16-aligned).
struct ArenaPlanner {
    private(set) var floats = 0
    mutating func reserve(_ count: Int) -> Int {
        let offset = floats
        floats += (count + 15) / 16 * 16
        return offset
    }
}

/// What a block's forward and backward run on: one step's buffers.
struct StepContext {
    let batch: Int, seq: Int
    let params: FloatPointer
    let grads: FloatPointer
    let arena: FloatPointer
    /// Backward scratch shared by every block (each uses it only inside its own backward).
    let scratch: FloatPointer
    let workspace: UnsafeMutableRawPointer
    let workspaceBytes: Int
    let pool: OpaquePointer
    var rows: Int { batch * seq }

    func p(_ offset: Int) -> FloatPointer { params + offset }
    func g(_ offset: Int) -> FloatPointer { grads + offset }
    func a(_ offset: Int) -> FloatPointer { arena + offset }
}

/// A block's tensors in a flat buffer, by their index in the block's offset
/// table: `w[3]` is base + offsets[3]. Built per step without allocating (the
/// offsets array is shared, not copied), unlike an array of pointers.
struct TensorTable {
    let base: FloatPointer
    let offsets: [Int]
    subscript(_ i: Int) -> FloatPointer { base + offsets[i] }
}

/// What a block needs beyond its activations, for sizing the shared regions.
struct BlockNeeds {
    var scratchFloats = 0
    var workspaceBytes = 0
}

protocol ModelBlock: AnyObject {
    /// "attention", "mamba" or "lstm" (the profile's scope).
    var kind: String { get }
    /// Resolves the block's parameter offsets once the table is final.
    func bind(_ table: ParameterTable)
    /// Fills shape-dependent data (RoPE's table) once the arena exists.
    func prepare(_ c: StepContext) throws
    /// Reserves the block's activations for (batch, seq) on `threads`; returns its other needs.
    func plan(_ arena: inout ArenaPlanner, batch: Int, seq: Int, threads: Int) -> BlockNeeds
    /// y: (B, T, D) = the block applied to x: (B, T, D).
    func forward(_ c: StepContext, x: FloatPointer, y: FloatPointer) throws
    /// g: (B, T, D) holds dL/dy on entry and dL/dx on return; x is the forward's input.
    func backward(_ c: StepContext, x: FloatPointer, g: FloatPointer) throws

    // Decoding (Decoding.swift): one new token per sequence per step.
    /// Reserves the block's decoding state and step buffers for `batch`
    /// sequences of up to `capacity` tokens; returns its workspace needs.
    func planDecoding(_ arena: inout ArenaPlanner, batch: Int, capacity: Int, threads: Int) -> DecodeNeeds
    /// Clears the state (new sequences) and fills what depends on the parameters.
    func resetDecoding(_ c: DecodeContext)
    /// y: (B, D) = the block applied to the newest token x: (B, D) at position `c.position`.
    func step(_ c: DecodeContext, x: FloatPointer, y: FloatPointer) throws
}

extension ModelBlock {
    func prepare(_ c: StepContext) throws {}
}

// MARK: - Transformer block

/// Pre-norm transformer block: h = x + Wo attn(LN1 x); y = h + W2 gelu(W1 LN2 h).
final class AttentionBlock: ModelBlock {
    var kind: String { "attention" }
    let D: Int, H: Int, dh: Int, F: Int, eps: Float
    let position: ModelConfig.Position
    let rotary: Int, ropeBase: Float
    // Per-head data the attention kernel reads (owned, fixed for the model's life).
    let slopes: UnsafeMutablePointer<Float>?
    let windows: UnsafeMutablePointer<Int32>?
    // Activations.
    private var ln1 = 0, ln1m = 0, ln1r = 0, qkv = 0, lse = 0, om = 0, h = 0
    private var ln2 = 0, ln2m = 0, ln2r = 0, fc = 0, act = 0, ropeTable = 0
    var decoding = AttentionDecodeSlots()

    init(index: Int, config: ModelConfig, table: inout ParameterTable) {
        D = config.dModel; H = config.heads; dh = config.headDim; F = config.mlpRatio * config.dModel
        eps = config.normEpsilon; position = config.position; rotary = config.rotaryDims; ropeBase = config.ropeBase
        let prefix = "blocks.\(index)."
        // GPT-2's initialization: N(0, 0.02), the residual projections scaled by 1/sqrt(2 layers).
        let residualStd = 0.02 / Float(2 * config.pattern.count).squareRoot()
        table.add(prefix + "ln1.weight", [D], "attention", decayed: false, .constant(1))
        table.add(prefix + "ln1.bias", [D], "attention", decayed: false, .constant(0))
        table.add(prefix + "attn.qkv.weight", [3 * D, D], "attention", decayed: true, .normal(std: 0.02))
        table.add(prefix + "attn.qkv.bias", [3 * D], "attention", decayed: false, .constant(0))
        table.add(prefix + "attn.out.weight", [D, D], "attention", decayed: true, .normal(std: residualStd))
        table.add(prefix + "attn.out.bias", [D], "attention", decayed: false, .constant(0))
        table.add(prefix + "ln2.weight", [D], "mlp", decayed: false, .constant(1))
        table.add(prefix + "ln2.bias", [D], "mlp", decayed: false, .constant(0))
        table.add(prefix + "mlp.fc.weight", [F, D], "mlp", decayed: true, .normal(std: 0.02))
        table.add(prefix + "mlp.fc.bias", [F], "mlp", decayed: false, .constant(0))
        table.add(prefix + "mlp.proj.weight", [D, F], "mlp", decayed: true, .normal(std: residualStd))
        table.add(prefix + "mlp.proj.bias", [D], "mlp", decayed: false, .constant(0))
        self.prefix = prefix
        switch config.position {
        case .alibi:
            slopes = .allocate(capacity: H)
            slopes!.initialize(from: config.alibiSlopes, count: H)
            windows = nil
        case .hardAlibi:
            slopes = nil
            windows = .allocate(capacity: H)
            windows!.initialize(from: config.windows.map { Int32($0) }, count: H)
        case .nope, .rope:
            slopes = nil; windows = nil
        }
    }

    let prefix: String
    var offsets: [Int] = []

    deinit {
        slopes?.deallocate()
        windows?.deallocate()
    }

    func bind(_ table: ParameterTable) {
        offsets = ["ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.out.weight", "attn.out.bias",
                   "ln2.weight", "ln2.bias", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias"]
            .map { table.offset(prefix + $0) }
    }

    /// q, k, v read in place from the projection's (B, T, 3, H, dh) output,
    /// o written as (B, T, H, dh) for the out projection: no layout moves.
    private func withParams<R>(_ c: StepContext, _ body: (UnsafePointer<kl_attn_params>) throws -> R) rethrows -> R {
        try withParams(batch: c.batch, seq: c.seq, body)
    }

    private func withParams<R>(batch: Int, seq: Int, _ body: (UnsafePointer<kl_attn_params>) throws -> R) rethrows -> R {
        var layout = Attention.packedQKVLayout(length: seq, heads: H, headDim: dh)
        return try withUnsafePointer(to: &layout) { layout in
            var p = kl_attn_params(batch: Int32(batch), heads: Int32(H), q_len: Int32(seq), kv_len: Int32(seq),
                                   head_dim: Int32(dh), causal: 1, scale: 0, alibi_slopes: slopes,
                                   windows: windows, tiles: nil, layout: layout, accumulate: 0)
            return try withUnsafePointer(to: &p) { try body($0) }
        }
    }

    /// RoPE on the q and k heads of a (B, T, 3, H, dh) tensor, in place.
    private func rope(_ c: StepContext, _ t: FloatPointer, inverse: Bool) throws {
        let D3 = 3 * D
        try kernel(kl_rope_strided(c.batch, Int32(c.seq), Int32(2 * H), c.seq * D3, D3, dh, Int32(dh), Int32(rotary),
                                   c.a(ropeTable), inverse ? 1 : 0, t, c.pool), "rope",
                   cost: Cost.rope(c.batch * 2 * H, c.seq, rotary))
    }

    func plan(_ arena: inout ArenaPlanner, batch: Int, seq: Int, threads: Int) -> BlockNeeds {
        let n = batch * seq
        ln1 = arena.reserve(n * D); ln1m = arena.reserve(n); ln1r = arena.reserve(n)
        qkv = arena.reserve(n * 3 * D)
        lse = arena.reserve(batch * H * seq); om = arena.reserve(n * D); h = arena.reserve(n * D)
        ln2 = arena.reserve(n * D); ln2m = arena.reserve(n); ln2r = arena.reserve(n)
        fc = arena.reserve(n * F); act = arena.reserve(n * F)
        if position == .rope {
            ropeTable = arena.reserve(seq * rotary)
        }
        let ws = withParams(batch: batch, seq: seq) { p in
            max(kl_attn_fwd_workspace_bytes(p, KL_IMPL_FUSED, Int32(threads)),
                kl_attn_bwd_workspace_bytes(p, KL_IMPL_FUSED, Int32(threads)),
                kl_norm_bwd_workspace_bytes(Int32(D), Int32(threads)))
        }
        // Backward scratch: dact (n F), then dln, dom (n D each) and dqkv (3 n D).
        return BlockNeeds(scratchFloats: n * F + 2 * n * D + 3 * n * D + 64, workspaceBytes: ws)
    }

    /// Fills the RoPE table for this sequence length (positions 0...seq-1).
    func prepare(_ c: StepContext) throws {
        if position == .rope {
            try kernel(kl_rope_table(Int32(c.seq), Int32(rotary), ropeBase, 0, c.a(ropeTable)), "kl_rope_table")
        }
    }

    func forward(_ c: StepContext, x: FloatPointer, y: FloatPointer) throws {
        let n = c.rows, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets)
        try kernel(kl_layernorm_fwd(n, Int32(D), x, w[0], w[1], eps, c.a(ln1), c.a(ln1m), c.a(ln1r), pool), "layernorm",
                   cost: Cost.norm(rms: false, n, D, KL_PASS_FORWARD))
        try kernel(kl_linear_fwd(n, Int32(D), Int32(3 * D), c.a(ln1), w[2], w[3], c.a(qkv), 0, pool), "qkv projection",
                   cost: Cost.linear(n, D, 3 * D, bias: true, KL_PASS_FORWARD))
        let q = c.a(qkv), k = q + D, v = k + D  // (B, T, 3, H, dh), read in place
        if position == .rope { try rope(c, q, inverse: false) }
        try withParams(c) { p in
            try kernel(kl_attn_fwd(p, KL_IMPL_FUSED, q, k, v, c.a(om), c.a(lse), c.workspace, c.workspaceBytes, pool), "attention",
                       cost: Cost.attention(p, KL_PASS_FORWARD))
        }
        timed("residual copy", cost: Cost.permute(n * D)) { c.a(h).update(from: x, count: n * D) }
        try kernel(kl_linear_fwd(n, Int32(D), Int32(D), c.a(om), w[4], w[5], c.a(h), 1, pool), "out projection",
                   cost: Cost.linear(n, D, D, bias: true, KL_PASS_FORWARD))
        try kernel(kl_layernorm_fwd(n, Int32(D), c.a(h), w[6], w[7], eps, c.a(ln2), c.a(ln2m), c.a(ln2r), pool), "layernorm",
                   cost: Cost.norm(rms: false, n, D, KL_PASS_FORWARD))
        try kernel(kl_linear_fwd(n, Int32(D), Int32(F), c.a(ln2), w[8], w[9], c.a(fc), 0, pool), "mlp fc",
                   cost: Cost.linear(n, D, F, bias: true, KL_PASS_FORWARD))
        try kernel(kl_act_fwd(KL_ACT_GELU_TANH, n * F, c.a(fc), c.a(act), pool), "gelu",
                   cost: Cost.act(KL_ACT_GELU_TANH, n * F, KL_PASS_FORWARD))
        timed("residual copy", cost: Cost.permute(n * D)) { y.update(from: c.a(h), count: n * D) }
        try kernel(kl_linear_fwd(n, Int32(F), Int32(D), c.a(act), w[10], w[11], y, 1, pool), "mlp proj",
                   cost: Cost.linear(n, F, D, bias: true, KL_PASS_FORWARD))
    }

    func backward(_ c: StepContext, x: FloatPointer, g: FloatPointer) throws {
        let n = c.rows, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets), dw = TensorTable(base: c.grads, offsets: offsets)
        let dact = c.scratch, dln = dact + n * F, dom = dln + n * D, dqkv = dom + n * D
        let ws = c.workspace, wsBytes = c.workspaceBytes
        // MLP: y = h + proj(gelu(fc(LN2 h))).
        try kernel(kl_linear_bwd(n, Int32(F), Int32(D), c.a(act), w[10], g, dact, dw[10], dw[11], 0, pool), "mlp proj",
                   cost: Cost.linear(n, F, D, bias: true, KL_PASS_BACKWARD))
        try kernel(kl_act_bwd(KL_ACT_GELU_TANH, n * F, c.a(fc), dact, dact, 0, pool), "gelu",
                   cost: Cost.act(KL_ACT_GELU_TANH, n * F, KL_PASS_BACKWARD))
        try kernel(kl_linear_bwd(n, Int32(D), Int32(F), c.a(ln2), w[8], dact, dln, dw[8], dw[9], 0, pool), "mlp fc",
                   cost: Cost.linear(n, D, F, bias: true, KL_PASS_BACKWARD))
        try kernel(kl_layernorm_bwd(n, Int32(D), c.a(h), w[6], c.a(ln2m), c.a(ln2r), dln, g, dw[6], dw[7], 1, ws, wsBytes, pool),
                   "layernorm", cost: Cost.norm(rms: false, n, D, KL_PASS_BACKWARD, accumulate: true))
        // Attention: h = x + out(attn(LN1 x)); g now holds dL/dh.
        try kernel(kl_linear_bwd(n, Int32(D), Int32(D), c.a(om), w[4], g, dom, dw[4], dw[5], 0, pool), "out projection",
                   cost: Cost.linear(n, D, D, bias: true, KL_PASS_BACKWARD))
        // dom (B, T, H, dh) is dout in o's layout; dq, dk, dv land in dqkv (B, T, 3, H, dh).
        let q = c.a(qkv), k = q + D, v = k + D
        try withParams(c) { p in
            try kernel(kl_attn_bwd(p, KL_IMPL_FUSED, q, k, v, c.a(om), c.a(lse), dom, dqkv, dqkv + D, dqkv + 2 * D, ws, wsBytes, pool),
                       "attention", cost: Cost.attention(p, KL_PASS_BACKWARD))
        }
        if position == .rope { try rope(c, dqkv, inverse: true) }
        try kernel(kl_linear_bwd(n, Int32(D), Int32(3 * D), c.a(ln1), w[2], dqkv, dln, dw[2], dw[3], 0, pool), "qkv projection",
                   cost: Cost.linear(n, D, 3 * D, bias: true, KL_PASS_BACKWARD))
        try kernel(kl_layernorm_bwd(n, Int32(D), x, w[0], c.a(ln1m), c.a(ln1r), dln, g, dw[0], dw[1], 1, ws, wsBytes, pool),
                   "layernorm", cost: Cost.norm(rms: false, n, D, KL_PASS_BACKWARD, accumulate: true))
    }
}

// MARK: - Mamba block

/// Mamba-1 block with a pre-norm residual: y = x + out_proj(scan(...)).
final class MambaBlock: ModelBlock {
    var kind: String { "mamba" }
    let D: Int, Di: Int, N: Int, R: Int, K: Int, eps: Float
    let prefix: String
    var offsets: [Int] = []
    // Activations.
    private var xn = 0, rstd = 0, xzT = 0, xc = 0, u = 0, dtr = 0, bm = 0, cm = 0, delta = 0, aNeg = 0
    private var y = 0, saved = 0, last = 0
    var decoding = MambaDecodeSlots()

    init(index: Int, config: ModelConfig, table: inout ParameterTable) {
        D = config.dModel; Di = config.dInner; N = config.dState; R = config.dtRank; K = config.convKernel
        eps = config.normEpsilon
        prefix = "blocks.\(index)."
        let layers = Float(config.pattern.count)
        table.add(prefix + "norm.weight", [D], "mamba", decayed: false, .constant(1))
        // PyTorch's Linear and Conv1d defaults (uniform, bound 1/sqrt(fan_in)), as Mamba keeps them;
        // out_proj rescaled by 1/sqrt(layers) (Mamba's rescale_prenorm_residual).
        table.add(prefix + "in_proj.weight", [2 * Di, D], "mamba", decayed: true, .uniform(bound: 1 / Float(D).squareRoot()))
        table.add(prefix + "conv.weight", [Di, K], "mamba", decayed: true, .uniform(bound: 1 / Float(K).squareRoot()))
        table.add(prefix + "conv.bias", [Di], "mamba", decayed: false, .uniform(bound: 1 / Float(K).squareRoot()))
        table.add(prefix + "x_proj.weight", [R + 2 * N, Di], "mamba", decayed: true, .uniform(bound: 1 / Float(Di).squareRoot()))
        table.add(prefix + "dt_proj.weight", [Di, R], "mamba", decayed: true, .uniform(bound: 1 / Float(R).squareRoot()))
        table.add(prefix + "dt_proj.bias", [Di], "mamba", decayed: false, .dtBias(low: 1e-3, high: 1e-1))
        table.add(prefix + "A_log", [Di, N], "mamba", decayed: false, .aLog)
        table.add(prefix + "D", [Di], "mamba", decayed: false, .constant(1))
        table.add(prefix + "out_proj.weight", [D, Di], "mamba", decayed: true,
                  .uniform(bound: 1 / Float(Di).squareRoot() / layers.squareRoot()))
    }

    func bind(_ table: ParameterTable) {
        offsets = ["norm.weight", "in_proj.weight", "conv.weight", "conv.bias", "x_proj.weight", "dt_proj.weight",
                   "dt_proj.bias", "A_log", "D", "out_proj.weight"].map { table.offset(prefix + $0) }
    }

    private func withParams<R>(_ batch: Int, _ seq: Int, _ body: (UnsafePointer<kl_scan_params>) throws -> R) rethrows -> R {
        var p = kl_scan_params(batch: Int32(batch), channels: Int32(Di), seq_len: Int32(seq), state: Int32(N), groups: 1,
                               delta_softplus: 1, tiles: nil)
        return try withUnsafePointer(to: &p) { try body($0) }
    }

    func plan(_ arena: inout ArenaPlanner, batch: Int, seq: Int, threads: Int) -> BlockNeeds {
        let n = batch * seq, e = n * Di
        xn = arena.reserve(n * D); rstd = arena.reserve(n); xzT = arena.reserve(2 * e)
        xc = arena.reserve(e); u = arena.reserve(e); dtr = arena.reserve(n * R); bm = arena.reserve(n * N)
        cm = arena.reserve(n * N); delta = arena.reserve(e); aNeg = arena.reserve(Di * N); y = arena.reserve(e)
        let (savedCount, ws) = withParams(batch, seq) { p in
            (kl_scan_saved_count(p), max(kl_scan_fwd_workspace_bytes(p, KL_IMPL_FUSED, Int32(threads)),
                                         kl_scan_bwd_workspace_bytes(p, KL_IMPL_FUSED, Int32(threads))))
        }
        saved = arena.reserve(savedCount); last = arena.reserve(batch * Di * N)
        // Backward scratch: dy, du, ddelta (e each), dB, dC, ddtr, dxzT (2e), dxn, dA, dD, d(dt bias).
        let scratch = 3 * e + 2 * n * N + n * R + 2 * e + n * D + Di * N + 2 * Di + 16 * 11
        return BlockNeeds(scratchFloats: scratch, workspaceBytes: max(ws, kl_norm_bwd_workspace_bytes(Int32(D), Int32(threads))))
    }

    func forward(_ c: StepContext, x: FloatPointer, y out: FloatPointer) throws {
        let n = c.rows, e = n * Di, B = c.batch, T = c.seq, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets)
        try kernel(kl_rmsnorm_fwd(n, Int32(D), x, w[0], eps, c.a(xn), c.a(rstd), pool), "rmsnorm",
                   cost: Cost.norm(rms: true, n, D, KL_PASS_FORWARD))
        // in_proj straight into channel-major x and z (2, B, Di, T), as the conv and the scan read
        // them: per sequence (Di, T) = W (Di, D) xn_b^T, a transposed GEMM instead of a layout move.
        for b in 0..<B {
            let xb = c.a(xn) + b * T * D
            try gemm(false, true, Di, T, D, w[1], D, xb, D, beta: 0, c.a(xzT) + b * Di * T, T, pool, "in_proj")
            try gemm(false, true, Di, T, D, w[1] + Di * D, D, xb, D, beta: 0, c.a(xzT) + e + b * Di * T, T, pool, "in_proj")
        }
        try kernel(kl_conv1d_fwd(Int32(B), Int32(Di), Int32(T), Int32(K), c.a(xzT), w[2], w[3], c.a(xc), pool), "conv1d",
                   cost: Cost.conv1d(B, Di, T, K, KL_PASS_FORWARD))
        try kernel(kl_act_fwd(KL_ACT_SILU, e, c.a(xc), c.a(u), pool), "silu",
                   cost: Cost.act(KL_ACT_SILU, e, KL_PASS_FORWARD))
        // x_proj per sequence, transposed: (R + 2N, Di) (Di, T) gives dt, B, C as (., T) rows, the scan's layout.
        for b in 0..<B {
            let ub = c.a(u) + b * Di * T
            try gemm(false, false, R, T, Di, w[4], Di, ub, T, beta: 0, c.a(dtr) + b * R * T, T, pool, "x_proj")
            try gemm(false, false, N, T, Di, w[4] + R * Di, Di, ub, T, beta: 0, c.a(bm) + b * N * T, T, pool, "x_proj")
            try gemm(false, false, N, T, Di, w[4] + (R + N) * Di, Di, ub, T, beta: 0, c.a(cm) + b * N * T, T, pool, "x_proj")
            try gemm(false, false, Di, T, R, w[5], R, c.a(dtr) + b * R * T, T, beta: 0, c.a(delta) + b * Di * T, T, pool, "dt_proj")
        }
        let aLog = w[7], a = c.a(aNeg)
        timed("A = -exp(A_log)", cost: nil) { for i in 0..<(Di * N) { a[i] = -expf(aLog[i]) } }
        try withParams(B, T) { p in
            var inputs = kl_scan_inputs(u: c.a(u), delta: c.a(delta), A: a, B: c.a(bm), C: c.a(cm), D: w[8],
                                        z: c.a(xzT) + e, delta_bias: w[6], h0: nil)
            try kernel(kl_scan_fwd(p, KL_IMPL_FUSED, &inputs, c.a(y), c.a(last), c.a(saved), c.workspace, c.workspaceBytes, pool),
                       "selective scan", cost: Cost.scan(p, KL_PASS_FORWARD))
        }
        timed("residual copy", cost: Cost.permute(n * D)) { out.update(from: x, count: n * D) }
        for b in 0..<B {
            // out_b (T, D) += y_b^T (T, Di) Wout^T (Di, D)
            try gemm(true, true, T, D, Di, c.a(y) + b * Di * T, T, w[9], Di, beta: 1, out + b * T * D, D, pool, "out_proj")
        }
    }

    func backward(_ c: StepContext, x: FloatPointer, g: FloatPointer) throws {
        let n = c.rows, e = n * Di, B = c.batch, T = c.seq, pool = c.pool
        let w = TensorTable(base: c.params, offsets: offsets), dw = TensorTable(base: c.grads, offsets: offsets)
        var cursor = ArenaPlanner()
        func take(_ count: Int) -> FloatPointer { c.scratch + cursor.reserve(count) }
        let dy = take(e), du = take(e), ddelta = take(e), dB = take(n * N), dC = take(n * N), ddtr = take(n * R)
        let dxzT = take(2 * e), dxn = take(n * D), dA = take(Di * N), dD = take(Di), ddb = take(Di)
        for b in 0..<B {
            let gb = g + b * T * D, yb = c.a(y) + b * Di * T
            try gemm(true, true, Di, T, D, w[9], Di, gb, D, beta: 0, dy + b * Di * T, T, pool, "out_proj")     // dy_b = Wout^T g_b^T
            try gemm(true, true, D, Di, T, gb, D, yb, T, beta: 1, dw[9], Di, pool, "out_proj")                // dWout += g_b^T y_b^T
        }
        timed("zero dz", cost: Cost.permute(e / 2)) { dxzT.update(repeating: 0, count: e) }
        try withParams(B, T) { p in
            var inputs = kl_scan_inputs(u: c.a(u), delta: c.a(delta), A: c.a(aNeg), B: c.a(bm), C: c.a(cm), D: w[8],
                                        z: c.a(xzT) + e, delta_bias: w[6], h0: nil)
            var grads = kl_scan_grads(du: du, ddelta: ddelta, dA: dA, dB: dB, dC: dC, dD: dD, dz: dxzT + e,
                                      ddelta_bias: ddb, dh0: nil)
            try kernel(kl_scan_bwd(p, KL_IMPL_FUSED, &inputs, dy, nil, c.a(saved), &grads, c.workspace, c.workspaceBytes, pool),
                       "selective scan", cost: Cost.scan(p, KL_PASS_BACKWARD))
        }
        // The scan writes its parameter gradients; add them (A = -exp(A_log), so dA_log = dA A).
        let a = c.a(aNeg)
        timed("scan parameter gradients", cost: nil) {
            for i in 0..<(Di * N) { dw[7][i] += dA[i] * a[i] }
            for i in 0..<Di {
                dw[8][i] += dD[i]
                dw[6][i] += ddb[i]
            }
        }
        for b in 0..<B {
            let ub = c.a(u) + b * Di * T, db = ddelta + b * Di * T
            try gemm(false, true, Di, R, T, db, T, c.a(dtr) + b * R * T, T, beta: 1, dw[5], R, pool, "dt_proj")   // dWdt += ddelta dtr^T
            try gemm(true, false, R, T, Di, w[5], R, db, T, beta: 0, ddtr + b * R * T, T, pool, "dt_proj")       // ddtr = Wdt^T ddelta
            for (row, rows, grad) in [(0, R, ddtr), (R, N, dB), (R + N, N, dC)] {
                let gb = grad + b * rows * T
                try gemm(false, true, rows, Di, T, gb, T, ub, T, beta: 1, dw[4] + row * Di, Di, pool, "x_proj")      // dWx += G u^T
                try gemm(true, false, Di, T, rows, w[4] + row * Di, Di, gb, T, beta: 1, du + b * Di * T, T, pool, "x_proj") // du += Wx^T G
            }
        }
        try kernel(kl_act_bwd(KL_ACT_SILU, e, c.a(xc), du, du, 0, pool), "silu",
                   cost: Cost.act(KL_ACT_SILU, e, KL_PASS_BACKWARD))
        try kernel(kl_conv1d_bwd(Int32(B), Int32(Di), Int32(T), Int32(K), c.a(xzT), w[2], du, dxzT, dw[2], dw[3], 1, pool),
                   "conv1d", cost: Cost.conv1d(B, Di, T, K, KL_PASS_BACKWARD))
        // in_proj from channel-major dx, dz: dxn_b (T, D) = dx_b^T W_x + dz_b^T W_z; dW_part += d_part,b xn_b.
        for b in 0..<B {
            let xb = c.a(xn) + b * T * D, dxb = dxn + b * T * D
            for part in 0..<2 {
                let gb = dxzT + part * e + b * Di * T, wp = w[1] + part * Di * D
                try gemm(true, false, T, D, Di, gb, T, wp, D, beta: part == 0 ? 0 : 1, dxb, D, pool, "in_proj")
                try gemm(false, false, Di, D, T, gb, T, xb, D, beta: 1, dw[1] + part * Di * D, D, pool, "in_proj")
            }
        }
        try kernel(kl_rmsnorm_bwd(n, Int32(D), x, w[0], c.a(rstd), dxn, g, dw[0], 1, c.workspace, c.workspaceBytes, pool),
                   "rmsnorm", cost: Cost.norm(rms: true, n, D, KL_PASS_BACKWARD, accumulate: true))
    }
}

// MARK: - LSTM layer

/// One LSTM layer (hidden = d_model, no residual): the input projection of
/// all steps in one GEMM, then per step the recurrent GEMM and the fused cell.
final class LSTMBlock: ModelBlock {
    var kind: String { "lstm" }
    let D: Int
    let prefix: String
    var offsets: [Int] = []
    private var xT = 0, gates = 0, hs = 0, cs = 0, zeros = 0
    var decoding = LSTMDecodeSlots()

    init(index: Int, config: ModelConfig, table: inout ParameterTable) {
        D = config.dModel
        prefix = "blocks.\(index)."
        let bound = 1 / Float(D).squareRoot()  // PyTorch's LSTM initialization
        table.add(prefix + "lstm.w_ih", [4 * D, D], "lstm", decayed: true, .uniform(bound: bound))
        table.add(prefix + "lstm.w_hh", [4 * D, D], "lstm", decayed: true, .uniform(bound: bound))
        table.add(prefix + "lstm.bias", [4 * D], "lstm", decayed: false, .uniform(bound: bound))
    }

    func bind(_ table: ParameterTable) {
        offsets = ["lstm.w_ih", "lstm.w_hh", "lstm.bias"].map { table.offset(prefix + $0) }
    }

    func plan(_ arena: inout ArenaPlanner, batch: Int, seq: Int, threads: Int) -> BlockNeeds {
        let n = batch * seq
        xT = arena.reserve(n * D); gates = arena.reserve(n * 4 * D); hs = arena.reserve(n * D); cs = arena.reserve(n * D)
        zeros = arena.reserve(batch * D)
        // Backward scratch: dhs, dgates (4 n D), dc ping-pong (2 B D), dxT.
        return BlockNeeds(scratchFloats: n * D + 4 * n * D + 2 * batch * D + n * D + 64, workspaceBytes: 0)
    }

    func forward(_ c: StepContext, x: FloatPointer, y: FloatPointer) throws {
        let B = c.batch, T = c.seq, n = c.rows, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets)
        // (B, T, D) -> time-major (T, B, D): each step's rows are contiguous for its GEMM.
        try kernel(kl_heads_split(1, Int32(B), 1, Int32(T), Int32(D), x, c.a(xT), pool), "to time-major",
                   cost: Cost.permute(n * D))
        try kernel(kl_linear_fwd(n, Int32(D), Int32(4 * D), c.a(xT), w[0], w[2], c.a(gates), 0, pool), "input projection",
                   cost: Cost.linear(n, D, 4 * D, bias: true, KL_PASS_FORWARD))
        c.a(zeros).update(repeating: 0, count: B * D)
        for t in 0..<T {
            let gt = c.a(gates) + t * B * 4 * D
            if t > 0 { try gemm(false, true, B, 4 * D, D, c.a(hs) + (t - 1) * B * D, D, w[1], D, beta: 1, gt, 4 * D, pool, "recurrent gemm") }
            let cPrev = t > 0 ? c.a(cs) + (t - 1) * B * D : c.a(zeros)
            try kernel(kl_lstm_cell_fwd(B, D, gt, cPrev, c.a(cs) + t * B * D, c.a(hs) + t * B * D, pool), "lstm cell",
                           cost: Cost.lstmCell(B, D, KL_PASS_FORWARD))
        }
        try kernel(kl_heads_merge(1, Int32(B), 1, Int32(T), Int32(D), c.a(hs), y, pool), "to batch-major",
                   cost: Cost.permute(n * D))
    }

    func backward(_ c: StepContext, x: FloatPointer, g: FloatPointer) throws {
        let B = c.batch, T = c.seq, n = c.rows, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets), dw = TensorTable(base: c.grads, offsets: offsets)
        let dhs = c.scratch, dgates = dhs + n * D, dcA = dgates + 4 * n * D, dcB = dcA + B * D, dxT = dcB + B * D
        try kernel(kl_heads_split(1, Int32(B), 1, Int32(T), Int32(D), g, dhs, pool), "to time-major",
                   cost: Cost.permute(n * D))
        var dcNext: FloatPointer? = nil, dcOut = dcA
        for t in stride(from: T - 1, through: 0, by: -1) {
            let gt = c.a(gates) + t * B * 4 * D, dgt = dgates + t * B * 4 * D
            let cPrev = t > 0 ? c.a(cs) + (t - 1) * B * D : c.a(zeros)
            try kernel(kl_lstm_cell_bwd(B, D, gt, cPrev, c.a(cs) + t * B * D, dhs + t * B * D, dcNext, dgt, dcOut, pool),
                       "lstm cell", cost: Cost.lstmCell(B, D, KL_PASS_BACKWARD))
            if t > 0 {
                let hPrev = c.a(hs) + (t - 1) * B * D
                try gemm(false, false, B, D, 4 * D, dgt, 4 * D, w[1], D, beta: 1, dhs + (t - 1) * B * D, D, pool, "recurrent gemm")  // dh_{t-1} += dg W_hh
                try gemm(true, false, 4 * D, D, B, dgt, 4 * D, hPrev, D, beta: 1, dw[1], D, pool, "recurrent gemm")                    // dW_hh += dg^T h_{t-1}
            }
            dcNext = dcOut
            dcOut = dcOut == dcA ? dcB : dcA
        }
        try kernel(kl_linear_bwd(n, Int32(D), Int32(4 * D), c.a(xT), w[0], dgates, dxT, dw[0], dw[2], 0, pool), "input projection",
                   cost: Cost.linear(n, D, 4 * D, bias: true, KL_PASS_BACKWARD))
        try kernel(kl_heads_merge(1, Int32(B), 1, Int32(T), Int32(D), dxT, g, pool), "to batch-major",
                   cost: Cost.permute(n * D))
    }
}
