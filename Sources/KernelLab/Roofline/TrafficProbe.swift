import CKernels

/// One kernel call on random inputs, laid out for a cache simulator to
/// measure its DRAM traffic (see `TrafficValidation`).
///
/// `run()` allocates every input, output and the workspace, runs the forward
/// first when the pass is backward (its outputs feed the backward), then:
/// 1. evicts the caches by reading a fresh buffer of twice the last-level cache
///    (`KERNELLAB_LLC_BYTES` or the machine's L3), so the call starts cold and
///    no line is dirty;
/// 2. inside `kl_traffic_region` (the function to collect in), makes the
///    measured call exactly once: `kl_attn_fwd`, `kl_attn_bwd`, `kl_scan_fwd`
///    or `kl_scan_bwd` (`cFunction`), through the library's Swift wrapper;
/// 3. still inside it, calls `kl_traffic_drain`, which reads another such
///    buffer: the lines the call dirtied are written back there. Dumping
///    before the drain separates the call's misses from these write-backs.
public struct TrafficProbe: Sendable {
    public enum Kernel: String, CaseIterable, Codable, Sendable {
        case attention, scan
    }

    public var kernel: Kernel
    public var impl: KernelImpl
    public var pass: KernelPass
    /// Attention: (B, H, L, d) with Lq = Lk = L. Scan: (B, D, L, N).
    public var batch: Int
    public var heads: Int
    public var seq: Int
    public var headDim: Int
    public var channels: Int
    public var state: Int
    public var causal: Bool

    /// The function around the call and the drain (`--toggle-collect`).
    public static let regionSymbol = "kl_traffic_region"
    /// The drain function (`--dump-before`).
    public static let drainSymbol = "kl_traffic_drain"

    public init(kernel: Kernel, impl: KernelImpl, pass: KernelPass, batch: Int = 1, heads: Int = 2, seq: Int = 1024,
                headDim: Int = 64, channels: Int = 64, state: Int = 16, causal: Bool = false) {
        self.kernel = kernel
        self.impl = impl
        self.pass = pass
        self.batch = batch
        self.heads = heads
        self.seq = seq
        self.headDim = headDim
        self.channels = channels
        self.state = state
        self.causal = causal
    }

    /// The C entry point whose traffic is measured.
    public var cFunction: String {
        switch (kernel, pass) {
        case (.attention, .forward): "kl_attn_fwd"
        case (.attention, .backward): "kl_attn_bwd"
        case (.scan, .forward): "kl_scan_fwd"
        case (.scan, .backward): "kl_scan_bwd"
        }
    }

    /// Short description, e.g. "attention fused forward B=1 H=2 L=1024 d=64".
    public var label: String {
        switch kernel {
        case .attention:
            "attention \(impl.rawValue) \(pass.rawValue) B=\(batch) H=\(heads) L=\(seq) d=\(headDim)\(causal ? " causal" : "")"
        case .scan:
            "scan \(impl.rawValue) \(pass.rawValue) B=\(batch) D=\(channels) L=\(seq) N=\(state)"
        }
    }

    /// The `kernel-lab traffic` arguments that run this probe.
    public var arguments: [String] {
        var args = ["--kernel", kernel.rawValue, "--impl", impl.rawValue, "--pass", pass.rawValue,
                    "--batch", "\(batch)", "--seq", "\(seq)"]
        switch kernel {
        case .attention:
            args += ["--heads", "\(heads)", "--head-dim", "\(headDim)"]
            if causal { args.append("--causal") }
        case .scan:
            args += ["--channels", "\(channels)", "--state", "\(state)"]
        }
        return args
    }

    /// The cost model of the measured call (reads `KERNELLAB_LLC_BYTES`).
    public func cost() throws -> KernelCost {
        switch kernel {
        case .attention:
            try Attention.cost(shape: try attentionShape(), options: AttentionOptions(causal: causal), impl: impl, pass: pass)
        case .scan:
            try Scan.cost(shape: try scanShape(), impl: impl, pass: pass)
        }
    }

    /// Runs the call once (see the type's description) and returns its cost model.
    public func run(threads: Int = 1) throws -> KernelCost {
        let pool = try ThreadPool(threads: threads)
        let llc = max(Int(kl_cache_bytes(3)), 8 << 20)
        // The op's one description, as the benchmarks and the roofline time it.
        let problem: any KernelProblem = switch kernel {
        case .attention: try AttentionProblem(shape: try attentionShape(), causal: causal, seed: 1, backward: pass == .backward)
        case .scan: try ScanProblem(shape: try scanShape(), seed: 1, backward: pass == .backward)
        }
        try run(problem, pool: pool, llc: llc)
        return try cost()
    }

    private func attentionShape() throws -> AttentionShape {
        try AttentionShape(batch: batch, heads: heads, queryLength: seq, keyLength: seq, headDim: headDim)
    }

    private func scanShape() throws -> ScanShape {
        try ScanShape(batch: batch, channels: channels, seqLen: seq, state: state)
    }

    private func run(_ problem: any KernelProblem, pool: ThreadPool, llc: Int) throws {
        let workspace = try Workspace(bytes: problem.workspaceBytes(impl: impl, pass: pass, threads: pool.threads))
        switch pass {
        case .forward:
            try measure(llcBytes: llc) { try problem.forward(impl: impl, forBackward: false, pool: pool, workspace: workspace) }
        case .backward:
            let fwdWorkspace = try Workspace(bytes: problem.workspaceBytes(impl: impl, pass: .forward, threads: pool.threads))
            try problem.forward(impl: impl, forBackward: true, pool: pool, workspace: fwdWorkspace)
            try measure(llcBytes: llc) { try problem.backward(impl: impl, pool: pool, workspace: workspace) }
        }
    }
}

/// Sink for the eviction reads, so the optimizer keeps them.
nonisolated(unsafe) private var trafficSink: UInt64 = 0

/// Reads one byte of every line of a fresh, never-written buffer of twice
/// `llcBytes` (untouched pages read as zeros, but each line is a distinct
/// address to the cache).
private func readFreshBuffer(llcBytes: Int) -> UInt64 {
    let bytes = 2 * llcBytes
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
    defer { buffer.deallocate() }
    return trafficRead(UnsafeRawPointer(buffer), bytes)
}

@inline(never)
private func trafficRead(_ base: UnsafeRawPointer, _ bytes: Int) -> UInt64 {
    var sum: UInt64 = 0
    var offset = 0
    while offset < bytes {
        sum &+= UInt64(base.load(fromByteOffset: offset, as: UInt8.self))
        offset += 64
    }
    return sum
}

/// Evicts the caches, then runs `call` and the drain inside `kl_traffic_region`.
private func measure(llcBytes: Int, _ call: () throws -> Void) throws {
    trafficSink &+= readFreshBuffer(llcBytes: llcBytes)
    let bytes = 2 * llcBytes
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
    defer { buffer.deallocate() }
    var failure: Error?
    withoutActuallyEscaping(call) { call in
        let region = TrafficRegion(call: { do { try call() } catch { failure = error } },
                                   drainBase: UnsafeRawPointer(buffer), drainBytes: bytes)
        trafficSink &+= kl_traffic_region(region)
    }
    if let failure { throw failure }
}

/// What `kl_traffic_region` runs. A class, not a closure parameter: the
/// optimizer clones functions that take closures (closure specialization)
/// under new names, which --toggle-collect would not match.
final class TrafficRegion {
    let call: () -> Void
    let drainBase: UnsafeRawPointer
    let drainBytes: Int

    init(call: @escaping () -> Void, drainBase: UnsafeRawPointer, drainBytes: Int) {
        self.call = call
        self.drainBase = drainBase
        self.drainBytes = drainBytes
    }
}

/// The measured region under a plain symbol (callgrind's --toggle-collect
/// takes one function): the call, then the drain, which reads a fresh buffer
/// of twice the LLC so that the lines the call dirtied are written back.
/// @_optimize(none) keeps signature optimizations from renaming it.
@_silgen_name("kl_traffic_region")
@inline(never) @_optimize(none)
func kl_traffic_region(_ region: TrafficRegion) -> UInt64 {
    region.call()
    return kl_traffic_drain(region.drainBase, region.drainBytes)
}

/// The drain, under a plain symbol for --dump-before.
@_silgen_name("kl_traffic_drain")
@inline(never) @_optimize(none)
func kl_traffic_drain(_ base: UnsafeRawPointer, _ bytes: Int) -> UInt64 {
    trafficRead(base, bytes)
}
