import Foundation
@testable import KernelLab
import XCTest

/// Every op's one description (`KernelProblem`), made by the factory the
/// roofline runner and `kernel-lab bench` time (`RooflineCase.Shape.problem`),
/// checked three ways on small ragged shapes: each implementation's outputs
/// and gradients against a float64 reference of the same inputs; each
/// implementation's gradients against finite differences of its own fp32
/// forward (loss = sum of output x upstream gradient, along a random
/// direction per input); fused against unfused where the op has both. So
/// what is timed is what is checked. Runs on the active ISA (`make test`
/// runs the suite once per ISA the host has).
final class KernelProblemTests: XCTestCase {
    /// Expected outputs by output name and gradients by input name, from the inputs as doubles.
    typealias Reference = (_ inputs: [String: [Double]], _ upstream: [String: [Double]])
        -> (outputs: [String: [Double]], gradients: [String: [Double]])

    struct Case {
        var shape: RooflineCase.Shape
        var reference: Reference
        /// Max |kernel - float64| over max(1, max |float64|), per output and per gradient.
        var tolerance: Double = 2e-5
        var gradientTolerance: Double = 1e-4
        var description: String
    }

    // MARK: - The cases

    static func attention(_ batch: Int, _ heads: Int, _ lq: Int, _ lk: Int, _ d: Int, causal: Bool) throws -> Case {
        let shape = try AttentionShape(batch: batch, heads: heads, queryLength: lq, keyLength: lk, headDim: d)
        let config = AttentionReferenceConfig(batch: batch, heads: heads, qLen: lq, kvLen: lk, headDim: d, causal: causal)
        return Case(shape: .attention(shape, causal: causal), reference: { x, up in
            let f = attentionReferenceForward(config, q: x["q"]!, k: x["k"]!, v: x["v"]!)
            let g = attentionReferenceBackward(config, q: x["q"]!, k: x["k"]!, v: x["v"]!, dout: up["out"]!)
            return (["out": f.o, "lse": f.lse], ["q": g.dq, "k": g.dk, "v": g.dv])
        }, description: "attention \(shape) causal=\(causal)")
    }

    static func scan(_ batch: Int, _ channels: Int, _ seq: Int, _ state: Int, groups: Int) throws -> Case {
        let shape = try ScanShape(batch: batch, channels: channels, seqLen: seq, state: state, groups: groups)
        let config = ScanReferenceConfig(batch: batch, channels: channels, seqLen: seq, state: state, groups: groups, softplus: true)
        return Case(shape: .scan(shape), reference: { x, up in
            let inputs = ScanReferenceInputs(u: x["u"]!, delta: x["delta"]!, A: x["A"]!, B: x["B"]!, C: x["C"]!, D: x["D"]!,
                                             z: x["z"]!, deltaBias: x["delta_bias"]!, h0: nil)
            let f = scanReferenceForward(config, inputs)
            let g = scanReferenceBackward(config, inputs, dout: up["out"]!, dlast: nil)
            return (["out": f.out, "last_state": f.last],
                    ["u": g.du, "delta": g.ddelta, "A": g.dA, "B": g.dB, "C": g.dC, "D": g.dD!, "z": g.dz!,
                     "delta_bias": g.ddeltaBias!])
        }, tolerance: 1e-4, gradientTolerance: 5e-4, description: "scan \(shape)")
    }

    static func layer(_ op: LayerShape.Op, rows: Int, dim: Int) throws -> Case {
        let shape = try LayerShape(op: op, rows: rows, dim: dim)
        return Case(shape: .layer(shape), reference: { x, up in layerReference(shape, x, up) },
                    tolerance: op == .adamw ? 1e-6 : 2e-5, description: "layer \(shape)")
    }

    /// The layers' float64 references, from the layer tests' own formulas.
    static func layerReference(_ s: LayerShape, _ x: [String: [Double]], _ up: [String: [Double]])
        -> (outputs: [String: [Double]], gradients: [String: [Double]]) {
        let (rows, dim) = (s.rows, s.dim)
        switch s.op {
        case .silu, .geluTanh, .softplus:
            let kind = s.op.activation!, v = x["x"]!
            return (["y": v.map { ActivationTests.f(kind, $0) }],
                    ["x": v.indices.map { up["y"]![$0] * ActivationTests.df(kind, v[$0]) }])
        case .layerNorm, .rmsNorm:
            let kind = s.op.normalization!, w = x["weight"]!
            var y: [Double] = [], mean: [Double] = [], rstd: [Double] = [], dx: [Double] = []
            var dw = [Double](repeating: 0, count: dim), db = [Double](repeating: 0, count: dim)
            for r in 0..<rows {
                let row = Array(x["x"]![(r * dim)..<((r + 1) * dim)]), dy = Array(up["y"]![(r * dim)..<((r + 1) * dim)])
                let f = NormalizationTests.reference(kind, row, w, x["bias"], eps: 1e-5)
                let g = NormalizationTests.referenceGrad(kind, row, w, dy, eps: 1e-5)
                y += f.y
                mean.append(f.mean)
                rstd.append(f.rstd)
                dx += g.dx
                for i in 0..<dim { dw[i] += g.dw[i]; db[i] += g.db[i] }
            }
            var outputs = ["y": y, "rstd": rstd], gradients = ["x": dx, "weight": dw]
            if kind == .layerNorm { outputs["mean"] = mean; gradients["bias"] = db }
            return (outputs, gradients)
        case .crossEntropy:
            var losses: [Double] = [], grad: [Double] = []
            for r in 0..<rows {
                let (loss, g) = CrossEntropyTests.reference(Array(x["logits"]![(r * dim)..<((r + 1) * dim)]),
                                                           LayerProblem.crossEntropyTarget(row: r, vocabulary: dim))
                losses.append(loss)
                grad += g.map { $0 * up["losses"]![r] }
            }
            return (["losses": losses], ["logits": grad])
        case .sumOfSquares:
            return (["sum": [x["x"]!.reduce(0) { $0 + $1 * $1 }]], [:])
        case .adamw:
            let o = LayerProblem.adamw, t = Double(LayerProblem.adamwStep)
            let (b1, b2, lr, eps, wd) = (Double(o.beta1), Double(o.beta2), Double(o.learningRate), Double(o.epsilon), Double(o.weightDecay))
            let c1 = 1 / (1 - pow(b1, t)), c2 = 1 / (1 - pow(b2, t))
            var p = x["p"]!, m = x["m"]!, v = x["v"]!
            for i in p.indices {
                let g = x["g"]![i]
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                p[i] -= lr * (m[i] * c1 / ((v[i] * c2).squareRoot() + eps) + wd * p[i])
            }
            return (["p": p, "m": m, "v": v], [:])
        }
    }

    static func cases() throws -> [Case] {
        var cases = [
            try attention(1, 2, 37, 37, 16, causal: false),
            try attention(2, 1, 13, 29, 8, causal: true),
            try scan(2, 5, 37, 4, groups: 1),
            try scan(1, 4, 70, 3, groups: 2),
        ]
        for op in [LayerShape.Op.silu, .geluTanh, .softplus] { cases.append(try layer(op, rows: 3, dim: 37)) }
        cases += [try layer(.layerNorm, rows: 5, dim: 37), try layer(.rmsNorm, rows: 5, dim: 37),
                  try layer(.crossEntropy, rows: 7, dim: 33), try layer(.crossEntropy, rows: 3, dim: 1),
                  // 37 rows of V = 32: the 16-row block path (each of 2 threads gets a block and a tail), as the suite times it.
                  try layer(.crossEntropy, rows: 37, dim: 32), try layer(.crossEntropy, rows: 2, dim: 2100),
                  try layer(.sumOfSquares, rows: 3, dim: 101), try layer(.adamw, rows: 3, dim: 33)]
        return cases
    }

    // MARK: - Helpers

    static func doubles(_ t: Tensor) -> [Double] { t.toArray().map(Double.init) }

    /// max |a - b| / max(1, max |b|).
    static func relativeError(_ a: [Double], _ b: [Double]) -> Double {
        precondition(a.count == b.count)
        var worst = 0.0, scale = 1.0
        for i in a.indices {
            if a[i].isInfinite || b[i].isInfinite {
                if a[i] != b[i] { return .infinity }
                continue
            }
            worst = max(worst, abs(a[i] - b[i]))
            scale = max(scale, abs(b[i]))
        }
        return worst / scale
    }

    /// sum over outputs of output x upstream, in double.
    static func loss(_ problem: any KernelProblem) -> Double {
        var total = 0.0
        for output in problem.outputs {
            guard let upstream = output.upstream else { continue }
            for i in 0..<output.tensor.count { total += Double(output.tensor[i]) * Double(upstream[i]) }
        }
        return total
    }

    // MARK: - Tests

    func testOutputsAndGradientsMatchFloat64() throws {
        let pool = try ThreadPool(threads: 2), workspace = try Workspace()
        for c in try Self.cases() {
            for impl in c.shape.impls {
                let problem = try c.shape.problem(seed: 7, backward: true)
                let inputs = Dictionary(uniqueKeysWithValues: problem.inputs.map { ($0.name, Self.doubles($0.tensor)) })
                let upstream = Dictionary(uniqueKeysWithValues: problem.outputs.compactMap { o in o.upstream.map { (o.name, Self.doubles($0)) } })
                let expected = c.reference(inputs, upstream)
                try problem.forward(impl: impl, forBackward: true, pool: pool, workspace: workspace)
                if problem.passes.contains(.backward) { try problem.backward(impl: impl, pool: pool, workspace: workspace) }
                XCTAssertEqual(Set(expected.outputs.keys), Set(problem.outputs.map(\.name)), "\(c.description): outputs referenced")
                for output in problem.outputs {
                    let error = Self.relativeError(Self.doubles(output.tensor), expected.outputs[output.name] ?? [])
                    XCTAssertLessThan(error, c.tolerance, "\(c.description) \(impl) output \(output.name)")
                }
                XCTAssertEqual(Set(expected.gradients.keys), Set(problem.gradients.map(\.name)), "\(c.description): gradients referenced")
                for g in problem.gradients {
                    let error = Self.relativeError(Self.doubles(g.gradient), expected.gradients[g.name] ?? [])
                    XCTAssertLessThan(error, c.gradientTolerance, "\(c.description) \(impl) gradient \(g.name)")
                }
            }
        }
    }

    /// Central differences of the fp32 forward along a random direction per
    /// input (step 1e-2 on inputs in [-1, 1]) against the backward's
    /// directional derivative.
    func testGradientsMatchFiniteDifferencesOfTheirOwnForward() throws {
        let pool = try ThreadPool(threads: 1), workspace = try Workspace()
        for c in try Self.cases() {
            for impl in c.shape.impls {
                let problem = try c.shape.problem(seed: 11, backward: true)
                try problem.forward(impl: impl, forBackward: true, pool: pool, workspace: workspace)
                if problem.passes.contains(.backward) { try problem.backward(impl: impl, pool: pool, workspace: workspace) }
                for (index, g) in problem.gradients.enumerated() {
                    var rng = ReferenceRNG(seed: 100 + UInt64(index))
                    let x0 = g.input.toArray(), grad = g.gradient.toArray()
                    let direction = x0.indices.map { _ in rng.uniform(-1, 1) }
                    // Steps small against the input's scale (delta_bias is about -4, A about -N).
                    let scale = max(x0.map { abs(Double($0)) }.max() ?? 1, 1)
                    let eps = 1e-2 * scale
                    func lossAt(_ t: Double) throws -> Double {
                        for i in x0.indices { g.input[i] = Float(Double(x0[i]) + t * direction[i]) }
                        try problem.forward(impl: impl, forBackward: false, pool: pool, workspace: workspace)
                        return Self.loss(problem)
                    }
                    let numeric = (try lossAt(eps) - lossAt(-eps)) / (2 * eps)
                    for i in x0.indices { g.input[i] = x0[i] }
                    var analytic = 0.0, magnitude = 0.0
                    for i in x0.indices {
                        analytic += direction[i] * Double(grad[i])
                        magnitude += abs(direction[i] * Double(grad[i]))
                    }
                    XCTAssertEqual(numeric, analytic, accuracy: 2e-2 * abs(analytic) + 2e-3 * magnitude + 1e-6,
                                   "\(c.description) \(impl) d/d\(g.name)")
                }
            }
        }
    }

    /// Where an op has an unfused twin, both give the same outputs and gradients on the same inputs.
    func testFusedAndUnfusedAgree() throws {
        let pool = try ThreadPool(threads: 2), workspace = try Workspace()
        for c in try Self.cases() where c.shape.impls.count == 2 {
            var results: [[String: [Double]]] = []
            for impl in [KernelImpl.unfused, .fused] {
                let problem = try c.shape.problem(seed: 5, backward: true)
                try problem.forward(impl: impl, forBackward: true, pool: pool, workspace: workspace)
                if problem.passes.contains(.backward) { try problem.backward(impl: impl, pool: pool, workspace: workspace) }
                var values: [String: [Double]] = [:]
                for o in problem.outputs { values["out " + o.name] = Self.doubles(o.tensor) }
                for g in problem.gradients { values["grad " + g.name] = Self.doubles(g.gradient) }
                results.append(values)
            }
            XCTAssertEqual(Set(results[0].keys), Set(results[1].keys))
            for (name, unfused) in results[0] {
                XCTAssertLessThan(Self.relativeError(results[1][name]!, unfused), 2 * c.gradientTolerance, "\(c.description) \(name)")
            }
        }
    }

    /// Every op kind the suites can name is covered here, and every case's
    /// cost model and workspace are stated for each of its passes.
    func testEveryLayerOpIsCoveredAndCosted() throws {
        let cases = try Self.cases()
        let covered = Set(cases.compactMap { $0.shape.layerOp })
        XCTAssertEqual(covered, Set(LayerShape.Op.allCases))
        XCTAssertEqual(Set(cases.map(\.shape.kernel)), Set(RooflineKernel.allCases))
        for c in cases {
            let problem = try c.shape.problem(seed: 1, backward: false)
            // Gradients only when asked for, unless the forward itself writes them (the fused loss and gradient).
            if c.shape.passes.contains(.backward) {
                XCTAssertTrue(problem.gradients.isEmpty, "\(c.description): no gradients unless asked for")
            }
            for impl in c.shape.impls {
                for pass in c.shape.passes {
                    let cost = try problem.cost(impl: impl, pass: pass)
                    XCTAssertGreaterThan(cost.dramBytes, 0, "\(c.description) \(impl) \(pass)")
                    // Of the layers only the norms' backward needs a workspace (per-thread weight-gradient
                    // partials); attention and the scan need one for every implementation and pass (tiles,
                    // the unfused materialized tensors).
                    let bytes = try problem.workspaceBytes(impl: impl, pass: pass, threads: 2)
                    if case let .layer(shape) = c.shape {
                        XCTAssertEqual(bytes > 0, shape.op.normalization != nil && pass == .backward, "\(c.description) \(pass)")
                    } else {
                        XCTAssertGreaterThan(bytes, 0, "\(c.description) \(impl) \(pass)")
                    }
                }
            }
        }
        // A layer without a twin or a backward says so by name.
        let ce = try RooflineCase.Shape.layer(LayerShape(op: .crossEntropy, rows: 2, dim: 5)).problem(seed: 1, backward: true)
        XCTAssertThrowsError(try ce.cost(impl: .unfused, pass: .forward)) { error in
            XCTAssertEqual(error as? KernelLabError,
                           .invalidArgument(argument: "impl", reason: "cross_entropy has no unfused implementation"))
        }
        XCTAssertThrowsError(try ce.cost(impl: .fused, pass: .backward))
        XCTAssertThrowsError(try LayerShape(op: .silu, rows: 0, dim: 4)) { error in
            XCTAssertEqual(error as? KernelLabError, .invalidArgument(argument: "rows", reason: "must be >= 1, got 0"))
        }
    }
}
