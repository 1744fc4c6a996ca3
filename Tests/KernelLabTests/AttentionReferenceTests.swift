import CKernels
import XCTest

// Checks the C attention kernels (fused and unfused) against the float64
// reference in Reference/AttentionReference.swift, through the C API only, so
// these tests do not depend on the Swift wrapper layer.

// MARK: - Problem description

private enum Impl: CaseIterable, CustomStringConvertible {
    case fused, unfused
    var c: kl_impl { self == .fused ? KL_IMPL_FUSED : KL_IMPL_UNFUSED }
    var description: String { self == .fused ? "fused" : "unfused" }
}

private struct AttnCase: CustomStringConvertible {
    var b = 1, h = 1
    var lq: Int, lk: Int, d: Int
    var causal = false
    var scale: Float = 0
    var alibi: [Float]? = nil
    var windows: [Int32]? = nil
    /// The fused kernel's tiles for this case (nil: the defaults).
    var tiles: kl_attn_tiles? = nil
    /// Multiplies q, to push scores to larger magnitudes.
    var qScale: Float = 1
    /// Key j is multiplied by 1 + keyRamp * j / Lk: a positive ramp moves each
    /// row's max towards later key tiles (so the online softmax must rescale
    /// at every tile), a negative one (> -1) towards the first tile.
    var keyRamp: Float = 0
    var seed: UInt64 = 1

    var description: String {
        var s = "B=\(b) H=\(h) Lq=\(lq) Lk=\(lk) d=\(d)"
        if causal { s += " causal" }
        if scale != 0 { s += " scale=\(scale)" }
        if let alibi { s += " alibi=\(alibi)" }
        if let windows { s += " windows=\(windows)" }
        if qScale != 1 { s += " qScale=\(qScale)" }
        if keyRamp != 0 { s += " keyRamp=\(keyRamp)" }
        return s + " seed=\(seed)"
    }

    var qCount: Int { b * h * lq * d }
    var kvCount: Int { b * h * lk * d }
    var rows: Int { b * h * lq }

    var reference: AttentionReferenceConfig {
        AttentionReferenceConfig(
            batch: b, heads: h, qLen: lq, kvLen: lk, headDim: d, causal: causal,
            scale: Double(scale), alibi: alibi?.map(Double.init), windows: windows?.map(Int.init))
    }
}

private struct AttnInputs {
    var q, k, v, dout: [Float]
}

private func makeInputs(_ c: AttnCase) -> AttnInputs {
    var rng = ReferenceRNG(seed: c.seed)
    let q = rng.floats(c.qCount, scale: c.qScale)
    var k = rng.floats(c.kvCount)
    if c.keyRamp != 0 {
        for idx in k.indices {
            let j = (idx / c.d) % c.lk
            k[idx] *= 1 + c.keyRamp * Float(j) / Float(c.lk)
        }
    }
    let v = rng.floats(c.kvCount)
    let dout = rng.floats(c.qCount)
    return AttnInputs(q: q, k: k, v: v, dout: dout)
}

private func doubles(_ x: [Float]) -> [Double] { x.map(Double.init) }

/// Different per head; geometric like the ALiBi paper's slopes.
private func alibiSlopes(_ heads: Int) -> [Float] {
    (0..<heads).map { Float(pow(2.0, -Double(2 * $0 + 1))) }
}

// MARK: - Calling the C API

private struct KernelCallError: Error, CustomStringConvertible {
    let description: String
}

private func lastError() -> String { String(cString: kl_last_error()) }

private func check(_ status: kl_status, _ what: String) throws {
    guard status == KL_OK else {
        throw KernelCallError(description:
            "\(what) returned \(String(cString: kl_status_name(status))): \(lastError())")
    }
}

private func optionalPointer<T, R>(_ a: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    guard let a else { return try body(nil) }
    return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
}

/// The params point into c.alibi / c.windows only for the duration of `body`.
private func withParams<R>(_ c: AttnCase, _ body: (UnsafePointer<kl_attn_params>) throws -> R) rethrows -> R {
    try optionalPointer(c.alibi) { slopes in
        try optionalPointer(c.windows) { windows in
            try optionalPointer(c.tiles.map { [$0] }) { tiles in
                var p = kl_attn_params(
                    batch: Int32(c.b), heads: Int32(c.h), q_len: Int32(c.lq), kv_len: Int32(c.lk),
                    head_dim: Int32(c.d), causal: c.causal ? 1 : 0, scale: c.scale,
                    alibi_slopes: slopes, windows: windows, tiles: tiles, layout: nil, accumulate: 0)
                return try withUnsafePointer(to: &p) { try body($0) }
            }
        }
    }
}

private func withPool<R>(threads: Int, _ body: (OpaquePointer) throws -> R) throws -> R {
    var pool: OpaquePointer?
    try check(kl_pool_create(Int32(threads), &pool), "kl_pool_create(\(threads))")
    guard let pool else { throw KernelCallError(description: "kl_pool_create returned a null pool") }
    defer { kl_pool_destroy(pool) }
    return try body(pool)
}

private func withWorkspace<R>(_ bytes: Int, _ body: (UnsafeMutableRawPointer, Int) throws -> R) throws -> R {
    let n = max(bytes, 64)
    guard let ws = kl_alloc(n) else { throw KernelCallError(description: "kl_alloc(\(n)) failed") }
    defer { kl_free(ws, n) }
    return try body(ws, n)
}

private struct KernelForward {
    var o, lse: [Float]
}

private struct KernelGradients {
    var dq, dk, dv: [Float]
}

/// Outputs start as NaN so that an element the kernel fails to write shows up.
private func kernelForward(_ c: AttnCase, _ x: AttnInputs, _ impl: Impl, pool: OpaquePointer,
                           threads: Int) throws -> KernelForward {
    var o = [Float](repeating: .nan, count: c.qCount)
    var lse = [Float](repeating: .nan, count: c.rows)
    try withParams(c) { p in
        try withWorkspace(kl_attn_fwd_workspace_bytes(p, impl.c, Int32(threads))) { ws, wsBytes in
            try x.q.withUnsafeBufferPointer { q in
                try x.k.withUnsafeBufferPointer { k in
                    try x.v.withUnsafeBufferPointer { v in
                        try o.withUnsafeMutableBufferPointer { o in
                            try lse.withUnsafeMutableBufferPointer { lse in
                                try check(kl_attn_fwd(p, impl.c, q.baseAddress, k.baseAddress, v.baseAddress,
                                                      o.baseAddress, lse.baseAddress, ws, wsBytes, pool),
                                          "kl_attn_fwd(\(impl))")
                            }
                        }
                    }
                }
            }
        }
    }
    return KernelForward(o: o, lse: lse)
}

private func kernelBackward(_ c: AttnCase, _ x: AttnInputs, _ f: KernelForward, _ impl: Impl,
                            pool: OpaquePointer, threads: Int) throws -> KernelGradients {
    var dq = [Float](repeating: .nan, count: c.qCount)
    var dk = [Float](repeating: .nan, count: c.kvCount)
    var dv = [Float](repeating: .nan, count: c.kvCount)
    try withParams(c) { p in
        try withWorkspace(kl_attn_bwd_workspace_bytes(p, impl.c, Int32(threads))) { ws, wsBytes in
            try x.q.withUnsafeBufferPointer { q in
                try x.k.withUnsafeBufferPointer { k in
                    try x.v.withUnsafeBufferPointer { v in
                        try f.o.withUnsafeBufferPointer { o in
                            try f.lse.withUnsafeBufferPointer { lse in
                                try x.dout.withUnsafeBufferPointer { dout in
                                    try dq.withUnsafeMutableBufferPointer { dq in
                                        try dk.withUnsafeMutableBufferPointer { dk in
                                            try dv.withUnsafeMutableBufferPointer { dv in
                                                try check(kl_attn_bwd(
                                                    p, impl.c, q.baseAddress, k.baseAddress, v.baseAddress,
                                                    o.baseAddress, lse.baseAddress, dout.baseAddress,
                                                    dq.baseAddress, dk.baseAddress, dv.baseAddress,
                                                    ws, wsBytes, pool), "kl_attn_bwd(\(impl))")
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return KernelGradients(dq: dq, dk: dk, dv: dv)
}

private struct KernelRun {
    var fwd: KernelForward
    var grads: KernelGradients
}

private func runKernel(_ c: AttnCase, _ x: AttnInputs, _ impl: Impl, threads: Int) throws -> KernelRun {
    try withPool(threads: threads) { pool in
        let f = try kernelForward(c, x, impl, pool: pool, threads: threads)
        let g = try kernelBackward(c, x, f, impl, pool: pool, threads: threads)
        return KernelRun(fwd: f, grads: g)
    }
}

// MARK: - Comparisons

/// Max abs error over max |ref| (at least `floor`). A -inf in ref must be
/// matched exactly; a NaN or any other mismatch of non-finite values is an
/// infinite error.
private struct ErrorReport: CustomStringConvertible {
    var relative = 0.0
    var absolute = 0.0
    var index = -1
    var got = 0.0
    var expected = 0.0
    var refMax = 0.0

    var description: String {
        String(format: "rel err %.3e (abs %.3e at flat index %d: got %.8g, expected %.8g; max|ref| %.4g)",
               relative, absolute, index, got, expected, refMax)
    }
}

private func compare(_ got: [Float], _ ref: [Double], floor: Double) -> ErrorReport {
    precondition(got.count == ref.count)
    var r = ErrorReport()
    for x in ref where x.isFinite { r.refMax = max(r.refMax, abs(x)) }
    let denom = max(r.refMax, floor)
    for i in got.indices {
        let g = Double(got[i]), e = ref[i]
        var err: Double
        if e.isFinite && g.isFinite {
            err = abs(g - e)
        } else {
            err = (g == e) ? 0 : .infinity
        }
        if err > r.absolute || (r.index < 0 && err > 0) {
            r.absolute = err
            r.index = i
            r.got = g
            r.expected = e
        }
    }
    r.relative = r.absolute / denom
    return r
}

/// The default floor keeps an all-zero reference tensor (e.g. dq and dk when
/// every query sees exactly one key, so dS = 0) from turning fp32 rounding
/// noise into an infinite relative error; inputs are O(1), so real gradients
/// and outputs are O(0.1..1) and this floor does not hide real errors.
private func assertClose(_ got: [Float], _ ref: [Double], tol: Double, floor: Double = 1e-2,
                         _ what: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) {
    let r = compare(got, ref, floor: floor)
    XCTAssert(r.relative <= tol, "\(what()): \(r) > tol \(tol)", file: file, line: line)
}

private struct Tolerances {
    var o = 1e-4
    var lse = 1e-4   // abs error over max(1, max|lse|)
    var grad = 5e-4
}

private func assertMatches(_ run: KernelRun, fwd: AttentionReferenceForward, grads: AttentionReferenceGradients,
                           tol: Tolerances, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    assertClose(run.fwd.o, fwd.o, tol: tol.o, "\(what) o", file: file, line: line)
    assertClose(run.fwd.lse, fwd.lse, tol: tol.lse, floor: 1, "\(what) lse", file: file, line: line)
    assertClose(run.grads.dq, grads.dq, tol: tol.grad, "\(what) dq", file: file, line: line)
    assertClose(run.grads.dk, grads.dk, tol: tol.grad, "\(what) dk", file: file, line: line)
    assertClose(run.grads.dv, grads.dv, tol: tol.grad, "\(what) dv", file: file, line: line)
}

/// Rows that see no key must give exactly o = 0, lse = -inf and dq = 0.
private func assertMaskedRows(_ c: AttnCase, _ run: KernelRun, refLse: [Double], _ what: String,
                              file: StaticString = #filePath, line: UInt = #line) {
    var bad: [String] = []
    for row in 0..<c.rows where refLse[row] == -.infinity {
        let oRow = run.fwd.o[row * c.d ..< (row + 1) * c.d]
        let dqRow = run.grads.dq[row * c.d ..< (row + 1) * c.d]
        if !oRow.allSatisfy({ $0 == 0 }) { bad.append("row \(row): o != 0 (\(oRow.prefix(3))...)") }
        if run.fwd.lse[row] != -.infinity { bad.append("row \(row): lse = \(run.fwd.lse[row]) != -inf") }
        if !dqRow.allSatisfy({ $0 == 0 }) { bad.append("row \(row): dq != 0 (\(dqRow.prefix(3))...)") }
    }
    XCTAssert(bad.isEmpty, "\(what) fully masked rows: \(bad.prefix(6).joined(separator: "; "))",
              file: file, line: line)
}

private func asDouble(_ r: KernelRun) -> (fwd: AttentionReferenceForward, grads: AttentionReferenceGradients) {
    (AttentionReferenceForward(o: doubles(r.fwd.o), lse: doubles(r.fwd.lse)),
     AttentionReferenceGradients(dq: doubles(r.grads.dq), dk: doubles(r.grads.dk), dv: doubles(r.grads.dv)))
}

/// Runs both impls on each case and checks them against the float64 reference,
/// against each other, and the fully masked rows.
private func verifyCases(_ cases: [AttnCase], threads: Int = 1, tol: Tolerances = Tolerances(),
                         label: String = "", file: StaticString = #filePath, line: UInt = #line) {
    for c in cases {
        let x = makeInputs(c)
        let (q, k, v, dout) = (doubles(x.q), doubles(x.k), doubles(x.v), doubles(x.dout))
        let refFwd = attentionReferenceForward(c.reference, q: q, k: k, v: v)
        let refGrads = attentionReferenceBackward(c.reference, q: q, k: k, v: v, dout: dout)
        var runs: [Impl: KernelRun] = [:]
        for impl in Impl.allCases {
            let what = "[\(c)] \(impl) T=\(threads)\(label.isEmpty ? "" : " " + label)"
            do {
                let run = try runKernel(c, x, impl, threads: threads)
                assertMatches(run, fwd: refFwd, grads: refGrads, tol: tol, what, file: file, line: line)
                assertMaskedRows(c, run, refLse: refFwd.lse, what, file: file, line: line)
                runs[impl] = run
            } catch {
                XCTFail("\(what): \(error)", file: file, line: line)
            }
        }
        if let f = runs[.fused], let u = runs[.unfused] {
            let ud = asDouble(u)
            assertMatches(f, fwd: ud.fwd, grads: ud.grads, tol: tol, "[\(c)] fused vs unfused T=\(threads) \(label)",
                          file: file, line: line)
        }
    }
}

// MARK: - Tests

final class AttentionReferenceTests: XCTestCase {

    override func setUp() {
        super.setUp()
        continueAfterFailure = true
    }

    func testRaggedLengths() {
        // Lengths that are not multiples of any tile size, Lq < Lk and Lq > Lk.
        verifyCases([
            AttnCase(lq: 1, lk: 1, d: 16, seed: 1),
            AttnCase(lq: 1, lk: 1, d: 16, causal: true, seed: 2),
            AttnCase(h: 2, lq: 1, lk: 77, d: 64, seed: 3),
            AttnCase(h: 2, lq: 1, lk: 77, d: 64, causal: true, seed: 4),
            AttnCase(lq: 7, lk: 33, d: 32, causal: true, seed: 5),
            AttnCase(lq: 33, lk: 7, d: 32, seed: 6),
            AttnCase(lq: 33, lk: 7, d: 32, causal: true, seed: 7),     // 26 queries see no key
            AttnCase(lq: 77, lk: 130, d: 64, causal: true, seed: 8),
            AttnCase(lq: 130, lk: 77, d: 64, causal: true, seed: 9),   // 53 fully masked rows
            AttnCase(lq: 130, lk: 77, d: 64, seed: 10),
            AttnCase(lq: 65, lk: 129, d: 16, seed: 11),
            AttnCase(lq: 257, lk: 257, d: 32, causal: true, seed: 12),
            AttnCase(lq: 257, lk: 130, d: 32, seed: 13),
            AttnCase(lq: 33, lk: 257, d: 64, seed: 14),
            AttnCase(lq: 100, lk: 257, d: 128, causal: true, alibi: [0.0625], windows: [150], seed: 15),
            AttnCase(b: 2, h: 1, lq: 257, lk: 33, d: 80, seed: 16),
        ])
    }

    func testHeadDims() {
        var cases: [AttnCase] = []
        for (n, d) in [16, 24, 32, 40, 64, 80, 128].enumerated() {
            let s = UInt64(100 + 2 * n)
            cases.append(AttnCase(h: 2, lq: 37, lk: 37, d: d, causal: true, seed: s))
            cases.append(AttnCase(h: 2, lq: 19, lk: 45, d: d, alibi: alibiSlopes(2), windows: [0, 9], seed: s + 1))
        }
        verifyCases(cases)
    }

    func testMasksAndBiasMultiHead() {
        // B = 2, H = 3; per-head slopes and windows, including unlimited (0,
        // negative) and window 1 (each query sees only its own position).
        let slopes = alibiSlopes(3)
        func cs(_ lq: Int, _ lk: Int, causal: Bool = false, alibi: [Float]? = nil, windows: [Int32]? = nil,
                scale: Float = 0, seed: UInt64) -> AttnCase {
            AttnCase(b: 2, h: 3, lq: lq, lk: lk, d: 32, causal: causal, scale: scale, alibi: alibi,
                     windows: windows, seed: seed)
        }
        let cases = [
            cs(45, 70, causal: true, seed: 200),
            cs(45, 70, alibi: slopes, seed: 201),
            cs(45, 70, windows: [0, 1, 16], seed: 202),
            cs(45, 70, windows: [-3, 5, 100], seed: 203),
            cs(45, 70, causal: true, alibi: slopes, seed: 204),
            cs(45, 70, causal: true, windows: [1, 0, 23], seed: 205),
            cs(45, 70, causal: true, alibi: slopes, windows: [7, -1, 1], seed: 206),
            cs(70, 45, alibi: slopes, windows: [0, 1, 16], seed: 207),        // early queries before key 0
            cs(70, 45, causal: true, alibi: slopes, windows: [33, 0, 2], seed: 208),
            cs(51, 51, causal: true, alibi: [0.7, 0, 0.05], windows: [1, 1, 1], seed: 209),
            cs(40, 60, alibi: slopes, scale: 0.3, seed: 210),
        ]
        verifyCases(cases, threads: 1)
        verifyCases(cases, threads: 2)
    }

    func testLargeScoresOnlineSoftmax() {
        // Scores spanning tens of units: the running max changes across key
        // tiles and exp(m_old - m_new) rescaling must be exact enough.
        let tol = Tolerances(o: 1e-4, lse: 1e-4, grad: 1e-3)
        verifyCases([
            AttnCase(lq: 40, lk: 260, d: 64, qScale: 8, seed: 300),
            AttnCase(lq: 40, lk: 260, d: 64, causal: true, qScale: 8, seed: 301),
            AttnCase(lq: 40, lk: 260, d: 64, qScale: 8, keyRamp: 4, seed: 302),
            AttnCase(lq: 40, lk: 260, d: 64, qScale: 8, keyRamp: -0.9, seed: 303),
            AttnCase(h: 2, lq: 77, lk: 200, d: 32, causal: true, alibi: [0.25, 0.01], windows: [0, 150],
                     qScale: 8, keyRamp: 3, seed: 304),
        ], tol: tol)
    }

    func testEveryISAMatchesReference() throws {
        // The other tests run on the default (best) ISA; check each supported
        // path too, then restore the one that was active.
        try check(kl_init(), "kl_init")
        let original = kl_isa_active()
        defer { XCTAssertEqual(kl_isa_set(original), KL_OK) }
        let slopes = alibiSlopes(3)
        let cases = [
            AttnCase(lq: 77, lk: 130, d: 64, causal: true, seed: 800),
            AttnCase(lq: 130, lk: 33, d: 40, causal: true, seed: 801),
            AttnCase(b: 2, h: 3, lq: 45, lk: 70, d: 32, causal: true, alibi: slopes, windows: [7, -1, 1], seed: 802),
            AttnCase(h: 3, lq: 70, lk: 45, d: 80, alibi: slopes, windows: [0, 1, 16], seed: 803),
        ]
        let large = [AttnCase(lq: 40, lk: 260, d: 128, qScale: 8, keyRamp: 4, seed: 804)]
        for isa in [KL_ISA_SCALAR, KL_ISA_AVX2, KL_ISA_AVX512] where kl_isa_supported(isa) != 0 {
            try check(kl_isa_set(isa), "kl_isa_set(\(String(cString: kl_isa_name(isa))))")
            let label = "isa=\(String(cString: kl_isa_name(isa)))"
            verifyCases(cases, label: label)
            verifyCases(large, tol: Tolerances(o: 1e-4, lse: 1e-4, grad: 1e-3), label: label)
        }
    }

    func testSmallTilesMatchReference() {
        // Default tiles cover these lengths in one or two tiles; small and odd
        // tiles exercise many KV tiles per row (rescaling at every tile), partial
        // tiles at both ends of a causal/window band, and many query blocks.
        let slopes = alibiSlopes(3)
        let cases = [
            AttnCase(lq: 77, lk: 130, d: 64, causal: true, seed: 900),
            AttnCase(lq: 130, lk: 77, d: 32, causal: true, seed: 901),
            AttnCase(lq: 33, lk: 200, d: 40, seed: 902),
            AttnCase(b: 2, h: 3, lq: 45, lk: 70, d: 32, causal: true, alibi: slopes, windows: [7, -1, 1], seed: 903),
            AttnCase(h: 3, lq: 70, lk: 45, d: 16, alibi: slopes, windows: [0, 1, 16], seed: 904),
        ]
        let large = [AttnCase(lq: 40, lk: 260, d: 64, qScale: 8, keyRamp: 4, seed: 905)]
        for (qb, kb) in [(16, 16), (7, 20), (1, 16), (64, 48)] {
            let tiles = kl_attn_tiles(q_block: Int32(qb), kv_block: Int32(kb))
            let tiled = { (cases: [AttnCase]) in cases.map { c -> AttnCase in var c = c; c.tiles = tiles; return c } }
            let label = "tiles q=\(qb) kv=\(kb)"
            verifyCases(tiled(cases), threads: 1, label: label)
            verifyCases(tiled(cases), threads: 2, label: label)
            verifyCases(tiled(large), tol: Tolerances(o: 1e-4, lse: 1e-4, grad: 1e-3), label: label)
        }
    }

    func testRandomizedConfigurations() {
        // A seeded sweep over shapes and options, each checked against the
        // reference with both impls and a random thread count.
        var rng = ReferenceRNG(seed: 0xA77E)
        let dims = [16, 24, 32, 40, 64, 80, 96, 128]
        for n in 0..<40 {
            var c = AttnCase(lq: 1, lk: 1, d: 16, seed: 1000 + UInt64(n))
            c.b = 1 + rng.index(below: 2)
            c.h = 1 + rng.index(below: 3)
            c.d = dims[rng.index(below: dims.count)]
            let maxLen = c.d >= 80 ? 90 : 180
            c.lq = 1 + rng.index(below: maxLen)
            c.lk = 1 + rng.index(below: maxLen)
            c.causal = rng.index(below: 2) == 0
            if rng.index(below: 2) == 0 {
                c.alibi = (0..<c.h).map { _ in Float(abs(rng.uniform())) }
            }
            if rng.index(below: 2) == 0 {
                // Mix of unlimited (<= 0), 1, short and longer-than-Lk windows.
                c.windows = (0..<c.h).map { _ in
                    [Int32(0), -1, 1, 2, Int32(1 + rng.index(below: 40)), Int32(c.lk + 5)][rng.index(below: 6)]
                }
            }
            if rng.index(below: 4) == 0 { c.scale = Float(0.05 + 0.5 * abs(rng.uniform())) }
            verifyCases([c], threads: 1 + rng.index(below: 2))
        }
    }

    func testThreadCountsAgree() {
        // Includes B = H = 1 so that two threads must split inside one head.
        let cases = [
            AttnCase(lq: 257, lk: 257, d: 64, causal: true, seed: 400),
            AttnCase(lq: 130, lk: 300, d: 32, alibi: [0.125], windows: [100], seed: 401),
            AttnCase(b: 2, h: 3, lq: 97, lk: 130, d: 64, causal: true, alibi: alibiSlopes(3), seed: 402),
            AttnCase(b: 1, h: 3, lq: 150, lk: 61, d: 80, causal: true, seed: 403),
        ]
        let tol = Tolerances(o: 1e-6, lse: 1e-6, grad: 1e-6)
        for c in cases {
            let x = makeInputs(c)
            for impl in Impl.allCases {
                do {
                    let one = try runKernel(c, x, impl, threads: 1)
                    let two = try runKernel(c, x, impl, threads: 2)
                    let ref = asDouble(one)
                    assertMatches(two, fwd: ref.fwd, grads: ref.grads, tol: tol, "[\(c)] \(impl) T=2 vs T=1")
                } catch {
                    XCTFail("[\(c)] \(impl): \(error)")
                }
            }
        }
    }

    func testBackwardSplitsHeadsWhenThreadsOutnumberThem() throws {
        // B H < T: the fused backward splits a head's key tiles over the
        // threads (strided, so causal splits balance) and sums dQ partials.
        let cases = [
            AttnCase(lq: 200, lk: 300, d: 32, causal: true, seed: 410),                 // 3 tiles, 3 splits
            AttnCase(b: 1, h: 2, lq: 90, lk: 390, d: 16, windows: [50, 0], seed: 411),  // 4 tiles, 3 splits per head
            AttnCase(b: 2, h: 2, lq: 70, lk: 260, d: 32, causal: true, alibi: [0.2, 0.05], seed: 414),  // 4 heads: 3 splits
            AttnCase(lq: 33, lk: 129, d: 80, alibi: [0.3], seed: 412),                   // 2 tiles: 2 splits
            AttnCase(lq: 64, lk: 100, d: 64, causal: true, seed: 413),                   // 1 tile: no split
        ]
        verifyCases(cases, threads: 3)
        // The partials are the only workspace beyond the tiles: (S - 1) B H Lq d floats.
        var p = kl_attn_params()
        p.batch = 1; p.heads = 1; p.q_len = 200; p.kv_len = 300; p.head_dim = 32
        let one = kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 1)
        let three = kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 3)
        XCTAssertEqual(three, 3 * one + 2 * 200 * 32 * 4)
        p.heads = 3  // heads divide the threads: no partials
        XCTAssertEqual(kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 3), 3 * kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 1))
        p.heads = 4  // 4 heads on 3 threads: 3 splits each, 12 items
        XCTAssertEqual(kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 3),
                       3 * kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 1) + 2 * 4 * 200 * 32 * 4)
        p.heads = 12  // many heads: no partials
        XCTAssertEqual(kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 3), 3 * kl_attn_bwd_workspace_bytes(&p, KL_IMPL_FUSED, 1))
    }

    func testFusedMatchesUnfusedLargerShapes() {
        // Shapes too big for the debug-built float64 reference: impls agree.
        let cases = [
            AttnCase(b: 2, h: 4, lq: 300, lk: 513, d: 64, causal: true, alibi: alibiSlopes(4),
                     windows: [0, 64, 1, 200], seed: 500),
            AttnCase(b: 1, h: 2, lq: 511, lk: 511, d: 128, causal: true, seed: 501),
            AttnCase(b: 3, h: 1, lq: 600, lk: 250, d: 40, causal: true, seed: 502),
        ]
        for c in cases {
            let x = makeInputs(c)
            do {
                let f = try runKernel(c, x, .fused, threads: 2)
                let u = try runKernel(c, x, .unfused, threads: 2)
                let ud = asDouble(u)
                assertMatches(f, fwd: ud.fwd, grads: ud.grads, tol: Tolerances(), "[\(c)] fused vs unfused")
                assertMaskedRows(c, f, refLse: ud.fwd.lse, "[\(c)] fused")
            } catch {
                XCTFail("[\(c)]: \(error)")
            }
        }
    }

    // MARK: Finite differences

    private static let fdCases = [
        AttnCase(h: 2, lq: 5, lk: 7, d: 16, alibi: [0.5, 0.125], windows: [3, 0], seed: 600),
        AttnCase(h: 2, lq: 5, lk: 7, d: 16, causal: true, alibi: [0.5, 0.125], windows: [0, 4], seed: 601),
        // Lq > Lk and causal: queries 0 and 1 see no key.
        AttnCase(h: 2, lq: 7, lk: 5, d: 16, causal: true, alibi: [0.25, 0.75], windows: [2, 0], seed: 602),
    ]

    /// Validates the float64 reference backward against central differences of
    /// the reference forward, on every coordinate of q, k and v.
    func testReferenceBackwardMatchesFiniteDifferences() {
        for c in Self.fdCases {
            let x = makeInputs(c)
            let rc = c.reference
            var inputs = [doubles(x.q), doubles(x.k), doubles(x.v)]
            let g = doubles(x.dout)
            let grads = attentionReferenceBackward(rc, q: inputs[0], k: inputs[1], v: inputs[2], dout: g)
            func loss(_ t: [[Double]]) -> Double {
                let o = attentionReferenceForward(rc, q: t[0], k: t[1], v: t[2]).o
                return zip(o, g).reduce(0) { $0 + $1.0 * $1.1 }
            }
            let eps = 1e-6
            for (t, name, analytic) in [(0, "dq", grads.dq), (1, "dk", grads.dk), (2, "dv", grads.dv)] {
                let scale = analytic.reduce(0) { max($0, abs($1)) }
                XCTAssertGreaterThan(scale, 1e-3, "[\(c)] reference \(name) is trivially zero")
                var worst = (err: 0.0, index: -1, fd: 0.0)
                for i in inputs[t].indices {
                    let x0 = inputs[t][i]
                    inputs[t][i] = x0 + eps
                    let lp = loss(inputs)
                    inputs[t][i] = x0 - eps
                    let lm = loss(inputs)
                    inputs[t][i] = x0
                    let fd = (lp - lm) / (2 * eps)
                    let err = abs(fd - analytic[i])
                    if err > worst.err { worst = (err, i, fd) }
                }
                XCTAssertLessThanOrEqual(worst.err, 1e-6 * max(1, scale),
                    "[\(c)] reference \(name) vs finite differences: abs err \(worst.err) at \(worst.index) " +
                    "(fd \(worst.fd), analytic \(worst.index >= 0 ? analytic[worst.index] : 0))")
            }
        }
    }

    /// Checks the C backward of each impl against central differences of the
    /// same impl's fp32 forward (loss accumulated in Double), on sampled
    /// coordinates of q, k and v.
    func testKernelBackwardMatchesFiniteDifferences() {
        // fp32 forward noise over 2*eps plus O(eps^2) truncation measured at
        // < 1e-4 of max|grad|; 2e-3 leaves a wide margin yet catches a
        // gradient that is off by a few percent.
        let eps = 1e-2
        let tol = 2e-3
        for c in Self.fdCases {
            let x = makeInputs(c)
            let g = doubles(x.dout)
            let refGrads = attentionReferenceBackward(c.reference, q: doubles(x.q), k: doubles(x.k),
                                                      v: doubles(x.v), dout: g)
            for impl in Impl.allCases {
                let what = "[\(c)] \(impl)"
                do {
                    try withPool(threads: 1) { pool in
                        let f = try kernelForward(c, x, impl, pool: pool, threads: 1)
                        let grads = try kernelBackward(c, x, f, impl, pool: pool, threads: 1)
                        func loss(_ y: AttnInputs) throws -> Double {
                            let o = try kernelForward(c, y, impl, pool: pool, threads: 1).o
                            return zip(o, g).reduce(0) { $0 + Double($1.0) * $1.1 }
                        }
                        var rng = ReferenceRNG(seed: c.seed ^ 0xFD)
                        let tensors: [(String, WritableKeyPath<AttnInputs, [Float]>, [Float], [Double])] = [
                            ("dq", \.q, grads.dq, refGrads.dq),
                            ("dk", \.k, grads.dk, refGrads.dk),
                            ("dv", \.v, grads.dv, refGrads.dv),
                        ]
                        for (name, path, analytic, reference) in tensors {
                            let refMax = reference.reduce(0) { max($0, abs($1)) }
                            let count = x[keyPath: path].count
                            // Index 0 is in a fully masked row for the Lq > Lk causal case.
                            let coords = [0, count - 1] + (0..<12).map { _ in rng.index(below: count) }
                            for i in coords {
                                var y = x
                                let x0 = Double(x[keyPath: path][i])
                                y[keyPath: path][i] = Float(x0 + eps)
                                let hi = Double(y[keyPath: path][i])
                                let lp = try loss(y)
                                y[keyPath: path][i] = Float(x0 - eps)
                                let lo = Double(y[keyPath: path][i])
                                let lm = try loss(y)
                                let fd = (lp - lm) / (hi - lo)
                                let err = abs(fd - Double(analytic[i]))
                                XCTAssert(err <= tol * refMax + 1e-5,
                                    "\(what) \(name)[\(i)]: analytic \(analytic[i]) vs finite difference \(fd) " +
                                    "(abs err \(err), max|\(name)| \(refMax), tol \(tol))")
                            }
                        }
                    }
                } catch {
                    XCTFail("\(what): \(error)")
                }
            }
        }
    }

    // MARK: Errors

    func testInvalidArguments() throws {
        let good = AttnCase(lq: 8, lk: 8, d: 16, causal: true, seed: 700)

        func expectFailure(_ status: kl_status, _ expected: kl_status?, _ what: String,
                           line: UInt = #line) {
            XCTAssertNotEqual(status, KL_OK, "\(what) should fail", line: line)
            if let expected {
                XCTAssertEqual(status, expected,
                    "\(what): \(String(cString: kl_status_name(status))), expected " +
                    String(cString: kl_status_name(expected)), line: line)
            }
            if status != KL_OK {
                XCTAssertFalse(lastError().isEmpty, "\(what): kl_last_error() is empty", line: line)
            }
        }

        // Parameter validation.
        XCTAssertEqual(withParams(good) { kl_attn_check($0) }, KL_OK, lastError())
        expectFailure(kl_attn_check(nil), KL_ERR_INVALID_ARGUMENT, "kl_attn_check(NULL)")
        var bad: [(String, AttnCase)] = []
        for (name, edit) in [
            ("d=0", { (c: inout AttnCase) in c.d = 0 }),
            ("d=-16", { $0.d = -16 }),
            ("B=0", { $0.b = 0 }),
            ("B=-1", { $0.b = -1 }),
            ("H=0", { $0.h = 0 }),
            ("Lq=-3", { $0.lq = -3 }),
            ("Lk=-1", { $0.lk = -1 }),
            ("Lq=0", { $0.lq = 0 }),
            ("Lk=0", { $0.lk = 0 }),
        ] as [(String, (inout AttnCase) -> Void)] {
            var c = good
            edit(&c)
            bad.append((name, c))
        }
        for (name, c) in bad {
            expectFailure(withParams(c) { kl_attn_check($0) }, KL_ERR_INVALID_ARGUMENT, "kl_attn_check(\(name))")
        }
        let causal2 = withParams(good) { p -> kl_status in
            var q = p.pointee
            q.causal = 2
            return kl_attn_check(&q)
        }
        expectFailure(causal2, KL_ERR_INVALID_ARGUMENT, "kl_attn_check(causal=2)")

        // Calls with real buffers, sized for the good case.
        let x = makeInputs(good)
        var o = [Float](repeating: 0, count: good.qCount)
        var lse = [Float](repeating: 0, count: good.rows)
        var dq = [Float](repeating: 0, count: good.qCount)
        var dk = [Float](repeating: 0, count: good.kvCount)
        var dv = [Float](repeating: 0, count: good.kvCount)

        try withPool(threads: 1) { pool in
            for impl in Impl.allCases {
                let fwdNeed = withParams(good) { kl_attn_fwd_workspace_bytes($0, impl.c, 1) }
                let bwdNeed = withParams(good) { kl_attn_bwd_workspace_bytes($0, impl.c, 1) }
                let bytes = max(fwdNeed, bwdNeed) + 256
                try withWorkspace(bytes) { ws, wsBytes in
                    typealias P = UnsafePointer<Float>?
                    typealias M = UnsafeMutablePointer<Float>?
                    x.q.withUnsafeBufferPointer { qb in
                    x.k.withUnsafeBufferPointer { kb in
                    x.v.withUnsafeBufferPointer { vb in
                    x.dout.withUnsafeBufferPointer { gb in
                    o.withUnsafeMutableBufferPointer { ob in
                    lse.withUnsafeMutableBufferPointer { lb in
                    dq.withUnsafeMutableBufferPointer { dqb in
                    dk.withUnsafeMutableBufferPointer { dkb in
                    dv.withUnsafeMutableBufferPointer { dvb in
                        let (q, k, v, g) = (qb.baseAddress, kb.baseAddress, vb.baseAddress, gb.baseAddress)
                        let (o, l) = (ob.baseAddress, lb.baseAddress)
                        let (dq, dk, dv) = (dqb.baseAddress, dkb.baseAddress, dvb.baseAddress)
                        func fwd(_ c: AttnCase, _ q: P, _ k: P, _ v: P, _ o: M, _ l: M,
                                 ws: UnsafeMutableRawPointer? = ws, bytes: Int = wsBytes,
                                 impl: kl_impl = impl.c) -> kl_status {
                            withParams(c) { kl_attn_fwd($0, impl, q, k, v, o, l, ws, bytes, pool) }
                        }
                        func bwd(_ c: AttnCase, _ q: P, _ k: P, _ v: P, _ o: P, _ l: P, _ g: P,
                                 _ dq: M, _ dk: M, _ dv: M,
                                 ws: UnsafeMutableRawPointer? = ws, bytes: Int = wsBytes) -> kl_status {
                            withParams(c) { kl_attn_bwd($0, impl.c, q, k, v, o, l, g, dq, dk, dv, ws, bytes, pool) }
                        }
                        let (co, cl) = (UnsafePointer(o), UnsafePointer(l))
                        XCTAssertEqual(fwd(good, q, k, v, o, l), KL_OK, "\(impl) good forward: \(lastError())")
                        XCTAssertEqual(bwd(good, q, k, v, co, cl, g, dq, dk, dv), KL_OK,
                                       "\(impl) good backward: \(lastError())")

                        expectFailure(kl_attn_fwd(nil, impl.c, q, k, v, o, l, ws, wsBytes, pool),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) fwd params=NULL")
                        expectFailure(kl_attn_bwd(nil, impl.c, q, k, v, co, cl, g, dq, dk, dv, ws, wsBytes, pool),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) bwd params=NULL")
                        for (name, c) in bad {
                            expectFailure(fwd(c, q, k, v, o, l), KL_ERR_INVALID_ARGUMENT, "\(impl) fwd \(name)")
                        }
                        expectFailure(fwd(good, nil, k, v, o, l), KL_ERR_INVALID_ARGUMENT, "\(impl) fwd q=NULL")
                        expectFailure(fwd(good, q, nil, v, o, l), KL_ERR_INVALID_ARGUMENT, "\(impl) fwd k=NULL")
                        expectFailure(fwd(good, q, k, nil, o, l), KL_ERR_INVALID_ARGUMENT, "\(impl) fwd v=NULL")
                        expectFailure(fwd(good, q, k, v, nil, l), KL_ERR_INVALID_ARGUMENT, "\(impl) fwd o=NULL")
                        expectFailure(fwd(good, q, k, v, o, nil), KL_ERR_INVALID_ARGUMENT, "\(impl) fwd lse=NULL")
                        expectFailure(fwd(good, q, k, v, o, l, impl: kl_impl(rawValue: 7)),
                                      KL_ERR_INVALID_ARGUMENT, "fwd impl=7")
                        if fwdNeed > 0 {
                            expectFailure(fwd(good, q, k, v, o, l, bytes: fwdNeed - 1),
                                          KL_ERR_WORKSPACE, "\(impl) fwd workspace \(fwdNeed - 1) < \(fwdNeed)")
                            expectFailure(fwd(good, q, k, v, o, l, ws: nil, bytes: fwdNeed),
                                          KL_ERR_WORKSPACE, "\(impl) fwd workspace=NULL")
                            expectFailure(fwd(good, q, k, v, o, l, ws: ws + 4, bytes: wsBytes - 4),
                                          KL_ERR_WORKSPACE, "\(impl) fwd misaligned workspace")
                        }

                        for (name, c) in bad {
                            expectFailure(bwd(c, q, k, v, co, cl, g, dq, dk, dv),
                                          KL_ERR_INVALID_ARGUMENT, "\(impl) bwd \(name)")
                        }
                        expectFailure(bwd(good, q, k, v, co, cl, nil, dq, dk, dv),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) bwd dout=NULL")
                        expectFailure(bwd(good, q, k, v, nil, cl, g, dq, dk, dv),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) bwd o=NULL")
                        expectFailure(bwd(good, q, k, v, co, nil, g, dq, dk, dv),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) bwd lse=NULL")
                        expectFailure(bwd(good, q, k, v, co, cl, g, nil, dk, dv),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) bwd dq=NULL")
                        expectFailure(bwd(good, q, k, v, co, cl, g, dq, nil, dv),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) bwd dk=NULL")
                        expectFailure(bwd(good, q, k, v, co, cl, g, dq, dk, nil),
                                      KL_ERR_INVALID_ARGUMENT, "\(impl) bwd dv=NULL")
                        if bwdNeed > 0 {
                            expectFailure(bwd(good, q, k, v, co, cl, g, dq, dk, dv, bytes: bwdNeed - 1),
                                          KL_ERR_WORKSPACE, "\(impl) bwd workspace \(bwdNeed - 1) < \(bwdNeed)")
                            expectFailure(bwd(good, q, k, v, co, cl, g, dq, dk, dv, ws: nil, bytes: bwdNeed),
                                          KL_ERR_WORKSPACE, "\(impl) bwd workspace=NULL")
                        }
                    } } } } } } } } }
                }
            }
        }

        // Thread pool: a non-positive thread count is an error, not a crash.
        for n: Int32 in [0, -2] {
            var pool: OpaquePointer?
            let st = kl_pool_create(n, &pool)
            expectFailure(st, KL_ERR_THREADS, "kl_pool_create(\(n))")
            if st == KL_OK, let pool { kl_pool_destroy(pool) }
        }
    }
}
