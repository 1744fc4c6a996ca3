import CKernels

/// Times OpenBLAS `sgemm` on square matrices: the in-run reference that every
/// GFLOP/s figure is compared with ("fraction of sgemm").
public enum SgemmBenchmark {
    /// The result of timing C = A B for n x n matrices.
    public struct Result: Sendable, Equatable {
        /// The matrix size n.
        public var n: Int
        /// OpenBLAS threads.
        public var threads: Int
        /// The timed runs.
        public var samples: Samples
        /// 2 n^3 over the median time, in GFLOP/s.
        public var gflops: Double
    }

    /// Times `kl_sgemm` for n x n matrices on `threads` threads: `warmup`
    /// untimed calls, then `repeats` timed ones. Inputs are allocated once.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for a bad n, thread count or
    ///   repeat count; `KernelLabError.kernel` if the call fails.
    public static func run(n: Int, threads: Int, warmup: Int = 1, repeats: Int = 5) throws -> Result {
        guard n >= 1, n <= 65_536 else {
            throw KernelLabError.invalidArgument(argument: "n", reason: "must be in 1...65536, got \(n)")
        }
        guard (1...ThreadPool.maxThreads).contains(threads) else {
            throw KernelLabError.invalidArgument(argument: "threads", reason: "must be in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        try ISA.initialize()
        let a = try Tensor.random(shape: [n, n], seed: 0x5EED_A)
        let b = try Tensor.random(shape: [n, n], seed: 0x5EED_B)
        let c = try Tensor(shape: [n, n])
        let size = Int32(n)
        let samples = try Benchmark.measure(warmup: warmup, repeats: repeats) {
            let status = withExtendedLifetime((a, b, c)) {
                kl_sgemm(size, size, size, a.storage.base, b.storage.base, c.storage.base, Int32(threads))
            }
            try check(status, "kl_sgemm(\(n))")
        }
        Benchmark.blackHole(c[0])
        let flops = 2 * Double(n) * Double(n) * Double(n)
        return Result(n: n, threads: threads, samples: samples, gflops: gigaflopsPerSecond(flops: flops, seconds: samples.median))
    }
}

/// FLOPs over seconds in GFLOP/s; 0 for a zero time so that reports stay finite.
func gigaflopsPerSecond(flops: Double, seconds: Double) -> Double {
    seconds > 0 ? flops / seconds / 1e9 : 0
}
