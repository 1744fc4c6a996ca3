import Foundation
import KernelLab
import XCTest

/// AdamW and the global gradient norm against float64 references on every
/// ISA, at ragged sizes, over several steps (bias correction), with weight
/// decay and a clipping factor; bad input named. Nothing is timed.
final class OptimizerTests: XCTestCase {
    func testAdamWMatchesFloat64OverSteps() throws {
        let original = try ISA.active
        defer { try? ISA.set(original) }
        let optimizer = AdamW(learningRate: 3e-3, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0.1)
        for isa in ISA.supported {
            try ISA.set(isa)
            for n in [1, 17, 1001] {
                var rng = ReferenceRNG(seed: UInt64(n) &* 13)
                let p0 = (0..<n).map { _ in rng.uniform() }
                let p = try Tensor(shape: [n], values: p0.map(Float.init))
                let m = try Tensor(shape: [n]), v = try Tensor(shape: [n])
                var (rp, rm, rv) = (p.toArray().map(Double.init), [Double](repeating: 0, count: n), [Double](repeating: 0, count: n))
                for step in 1...4 {
                    let g = (0..<n).map { _ in Float(rng.uniform() * 2) }
                    let scale: Float = step == 3 ? 0.25 : 1  // a clipped step
                    try optimizer.step(parameters: p, gradients: try Tensor(shape: [n], values: g), m: m, v: v, step: step,
                                       gradScale: scale, pool: try ThreadPool(threads: 2))
                    let c1 = 1 / (1 - pow(0.9, Double(step))), c2 = 1 / (1 - pow(0.95, Double(step)))
                    for i in 0..<n {
                        let gi = Double(g[i]) * Double(scale)
                        rm[i] = 0.9 * rm[i] + 0.1 * gi
                        rv[i] = 0.95 * rv[i] + 0.05 * gi * gi
                        rp[i] -= 3e-3 * (rm[i] * c1 / ((rv[i] * c2).squareRoot() + 1e-8) + 0.1 * rp[i])
                    }
                    for i in 0..<n {
                        let what = "\(isa) n=\(n) step \(step) i=\(i)"
                        XCTAssertEqual(Double(m[i]), rm[i], accuracy: 1e-6, what)
                        XCTAssertEqual(Double(v[i]), rv[i], accuracy: 1e-6, what)
                        XCTAssertEqual(Double(p[i]), rp[i], accuracy: 2e-6, what)
                    }
                }
            }
        }
    }

    func testGradientNormAndClipping() throws {
        var rng = ReferenceRNG(seed: 77)
        let a = (0..<1_000_003).map { _ in Float(rng.uniform()) }, b = (0..<33).map { _ in Float(rng.uniform() * 10) }
        let want = (a + b).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let tensors = [try Tensor(shape: [a.count], values: a), try Tensor(shape: [b.count], values: b)]
        let one = try GradientNorm.global(tensors, pool: try ThreadPool(threads: 1))
        let two = try GradientNorm.global(tensors, pool: try ThreadPool(threads: 2))
        XCTAssertEqual(one, want, accuracy: want * 1e-7)
        XCTAssertEqual(two, want, accuracy: want * 1e-7)
        XCTAssertEqual(try GradientNorm.global(tensors, pool: try ThreadPool(threads: 2)), two, "same threads, same bits")
        XCTAssertEqual(try GradientNorm.global([try Tensor(shape: [0])]), 0)
        XCTAssertEqual(GradientNorm.clipScale(norm: 4, maxNorm: 1), 0.25)
        XCTAssertEqual(GradientNorm.clipScale(norm: 0.5, maxNorm: 1), 1)
        XCTAssertTrue(GradientNorm.clipScale(norm: .nan, maxNorm: 1).isNaN)
    }

    func testBadInputIsNamed() throws {
        let optimizer = AdamW(learningRate: 1e-3)
        let p = try Tensor(shape: [8])
        XCTAssertThrows(.shapeMismatch(argument: "v", expected: "8 elements (parameters')", got: "(7,)"),
                        try optimizer.step(parameters: p, gradients: try Tensor(shape: [8]), m: try Tensor(shape: [8]),
                                           v: try Tensor(shape: [7]), step: 1))
        XCTAssertThrows(.invalidArgument(argument: "step", reason: "must be >= 1, got 0"),
                        try optimizer.step(parameters: p, gradients: try Tensor(shape: [8]), m: try Tensor(shape: [8]),
                                           v: try Tensor(shape: [8]), step: 0))
        XCTAssertThrows(.invalidArgument(argument: "m", reason: "must not share memory with 'gradients'"),
                        try { let g = try Tensor(shape: [8]); try optimizer.step(parameters: p, gradients: g, m: g, v: try Tensor(shape: [8]), step: 1) }())
        guard case .kernel(_, let detail)? = kernelLabError(
            try AdamW(learningRate: 1e-3, beta1: 1).step(parameters: p, gradients: try Tensor(shape: [8]), m: try Tensor(shape: [8]),
                                                         v: try Tensor(shape: [8]), step: 1)) else {
            return XCTFail("beta1 = 1 accepted")
        }
        XCTAssertTrue(detail.contains("betas must be in [0, 1)"), detail)
        let cost = try AdamW.cost(count: 1000)
        XCTAssertEqual(cost.flops, 14_000)
        XCTAssertEqual(cost.minBytes, 28_000)
    }
}

/// The unfused AdamW twin computes the fused step's update, pass by pass.
final class AdamWUnfusedTests: XCTestCase {
    func testUnfusedTwinEqualsFusedStep() throws {
        let n = 1000  // ragged against every vector width
        let p0 = try Tensor.random(shape: [n], seed: 1), g = try Tensor.random(shape: [n], seed: 2)
        let opt = AdamW(learningRate: 0.01, weightDecay: 0.1)
        let (pa, ma, va) = try (p0.copy(), Tensor(shape: [n]), Tensor(shape: [n]))
        let (pb, mb, vb) = try (p0.copy(), Tensor(shape: [n]), Tensor(shape: [n]))
        for step in 1...3 {
            try opt.step(parameters: pa, gradients: g, m: ma, v: va, step: step, gradScale: 0.5, pool: try ThreadPool(threads: 2))
            try opt.step(parameters: pb, gradients: g, m: mb, v: vb, step: step, gradScale: 0.5, impl: .unfused,
                         pool: try ThreadPool(threads: 3))
        }
        XCTAssertLessThan(try pa.maxAbsDifference(pb), 1e-6)
        XCTAssertLessThan(try ma.maxAbsDifference(mb), 1e-7)
        XCTAssertLessThan(try va.maxAbsDifference(vb), 1e-7)
        XCTAssertGreaterThan(try pa.maxAbsDifference(p0), 1e-3)  // it moved
        XCTAssertEqual(try AdamW.cost(count: n, impl: .unfused).dramBytes, 48.0 * Double(n))
        XCTAssertThrows(.invalidArgument(argument: "step", reason: "must be >= 1, got 0"),
                        try opt.step(parameters: pb, gradients: g, m: mb, v: vb, step: 0, impl: .unfused))
    }
}
