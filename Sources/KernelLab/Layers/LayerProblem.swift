/// A layer kernel at one size: the op and a (rows, dim) extent. The
/// element-wise ops, the sum of squares and AdamW run over rows x dim
/// elements; the norms normalize rows of dim; the cross-entropy scores rows
/// over a vocabulary of dim.
public struct LayerShape: Sendable, Equatable, CustomStringConvertible {
    /// The layer kernels a suite can time.
    public enum Op: String, CaseIterable, Codable, Sendable {
        case silu
        case geluTanh = "gelu_tanh"
        case softplus
        case layerNorm = "layer_norm"
        case rmsNorm = "rms_norm"
        /// Masked softmax cross-entropy fused with its gradient (one pass: forward).
        case crossEntropy = "cross_entropy"
        /// The global gradient norm's sum of squares.
        case sumOfSquares = "sum_of_squares"
        /// One AdamW step; its unfused twin makes four passes.
        case adamw

        /// The implementations the op has: fused, and its unfused twin when it has one.
        public var impls: [KernelImpl] { self == .adamw ? [.unfused, .fused] : [.fused] }
        /// The passes the op has: the loss, the norm and the optimizer step have only a forward.
        public var passes: [KernelPass] {
            switch self {
            case .crossEntropy, .sumOfSquares, .adamw: [.forward]
            default: [.forward, .backward]
            }
        }

        var activation: Activation? {
            switch self {
            case .silu: .silu
            case .geluTanh: .geluTanh
            case .softplus: .softplus
            default: nil
            }
        }

        var normalization: Normalization? {
            switch self {
            case .layerNorm: .layerNorm
            case .rmsNorm: .rmsNorm
            default: nil
            }
        }
    }

    public var op: Op
    /// Rows (tokens); AdamW's and the element-wise ops' elements are rows x dim.
    public var rows: Int
    /// Row length: the model width, or the vocabulary for the cross-entropy.
    public var dim: Int

    /// - Throws: `KernelLabError.invalidArgument` naming `rows` or `dim` when
    ///   either is below 1 or a C length overflows.
    public init(op: Op, rows: Int, dim: Int) throws {
        guard rows >= 1 else { throw KernelLabError.invalidArgument(argument: "rows", reason: "must be >= 1, got \(rows)") }
        guard dim >= 1, dim <= Int(Int32.max) else {
            throw KernelLabError.invalidArgument(argument: "dim", reason: "must be in 1...\(Int32.max), got \(dim)")
        }
        guard !rows.multipliedReportingOverflow(by: dim).overflow else {
            throw KernelLabError.invalidArgument(argument: "rows", reason: "rows x dim = \(rows) x \(dim) overflows")
        }
        self.op = op
        self.rows = rows
        self.dim = dim
    }

    /// Elements of the (rows, dim) tensor.
    public var count: Int { rows * dim }

    /// "layer_norm 16384x1024".
    public var description: String { "\(op.rawValue) \(rows)x\(dim)" }
}

/// A layer kernel at one size, described once (`KernelProblem`): inputs
/// uniform in [-1, 1] (seeds seed, +1, ...; AdamW's second moment in [0, 1]),
/// targets `i * 7 mod V` and no mask for the cross-entropy (the kernel and
/// the mean of its losses), AdamW at step 10
/// with weight decay (every call the same step, so each call moves the same
/// bytes). `kernel-lab bench --suite layers`, the roofline runner and
/// `kernel-lab layers` time it; the tests check it against float64 and
/// finite differences.
struct LayerProblem: KernelProblem {
    let shape: LayerShape
    /// The element-wise ops' and the norms' x, the cross-entropy's logits, AdamW's parameters.
    let x: Tensor
    /// Per op: activations y; norms y, weight, bias, mean, rstd; cross-entropy
    /// losses; sum of squares its one-element result; AdamW g, m, v.
    private let tensors: [String: Tensor]
    private let gradientTensors: [String: Tensor]
    private let targets: [Int32]
    static let adamw = AdamW(learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1)
    static let adamwStep = 10

    init(shape: LayerShape, seed: UInt64, backward: Bool) throws {
        self.shape = shape
        let (rows, dim) = (shape.rows, shape.dim)
        x = try Tensor.random(shape: [rows, dim], seed: seed)
        var t: [String: Tensor] = [:], g: [String: Tensor] = [:]
        let backward = backward && shape.op.passes.contains(.backward)
        switch shape.op {
        case .silu, .geluTanh, .softplus:
            t["y"] = try Tensor(shape: [rows, dim])
            if backward {
                t["dy"] = try Tensor.random(shape: [rows, dim], seed: seed &+ 1)
                g["x"] = try Tensor(shape: [rows, dim])
            }
        case .layerNorm, .rmsNorm:
            t["y"] = try Tensor(shape: [rows, dim])
            t["weight"] = try Tensor.random(shape: [dim], seed: seed &+ 2)
            t["rstd"] = try Tensor(shape: [rows])
            if shape.op == .layerNorm {
                t["bias"] = try Tensor.random(shape: [dim], seed: seed &+ 3)
                t["mean"] = try Tensor(shape: [rows])
            }
            if backward {
                t["dy"] = try Tensor.random(shape: [rows, dim], seed: seed &+ 1)
                g["x"] = try Tensor(shape: [rows, dim])
                g["weight"] = try Tensor(shape: [dim])
                if shape.op == .layerNorm { g["bias"] = try Tensor(shape: [dim]) }
            }
        case .crossEntropy:
            t["losses"] = try Tensor(shape: [rows])
            // The gradient of the mean loss: every row's loss weighs 1 / rows.
            t["dlosses"] = try Tensor(shape: [rows], values: [Float](repeating: 1 / Float(rows), count: rows))
            g["logits"] = try Tensor(shape: [rows, dim])
        case .sumOfSquares:
            t["sum"] = try Tensor(shape: [1])
        case .adamw:
            t["g"] = try Tensor.random(shape: [rows, dim], seed: seed &+ 1)
            t["m"] = try Tensor.random(shape: [rows, dim], seed: seed &+ 2, range: -0.1...0.1)
            t["v"] = try Tensor.random(shape: [rows, dim], seed: seed &+ 3, range: 0...1)
        }
        tensors = t
        gradientTensors = g
        targets = shape.op == .crossEntropy ? (0..<rows).map { Int32(Self.crossEntropyTarget(row: $0, vocabulary: dim)) } : []
    }

    private func tensor(_ name: String) -> Tensor { tensors[name]! }

    /// The cross-entropy's target of `row` over a vocabulary of `vocabulary` (the tests' reference reads it too).
    static func crossEntropyTarget(row: Int, vocabulary: Int) -> Int { row * 7 % vocabulary }

    var impls: [KernelImpl] { shape.op.impls }
    var passes: [KernelPass] { shape.op.passes }

    var inputs: [(name: String, tensor: Tensor)] {
        switch shape.op {
        case .silu, .geluTanh, .softplus, .sumOfSquares: [("x", x)]
        case .layerNorm: [("x", x), ("weight", tensor("weight")), ("bias", tensor("bias"))]
        case .rmsNorm: [("x", x), ("weight", tensor("weight"))]
        case .crossEntropy: [("logits", x)]
        case .adamw: [("p", x), ("g", tensor("g")), ("m", tensor("m")), ("v", tensor("v"))]
        }
    }

    var outputs: [(name: String, tensor: Tensor, upstream: Tensor?)] {
        switch shape.op {
        case .silu, .geluTanh, .softplus: [("y", tensor("y"), tensors["dy"])]
        case .layerNorm: [("y", tensor("y"), tensors["dy"]), ("mean", tensor("mean"), nil), ("rstd", tensor("rstd"), nil)]
        case .rmsNorm: [("y", tensor("y"), tensors["dy"]), ("rstd", tensor("rstd"), nil)]
        case .crossEntropy: [("losses", tensor("losses"), tensor("dlosses"))]
        case .sumOfSquares: [("sum", tensor("sum"), nil)]
        case .adamw: [("p", x, nil), ("m", tensor("m"), nil), ("v", tensor("v"), nil)]
        }
    }

    var gradients: [(name: String, input: Tensor, gradient: Tensor)] {
        inputs.compactMap { input in gradientTensors[input.name].map { (input.name, input.tensor, $0) } }
    }

    func forward(impl: KernelImpl, forBackward: Bool, pool: ThreadPool, workspace: Workspace) throws {
        try checkImpl(impl)
        switch shape.op {
        case .silu, .geluTanh, .softplus:
            try shape.op.activation!.forward(x, into: tensor("y"), pool: pool)
        case .layerNorm, .rmsNorm:
            try shape.op.normalization!.forward(x, weight: tensor("weight"), bias: tensors["bias"], into: tensor("y"),
                                                mean: tensors["mean"], rstd: tensor("rstd"), pool: pool)
        case .crossEntropy:
            try CrossEntropy.compute(logits: x, targets: targets, gradient: gradientTensors["logits"], into: tensor("losses"), pool: pool)
        case .sumOfSquares:
            tensor("sum")[0] = Float(try GradientNorm.sumOfSquares(x, pool: pool))
        case .adamw:
            try Self.adamw.step(parameters: x, gradients: tensor("g"), m: tensor("m"), v: tensor("v"), step: Self.adamwStep,
                                impl: impl, pool: pool)
        }
    }

    func backward(impl: KernelImpl, pool: ThreadPool, workspace: Workspace) throws {
        try checkImpl(impl)
        guard passes.contains(.backward) else {
            throw KernelLabError.invalidArgument(argument: "pass", reason: "\(shape.op.rawValue) has no backward pass")
        }
        guard let dx = gradientTensors["x"], let dy = tensors["dy"] else {
            throw KernelLabError.invalidArgument(argument: "backward", reason: "this \(shape.op.rawValue) description was made without gradients")
        }
        switch shape.op {
        case .silu, .geluTanh, .softplus:
            try shape.op.activation!.backward(x, gradOut: dy, into: dx, pool: pool)
        case .layerNorm, .rmsNorm:
            try shape.op.normalization!.backward(x, weight: tensor("weight"), mean: tensors["mean"], rstd: tensor("rstd"),
                                                 gradOut: dy, into: dx, dWeight: gradientTensors["weight"]!,
                                                 dBias: gradientTensors["bias"], pool: pool, workspace: workspace)
        case .crossEntropy, .sumOfSquares, .adamw:
            break  // unreachable: these have only a forward
        }
    }

    func cost(impl: KernelImpl, pass: KernelPass) throws -> KernelCost {
        try checkImpl(impl)
        guard passes.contains(pass) else {
            throw KernelLabError.invalidArgument(argument: "pass", reason: "\(shape.op.rawValue) has no \(pass.rawValue) pass")
        }
        switch shape.op {
        case .silu, .geluTanh, .softplus: return try shape.op.activation!.cost(count: shape.count, pass: pass)
        case .layerNorm, .rmsNorm: return try shape.op.normalization!.cost(rows: shape.rows, dim: shape.dim, pass: pass)
        case .crossEntropy: return try CrossEntropy.cost(rows: shape.rows, vocabulary: shape.dim)
        case .sumOfSquares: return try GradientNorm.cost(count: shape.count)
        case .adamw: return try AdamW.cost(count: shape.count, impl: impl)
        }
    }

    func workspaceBytes(impl: KernelImpl, pass: KernelPass, threads: Int) throws -> Int {
        shape.op.normalization != nil && pass == .backward ? Normalization.backwardWorkspaceBytes(dim: shape.dim, threads: threads) : 0
    }

    private func checkImpl(_ impl: KernelImpl) throws {
        guard impls.contains(impl) else {
            throw KernelLabError.invalidArgument(argument: "impl", reason: "\(shape.op.rawValue) has no \(impl.rawValue) implementation")
        }
    }
}
