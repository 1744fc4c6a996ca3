import Foundation

// Float64 reference of the Mamba-1 selective scan (kernellab.h, "selective
// scan"): the forward and its analytic reverse-mode backward, written as the
// plain recurrence so it can be read against the header's formulas. Test-only,
// small shapes. Layouts: u, delta, z, out: (B, D, L); A: (D, N);
// B, C: (B, G, N, L); D, delta_bias: (D); h0, last: (B, D, N).

struct ScanReferenceConfig: Sendable, CustomStringConvertible {
    var batch: Int
    var channels: Int
    var seqLen: Int
    var state: Int
    var groups: Int
    var softplus: Bool

    var rowCount: Int { batch * channels * seqLen }       // (B, D, L)
    var bcCount: Int { batch * groups * state * seqLen }  // (B, G, N, L)
    var stateCount: Int { batch * channels * state }      // (B, D, N)
    var aCount: Int { channels * state }                  // (D, N)

    var description: String {
        "B=\(batch) D=\(channels) L=\(seqLen) N=\(state) G=\(groups)\(softplus ? " softplus" : "")"
    }
}

struct ScanReferenceInputs {
    var u: [Double]
    var delta: [Double]
    var A: [Double]
    var B: [Double]
    var C: [Double]
    var D: [Double]?
    var z: [Double]?
    var deltaBias: [Double]?
    var h0: [Double]?
}

struct ScanReferenceForward {
    var out: [Double]
    var last: [Double]
}

/// dD, dz and ddeltaBias are non-nil iff the matching input is given; dh0 is
/// always computed (the gradient wrt the initial state, zero when h0 is absent).
struct ScanReferenceGradients {
    var du: [Double]
    var ddelta: [Double]
    var dA: [Double]
    var dB: [Double]
    var dC: [Double]
    var dD: [Double]?
    var dz: [Double]?
    var ddeltaBias: [Double]?
    var dh0: [Double]
}

func scanReferenceSigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

/// log(1 + e^x) without overflow for large x.
func scanReferenceSoftplus(_ x: Double) -> Double { max(x, 0) + log1p(exp(-abs(x))) }

private func checkShapes(_ c: ScanReferenceConfig, _ x: ScanReferenceInputs) {
    precondition(c.channels % c.groups == 0, "channels must be divisible by groups")
    precondition(x.u.count == c.rowCount && x.delta.count == c.rowCount)
    precondition(x.A.count == c.aCount && x.B.count == c.bcCount && x.C.count == c.bcCount)
    precondition(x.D.map { $0.count == c.channels } ?? true)
    precondition(x.deltaBias.map { $0.count == c.channels } ?? true)
    precondition(x.z.map { $0.count == c.rowCount } ?? true)
    precondition(x.h0.map { $0.count == c.stateCount } ?? true)
}

/// One (b, d) row run forward, keeping what the backward needs:
/// hs[t * N + n] is the state before step t (hs[0..<N] = h0), hs[(t + 1) * N + n] after it;
/// dts[t] = delta'_t; pre[t] = y_t + D u_t (before the gate).
private struct RowTrace {
    var hs: [Double]
    var dts: [Double]
    var pre: [Double]
}

private func runRow(_ c: ScanReferenceConfig, _ x: ScanReferenceInputs, b: Int, d: Int) -> RowTrace {
    let L = c.seqLen, N = c.state
    let row = b * c.channels + d
    let bc = (b * c.groups + d / (c.channels / c.groups)) * N * L  // this row's (b, group) slice of B and C
    let bias = x.deltaBias?[d] ?? 0
    var tr = RowTrace(hs: [Double](repeating: 0, count: (L + 1) * N),
                      dts: [Double](repeating: 0, count: L),
                      pre: [Double](repeating: 0, count: L))
    if let h0 = x.h0 { for n in 0..<N { tr.hs[n] = h0[row * N + n] } }
    for t in 0..<L {
        let raw = x.delta[row * L + t] + bias
        let dt = c.softplus ? scanReferenceSoftplus(raw) : raw
        let ut = x.u[row * L + t]
        var y = 0.0
        for n in 0..<N {
            let h = exp(dt * x.A[d * N + n]) * tr.hs[t * N + n] + dt * x.B[bc + n * L + t] * ut
            tr.hs[(t + 1) * N + n] = h
            y += x.C[bc + n * L + t] * h
        }
        if let D = x.D { y += D[d] * ut }
        tr.dts[t] = dt
        tr.pre[t] = y
    }
    return tr
}

func scanReferenceForward(_ c: ScanReferenceConfig, _ x: ScanReferenceInputs) -> ScanReferenceForward {
    checkShapes(c, x)
    let L = c.seqLen, N = c.state
    var out = [Double](repeating: 0, count: c.rowCount)
    var last = [Double](repeating: 0, count: c.stateCount)
    for b in 0..<c.batch {
        for d in 0..<c.channels {
            let row = b * c.channels + d
            let tr = runRow(c, x, b: b, d: d)
            for t in 0..<L {
                var y = tr.pre[t]
                if let z = x.z {
                    let zt = z[row * L + t]
                    y *= zt * scanReferenceSigmoid(zt)  // silu(z)
                }
                out[row * L + t] = y
            }
            for n in 0..<N { last[row * N + n] = tr.hs[L * N + n] }
        }
    }
    return ScanReferenceForward(out: out, last: last)
}

/// Reverse mode of the forward for loss = sum(out * dout) + sum(last * dlast).
func scanReferenceBackward(_ c: ScanReferenceConfig, _ x: ScanReferenceInputs,
                           dout: [Double], dlast: [Double]?) -> ScanReferenceGradients {
    checkShapes(c, x)
    precondition(dout.count == c.rowCount && (dlast.map { $0.count == c.stateCount } ?? true))
    let L = c.seqLen, N = c.state
    var g = ScanReferenceGradients(
        du: [Double](repeating: 0, count: c.rowCount),
        ddelta: [Double](repeating: 0, count: c.rowCount),
        dA: [Double](repeating: 0, count: c.aCount),
        dB: [Double](repeating: 0, count: c.bcCount),
        dC: [Double](repeating: 0, count: c.bcCount),
        dD: x.D == nil ? nil : [Double](repeating: 0, count: c.channels),
        dz: x.z == nil ? nil : [Double](repeating: 0, count: c.rowCount),
        ddeltaBias: x.deltaBias == nil ? nil : [Double](repeating: 0, count: c.channels),
        dh0: [Double](repeating: 0, count: c.stateCount))
    var dy = [Double](repeating: 0, count: L)
    var dh = [Double](repeating: 0, count: N)  // gradient wrt the state after the step being walked
    for b in 0..<c.batch {
        for d in 0..<c.channels {
            let row = b * c.channels + d
            let bc = (b * c.groups + d / (c.channels / c.groups)) * N * L
            let tr = runRow(c, x, b: b, d: d)
            // Gate: out = pre * silu(z), silu'(z) = s (1 + z (1 - s)).
            for t in 0..<L {
                var gt = dout[row * L + t]
                if let z = x.z {
                    let zt = z[row * L + t], s = scanReferenceSigmoid(zt)
                    g.dz![row * L + t] = gt * tr.pre[t] * s * (1 + zt * (1 - s))
                    gt *= zt * s
                }
                dy[t] = gt
                if let D = x.D {
                    g.dD![d] += gt * x.u[row * L + t]
                    g.du[row * L + t] += gt * D[d]
                }
            }
            for n in 0..<N { dh[n] = dlast?[row * N + n] ?? 0 }
            for t in stride(from: L - 1, through: 0, by: -1) {
                let dt = tr.dts[t], ut = x.u[row * L + t]
                var ddt = 0.0
                for n in 0..<N {
                    let a = exp(dt * x.A[d * N + n])
                    let bt = x.B[bc + n * L + t]
                    let gh = dh[n] + dy[t] * x.C[bc + n * L + t]   // total gradient wrt h_t
                    g.dC[bc + n * L + t] += dy[t] * tr.hs[(t + 1) * N + n]
                    g.dB[bc + n * L + t] += gh * dt * ut
                    g.du[row * L + t] += gh * dt * bt
                    let gExp = gh * tr.hs[t * N + n] * a  // gradient wrt the exponent dt * A
                    ddt += gh * bt * ut + gExp * x.A[d * N + n]
                    g.dA[d * N + n] += gExp * dt
                    dh[n] = gh * a
                }
                let raw = x.delta[row * L + t] + (x.deltaBias?[d] ?? 0)
                let draw = c.softplus ? ddt * scanReferenceSigmoid(raw) : ddt
                g.ddelta[row * L + t] = draw
                if x.deltaBias != nil { g.ddeltaBias![d] += draw }
            }
            for n in 0..<N { g.dh0[row * N + n] = dh[n] }
        }
    }
    return g
}

/// loss = sum(out * dout) + sum(last * dlast), the scalar the backward differentiates.
func scanReferenceLoss(_ f: ScanReferenceForward, dout: [Double], dlast: [Double]?) -> Double {
    var s = 0.0
    for i in f.out.indices { s += f.out[i] * dout[i] }
    if let dlast { for i in f.last.indices { s += f.last[i] * dlast[i] } }
    return s
}
