import CKernels

/// A pool of worker threads that runs the kernels (`kl_pool`).
///
/// Workers are created once and pinned round-robin over the CPUs of the NUMA
/// nodes (unless `KERNELLAB_PIN=0`); reuse one pool across calls. The calling
/// thread is worker 0, so `threads: 1` runs everything on the caller. A pool
/// runs one kernel at a time: do not share it between concurrent callers.
public final class ThreadPool {
    /// The largest accepted thread count.
    public static let maxThreads = 256

    /// The number of threads, the caller included.
    public let threads: Int

    private let pool: OpaquePointer

    /// Creates a pool of `threads` threads (the caller counts as one).
    ///
    /// - Throws: `KernelLabError.invalidArgument` unless `threads` is in
    ///   `1...ThreadPool.maxThreads`; `KernelLabError.kernel` if the threads
    ///   cannot be created; `KernelLabError.unsupportedISA` if start-up failed.
    public init(threads: Int) throws {
        guard (1...ThreadPool.maxThreads).contains(threads) else {
            throw KernelLabError.invalidArgument(
                argument: "threads", reason: "must be in 1...\(ThreadPool.maxThreads), got \(threads)")
        }
        try ISA.initialize()
        var created: OpaquePointer?
        try check(kl_pool_create(Int32(threads), &created), "kl_pool_create(\(threads))")
        guard let created else {
            throw KernelLabError.kernel(status: .threads, detail: "kl_pool_create(\(threads)) returned no pool")
        }
        pool = created
        self.threads = threads
    }

    deinit {
        kl_pool_destroy(pool)
    }

    /// Calls `body` with the C pool handle; the handle is valid only inside `body`.
    func withUnsafePool<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(pool) }
    }
}
