import CKernels
import Foundation

/// Optimizer and schedule of a training run.
public struct TrainingOptions: Equatable, Sendable {
    public enum Decay: String, CaseIterable, Sendable { case constant, linear, cosine }

    public var steps: Int
    public var learningRate: Float
    /// Steps of linear warm-up from 0, then `decay` to `minLearningRateFraction` of the peak at `steps`.
    public var warmup: Int
    public var decay: Decay
    public var minLearningRateFraction: Float
    public var weightDecay: Float
    public var beta1: Float, beta2: Float, epsilon: Float
    /// Global gradient-norm clip (0: none).
    public var clip: Float
    /// Micro-batches per optimizer step (gradient accumulation).
    public var accumulation: Int
    public var batch: Int
    public var seq: Int
    public var seed: UInt64

    public init(steps: Int, learningRate: Float = 1e-3, warmup: Int = 0, decay: Decay = .linear,
                minLearningRateFraction: Float = 0, weightDecay: Float = 0.1, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, clip: Float = 1, accumulation: Int = 1, batch: Int, seq: Int, seed: UInt64 = 0) {
        self.steps = steps; self.learningRate = learningRate; self.warmup = warmup; self.decay = decay
        self.minLearningRateFraction = minLearningRateFraction; self.weightDecay = weightDecay
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.clip = clip
        self.accumulation = accumulation; self.batch = batch; self.seq = seq; self.seed = seed
    }

    /// Checks every field; the error names it.
    public func validate() throws {
        func fail(_ name: String, _ reason: String) -> KernelLabError { .invalidArgument(argument: name, reason: reason) }
        guard steps >= 1 else { throw fail("steps", "must be at least 1, got \(steps)") }
        guard learningRate > 0, learningRate.isFinite else { throw fail("lr", "must be a positive number, got \(learningRate)") }
        guard warmup >= 0 else { throw fail("warmup", "must be >= 0, got \(warmup)") }
        guard (0...1).contains(minLearningRateFraction) else { throw fail("min-lr-fraction", "must be in 0...1") }
        guard weightDecay >= 0, weightDecay.isFinite else { throw fail("weight-decay", "must be >= 0") }
        guard (0..<1).contains(beta1), (0..<1).contains(beta2) else { throw fail("betas", "must be in [0, 1)") }
        guard epsilon > 0 else { throw fail("eps", "must be positive") }
        guard clip >= 0, clip.isFinite else { throw fail("clip", "must be >= 0 (0: no clipping)") }
        guard accumulation >= 1 else { throw fail("accumulation", "must be at least 1, got \(accumulation)") }
        guard batch >= 1 else { throw fail("batch", "must be at least 1, got \(batch)") }
        guard seq >= 1 else { throw fail("seq", "must be at least 1, got \(seq)") }
    }

    /// The learning rate of optimizer step `step` (1-based).
    public func learningRate(at step: Int) -> Float {
        if step <= warmup { return learningRate * Float(step) / Float(max(warmup, 1)) }
        let progress = Float(step - warmup) / Float(max(steps - warmup, 1))
        let floor = minLearningRateFraction
        switch decay {
        case .constant: return learningRate
        case .linear: return learningRate * (floor + (1 - floor) * (1 - min(progress, 1)))
        case .cosine: return learningRate * (floor + (1 - floor) * 0.5 * (1 + cos(Float.pi * min(progress, 1))))
        }
    }
}

/// One optimizer step's record.
public struct StepRecord: Equatable, Sendable {
    public var step: Int
    public var loss: Double
    public var gradNorm: Double
    public var learningRate: Float
    public var seconds: Double
}

/// Trains a `LanguageModel`: per step, `accumulation` micro-batches of
/// forward and backward (gradients accumulate; each micro-batch's loss is its
/// mean over counted positions, divided by the number of micro-batches), the
/// global gradient norm, clipping fused into AdamW, and the update in two
/// calls (decayed parameters, then the rest without weight decay). The state
/// is the parameters, AdamW's two moments and the step; the data of a step
/// depends only on (seed, step), so a resumed run continues the same curve.
public final class Trainer {
    public let model: LanguageModel
    public let options: TrainingOptions
    public let threads: Int
    /// Optimizer steps done so far.
    public internal(set) var step = 0
    let m: FloatBuffer
    let v: FloatBuffer
    private let batch: TokenBatch
    private let pool: ThreadPool

    /// - Throws: `KernelLabError.invalidArgument` for bad options.
    public init(model: LanguageModel, options: TrainingOptions, threads: Int) throws {
        try options.validate()
        self.model = model
        self.options = options
        self.threads = threads
        m = try FloatBuffer(count: model.table.count)
        v = try FloatBuffer(count: model.table.count)
        batch = TokenBatch(batch: options.batch, seq: options.seq)
        pool = try ThreadPool(threads: threads)
        try model.prepare(batch: options.batch, seq: options.seq, threads: threads)
    }

    /// Runs one optimizer step on the batches `fill(batch, microStep)` makes
    /// (micro-step `step * accumulation + k`).
    public func trainStep(_ fill: (TokenBatch, Int) -> Void) throws -> StepRecord {
        let start = DispatchTime.now().uptimeNanoseconds
        try model.prepare(batch: options.batch, seq: options.seq, threads: threads)  // a no-op unless an evaluation changed it
        OpProfiler.active?.scope = "optimizer"
        timed("zero gradients", cost: Cost.permute(model.grads.count / 2)) { model.zeroGradients() }
        var loss = 0.0
        for k in 0..<options.accumulation {
            fill(batch, step * options.accumulation + k)
            var counted = 0
            for value in batch.mask where value != 0 { counted += 1 }
            let scale = counted > 0 ? 1 / (Float(counted) * Float(options.accumulation)) : 0
            let result = try model.forward(batch, training: true, gradScale: scale)
            loss += result.mean / Double(options.accumulation)
            try model.backward()
        }
        var squares = 0.0
        OpProfiler.active?.scope = "optimizer"
        try pool.withUnsafePool {
            try kernel(kl_sum_squares(model.grads.count, model.grads.base, &squares, $0), "gradient norm", cost: Cost.sumSquares(model.grads.count))
        }
        let norm = squares.squareRoot()
        step += 1
        let lr = options.learningRate(at: step)
        let clipScale: Float = options.clip > 0 && norm > Double(options.clip) ? Float(Double(options.clip) / (norm + 1e-6)) : 1
        let table = model.table
        for (lo, hi, decay) in [(0, table.decayedCount, options.weightDecay), (table.decayedCount, table.count, Float(0))] where hi > lo {
            var hp = kl_adamw_params(lr: lr, beta1: options.beta1, beta2: options.beta2, eps: options.epsilon,
                                     weight_decay: decay, grad_scale: clipScale)
            try pool.withUnsafePool { handle in
                try kernel(kl_adamw(hi - lo, model.params.base + lo, model.grads.base + lo, m.base + lo, v.base + lo, &hp, step, handle),
                           "adamw", cost: Cost.adamw(hi - lo))
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return StepRecord(step: step, loss: loss, gradNorm: norm, learningRate: lr, seconds: seconds)
    }
}
