import CKernels
import XCTest

// Checks the C selective-scan kernels (fused and unfused) against the float64
// reference in Reference/ScanReference.swift, through the C API only (no
// dependency on the Swift wrappers).

// MARK: - Problem description

private enum ScanImpl: CaseIterable, CustomStringConvertible {
    case fused, unfused
    var c: kl_impl { self == .fused ? KL_IMPL_FUSED : KL_IMPL_UNFUSED }
    var description: String { self == .fused ? "fused" : "unfused" }
}

/// A case's tiles, passed in its params (nil: the kernel's defaults). The C
/// struct lives for the whole test run (a few bytes per case), so params may
/// point at it from anywhere.
private struct ScanTiles: CustomStringConvertible {
    var chunk: Int
    var block: Int
    let pointer: UnsafeMutablePointer<kl_scan_tiles>

    init(chunk: Int, block: Int) {
        (self.chunk, self.block) = (chunk, block)
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: kl_scan_tiles(chunk: Int32(chunk), block_channels: Int32(block)))
    }

    var description: String { "tiles=\(chunk)/\(block)" }
}

private struct ScanCase: CustomStringConvertible {
    var b = 1, d = 5, l = 37, n = 4, g = 1
    var softplus = true
    var hasD = true, hasZ = true, hasBias = true, hasH0 = true
    var hasDlast = true   // a gradient flows into the last state
    var wantDh0 = true    // dh0 requested (it is optional even when h0 is given)
    var tiles: ScanTiles? = nil
    var seed: UInt64 = 1

    var config: ScanReferenceConfig {
        ScanReferenceConfig(batch: b, channels: d, seqLen: l, state: n, groups: g, softplus: softplus)
    }

    var params: kl_scan_params {
        kl_scan_params(batch: Int32(b), channels: Int32(d), seq_len: Int32(l), state: Int32(n),
                       groups: Int32(g), delta_softplus: softplus ? 1 : 0, tiles: tiles.map { UnsafePointer($0.pointer) })
    }

    var description: String {
        var s = config.description
        let opts = [("D", hasD), ("z", hasZ), ("bias", hasBias), ("h0", hasH0)].filter { $0.1 }.map { $0.0 }
        s += " inputs=[\(opts.joined(separator: ","))]"
        if !hasDlast { s += " no-dlast" }
        if !wantDh0 { s += " no-dh0" }
        s += " " + (tiles?.description ?? "tiles=default")
        return s + " seed=\(seed)"
    }
}

/// fp32 inputs and upstream gradients of one case.
private struct ScanInputs {
    var u, delta, A, B, C: [Float]
    var D, z, bias, h0: [Float]?
    var dout: [Float]
    var dlast: [Float]?

    var reference: ScanReferenceInputs {
        ScanReferenceInputs(u: doubles(u), delta: doubles(delta), A: doubles(A), B: doubles(B), C: doubles(C),
                            D: D.map(doubles), z: z.map(doubles), deltaBias: bias.map(doubles), h0: h0.map(doubles))
    }
}

private func doubles(_ x: [Float]) -> [Double] { x.map(Double.init) }

/// Ranges keep the recurrence stable: A < 0 and, without softplus, delta' > 0.
private func makeInputs(_ c: ScanCase) -> ScanInputs {
    var rng = ReferenceRNG(seed: c.seed)
    let cfg = c.config
    let u = rng.floats(cfg.rowCount, -1, 1)
    let delta = c.softplus ? rng.floats(cfg.rowCount, -3, 1) : rng.floats(cfg.rowCount, 0.01, 0.5)
    let A = rng.floats(cfg.aCount, -2, -0.1)
    let B = rng.floats(cfg.bcCount, -1, 1)
    let C = rng.floats(cfg.bcCount, -1, 1)
    let D = c.hasD ? rng.floats(c.d, -1, 1) : nil
    let z = c.hasZ ? rng.floats(cfg.rowCount, -2, 2) : nil
    let bias = c.hasBias ? (c.softplus ? rng.floats(c.d, -0.5, 0.5) : rng.floats(c.d, 0, 0.1)) : nil
    let h0 = c.hasH0 ? rng.floats(cfg.stateCount, -1, 1) : nil
    let dout = rng.floats(cfg.rowCount, -1, 1)
    let dlast = c.hasDlast ? rng.floats(cfg.stateCount, -1, 1) : nil
    return ScanInputs(u: u, delta: delta, A: A, B: B, C: C, D: D, z: z, bias: bias, h0: h0, dout: dout, dlast: dlast)
}

/// Gradient names in kl_scan_grads order.
private let gradNames = ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias", "dh0"]
private typealias ScanGrads = [String: [Float]]

private func referenceGrads(_ g: ScanReferenceGradients, _ c: ScanCase) -> [String: [Double]] {
    var r: [String: [Double]] = ["du": g.du, "ddelta": g.ddelta, "dA": g.dA, "dB": g.dB, "dC": g.dC]
    r["dD"] = g.dD
    r["dz"] = g.dz
    r["ddelta_bias"] = g.ddeltaBias
    if c.wantDh0 { r["dh0"] = g.dh0 }
    return r
}

private struct ScanReferenceRun {
    var fwd: ScanReferenceForward
    var grads: [String: [Double]]
}

private func referenceRun(_ c: ScanCase, _ x: ScanInputs, backward: Bool = true) -> ScanReferenceRun {
    let rx = x.reference
    let f = scanReferenceForward(c.config, rx)
    guard backward else { return ScanReferenceRun(fwd: f, grads: [:]) }
    let g = scanReferenceBackward(c.config, rx, dout: doubles(x.dout), dlast: x.dlast.map(doubles))
    return ScanReferenceRun(fwd: f, grads: referenceGrads(g, c))
}

// MARK: - Calling the C API

private struct ScanCallError: Error, CustomStringConvertible {
    let description: String
}

private func lastError() -> String { String(cString: kl_last_error()) }

private func check(_ status: kl_status, _ what: String) throws {
    guard status == KL_OK else {
        throw ScanCallError(description: "\(what) returned \(String(cString: kl_status_name(status))): \(lastError())")
    }
}

/// Memory handed to the kernels: the tensor between two guard zones holding a
/// sentinel bit pattern, so writes outside the tensor are caught.
private final class GuardedBuffer {
    static let pad = 32
    static let sentinel: UInt32 = 0x7FC0_5CA9   // a quiet NaN with a payload
    let count: Int
    private let base: UnsafeMutablePointer<Float>

    init(count: Int, fill: Float) {
        self.count = count
        base = .allocate(capacity: count + 2 * Self.pad)
        base.initialize(repeating: Float(bitPattern: Self.sentinel), count: count + 2 * Self.pad)
        (base + Self.pad).update(repeating: fill, count: count)
    }

    convenience init(_ values: [Float]) {
        self.init(count: values.count, fill: 0)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }

    deinit { base.deallocate() }

    var pointer: UnsafeMutablePointer<Float> { base + Self.pad }
    var values: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    var guardsIntact: Bool {
        for i in 0..<Self.pad {
            if base[i].bitPattern != Self.sentinel { return false }
            if base[Self.pad + count + i].bitPattern != Self.sentinel { return false }
        }
        return true
    }
}

private func checkGuards(_ bufs: [(String, GuardedBuffer?)], _ what: String) throws {
    let bad = bufs.filter { $0.1.map { !$0.guardsIntact } ?? false }.map { $0.0 }
    if !bad.isEmpty { throw ScanCallError(description: "\(what) wrote outside \(bad)") }
}

/// Copies of the inputs for one or more kernel calls; checks afterwards that
/// the kernels neither changed them nor wrote around them.
private final class KernelInputs {
    let src: ScanInputs
    let u, delta, A, B, C: GuardedBuffer
    let D, z, bias, h0: GuardedBuffer?

    init(_ x: ScanInputs) {
        src = x
        u = GuardedBuffer(x.u); delta = GuardedBuffer(x.delta); A = GuardedBuffer(x.A)
        B = GuardedBuffer(x.B); C = GuardedBuffer(x.C)
        D = x.D.map(GuardedBuffer.init); z = x.z.map(GuardedBuffer.init)
        bias = x.bias.map(GuardedBuffer.init); h0 = x.h0.map(GuardedBuffer.init)
    }

    /// Valid while self is alive.
    var c: kl_scan_inputs {
        func cp(_ b: GuardedBuffer?) -> UnsafePointer<Float>? { b.map { UnsafePointer($0.pointer) } }
        return kl_scan_inputs(u: cp(u), delta: cp(delta), A: cp(A), B: cp(B), C: cp(C),
                              D: cp(D), z: cp(z), delta_bias: cp(bias), h0: cp(h0))
    }

    func checkUnchanged(_ what: String) throws {
        let all: [(String, GuardedBuffer?, [Float]?)] = [
            ("u", u, src.u), ("delta", delta, src.delta), ("A", A, src.A), ("B", B, src.B), ("C", C, src.C),
            ("D", D, src.D), ("z", z, src.z), ("delta_bias", bias, src.bias), ("h0", h0, src.h0),
        ]
        try checkGuards(all.map { ($0.0, $0.1) }, what)
        let changed = all.filter { _, b, v in b.map { $0.values != v! } ?? false }.map { $0.0 }
        if !changed.isEmpty { throw ScanCallError(description: "\(what) modified inputs \(changed)") }
    }
}

private final class ScanPool {
    let pool: OpaquePointer
    let threads: Int
    init(threads: Int) throws {
        var p: OpaquePointer?
        try check(kl_pool_create(Int32(threads), &p), "kl_pool_create(\(threads))")
        guard let p else { throw ScanCallError(description: "kl_pool_create returned a null pool") }
        pool = p
        self.threads = threads
    }
    deinit { kl_pool_destroy(pool) }
}

private func withWorkspace<R>(_ bytes: Int, _ body: (UnsafeMutableRawPointer, Int) throws -> R) throws -> R {
    let n = max(bytes, 64)
    guard let ws = kl_alloc(n) else { throw ScanCallError(description: "kl_alloc(\(n)) failed") }
    defer { kl_free(ws, n) }
    return try body(ws, bytes)
}

private struct ScanForward {
    var out, last: [Float]
    var saved: [Float]?
}

/// Outputs start as NaN so an element the kernel fails to write shows up.
private func kernelForward(_ c: ScanCase, _ kin: KernelInputs, _ impl: ScanImpl, pool: ScanPool,
                           saveStates: Bool = false) throws -> ScanForward {
    var p = c.params
    let what = "kl_scan_fwd(\(impl), T=\(pool.threads))"
    let out = GuardedBuffer(count: c.config.rowCount, fill: .nan)
    let last = GuardedBuffer(count: c.config.stateCount, fill: .nan)
    let saved = saveStates ? GuardedBuffer(count: kl_scan_saved_count(&p), fill: .nan) : nil
    try withWorkspace(kl_scan_fwd_workspace_bytes(&p, impl.c, Int32(pool.threads))) { ws, bytes in
        var ci = kin.c
        try check(kl_scan_fwd(&p, impl.c, &ci, out.pointer, last.pointer, saved?.pointer, ws, bytes, pool.pool), what)
    }
    try checkGuards([("out", out), ("last_state", last), ("saved", saved)], what)
    try kin.checkUnchanged(what)
    return ScanForward(out: out.values, last: last.values, saved: saved?.values)
}

/// Gradient buffers start as NaN: the kernel must overwrite (not accumulate into) every element.
private func kernelBackward(_ c: ScanCase, _ kin: KernelInputs, _ impl: ScanImpl, pool: ScanPool,
                            saved: [Float]? = nil) throws -> ScanGrads {
    var p = c.params
    let cfg = c.config
    let what = "kl_scan_bwd(\(impl), T=\(pool.threads)\(saved == nil ? "" : ", saved"))"
    let dout = GuardedBuffer(kin.src.dout)
    let dlast = kin.src.dlast.map(GuardedBuffer.init)
    let savedBuf = saved.map(GuardedBuffer.init)
    let counts: [String: Int] = [
        "du": cfg.rowCount, "ddelta": cfg.rowCount, "dA": cfg.aCount, "dB": cfg.bcCount, "dC": cfg.bcCount,
        "dD": c.hasD ? c.d : 0, "dz": c.hasZ ? cfg.rowCount : 0, "ddelta_bias": c.hasBias ? c.d : 0,
        "dh0": c.wantDh0 ? cfg.stateCount : 0,
    ]
    var bufs: [String: GuardedBuffer] = [:]
    for name in gradNames where counts[name]! > 0 { bufs[name] = GuardedBuffer(count: counts[name]!, fill: .nan) }
    try withWorkspace(kl_scan_bwd_workspace_bytes(&p, impl.c, Int32(pool.threads))) { ws, bytes in
        var ci = kin.c
        var gr = kl_scan_grads(du: bufs["du"]?.pointer, ddelta: bufs["ddelta"]?.pointer, dA: bufs["dA"]?.pointer,
                               dB: bufs["dB"]?.pointer, dC: bufs["dC"]?.pointer, dD: bufs["dD"]?.pointer,
                               dz: bufs["dz"]?.pointer, ddelta_bias: bufs["ddelta_bias"]?.pointer,
                               dh0: bufs["dh0"]?.pointer)
        try check(kl_scan_bwd(&p, impl.c, &ci, dout.pointer, dlast?.pointer, savedBuf?.pointer, &gr,
                              ws, bytes, pool.pool), what)
    }
    try checkGuards(gradNames.map { ($0, bufs[$0]) } + [("dout", dout), ("dlast", dlast), ("saved", savedBuf)], what)
    if dout.values != kin.src.dout || dlast?.values != kin.src.dlast || savedBuf?.values != saved {
        throw ScanCallError(description: "\(what) modified dout, dlast or saved")
    }
    try kin.checkUnchanged(what)
    return bufs.mapValues { $0.values }
}

private struct ScanKernelRun {
    var fwd: ScanForward
    var grads: ScanGrads
}

private func runKernel(_ c: ScanCase, _ x: ScanInputs, _ impl: ScanImpl, threads: Int) throws -> ScanKernelRun {
    let pool = try ScanPool(threads: threads)
    let kin = KernelInputs(x)
    let f = try kernelForward(c, kin, impl, pool: pool)
    let g = try kernelBackward(c, kin, impl, pool: pool)
    return ScanKernelRun(fwd: f, grads: g)
}

// MARK: - Comparisons

// fp32 kernels against float64: max abs error over max(1, max |ref|) per tensor.
private let forwardTol = 2e-5
private let gradTol = 1e-4

private struct ErrorReport: CustomStringConvertible {
    var relative = 0.0, absolute = 0.0, scale = 1.0
    var index = -1
    var got = 0.0, expected = 0.0
    var description: String {
        String(format: "err %.3e relative (abs %.3e at index %d: got %.8g, expected %.8g; scale %.4g)",
               relative, absolute, index, got, expected, scale)
    }
}

/// Non-finite values count as an infinite error.
private func compare(_ got: [Float], _ ref: [Double]) -> ErrorReport {
    var r = ErrorReport()
    guard got.count == ref.count else {
        r.relative = .infinity
        return r
    }
    for e in ref where e.isFinite { r.scale = max(r.scale, abs(e)) }
    for i in got.indices {
        let g = Double(got[i]), e = ref[i]
        let err = g.isFinite && e.isFinite ? abs(g - e) : .infinity
        if err > r.absolute || (r.index < 0 && err.isNaN) || (r.index < 0 && err > 0) {
            (r.absolute, r.index, r.got, r.expected) = (err, i, g, e)
        }
    }
    r.relative = r.absolute / r.scale
    return r
}

private func assertClose(_ got: [Float]?, _ ref: [Double]?, tol: Double, _ what: @autoclosure () -> String,
                         file: StaticString = #filePath, line: UInt = #line) {
    guard let got, let ref else {
        XCTAssert(got == nil && ref == nil, "\(what()): present in only one of the two runs", file: file, line: line)
        return
    }
    let r = compare(got, ref)
    XCTAssert(r.relative <= tol, "\(what()): \(r) > tol \(tol)", file: file, line: line)
}

private func assertMatches(_ run: ScanKernelRun, _ ref: ScanReferenceRun, fwdTol: Double = forwardTol,
                           gradTol: Double = gradTol, _ what: String,
                           file: StaticString = #filePath, line: UInt = #line) {
    assertClose(run.fwd.out, ref.fwd.out, tol: fwdTol, "\(what) out", file: file, line: line)
    assertClose(run.fwd.last, ref.fwd.last, tol: fwdTol, "\(what) last_state", file: file, line: line)
    for name in gradNames {
        assertClose(run.grads[name], ref.grads[name], tol: gradTol, "\(what) \(name)", file: file, line: line)
    }
}

private func asReference(_ run: ScanKernelRun) -> ScanReferenceRun {
    ScanReferenceRun(fwd: ScanReferenceForward(out: doubles(run.fwd.out), last: doubles(run.fwd.last)),
                     grads: run.grads.mapValues(doubles))
}

/// Both impls on each case, against the float64 reference and against each other.
private func verifyCases(_ cases: [ScanCase], threads: Int = 1, file: StaticString = #filePath, line: UInt = #line) {
    for c in cases {
        let x = makeInputs(c)
        let ref = referenceRun(c, x)
        var runs: [String: ScanKernelRun] = [:]
        for impl in ScanImpl.allCases {
            let what = "[\(c)] \(impl) T=\(threads) ISA=\(String(cString: kl_isa_name(kl_isa_active())))"
            do {
                let run = try runKernel(c, x, impl, threads: threads)
                assertMatches(run, ref, what, file: file, line: line)
                runs[impl.description] = run
            } catch {
                XCTFail("\(what): \(error)", file: file, line: line)
            }
        }
        if let f = runs["fused"], let u = runs["unfused"] {
            assertMatches(f, asReference(u), "[\(c)] fused vs unfused T=\(threads)", file: file, line: line)
        }
    }
}

// MARK: - Tests

final class ScanReferenceTests: XCTestCase {
    private var originalISA = KL_ISA_SCALAR

    override func setUp() {
        super.setUp()
        continueAfterFailure = true
        XCTAssertEqual(kl_init(), KL_OK, lastError())
        originalISA = kl_isa_active()
    }

    override func tearDown() {
        _ = kl_isa_set(originalISA)
        super.tearDown()
    }

    // MARK: The reference itself

    /// The analytic float64 backward against central differences of the float64
    /// forward, over every coordinate of every input of a tiny case.
    func testReferenceBackwardMatchesFiniteDifferences() {
        let cases = [
            ScanCase(b: 2, d: 4, l: 5, n: 3, g: 2, softplus: true, seed: 11),
            ScanCase(b: 1, d: 3, l: 6, n: 2, g: 1, softplus: false, seed: 12),
            ScanCase(b: 2, d: 2, l: 4, n: 3, g: 1, hasD: false, hasZ: false, hasBias: false, hasH0: false,
                     hasDlast: false, seed: 13),
        ]
        let eps = 1e-6
        for c in cases {
            let inputs = makeInputs(c)
            let x = inputs.reference
            let dout = doubles(inputs.dout), dlast = inputs.dlast.map(doubles)
            let g = scanReferenceBackward(c.config, x, dout: dout, dlast: dlast)
            func loss(_ v: ScanReferenceInputs) -> Double {
                scanReferenceLoss(scanReferenceForward(c.config, v), dout: dout, dlast: dlast)
            }
            let tensors: [(String, WritableKeyPath<ScanReferenceInputs, [Double]>, [Double])] = [
                ("u", \.u, g.du), ("delta", \.delta, g.ddelta), ("A", \.A, g.dA), ("B", \.B, g.dB), ("C", \.C, g.dC),
            ]
            var optional: [(String, WritableKeyPath<ScanReferenceInputs, [Double]?>, [Double]?)] = [
                ("D", \.D, g.dD), ("z", \.z, g.dz), ("delta_bias", \.deltaBias, g.ddeltaBias), ("h0", \.h0, g.dh0),
            ]
            optional = optional.filter { x[keyPath: $0.1] != nil }
            var worst = 0.0
            func probe(_ name: String, _ count: Int, _ analytic: [Double]?,
                       _ bump: (inout ScanReferenceInputs, Int, Double) -> Void) {
                guard let analytic, analytic.count == count else {
                    XCTFail("[\(c)] reference gradient for \(name) is missing or misshaped")
                    return
                }
                for i in 0..<count {
                    var xp = x, xm = x
                    bump(&xp, i, eps)
                    bump(&xm, i, -eps)
                    let fd = (loss(xp) - loss(xm)) / (2 * eps)
                    let err = abs(fd - analytic[i]) / max(1, abs(fd))
                    worst = max(worst, err)
                    XCTAssert(err < 1e-7, "[\(c)] d\(name)[\(i)]: analytic \(analytic[i]) vs fd \(fd)")
                }
            }
            for (name, kp, an) in tensors { probe(name, x[keyPath: kp].count, an) { $0[keyPath: kp][$1] += $2 } }
            for (name, kp, an) in optional { probe(name, x[keyPath: kp]!.count, an) { $0[keyPath: kp]![$1] += $2 } }
            // Without h0 the gradient wrt a zero initial state still exists: add one and probe it.
            if x.h0 == nil {
                var x0 = x
                x0.h0 = [Double](repeating: 0, count: c.config.stateCount)
                let g0 = scanReferenceBackward(c.config, x0, dout: dout, dlast: dlast)
                XCTAssertEqual(g0.dh0, g.dh0, "[\(c)] dh0 with h0 absent vs h0 = 0")
                for i in 0..<c.config.stateCount {
                    var xp = x0, xm = x0
                    xp.h0![i] += eps
                    xm.h0![i] -= eps
                    let fd = (loss(xp) - loss(xm)) / (2 * eps)
                    XCTAssert(abs(fd - g.dh0[i]) / max(1, abs(fd)) < 1e-7, "[\(c)] dh0[\(i)] (h0 absent)")
                }
            }
            XCTAssert(worst < 1e-7, "[\(c)] worst reference fd error \(worst)")
        }
    }

    /// Pins the reference to hand-computed values (N = 1, one channel).
    func testReferenceHandComputed() {
        // h_1 = dt_1 B_1 u_1 (h0 = 0); h_2 = e^{dt_2 A} h_1 + dt_2 B_2 u_2; y_t = C_t h_t + D u_t.
        let cfg = ScanReferenceConfig(batch: 1, channels: 1, seqLen: 2, state: 1, groups: 1, softplus: false)
        let x = ScanReferenceInputs(u: [3, 1], delta: [0.5, 0.25], A: [-1], B: [2, 1], C: [4, -2],
                                    D: [0.5], z: nil, deltaBias: nil, h0: nil)
        let f = scanReferenceForward(cfg, x)
        let h1 = 0.5 * 2 * 3.0
        let h2 = exp(-0.25) * h1 + 0.25 * 1 * 1
        XCTAssertEqual(f.out[0], 4 * h1 + 0.5 * 3, accuracy: 1e-12)
        XCTAssertEqual(f.out[1], -2 * h2 + 0.5 * 1, accuracy: 1e-12)
        XCTAssertEqual(f.last[0], h2, accuracy: 1e-12)
        // With z: out = y * z * sigmoid(z).
        var xz = x
        xz.z = [1.5, -0.5]
        let fz = scanReferenceForward(cfg, xz)
        XCTAssertEqual(fz.out[0], (4 * h1 + 1.5) * 1.5 / (1 + exp(-1.5)), accuracy: 1e-12)
        // Softplus and bias: delta' = log(1 + e^{delta + bias}).
        var cs = cfg
        cs.softplus = true
        var xb = x
        xb.deltaBias = [0.1]
        let fs = scanReferenceForward(cs, xb)
        let dt1 = log(1 + exp(0.6))
        XCTAssertEqual(fs.out[0], 4 * (dt1 * 2 * 3) + 1.5, accuracy: 1e-12)
    }

    // MARK: Kernels against the reference

    /// L against the chunk (ragged last chunk, L = 1, one chunk, chunk > L),
    /// N in {1, 4, 16, 17, 64}, D not a multiple of 16, B > 1.
    func testShapes() {
        let small = ScanTiles(chunk: 16, block: 32)
        verifyCases([
            ScanCase(b: 2, d: 5, l: 37, n: 4, tiles: small, seed: 21),          // 3 chunks, last ragged
            ScanCase(b: 1, d: 24, l: 1, n: 16, seed: 22),                       // L = 1, default chunk
            ScanCase(b: 2, d: 5, l: 1, n: 4, tiles: small, seed: 23),           // L = 1, small chunk
            ScanCase(b: 2, d: 5, l: 130, n: 1, seed: 24),                       // N = 1: chunk 128, 2 chunks
            ScanCase(b: 1, d: 40, l: 70, n: 4, softplus: false, seed: 25),      // one partial chunk
            ScanCase(b: 2, d: 24, l: 200, n: 16, seed: 26),                     // chunk 128, ragged
            ScanCase(b: 1, d: 40, l: 150, n: 17, seed: 27),                     // chunk 112, 3 lane blocks
            ScanCase(b: 2, d: 5, l: 45, n: 64, seed: 28),                       // chunk 32
            ScanCase(b: 2, d: 40, l: 50, n: 16, softplus: false, tiles: small, seed: 29),  // blocks 32 + 8
            ScanCase(b: 1, d: 70, l: 33, n: 8, tiles: ScanTiles(chunk: 16, block: 48), seed: 30),
            ScanCase(b: 3, d: 17, l: 48, n: 17, tiles: small, seed: 31),        // L a multiple of the chunk
        ])
    }

    /// Unusual tiles: a chunk of 1 step, a chunk not a multiple of 16, a chunk
    /// longer than L, block_channels not a multiple of 16 (rounded up).
    func testTileEdges() {
        verifyCases([
            ScanCase(b: 1, d: 5, l: 9, n: 4, tiles: ScanTiles(chunk: 1, block: 16), seed: 41),
            ScanCase(b: 2, d: 20, l: 30, n: 5, tiles: ScanTiles(chunk: 7, block: 16), seed: 42),
            ScanCase(b: 1, d: 5, l: 37, n: 4, tiles: ScanTiles(chunk: 256, block: 64), seed: 43),
            ScanCase(b: 1, d: 40, l: 20, n: 4, tiles: ScanTiles(chunk: 16, block: 20), seed: 44),
        ])
    }

    /// Every combination of D, z, delta_bias and h0, softplus on and off, with
    /// and without dlast and dh0.
    func testOptionalInputs() {
        var cases: [ScanCase] = []
        for mask in 0..<16 {
            for softplus in [true, false] {
                cases.append(ScanCase(
                    b: 2, d: 5, l: 23, n: 4, softplus: softplus,
                    hasD: mask & 1 != 0, hasZ: mask & 2 != 0, hasBias: mask & 4 != 0, hasH0: mask & 8 != 0,
                    hasDlast: (mask + (softplus ? 1 : 0)) % 3 != 0, wantDh0: (mask / 2 + (softplus ? 0 : 1)) % 2 == 0,
                    tiles: ScanTiles(chunk: 16, block: 16), seed: 100 + UInt64(mask) * 2 + (softplus ? 1 : 0)))
            }
        }
        verifyCases(cases)
    }

    /// Grouped B and C: channel d uses group d / (D / G).
    func testGroups() {
        let small = ScanTiles(chunk: 16, block: 32)
        verifyCases([
            ScanCase(b: 2, d: 24, l: 37, n: 4, g: 3, tiles: small, seed: 51),   // 8 channels per group
            ScanCase(b: 1, d: 24, l: 37, n: 16, g: 3, seed: 52),
            ScanCase(b: 2, d: 6, l: 19, n: 5, g: 2, softplus: false, tiles: small, seed: 53),
            ScanCase(b: 1, d: 40, l: 29, n: 4, g: 2, tiles: small, seed: 54),   // 20 per group: 16 + 4 lanes
            ScanCase(b: 2, d: 5, l: 21, n: 3, g: 5, tiles: small, seed: 55),    // one channel per group
            ScanCase(b: 1, d: 48, l: 21, n: 4, g: 3, tiles: small, seed: 56),   // 16 per group
        ])
    }

    /// Two threads against the reference, and against one thread.
    func testThreads() throws {
        let cases = [
            ScanCase(b: 2, d: 40, l: 37, n: 4, g: 2, tiles: ScanTiles(chunk: 16, block: 16), seed: 61),
            ScanCase(b: 3, d: 24, l: 50, n: 16, g: 3, seed: 62),
            ScanCase(b: 1, d: 5, l: 33, n: 17, softplus: false, tiles: ScanTiles(chunk: 16, block: 32), seed: 63),
        ]
        verifyCases(cases, threads: 2)
        // 1 vs 2 threads: only the order of the per-thread partial sums differs.
        for c in cases {
            let x = makeInputs(c)
            for impl in ScanImpl.allCases {
                do {
                    let (one, two) = (try runKernel(c, x, impl, threads: 1), try runKernel(c, x, impl, threads: 2))
                    assertMatches(two, asReference(one), fwdTol: 1e-6, gradTol: 1e-5, "[\(c)] \(impl) T=2 vs T=1")
                } catch {
                    XCTFail("[\(c)] \(impl): \(error)")
                }
            }
        }
    }

    /// The backward with the forward's saved chunk states equals the backward
    /// that recomputes them (saved = NULL).
    func testSavedStates() throws {
        let cases = [
            ScanCase(b: 2, d: 5, l: 37, n: 4, tiles: ScanTiles(chunk: 16, block: 16), seed: 71),
            ScanCase(b: 2, d: 24, l: 200, n: 16, g: 3, seed: 72),
            ScanCase(b: 1, d: 40, l: 1, n: 17, seed: 73),
            ScanCase(b: 1, d: 20, l: 30, n: 5, softplus: false, hasH0: false, tiles: ScanTiles(chunk: 7, block: 32), seed: 74),
            ScanCase(b: 2, d: 6, l: 48, n: 4, g: 2, hasD: false, hasZ: false, hasBias: false, hasDlast: false,
                     wantDh0: false, tiles: ScanTiles(chunk: 16, block: 32), seed: 75),
        ]
        for c in cases {
            let x = makeInputs(c)
            let ref = referenceRun(c, x)
            for threads in [1, 2] {
                do {
                    do {  // the case's tiles travel in its params
                        let pool = try ScanPool(threads: threads)
                        let kin = KernelInputs(x)
                        var p = c.params
                        let nchunks = (c.l + Int(defaultChunk(c)) - 1) / Int(defaultChunk(c))
                        XCTAssertEqual(kl_scan_saved_count(&p), c.b * c.d * nchunks * c.n, "[\(c)] saved count")
                        let f = try kernelForward(c, kin, .fused, pool: pool, saveStates: true)
                        let plain = try kernelForward(c, kin, .fused, pool: pool)
                        XCTAssertEqual(f.out, plain.out, "[\(c)] T=\(threads) saving states changed the forward")
                        let withSaved = try kernelBackward(c, kin, .fused, pool: pool, saved: f.saved)
                        let recomputed = try kernelBackward(c, kin, .fused, pool: pool)
                        let what = "[\(c)] T=\(threads)"
                        let a = ScanKernelRun(fwd: f, grads: withSaved), b = ScanKernelRun(fwd: f, grads: recomputed)
                        assertMatches(a, ref, "\(what) fused with saved vs reference")
                        assertMatches(a, asReference(b), fwdTol: 1e-6, gradTol: 1e-6, "\(what) fused saved vs NULL")
                        // The unfused forward saves the same states; the fused backward accepts them.
                        let uf = try kernelForward(c, kin, .unfused, pool: pool, saveStates: true)
                        assertClose(uf.saved, f.saved.map(doubles), tol: 1e-5, "\(what) unfused vs fused saved states")
                        let cross = try kernelBackward(c, kin, .fused, pool: pool, saved: uf.saved)
                        assertMatches(ScanKernelRun(fwd: f, grads: cross), ref, "\(what) fused bwd with unfused saved")
                        // The unfused backward ignores saved.
                        let ub = try kernelBackward(c, kin, .unfused, pool: pool, saved: uf.saved)
                        assertMatches(ScanKernelRun(fwd: uf, grads: ub), ref, "\(what) unfused bwd with saved")
                    }
                } catch {
                    XCTFail("[\(c)] T=\(threads): \(error)")
                }
            }
        }
    }

    /// Every supported ISA (scalar, AVX2, AVX-512) on a few cases.
    func testEachISA() {
        let cases = [
            ScanCase(b: 2, d: 21, l: 37, n: 5, g: 3, tiles: ScanTiles(chunk: 16, block: 32), seed: 81),
            ScanCase(b: 1, d: 5, l: 40, n: 17, softplus: false, seed: 82),
            ScanCase(b: 1, d: 6, l: 19, n: 4, g: 2, hasD: false, hasZ: false, hasH0: false,
                     tiles: ScanTiles(chunk: 7, block: 16), seed: 83),
        ]
        for isa in [KL_ISA_SCALAR, KL_ISA_AVX2, KL_ISA_AVX512] where kl_isa_supported(isa) != 0 {
            XCTAssertEqual(kl_isa_set(isa), KL_OK, lastError())
            verifyCases(cases)
        }
        _ = kl_isa_set(originalISA)
    }

    /// Central differences of the fp32 fused forward (loss in Double) against
    /// both backwards at sampled coordinates of every input.
    func testBackwardMatchesFiniteDifferencesOfFusedForward() throws {
        let cases = [
            ScanCase(b: 2, d: 6, l: 21, n: 5, g: 2, softplus: true, tiles: ScanTiles(chunk: 8, block: 16), seed: 91),
            ScanCase(b: 1, d: 5, l: 17, n: 4, g: 1, softplus: false, tiles: ScanTiles(chunk: 16, block: 16), seed: 92),
        ]
        let eps: Float = 1e-2
        let samples = 6
        for c in cases {
            let x = makeInputs(c)
            do {  // the case's tiles travel in its params
                let pool = try ScanPool(threads: 1)
                let kin = KernelInputs(x)
                let fusedGrads = try kernelBackward(c, kin, .fused, pool: pool)
                let unfusedGrads = try kernelBackward(c, kin, .unfused, pool: pool)
                func loss(_ v: ScanInputs) throws -> Double {
                    let f = try kernelForward(c, KernelInputs(v), .fused, pool: pool)
                    var s = 0.0
                    for i in f.out.indices { s += Double(f.out[i]) * Double(v.dout[i]) }
                    if let dl = v.dlast { for i in f.last.indices { s += Double(f.last[i]) * Double(dl[i]) } }
                    return s
                }
                let probes: [(String, String, Int, ScanBump)] = [
                    ("u", "du", x.u.count, { $0.u[$1] += $2; return $0.u[$1] }),
                    ("delta", "ddelta", x.delta.count, { $0.delta[$1] += $2; return $0.delta[$1] }),
                    ("A", "dA", x.A.count, { $0.A[$1] += $2; return $0.A[$1] }),
                    ("B", "dB", x.B.count, { $0.B[$1] += $2; return $0.B[$1] }),
                    ("C", "dC", x.C.count, { $0.C[$1] += $2; return $0.C[$1] }),
                    ("D", "dD", x.D?.count ?? 0, { $0.D![$1] += $2; return $0.D![$1] }),
                    ("z", "dz", x.z?.count ?? 0, { $0.z![$1] += $2; return $0.z![$1] }),
                    ("delta_bias", "ddelta_bias", x.bias?.count ?? 0, { $0.bias![$1] += $2; return $0.bias![$1] }),
                    ("h0", "dh0", x.h0?.count ?? 0, { $0.h0![$1] += $2; return $0.h0![$1] }),
                ]
                var rng = ReferenceRNG(seed: c.seed &+ 1000)
                for (input, grad, count, bump) in probes where count > 0 {
                    var idx = Set([0, count - 1])
                    while idx.count < min(samples, count) { idx.insert(rng.index(below: count)) }
                    for i in idx.sorted() {
                        var xp = x, xm = x
                        let vp = bump(&xp, i, eps), vm = bump(&xm, i, -eps)
                        let fd = (try loss(xp) - loss(xm)) / (Double(vp) - Double(vm))
                        for (impl, g) in [("fused", fusedGrads), ("unfused", unfusedGrads)] {
                            guard let an = g[grad]?[i] else {
                                XCTFail("[\(c)] \(impl) \(grad) missing (for input \(input))")
                                continue
                            }
                            let err = abs(Double(an) - fd) / max(1, abs(fd))
                            XCTAssert(err <= 2e-2, String(format: "[\(c)] \(impl) \(grad)[\(i)]: backward %.6g vs fd %.6g (err %.2e)",
                                                          Double(an), fd, err))
                        }
                    }
                }
            }
        }
    }

    /// A long sequence stays finite and accurate: the forward of both impls,
    /// and the backward (fused with the forward's saved states, unfused) whose
    /// dA, dD and d(delta_bias) sum over all 16384 steps. Small D keeps the
    /// float64 reference cheap.
    func testLongSequence() throws {
        let c = ScanCase(b: 1, d: 16, l: 16384, n: 16, seed: 99)
        let x = makeInputs(c)
        let ref = referenceRun(c, x)
        let kin = KernelInputs(x)
        for impl in ScanImpl.allCases {
            let threads = impl == .fused ? 2 : 1
            let what = "[\(c)] \(impl) T=\(threads)"
            let pool = try ScanPool(threads: threads)
            let f = try kernelForward(c, kin, impl, pool: pool, saveStates: impl == .fused)
            XCTAssert(f.out.allSatisfy(\.isFinite) && f.last.allSatisfy(\.isFinite), "\(what): non-finite output")
            let g = try kernelBackward(c, kin, impl, pool: pool, saved: f.saved)
            XCTAssert(g.values.allSatisfy { $0.allSatisfy(\.isFinite) }, "\(what): non-finite gradient")
            assertMatches(ScanKernelRun(fwd: f, grads: g), ref, what)
        }
    }

    // MARK: Bad input

    func testInvalidArguments() throws {
        let c = ScanCase(b: 1, d: 6, l: 8, n: 4, g: 1, seed: 7)
        let x = makeInputs(c)
        let kin = KernelInputs(x)
        let pool = try ScanPool(threads: 1)
        let cfg = c.config
        // Buffers large enough for every variant below, so only the named defect is wrong.
        let out = GuardedBuffer(count: cfg.rowCount, fill: 0), last = GuardedBuffer(count: cfg.stateCount, fill: 0)
        let dout = GuardedBuffer(x.dout)
        let gbufs = (0..<9).map { _ in GuardedBuffer(count: max(cfg.rowCount, cfg.bcCount, cfg.aCount), fill: 0) }
        func grads(_ omit: Set<String> = []) -> kl_scan_grads {
            func g(_ i: Int) -> UnsafeMutablePointer<Float>? { omit.contains(gradNames[i]) ? nil : gbufs[i].pointer }
            return kl_scan_grads(du: g(0), ddelta: g(1), dA: g(2), dB: g(3), dC: g(4), dD: g(5), dz: g(6),
                                 ddelta_bias: g(7), dh0: g(8))
        }
        var good = c.params
        let fwdBytes = kl_scan_fwd_workspace_bytes(&good, KL_IMPL_FUSED, 1)
        let bwdBytes = max(kl_scan_bwd_workspace_bytes(&good, KL_IMPL_FUSED, 1),
                           kl_scan_bwd_workspace_bytes(&good, KL_IMPL_UNFUSED, 1),
                           kl_scan_fwd_workspace_bytes(&good, KL_IMPL_UNFUSED, 1))
        XCTAssert(fwdBytes > 0 && bwdBytes > 0)
        let wsBytes = max(fwdBytes, bwdBytes) + 128
        guard let ws = kl_alloc(wsBytes) else { throw ScanCallError(description: "kl_alloc failed") }
        defer { kl_free(ws, wsBytes) }

        enum Call { case fwd, bwd }
        struct Bad {
            var name: String
            var calls: [Call] = [.fwd, .bwd]
            var params: ((inout kl_scan_params) -> Void)? = nil
            var inputs: ((inout kl_scan_inputs) -> Void)? = nil
            var omit: Set<String> = []
            var wsOffset = 0
            var wsBytes: Int? = nil        // nil: the real size
            var nullWorkspace = false
            var nullParams = false
            var nullPool = false
            var nullOut = false
            var nullLast = false
            var nullDout = false
            var impl: kl_impl? = nil
            var expected: kl_status? = nil
        }
        let bads: [Bad] = [
            Bad(name: "channels not divisible by groups", params: { $0.groups = 4 }, expected: KL_ERR_SHAPE),
            Bad(name: "groups 0", params: { $0.groups = 0 }),
            Bad(name: "state 0", params: { $0.state = 0 }),
            Bad(name: "state 2000", params: { $0.state = 2000 }),
            Bad(name: "negative seq", params: { $0.seq_len = -3 }),
            Bad(name: "seq 0", params: { $0.seq_len = 0 }),
            Bad(name: "batch 0", params: { $0.batch = 0 }),
            Bad(name: "negative channels", params: { $0.channels = -6 }),
            Bad(name: "delta_softplus 2", params: { $0.delta_softplus = 2 }),
            Bad(name: "NULL params", nullParams: true),
            Bad(name: "NULL u", inputs: { $0.u = nil }),
            Bad(name: "NULL delta", inputs: { $0.delta = nil }),
            Bad(name: "NULL A", inputs: { $0.A = nil }),
            Bad(name: "NULL B", inputs: { $0.B = nil }),
            Bad(name: "NULL C", inputs: { $0.C = nil }),
            Bad(name: "bad impl", impl: kl_impl(rawValue: 7)),
            Bad(name: "NULL pool", nullPool: true),
            Bad(name: "workspace one byte short", wsBytes: -1, expected: KL_ERR_WORKSPACE),
            Bad(name: "NULL workspace", nullWorkspace: true, expected: KL_ERR_WORKSPACE),
            Bad(name: "misaligned workspace", wsOffset: 4, expected: KL_ERR_WORKSPACE),
            Bad(name: "NULL out", calls: [.fwd], nullOut: true),
            Bad(name: "NULL last_state", calls: [.fwd], nullLast: true),
            Bad(name: "NULL dout", calls: [.bwd], nullDout: true),
            Bad(name: "missing dD when D given", calls: [.bwd], omit: ["dD"]),
            Bad(name: "missing dz when z given", calls: [.bwd], omit: ["dz"]),
            Bad(name: "missing ddelta_bias when delta_bias given", calls: [.bwd], omit: ["ddelta_bias"]),
            Bad(name: "missing du", calls: [.bwd], omit: ["du"]),
            Bad(name: "missing dB", calls: [.bwd], omit: ["dB"]),
        ]
        for bad in bads {
            for impl in ScanImpl.allCases {
                for call in bad.calls {
                    let what = "\(bad.name) (\(impl) \(call))"
                    // A good call first: it clears the error, so the message read below is this call's.
                    var ok = c.params
                    var oki = kin.c
                    XCTAssertEqual(kl_scan_fwd(&ok, KL_IMPL_FUSED, &oki, out.pointer, last.pointer, nil, ws, fwdBytes,
                                               pool.pool), KL_OK, lastError())
                    XCTAssertEqual(lastError(), "", "error detail not cleared by a successful call")

                    var p = c.params
                    bad.params?(&p)
                    var ins = kin.c
                    bad.inputs?(&ins)
                    var gr = grads(bad.omit)
                    let im = bad.impl ?? impl.c
                    var need = call == .fwd ? kl_scan_fwd_workspace_bytes(&good, impl.c, 1)
                                            : kl_scan_bwd_workspace_bytes(&good, impl.c, 1)
                    if let d = bad.wsBytes { need += d }
                    let w: UnsafeMutableRawPointer? = bad.nullWorkspace ? nil : ws + bad.wsOffset
                    let bytes = bad.nullWorkspace ? 0 : need
                    let pl: OpaquePointer? = bad.nullPool ? nil : pool.pool
                    let st: kl_status = withUnsafePointer(to: &p) { pp in
                        let pp2: UnsafePointer<kl_scan_params>? = bad.nullParams ? nil : pp
                        switch call {
                        case .fwd:
                            return kl_scan_fwd(pp2, im, &ins, bad.nullOut ? nil : out.pointer,
                                               bad.nullLast ? nil : last.pointer, nil,
                                               w, bytes, pl)
                        case .bwd:
                            return kl_scan_bwd(pp2, im, &ins, bad.nullDout ? nil : dout.pointer, nil, nil, &gr,
                                               w, bytes, pl)
                        }
                    }
                    let msg = lastError()
                    let name = String(cString: kl_status_name(st))
                    XCTAssertNotEqual(st, KL_OK, "\(what): accepted")
                    XCTAssertFalse(msg.isEmpty, "\(what): status \(name) with an empty kl_last_error()")
                    if let e = bad.expected {
                        XCTAssertEqual(st, e, "\(what): \(name): \(msg)")
                    }
                }
            }
            // Size queries on bad params give 0 rather than a bogus size.
            if let mutate = bad.params {
                var p = c.params
                mutate(&p)
                XCTAssertNotEqual(kl_scan_check(&p), KL_OK, "\(bad.name): kl_scan_check")
                for impl in ScanImpl.allCases {
                    XCTAssertEqual(kl_scan_fwd_workspace_bytes(&p, impl.c, 1), 0, "\(bad.name): fwd workspace")
                    XCTAssertEqual(kl_scan_bwd_workspace_bytes(&p, impl.c, 1), 0, "\(bad.name): bwd workspace")
                }
                XCTAssertEqual(kl_scan_saved_count(&p), 0, "\(bad.name): saved count")
            }
        }
        XCTAssertEqual(kl_scan_fwd_workspace_bytes(&good, KL_IMPL_FUSED, 0), 0, "threads 0")
        XCTAssert(out.guardsIntact && last.guardsIntact && gbufs.allSatisfy(\.guardsIntact))
        try kin.checkUnchanged("bad calls")
        withExtendedLifetime(dout) {}
    }
}

/// Adds to one element of an input and returns its new value.
private typealias ScanBump = (inout ScanInputs, Int, Float) -> Float

/// The chunk the kernels use for c (the forced one, else the documented default).
private func defaultChunk(_ c: ScanCase) -> Int32 {
    if let t = c.tiles { return Int32(t.chunk) }
    var p = c.params
    var t = kl_scan_tiles()
    kl_scan_default_tiles(&p, &t)
    return t.chunk
}
