import CKernels

/// What `kl_gemm` costs on top of a bare OpenBLAS call: `GEMM.multiply` and a
/// direct `kl_sgemm` (one `cblas_sgemm`) of the same `(m, k) x (k, n)`
/// product, timed alternately call by call so that drift hits both alike.
public enum GEMMBenchmark {
    /// Both timings and their ratio.
    public struct Result: Sendable, Equatable {
        /// The product's sizes.
        public var m: Int, n: Int, k: Int
        /// Threads of both.
        public var threads: Int
        /// `GEMM.multiply` (shape checks, the pool, `kl_gemm`).
        public var gemm: Samples
        /// `kl_sgemm`: `openblas_set_num_threads`, then `cblas_sgemm`.
        public var bare: Samples
        /// Median of the per-pair ratios gemm / bare, minus 1.
        public var overhead: Double
        /// GFLOP/s of `GEMM.multiply` at its median.
        public var gflops: Double
    }

    /// Times `repeats` pairs after `warmup` untimed ones.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for sizes outside 1...65536,
    ///   a bad thread or repeat count; kernel failures.
    public static func run(m: Int, n: Int, k: Int, threads: Int, warmup: Int = 2, repeats: Int = 20) throws -> Result {
        for (name, value) in [("m", m), ("n", n), ("k", k)] where !(1...65_536).contains(value) {
            throw KernelLabError.invalidArgument(argument: name, reason: "must be in 1...65536, got \(value)")
        }
        guard repeats >= 1, warmup >= 0 else {
            throw KernelLabError.invalidArgument(argument: "repeats", reason: "must be >= 1 (warmup >= 0), got \(repeats)")
        }
        let pool = try ThreadPool(threads: threads)
        let a = try Tensor.random(shape: [m, k], seed: 0x6E33_A)
        let b = try Tensor.random(shape: [k, n], seed: 0x6E33_B)
        let c = try Tensor(shape: [m, n])
        func bare() throws {
            let status = withExtendedLifetime((a, b, c)) {
                kl_sgemm(Int32(m), Int32(n), Int32(k), a.storage.base, b.storage.base, c.storage.base, Int32(threads))
            }
            try check(status, "kl_sgemm")
        }
        let (gemm, bareSamples) = try Benchmark.measureAlternating(warmup: warmup, repeats: repeats, {
            try GEMM.multiply(a, b, into: c, pool: pool)
        }, bare)
        Benchmark.blackHole(c[0])
        let ratios = Samples(seconds: zip(gemm.seconds, bareSamples.seconds).map { $0 / $1 })
        return Result(m: m, n: n, k: k, threads: threads, gemm: gemm, bare: bareSamples,
                      overhead: ratios.median - 1,
                      gflops: gigaflopsPerSecond(flops: 2 * Double(m) * Double(n) * Double(k), seconds: gemm.median))
    }
}
