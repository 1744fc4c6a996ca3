import Foundation
import KernelLab
import XCTest

/// LayerNorm and RMSNorm against a float64 reference, forward and backward,
/// on every ISA, ragged widths (not multiples of 16) and row counts; the
/// reference's gradients by finite differences; accumulation; bad input.
final class NormalizationTests: XCTestCase {
    /// y, mean, rstd of one row in float64.
    static func reference(_ kind: Normalization, _ x: [Double], _ w: [Double], _ b: [Double]?, eps: Double)
        -> (y: [Double], mean: Double, rstd: Double) {
        let d = Double(x.count)
        let mean = kind == .layerNorm ? x.reduce(0, +) / d : 0
        let rstd = 1 / (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / d + eps).squareRoot()
        let y = x.indices.map { (x[$0] - mean) * rstd * w[$0] + (b?[$0] ?? 0) }
        return (y, mean, rstd)
    }

    /// Gradients of sum(y * r) for one row in float64 (the formulas the kernels use).
    static func referenceGrad(_ kind: Normalization, _ x: [Double], _ w: [Double], _ r: [Double], eps: Double)
        -> (dx: [Double], dw: [Double], db: [Double]) {
        let (_, mean, rstd) = reference(kind, x, w, nil, eps: eps)
        let d = Double(x.count)
        let xh = x.map { ($0 - mean) * rstd }
        let g = x.indices.map { r[$0] * w[$0] }
        let mg = kind == .layerNorm ? g.reduce(0, +) / d : 0
        let mgx = x.indices.map { g[$0] * xh[$0] }.reduce(0, +) / d
        let dx = x.indices.map { rstd * (g[$0] - mg - xh[$0] * mgx) }
        return (dx, x.indices.map { r[$0] * xh[$0] }, r)
    }

    func testReferenceGradientsByFiniteDifferences() {
        var rng = ReferenceRNG(seed: 11)
        for kind in Normalization.allCases {
            let x = (0..<9).map { _ in rng.uniform() * 2 }, w = (0..<9).map { _ in 1 + rng.uniform() / 2 }
            let r = (0..<9).map { _ in rng.uniform() }
            let loss = { (x: [Double], w: [Double]) in
                zip(Self.reference(kind, x, w, nil, eps: 1e-5).y, r).map { $0 * $1 }.reduce(0, +)
            }
            let (dx, dw, _) = Self.referenceGrad(kind, x, w, r, eps: 1e-5)
            let h = 1e-6
            for i in x.indices {
                var xp = x, xm = x
                xp[i] += h; xm[i] -= h
                XCTAssertEqual(dx[i], (loss(xp, w) - loss(xm, w)) / (2 * h), accuracy: 1e-6, "\(kind) dx[\(i)]")
                var wp = w, wm = w
                wp[i] += h; wm[i] -= h
                XCTAssertEqual(dw[i], (loss(x, wp) - loss(x, wm)) / (2 * h), accuracy: 1e-6, "\(kind) dw[\(i)]")
            }
        }
    }

    func testKernelsMatchFloat64OnEveryISA() throws {
        let original = try ISA.active
        defer { try? ISA.set(original) }
        for isa in ISA.supported {
            try ISA.set(isa)
            for kind in Normalization.allCases {
                for (rows, d) in [(1, 1), (7, 15), (33, 17), (5, 64), (3, 100)] {
                    try check(kind, rows: rows, d: d, threads: rows > 4 ? 2 : 1, what: "\(kind) \(isa) rows=\(rows) d=\(d)")
                }
            }
        }
    }

    private func check(_ kind: Normalization, rows: Int, d: Int, threads: Int, what: String) throws {
        var rng = ReferenceRNG(seed: UInt64(rows * 1000 + d))
        let xs = (0..<rows * d).map { _ in Float(rng.uniform() * 3 + 0.5) }
        let ws = (0..<d).map { _ in Float(1 + rng.uniform() / 2) }
        let bs = (0..<d).map { _ in Float(rng.uniform()) }
        let rs = (0..<rows * d).map { _ in Float(rng.uniform()) }
        let x = try Tensor(shape: [rows, d], values: xs), w = try Tensor(shape: [d], values: ws)
        let bias = kind == .layerNorm ? try Tensor(shape: [d], values: bs) : nil
        let y = try Tensor(shape: [rows, d]), rstd = try Tensor(shape: [rows])
        let mean = kind == .layerNorm ? try Tensor(shape: [rows]) : nil
        let pool = try ThreadPool(threads: threads)
        try kind.forward(x, weight: w, bias: bias, into: y, mean: mean, rstd: rstd, pool: pool)
        let dx = try Tensor(shape: [rows, d]), dw = try Tensor(shape: [d]), db = kind == .layerNorm ? try Tensor(shape: [d]) : nil
        try kind.backward(x, weight: w, mean: mean, rstd: rstd, gradOut: try Tensor(shape: [rows, d], values: rs), into: dx,
                          dWeight: dw, dBias: db, pool: pool)
        var dwRef = [Double](repeating: 0, count: d), dbRef = dwRef
        for row in 0..<rows {
            let xr = xs[row * d..<(row + 1) * d].map(Double.init), wr = ws.map(Double.init)
            let ref = Self.reference(kind, xr, wr, kind == .layerNorm ? bs.map(Double.init) : nil, eps: 1e-5)
            let grad = Self.referenceGrad(kind, xr, wr, rs[row * d..<(row + 1) * d].map(Double.init), eps: 1e-5)
            XCTAssertEqual(Double(rstd[row]), ref.rstd, accuracy: 1e-5 * ref.rstd, what)
            if let mean { XCTAssertEqual(Double(mean[row]), ref.mean, accuracy: 1e-5, what) }
            for c in 0..<d {
                XCTAssertEqual(Double(y[row * d + c]), ref.y[c], accuracy: 1e-5 * (1 + abs(ref.y[c])), what + " y")
                XCTAssertEqual(Double(dx[row * d + c]), grad.dx[c], accuracy: 2e-5 * (1 + abs(grad.dx[c])), what + " dx")
                dwRef[c] += grad.dw[c]
                dbRef[c] += grad.db[c]
            }
        }
        for c in 0..<d {
            XCTAssertEqual(Double(dw[c]), dwRef[c], accuracy: 1e-5 * (1 + abs(dwRef[c])) * Double(rows), what + " dw")
            if let db { XCTAssertEqual(Double(db[c]), dbRef[c], accuracy: 1e-5 * (1 + abs(dbRef[c])) * Double(rows), what + " db") }
        }
    }

    func testAccumulateInPlaceAndBadInput() throws {
        var rng = ReferenceRNG(seed: 3)
        let (rows, d) = (6, 20)
        let x = try Tensor(shape: [rows, d], values: (0..<rows * d).map { _ in Float(rng.uniform()) })
        let w = try Tensor(shape: [d], values: (0..<d).map { _ in Float(1 + rng.uniform() / 4) })
        let dy = try Tensor(shape: [rows, d], values: (0..<rows * d).map { _ in Float(rng.uniform()) })
        let rstd = try Tensor(shape: [rows])
        let y = try Tensor(shape: [rows, d])
        try Normalization.rmsNorm.forward(x, weight: w, into: y, mean: nil, rstd: rstd)
        // In place gives the same y.
        let inPlace = try x.copy()
        try Normalization.rmsNorm.forward(inPlace, weight: w, into: inPlace, mean: nil, rstd: try Tensor(shape: [rows]))
        XCTAssertEqual(inPlace.toArray(), y.toArray())
        let dx = try Tensor(shape: [rows, d]), dw = try Tensor(shape: [d])
        try Normalization.rmsNorm.backward(x, weight: w, mean: nil, rstd: rstd, gradOut: dy, into: dx, dWeight: dw)
        let (dx1, dw1) = (dx.toArray(), dw.toArray())
        try Normalization.rmsNorm.backward(x, weight: w, mean: nil, rstd: rstd, gradOut: dy, into: dx, dWeight: dw, accumulate: true)
        for i in 0..<rows * d { XCTAssertEqual(dx[i], 2 * dx1[i], accuracy: 1e-6 * (1 + abs(dx1[i]))) }
        for i in 0..<d { XCTAssertEqual(dw[i], 2 * dw1[i], accuracy: 1e-6 * (1 + abs(dw1[i]))) }

        XCTAssertThrows(.shapeMismatch(argument: "weight", expected: "(d=20,)", got: "(19,)"),
                        try Normalization.rmsNorm.forward(x, weight: try Tensor(shape: [19]), into: y, mean: nil, rstd: rstd))
        XCTAssertThrows(.shapeMismatch(argument: "rstd", expected: "(6,)", got: "(5,)"),
                        try Normalization.rmsNorm.forward(x, weight: w, into: y, mean: nil, rstd: try Tensor(shape: [5])))
        XCTAssertThrows(.invalidArgument(argument: "mean", reason: "LayerNorm needs it"),
                        try Normalization.layerNorm.forward(x, weight: w, into: y, mean: nil, rstd: rstd))
        XCTAssertThrows(.invalidArgument(argument: "bias", reason: "RMSNorm has no bias; pass nil"),
                        try Normalization.rmsNorm.forward(x, weight: w, bias: w, into: y, mean: nil, rstd: rstd))
        XCTAssertThrows(.invalidArgument(argument: "dx", reason: "must not share memory with 'x'"),
                        try Normalization.rmsNorm.backward(x, weight: w, mean: nil, rstd: rstd, gradOut: dy, into: x, dWeight: dw))
        guard case .invalidArgument("dBias", _)? = kernelLabError(
            try Normalization.layerNorm.backward(x, weight: w, mean: try Tensor(shape: [rows]), rstd: rstd, gradOut: dy,
                                                 into: dx, dWeight: dw)) else { return XCTFail("LayerNorm without dBias accepted") }
        let cost = try Normalization.layerNorm.cost(rows: 10, dim: 8, pass: .forward)
        XCTAssertEqual(cost.flops, 720)
        let bytes: Double = 8 * 80 + 2 * 8 * 4 + 10 * 8
        XCTAssertEqual(cost.minBytes, bytes)
    }
}
