import Foundation
import KernelLab
import XCTest

/// Embedding gather and scatter-add, and the causal depthwise conv1d,
/// against float64 references with finite differences for the conv; ids out
/// of range and shapes named. Nothing is timed.
final class EmbeddingConvTests: XCTestCase {
    func testEmbeddingGatherAndScatterAdd() throws {
        var rng = ReferenceRNG(seed: 21)
        let (V, d) = (7, 19)
        let tableValues = (0..<V * d).map { _ in Float(rng.uniform()) }
        let table = try Tensor(shape: [V, d], values: tableValues)
        let ids: [Int32] = [3, 0, 3, 6, 3, 1]
        let out = try Tensor(shape: [ids.count, d])
        try Embedding.forward(ids: ids, table: table, into: out, pool: try ThreadPool(threads: 2))
        for (i, id) in ids.enumerated() {
            XCTAssertEqual(Array(out.toArray()[i * d..<(i + 1) * d]), Array(tableValues[Int(id) * d..<Int(id + 1) * d]))
        }
        let gradValues = (0..<ids.count * d).map { _ in Float(rng.uniform()) }
        let gradOut = try Tensor(shape: [ids.count, d], values: gradValues)
        for threads in [1, 2] {
            let gradTable = try Tensor(shape: [V, d], values: [Float](repeating: 9, count: V * d))
            try Embedding.backward(ids: ids, gradOut: gradOut, into: gradTable, pool: try ThreadPool(threads: threads))
            for v in 0..<V {
                for c in 0..<d {
                    let want = ids.indices.filter { ids[$0] == Int32(v) }.reduce(Float(0)) { $0 + gradValues[$1 * d + c] }
                    XCTAssertEqual(gradTable[v * d + c], want, accuracy: 1e-6, "T=\(threads) row \(v)")
                }
            }
            // accumulate adds the same again.
            try Embedding.backward(ids: ids, gradOut: gradOut, into: gradTable, accumulate: true, pool: try ThreadPool(threads: threads))
            XCTAssertEqual(gradTable[3 * d], 2 * (gradValues[0] + gradValues[2 * d] + gradValues[4 * d]), accuracy: 1e-5)
        }
        XCTAssertThrows(.invalidArgument(argument: "ids", reason: "ids[1] = 7, expected 0 <= id < V = 7"),
                        try Embedding.forward(ids: [0, 7], table: table, into: try Tensor(shape: [2, d])))
        XCTAssertThrows(.shapeMismatch(argument: "out", expected: "(n=2, d=19)", got: "(2, 18)"),
                        try Embedding.forward(ids: [0, 1], table: table, into: try Tensor(shape: [2, 18])))
    }

    static func convReference(_ x: [Double], _ w: [Double], _ b: [Double], B: Int, D: Int, L: Int, K: Int) -> [Double] {
        var y = [Double](repeating: 0, count: B * D * L)
        for bb in 0..<B { for c in 0..<D { for l in 0..<L {
            var s = b[c]
            for k in 0..<K where l - K + 1 + k >= 0 { s += w[c * K + k] * x[(bb * D + c) * L + l - K + 1 + k] }
            y[(bb * D + c) * L + l] = s
        } } }
        return y
    }

    /// Lengths across the kernels' 256-output chunks, K longer than L, K = 1,
    /// and the accumulate mode, against the float64 gradients in closed form.
    func testCausalConvRaggedLengthsAndAccumulation() throws {
        for (B, D, L, K) in [(1, 3, 300, 4), (2, 2, 3, 5), (1, 2, 513, 1), (3, 5, 257, 4), (1, 1, 1, 4)] {
            var rng = ReferenceRNG(seed: UInt64(L * 7 + K))
            let xs = (0..<B * D * L).map { _ in rng.uniform() }, ws = (0..<D * K).map { _ in rng.uniform() }
            let bs = (0..<D).map { _ in rng.uniform() }, gs = (0..<B * D * L).map { _ in rng.uniform() }
            let x = try Tensor(shape: [B, D, L], values: xs.map(Float.init)), w = try Tensor(shape: [D, K], values: ws.map(Float.init))
            let y = try Tensor(shape: [B, D, L])
            let pool = try ThreadPool(threads: 2)
            try CausalConv1D.forward(x, weight: w, bias: try Tensor(shape: [D], values: bs.map(Float.init)), into: y, pool: pool)
            let want = Self.convReference(xs, ws, bs, B: B, D: D, L: L, K: K)
            var worst = 0.0
            for i in want.indices { worst = max(worst, abs(Double(y[i]) - want[i])) }
            XCTAssertLessThan(worst, 1e-5, "forward B\(B) D\(D) L\(L) K\(K)")
            // Closed-form gradients of sum(y * g).
            var dxWant = [Double](repeating: 0, count: B * D * L), dwWant = [Double](repeating: 0, count: D * K)
            var dbWant = [Double](repeating: 0, count: D)
            for b in 0..<B { for c in 0..<D { for l in 0..<L {
                let row = (b * D + c) * L, g = gs[row + l]
                dbWant[c] += g
                for k in 0..<K where l - K + 1 + k >= 0 {
                    dxWant[row + l - K + 1 + k] += ws[c * K + k] * g
                    dwWant[c * K + k] += g * xs[row + l - K + 1 + k]
                }
            } } }
            // Accumulate onto ones: each gradient must be ones + its closed form.
            let dx = try Tensor(shape: [B, D, L], values: [Float](repeating: 1, count: B * D * L))
            let dw = try Tensor(shape: [D, K], values: [Float](repeating: 1, count: D * K))
            let db = try Tensor(shape: [D], values: [Float](repeating: 1, count: D))
            try CausalConv1D.backward(x, weight: w, gradOut: try Tensor(shape: [B, D, L], values: gs.map(Float.init)), into: dx,
                                      dWeight: dw, dBias: db, accumulate: true, pool: pool)
            worst = 0
            for i in dxWant.indices { worst = max(worst, abs(Double(dx[i]) - 1 - dxWant[i])) }
            for i in dwWant.indices { worst = max(worst, abs(Double(dw[i]) - 1 - dwWant[i]) / max(1, abs(dwWant[i]))) }
            for i in dbWant.indices { worst = max(worst, abs(Double(db[i]) - 1 - dbWant[i]) / max(1, abs(dbWant[i]))) }
            XCTAssertLessThan(worst, 1e-5, "backward B\(B) D\(D) L\(L) K\(K)")
        }
    }

    func testCausalConvAgainstFloat64AndFiniteDifferences() throws {
        var rng = ReferenceRNG(seed: 4)
        let (B, D, L, K) = (2, 5, 11, 4)
        let xs = (0..<B * D * L).map { _ in rng.uniform() }, ws = (0..<D * K).map { _ in rng.uniform() }
        let bs = (0..<D).map { _ in rng.uniform() }, rs = (0..<B * D * L).map { _ in rng.uniform() }
        let x = try Tensor(shape: [B, D, L], values: xs.map(Float.init)), w = try Tensor(shape: [D, K], values: ws.map(Float.init))
        let bias = try Tensor(shape: [D], values: bs.map(Float.init))
        let y = try Tensor(shape: [B, D, L])
        try CausalConv1D.forward(x, weight: w, bias: bias, into: y, pool: try ThreadPool(threads: 2))
        let want = Self.convReference(xs, ws, bs, B: B, D: D, L: L, K: K)
        for i in want.indices { XCTAssertEqual(Double(y[i]), want[i], accuracy: 1e-5) }

        let dx = try Tensor(shape: [B, D, L]), dw = try Tensor(shape: [D, K]), db = try Tensor(shape: [D])
        try CausalConv1D.backward(x, weight: w, gradOut: try Tensor(shape: [B, D, L], values: rs.map(Float.init)), into: dx,
                                  dWeight: dw, dBias: db, pool: try ThreadPool(threads: 2))
        // Finite differences of sum(y * r) in float64, for every input, weight and bias.
        let loss = { (x: [Double], w: [Double], b: [Double]) in
            zip(Self.convReference(x, w, b, B: B, D: D, L: L, K: K), rs).map { $0 * $1 }.reduce(0, +)
        }
        let h = 1e-6
        for i in xs.indices {
            var p = xs, m = xs
            p[i] += h; m[i] -= h
            XCTAssertEqual(Double(dx[i]), (loss(p, ws, bs) - loss(m, ws, bs)) / (2 * h), accuracy: 1e-5, "dx[\(i)]")
        }
        for i in ws.indices {
            var p = ws, m = ws
            p[i] += h; m[i] -= h
            XCTAssertEqual(Double(dw[i]), (loss(xs, p, bs) - loss(xs, m, bs)) / (2 * h), accuracy: 1e-5, "dw[\(i)]")
        }
        for i in bs.indices {
            var p = bs, m = bs
            p[i] += h; m[i] -= h
            XCTAssertEqual(Double(db[i]), (loss(xs, ws, p) - loss(xs, ws, m)) / (2 * h), accuracy: 1e-5, "db[\(i)]")
        }
        XCTAssertThrows(.shapeMismatch(argument: "weight", expected: "(D=5, K) with 1 <= K <= 64", got: "(4, 4)"),
                        try CausalConv1D.forward(x, weight: try Tensor(shape: [4, 4]), bias: nil, into: y))
        XCTAssertThrows(.invalidArgument(argument: "y", reason: "must not share memory with 'x'"),
                        try CausalConv1D.forward(x, weight: w, bias: nil, into: x))
        let conv = try CausalConv1D.cost(batch: B, channels: D, length: L, kernel: K, pass: .forward)
        XCTAssertEqual(conv.flops, Double(2 * K * B * D * L))
        XCTAssertEqual(try Embedding.cost(count: 6, dim: 19, pass: .backward).flops, 6 * 19)
    }
}
