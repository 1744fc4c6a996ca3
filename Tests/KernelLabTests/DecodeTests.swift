import Foundation
import KernelLab
import XCTest

/// The decoding kernels: attention over a KV cache, the scan step and the
/// conv1d step. Each is checked against a float64 reference where one exists
/// and, stepped token by token, against the full forward over the sequence.
/// Nothing is timed.
final class DecodeTests: XCTestCase {
    /// Rows [t0, t0 + T) of the third axis of a (B, H, L, d) array.
    private func rows(_ x: [Float], b: Int, h: Int, l: Int, d: Int, from t0: Int, count t: Int) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(b * h * t * d)
        for bh in 0..<(b * h) { out += x[(bh * l + t0) * d..<(bh * l + t0 + t) * d] }
        return out
    }

    /// Columns [t0, t0 + T) of the last axis of a (R, L) array, as (R, T).
    private func columns(_ x: [Float], rows r: Int, l: Int, from t0: Int, count t: Int) -> [Float] {
        (0..<r).flatMap { x[($0 * l + t0)..<($0 * l + t0 + t)] }
    }

    private func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { $0 == $1 ? 0 : abs($0 - $1) }.max() ?? 0
    }

    func testAttentionDecodeStepsEqualTheFullForward() throws {
        // Ragged head sizes, more keys than one tile (128), both masks,
        // ALiBi with Hard-ALiBi-style windows; 1 thread and 3 (keys split).
        let cases: [(b: Int, h: Int, l: Int, d: Int, step: Int, options: AttentionOptions)] = [
            (1, 3, 300, 24, 1, AttentionOptions(causal: true)),
            (2, 2, 150, 72, 3, AttentionOptions(causal: true, alibiSlopes: [0.5, 0.0625], windows: [16, 0])),
            (1, 1, 260, 64, 1, AttentionOptions(causal: true, scale: 0.3, windows: [1])),
            (1, 2, 140, 16, 7, AttentionOptions(causal: false)),
        ]
        for (index, c) in cases.enumerated() {
            let q = try Tensor.random(shape: [c.b, c.h, c.l, c.d], seed: UInt64(10 + index))
            let k = try Tensor.random(shape: [c.b, c.h, c.l, c.d], seed: UInt64(20 + index))
            let v = try Tensor.random(shape: [c.b, c.h, c.l, c.d], seed: UInt64(30 + index))
            for threads in [1, 3] {
                let pool = try ThreadPool(threads: threads)
                let cache = try KVCache(batch: c.b, heads: c.h, capacity: c.l + 5, headDim: c.d)
                let workspace = try Workspace()
                var t0 = 0
                while t0 < c.l {
                    let t = min(c.step, c.l - t0)
                    let slice = { (x: Tensor) in try Tensor(shape: [c.b, c.h, t, c.d],
                                                            values: self.rows(x.toArray(), b: c.b, h: c.h, l: c.l, d: c.d, from: t0, count: t)) }
                    try cache.append(k: slice(k), v: slice(v))
                    let qt = try slice(q)
                    let out = try Tensor(shape: qt.shape), lse = try Tensor(shape: [c.b, c.h, t])
                    try Attention.decode(q: qt, cache: cache, into: out, lse: lse, options: c.options, pool: pool, workspace: workspace)
                    // The forward over the same keys: the new queries aligned to the end.
                    let kk = try Tensor(shape: [c.b, c.h, t0 + t, c.d], values: rows(k.toArray(), b: c.b, h: c.h, l: c.l, d: c.d, from: 0, count: t0 + t))
                    let vv = try Tensor(shape: [c.b, c.h, t0 + t, c.d], values: rows(v.toArray(), b: c.b, h: c.h, l: c.l, d: c.d, from: 0, count: t0 + t))
                    let want = try Attention.forward(q: qt, k: kk, v: vv, options: c.options, pool: pool)
                    XCTAssertLessThan(maxDiff(out.toArray(), want.out.toArray()), 2e-6, "case \(index) T=\(threads) at \(t0)")
                    XCTAssertLessThan(maxDiff(lse.toArray(), want.lse.toArray()), 2e-5, "case \(index) T=\(threads) at \(t0)")
                    t0 += t
                }
                XCTAssertEqual(cache.length, c.l)
            }
        }
    }

    func testAttentionDecodeAgainstFloat64() throws {
        // Four queries over a cache with spare capacity, keys split over 4
        // threads; the reference reads only the valid rows.
        let (b, h, t, l, d, cap) = (1, 2, 4, 517, 40, 600)
        var rng = ReferenceRNG(seed: 7)
        let qv = rng.floats(b * h * t * d), kv = rng.floats(b * h * l * d), vv = rng.floats(b * h * l * d)
        let cache = try KVCache(batch: b, heads: h, capacity: cap, headDim: d)
        try cache.append(k: try Tensor(shape: [b, h, l, d], values: kv), v: try Tensor(shape: [b, h, l, d], values: vv))
        let slopes: [Float] = [0.01, 0.2]
        for causal in [false, true] {
            let options = AttentionOptions(causal: causal, alibiSlopes: slopes)
            let out = try Tensor(shape: [b, h, t, d]), lse = try Tensor(shape: [b, h, t])
            try Attention.decode(q: try Tensor(shape: [b, h, t, d], values: qv), cache: cache, into: out, lse: lse,
                                 options: options, pool: try ThreadPool(threads: 4))
            let config = AttentionReferenceConfig(batch: b, heads: h, qLen: t, kvLen: l, headDim: d, causal: causal,
                                                  alibi: slopes.map(Double.init))
            let ref = attentionReferenceForward(config, q: qv.map(Double.init), k: kv.map(Double.init), v: vv.map(Double.init))
            XCTAssertLessThan(zip(out.toArray(), ref.o).map { abs(Double($0) - $1) }.max()!, 2e-6, "causal \(causal)")
            XCTAssertLessThan(zip(lse.toArray(), ref.lse).map { abs(Double($0) - $1) }.max()!, 2e-5, "causal \(causal)")
        }
        // The cost model counts the visible pairs exactly: causal, query i sees l - t + i + 1 keys.
        let shape = try AttentionShape(batch: b, heads: h, queryLength: t, keyLength: l, headDim: d)
        let cost = try Attention.decodeCost(shape: shape, capacity: cap, options: AttentionOptions(causal: true))
        let pairs = Double(h * (0..<t).map { l - t + $0 + 1 }.reduce(0, +))
        XCTAssertEqual(cost.flops, 4 * Double(d) * pairs)
        XCTAssertEqual(cost.exps, pairs)
        XCTAssertEqual(cost.minBytes, Double(h * l * 2 * d * 4 + 2 * h * t * d * 4 + h * t * 4))
    }

    func testAttentionDecodeErrors() throws {
        let cache = try KVCache(batch: 1, heads: 2, capacity: 8, headDim: 4)
        let q = try Tensor(shape: [1, 2, 1, 4]), out = try Tensor(shape: [1, 2, 1, 4])
        XCTAssertThrows(.invalidArgument(argument: "cache", reason: "holds 0 rows; append the 1 new queries' keys and values first"),
                        try Attention.decode(q: q, cache: cache, into: out))
        XCTAssertThrows(.invalidArgument(argument: "k", reason: "9 new rows do not fit: 0 of 8 are used"),
                        try cache.append(k: try Tensor(shape: [1, 2, 9, 4]), v: try Tensor(shape: [1, 2, 9, 4])))
        XCTAssertThrows(.shapeMismatch(argument: "v", expected: "(1, 2, 3, 4) (the shape of k)", got: "(1, 2, 3, 5)"),
                        try cache.append(k: try Tensor(shape: [1, 2, 3, 4]), v: try Tensor(shape: [1, 2, 3, 5])))
        try cache.append(k: try Tensor(shape: [1, 2, 3, 4]), v: try Tensor(shape: [1, 2, 3, 4]))
        XCTAssertThrows(.shapeMismatch(argument: "q", expected: "(B=1, H=2, T, d=4) with 1 <= T <= 64", got: "(1, 2, 1, 5)"),
                        try Attention.decode(q: try Tensor(shape: [1, 2, 1, 5]), cache: cache, into: out))
        XCTAssertThrows(.shapeMismatch(argument: "out", expected: "(B=1, H=2, T=1, d=4), the shape of q", got: "(1, 2, 2, 4)"),
                        try Attention.decode(q: q, cache: cache, into: try Tensor(shape: [1, 2, 2, 4])))
        XCTAssertThrows(.invalidArgument(argument: "out", reason: "must not share memory with 'q'"),
                        try Attention.decode(q: q, cache: cache, into: q))
        // A window of 1: each query sees only its own key, so out is that key's value row.
        try Attention.decode(q: q, cache: cache, into: out, options: AttentionOptions(causal: true, windows: [1, 1]))
        let values = cache.values.toArray()
        XCTAssertEqual(out.toArray(), Array(values[8..<12]) + Array(values[40..<44]))
        cache.reset()
        XCTAssertEqual(cache.length, 0)
        XCTAssertEqual(cache.residentBytes, 2 * 2 * 8 * 4 * 4)
    }

    func testScanStepsEqualTheFusedForward() throws {
        // Ragged channels (37 = 16 + 16 + 5 lanes; groups of 37 would not
        // divide, so 2 groups of 19 use D = 38) and a ragged state (N = 20).
        for (b, d, l, n, g) in [(2, 38, 23, 20, 2), (1, 37, 9, 16, 1), (1, 5, 4, 3, 1)] {
            let shape = try ScanShape(batch: b, channels: d, seqLen: l, state: n, groups: g)
            let u = try Tensor.random(shape: shape.sequenceShape, seed: 1)
            let delta = try Tensor.random(shape: shape.sequenceShape, seed: 2, range: -2...1)
            let z = try Tensor.random(shape: shape.sequenceShape, seed: 3)
            let aValues = try Tensor.random(shape: shape.transitionShape, seed: 4, range: 0.1...2).toArray().map { -$0 }
            let A = try Tensor(shape: shape.transitionShape, values: aValues)
            let Bm = try Tensor.random(shape: shape.projectionShape, seed: 5)
            let C = try Tensor.random(shape: shape.projectionShape, seed: 6)
            let D = try Tensor.random(shape: [d], seed: 7), bias = try Tensor.random(shape: [d], seed: 8, range: -1...0)
            let h0 = try Tensor.random(shape: shape.stateShape, seed: 9)
            let options = ScanOptions(deltaSoftplus: true)
            let full = try Scan.forward(u: u, delta: delta, A: A, B: Bm, C: C, D: D, z: z, deltaBias: bias, h0: h0, options: options)
            for threads in [1, 2] {
                let state = try h0.copy()
                let out = try Tensor(shape: [b, d])
                let pool = try ThreadPool(threads: threads)
                for t in 0..<l {
                    let col = { (x: Tensor, rows: Int) in try Tensor(shape: [b, rows / b], values: self.columns(x.toArray(), rows: rows, l: l, from: t, count: 1)) }
                    let proj = { (x: Tensor) in try Tensor(shape: [b, g, n], values: self.columns(x.toArray(), rows: b * g * n, l: l, from: t, count: 1)) }
                    try Scan.step(u: col(u, b * d), delta: col(delta, b * d), A: A, B: proj(Bm), C: proj(C), D: D, z: col(z, b * d),
                                  deltaBias: bias, state: state, into: out, options: options, pool: pool)
                    let want = columns(full.out.toArray(), rows: b * d, l: l, from: t, count: 1)
                    XCTAssertLessThan(maxDiff(out.toArray(), want), 2e-5, "B\(b) D\(d) N\(n) T=\(threads) step \(t)")
                }
                XCTAssertLessThan(maxDiff(state.toArray(), full.lastState.toArray()), 2e-5, "B\(b) D\(d) N\(n) last state")
            }
        }
        // Without the optional inputs: out = <C, h>.
        let state = try Tensor(shape: [1, 2, 3])
        let out = try Tensor(shape: [1, 2])
        try Scan.step(u: try Tensor(shape: [1, 2], values: [1, 2]), delta: try Tensor(shape: [1, 2], values: [0.5, 1]),
                      A: try Tensor(shape: [2, 3], values: [-1, -1, -1, -2, -2, -2]), B: try Tensor(shape: [1, 3], values: [1, 0, 2]),
                      C: try Tensor(shape: [1, 3], values: [1, 1, 1]), state: state, into: out)
        XCTAssertEqual(out[0], 0.5 * 1 * 3, accuracy: 1e-6)  // h = dt u B = 0.5 (1, 0, 2)
        XCTAssertEqual(out[1], 1 * 2 * 3, accuracy: 1e-6)
        XCTAssertThrows(.shapeMismatch(argument: "state", expected: "(1, 2, 3)", got: "(1, 2, 4)"),
                        try Scan.step(u: out.copy(), delta: out.copy(), A: try Tensor(shape: [2, 3]), B: try Tensor(shape: [1, 3]),
                                      C: try Tensor(shape: [1, 3]), state: try Tensor(shape: [1, 2, 4]), into: out))
        XCTAssertThrows(.shapeMismatch(argument: "B", expected: "(B=1, G, N=3) with G dividing D=2, or (B=1, N=3)", got: "(1, 4)"),
                        try Scan.step(u: out.copy(), delta: out.copy(), A: try Tensor(shape: [2, 3]), B: try Tensor(shape: [1, 4]),
                                      C: try Tensor(shape: [1, 3]), state: state, into: out))
    }

    func testConvStepsEqualTheForward() throws {
        for (b, d, l, k, withBias) in [(2, 5, 11, 4, true), (1, 3, 6, 1, false), (1, 2, 3, 6, true)] {
            let x = try Tensor.random(shape: [b, d, l], seed: 1)
            let w = try Tensor.random(shape: [d, k], seed: 2)
            let bias = withBias ? try Tensor.random(shape: [d], seed: 3) : nil
            let y = try Tensor(shape: [b, d, l])
            try CausalConv1D.forward(x, weight: w, bias: bias, into: y)
            let state = try Tensor(shape: [b, d, k - 1])
            let yt = try Tensor(shape: [b, d])
            for t in 0..<l {
                let xt = try Tensor(shape: [b, d], values: columns(x.toArray(), rows: b * d, l: l, from: t, count: 1))
                try CausalConv1D.step(xt, weight: w, bias: bias, state: state, into: yt, pool: try ThreadPool(threads: 2))
                XCTAssertEqual(yt.toArray(), columns(y.toArray(), rows: b * d, l: l, from: t, count: 1), "K\(k) step \(t)")
            }
            // The state ends with the last K - 1 inputs, oldest first (zeros before the start).
            if k > 1 {
                let tail = (0..<(b * d)).flatMap { r in (0..<(k - 1)).map { j -> Float in
                    let t = l - (k - 1) + j
                    return t >= 0 ? x[r * l + t] : 0
                } }
                XCTAssertEqual(state.toArray(), tail)
            }
        }
        XCTAssertThrows(.shapeMismatch(argument: "state", expected: "(1, 2, 3)", got: "(1, 2, 4)"),
                        try CausalConv1D.step(try Tensor(shape: [1, 2]), weight: try Tensor(shape: [2, 4]), bias: nil,
                                              state: try Tensor(shape: [1, 2, 4]), into: try Tensor(shape: [1, 2])))
    }
}
