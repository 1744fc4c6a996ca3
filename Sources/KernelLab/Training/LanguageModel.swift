import CKernels
import Foundation

/// A language model on the lab's kernels (see `ModelConfig`): one flat
/// parameter buffer with its size table, one flat gradient buffer of the
/// same layout, and every activation carved from one arena planned for a
/// (batch, seq) shape, so a training step allocates nothing.
///
/// Use: `prepare(batch:seq:threads:)` once per shape, then per step
/// `zeroGradients()`, `forward(_:training: true)`, `backward()`; the trainer
/// does this. The same seed, ISA and thread count give the same numbers bit
/// for bit (every kernel's reductions run in a fixed order).
public final class LanguageModel {
    public let config: ModelConfig
    public let table: ParameterTable
    let params: FloatBuffer
    let grads: FloatBuffer
    let blocks: [ModelBlock]
    let embedding: Int, head: Int, finalWeight: Int, finalBias: Int?
    /// The decoding state (Decoding.swift), when prepared.
    var decoder: DecoderState?

    // The current shape's buffers.
    private var shape: (batch: Int, seq: Int, threads: Int)?
    private var arena: FloatBuffer?
    private var workspace: Workspace?
    private var pool: ThreadPool?
    private var scratchOffset = 0
    private var residuals: [Int] = []
    private var normed = 0, normMean = 0, normRstd = 0, logits = 0, losses = 0, gradient = 0
    private var ids: UnsafeMutablePointer<Int32>?
    private var targets: UnsafeMutablePointer<Int32>?
    private var mask: FloatBuffer?
    private var forwardWasTraining = false
    /// Whether the arena's logits are the last forward's scores (a training forward replaces them by their gradient).
    private var logitsAreScores = false

    /// Builds the model and initializes its parameters from `seed`.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for an invalid config,
    ///   `.kernel` when the buffers cannot be allocated.
    public init(config: ModelConfig, seed: UInt64) throws {
        try config.validate()
        try ISA.initialize()
        self.config = config
        let (table, blocks) = ParameterTableBuilder.build(config)
        for block in blocks { block.bind(table) }
        self.blocks = blocks
        self.table = table
        embedding = table.offset("embedding.weight")
        head = config.tiedEmbeddings ? embedding : table.offset("lm_head.weight")
        finalWeight = table.offset("final_norm.weight")
        finalBias = table.entry("final_norm.bias")?.offset
        params = try FloatBuffer(count: table.count)
        grads = try FloatBuffer(count: table.count)
        table.initialize(params.base, seed: seed)
    }

    deinit {
        ids?.deallocate()
        targets?.deallocate()
    }

    /// Parameters proper (alignment padding excluded).
    public var parameterCount: Int { table.parameterCount }

    /// Plans and allocates the activations for (batch, seq) on `threads`
    /// threads (a no-op when the shape is unchanged). Returns the arena's bytes.
    @discardableResult
    public func prepare(batch: Int, seq: Int, threads: Int) throws -> Int {
        try checkCDimensions([("batch", batch), ("seq", seq), ("threads", threads)])
        if let shape, shape == (batch, seq, threads), let arena { return arena.count * 4 }
        let n = batch * seq, D = config.dModel, V = config.vocabulary
        guard n <= Int(Int32.max) / max(V, 4 * D) else {
            throw KernelLabError.invalidArgument(argument: "batch", reason: "batch x seq = \(n) rows is too large for this model")
        }
        var planner = ArenaPlanner()
        residuals = (0...blocks.count).map { _ in planner.reserve(n * D) }
        normed = planner.reserve(n * D); normMean = planner.reserve(n); normRstd = planner.reserve(n)
        logits = planner.reserve(n * V); losses = planner.reserve(n); gradient = planner.reserve(n * D)
        var needs = BlockNeeds(scratchFloats: n * D,
                               workspaceBytes: kl_norm_bwd_workspace_bytes(Int32(D), Int32(threads)))
        for block in blocks {
            let blockNeeds = block.plan(&planner, batch: batch, seq: seq, threads: threads)
            needs.scratchFloats = max(needs.scratchFloats, blockNeeds.scratchFloats)
            needs.workspaceBytes = max(needs.workspaceBytes, blockNeeds.workspaceBytes)
        }
        scratchOffset = planner.reserve(needs.scratchFloats)
        arena = nil; logitsAreScores = false
        let arena = try FloatBuffer(count: planner.floats)
        self.arena = arena
        workspace = try Workspace(bytes: needs.workspaceBytes)
        pool = try ThreadPool(threads: threads)
        ids?.deallocate(); targets?.deallocate()
        ids = .allocate(capacity: n); ids!.initialize(repeating: 0, count: n)
        targets = .allocate(capacity: n); targets!.initialize(repeating: 0, count: n)
        mask = try FloatBuffer(count: n)
        shape = (batch, seq, threads)
        let context = try stepContext()
        for block in blocks { try block.prepare(context) }
        return arena.count * 4
    }

    /// Bytes of the current arena and workspace (the activations' whole memory).
    public var activationBytes: Int { (arena?.count ?? 0) * 4 + (workspace?.capacity ?? 0) }

    private func stepContext() throws -> StepContext {
        guard let shape, let arena, let workspace, let pool else {
            throw KernelLabError.invalidArgument(argument: "model", reason: "call prepare(batch:seq:threads:) first")
        }
        return workspace.withUnsafeMutableRawBufferPointer { ws in
            pool.withUnsafePool { handle in
                StepContext(batch: shape.batch, seq: shape.seq, params: params.base, grads: grads.base, arena: arena.base,
                            scratch: arena.base + scratchOffset, workspace: ws.baseAddress!, workspaceBytes: ws.count, pool: handle)
            }
        }
    }

    /// The summed loss of the counted positions and their number.
    public struct LossSum: Sendable {
        public var sum: Double
        public var count: Int
        public var mean: Double { count > 0 ? sum / Double(count) : 0 }
    }

    /// Runs the model on one batch: `batch.tokens` (B, T) in, the masked
    /// cross-entropy against `batch.targets` out. With `training`, the loss
    /// gradient (scaled by `gradScale`, e.g. 1 / counted positions) replaces
    /// the logits for `backward()`; without, the logits stay for `predictions`.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` for a batch of another shape,
    ///   `.invalidArgument` for a token outside the vocabulary.
    public func forward(_ batch: TokenBatch, training: Bool, gradScale: Float? = nil) throws -> LossSum {
        guard let shape, batch.batch == shape.batch, batch.seq == shape.seq else {
            throw KernelLabError.shapeMismatch(argument: "batch", expected: shape.map { "(B=\($0.batch), T=\($0.seq))" } ?? "a prepared shape",
                                               got: "(\(batch.batch), \(batch.seq))")
        }
        let c = try stepContext()
        let n = c.rows, D = config.dModel, V = config.vocabulary, pool = c.pool
        batch.tokens.withUnsafeBufferPointer { ids!.update(from: $0.baseAddress!, count: n) }
        batch.targets.withUnsafeBufferPointer { targets!.update(from: $0.baseAddress!, count: n) }
        batch.mask.withUnsafeBufferPointer { mask!.base.update(from: $0.baseAddress!, count: n) }
        var counted = 0
        for i in 0..<n where mask!.base[i] != 0 { counted += 1 }
        OpProfiler.active?.scope = "model fwd"
        try kernel(kl_embedding_fwd(n, Int32(D), Int32(V), ids, c.p(embedding), c.a(residuals[0]), pool), "embedding",
                   cost: Cost.embedding(n, D, KL_PASS_FORWARD))
        for (index, block) in blocks.enumerated() {
            OpProfiler.active?.scope = block.kind + " fwd"
            try block.forward(c, x: c.a(residuals[index]), y: c.a(residuals[index + 1]))
        }
        OpProfiler.active?.scope = "model fwd"
        try normForward(c, x: c.a(residuals[blocks.count]))
        try kernel(kl_linear_fwd(n, Int32(D), Int32(V), c.a(normed), c.p(head), nil, c.a(logits), 0, pool), "lm head",
                   cost: Cost.linear(n, D, V, bias: false, KL_PASS_FORWARD))
        let scale = gradScale ?? (counted > 0 ? 1 / Float(counted) : 0)
        try kernel(kl_cross_entropy(n, Int32(V), c.a(logits), targets, mask!.base, scale, c.a(losses),
                                    training ? c.a(logits) : nil, pool), "cross entropy",
                   cost: Cost.crossEntropy(n, V, grad: training))
        forwardWasTraining = training
        logitsAreScores = !training
        var sum = 0.0
        for i in 0..<n { sum += Double(c.a(losses)[i]) }
        return LossSum(sum: sum, count: counted)
    }

    private func normForward(_ c: StepContext, x: FloatPointer) throws {
        let n = c.rows, D = Int32(config.dModel)
        if let finalBias {
            try kernel(kl_layernorm_fwd(n, D, x, c.p(finalWeight), c.p(finalBias), config.normEpsilon, c.a(normed),
                                        c.a(normMean), c.a(normRstd), c.pool), "final layernorm",
                       cost: Cost.norm(rms: false, n, Int(D), KL_PASS_FORWARD))
        } else {
            try kernel(kl_rmsnorm_fwd(n, D, x, c.p(finalWeight), config.normEpsilon, c.a(normed), c.a(normRstd), c.pool),
                       "final rmsnorm", cost: Cost.norm(rms: true, n, Int(D), KL_PASS_FORWARD))
        }
    }

    /// Adds the gradient of the last training forward's loss to `gradients`.
    ///
    /// - Throws: `KernelLabError.invalidArgument` unless the last forward was a training one.
    public func backward() throws {
        guard forwardWasTraining else {
            throw KernelLabError.invalidArgument(argument: "backward", reason: "needs a forward with training: true just before")
        }
        forwardWasTraining = false
        let c = try stepContext()
        let n = c.rows, D = config.dModel, V = config.vocabulary, pool = c.pool
        let g = c.a(gradient), dnormed = c.scratch
        OpProfiler.active?.scope = "model bwd"
        try kernel(kl_linear_bwd(n, Int32(D), Int32(V), c.a(normed), c.p(head), c.a(logits), dnormed, c.g(head), nil, 0, pool),
                   "lm head", cost: Cost.linear(n, D, V, bias: false, KL_PASS_BACKWARD))
        timed("zero residual gradient", cost: Cost.permute(n * D / 2)) { g.update(repeating: 0, count: n * D) }
        let x = c.a(residuals[blocks.count])
        if let finalBias {
            try kernel(kl_layernorm_bwd(n, Int32(D), x, c.p(finalWeight), c.a(normMean), c.a(normRstd), dnormed, g,
                                        c.g(finalWeight), c.g(finalBias), 1, c.workspace, c.workspaceBytes, pool), "final layernorm",
                       cost: Cost.norm(rms: false, n, D, KL_PASS_BACKWARD, accumulate: true))
        } else {
            try kernel(kl_rmsnorm_bwd(n, Int32(D), x, c.p(finalWeight), c.a(normRstd), dnormed, g, c.g(finalWeight), 1,
                                      c.workspace, c.workspaceBytes, pool), "final rmsnorm",
                       cost: Cost.norm(rms: true, n, D, KL_PASS_BACKWARD, accumulate: true))
        }
        for index in stride(from: blocks.count - 1, through: 0, by: -1) {
            OpProfiler.active?.scope = blocks[index].kind + " bwd"
            try blocks[index].backward(c, x: c.a(residuals[index]), g: g)
        }
        OpProfiler.active?.scope = "model bwd"
        try kernel(kl_embedding_bwd(n, Int32(D), Int32(V), ids, g, c.g(embedding), 1, pool), "embedding",
                   cost: Cost.embedding(n, D, KL_PASS_BACKWARD))
    }

    /// Sets every gradient to zero (once per optimizer step).
    public func zeroGradients() { grads.zero() }

    /// Argmax of the logits at every position of the last non-training
    /// forward, (B, T) row-major, written into `out`.
    public func predictions(into out: inout [Int32]) throws {
        guard let shape, logitsAreScores, arena != nil else {
            throw KernelLabError.invalidArgument(argument: "predictions", reason: "needs a forward with training: false just before")
        }
        let n = shape.batch * shape.seq, V = config.vocabulary
        if out.count != n { out = [Int32](repeating: 0, count: n) }
        let base = arena!.base + logits
        for r in 0..<n {
            let row = base + r * V
            var best = 0
            for v in 1..<V where row[v] > row[best] { best = v }
            out[r] = Int32(best)
        }
    }

    /// The last non-training forward's logits (B, T, V), if they are still in the arena.
    var lastLogits: (UnsafeMutablePointer<Float>, Int)? {
        guard let shape, logitsAreScores, let arena else { return nil }
        return (arena.base + logits, shape.batch * shape.seq * config.vocabulary)
    }

    // MARK: Parameter access

    /// A copy of one parameter's values.
    public func parameter(_ name: String) throws -> [Float] {
        guard let entry = table.entry(name) else {
            throw KernelLabError.invalidArgument(argument: "name", reason: "no parameter '\(name)'")
        }
        return Array(UnsafeBufferPointer(start: params.base + entry.offset, count: entry.count))
    }

    /// A copy of one parameter's accumulated gradient.
    public func gradient(_ name: String) throws -> [Float] {
        guard let entry = table.entry(name) else {
            throw KernelLabError.invalidArgument(argument: "name", reason: "no parameter '\(name)'")
        }
        return Array(UnsafeBufferPointer(start: grads.base + entry.offset, count: entry.count))
    }

    /// Reads or writes one scalar of the flat parameter buffer (finite differences, tests).
    public subscript(parameter name: String, index: Int) -> Float {
        get { params.base[table.offset(name) + index] }
        set { params.base[table.offset(name) + index] = newValue }
    }

    /// The whole flat parameter buffer, copied (for comparing runs bit for bit).
    public var flatParameters: [Float] { Array(UnsafeBufferPointer(start: params.base, count: params.count)) }
}

/// One batch of token sequences with next-token targets and a loss mask:
/// tokens, targets, mask: (batch, seq). Arrays are allocated once and
/// refilled in place by the task generators.
public final class TokenBatch {
    public let batch: Int
    public let seq: Int
    public var tokens: [Int32]
    public var targets: [Int32]
    /// 1 where the target counts in the loss, 0 elsewhere.
    public var mask: [Float]

    public init(batch: Int, seq: Int) {
        self.batch = batch
        self.seq = seq
        tokens = [Int32](repeating: 0, count: batch * seq)
        targets = [Int32](repeating: 0, count: batch * seq)
        mask = [Float](repeating: 0, count: batch * seq)
    }
}

/// Builds a config's parameter table (and the blocks that read it).
enum ParameterTableBuilder {
    static func build(_ config: ModelConfig) -> (ParameterTable, [ModelBlock]) {
        var table = ParameterTable()
        let D = config.dModel, V = config.vocabulary
        table.add("embedding.weight", [V, D], "embedding", decayed: true, .normal(std: 0.02))
        var blocks: [ModelBlock] = []
        for (index, letter) in config.pattern.enumerated() {
            switch letter {
            case "A": blocks.append(AttentionBlock(index: index, config: config, table: &table))
            case "M": blocks.append(MambaBlock(index: index, config: config, table: &table))
            default: blocks.append(LSTMBlock(index: index, config: config, table: &table))
            }
        }
        table.add("final_norm.weight", [D], "final norm", decayed: false, .constant(1))
        if config.finalNorm == .layerNorm { table.add("final_norm.bias", [D], "final norm", decayed: false, .constant(0)) }
        if !config.tiedEmbeddings { table.add("lm_head.weight", [V, D], "lm head", decayed: true, .normal(std: 0.02)) }
        table.finish()
        return (table, blocks)
    }

    /// The size table of a valid config's model.
    static func table(for config: ModelConfig) throws -> ParameterTable {
        try config.validate()
        return build(config).0
    }
}
