import Foundation
@testable import KernelLab
import XCTest

/// The inputs of one small scan, every optional input given.
private struct ScanArrays {
    var u, delta, A, B, C, D, z, deltaBias, h0: Tensor

    /// B = 2, D = 4, L = 5, N = 3 and `groups` groups; B and C rank 3 when `rank3`.
    init(groups: Int = 2, rank3: Bool = false, seed: UInt64 = 1) throws {
        let (b, d, l, n) = (2, 4, 5, 3)
        let projection = rank3 ? [b, n, l] : [b, groups, n, l]
        u = try Tensor.random(shape: [b, d, l], seed: seed)
        delta = try Tensor.random(shape: [b, d, l], seed: seed + 1, range: -2...1)
        A = try Tensor.random(shape: [d, n], seed: seed + 2, range: -2 ... -0.1)
        B = try Tensor.random(shape: projection, seed: seed + 3)
        C = try Tensor.random(shape: projection, seed: seed + 4)
        D = try Tensor.random(shape: [d], seed: seed + 5)
        z = try Tensor.random(shape: [b, d, l], seed: seed + 6)
        deltaBias = try Tensor.random(shape: [d], seed: seed + 7, range: -1...0.5)
        h0 = try Tensor.random(shape: [b, d, n], seed: seed + 8)
    }
}

/// Plain float64 scan, straight from the definition.
private func naiveScan(_ x: ScanArrays, softplus: Bool) -> (out: [Float], last: [Float]) {
    let (b, d, l, n) = (x.u.shape[0], x.u.shape[1], x.u.shape[2], x.A.shape[1])
    let groups = x.B.rank == 4 ? x.B.shape[1] : 1
    let (u, dt, a, bm, c) = (x.u.toArray(), x.delta.toArray(), x.A.toArray(), x.B.toArray(), x.C.toArray())
    let (dv, z, bias, h0) = (x.D.toArray(), x.z.toArray(), x.deltaBias.toArray(), x.h0.toArray())
    var out = [Float](repeating: 0, count: b * d * l)
    var last = [Float](repeating: 0, count: b * d * n)
    for bi in 0..<b {
        for di in 0..<d {
            let g = di / (d / groups)
            var h = (0..<n).map { Double(h0[(bi * d + di) * n + $0]) }
            for t in 0..<l {
                let row = (bi * d + di) * l + t
                var step = Double(dt[row]) + Double(bias[di])
                if softplus { step = log1p(exp(step)) }
                var y = Double(dv[di]) * Double(u[row])
                for s in 0..<n {
                    let p = ((bi * groups + g) * n + s) * l + t
                    h[s] = exp(step * Double(a[di * n + s])) * h[s] + step * Double(bm[p]) * Double(u[row])
                    y += Double(c[p]) * h[s]
                }
                let gate = Double(z[row])
                out[row] = Float(y * gate / (1 + exp(-gate)))
            }
            for s in 0..<n { last[(bi * d + di) * n + s] = Float(h[s]) }
        }
    }
    return (out, last)
}

/// `|a - b|` at most `tolerance` times the larger magnitude (at least 1).
private func assertScanClose(_ a: Tensor, _ b: Tensor, _ tolerance: Float = 1e-4, _ message: String,
                             file: StaticString = #filePath, line: UInt = #line) {
    let scale = max(1, (a.toArray() + b.toArray()).map(abs).max() ?? 0)
    XCTAssertLessThanOrEqual(try a.maxAbsDifference(b), tolerance * scale, message, file: file, line: line)
}

/// Checks that the Swift wrapper validates arguments and passes the right
/// buffers to the kernels (numerical accuracy is ScanReferenceTests' job).
final class ScanTests: XCTestCase {
    // MARK: - arguments

    func testInputShapesNameTheArgument() throws {
        let x = try ScanArrays()
        XCTAssertThrows(.shapeMismatch(argument: "u", expected: "(B, D, L) with every size positive", got: "(2, 20)"),
                        try Scan.forward(u: x.u.reshaped([2, 20]), delta: x.delta, A: x.A, B: x.B, C: x.C))
        XCTAssertThrows(.shapeMismatch(argument: "delta", expected: "(B=2, D=4, L=5), the shape of u", got: "(2, 5, 4)"),
                        try Scan.forward(u: x.u, delta: x.delta.reshaped([2, 5, 4]), A: x.A, B: x.B, C: x.C))
        XCTAssertThrows(.shapeMismatch(argument: "A", expected: "(D=4, N) with 1 <= N <= 1024", got: "(3, 4)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A.reshaped([3, 4]), B: x.B, C: x.C))
        XCTAssertThrows(.shapeMismatch(argument: "B", expected: "(B=2, G, N=3, L=5) with G dividing D=4, or (B=2, N=3, L=5)",
                                       got: "(2, 3, 3, 5)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: Tensor(shape: [2, 3, 3, 5]), C: x.C))
        XCTAssertThrows(.shapeMismatch(argument: "B", expected: "(B=2, G, N=3, L=5) with G dividing D=4, or (B=2, N=3, L=5)",
                                       got: "(2, 2, 5, 3)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B.reshaped([2, 2, 5, 3]), C: x.C))
        // Two groups: C must have them too, the rank-3 form is for one group only.
        XCTAssertThrows(.shapeMismatch(argument: "C", expected: "(B=2, G=2, N=3, L=5)", got: "(2, 6, 5)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C.reshaped([2, 6, 5])))
        XCTAssertThrows(.shapeMismatch(argument: "D", expected: "(D=4,)", got: "(2, 2)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D.reshaped([2, 2])))
        XCTAssertThrows(.shapeMismatch(argument: "z", expected: "(B=2, D=4, L=5), the shape of u", got: "(2, 4, 4)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, z: Tensor(shape: [2, 4, 4])))
        XCTAssertThrows(.shapeMismatch(argument: "deltaBias", expected: "(D=4,)", got: "(5,)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, deltaBias: Tensor(shape: [5])))
        XCTAssertThrows(.shapeMismatch(argument: "h0", expected: "(B=2, D=4, N=3)", got: "(2, 3, 4)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, h0: x.h0.reshaped([2, 3, 4])))

        // One group: (B, N, L) and (B, 1, N, L) are both accepted, mixed too.
        let one = try ScanArrays(groups: 1)
        let shape = try Scan.shape(u: one.u, delta: one.delta, A: one.A, B: one.B.reshaped([2, 3, 5]), C: one.C)
        XCTAssertEqual(shape, try ScanShape(batch: 2, channels: 4, seqLen: 5, state: 3, groups: 1))
        XCTAssertThrows(.shapeMismatch(argument: "C", expected: "(B=2, G=1, N=3, L=5)", got: "(2, 1, 5, 3)"),
                        try Scan.forward(u: one.u, delta: one.delta, A: one.A, B: one.B, C: one.C.reshaped([2, 1, 5, 3])))
    }

    func testShapeAndOptionValidation() throws {
        XCTAssertThrows(.invalidArgument(argument: "groups", reason: "must divide channels (4), got 3"),
                        try ScanShape(batch: 1, channels: 4, seqLen: 8, state: 2, groups: 3))
        XCTAssertThrows(.invalidArgument(argument: "state", reason: "must be at most 1024, got 2048"),
                        try ScanShape(batch: 1, channels: 4, seqLen: 8, state: 2048))
        XCTAssertThrows(.invalidArgument(argument: "seqLen", reason: "must be positive, got 0"),
                        try ScanShape(batch: 1, channels: 4, seqLen: 0, state: 2))
        let shape = try ScanShape(batch: 1, channels: 4, seqLen: 8, state: 2)
        XCTAssertThrows(.invalidArgument(argument: "threads", reason: "must be in 1...256, got 0"),
                        try Scan.workspaceBytes(shape: shape, threads: 0))
        XCTAssertEqual(shape.description, "1x4x8x2x1")
    }

    func testOutputShapesGradientsAndAliasing() throws {
        let x = try ScanArrays()
        let shape = try Scan.shape(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C)
        let out = try Tensor(shape: [2, 4, 5])
        let last = try Tensor(shape: [2, 4, 3])
        XCTAssertThrows(.shapeMismatch(argument: "out", expected: "(B=2, D=4, L=5)", got: "(2, 4, 3)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, into: last, lastState: last))
        XCTAssertThrows(.shapeMismatch(argument: "lastState", expected: "(B=2, D=4, N=3)", got: "(2, 4, 5)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, into: out, lastState: x.u))
        let saved = Scan.savedStatesShape(shape)
        XCTAssertEqual(saved[0], 2)
        XCTAssertEqual(saved[1], 4)
        XCTAssertEqual(saved[3], 3)
        XCTAssertThrows(.shapeMismatch(argument: "saved", expected: "(B=2, D=4, chunks=\(saved[2]), N=3)", got: "(2, 4, 3)"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, into: out, lastState: last,
                                         saved: Tensor(shape: [2, 4, 3])))
        XCTAssertThrows(.invalidArgument(argument: "out", reason: "must not share memory with 'z'"),
                        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, z: x.z, into: x.z, lastState: last))

        let gradOut = try Tensor(shape: [2, 4, 5])
        XCTAssertThrows(.shapeMismatch(argument: "gradOut", expected: "(B=2, D=4, L=5)", got: "(2, 4, 3)"),
                        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, gradOut: last))
        XCTAssertThrows(.shapeMismatch(argument: "gradLast", expected: "(B=2, D=4, N=3)", got: "(2, 4, 5)"),
                        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, gradOut: gradOut, gradLast: gradOut))
        let (du, ddelta, dA) = (try Tensor(shape: [2, 4, 5]), try Tensor(shape: [2, 4, 5]), try Tensor(shape: [4, 3]))
        let (dB, dC) = (try Tensor(shape: x.B.shape), try Tensor(shape: x.C.shape))
        XCTAssertThrows(.shapeMismatch(argument: "dB", expected: "(2, 2, 3, 5), the shape of B", got: "(2, 6, 5)"),
                        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, gradOut: gradOut,
                                          into: du, ddelta: ddelta, dA: dA, dB: dB.reshaped([2, 6, 5]), dC: dC))
        XCTAssertThrows(.invalidArgument(argument: "dD", reason: "is required because D is given"),
                        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, gradOut: gradOut,
                                          into: du, ddelta: ddelta, dA: dA, dB: dB, dC: dC))
        XCTAssertThrows(.invalidArgument(argument: "dz", reason: "must be nil because z is not given"),
                        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, gradOut: gradOut,
                                          into: du, ddelta: ddelta, dA: dA, dB: dB, dC: dC, dz: Tensor(shape: [2, 4, 5])))
        XCTAssertThrows(.invalidArgument(argument: "dC", reason: "must not share memory with 'dB'"),
                        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, gradOut: gradOut,
                                          into: du, ddelta: ddelta, dA: dA, dB: dB, dC: dB))
        XCTAssertThrows(.invalidArgument(argument: "du", reason: "must not share memory with 'gradOut'"),
                        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, gradOut: gradOut,
                                          into: gradOut, ddelta: ddelta, dA: dA, dB: dB, dC: dC))
    }

    // MARK: - computation

    func testForwardMatchesNaiveForBothImplementations() throws {
        let pool = try ThreadPool(threads: 2)
        for (groups, rank3) in [(2, false), (1, true)] {
            let x = try ScanArrays(groups: groups, rank3: rank3)
            for softplus in [false, true] {
                let expected = naiveScan(x, softplus: softplus)
                for impl in KernelImpl.allCases {
                    let result = try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z,
                                                  deltaBias: x.deltaBias, h0: x.h0, options: ScanOptions(deltaSoftplus: softplus),
                                                  impl: impl, pool: pool)
                    let label = "\(impl) G=\(groups) softplus=\(softplus)"
                    XCTAssertNil(result.saved, label)
                    assertScanClose(result.out, try Tensor(shape: [2, 4, 5], values: expected.out), 1e-4, label)
                    assertScanClose(result.lastState, try Tensor(shape: [2, 4, 3], values: expected.last), 1e-4, label)
                }
            }
        }
    }

    func testBackwardAgreesAcrossImplementationsAndSavedStates() throws {
        let x = try ScanArrays(groups: 2)
        let options = ScanOptions(deltaSoftplus: true)
        let gradOut = try Tensor.random(shape: [2, 4, 5], seed: 20)
        let gradLast = try Tensor.random(shape: [2, 4, 3], seed: 21)
        let pool = try ThreadPool(threads: 2)
        let forward = try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z,
                                       deltaBias: x.deltaBias, h0: x.h0, options: options, pool: pool, saveStates: true)
        let saved = try XCTUnwrap(forward.saved)
        XCTAssertEqual(saved.shape, Scan.savedStatesShape(try Scan.shape(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C)))
        func backward(_ impl: KernelImpl, saved: Tensor?) throws -> ScanGradients {
            try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z, deltaBias: x.deltaBias,
                              h0: x.h0, gradOut: gradOut, gradLast: gradLast, saved: saved,
                              options: options, impl: impl, pool: pool)
        }
        let fused = try backward(.fused, saved: saved)
        for (label, other) in [("fused, recomputed states", try backward(.fused, saved: nil)),
                               ("unfused", try backward(.unfused, saved: nil))] {
            let pairs: [(String, Tensor, Tensor?)] = [
                ("du", fused.du, other.du), ("ddelta", fused.ddelta, other.ddelta), ("dA", fused.dA, other.dA),
                ("dB", fused.dB, other.dB), ("dC", fused.dC, other.dC), ("dD", try XCTUnwrap(fused.dD), other.dD),
                ("dz", try XCTUnwrap(fused.dz), other.dz), ("ddeltaBias", try XCTUnwrap(fused.ddeltaBias), other.ddeltaBias),
                ("dh0", fused.dh0, other.dh0),
            ]
            for (name, a, b) in pairs {
                assertScanClose(a, try XCTUnwrap(b, name), 1e-4, "\(name): fused vs \(label)")
            }
        }
        XCTAssertEqual(fused.dB.shape, [2, 2, 3, 5])
        XCTAssertTrue(fused.du.allFinite && fused.dA.allFinite && fused.dh0.allFinite)

        // Without the optional inputs, only the required gradients (and dh0) come back.
        let bare = try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, gradOut: gradOut)
        XCTAssertNil(bare.dD)
        XCTAssertNil(bare.dz)
        XCTAssertNil(bare.ddeltaBias)
        XCTAssertEqual(bare.dh0.shape, [2, 4, 3])
    }

    /// The gradients of loss = <out, gradOut> + <last, gradLast> against
    /// central differences through the Swift API: a buffer passed in the
    /// wrong slot would fail here even though both implementations agree.
    func testGradientsMatchFiniteDifferences() throws {
        let x = try ScanArrays(groups: 2, seed: 40)
        let options = ScanOptions(deltaSoftplus: true)
        let gradOut = try Tensor.random(shape: [2, 4, 5], seed: 41)
        let gradLast = try Tensor.random(shape: [2, 4, 3], seed: 42)
        func loss() throws -> Double {
            let f = try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z,
                                     deltaBias: x.deltaBias, h0: x.h0, options: options)
            let a = zip(f.out.toArray(), gradOut.toArray()).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            return zip(f.lastState.toArray(), gradLast.toArray()).reduce(a) { $0 + Double($1.0) * Double($1.1) }
        }
        let grads = try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z,
                                      deltaBias: x.deltaBias, h0: x.h0, gradOut: gradOut, gradLast: gradLast, options: options)
        let checks: [(String, Tensor, Tensor?)] = [
            ("u", x.u, grads.du), ("delta", x.delta, grads.ddelta), ("A", x.A, grads.dA), ("B", x.B, grads.dB),
            ("C", x.C, grads.dC), ("D", x.D, grads.dD), ("z", x.z, grads.dz), ("deltaBias", x.deltaBias, grads.ddeltaBias),
            ("h0", x.h0, grads.dh0),
        ]
        let eps: Float = 1e-2
        for (name, input, gradient) in checks {
            let gradient = try XCTUnwrap(gradient, name)
            for index in [0, input.count / 2 + 1, input.count - 1] {
                let original = input[index]
                input[index] = original + eps
                let plus = try loss()
                input[index] = original - eps
                let minus = try loss()
                input[index] = original
                let numeric = (plus - minus) / (2 * Double(eps))
                let analytic = Double(gradient[index])
                XCTAssertEqual(analytic, numeric, accuracy: 2e-2 + 2e-2 * abs(numeric), "d\(name)[\(index)]")
            }
        }
    }

    func testIntoVariantsWriteTheSameAsAllocating() throws {
        let x = try ScanArrays(groups: 1, rank3: true)
        let options = ScanOptions(deltaSoftplus: true)
        let pool = try ThreadPool(threads: 1)
        let workspace = try Workspace()
        let shape = try Scan.shape(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C)
        let expected = try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D,
                                        options: options, pool: pool, saveStates: true)
        let out = try Tensor(shape: shape.sequenceShape)
        let last = try Tensor(shape: shape.stateShape)
        let saved = try Tensor(shape: Scan.savedStatesShape(shape))
        try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, into: out, lastState: last, saved: saved,
                         options: options, pool: pool, workspace: workspace)
        XCTAssertEqual(out.toArray(), expected.out.toArray())
        XCTAssertEqual(last.toArray(), expected.lastState.toArray())
        XCTAssertEqual(saved.toArray(), try XCTUnwrap(expected.saved).toArray())
        XCTAssertGreaterThanOrEqual(workspace.capacity, try Scan.workspaceBytes(shape: shape, pass: .forward))

        let gradOut = try Tensor.random(shape: shape.sequenceShape, seed: 30)
        let grads = try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, gradOut: gradOut,
                                      saved: saved, options: options, pool: pool)
        let du = try Tensor(shape: shape.sequenceShape), ddelta = try Tensor(shape: shape.sequenceShape)
        let dA = try Tensor(shape: shape.transitionShape), dD = try Tensor(shape: shape.channelShape)
        let dB = try Tensor(shape: [2, 3, 5]), dC = try Tensor(shape: [2, 3, 5])
        try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, gradOut: gradOut, saved: saved,
                          into: du, ddelta: ddelta, dA: dA, dB: dB, dC: dC, dD: dD,
                          options: options, pool: pool, workspace: workspace)
        for (name, a, b) in [("du", grads.du, du), ("ddelta", grads.ddelta, ddelta), ("dA", grads.dA, dA),
                             ("dB", grads.dB, dB), ("dC", grads.dC, dC), ("dD", try XCTUnwrap(grads.dD), dD)] {
            XCTAssertEqual(a.shape, b.shape, name)
            XCTAssertEqual(a.toArray(), b.toArray(), name)
        }
    }

    func testCostFollowsTheConvention() throws {
        let shape = try ScanShape(batch: 2, channels: 8, seqLen: 16, state: 4, groups: 2)
        let elements = 2.0 * 8 * 16
        let forward = try Scan.cost(shape: shape, pass: .forward)
        XCTAssertEqual(forward.flops, elements * (6 * 4 + 8))
        XCTAssertEqual(try Scan.cost(shape: shape, pass: .backward).flops, elements * (18 * 4 + 18))
        XCTAssertGreaterThan(forward.minBytes, 0)
        XCTAssertGreaterThan(try Scan.cost(shape: shape, impl: .unfused).dramBytes, forward.dramBytes)
    }
}

/// ScanBenchmark, ScanRun and the `kernel-lab scan` / `run scan` commands.
/// Nothing here asserts a time.
final class ScanCLITests: TemporaryDirectoryTestCase {
    // MARK: - benchmark

    func testBenchmarkReportAndTable() throws {
        let shape = try ScanShape(batch: 1, channels: 16, seqLen: 8, state: 4, groups: 2)
        let report = try ScanBenchmark(shape: shape, threads: 1, passes: KernelPass.allCases,
                                       warmup: 0, repeats: 2, sgemmSize: 16).run()
        XCTAssertEqual(report.results.map { "\($0.pass.rawValue)/\($0.impl.rawValue)" },
                       ["forward/fused", "forward/unfused", "backward/fused", "backward/unfused"])
        XCTAssertEqual(Set(report.speedups.keys), ["forward", "backward"])
        let savedBytes = Scan.savedStatesShape(shape).reduce(1, *) * 4
        for result in report.results {
            XCTAssertEqual(result.kernel, "scan")
            XCTAssertEqual(result.repeats, 2)
            XCTAssertEqual(result.flops, try Scan.cost(shape: shape, impl: result.impl, pass: result.pass).flops)
            XCTAssertEqual(result.nsPerElement, result.medianSeconds * 1e9 / (16 * 8), accuracy: 1e-9)
            let workspace = try Scan.workspaceBytes(shape: shape, impl: result.impl, pass: result.pass, threads: 1)
            // Only the fused backward reads the forward's saved states.
            let saved = result.pass == .backward && result.impl == .fused ? savedBytes : 0
            XCTAssertEqual(result.peakExtraBytes, workspace + saved, "\(result.pass) \(result.impl)")
        }
        let table = report.table()
        XCTAssertTrue(table.contains("ns/elem") && table.contains("peak extra") && table.contains("1x16x8x4x2"), table)
        XCTAssertTrue(table.contains("speedup fused over unfused: forward"), table)
        XCTAssertThrows(.invalidArgument(argument: "passes", reason: "name at least one pass"),
                        try ScanBenchmark(shape: shape, passes: [], sgemmSize: 8).run())
    }

    func testExecutableScanJSONKeys() throws {
        let run = try launchKernelLab(["scan", "--batch", "1", "--channels", "16", "--seq", "8", "--state", "4",
                                       "--groups", "2", "--threads", "1", "--repeats", "1", "--warmup", "0",
                                       "--sgemm-size", "16", "--pass", "both", "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        XCTAssertNotNil(object["sgemm_gflops"] as? Double)
        XCTAssertEqual(Set((object["speedups"] as? [String: Double])?.keys.map { $0 } ?? []), ["forward", "backward"])
        let results = try XCTUnwrap(object["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, 4)
        let required = ["kernel", "impl", "pass", "threads", "isa", "batch", "channels", "seq", "state", "groups",
                        "median_seconds", "ns_per_element", "gflops", "peak_extra_bytes"]
        for result in results {
            XCTAssertTrue(Set(result.keys).isSuperset(of: required), "missing \(Set(required).subtracting(result.keys))")
            XCTAssertEqual(result["kernel"] as? String, "scan")
            XCTAssertEqual(result["channels"] as? Int, 16)
            XCTAssertEqual(result["seq"] as? Int, 8)
            XCTAssertEqual(result["state"] as? Int, 4)
            XCTAssertEqual(result["groups"] as? Int, 2)
        }

        let bad = try launchKernelLab(["scan", "--batch", "1", "--channels", "6", "--seq", "8", "--state", "4", "--groups", "4"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--groups"), bad.stderr)
    }

    // MARK: - run scan

    /// Writes every input of a (B=2, D=4, L=5, N=3) scan, the output gradients, and returns them.
    @discardableResult
    private func writeInputs(groups: Int = 2) throws -> ScanArrays {
        let x = try ScanArrays(groups: groups)
        for (name, tensor) in [("u", x.u), ("delta", x.delta), ("A", x.A), ("B", x.B), ("C", x.C), ("D", x.D),
                               ("z", x.z), ("delta_bias", x.deltaBias), ("h0", x.h0)] {
            try tensor.save(npyFile: path("\(name).npy"))
        }
        try Tensor.random(shape: [2, 4, 5], seed: 50).save(npyFile: path("dout.npy"))
        try Tensor.random(shape: [2, 4, 3], seed: 51).save(npyFile: path("dlast.npy"))
        return x
    }

    private func runJob(_ configure: (inout ScanRun) -> Void = { _ in }) throws -> ScanRun.Outcome {
        var job = ScanRun(uPath: path("u.npy"), deltaPath: path("delta.npy"), aPath: path("A.npy"),
                          bPath: path("B.npy"), cPath: path("C.npy"), outPath: path("out.npy"))
        configure(&job)
        return try job.execute()
    }

    func testRunRoundTripWritesOutputsAndGradients() throws {
        let x = try writeInputs()
        let grads = path("grads/nested")
        let outcome = try runJob {
            $0.dPath = path("D.npy")
            $0.zPath = path("z.npy")
            $0.deltaBiasPath = path("delta_bias.npy")
            $0.h0Path = path("h0.npy")
            $0.options = ScanOptions(deltaSoftplus: true)
            $0.threads = 2
            $0.lastStatePath = path("last.npy")
            $0.gradOutPath = path("dout.npy")
            $0.gradLastPath = path("dlast.npy")
            $0.gradsDirectory = grads
        }
        let names = ["du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias", "dh0"]
        XCTAssertEqual(outcome.written.map(\.path), [path("out.npy"), path("last.npy")] + names.map { "\(grads)/\($0).npy" })
        XCTAssertEqual(outcome.shape, try ScanShape(batch: 2, channels: 4, seqLen: 5, state: 3, groups: 2))

        let options = ScanOptions(deltaSoftplus: true)
        let forward = try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z,
                                       deltaBias: x.deltaBias, h0: x.h0, options: options)
        XCTAssertLessThan(try Tensor(npyFile: path("out.npy")).maxAbsDifference(forward.out), 1e-5)
        XCTAssertLessThan(try Tensor(npyFile: path("last.npy")).maxAbsDifference(forward.lastState), 1e-5)
        let expected = try Scan.backward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D, z: x.z,
                                         deltaBias: x.deltaBias, h0: x.h0,
                                         gradOut: Tensor(npyFile: path("dout.npy")), gradLast: Tensor(npyFile: path("dlast.npy")),
                                         options: options)
        let tensors: [Tensor?] = [expected.du, expected.ddelta, expected.dA, expected.dB, expected.dC,
                                  expected.dD, expected.dz, expected.ddeltaBias, expected.dh0]
        for (name, tensor) in zip(names, tensors) {
            let written = try Tensor(npyFile: "\(grads)/\(name).npy")
            assertScanClose(written, try XCTUnwrap(tensor), 1e-4, name)
        }

        // Without the optional inputs, only their gradients' files are left out.
        let bare = try runJob {
            $0.gradOutPath = path("dout.npy")
            $0.gradsDirectory = path("bare")
        }
        XCTAssertEqual(bare.written.map(\.path), [path("out.npy")] + names[..<5].map { path("bare/\($0).npy") })
    }

    func testRunValidatesArguments() throws {
        try writeInputs()
        XCTAssertThrows(.invalidArgument(argument: "grads-dir", reason: "grad-out and grads-dir must be given together"),
                        try runJob { $0.gradOutPath = self.path("dout.npy") })
        XCTAssertThrows(.invalidArgument(argument: "grad-last", reason: "needs grad-out and grads-dir"),
                        try runJob { $0.gradLastPath = self.path("dlast.npy") })
        guard case .io(_, let reason)? = kernelLabError(try runJob { $0.lastStatePath = self.path("missing/last.npy") }) else {
            return XCTFail("missing output directory accepted")
        }
        XCTAssertTrue(reason.contains("last-state"), reason)

        // The command-line spelling of the argument, not the Swift one.
        XCTAssertThrows(.shapeMismatch(argument: "delta-bias", expected: "(D=4,)", got: "(2, 4, 3)"),
                        try runJob { $0.deltaBiasPath = self.path("h0.npy") })
        XCTAssertThrows(.shapeMismatch(argument: "grad-last", expected: "(B=2, D=4, N=3)", got: "(2, 4, 5)"),
                        try runJob {
                            $0.gradOutPath = self.path("dout.npy")
                            $0.gradLastPath = self.path("dout.npy")
                            $0.gradsDirectory = self.path("g")
                        })
        XCTAssertThrows(.shapeMismatch(argument: "C", expected: "(B=2, G=2, N=3, L=5)", got: "(2, 4, 5)"),
                        try runJob { $0.cPath = self.path("u.npy") })
        guard case .io(path("absent.npy"), _)? = kernelLabError(try runJob { $0.aPath = self.path("absent.npy") }) else {
            return XCTFail("missing input accepted")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.npy")))
    }

    func testRunRejectsNonfiniteInputsUnlessAllowed() throws {
        try writeInputs()
        // u[b=0, d=1, t=3]: channel 1 of batch 0 from step 3 on depends on it, nothing else does.
        let u = try Tensor(npyFile: path("u.npy"))
        let poisoned = (0 * 4 + 1) * 5 + 3
        u[poisoned] = .nan
        try u.save(npyFile: path("u.npy"))
        guard case .invalidArgument("u", let reason)? = kernelLabError(try runJob()) else {
            return XCTFail("NaN in u accepted")
        }
        XCTAssertTrue(reason.contains("flat index \(poisoned)"), reason)
        XCTAssertTrue(reason.contains("--allow-nonfinite"), reason)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.npy")))

        for impl in KernelImpl.allCases {
            let outcome = try runJob {
                $0.allowNonfinite = true
                $0.impl = impl
                $0.options = ScanOptions(deltaSoftplus: true)
                $0.dPath = self.path("D.npy")
                $0.zPath = self.path("z.npy")
                $0.lastStatePath = self.path("last.npy")
            }
            XCTAssertEqual(outcome.written.map(\.path), [path("out.npy"), path("last.npy")])
            let out = try Tensor(npyFile: path("out.npy")).toArray()  // (2, 4, 5)
            for index in out.indices {
                let dependsOnNaN = index / 5 == 1 && index % 5 >= 3
                XCTAssertEqual(out[index].isNaN, dependsOnNaN, "\(impl): out[\(index)] = \(out[index])")
                if !dependsOnNaN { XCTAssertTrue(out[index].isFinite, "\(impl): out[\(index)] = \(out[index])") }
            }
            let last = try Tensor(npyFile: path("last.npy")).toArray()  // (2, 4, 3)
            for index in last.indices {
                XCTAssertEqual(last[index].isNaN, index / 3 == 1, "\(impl): last[\(index)] = \(last[index])")
            }
        }
    }

    func testExecutableRunScan() throws {
        let x = try writeInputs(groups: 1)
        try x.B.reshaped([2, 3, 5]).save(npyFile: path("B.npy"))  // the rank-3 form of one group
        let ok = try launchKernelLab(["run", "scan", "--u", path("u.npy"), "--delta", path("delta.npy"), "--A", path("A.npy"),
                                      "--B", path("B.npy"), "--C", path("C.npy"), "--D", path("D.npy"), "--softplus",
                                      "--out", path("out.npy"), "--threads", "1", "--impl", "unfused",
                                      "--grad-out", path("dout.npy"), "--grads-dir", path("g")])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("wrote \(path("g/dD.npy")) (4,)"), ok.stdout)
        let expected = try Scan.forward(u: x.u, delta: x.delta, A: x.A, B: x.B, C: x.C, D: x.D,
                                        options: ScanOptions(deltaSoftplus: true))
        XCTAssertLessThan(try Tensor(npyFile: path("out.npy")).maxAbsDifference(expected.out), 1e-4)
        XCTAssertEqual(try Tensor(npyFile: path("g/dB.npy")).shape, [2, 3, 5])
        XCTAssertEqual(try Tensor(npyFile: path("g/dC.npy")).shape, [2, 1, 3, 5])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("g/dz.npy")))

        let bad = try launchKernelLab(["run", "scan", "--u", path("u.npy"), "--delta", path("delta.npy"), "--A", path("A.npy"),
                                       "--B", path("B.npy"), "--C", path("C.npy"), "--delta-bias", path("h0.npy"),
                                       "--out", path("out2.npy")])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("delta-bias"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out2.npy")))
    }
}

/// The scan's one description (`ScanProblem`), which the benchmark, the
/// roofline runner and the traffic probe time: Mamba's defaults, and a run
/// of either pass that matches the public API called directly.
final class ScanProblemTests: XCTestCase {
    func testInputsAreMambasDefaultsAndBothPassesRun() throws {
        let shape = try ScanShape(batch: 1, channels: 20, seqLen: 37, state: 4)
        let problem = try ScanProblem(shape: shape, seed: 3, backward: true)
        // softplus(delta_bias) in Mamba's dt range [1e-3, 1e-1].
        func softplus(_ x: Float) -> Float { log1p(exp(x)) }
        for b in problem.deltaBias.toArray() {
            XCTAssertTrue(softplus(b) >= 0.99e-3 && softplus(b) <= 1.01e-1, "delta_bias \(b): softplus \(softplus(b))")
        }
        XCTAssertEqual(Array(problem.A.toArray().prefix(4)), [-1, -2, -3, -4])
        XCTAssertTrue(problem.delta.toArray().allSatisfy { ScanProblem.deltaRange.contains($0) })
        let pool = try ThreadPool(threads: 2), workspace = try Workspace()
        for impl in KernelImpl.allCases {
            for pass in KernelPass.allCases {
                try workspace.ensure(bytes: try Scan.workspaceBytes(shape: shape, impl: impl, pass: pass, threads: 2))
            }
            try problem.forward(impl: impl, forBackward: true, pool: pool, workspace: workspace)
            let (out, _, _) = try Scan.forward(u: problem.u, delta: problem.delta, A: problem.A, B: problem.B, C: problem.C,
                                                D: problem.D, z: problem.z, deltaBias: problem.deltaBias,
                                                options: problem.options, impl: impl, pool: pool)
            XCTAssertEqual(problem.out.toArray(), out.toArray(), "\(impl) forward")
            try problem.backward(impl: impl, pool: pool, workspace: workspace)
            XCTAssertTrue(problem.du.toArray().allSatisfy(\.isFinite) && problem.dA.toArray().contains { $0 != 0 }, "\(impl) backward")
        }
    }
}
