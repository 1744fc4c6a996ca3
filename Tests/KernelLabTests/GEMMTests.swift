import CKernels
import KernelLab
import XCTest

/// `kl_gemm` / `GEMM.multiply` against a float64 reference: every transpose
/// combination, alpha and beta (beta = 1 accumulates, beta = 0 ignores what
/// c held), ragged and empty sizes, leading dimensions wider than a row, and
/// bad input named by argument. Nothing is timed.
final class GEMMTests: XCTestCase {
    private func random(_ shape: [Int], _ rng: inout ReferenceRNG) throws -> Tensor {
        try Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float(rng.uniform()) })
    }

    /// c = alpha op(a) op(b) + beta c0 in float64; a is (ar, ac) row-major.
    private func reference(_ a: [Float], _ ac: Int, transposeA: Bool, _ b: [Float], _ bc: Int, transposeB: Bool,
                           m: Int, n: Int, k: Int, alpha: Double, beta: Double, c0: [Float]) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = transposeA ? a[p * ac + i] : a[i * ac + p]
                    let y = transposeB ? b[j * bc + p] : b[p * bc + j]
                    sum += Double(x) * Double(y)
                }
                c[i * n + j] = alpha * sum + (beta == 0 ? 0 : beta * Double(c0[i * n + j]))
            }
        }
        return c
    }

    func testEveryTransposeAlphaBetaAndRaggedSize() throws {
        var rng = ReferenceRNG(seed: 0x6E33)
        let pool = try ThreadPool(threads: 2)
        for (m, n, k) in [(1, 1, 1), (7, 13, 5), (33, 17, 65), (64, 48, 96)] {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (-2, 0.25)] {
                        let a = try random(transposeA ? [k, m] : [m, k], &rng)
                        let b = try random(transposeB ? [n, k] : [k, n], &rng)
                        let c = try random([m, n], &rng)
                        let c0 = c.toArray()
                        try GEMM.multiply(a, transposeA: transposeA, b, transposeB: transposeB, into: c,
                                          alpha: alpha, beta: beta, pool: pool)
                        let want = reference(a.toArray(), a.shape[1], transposeA: transposeA, b.toArray(), b.shape[1],
                                             transposeB: transposeB, m: m, n: n, k: k,
                                             alpha: Double(alpha), beta: Double(beta), c0: c0)
                        let got = c.toArray()
                        let what = "m=\(m) n=\(n) k=\(k) ta=\(transposeA) tb=\(transposeB) alpha=\(alpha) beta=\(beta)"
                        for index in 0..<got.count {
                            XCTAssertEqual(Double(got[index]), want[index], accuracy: 1e-5 * Double(k) + 1e-6, what)
                        }
                    }
                }
            }
        }
    }

    /// beta = 0 writes c without reading it: a NaN left there does not leak.
    func testBetaZeroIgnoresWhatCHeld() throws {
        let a = try Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        let b = try Tensor(shape: [2, 2], values: [1, 0, 0, 1])
        let c = try Tensor(shape: [2, 2], values: [.nan, .infinity, .nan, -.infinity])
        try GEMM.multiply(a, b, into: c)
        XCTAssertEqual(c.toArray(), [1, 2, 3, 4])
        // beta = 1 twice: the sum of both products (gradient accumulation).
        try GEMM.multiply(a, b, into: c, beta: 1)
        XCTAssertEqual(c.toArray(), [2, 4, 6, 8])
    }

    /// Empty sizes: m or n = 0 touches nothing; k = 0 leaves beta c.
    func testEmptySizes() throws {
        let pool = try ThreadPool(threads: 1)
        let c = try Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        try GEMM.multiply(try Tensor(shape: [2, 0]), try Tensor(shape: [0, 3]), into: c, beta: 0.5, pool: pool)
        XCTAssertEqual(c.toArray(), [0.5, 1, 1.5, 2, 2.5, 3])
        try GEMM.multiply(try Tensor(shape: [2, 0]), try Tensor(shape: [0, 3]), into: c, pool: pool)
        XCTAssertEqual(c.toArray(), [0, 0, 0, 0, 0, 0])
        try GEMM.multiply(try Tensor(shape: [0, 4]), try Tensor(shape: [4, 3]), into: try Tensor(shape: [0, 3]), pool: pool)
    }

    /// Leading dimensions wider than the row (a block of a larger matrix),
    /// through the C API, which Swift tensors do not need yet.
    func testLeadingDimensionsThroughTheCAPI() throws {
        var rng = ReferenceRNG(seed: 0x1D)
        let (m, n, k, lda, ldb, ldc) = (5, 6, 7, 11, 9, 8)
        let a = (0..<(m * lda)).map { _ in Float(rng.uniform()) }
        let b = (0..<(k * ldb)).map { _ in Float(rng.uniform()) }
        var c = [Float](repeating: 7, count: m * ldc)
        var created: OpaquePointer?
        XCTAssertEqual(kl_pool_create(1, &created), KL_OK)
        let pool = try XCTUnwrap(created)
        defer { kl_pool_destroy(pool) }
        let status = kl_gemm(KL_NO_TRANS, KL_NO_TRANS, Int32(m), Int32(n), Int32(k), 1, a, lda, b, ldb, 0, &c, ldc, pool)
        XCTAssertEqual(status, KL_OK)
        for i in 0..<m {
            for j in 0..<ldc {
                if j >= n {
                    XCTAssertEqual(c[i * ldc + j], 7, "columns past n are left alone")
                    continue
                }
                let want = (0..<k).reduce(0.0) { $0 + Double(a[i * lda + $1]) * Double(b[$1 * ldb + j]) }
                XCTAssertEqual(Double(c[i * ldc + j]), want, accuracy: 1e-5)
            }
        }
        // A leading dimension under the row, and c overlapping a, are errors with a detail.
        let short = kl_gemm(KL_NO_TRANS, KL_NO_TRANS, Int32(m), Int32(n), Int32(k), 1, a, k - 1, b, ldb, 0, &c, ldc, pool)
        XCTAssertEqual(short, KL_ERR_SHAPE)
        XCTAssertTrue(String(cString: kl_last_error()).contains("lda = 6, expected >= 7"), String(cString: kl_last_error()))
        var shared = a
        let overlap = shared.withUnsafeMutableBufferPointer { buffer in
            kl_gemm(KL_NO_TRANS, KL_NO_TRANS, Int32(m), Int32(n), Int32(k), 1, buffer.baseAddress, lda, b, ldb, 0,
                    buffer.baseAddress! + 2, ldc, pool)
        }
        XCTAssertEqual(overlap, KL_ERR_INVALID_ARGUMENT)
        XCTAssertTrue(String(cString: kl_last_error()).contains("c overlaps a"), String(cString: kl_last_error()))
    }

    func testBadShapesAreNamed() throws {
        let a = try Tensor(shape: [3, 4]), b = try Tensor(shape: [4, 5]), c = try Tensor(shape: [3, 5])
        XCTAssertThrows(.shapeMismatch(argument: "a", expected: "(m, k)", got: "(12,)"),
                        try GEMM.multiply(try a.reshaped([12]), b, into: c))
        XCTAssertThrows(.shapeMismatch(argument: "b", expected: "(k=4, n)", got: "(5, 4)"),
                        try GEMM.multiply(a, try Tensor(shape: [5, 4]), into: c))
        XCTAssertThrows(.shapeMismatch(argument: "b", expected: "(n, k=3)", got: "(4, 5)"),
                        try GEMM.multiply(a, transposeA: true, b, transposeB: true, into: try Tensor(shape: [4, 4])))
        XCTAssertThrows(.shapeMismatch(argument: "c", expected: "(m=3, n=5)", got: "(5, 3)"),
                        try GEMM.multiply(a, b, into: try Tensor(shape: [5, 3])))
        XCTAssertThrows(.invalidArgument(argument: "c", reason: "must not share memory with 'a'"),
                        try GEMM.multiply(a, try Tensor(shape: [4, 4]), into: a))
    }

    func testCostModel() throws {
        let cost = try GEMM.cost(m: 4, n: 5, k: 6, beta: 1)
        XCTAssertEqual(cost.flops, 2 * 4 * 5 * 6)
        XCTAssertEqual(cost.minBytes, 4 * Double(4 * 6 + 6 * 5 + 2 * 4 * 5))
        XCTAssertEqual(try GEMM.cost(m: 4, n: 5, k: 6).minBytes, 4 * Double(4 * 6 + 6 * 5 + 4 * 5))
        XCTAssertThrows(.invalidArgument(argument: "k", reason: "must be in 0...2147483647, got -1"), try GEMM.cost(m: 1, n: 1, k: -1))
    }

    /// The overhead benchmark runs and reports what it timed (no time is asserted).
    func testOverheadBenchmarkReportsBothSides() throws {
        let result = try GEMMBenchmark.run(m: 8, n: 9, k: 10, threads: 1, warmup: 0, repeats: 3)
        XCTAssertEqual(result.gemm.seconds.count, 3)
        XCTAssertEqual(result.bare.seconds.count, 3)
        XCTAssertTrue(result.overhead.isFinite && result.gflops.isFinite && result.gflops > 0)
        XCTAssertThrows(.invalidArgument(argument: "k", reason: "must be in 1...65536, got 0"),
                        try GEMMBenchmark.run(m: 8, n: 8, k: 0, threads: 1))
    }
}
