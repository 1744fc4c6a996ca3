import Foundation
import KernelLab
import XCTest

/// The fused LSTM cell against float64 on every ISA at ragged widths, its
/// backward by finite differences of the float64 cell.
final class LSTMCellTests: XCTestCase {
    static func cell(_ a: [Double], _ cp: [Double], H: Int) -> (c: [Double], h: [Double]) {
        func s(_ x: Double) -> Double { 1 / (1 + exp(-x)) }
        let c = (0..<H).map { s(a[H + $0]) * cp[$0] + s(a[$0]) * tanh(a[2 * H + $0]) }
        return (c, (0..<H).map { s(a[3 * H + $0]) * tanh(c[$0]) })
    }

    func testForwardAndBackwardOnEveryISA() throws {
        let original = try ISA.active
        defer { try? ISA.set(original) }
        for isa in ISA.supported {
            try ISA.set(isa)
            for (rows, H) in [(1, 1), (3, 17), (4, 33)] {
                var rng = ReferenceRNG(seed: UInt64(rows * 100 + H))
                let a = (0..<rows * 4 * H).map { _ in rng.uniform() * 3 }, cp = (0..<rows * H).map { _ in rng.uniform() }
                let rh = (0..<rows * H).map { _ in rng.uniform() }, rc = (0..<rows * H).map { _ in rng.uniform() }
                let gates = try Tensor(shape: [rows, 4 * H], values: a.map(Float.init))
                let cPrev = try Tensor(shape: [rows, H], values: cp.map(Float.init))
                let c = try Tensor(shape: [rows, H]), h = try Tensor(shape: [rows, H])
                try LSTMCell.forward(gates: gates, cPrev: cPrev, c: c, h: h, pool: try ThreadPool(threads: 2))
                let dGates = try Tensor(shape: [rows, 4 * H]), dcPrev = try Tensor(shape: [rows, H])
                try LSTMCell.backward(gates: gates, cPrev: cPrev, c: c, dh: try Tensor(shape: [rows, H], values: rh.map(Float.init)),
                                      dcNext: try Tensor(shape: [rows, H], values: rc.map(Float.init)), dGates: dGates, dcPrev: dcPrev)
                for r in 0..<rows {
                    let ar = Array(a[r * 4 * H..<(r + 1) * 4 * H]), cpr = Array(cp[r * H..<(r + 1) * H])
                    let ref = Self.cell(ar, cpr, H: H)
                    // Loss = sum(h rh + c rc): its gradient is what backward gets from dh = rh, dcNext = rc.
                    let loss = { (a: [Double], cp: [Double]) -> Double in
                        let out = Self.cell(a, cp, H: H)
                        return (0..<H).reduce(0.0) { $0 + out.h[$1] * rh[r * H + $1] + out.c[$1] * rc[r * H + $1] }
                    }
                    for j in 0..<H {
                        XCTAssertEqual(Double(c[r * H + j]), ref.c[j], accuracy: 2e-6, "\(isa) c")
                        XCTAssertEqual(Double(h[r * H + j]), ref.h[j], accuracy: 2e-6, "\(isa) h")
                        var p = cpr, m = cpr
                        p[j] += 1e-6; m[j] -= 1e-6
                        XCTAssertEqual(Double(dcPrev[r * H + j]), (loss(ar, p) - loss(ar, m)) / 2e-6, accuracy: 1e-5, "\(isa) dcPrev")
                    }
                    for q in 0..<4 * H {
                        var p = ar, m = ar
                        p[q] += 1e-6; m[q] -= 1e-6
                        XCTAssertEqual(Double(dGates[r * 4 * H + q]), (loss(p, cpr) - loss(m, cpr)) / 2e-6, accuracy: 1e-5,
                                       "\(isa) rows=\(rows) H=\(H) dgates[\(q)]")
                    }
                }
            }
        }
        XCTAssertEqual(try LSTMCell.cost(rows: 2, hidden: 8, pass: .forward).exps, 80)
        XCTAssertThrows(.shapeMismatch(argument: "gates", expected: "(rows, 4H)", got: "(2, 6)"),
                        try LSTMCell.forward(gates: try Tensor(shape: [2, 6]), cPrev: try Tensor(shape: [2, 1]),
                                             c: try Tensor(shape: [2, 1]), h: try Tensor(shape: [2, 1])))
    }
}
