import CKernels

/// Masked softmax cross-entropy over a vocabulary, fused with its gradient
/// (`kl_cross_entropy`): the loss of every model, counted only on the
/// positions the mask keeps (a copy task's answer tokens).
public enum CrossEntropy {
    /// The loss of each row and, if asked, the gradient with respect to the logits.
    public struct Result {
        /// Per row: `mask * (logsumexp(z) - z[target])` (0 where masked out).
        public var losses: Tensor
        /// The sum of `losses` over the counted rows, divided by their count
        /// (the mean loss the gradient belongs to); 0 when none counts.
        public var meanLoss: Double
        /// How many rows the mask counts (its sum for a 0/1 mask).
        public var counted: Double
    }

    /// Computes the losses of `logits` (`(..., V)`) against `targets` (one
    /// per row) and, when `gradient` is given (the logits' shape; may be
    /// `logits` itself), `gradient = (softmax - onehot) * mask / counted`:
    /// the gradient of the mean loss.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming `targets`, `mask` or
    ///   `gradient`; `.invalidArgument` for a counted target outside
    ///   `0..<V` (nothing is written then); kernel failures.
    public static func compute(logits: Tensor, targets: [Int32], mask: Tensor? = nil, gradient: Tensor? = nil,
                               pool: ThreadPool? = nil) throws -> Result {
        let losses = try Tensor(shape: [logits.count / max(logits.shape.last ?? 1, 1)])
        let (meanLoss, counted) = try compute(logits: logits, targets: targets, mask: mask, gradient: gradient, into: losses,
                                              pool: pool)
        return Result(losses: losses, meanLoss: meanLoss, counted: counted)
    }

    /// As `compute(logits:targets:mask:gradient:pool:)`, writing each row's
    /// loss into `losses` (one per row), so a training loop allocates nothing.
    /// Returns the mean loss over the counted rows and their count.
    ///
    /// - Throws: as the allocating form, and `.shapeMismatch` naming `losses`.
    @discardableResult
    public static func compute(logits: Tensor, targets: [Int32], mask: Tensor? = nil, gradient: Tensor? = nil,
                               into losses: Tensor, pool: ThreadPool? = nil) throws -> (meanLoss: Double, counted: Double) {
        guard let vocabulary = logits.shape.last, vocabulary >= 1, vocabulary <= Int(Int32.max) else {
            throw KernelLabError.shapeMismatch(argument: "logits", expected: "(..., V) with V >= 1", got: describeShape(logits.shape))
        }
        let rows = logits.count / vocabulary
        guard targets.count == rows else {
            throw KernelLabError.shapeMismatch(argument: "targets", expected: "\(rows) (one per row of logits)",
                                               got: "\(targets.count)")
        }
        if let mask, mask.count != rows {
            throw KernelLabError.shapeMismatch(argument: "mask", expected: "\(rows) elements (one per row)", got: describeShape(mask.shape))
        }
        if let gradient, gradient.shape != logits.shape {
            throw KernelLabError.shapeMismatch(argument: "gradient", expected: describeShape(logits.shape) + " (logits' shape)",
                                               got: describeShape(gradient.shape))
        }
        guard losses.count == rows else {
            throw KernelLabError.shapeMismatch(argument: "losses", expected: "\(rows) elements (one per row)", got: describeShape(losses.shape))
        }
        try checkDistinct(outputs: [("losses", losses)],
                          inputs: [("logits", logits)] + (gradient.map { [("gradient", $0)] } ?? []) + (mask.map { [("mask", $0)] } ?? []))
        let counted = mask.map { Self.sum($0, count: rows) } ?? Double(rows)
        try ISA.initialize()
        let pool = try pool ?? ThreadPool(threads: 1)
        let scale = Float(counted > 0 ? 1 / counted : 0)
        let status = withExtendedLifetime((logits, mask, gradient, losses)) {
            targets.withUnsafeBufferPointer { t in
                pool.withUnsafePool {
                    kl_cross_entropy(rows, Int32(vocabulary), logits.storage.base, t.baseAddress, mask?.storage.base, scale,
                                     losses.storage.base, gradient?.storage.base, $0)
                }
            }
        }
        // A bad target is the caller's argument, not a kernel failure.
        let detail = status == KL_OK ? "" : cString(kl_last_error())
        if detail.contains("targets[") {
            throw KernelLabError.invalidArgument(argument: "targets", reason: detail.replacingOccurrences(of: "cross_entropy: ", with: ""))
        }
        try check(status, "kl_cross_entropy")
        let total = Self.sum(losses, count: rows)
        return (counted > 0 ? total / counted : 0, counted)
    }

    /// The first `count` elements of `t` summed in double, through its storage
    /// (no per-element bounds checks: this runs inside timed and training calls).
    private static func sum(_ t: Tensor, count: Int) -> Double {
        withExtendedLifetime(t) {
            UnsafeBufferPointer(start: t.storage.base, count: count).reduce(0.0) { $0 + Double($1) }
        }
    }

    /// FLOPs, exps and bytes of one call.
    public static func cost(rows: Int, vocabulary: Int, withGradient: Bool = true) throws -> KernelCost {
        var cost = kl_cost()
        try check(kl_cross_entropy_cost(rows, Int32(clamping: vocabulary), withGradient ? 1 : 0, &cost), "kl_cross_entropy_cost")
        return KernelCost(cost)
    }
}
