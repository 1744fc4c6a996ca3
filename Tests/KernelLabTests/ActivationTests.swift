import Foundation
import KernelLab
import XCTest

/// SiLU, GELU (tanh form) and softplus against float64 references, forward
/// and backward, on every ISA this CPU runs, at ragged lengths and extreme
/// inputs; the float64 derivatives checked by finite differences, and the
/// fp32 kernels' backward against finite differences of their own forward.
final class ActivationTests: XCTestCase {
    static func f(_ kind: Activation, _ x: Double) -> Double {
        switch kind {
        case .silu: return x / (1 + exp(-x))
        case .geluTanh: return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
        case .softplus: return x > 30 ? x : log1p(exp(x))
        }
    }

    static func df(_ kind: Activation, _ x: Double) -> Double {
        let s = 1 / (1 + exp(-x))
        switch kind {
        case .silu: return s * (1 + x * (1 - s))
        case .geluTanh:
            let c = 0.7978845608028654, a = 0.044715
            let t = tanh(c * (x + a * x * x * x))
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * a * x * x)
        case .softplus: return s
        }
    }

    /// Ragged lengths around the 16-lane vector, values over [-20, 20] and the extremes.
    func inputs(_ n: Int, seed: UInt64) -> [Float] {
        var rng = ReferenceRNG(seed: seed)
        let special: [Float] = [0, 1e-3, -1e-3, 15.5, -15.5, -16, 30, -30, 88, -88, 1e4, -1e4]
        return (0..<n).map { $0 < special.count && n > 100 ? special[$0] : Float(rng.uniform(-20, 20)) }
    }

    func testEveryKindAndISAAgainstFloat64() throws {
        let original = try ISA.active
        defer { try? ISA.set(original) }
        let pool = try ThreadPool(threads: 2)
        for isa in ISA.supported {
            try ISA.set(isa)
            for kind in Activation.allCases {
                for n in [1, 15, 16, 17, 1000, 4099] {
                    let values = inputs(n, seed: UInt64(n) &* 31 &+ 7)
                    let x = try Tensor(shape: [n], values: values)
                    let y = try kind.forward(x, pool: pool)
                    let dy = try Tensor(shape: [n], values: inputs(n, seed: UInt64(n) &+ 99))
                    let dx = try Tensor(shape: [n])
                    try kind.backward(x, gradOut: dy, into: dx, pool: pool)
                    for i in 0..<n {
                        let xi = Double(values[i])
                        let what = "\(kind) \(isa) n=\(n) x=\(xi)"
                        let want = Self.f(kind, xi)
                        XCTAssertEqual(Double(y[i]), want, accuracy: 2e-6 * abs(want) + 1e-6, what)
                        let grad = Double(dy[i]) * Self.df(kind, xi)
                        XCTAssertEqual(Double(dx[i]), grad, accuracy: 1e-5 * abs(Double(dy[i])) + 1e-6, what + " backward")
                    }
                }
            }
        }
    }

    /// The float64 derivatives above are the derivatives of the float64
    /// functions (central differences), and the fp32 backward is the
    /// derivative of the fp32 forward (differences of the kernel itself).
    func testDerivativesByFiniteDifferences() throws {
        for kind in Activation.allCases {
            for x in stride(from: -8.0, through: 8.0, by: 0.37) {
                let h = 1e-5
                let fd = (Self.f(kind, x + h) - Self.f(kind, x - h)) / (2 * h)
                XCTAssertEqual(Self.df(kind, x), fd, accuracy: 1e-7, "\(kind) x=\(x)")
            }
            let xs = stride(from: -6.0, through: 6.0, by: 0.25).map { Float($0) }
            let h: Float = 1e-2
            let plus = try kind.forward(try Tensor(shape: [xs.count], values: xs.map { $0 + h }))
            let minus = try kind.forward(try Tensor(shape: [xs.count], values: xs.map { $0 - h }))
            let dx = try Tensor(shape: [xs.count])
            try kind.backward(try Tensor(shape: [xs.count], values: xs), gradOut: try Tensor(shape: [xs.count], values: xs.map { _ in 1 }), into: dx)
            for i in xs.indices {
                XCTAssertEqual(dx[i], (plus[i] - minus[i]) / (2 * h), accuracy: 2e-3, "\(kind) fp32 x=\(xs[i])")
            }
        }
    }

    func testInPlaceAccumulateAndThreadsAgree() throws {
        let values = inputs(1037, seed: 5)
        for kind in Activation.allCases {
            let x = try Tensor(shape: [1037], values: values)
            let one = try kind.forward(x, pool: try ThreadPool(threads: 1))
            let two = try kind.forward(x, pool: try ThreadPool(threads: 2))
            XCTAssertEqual(one.toArray(), two.toArray(), "\(kind): the split over threads changes nothing")
            // In place: out is x.
            let inPlace = try Tensor(shape: [1037], values: values)
            try kind.forward(inPlace, into: inPlace)
            XCTAssertEqual(inPlace.toArray(), one.toArray())
            // Accumulate: dx = old + dy f'(x); and dx may be gradOut itself.
            let dy = try Tensor(shape: [1037], values: inputs(1037, seed: 6))
            let fresh = try Tensor(shape: [1037])
            try kind.backward(x, gradOut: dy, into: fresh)
            let old = inputs(1037, seed: 8)
            let summed = try Tensor(shape: [1037], values: old)
            try kind.backward(x, gradOut: dy, into: summed, accumulate: true)
            for i in 0..<1037 { XCTAssertEqual(summed[i], old[i] + fresh[i], accuracy: 1e-6 * abs(old[i] + fresh[i]) + 1e-6) }
            let shared = try Tensor(shape: [1037], values: dy.toArray())
            try kind.backward(x, gradOut: shared, into: shared)
            XCTAssertEqual(shared.toArray(), fresh.toArray())
        }
    }

    func testBadInputIsNamedAndCostsAreStated() throws {
        let x = try Tensor(shape: [4, 5])
        XCTAssertThrows(.shapeMismatch(argument: "out", expected: "(4, 5) (x's shape)", got: "(20,)"),
                        try Activation.silu.forward(x, into: try Tensor(shape: [20])))
        XCTAssertThrows(.shapeMismatch(argument: "gradOut", expected: "(4, 5) (x's shape)", got: "(5, 4)"),
                        try Activation.silu.backward(x, gradOut: try Tensor(shape: [5, 4]), into: try Tensor(shape: [4, 5])))
        XCTAssertThrows(.invalidArgument(argument: "dx", reason: "must not share memory with 'x'"),
                        try Activation.softplus.backward(x, gradOut: try Tensor(shape: [4, 5]), into: x))
        // An empty tensor is a no-op.
        try Activation.geluTanh.forward(try Tensor(shape: [0]), into: try Tensor(shape: [0]))

        let forward = try Activation.geluTanh.cost(count: 1000, pass: .forward)
        XCTAssertEqual(forward.minBytes, 8000)
        XCTAssertEqual(forward.exps, 1000)
        XCTAssertEqual(forward.flops, 12_000)
        let backward = try Activation.softplus.cost(count: 1000, pass: .backward, accumulate: true)
        XCTAssertEqual(backward.minBytes, 16_000)
        XCTAssertEqual(backward.flops, 6000)
        XCTAssertThrows(.invalidArgument(argument: "count", reason: "must be >= 0, got -1"),
                        try Activation.silu.cost(count: -1, pass: .forward))
    }
}
