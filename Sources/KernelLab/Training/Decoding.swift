import CKernels
import Foundation

// Incremental decoding: one new token per sequence per step, each block
// carrying its state from step to step. The transformer keeps a KV cache of
// capacity tokens per layer (2 B capacity d_model floats: it grows with the
// context); Mamba keeps its conv window (B, Di, K - 1) and SSM state
// (B, Di, N), LSTM its h and c (B, D): fixed in the context length. State
// and step buffers come from one arena planned per (batch, capacity), so a
// step allocates nothing.

/// What a block's decoding step runs on.
struct DecodeContext {
    let batch: Int
    /// Tokens already in the state (the new token's position).
    let position: Int
    let capacity: Int
    let params: FloatPointer
    let arena: FloatPointer
    let workspace: UnsafeMutableRawPointer
    let workspaceBytes: Int
    let pool: OpaquePointer

    func p(_ offset: Int) -> FloatPointer { params + offset }
    func a(_ offset: Int) -> FloatPointer { arena + offset }
}

/// A block's decoding needs besides its arena slots.
struct DecodeNeeds {
    var workspaceBytes = 0
    /// Floats of the block's state proper (cache or recurrent state), a part of its slots.
    var stateFloats = 0
}

// MARK: - Transformer block

struct AttentionDecodeSlots {
    var kCache = 0, vCache = 0, ln = 0, mean = 0, rstd = 0, qkv = 0, om = 0, h = 0, fc = 0, act = 0, rope = 0
}

extension AttentionBlock {
    /// q read in place from the (B, 1, 3, H, dh) projection, o written as (B, 1, H, dh);
    /// the caches packed, (B, H, capacity, dh).
    private func withDecodeParams<R>(_ batch: Int, kvLen: Int, _ body: (UnsafeMutablePointer<kl_attn_params>) throws -> R) rethrows -> R {
        var layout = kl_attn_layout()
        layout.q = kl_attn_strides(batch: 3 * D, head: dh, row: 3 * D)
        layout.o = kl_attn_strides(batch: D, head: dh, row: D)
        return try withUnsafePointer(to: &layout) { layout in
            var p = kl_attn_params(batch: Int32(batch), heads: Int32(H), q_len: 1, kv_len: Int32(kvLen), head_dim: Int32(dh), causal: 1,
                                   scale: 0, alibi_slopes: slopes, windows: windows, tiles: nil, layout: layout, accumulate: 0)
            return try body(&p)
        }
    }

    func planDecoding(_ arena: inout ArenaPlanner, batch: Int, capacity: Int, threads: Int) -> DecodeNeeds {
        let cache = batch * H * capacity * dh
        var s = AttentionDecodeSlots()
        s.kCache = arena.reserve(cache); s.vCache = arena.reserve(cache)
        s.ln = arena.reserve(batch * D); s.mean = arena.reserve(batch); s.rstd = arena.reserve(batch)
        s.qkv = arena.reserve(batch * 3 * D)
        s.om = arena.reserve(batch * D); s.h = arena.reserve(batch * D)
        s.fc = arena.reserve(batch * F); s.act = arena.reserve(batch * F); s.rope = arena.reserve(max(rotary, 1))
        decoding = s
        let ws = withDecodeParams(batch, kvLen: capacity) { kl_attn_decode_workspace_bytes($0, capacity, Int32(threads)) }
        return DecodeNeeds(workspaceBytes: ws, stateFloats: 2 * cache)
    }

    func resetDecoding(_ c: DecodeContext) {}  // rows past the position are never read

    func step(_ c: DecodeContext, x: FloatPointer, y: FloatPointer) throws {
        let B = c.batch, s = decoding, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets)
        try kernel(kl_layernorm_fwd(B, Int32(D), x, w[0], w[1], eps, c.a(s.ln), c.a(s.mean), c.a(s.rstd), pool), "layernorm")
        try kernel(kl_linear_fwd(B, Int32(D), Int32(3 * D), c.a(s.ln), w[2], w[3], c.a(s.qkv), 0, pool), "qkv projection")
        let q = c.a(s.qkv), k = q + D, v = k + D  // (B, 1, 3, H, dh)
        if position == .rope {
            try kernel(kl_rope_table(1, Int32(rotary), ropeBase, c.position, c.a(s.rope)), "kl_rope_table")
            try kernel(kl_rope_strided(B, 1, Int32(2 * H), 3 * D, 3 * D, dh, Int32(dh), Int32(rotary), c.a(s.rope), 0, q, pool), "rope")
        }
        // Append this token's key and value: row `position` of every (b, h).
        for b in 0..<B {
            for hh in 0..<H {
                let row = ((b * H + hh) * c.capacity + c.position) * dh, from = b * 3 * D + hh * dh
                c.a(s.kCache + row).update(from: k + from, count: dh)
                c.a(s.vCache + row).update(from: v + from, count: dh)
            }
        }
        try withDecodeParams(B, kvLen: c.position + 1) { p in
            try kernel(kl_attn_decode(p, c.capacity, q, c.a(s.kCache), c.a(s.vCache), c.a(s.om), nil, c.workspace, c.workspaceBytes, pool),
                       "attention decode")
        }
        c.a(s.h).update(from: x, count: B * D)
        try kernel(kl_linear_fwd(B, Int32(D), Int32(D), c.a(s.om), w[4], w[5], c.a(s.h), 1, pool), "attention out projection")
        try kernel(kl_layernorm_fwd(B, Int32(D), c.a(s.h), w[6], w[7], eps, c.a(s.ln), c.a(s.mean), c.a(s.rstd), pool), "layernorm")
        try kernel(kl_linear_fwd(B, Int32(D), Int32(F), c.a(s.ln), w[8], w[9], c.a(s.fc), 0, pool), "mlp fc")
        try kernel(kl_act_fwd(KL_ACT_GELU_TANH, B * F, c.a(s.fc), c.a(s.act), pool), "gelu")
        y.update(from: c.a(s.h), count: B * D)
        try kernel(kl_linear_fwd(B, Int32(F), Int32(D), c.a(s.act), w[10], w[11], y, 1, pool), "mlp proj")
    }
}

// MARK: - Mamba block

struct MambaDecodeSlots {
    var conv = 0, ssm = 0, xn = 0, rstd = 0, xzT = 0, xc = 0, u = 0, xdbl = 0, bm = 0, cm = 0, delta = 0, aNeg = 0, y = 0
}

extension MambaBlock {
    func planDecoding(_ arena: inout ArenaPlanner, batch: Int, capacity: Int, threads: Int) -> DecodeNeeds {
        var s = MambaDecodeSlots()
        s.conv = arena.reserve(batch * Di * (K - 1)); s.ssm = arena.reserve(batch * Di * N)
        s.xn = arena.reserve(batch * D); s.rstd = arena.reserve(batch)
        s.xzT = arena.reserve(2 * batch * Di); s.xc = arena.reserve(batch * Di); s.u = arena.reserve(batch * Di)
        s.xdbl = arena.reserve(batch * R); s.bm = arena.reserve(batch * N); s.cm = arena.reserve(batch * N)
        s.delta = arena.reserve(batch * Di); s.aNeg = arena.reserve(Di * N); s.y = arena.reserve(batch * Di)
        decoding = s
        return DecodeNeeds(workspaceBytes: 0, stateFloats: batch * Di * (K - 1 + N))
    }

    func resetDecoding(_ c: DecodeContext) {
        let s = decoding
        c.a(s.conv).update(repeating: 0, count: c.batch * Di * (K - 1))
        c.a(s.ssm).update(repeating: 0, count: c.batch * Di * N)
        deriveA(c)
    }

    /// A = -exp(A_log), once per reset rather than per step.
    func deriveA(_ c: DecodeContext) {
        let aLog = c.p(offsets[7]), a = c.a(decoding.aNeg)
        for i in 0..<(Di * N) { a[i] = -expf(aLog[i]) }
    }

    func step(_ c: DecodeContext, x: FloatPointer, y out: FloatPointer) throws {
        let B = c.batch, s = decoding, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets)
        try kernel(kl_rmsnorm_fwd(B, Int32(D), x, w[0], eps, c.a(s.xn), c.a(s.rstd), pool), "rmsnorm")
        // in_proj as two linears, x and z straight into (2, B, Di) as the conv and the scan read them.
        try kernel(kl_linear_fwd(B, Int32(D), Int32(Di), c.a(s.xn), w[1], nil, c.a(s.xzT), 0, pool), "in_proj")
        try kernel(kl_linear_fwd(B, Int32(D), Int32(Di), c.a(s.xn), w[1] + Di * D, nil, c.a(s.xzT) + B * Di, 0, pool), "in_proj")
        try kernel(kl_conv1d_step(Int32(B), Int32(Di), Int32(K), c.a(s.xzT), w[2], w[3], c.a(s.conv), c.a(s.xc), pool), "conv1d step")
        try kernel(kl_act_fwd(KL_ACT_SILU, B * Di, c.a(s.xc), c.a(s.u), pool), "silu")
        // x_proj by its three row blocks: dt (B, R), then B and C straight into the (B, N) rows the scan step reads.
        try kernel(kl_linear_fwd(B, Int32(Di), Int32(R), c.a(s.u), w[4], nil, c.a(s.xdbl), 0, pool), "x_proj")
        try kernel(kl_linear_fwd(B, Int32(Di), Int32(N), c.a(s.u), w[4] + R * Di, nil, c.a(s.bm), 0, pool), "x_proj")
        try kernel(kl_linear_fwd(B, Int32(Di), Int32(N), c.a(s.u), w[4] + (R + N) * Di, nil, c.a(s.cm), 0, pool), "x_proj")
        try gemm(false, true, B, Di, R, c.a(s.xdbl), R, w[5], R, beta: 0, c.a(s.delta), Di, pool, "dt_proj")  // dt_proj (bias in the scan)
        var p = kl_scan_params(batch: Int32(B), channels: Int32(Di), seq_len: 1, state: Int32(N), groups: 1, delta_softplus: 1, tiles: nil)
        var inputs = kl_scan_inputs(u: c.a(s.u), delta: c.a(s.delta), A: c.a(s.aNeg), B: c.a(s.bm), C: c.a(s.cm), D: w[8],
                                    z: c.a(s.xzT) + B * Di, delta_bias: w[6], h0: nil)
        try kernel(kl_scan_step(&p, &inputs, c.a(s.ssm), c.a(s.y), pool), "scan step")
        out.update(from: x, count: B * D)
        try kernel(kl_linear_fwd(B, Int32(Di), Int32(D), c.a(s.y), w[9], nil, out, 1, pool), "out_proj")
    }
}

// MARK: - LSTM layer

struct LSTMDecodeSlots {
    var h = 0, c = 0, gates = 0, hNew = 0, cNew = 0
}

extension LSTMBlock {
    func planDecoding(_ arena: inout ArenaPlanner, batch: Int, capacity: Int, threads: Int) -> DecodeNeeds {
        var s = LSTMDecodeSlots()
        s.h = arena.reserve(batch * D); s.c = arena.reserve(batch * D); s.gates = arena.reserve(batch * 4 * D)
        s.hNew = arena.reserve(batch * D); s.cNew = arena.reserve(batch * D)
        decoding = s
        return DecodeNeeds(workspaceBytes: 0, stateFloats: 2 * batch * D)
    }

    func resetDecoding(_ c: DecodeContext) {
        c.a(decoding.h).update(repeating: 0, count: c.batch * D)
        c.a(decoding.c).update(repeating: 0, count: c.batch * D)
    }

    func step(_ c: DecodeContext, x: FloatPointer, y: FloatPointer) throws {
        let B = c.batch, s = decoding, pool = c.pool, w = TensorTable(base: c.params, offsets: offsets)
        try kernel(kl_linear_fwd(B, Int32(D), Int32(4 * D), x, w[0], w[2], c.a(s.gates), 0, pool), "lstm input projection")
        try gemm(false, true, B, 4 * D, D, c.a(s.h), D, w[1], D, beta: 1, c.a(s.gates), 4 * D, pool, "recurrent gemm")
        try kernel(kl_lstm_cell_fwd(B, D, c.a(s.gates), c.a(s.c), c.a(s.cNew), c.a(s.hNew), pool), "lstm cell")
        c.a(s.c).update(from: c.a(s.cNew), count: B * D)
        c.a(s.h).update(from: c.a(s.hNew), count: B * D)
        y.update(from: c.a(s.h), count: B * D)
    }
}

// MARK: - The model's decoder

/// The decoding arena of a `LanguageModel` and where its pieces are.
final class DecoderState {
    let batch: Int, capacity: Int
    let arena: FloatBuffer
    let workspace: Workspace
    let pool: ThreadPool
    let ids: UnsafeMutablePointer<Int32>
    /// Hidden-state ping-pong (B, D) x 2, the final norm's output and stats, the logits (B, V).
    let hidden: Int, normed: Int, mean: Int, rstd: Int, logits: Int
    /// Floats of state proper (KV caches, conv and SSM states, h and c).
    let stateFloats: Int
    var position = 0

    init(batch: Int, capacity: Int, arena: FloatBuffer, workspace: Workspace, pool: ThreadPool,
         hidden: Int, normed: Int, mean: Int, rstd: Int, logits: Int, stateFloats: Int) {
        self.batch = batch; self.capacity = capacity
        self.arena = arena; self.workspace = workspace; self.pool = pool
        self.hidden = hidden; self.normed = normed; self.mean = mean; self.rstd = rstd; self.logits = logits
        self.stateFloats = stateFloats
        ids = .allocate(capacity: batch)
        ids.initialize(repeating: 0, count: batch)
    }

    deinit { ids.deallocate() }

    func context(_ params: FloatPointer) -> DecodeContext {
        workspace.withUnsafeMutableRawBufferPointer { ws in
            pool.withUnsafePool { handle in
                DecodeContext(batch: batch, position: position, capacity: capacity, params: params, arena: arena.base,
                              workspace: ws.baseAddress!, workspaceBytes: ws.count, pool: handle)
            }
        }
    }
}

extension LanguageModel {
    /// Plans and allocates the decoding state for `batch` sequences of up to
    /// `capacity` tokens on `threads` threads, and resets it. Returns the
    /// bytes of the whole decoding arena (state, step buffers, workspace).
    @discardableResult
    public func prepareDecoding(batch: Int, capacity: Int, threads: Int) throws -> Int {
        try checkCDimensions([("batch", batch), ("capacity", capacity), ("threads", threads)])
        let D = config.dModel, V = config.vocabulary
        guard batch * max(V, 4 * D) <= Int(Int32.max), batch * capacity <= Int(Int32.max) / D else {
            throw KernelLabError.invalidArgument(argument: "capacity", reason: "batch x capacity = \(batch) x \(capacity) is too large")
        }
        decoder = nil
        var planner = ArenaPlanner()
        let hidden = planner.reserve(2 * batch * D), normed = planner.reserve(batch * D)
        let mean = planner.reserve(batch), rstd = planner.reserve(batch), logits = planner.reserve(batch * V)
        var workspaceBytes = 0, stateFloats = 0
        for block in blocks {
            let needs = block.planDecoding(&planner, batch: batch, capacity: capacity, threads: threads)
            workspaceBytes = max(workspaceBytes, needs.workspaceBytes)
            stateFloats += needs.stateFloats
        }
        let state = DecoderState(batch: batch, capacity: capacity, arena: try FloatBuffer(count: planner.floats),
                                 workspace: try Workspace(bytes: max(workspaceBytes, 64)), pool: try ThreadPool(threads: threads),
                                 hidden: hidden, normed: normed, mean: mean, rstd: rstd, logits: logits, stateFloats: stateFloats)
        decoder = state
        try resetDecoding()
        return state.arena.count * 4 + state.workspace.capacity
    }

    /// Starts new sequences: position 0, every state cleared. Call it again
    /// after the parameters change (Mamba's A is derived once per reset).
    public func resetDecoding() throws {
        let state = try activeDecoder()
        state.position = 0
        let c = state.context(params.base)
        for block in blocks { block.resetDecoding(c) }
    }

    private func activeDecoder() throws -> DecoderState {
        guard let decoder else {
            throw KernelLabError.invalidArgument(argument: "model", reason: "call prepareDecoding(batch:capacity:threads:) first")
        }
        return decoder
    }

    /// Tokens already decoded (the next token's position).
    public var decodingPosition: Int { decoder?.position ?? 0 }

    /// Bytes of the decoding state proper: every KV cache (2 B capacity
    /// d_model floats per attention layer), conv and SSM state, LSTM h and c.
    public var decodingStateBytes: Int { (decoder?.stateFloats ?? 0) * 4 }

    /// Feeds one token per sequence (`tokens`: (B)) and writes the next-token
    /// logits (B, V) into `logits`, reusing its storage.
    ///
    /// - Throws: `.shapeMismatch` for the wrong number of tokens,
    ///   `.invalidArgument` for a token outside the vocabulary or a full state.
    public func decodeStep(_ tokens: [Int32], logits: inout [Float]) throws {
        let state = try activeDecoder()
        let B = state.batch, D = config.dModel, V = config.vocabulary
        guard tokens.count == B else {
            throw KernelLabError.shapeMismatch(argument: "tokens", expected: "(B=\(B))", got: "(\(tokens.count))")
        }
        guard state.position < state.capacity else {
            throw KernelLabError.invalidArgument(argument: "tokens",
                                                 reason: "the state holds its capacity of \(state.capacity) tokens; resetDecoding() to start again")
        }
        if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= V }) {
            throw KernelLabError.invalidArgument(argument: "tokens", reason: "tokens[\(bad)] = \(tokens[bad]) is outside the vocabulary 0..<\(V)")
        }
        tokens.withUnsafeBufferPointer { state.ids.update(from: $0.baseAddress!, count: B) }
        let c = state.context(params.base)
        var x = c.a(state.hidden), y = x + B * D
        try kernel(kl_embedding_fwd(B, Int32(D), Int32(V), state.ids, c.p(embedding), x, c.pool), "embedding")
        for block in blocks {
            try block.step(c, x: x, y: y)
            swap(&x, &y)
        }
        if let finalBias {
            try kernel(kl_layernorm_fwd(B, Int32(D), x, c.p(finalWeight), c.p(finalBias), config.normEpsilon, c.a(state.normed),
                                        c.a(state.mean), c.a(state.rstd), c.pool), "final layernorm")
        } else {
            try kernel(kl_rmsnorm_fwd(B, Int32(D), x, c.p(finalWeight), config.normEpsilon, c.a(state.normed), c.a(state.rstd), c.pool),
                       "final rmsnorm")
        }
        try kernel(kl_linear_fwd(B, Int32(D), Int32(V), c.a(state.normed), c.p(head), nil, c.a(state.logits), 0, c.pool), "lm head")
        state.position += 1
        if logits.count != B * V { logits = [Float](repeating: 0, count: B * V) }
        logits.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: c.a(state.logits), count: B * V) }
    }

    /// Greedy decoding: resets the state, feeds `prompts` ((B, P) row-major,
    /// one prompt of P tokens per sequence), then appends the argmax token
    /// `count` times. Returns the generated tokens, (B, count) row-major.
    public func generate(prompts: [Int32], promptLength: Int, count: Int) throws -> [Int32] {
        let state = try activeDecoder()
        let B = state.batch, V = config.vocabulary
        guard promptLength >= 1, prompts.count == B * promptLength else {
            throw KernelLabError.shapeMismatch(argument: "prompts", expected: "(B=\(B), P=\(promptLength)) with P >= 1",
                                               got: "\(prompts.count) tokens")
        }
        guard count >= 0, promptLength + count - 1 <= state.capacity else {
            throw KernelLabError.invalidArgument(argument: "count",
                                                 reason: "\(promptLength) prompt + \(count) new tokens exceed the capacity of \(state.capacity)")
        }
        try resetDecoding()
        var logits: [Float] = [], tokens = [Int32](repeating: 0, count: B), out: [Int32] = []
        out.reserveCapacity(B * count)
        var generated = [[Int32]](repeating: [], count: B)
        for t in 0..<(promptLength + count - 1) {
            if t < promptLength {
                for b in 0..<B { tokens[b] = prompts[b * promptLength + t] }
            }
            try decodeStep(tokens, logits: &logits)
            if t >= promptLength - 1 {
                for b in 0..<B {
                    var best = 0
                    for v in 1..<V where logits[b * V + v] > logits[b * V + best] { best = v }
                    tokens[b] = Int32(best)
                    generated[b].append(Int32(best))
                }
            }
        }
        for row in generated { out += row }
        return out
    }

    /// For the decode benchmark: the next step writes at `position` again
    /// (a timed step repeats at one context length; the KV rows past it are
    /// never read, and the recurrent states' values do not change the time).
    func rewindDecoding(to position: Int) throws {
        let state = try activeDecoder()
        guard (0..<state.capacity).contains(position) else {
            throw KernelLabError.invalidArgument(argument: "position", reason: "must be in 0..<\(state.capacity)")
        }
        state.position = position
    }

    /// Drops the decoding state and frees its memory.
    public func releaseDecoding() { decoder = nil }

    /// The logits (B, T, V) of the last non-training forward.
    public func forwardLogits() throws -> [Float] {
        guard let (pointer, count) = lastLogits else {
            throw KernelLabError.invalidArgument(argument: "logits", reason: "needs a forward with training: false just before")
        }
        return Array(UnsafeBufferPointer(start: pointer, count: count))
    }

    /// For the decode benchmark: fills every state with small random values
    /// as if `position` tokens had been decoded (a step's time does not
    /// depend on the values), so a long context need not be decoded first.
    func fillDecodingState(position: Int, seed: UInt64) throws {
        let state = try activeDecoder()
        guard (0..<state.capacity).contains(position) else {
            throw KernelLabError.invalidArgument(argument: "position", reason: "must be in 0..<\(state.capacity)")
        }
        try resetDecoding()
        var rng = SplitMix64(seed: seed)
        // The whole arena: caches, states and step buffers (steps overwrite the latter).
        let base = state.arena.base
        for i in 0..<state.arena.count { base[i] = Float(Int(rng.next() % 2001) - 1000) * 1e-3 }
        let c = state.context(params.base)
        for case let mamba as MambaBlock in blocks { mamba.deriveA(c) }
        state.position = position
    }
}
