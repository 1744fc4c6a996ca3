import CKernels

/// A streaming kernel of the bandwidth ceilings, with STREAM's byte counts.
public enum BandwidthKernel: String, CaseIterable, Codable, Sendable {
    /// `s += a[i]`: 4 bytes per float.
    case read
    /// `b[i] = a[i]`: 8 bytes per float.
    case copy
    /// `a[i] = b[i] + s * c[i]`: 12 bytes per float.
    case triad

    /// Bytes counted per float element, STREAM's convention: the arrays read
    /// and written once each, write-allocate traffic not counted.
    public var bytesPerElement: Int {
        switch self {
        case .read: 4
        case .copy: 8
        case .triad: 12
        }
    }

    var cValue: kl_bw_kernel {
        switch self {
        case .read: KL_BW_READ
        case .copy: KL_BW_COPY
        case .triad: KL_BW_TRIAD
        }
    }
}

/// One timed ceiling run (`kl_ceiling_run`): every thread started together,
/// the slowest thread's wall time, and the FLOPs, exps or bytes done in total.
public struct CeilingRun: Sendable, Equatable {
    /// Wall time of the run (the slowest thread).
    public var seconds: Double
    /// FLOPs, exp evaluations or bytes, over all threads.
    public var amount: Double

    /// Creates a run record.
    public init(seconds: Double, amount: Double) {
        self.seconds = seconds
        self.amount = amount
    }

    /// `amount` per second; 0 for a zero time so that callers stay finite.
    public var rate: Double {
        seconds > 0 ? amount / seconds : 0
    }
}

/// The ceiling kernels of the C layer, one timed run per call. Trials,
/// calibration and best-of selection are `CeilingsMeasurement`'s.
public enum Ceilings {
    /// Peak fp32 FLOP/s kernel: every pool thread runs `iterations` rounds of
    /// independent FMA chains (16 zmm or 12 ymm accumulators; scalar: 8
    /// chains of a separate multiply and add).
    ///
    /// - Throws: `KernelLabError.invalidArgument` unless `iterations >= 1`;
    ///   `KernelLabError.unsupportedISA` if this CPU cannot run `isa`.
    public static func flops(isa: ISA, iterations: Int, pool: ThreadPool) throws -> CeilingRun {
        try checkIterations(iterations)
        return try pool.withUnsafePool { handle in
            var run = kl_ceiling_run()
            try check(kl_ceiling_flops(isa.cValue, iterations, handle, &run), "kl_ceiling_flops", isa: isa.rawValue)
            return CeilingRun(seconds: run.seconds, amount: run.amount)
        }
    }

    /// exp throughput: every pool thread evaluates 2^x `iterations` times over
    /// an L1-resident buffer of 4096 floats with the ISA's vector exp (the
    /// one the attention softmax uses). `amount` counts evaluations.
    ///
    /// - Throws: `KernelLabError.invalidArgument` unless `iterations >= 1`;
    ///   `KernelLabError.unsupportedISA` if this CPU cannot run `isa`.
    public static func exp(isa: ISA, iterations: Int, pool: ThreadPool) throws -> CeilingRun {
        try checkIterations(iterations)
        return try pool.withUnsafePool { handle in
            var run = kl_ceiling_run()
            try check(kl_ceiling_exp(isa.cValue, iterations, handle, &run), "kl_ceiling_exp", isa: isa.rawValue)
            return CeilingRun(seconds: run.seconds, amount: run.amount)
        }
    }

    /// Streaming bandwidth: every pool thread owns `bytesPerThread` bytes of
    /// arrays (split over the kernel's 1, 2 or 3 arrays, first touched by that
    /// thread) and runs `kernel` over them `iterations` times. `amount`
    /// counts bytes by STREAM's convention (`BandwidthKernel.bytesPerElement`).
    /// `node` places the arrays on that NUMA node instead (remote bandwidth).
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `bytesPerThread`
    ///   (< 256), `iterations` (< 1) or `node` (not a node of this machine);
    ///   `KernelLabError.unsupportedISA`; `KernelLabError.kernel` when the
    ///   arrays cannot be allocated.
    public static func bandwidth(
        isa: ISA, kernel: BandwidthKernel, bytesPerThread: Int, iterations: Int,
        node: Int? = nil, pool: ThreadPool
    ) throws -> CeilingRun {
        try checkIterations(iterations)
        guard bytesPerThread >= 256 else {
            throw KernelLabError.invalidArgument(argument: "bytesPerThread", reason: "must be >= 256, got \(bytesPerThread)")
        }
        let nodes = Int(kl_numa_nodes())
        if let node, !(0..<nodes).contains(node) {
            throw KernelLabError.invalidArgument(argument: "node", reason: "must be in 0..<\(nodes), got \(node)")
        }
        return try pool.withUnsafePool { handle in
            var run = kl_ceiling_run()
            try check(kl_ceiling_bandwidth(isa.cValue, kernel.cValue, bytesPerThread, iterations,
                                           Int32(node ?? -1), handle, &run),
                      "kl_ceiling_bandwidth(\(kernel.rawValue), \(bytesPerThread) B/thread)", isa: isa.rawValue)
            return CeilingRun(seconds: run.seconds, amount: run.amount)
        }
    }

    /// The independent STREAM-style triad (`kl_ceiling_stream_triad_check`):
    /// a plain C loop over three arrays of `arrayBytes` bytes (nil: 4x the
    /// last-level cache) shared by the pool's threads; `trials` passes, the
    /// first discarded, the fastest of the rest returned (12 bytes per float).
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `trials` (< 2) or
    ///   `arrayBytes` (< 4096); `KernelLabError.kernel` when the arrays cannot
    ///   be allocated.
    public static func streamTriadCheck(arrayBytes: Int? = nil, trials: Int = 10, pool: ThreadPool) throws -> CeilingRun {
        guard trials >= 2 else {
            throw KernelLabError.invalidArgument(argument: "trials", reason: "must be >= 2 (the first is discarded), got \(trials)")
        }
        if let arrayBytes, arrayBytes < 4096 {
            throw KernelLabError.invalidArgument(argument: "arrayBytes", reason: "must be >= 4096, got \(arrayBytes)")
        }
        try ISA.initialize()
        return try pool.withUnsafePool { handle in
            var run = kl_ceiling_run()
            try check(kl_ceiling_stream_triad_check(arrayBytes ?? 0, Int32(trials), handle, &run),
                      "kl_ceiling_stream_triad_check")
            return CeilingRun(seconds: run.seconds, amount: run.amount)
        }
    }

    private static func checkIterations(_ iterations: Int) throws {
        guard iterations >= 1 else {
            throw KernelLabError.invalidArgument(argument: "iterations", reason: "must be >= 1, got \(iterations)")
        }
    }
}
