import Foundation

/// Float64 reference attention, written as plain loops over [Double] with no
/// tiling or online softmax, so it shares no structure with the kernels it checks.
/// Semantics follow kl_attn_params in kernellab.h.
struct AttentionReferenceConfig: Sendable {
    var batch: Int
    var heads: Int
    var qLen: Int
    var kvLen: Int
    var headDim: Int
    var causal: Bool
    /// Softmax scale; 0 means 1/sqrt(headDim).
    var scale: Double = 0
    /// Per-head ALiBi slopes, or nil.
    var alibi: [Double]? = nil
    /// Per-head windows, or nil; a value <= 0 is unlimited.
    var windows: [Int]? = nil

    var effectiveScale: Double { scale == 0 ? 1.0 / Double(headDim).squareRoot() : scale }

    /// Query i sits at position i' = i + Lk - Lq (queries aligned to the end of the keys).
    func queryPosition(_ i: Int) -> Int { i + kvLen - qLen }

    func isVisible(head h: Int, query i: Int, key j: Int) -> Bool {
        let ip = queryPosition(i)
        if causal && j > ip { return false }
        if let windows, windows[h] > 0 {
            let delta = ip - j
            if delta < 0 || delta >= windows[h] { return false }
        }
        return true
    }

    func bias(head h: Int, query i: Int, key j: Int) -> Double {
        guard let alibi else { return 0 }
        return -alibi[h] * Double(abs(queryPosition(i) - j))
    }

    /// Masked entries are -inf.
    func scoreRow(q: [Double], k: [Double], b: Int, h: Int, i: Int) -> [Double] {
        let d = headDim
        let qBase = ((b * heads + h) * qLen + i) * d
        let kBase = (b * heads + h) * kvLen * d
        var s = [Double](repeating: -.infinity, count: kvLen)
        for j in 0..<kvLen where isVisible(head: h, query: i, key: j) {
            var dot = 0.0
            for c in 0..<d { dot += q[qBase + c] * k[kBase + j * d + c] }
            s[j] = effectiveScale * dot + bias(head: h, query: i, key: j)
        }
        return s
    }

    /// Softmax of one score row with max subtraction; nil when every key is masked.
    func probabilityRow(_ s: [Double]) -> (p: [Double], lse: Double)? {
        var m = -Double.infinity
        for x in s where x > m { m = x }
        if m == -.infinity { return nil }
        var sum = 0.0
        var p = [Double](repeating: 0, count: s.count)
        for j in 0..<s.count where s[j] != -.infinity {
            p[j] = exp(s[j] - m)
            sum += p[j]
        }
        for j in 0..<s.count { p[j] /= sum }
        return (p, m + log(sum))
    }
}

struct AttentionReferenceForward {
    var o: [Double]     // (B, H, Lq, d)
    var lse: [Double]   // (B, H, Lq); -inf for a fully masked row
}

struct AttentionReferenceGradients {
    var dq: [Double]
    var dk: [Double]
    var dv: [Double]
}

func attentionReferenceForward(_ c: AttentionReferenceConfig,
                               q: [Double], k: [Double], v: [Double]) -> AttentionReferenceForward {
    let d = c.headDim
    var o = [Double](repeating: 0, count: c.batch * c.heads * c.qLen * d)
    var lse = [Double](repeating: -.infinity, count: c.batch * c.heads * c.qLen)
    for b in 0..<c.batch {
        for h in 0..<c.heads {
            let vBase = (b * c.heads + h) * c.kvLen * d
            for i in 0..<c.qLen {
                let row = (b * c.heads + h) * c.qLen + i
                guard let (p, l) = c.probabilityRow(c.scoreRow(q: q, k: k, b: b, h: h, i: i)) else {
                    continue  // fully masked: o = 0, lse = -inf
                }
                lse[row] = l
                for j in 0..<c.kvLen where p[j] != 0 {
                    for x in 0..<d { o[row * d + x] += p[j] * v[vBase + j * d + x] }
                }
            }
        }
    }
    return AttentionReferenceForward(o: o, lse: lse)
}

/// Analytic gradients of L = sum(o * dout):
///   dP_ij = dout_i . v_j,  D_i = sum_j P_ij dP_ij,  dS_ij = P_ij (dP_ij - D_i),
///   dq_i = scale sum_j dS_ij k_j,  dk_j = scale sum_i dS_ij q_i,  dv_j = sum_i P_ij dout_i.
func attentionReferenceBackward(_ c: AttentionReferenceConfig,
                                q: [Double], k: [Double], v: [Double],
                                dout: [Double]) -> AttentionReferenceGradients {
    let d = c.headDim
    let scale = c.effectiveScale
    var dq = [Double](repeating: 0, count: q.count)
    var dk = [Double](repeating: 0, count: k.count)
    var dv = [Double](repeating: 0, count: v.count)
    var dp = [Double](repeating: 0, count: c.kvLen)
    for b in 0..<c.batch {
        for h in 0..<c.heads {
            let kvBase = (b * c.heads + h) * c.kvLen * d
            for i in 0..<c.qLen {
                let row = ((b * c.heads + h) * c.qLen + i) * d
                guard let (p, _) = c.probabilityRow(c.scoreRow(q: q, k: k, b: b, h: h, i: i)) else {
                    continue  // fully masked rows contribute nothing
                }
                var dsum = 0.0
                for j in 0..<c.kvLen {
                    var acc = 0.0
                    if p[j] != 0 {
                        for x in 0..<d { acc += dout[row + x] * v[kvBase + j * d + x] }
                    }
                    dp[j] = acc
                    dsum += p[j] * acc
                }
                for j in 0..<c.kvLen where p[j] != 0 {
                    let ds = p[j] * (dp[j] - dsum)
                    for x in 0..<d {
                        dq[row + x] += scale * ds * k[kvBase + j * d + x]
                        dk[kvBase + j * d + x] += scale * ds * q[row + x]
                        dv[kvBase + j * d + x] += p[j] * dout[row + x]
                    }
                }
            }
        }
    }
    return AttentionReferenceGradients(dq: dq, dk: dk, dv: dv)
}
