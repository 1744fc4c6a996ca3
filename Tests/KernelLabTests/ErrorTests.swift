import KernelLab
import XCTest

final class ErrorTests: XCTestCase {
    func testDescriptionsNameTheArgument() {
        XCTAssertEqual(
            KernelLabError.shapeMismatch(argument: "k", expected: "(B=2, H=4, Lk, d=64)", got: "(2, 4, 100, 32)").description,
            "argument 'k' has shape (2, 4, 100, 32); expected (B=2, H=4, Lk, d=64)")
        XCTAssertEqual(KernelLabError.invalidArgument(argument: "threads", reason: "must be in 1...256, got 0").description,
                       "invalid argument 'threads': must be in 1...256, got 0")
        XCTAssertEqual(KernelLabError.npy(path: "a.npy", reason: "bad magic").description, "cannot read 'a.npy' as .npy: bad magic")
        XCTAssertEqual(KernelLabError.kernel(status: .shape, detail: "q and k differ").description,
                       "kernel failed with KL_ERR_SHAPE: q and k differ")
        XCTAssertEqual(KernelStatus.unknown(42).description, "kl_status(42)")
    }

    func testISAParsing() throws {
        XCTAssertEqual(try ISA(parsing: "avx2"), .avx2)
        XCTAssertEqual(try ISA(parsing: "AVX512"), .avx512)
        XCTAssertEqual(try ISA(parsing: "scalar"), .scalar)
        XCTAssertThrows(.invalidArgument(argument: "isa", reason: "unknown ISA 'sse9'; expected one of scalar, avx2, avx512"),
                        try ISA(parsing: "sse9"))
        XCTAssertThrows(.invalidArgument(argument: "--isa", reason: "unknown ISA ''; expected one of scalar, avx2, avx512"),
                        try ISA(parsing: "", argument: "--isa"))
    }

    func testISAQueriesAndSwitching() throws {
        XCTAssertTrue(ISA.scalar.isSupported)
        XCTAssertTrue(ISA.supported.contains(.scalar))
        let active = try ISA.active
        XCTAssertTrue(active.isSupported)
        defer { try? ISA.set(active) }
        try ISA.set(.scalar)
        XCTAssertEqual(try ISA.active, .scalar)
        for isa in ISA.allCases where !isa.isSupported {
            guard case .unsupportedISA(isa.rawValue, _)? = kernelLabError(try ISA.set(isa)) else {
                return XCTFail("unsupported \(isa) accepted")
            }
        }
    }

    func testSystemInfo() throws {
        let info = try SystemInfo.current()
        XCTAssertGreaterThanOrEqual(info.cpuCount, 1)
        XCTAssertGreaterThanOrEqual(info.numaNodes, 1)
        XCTAssertTrue(info.supportedISAs.contains(info.activeISA))
        XCTAssertFalse(info.cpuModel.isEmpty)
        let json = try JSONSerialization.jsonObject(with: Data(try info.json().utf8)) as? [String: Any]
        XCTAssertEqual(Set(json?.keys.map { $0 } ?? []),
                       ["cpu_model", "isa", "supported_isas", "cpu_count", "numa_nodes", "blas_config", "blas_core", "cache_bytes"])
        XCTAssertTrue(info.table().contains("numa nodes"))
    }

    func testThreadCountValidation() throws {
        for bad in [0, -1, 257] {
            XCTAssertThrows(.invalidArgument(argument: "threads", reason: "must be in 1...256, got \(bad)"),
                            try ThreadPool(threads: bad))
        }
        XCTAssertEqual(try ThreadPool(threads: 2).threads, 2)
        XCTAssertThrows(.invalidArgument(argument: "threads", reason: "must be in 1...256, got 0"),
                        try Attention.workspaceBytes(shape: AttentionShape(batch: 1, heads: 1, queryLength: 1, keyLength: 1, headDim: 1), threads: 0))
    }

    func testAttentionShapeValidation() throws {
        XCTAssertThrows(.invalidArgument(argument: "heads", reason: "must be positive, got 0"),
                        try AttentionShape(batch: 1, heads: 0, queryLength: 1, keyLength: 1, headDim: 1))
        XCTAssertThrows(.invalidArgument(argument: "headDim", reason: "\(Int(Int32.max) + 1) exceeds the C API limit of \(Int32.max)"),
                        try AttentionShape(batch: 1, heads: 1, queryLength: 1, keyLength: 1, headDim: Int(Int32.max) + 1))
        XCTAssertThrows(.invalidArgument(argument: "headDim", reason: "must be at most 1024, got 2048"),
                        try AttentionShape(batch: 1, heads: 1, queryLength: 1, keyLength: 1, headDim: 2048))
    }
}

/// Shape errors are raised in Swift before any kernel runs.
final class AttentionArgumentTests: XCTestCase {
    private let b = 2, h = 3, lq = 5, lk = 7, d = 4

    private func tensors() throws -> (q: Tensor, k: Tensor, v: Tensor) {
        (try Tensor.random(shape: [b, h, lq, d], seed: 1),
         try Tensor.random(shape: [b, h, lk, d], seed: 2),
         try Tensor.random(shape: [b, h, lk, d], seed: 3))
    }

    func testInputShapesNameTheArgument() throws {
        let (q, k, v) = try tensors()
        XCTAssertThrows(.shapeMismatch(argument: "q", expected: "(B, H, Lq, d) with every size positive", got: "(2, 3, 20)"),
                        try Attention.forward(q: q.reshaped([2, 3, 20]), k: k, v: v))
        XCTAssertThrows(.shapeMismatch(argument: "q", expected: "(B, H, Lq, d) with every size positive", got: "(2, 3, 0, 4)"),
                        try Attention.forward(q: Tensor(shape: [2, 3, 0, 4]), k: k, v: v))
        XCTAssertThrows(.shapeMismatch(argument: "k", expected: "(B=2, H=3, Lk, d=4) with Lk positive", got: "(2, 3, 14, 2)"),
                        try Attention.forward(q: q, k: k.reshaped([2, 3, 14, 2]), v: v))
        XCTAssertThrows(.shapeMismatch(argument: "k", expected: "(B=2, H=3, Lk, d=4) with Lk positive", got: "(1, 6, 7, 4)"),
                        try Attention.forward(q: q, k: k.reshaped([1, 6, 7, 4]), v: v))
        XCTAssertThrows(.shapeMismatch(argument: "v", expected: "(B=2, H=3, Lk=7, d=4), the shape of k", got: "(2, 3, 7, 2, 2)"),
                        try Attention.forward(q: q, k: k, v: v.reshaped([2, 3, 7, 2, 2])))
        XCTAssertThrows(.shapeMismatch(argument: "v", expected: "(B=2, H=3, Lk=7, d=4), the shape of k", got: "(2, 3, 6, 4)"),
                        try Attention.forward(q: q, k: k, v: Tensor(shape: [2, 3, 6, 4])))
    }

    func testOptionsNameTheArgument() throws {
        let (q, k, v) = try tensors()
        XCTAssertThrows(.shapeMismatch(argument: "alibiSlopes", expected: "(H=3,)", got: "(2,)"),
                        try Attention.forward(q: q, k: k, v: v, options: AttentionOptions(alibiSlopes: [0.5, 0.25])))
        XCTAssertThrows(.invalidArgument(argument: "alibiSlopes", reason: "slope 1 is nan; slopes must be finite"),
                        try Attention.forward(q: q, k: k, v: v, options: AttentionOptions(alibiSlopes: [0.5, .nan, 1])))
        XCTAssertThrows(.shapeMismatch(argument: "windows", expected: "(H=3,)", got: "(4,)"),
                        try Attention.forward(q: q, k: k, v: v, options: AttentionOptions(windows: [1, 2, 3, 4])))
        XCTAssertThrows(.invalidArgument(argument: "scale", reason: "must be finite and positive, got 0.0"),
                        try Attention.forward(q: q, k: k, v: v, options: AttentionOptions(scale: 0)))
        XCTAssertThrows(.invalidArgument(argument: "scale", reason: "must be finite and positive, got inf"),
                        try Attention.cost(shape: Attention.shape(q: q, k: k, v: v), options: AttentionOptions(scale: .infinity)))
    }

    func testOutputShapesAndAliasing() throws {
        let (q, k, v) = try tensors()
        let out = try Tensor(shape: [b, h, lq, d])
        let lse = try Tensor(shape: [b, h, lq])
        XCTAssertThrows(.shapeMismatch(argument: "out", expected: "(B=2, H=3, Lq=5, d=4)", got: "(2, 3, 5, 5)"),
                        try Attention.forward(q: q, k: k, v: v, into: Tensor(shape: [b, h, lq, 5]), lse: lse))
        XCTAssertThrows(.shapeMismatch(argument: "lse", expected: "(B=2, H=3, Lq=5)", got: "(2, 3, 5, 1)"),
                        try Attention.forward(q: q, k: k, v: v, into: out, lse: lse.reshaped([b, h, lq, 1])))
        XCTAssertThrows(.invalidArgument(argument: "out", reason: "must not share memory with 'q'"),
                        try Attention.forward(q: q, k: k, v: v, into: q, lse: lse))
    }

    func testBackwardShapesNameTheArgument() throws {
        let (q, k, v) = try tensors()
        let out = try Tensor(shape: [b, h, lq, d])
        let lse = try Tensor(shape: [b, h, lq])
        let gradOut = try Tensor(shape: [b, h, lq, d])
        XCTAssertThrows(.shapeMismatch(argument: "gradOut", expected: "(B=2, H=3, Lq=5, d=4)", got: "(2, 3, 7, 4)"),
                        try Attention.backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: Tensor(shape: [b, h, lk, d])))
        XCTAssertThrows(.shapeMismatch(argument: "lse", expected: "(B=2, H=3, Lq=5)", got: "(2, 3, 7)"),
                        try Attention.backward(q: q, k: k, v: v, out: out, lse: Tensor(shape: [b, h, lk]), gradOut: gradOut))
        let dq = try Tensor(shape: [b, h, lq, d])
        let dk = try Tensor(shape: [b, h, lk, d])
        let dv = try Tensor(shape: [b, h, lk, d])
        XCTAssertThrows(.shapeMismatch(argument: "dk", expected: "(B=2, H=3, Lk=7, d=4)", got: "(2, 3, 5, 4)"),
                        try Attention.backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: gradOut,
                                               into: dq, dk: Tensor(shape: [b, h, lq, d]), dv: dv))
        XCTAssertThrows(.invalidArgument(argument: "dv", reason: "must not share memory with 'dk'"),
                        try Attention.backward(q: q, k: k, v: v, out: out, lse: lse, gradOut: gradOut,
                                               into: dq, dk: dk, dv: dk))
    }
}
