import ArgumentParser
import Foundation
import KernelLab

/// `kernel-lab gemm`: what the lab's GEMM entry adds to a bare OpenBLAS call.
struct GEMMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Time kl_gemm against a bare cblas_sgemm of the same product, call by call.",
        discussion: """
            C (m, n) = A (m, k) B (k, n). The two calls alternate, so the overhead (the \
            median of the per-pair time ratios, minus 1) is measured in one run.
            """)

    @Option(help: "Rows of A and C.") var m: Int
    @Option(help: "Columns of B and C.") var n: Int
    @Option(help: "The inner dimension.") var k: Int
    @Option(help: "Threads of both calls (default: all CPUs).") var threads: Int?
    @Option(help: "Timed pairs.") var repeats = 20
    @Option(help: "Untimed pairs first.") var warmup = 2

    func validate() throws {
        try validateThreads(threads)
        for (name, value) in [("--m", m), ("--n", n), ("--k", k), ("--repeats", repeats)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if warmup < 0 { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
    }

    func run() throws {
        let r = try GEMMBenchmark.run(m: m, n: n, k: k, threads: threadsOrAllCPUs(threads), warmup: warmup, repeats: repeats)
        print(String(format: "gemm m=%d n=%d k=%d, %d thread(s), %d pairs: kl_gemm %.4f ms (p10 %.4f, p90 %.4f), "
                     + "bare cblas_sgemm %.4f ms (p10 %.4f, p90 %.4f); overhead %+.2f%%, %.1f GFLOP/s",
                     r.m, r.n, r.k, r.threads, r.gemm.seconds.count, r.gemm.median * 1e3, r.gemm.p10 * 1e3, r.gemm.p90 * 1e3,
                     r.bare.median * 1e3, r.bare.p10 * 1e3, r.bare.p90 * 1e3, r.overhead * 100, r.gflops))
    }
}
