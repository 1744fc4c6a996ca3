import KernelLab
import XCTest

/// Checks that the Swift wrapper passes the right buffers to the kernels
/// (numerical accuracy is AttentionReferenceTests' job).
final class AttentionTests: XCTestCase {
    /// Plain float64 attention for one small case, causal aligned to the end of the keys.
    private func naiveForward(q: Tensor, k: Tensor, v: Tensor, causal: Bool) -> (out: [Float], lse: [Float]) {
        let (b, h, lq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let lk = k.shape[2]
        let (qa, ka, va) = (q.toArray(), k.toArray(), v.toArray())
        let scale = 1 / Double(d).squareRoot()
        var out = [Float](repeating: 0, count: q.count)
        var lse = [Float](repeating: 0, count: b * h * lq)
        for bh in 0..<(b * h) {
            for i in 0..<lq {
                let visible = causal ? min(i + lk - lq + 1, lk) : lk
                var scores = [Double](repeating: -.infinity, count: lk)
                for j in 0..<max(visible, 0) {
                    var dot = 0.0
                    for x in 0..<d { dot += Double(qa[(bh * lq + i) * d + x]) * Double(ka[(bh * lk + j) * d + x]) }
                    scores[j] = dot * scale
                }
                let m = scores.max()!
                let sum = scores.reduce(0) { $0 + exp($1 - m) }
                lse[bh * lq + i] = Float(m + log(sum))
                for x in 0..<d {
                    var acc = 0.0
                    for j in 0..<lk where scores[j] > -.infinity { acc += exp(scores[j] - m) / sum * Double(va[(bh * lk + j) * d + x]) }
                    out[(bh * lq + i) * d + x] = Float(acc)
                }
            }
        }
        return (out, lse)
    }

    func testForwardMatchesNaiveForBothImplementations() throws {
        let q = try Tensor.random(shape: [1, 2, 5, 8], seed: 11)
        let k = try Tensor.random(shape: [1, 2, 9, 8], seed: 12)
        let v = try Tensor.random(shape: [1, 2, 9, 8], seed: 13)
        let pool = try ThreadPool(threads: 2)
        for causal in [false, true] {
            let expected = naiveForward(q: q, k: k, v: v, causal: causal)
            for impl in KernelImpl.allCases {
                let (out, lse) = try Attention.forward(q: q, k: k, v: v, options: AttentionOptions(causal: causal), impl: impl, pool: pool)
                XCTAssertLessThan(try out.maxAbsDifference(Tensor(shape: out.shape, values: expected.out)), 1e-4, "\(impl) causal=\(causal)")
                XCTAssertLessThan(try lse.maxAbsDifference(Tensor(shape: lse.shape, values: expected.lse)), 1e-4, "\(impl) causal=\(causal)")
            }
        }
    }

    func testIntoVariantsReuseBuffersAndAgree() throws {
        let shape = try AttentionShape(batch: 1, heads: 2, queryLength: 6, keyLength: 6, headDim: 8)
        let options = AttentionOptions(causal: true, alibiSlopes: [0.5, 0.25], windows: [0, 3])
        let q = try Tensor.random(shape: shape.queryShape, seed: 1)
        let k = try Tensor.random(shape: shape.keyShape, seed: 2)
        let v = try Tensor.random(shape: shape.keyShape, seed: 3)
        let gradOut = try Tensor.random(shape: shape.queryShape, seed: 4)
        let pool = try ThreadPool(threads: 1)
        let workspace = try Workspace()

        let (out, lse) = try Attention.forward(q: q, k: k, v: v, options: options, impl: .fused, pool: pool)
        let out2 = try Tensor(shape: shape.queryShape)
        let lse2 = try Tensor(shape: shape.lseShape)
        try Attention.forward(q: q, k: k, v: v, into: out2, lse: lse2, options: options, impl: .unfused, pool: pool, workspace: workspace)
        XCTAssertLessThan(try out.maxAbsDifference(out2), 1e-5)
        XCTAssertLessThan(try lse.maxAbsDifference(lse2), 1e-5)
        XCTAssertGreaterThanOrEqual(workspace.capacity,
                                    try Attention.workspaceBytes(shape: shape, options: options, impl: .unfused, pass: .forward))

        let fused = try Attention.backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: gradOut, options: options, impl: .fused, pool: pool)
        let dq = try Tensor(shape: shape.queryShape)
        let dk = try Tensor(shape: shape.keyShape)
        let dv = try Tensor(shape: shape.keyShape)
        try Attention.backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: gradOut, into: dq, dk: dk, dv: dv,
                               options: options, impl: .unfused, pool: pool, workspace: workspace)
        XCTAssertLessThan(try fused.dq.maxAbsDifference(dq), 1e-4)
        XCTAssertLessThan(try fused.dk.maxAbsDifference(dk), 1e-4)
        XCTAssertLessThan(try fused.dv.maxAbsDifference(dv), 1e-4)
        XCTAssertTrue(dq.allFinite && dk.allFinite && dv.allFinite)
    }

    func testCostFollowsTheConvention() throws {
        let shape = try AttentionShape(batch: 2, heads: 3, queryLength: 16, keyLength: 32, headDim: 8)
        let forward = try Attention.cost(shape: shape, pass: .forward)
        XCTAssertEqual(forward.flops, 4.0 * 2 * 3 * 16 * 32 * 8)
        let backward = try Attention.cost(shape: shape, pass: .backward)
        XCTAssertEqual(backward.flops, 2.5 * forward.flops)
        XCTAssertGreaterThan(forward.minBytes, 0)
    }
}
