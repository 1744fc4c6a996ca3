import KernelLab
import XCTest

/// Asserts that `body` throws exactly `expected`.
func XCTAssertThrows<T>(
    _ expected: KernelLabError, _ body: @autoclosure () throws -> T,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        XCTAssertEqual(error as? KernelLabError, expected, file: file, line: line)
    }
}

/// Returns the `KernelLabError` that `body` throws, failing the test if it throws nothing or something else.
func kernelLabError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line) -> KernelLabError? {
    do {
        _ = try body()
        XCTFail("expected a KernelLabError, nothing was thrown", file: file, line: line)
    } catch let error as KernelLabError {
        return error
    } catch {
        XCTFail("expected a KernelLabError, got \(error)", file: file, line: line)
    }
    return nil
}

final class TensorTests: XCTestCase {
    func testZeroFilledShapes() throws {
        let t = try Tensor(shape: [2, 3, 4])
        XCTAssertEqual(t.shape, [2, 3, 4])
        XCTAssertEqual(t.count, 24)
        XCTAssertEqual(t.rank, 3)
        XCTAssertEqual(t.toArray(), [Float](repeating: 0, count: 24))

        let scalar = try Tensor(shape: [])
        XCTAssertEqual(scalar.count, 1)
        XCTAssertEqual(scalar.toArray(), [0])

        let empty = try Tensor(shape: [3, 0, 2])
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(empty.toArray(), [])
        empty.withUnsafeBufferPointer { XCTAssertNotNil($0.baseAddress) }

        XCTAssertEqual(try Tensor(shape: [Int](repeating: 1, count: 8)).count, 1)
    }

    func testStorageIs64ByteAligned() throws {
        for shape in [[1], [3], [5, 7], [0], []] {
            try Tensor(shape: shape).withUnsafeBufferPointer { buffer in
                XCTAssertEqual(Int(bitPattern: buffer.baseAddress) % 64, 0, "shape \(shape)")
            }
        }
    }

    func testShapeValidation() {
        XCTAssertThrows(.invalidArgument(argument: "shape", reason: "dimension 1 of (2, -1) is negative"),
                        try Tensor(shape: [2, -1]))
        XCTAssertThrows(.invalidArgument(argument: "shape", reason: "rank 9 exceeds the maximum of 8 dimensions"),
                        try Tensor(shape: [Int](repeating: 1, count: 9)))
        guard case .invalidArgument("shape", let reason)? = kernelLabError(try Tensor(shape: [Int.max, 2])) else {
            return XCTFail("overflowing shape accepted")
        }
        XCTAssertTrue(reason.contains("too large"), reason)
    }

    func testValuesInitChecksCount() throws {
        let t = try Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        XCTAssertEqual(t.toArray(), [1, 2, 3, 4])
        XCTAssertEqual(t[3], 4)
        XCTAssertThrows(.invalidArgument(argument: "values", reason: "shape (2, 2) needs 4 values, got 3"),
                        try Tensor(shape: [2, 2], values: [1, 2, 3]))
        XCTAssertEqual(try Tensor(shape: [], values: [7]).toArray(), [7])
    }

    func testSubscriptAndBuffers() throws {
        let t = try Tensor(shape: [3])
        t[1] = 2.5
        t.withUnsafeMutableBufferPointer { $0[2] = -1 }
        XCTAssertEqual(t.toArray(), [0, 2.5, -1])
        XCTAssertEqual(t.withUnsafeBufferPointer { $0.reduce(0, +) }, 1.5)
    }

    func testRandomIsDeterministicAndInRange() throws {
        let a = try Tensor.random(shape: [4, 5], seed: 42, range: -2...3)
        let b = try Tensor.random(shape: [4, 5], seed: 42, range: -2...3)
        let c = try Tensor.random(shape: [4, 5], seed: 43, range: -2...3)
        XCTAssertEqual(a.toArray(), b.toArray())
        XCTAssertNotEqual(a.toArray(), c.toArray())
        XCTAssertTrue(a.toArray().allSatisfy { (-2...3).contains($0) })
        XCTAssertGreaterThan(Set(a.toArray()).count, 15)

        var generator = SplitMix64(seed: 0)
        // First outputs of SplitMix64 seeded with 0 (reference values of the algorithm).
        XCTAssertEqual(generator.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(generator.next(), 0x6E78_9E6A_A1B9_65F4)

        XCTAssertThrows(.invalidArgument(argument: "range", reason: "bounds must be finite, got -inf...0.0"),
                        try Tensor.random(shape: [2], range: -Float.infinity...0))
    }

    func testReshapedSharesStorageAndCopyDoesNot() throws {
        let t = try Tensor(shape: [2, 3], values: [0, 1, 2, 3, 4, 5])
        let view = try t.reshaped([3, 2])
        XCTAssertEqual(view.shape, [3, 2])
        XCTAssertTrue(view.sharesStorage(with: t))
        view[0] = 9
        XCTAssertEqual(t[0], 9)

        let copy = try t.copy()
        XCTAssertFalse(copy.sharesStorage(with: t))
        copy[1] = -1
        XCTAssertEqual(t[1], 1)
        XCTAssertEqual(copy.shape, t.shape)

        XCTAssertThrows(.invalidArgument(argument: "shape", reason: "(4, 2) has 8 elements, the tensor (2, 3) has 6"),
                        try t.reshaped([4, 2]))
        XCTAssertEqual(try t.reshaped([6]).shape, [6])
    }

    func testMaxAbsDifference() throws {
        let a = try Tensor(shape: [4], values: [1, 2, -.infinity, 4])
        let b = try Tensor(shape: [4], values: [1.5, 2, -.infinity, 3])
        XCTAssertEqual(try a.maxAbsDifference(b), 1)
        XCTAssertEqual(try a.maxAbsDifference(a), 0)
        let nan = try Tensor(shape: [4], values: [1, .nan, -.infinity, 4])
        XCTAssertTrue(try a.maxAbsDifference(nan).isNaN)
        XCTAssertThrows(.shapeMismatch(argument: "other", expected: "(4,)", got: "(2, 2)"),
                        try a.maxAbsDifference(a.reshaped([2, 2])))
    }

    func testFiniteChecks() throws {
        let t = try Tensor(shape: [3], values: [1, 2, 3])
        XCTAssertTrue(t.allFinite)
        XCTAssertNil(t.firstNonFiniteIndex)
        t[2] = .infinity
        XCTAssertFalse(t.allFinite)
        XCTAssertEqual(t.firstNonFiniteIndex, 2)
        t[1] = .nan
        XCTAssertEqual(t.firstNonFiniteIndex, 1)
    }

    func testWorkspaceGrowsAndStaysAligned() throws {
        let workspace = try Workspace()
        XCTAssertGreaterThanOrEqual(workspace.capacity, 0)
        try workspace.ensure(bytes: 1000)
        XCTAssertGreaterThanOrEqual(workspace.capacity, 1000)
        let capacity = workspace.capacity
        try workspace.ensure(bytes: 10)  // never shrinks
        XCTAssertEqual(workspace.capacity, capacity)
        workspace.withUnsafeMutableRawBufferPointer { buffer in
            XCTAssertEqual(Int(bitPattern: buffer.baseAddress) % 64, 0)
            XCTAssertEqual(buffer.count, capacity)
            buffer.storeBytes(of: 0xAB, toByteOffset: buffer.count - 1, as: UInt8.self)
        }
        XCTAssertThrows(.invalidArgument(argument: "bytes", reason: "must be in 0...\(Int.max - 63), got -1"),
                        try Workspace(bytes: -1))
        XCTAssertThrows(.invalidArgument(argument: "bytes", reason: "must be in 0...\(Int.max - 63), got -2"),
                        try workspace.ensure(bytes: -2))
    }

    func testSamplesStatistics() {
        let samples = Samples(seconds: [5, 1, 4, 2, 3])
        XCTAssertEqual(samples.median, 3)
        XCTAssertEqual(samples.min, 1)
        XCTAssertEqual(samples.max, 5)
        XCTAssertEqual(samples.mean, 3)
        XCTAssertEqual(samples.p10, 1.4, accuracy: 1e-12)
        XCTAssertEqual(samples.p90, 4.6, accuracy: 1e-12)
        XCTAssertEqual(Samples(seconds: [2]).median, 2)
    }

    func testMeasureRunsWarmupAndRepeats() throws {
        var calls = 0
        let samples = try Benchmark.measure(warmup: 2, repeats: 3) { calls += 1 }
        XCTAssertEqual(calls, 5)
        XCTAssertEqual(samples.seconds.count, 3)
        XCTAssertTrue(samples.seconds.allSatisfy { $0 >= 0 })
        Benchmark.blackHole(samples)
        XCTAssertThrows(.invalidArgument(argument: "repeats", reason: "must be >= 1, got 0"),
                        try Benchmark.measure(warmup: 0, repeats: 0) {})
        XCTAssertThrows(.invalidArgument(argument: "warmup", reason: "must be >= 0, got -1"),
                        try Benchmark.measure(warmup: -1, repeats: 1) {})
    }

    func testFormatBytes() {
        XCTAssertEqual(formatBytes(0), "0 B")
        XCTAssertEqual(formatBytes(1023), "1023 B")
        XCTAssertEqual(formatBytes(1024), "1.0 KiB")
        XCTAssertEqual(formatBytes(1_258_291), "1.2 MiB")
        XCTAssertEqual(formatBytes(3 << 30), "3.0 GiB")
    }
}
