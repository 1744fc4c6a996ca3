import CKernels
@testable import KernelLab
import XCTest

/// Strided layouts (`kl_attn_layout`) and the accumulate mode of the attention
/// kernels, through the C API: a strided call must equal the packed call on
/// the same numbers (bit for bit for the fused kernel, whose arithmetic does
/// not depend on where rows live), leave every float outside its views alone,
/// and match the float64 reference; accumulate must add exactly the gradients
/// a fresh call writes.
final class AttentionLayoutTests: XCTestCase {
    /// One problem: sizes and masks.
    struct Problem: CustomStringConvertible {
        var b: Int, h: Int, lq: Int, lk: Int, d: Int
        var causal = false
        var alibi: [Float]? = nil
        var windows: [Int32]? = nil
        var tiles: kl_attn_tiles? = nil
        var description: String { "B\(b) H\(h) Lq\(lq) Lk\(lk) d\(d)\(causal ? " causal" : "")\(alibi != nil ? " alibi" : "")\(windows != nil ? " windows" : "")" }
    }

    /// Where q, k, v live in one input buffer and o in one output buffer;
    /// gradients mirror them (dq, dk, dv at the offsets of q, k, v in a buffer
    /// of the input's size; dout at o's).
    struct Placement {
        var name: String
        var q = 0, k = 0, v = 0, inputCount = 0
        var o = 0, outputCount = 0
        var layout: kl_attn_layout
    }

    static func extent(_ s: kl_attn_strides, _ p: Problem, rows: Int) -> Int {
        (p.b - 1) * s.batch + (p.h - 1) * s.head + (rows - 1) * s.row + p.d
    }

    /// Three layouts a training engine meets.
    static func placements(_ p: Problem) -> [Placement] {
        var out: [Placement] = []
        // (B, L, H, d): a projection's output, each tensor on its own.
        func tokens(_ rows: Int) -> kl_attn_strides { kl_attn_strides(batch: rows * p.h * p.d, head: p.d, row: p.h * p.d) }
        var t = Placement(name: "tokens", layout: kl_attn_layout(q: tokens(p.lq), k: tokens(p.lk), v: tokens(p.lk), o: tokens(p.lq)))
        t.k = p.b * p.lq * p.h * p.d; t.v = t.k + p.b * p.lk * p.h * p.d; t.inputCount = t.v + p.b * p.lk * p.h * p.d
        t.outputCount = p.b * p.lq * p.h * p.d
        out.append(t)
        // Padded rows, heads and batches (a KV cache of larger capacity is the k, v case), offset bases.
        func padded(_ rows: Int, _ pad: Int) -> kl_attn_strides {
            let row = p.d + 3, head = (rows + pad) * row + 5
            return kl_attn_strides(batch: p.h * head + 7, head: head, row: row)
        }
        let sq = padded(p.lq, 0), sk = padded(p.lk, 4), sv = padded(p.lk, 2)
        var pd = Placement(name: "padded", layout: kl_attn_layout(q: sq, k: sk, v: sv, o: padded(p.lq, 1)))
        pd.q = 11; pd.k = pd.q + extent(sq, p, rows: p.lq) + 13; pd.v = pd.k + extent(sk, p, rows: p.lk) + 2
        pd.inputCount = pd.v + extent(sv, p, rows: p.lk) + 9
        pd.o = 3; pd.outputCount = pd.o + extent(pd.layout.o, p, rows: p.lq) + 4
        out.append(pd)
        // One fused (B, L, 3, H, d) projection, self-attention only.
        if p.lq == p.lk {
            let hd = p.h * p.d
            var f = Placement(name: "fused qkv", layout: Attention.packedQKVLayout(length: p.lq, heads: p.h, headDim: p.d))
            f.k = hd; f.v = 2 * hd; f.inputCount = p.b * p.lq * 3 * hd; f.outputCount = p.b * p.lq * hd
            out.append(f)
        }
        return out
    }

    // Packed (B, H, L, d) <-> a strided view at `offset`.
    static func embed(_ x: [Float], into buf: inout [Float], at offset: Int, _ s: kl_attn_strides, _ p: Problem, rows: Int) {
        for b in 0..<p.b { for h in 0..<p.h { for r in 0..<rows { for e in 0..<p.d {
            buf[offset + b * s.batch + h * s.head + r * s.row + e] = x[((b * p.h + h) * rows + r) * p.d + e]
        } } } }
    }

    static func extract(_ buf: [Float], at offset: Int, _ s: kl_attn_strides, _ p: Problem, rows: Int) -> [Float] {
        var x = [Float](repeating: 0, count: p.b * p.h * rows * p.d)
        for b in 0..<p.b { for h in 0..<p.h { for r in 0..<rows { for e in 0..<p.d {
            x[((b * p.h + h) * rows + r) * p.d + e] = buf[offset + b * s.batch + h * s.head + r * s.row + e]
        } } } }
        return x
    }

    /// Marks every float of a view; the unmarked ones must keep the sentinel.
    static func mark(_ covered: inout [Bool], at offset: Int, _ s: kl_attn_strides, _ p: Problem, rows: Int) {
        for b in 0..<p.b { for h in 0..<p.h { for r in 0..<rows { for e in 0..<p.d {
            covered[offset + b * s.batch + h * s.head + r * s.row + e] = true
        } } } }
    }

    struct Arrays { var q, k, v, dout: [Float] }

    static func inputs(_ p: Problem, seed: UInt64) -> Arrays {
        var rng = ReferenceRNG(seed: seed)
        let nq = p.b * p.h * p.lq * p.d, nk = p.b * p.h * p.lk * p.d
        return Arrays(q: rng.floats(nq), k: rng.floats(nk), v: rng.floats(nk), dout: rng.floats(nq))
    }

    /// Calls `body` with params for `p` (layout and accumulate as given).
    static func withParams<R>(_ p: Problem, layout: kl_attn_layout?, accumulate: Bool,
                              _ body: (UnsafePointer<kl_attn_params>) throws -> R) rethrows -> R {
        let slopes = p.alibi ?? [], windows = p.windows ?? [], tiles = p.tiles.map { [$0] } ?? []
        let lay = layout.map { [$0] } ?? []
        return try slopes.withUnsafeBufferPointer { sl in
            try windows.withUnsafeBufferPointer { wi in
                try tiles.withUnsafeBufferPointer { ti in
                    try lay.withUnsafeBufferPointer { la in
                        var params = kl_attn_params(
                            batch: Int32(p.b), heads: Int32(p.h), q_len: Int32(p.lq), kv_len: Int32(p.lk), head_dim: Int32(p.d),
                            causal: p.causal ? 1 : 0, scale: 0, alibi_slopes: p.alibi == nil ? nil : sl.baseAddress,
                            windows: p.windows == nil ? nil : wi.baseAddress, tiles: p.tiles == nil ? nil : ti.baseAddress,
                            layout: layout == nil ? nil : la.baseAddress, accumulate: accumulate ? 1 : 0)
                        return try body(&params)
                    }
                }
            }
        }
    }

    static func call(_ what: String, _ status: kl_status) throws { try check(status, what) }

    static func workspace(_ bytes: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
    }

    /// Forward into (o buffer, lse), backward into a gradient buffer that starts as `gradStart`.
    struct Run { var o: [Float]; var lse: [Float]; var grad: [Float] }

    static func run(_ p: Problem, impl: kl_impl, threads: Int, layout: kl_attn_layout?, accumulate: Bool,
                    input: [Float], at place: Placement, outputCount: Int, dout: [Float], gradStart: [Float]) throws -> Run {
        let pool = try ThreadPool(threads: threads)
        var o = [Float](repeating: 777, count: outputCount)
        var lse = [Float](repeating: .nan, count: p.b * p.h * p.lq)
        var grad = gradStart
        try withParams(p, layout: layout, accumulate: accumulate) { params in
            let fb = kl_attn_fwd_workspace_bytes(params, impl, Int32(threads)), bb = kl_attn_bwd_workspace_bytes(params, impl, Int32(threads))
            let ws = workspace(max(fb, bb))
            defer { ws.deallocate() }
            try input.withUnsafeBufferPointer { x in
                let base = x.baseAddress!
                try o.withUnsafeMutableBufferPointer { ob in
                    try lse.withUnsafeMutableBufferPointer { lb in
                        try pool.withUnsafePool { handle in
                            try call("kl_attn_fwd", kl_attn_fwd(params, impl, base + place.q, base + place.k, base + place.v,
                                                                ob.baseAddress! + place.o, lb.baseAddress, ws, max(fb, bb), handle))
                        }
                    }
                }
                try o.withUnsafeBufferPointer { ob in
                    try lse.withUnsafeBufferPointer { lb in
                        try dout.withUnsafeBufferPointer { db in
                            try grad.withUnsafeMutableBufferPointer { gb in
                                let g = gb.baseAddress!
                                try pool.withUnsafePool { handle in
                                    try call("kl_attn_bwd", kl_attn_bwd(params, impl, base + place.q, base + place.k, base + place.v,
                                                                        ob.baseAddress! + place.o, lb.baseAddress, db.baseAddress! + place.o,
                                                                        g + place.q, g + place.k, g + place.v, ws, max(fb, bb), handle))
                                }
                            }
                        }
                    }
                }
            }
        }
        return Run(o: o, lse: lse, grad: grad)
    }

    /// The packed placement of `p`: q, k, v back to back, o alone.
    static func packedPlacement(_ p: Problem) -> Placement {
        let nq = p.b * p.h * p.lq * p.d, nk = p.b * p.h * p.lk * p.d
        var pl = Placement(name: "packed", layout: kl_attn_layout())
        pl.k = nq; pl.v = nq + nk; pl.inputCount = nq + 2 * nk; pl.outputCount = nq
        return pl
    }

    static let problems: [Problem] = [
        Problem(b: 2, h: 3, lq: 37, lk: 37, d: 8, causal: true),
        Problem(b: 1, h: 2, lq: 5, lk: 41, d: 12, alibi: [0.5, 0.125], windows: [0, 9]),
        Problem(b: 2, h: 1, lq: 33, lk: 33, d: 16, causal: true, tiles: kl_attn_tiles(q_block: 7, kv_block: 16)),
        Problem(b: 1, h: 1, lq: 1, lk: 1, d: 3),
    ]

    func testStridedLayoutsEqualThePackedCall() throws {
        for p in Self.problems {
            let x = Self.inputs(p, seed: UInt64(p.lq * 131 + p.d))
            let packed = Self.packedPlacement(p)
            for impl in [KL_IMPL_FUSED, KL_IMPL_UNFUSED] {
                for threads in [1, 2] {
                    let ref = try Self.run(p, impl: impl, threads: threads, layout: nil, accumulate: false,
                                           input: x.q + x.k + x.v, at: packed, outputCount: packed.outputCount, dout: x.dout,
                                           gradStart: [Float](repeating: .nan, count: packed.inputCount))
                    let refO = ref.o, refDq = Array(ref.grad[0..<packed.k]), refDk = Array(ref.grad[packed.k..<packed.v])
                    let refDv = Array(ref.grad[packed.v...])
                    for place in Self.placements(p) {
                        let what = "\(p), \(place.name), \(impl == KL_IMPL_FUSED ? "fused" : "unfused"), \(threads) threads"
                        let L = place.layout
                        var input = [Float](repeating: 555, count: place.inputCount)
                        Self.embed(x.q, into: &input, at: place.q, L.q, p, rows: p.lq)
                        Self.embed(x.k, into: &input, at: place.k, L.k, p, rows: p.lk)
                        Self.embed(x.v, into: &input, at: place.v, L.v, p, rows: p.lk)
                        var dout = [Float](repeating: 555, count: place.outputCount)
                        Self.embed(x.dout, into: &dout, at: place.o, L.o, p, rows: p.lq)
                        let r = try Self.run(p, impl: impl, threads: threads, layout: L, accumulate: false, input: input, at: place,
                                             outputCount: place.outputCount, dout: dout,
                                             gradStart: [Float](repeating: 777, count: place.inputCount))
                        let got = [Self.extract(r.o, at: place.o, L.o, p, rows: p.lq),
                                   Self.extract(r.grad, at: place.q, L.q, p, rows: p.lq),
                                   Self.extract(r.grad, at: place.k, L.k, p, rows: p.lk),
                                   Self.extract(r.grad, at: place.v, L.v, p, rows: p.lk)]
                        for (name, (g, e)) in zip(["o", "dq", "dk", "dv"], zip(got, [refO, refDq, refDk, refDv])) {
                            if impl == KL_IMPL_FUSED {
                                XCTAssertTrue(g == e, "\(name) differs from the packed call: \(what)")
                            } else {
                                let scale = e.map { abs($0) }.max() ?? 1
                                let err = zip(g, e).map { abs($0 - $1) }.max() ?? 0
                                XCTAssertLessThanOrEqual(err, 1e-5 * max(scale, 1), "\(name): \(what)")
                            }
                        }
                        XCTAssertTrue(r.lse == ref.lse, "lse: \(what)")
                        // Nothing outside the views is written.
                        var covered = [Bool](repeating: false, count: place.outputCount)
                        Self.mark(&covered, at: place.o, L.o, p, rows: p.lq)
                        XCTAssertFalse(zip(r.o, covered).contains { !$1 && $0 != 777 }, "o wrote outside its view: \(what)")
                        covered = [Bool](repeating: false, count: place.inputCount)
                        Self.mark(&covered, at: place.q, L.q, p, rows: p.lq)
                        Self.mark(&covered, at: place.k, L.k, p, rows: p.lk)
                        Self.mark(&covered, at: place.v, L.v, p, rows: p.lk)
                        XCTAssertFalse(zip(r.grad, covered).contains { !$1 && $0 != 777 }, "gradients wrote outside their views: \(what)")
                    }
                }
            }
        }
    }

    /// The strided kernels against the float64 reference directly (not only against the packed call).
    func testStridedMatchesFloat64Reference() throws {
        for p in Self.problems.prefix(3) {
            let x = Self.inputs(p, seed: 99)
            let cfg = AttentionReferenceConfig(batch: p.b, heads: p.h, qLen: p.lq, kvLen: p.lk, headDim: p.d, causal: p.causal,
                                               scale: 0, alibi: p.alibi?.map(Double.init), windows: p.windows?.map(Int.init))
            let dq = { (a: [Float]) in a.map(Double.init) }
            let f = attentionReferenceForward(cfg, q: dq(x.q), k: dq(x.k), v: dq(x.v))
            let g = attentionReferenceBackward(cfg, q: dq(x.q), k: dq(x.k), v: dq(x.v), dout: dq(x.dout))
            for place in Self.placements(p) {
                let L = place.layout
                var input = [Float](repeating: 0, count: place.inputCount)
                Self.embed(x.q, into: &input, at: place.q, L.q, p, rows: p.lq)
                Self.embed(x.k, into: &input, at: place.k, L.k, p, rows: p.lk)
                Self.embed(x.v, into: &input, at: place.v, L.v, p, rows: p.lk)
                var dout = [Float](repeating: 0, count: place.outputCount)
                Self.embed(x.dout, into: &dout, at: place.o, L.o, p, rows: p.lq)
                let r = try Self.run(p, impl: KL_IMPL_FUSED, threads: 2, layout: L, accumulate: false, input: input, at: place,
                                     outputCount: place.outputCount, dout: dout, gradStart: [Float](repeating: 0, count: place.inputCount))
                let pairs: [(String, [Float], [Double])] = [
                    ("o", Self.extract(r.o, at: place.o, L.o, p, rows: p.lq), f.o),
                    ("dq", Self.extract(r.grad, at: place.q, L.q, p, rows: p.lq), g.dq),
                    ("dk", Self.extract(r.grad, at: place.k, L.k, p, rows: p.lk), g.dk),
                    ("dv", Self.extract(r.grad, at: place.v, L.v, p, rows: p.lk), g.dv),
                ]
                for (name, got, want) in pairs {
                    let scale = max(want.map { abs($0) }.max() ?? 0, 1e-2)
                    let err = zip(got, want).map { abs(Double($0) - $1) }.max() ?? 0
                    XCTAssertLessThan(err / scale, 2e-5, "\(name) against float64: \(p), \(place.name)")
                }
            }
        }
    }

    /// accumulate = 1 adds what a fresh call writes, on every path that writes
    /// a gradient: one work item per head, heads split over threads (partials
    /// summed into dq), the unfused GEMMs (beta = 1), packed and strided.
    func testAccumulateAddsTheFreshGradients() throws {
        let cases = [Problem(b: 2, h: 2, lq: 29, lk: 29, d: 8, causal: true),
                     // one head on 2 threads with several key tiles: the backward splits it
                     Problem(b: 1, h: 1, lq: 40, lk: 70, d: 8, windows: [33], tiles: kl_attn_tiles(q_block: 8, kv_block: 16))]
        for p in cases {
            let x = Self.inputs(p, seed: 7)
            for place in [Self.packedPlacement(p)] + Self.placements(p) {
                let L = place.name == "packed" ? nil : Optional(place.layout)
                let layout = L ?? kl_attn_layout()
                func strides(_ s: kl_attn_strides, rows: Int) -> kl_attn_strides {
                    s.batch == 0 && s.head == 0 && s.row == 0
                        ? kl_attn_strides(batch: p.h * rows * p.d, head: rows * p.d, row: p.d) : s
                }
                let sq = strides(layout.q, rows: p.lq), sk = strides(layout.k, rows: p.lk), sv = strides(layout.v, rows: p.lk)
                let so = strides(layout.o, rows: p.lq)
                var input = [Float](repeating: 0, count: place.inputCount)
                Self.embed(x.q, into: &input, at: place.q, sq, p, rows: p.lq)
                Self.embed(x.k, into: &input, at: place.k, sk, p, rows: p.lk)
                Self.embed(x.v, into: &input, at: place.v, sv, p, rows: p.lk)
                var dout = [Float](repeating: 0, count: place.outputCount)
                Self.embed(x.dout, into: &dout, at: place.o, so, p, rows: p.lq)
                var rng = ReferenceRNG(seed: 3)
                let start = rng.floats(place.inputCount, scale: 2)
                for impl in [KL_IMPL_FUSED, KL_IMPL_UNFUSED] {
                    for threads in [1, 2] {
                        let what = "\(p), \(place.name), \(impl == KL_IMPL_FUSED ? "fused" : "unfused"), \(threads) threads"
                        let fresh = try Self.run(p, impl: impl, threads: threads, layout: L, accumulate: false, input: input, at: place,
                                                 outputCount: place.outputCount, dout: dout,
                                                 gradStart: [Float](repeating: 0, count: place.inputCount))
                        let acc = try Self.run(p, impl: impl, threads: threads, layout: L, accumulate: true, input: input, at: place,
                                               outputCount: place.outputCount, dout: dout, gradStart: start)
                        let expected = zip(start, fresh.grad).map { $0 + $1 }
                        let err = zip(acc.grad, expected).map { abs($0 - $1) }.max() ?? 0
                        XCTAssertLessThan(err, 2e-5, "accumulate: \(what)")
                        // The fresh call overwrote: a second fresh call over garbage gives the same bits.
                        let again = try Self.run(p, impl: impl, threads: threads, layout: L, accumulate: false, input: input, at: place,
                                                 outputCount: place.outputCount, dout: dout, gradStart: start)
                        var covered = [Bool](repeating: false, count: place.inputCount)
                        Self.mark(&covered, at: place.q, sq, p, rows: p.lq)
                        Self.mark(&covered, at: place.k, sk, p, rows: p.lk)
                        Self.mark(&covered, at: place.v, sv, p, rows: p.lk)
                        let same = zip(zip(again.grad, fresh.grad), covered).allSatisfy { !$1 || $0.0 == $0.1 }
                        XCTAssertTrue(same, "accumulate = 0 must overwrite: \(what)")
                    }
                }
            }
        }
    }

    func testBadLayoutsAndAliasesAreClearErrors() throws {
        let p = Problem(b: 2, h: 2, lq: 8, lk: 8, d: 4)
        let pool = try ThreadPool(threads: 1)
        let n = p.b * p.h * p.lq * p.d
        var buf = [Float](repeating: 0.5, count: 8 * n)
        var lse = [Float](repeating: 0, count: p.b * p.h * p.lq)
        let ws = Self.workspace(1 << 20)
        defer { ws.deallocate() }
        func fwd(_ layout: kl_attn_layout?, accumulate: Bool = false, q: Int = 0, k: Int, v: Int, o: Int) -> (kl_status, String) {
            Self.withParams(p, layout: layout, accumulate: accumulate) { params in
                buf.withUnsafeMutableBufferPointer { b in
                    lse.withUnsafeMutableBufferPointer { l in
                        pool.withUnsafePool { h in
                            let s = kl_attn_fwd(params, KL_IMPL_FUSED, b.baseAddress! + q, b.baseAddress! + k, b.baseAddress! + v,
                                                b.baseAddress! + o, l.baseAddress, ws, 1 << 20, h)
                            return (s, String(cString: kl_last_error()))
                        }
                    }
                }
            }
        }
        func bwd(_ layout: kl_attn_layout?, dq: Int, dk: Int, dv: Int) -> (kl_status, String) {
            Self.withParams(p, layout: layout, accumulate: false) { params in
                buf.withUnsafeMutableBufferPointer { b in
                    lse.withUnsafeMutableBufferPointer { l in
                        pool.withUnsafePool { h in
                            let x = b.baseAddress!
                            let s = kl_attn_bwd(params, KL_IMPL_FUSED, x, x + n, x + 2 * n, x + 3 * n, l.baseAddress, x + 4 * n,
                                                x + dq, x + dk, x + dv, ws, 1 << 20, h)
                            return (s, String(cString: kl_last_error()))
                        }
                    }
                }
            }
        }
        XCTAssertEqual(fwd(nil, k: n, v: 2 * n, o: 3 * n).0, KL_OK)
        var bad = kl_attn_layout()
        bad.q = kl_attn_strides(batch: 64, head: 16, row: 3)  // rows overlap (row < d)
        var (status, message) = fwd(bad, k: n, v: 2 * n, o: 3 * n)
        XCTAssertEqual(status, KL_ERR_INVALID_ARGUMENT)
        XCTAssertTrue(message.contains("layout.q") && message.contains("overlapping"), message)
        bad = kl_attn_layout()
        bad.o = kl_attn_strides(batch: 64, head: 0, row: 4)  // two heads on one row
        (status, message) = fwd(bad, k: n, v: 2 * n, o: 3 * n)
        XCTAssertTrue(status == KL_ERR_INVALID_ARGUMENT && message.contains("layout.o"), message)
        bad = kl_attn_layout()
        bad.k = kl_attn_strides(batch: -1, head: 4, row: 4)
        (status, message) = fwd(bad, k: n, v: 2 * n, o: 3 * n)
        XCTAssertTrue(status == KL_ERR_INVALID_ARGUMENT && message.contains(">= 0"), message)
        (status, message) = fwd(nil, accumulate: true, k: n, v: 2 * n, o: 3 * n)
        XCTAssertEqual(status, KL_OK, "accumulate is a backward option; the forward ignores it")
        (status, message) = fwd(nil, k: n, v: 2 * n, o: 2 * n + 4)
        XCTAssertTrue(status == KL_ERR_INVALID_ARGUMENT && message.contains("o overlaps the input v"), message)
        // Interleaved views of one buffer are fine when their columns are disjoint, an error when they are not.
        let fused = Attention.packedQKVLayout(length: p.lq, heads: p.h, headDim: p.d)
        let hd = p.h * p.d
        XCTAssertEqual(bwd(fused, dq: 5 * n, dk: 5 * n + hd, dv: 5 * n + 2 * hd).0, KL_OK)
        (status, message) = bwd(fused, dq: 5 * n, dk: 5 * n + hd - 1, dv: 5 * n + 2 * hd)
        XCTAssertTrue(status == KL_ERR_INVALID_ARGUMENT && message.contains("dq and dk overlap"), message)
        (status, message) = bwd(nil, dq: 5 * n, dk: 6 * n, dv: 4 * n)
        XCTAssertTrue(status == KL_ERR_INVALID_ARGUMENT && message.contains("dv overlaps the input dout"), message)
        var params = kl_attn_params(batch: 1, heads: 1, q_len: 1, kv_len: 1, head_dim: 4, causal: 0, scale: 0, alibi_slopes: nil,
                                    windows: nil, tiles: nil, layout: nil, accumulate: 2)
        XCTAssertEqual(kl_attn_check(&params), KL_ERR_INVALID_ARGUMENT)
        XCTAssertTrue(String(cString: kl_last_error()).contains("accumulate"))
    }

    /// Decoding with q in a (B, 1, 3, H, d) projection, o as (B, 1, H, d) and
    /// the cache's rows at a layout's strides: the packed call's bits.
    func testDecodeWithALayoutEqualsThePackedCall() throws {
        let (B, H, d, cap, kvLen) = (2, 3, 8, 50, 37)
        var rng = ReferenceRNG(seed: 11)
        let q = rng.floats(B * H * d), kc = rng.floats(B * H * cap * d), vc = rng.floats(B * H * cap * d)
        for threads in [1, 2] {
            let pool = try ThreadPool(threads: threads)
            func decode(_ layout: kl_attn_layout?, q: [Float], k: [Float], v: [Float], oCount: Int) throws -> [Float] {
                var o = [Float](repeating: 777, count: oCount)
                let lay = layout.map { [$0] } ?? []
                try lay.withUnsafeBufferPointer { la in
                    var p = kl_attn_params(batch: Int32(B), heads: Int32(H), q_len: 1, kv_len: Int32(kvLen), head_dim: Int32(d), causal: 1,
                                           scale: 0, alibi_slopes: nil, windows: nil, tiles: nil,
                                           layout: layout == nil ? nil : la.baseAddress, accumulate: 0)
                    let bytes = kl_attn_decode_workspace_bytes(&p, cap, Int32(threads))
                    let ws = Self.workspace(bytes)
                    defer { ws.deallocate() }
                    try pool.withUnsafePool { h in
                        try Self.call("kl_attn_decode", kl_attn_decode(&p, cap, q, k, v, &o, nil, ws, bytes, h))
                    }
                }
                return o
            }
            let ref = try decode(nil, q: q, k: kc, v: vc, oCount: B * H * d)
            // q inside a (B, 1, 3, H, d) buffer; o (B, 1, H, d) with a gap; caches transposed to (B, cap, H, d).
            var qkv = [Float](repeating: 9, count: B * 3 * H * d)
            for b in 0..<B { for h in 0..<H { for e in 0..<d { qkv[b * 3 * H * d + h * d + e] = q[(b * H + h) * d + e] } } }
            var kt = [Float](repeating: 9, count: kc.count), vt = kt
            for b in 0..<B { for h in 0..<H { for r in 0..<cap { for e in 0..<d {
                kt[((b * cap + r) * H + h) * d + e] = kc[((b * H + h) * cap + r) * d + e]
                vt[((b * cap + r) * H + h) * d + e] = vc[((b * H + h) * cap + r) * d + e]
            } } } }
            var layout = kl_attn_layout()
            layout.q = kl_attn_strides(batch: 3 * H * d, head: d, row: 3 * H * d)
            layout.o = kl_attn_strides(batch: H * d + 2, head: d, row: H * d + 2)
            layout.k = kl_attn_strides(batch: cap * H * d, head: d, row: H * d)
            layout.v = layout.k
            let o = try decode(layout, q: qkv, k: kt, v: vt, oCount: B * (H * d + 2))
            var got = [Float](), untouched = true
            let rowStride = H * d + 2, width = H * d
            for b in 0..<B {
                let start = b * rowStride
                got += o[start..<(start + width)]
                if o[start + width] != 777 || o[start + width + 1] != 777 { untouched = false }
            }
            XCTAssertTrue(got == ref, "decode with a layout differs from the packed call, \(threads) threads")
            XCTAssertTrue(untouched, "decode wrote outside o's view")
        }
    }

    /// The Swift entry points for a fused projection against the (B, H, L, d) ones on permuted tensors.
    func testPackedQKVSwiftAPI() throws {
        let (B, L, H, d) = (2, 19, 3, 8)
        let qkv = try Tensor.random(shape: [B, L, 3, H, d], seed: 5)
        let x = qkv.toArray()
        // Flat indices of (b, l, part, h, e) in qkv and of (b, h, l, e) in a (B, H, L, d) tensor.
        func at5(_ b: Int, _ l: Int, _ part: Int, _ h: Int, _ e: Int) -> Int { (((b * L + l) * 3 + part) * H + h) * d + e }
        func at4(_ b: Int, _ h: Int, _ l: Int, _ e: Int) -> Int { ((b * H + h) * L + l) * d + e }
        func tok(_ b: Int, _ l: Int, _ h: Int, _ e: Int) -> Int { ((b * L + l) * H + h) * d + e }
        let all = (0..<B).flatMap { b in (0..<H).flatMap { h in (0..<L).flatMap { l in (0..<d).map { (b, h, l, $0) } } } }
        func heads(_ part: Int) throws -> Tensor {
            var v = [Float](repeating: 0, count: B * H * L * d)
            for (b, h, l, e) in all { v[at4(b, h, l, e)] = x[at5(b, l, part, h, e)] }
            return try Tensor(shape: [B, H, L, d], values: v)
        }
        let (q, k, v) = (try heads(0), try heads(1), try heads(2))
        let options = AttentionOptions(causal: true)
        let pool = try ThreadPool(threads: 2)
        let (o, lse) = try Attention.forward(q: q, k: k, v: v, options: options, pool: pool)
        let out = try Tensor(shape: [B, L, H, d]), lse2 = try Tensor(shape: [B, H, L])
        try Attention.forward(qkv: qkv, into: out, lse: lse2, options: options, pool: pool)
        let oa = o.toArray(), outa = out.toArray()
        XCTAssertTrue(all.allSatisfy { outa[tok($0.0, $0.2, $0.1, $0.3)] == oa[at4($0.0, $0.1, $0.2, $0.3)] },
                      "out of the fused-projection call differs from the packed call")
        XCTAssertEqual(lse2.toArray(), lse.toArray())
        let gradOut = try Tensor.random(shape: [B, L, H, d], seed: 6)
        let ga = gradOut.toArray()
        var gh = [Float](repeating: 0, count: B * H * L * d)
        for (b, h, l, e) in all { gh[at4(b, h, l, e)] = ga[tok(b, l, h, e)] }
        let gradHeads = try Tensor(shape: [B, H, L, d], values: gh)
        let (dq, dk, dv) = try Attention.backward(q: q, k: k, v: v, out: o, lse: lse, gradOut: gradHeads, options: options, pool: pool)
        let dqkv = try Tensor(shape: [B, L, 3, H, d])
        try Attention.backward(qkv: qkv, out: out, lse: lse2, gradOut: gradOut, into: dqkv, options: options, pool: pool)
        var accumulate = options
        accumulate.accumulate = true
        try Attention.backward(qkv: qkv, out: out, lse: lse2, gradOut: gradOut, into: dqkv, options: accumulate, pool: pool)
        let da = dqkv.toArray()
        var worst: Float = 0
        for (part, g) in [dq.toArray(), dk.toArray(), dv.toArray()].enumerated() {
            for (b, h, l, e) in all { worst = max(worst, abs(da[at5(b, l, part, h, e)] - 2 * g[at4(b, h, l, e)])) }
        }
        XCTAssertLessThan(worst, 1e-5, "one writing and one accumulating call give twice the gradient")
        XCTAssertThrowsError(try Attention.forward(qkv: q, into: out, lse: lse2)) { error in
            XCTAssertTrue("\(error)".contains("qkv"), "\(error)")
        }
        XCTAssertThrowsError(try Attention.backward(qkv: qkv, out: out, lse: lse2, gradOut: gradOut, into: qkv)) { error in
            XCTAssertTrue("\(error)".contains("dqkv"), "\(error)")
        }
    }

    /// kl_rope_strided on the q and k heads of a (B, T, 3, H, d) buffer equals
    /// kl_rope on them permuted, and leaves v alone; the inverse undoes it.
    func testStridedRopeEqualsRopeOnPermutedHeads() throws {
        let (B, T, H, d, rot) = (2, 11, 3, 8, 6)
        var rng = ReferenceRNG(seed: 2)
        let qkv = rng.floats(B * T * 3 * H * d)
        var table = [Float](repeating: 0, count: T * rot)
        XCTAssertEqual(kl_rope_table(Int32(T), Int32(rot), 10000, 0, &table), KL_OK)
        let pool = try ThreadPool(threads: 2)
        var strided = qkv
        pool.withUnsafePool { h in
            XCTAssertEqual(kl_rope_strided(B, Int32(T), Int32(2 * H), T * 3 * H * d, 3 * H * d, d, Int32(d), Int32(rot), table, 0,
                                           &strided, h), KL_OK)
        }
        for part in 0..<3 {
            var heads = [Float](repeating: 0, count: B * H * T * d)
            for b in 0..<B { for h in 0..<H { for t in 0..<T { for e in 0..<d {
                heads[((b * H + h) * T + t) * d + e] = qkv[((b * T + t) * 3 + part) * H * d + h * d + e]
            } } } }
            if part < 2 {
                pool.withUnsafePool { h in XCTAssertEqual(kl_rope(B * H, Int32(T), Int32(d), Int32(rot), table, 0, &heads, h), KL_OK) }
            }
            var same = true
            for b in 0..<B { for h in 0..<H { for t in 0..<T { for e in 0..<d
                where heads[((b * H + h) * T + t) * d + e] != strided[((b * T + t) * 3 + part) * H * d + h * d + e] { same = false } } } }
            XCTAssertTrue(same, "part \(part) of qkv")
        }
        pool.withUnsafePool { h in
            XCTAssertEqual(kl_rope_strided(B, Int32(T), Int32(2 * H), T * 3 * H * d, 3 * H * d, d, Int32(d), Int32(rot), table, 1,
                                           &strided, h), KL_OK)
            XCTAssertEqual(kl_rope_strided(B, Int32(T), 2, T * 3 * H * d, 3 * H * d, 2, Int32(d), Int32(rot), table, 0, &strided, h),
                           KL_ERR_INVALID_ARGUMENT, "vectors 2 floats apart overlap")
        }
        XCTAssertLessThan(zip(strided, qkv).map { abs($0 - $1) }.max()!, 1e-5)
    }
}
