import CKernels

/// Per-token cost of the decoding kernels against context length: attention
/// of one new query over a KV cache (`Attention.decode`) beside the fused
/// forward at Lq = 1 on the same keys, timed alternately call by call; and
/// the fixed-size state's step kernels (`Scan.step`, `CausalConv1D.step`)
/// beside the fused scan at L = 1. Bytes come from the cost models, so
/// GB/s and the ratio to the machine's measured read bandwidth say how close
/// each step is to moving only the bytes it must.
public enum DecodeBenchmark {
    public struct Config: Sendable {
        public var batch = 1, heads = 8, headDim = 64
        public var contexts = [128, 1024, 8192, 65536]
        /// The Mamba side: d_inner channels, d_state, conv width.
        public var channels = 2048, state = 16, convWidth = 4
        public var threads = 1, warmup = 3, repeats = 15
        public init() {}
    }

    /// One attention row: a context length and both kernels' samples.
    public struct AttentionRow: Sendable {
        public var context: Int
        public var decode: Samples
        /// `Attention.forward` with Lq = 1 over the same K and V.
        public var forward: Samples
        /// Modelled bytes of one decode call (K and V rows, q, o).
        public var bytes: Double
        /// Where the K and V rows live between calls, by their size.
        public var level: MemoryLevel
        /// The KV cache's resident bytes.
        public var residentBytes: Int
        /// Median of the per-pair ratios forward / decode.
        public var speedup: Double
    }

    public struct StepRow: Sendable {
        public var name: String
        public var step: Samples
        /// The full-sequence kernel at L = 1, when it has one.
        public var forward: Samples?
        public var bytes: Double
        public var residentBytes: Int
    }

    public struct Result: Sendable {
        public var config: Config
        public var attention: [AttentionRow]
        public var steps: [StepRow]
    }

    /// The level that holds `bytes` (per-core L1 and L2, times the threads):
    /// within 3/4 of its capacity, as the cost models assume (an LRU cache
    /// with set conflicts does not keep a working set up to its full size).
    static func level(bytes: Double, caches: SystemInfo.CacheSizes, threads: Int) -> MemoryLevel {
        let fits = { (capacity: Int) in bytes <= 0.75 * Double(capacity) }
        if fits(caches.l1 * threads) { return .l1 }
        if fits(caches.l2 * threads) { return .l2 }
        if fits(caches.l3) { return .l3 }
        return .dram
    }

    /// - Throws: `KernelLabError` for a bad configuration or a kernel failure.
    public static func run(_ c: Config, progress: ((String) -> Void)? = nil) throws -> Result {
        guard c.repeats >= 1, c.warmup >= 0, !c.contexts.isEmpty, c.contexts.allSatisfy({ $0 >= 1 }) else {
            throw KernelLabError.invalidArgument(argument: "contexts", reason: "need contexts >= 1, repeats >= 1 and warmup >= 0")
        }
        let pool = try ThreadPool(threads: c.threads)
        let caches = try SystemInfo.current().cacheBytes
        let options = AttentionOptions(causal: true)
        var attention: [AttentionRow] = []
        for (index, context) in c.contexts.enumerated() {
            progress?("attention decode at context \(context)")
            let cache = try KVCache(batch: c.batch, heads: c.heads, capacity: context, headDim: c.headDim)
            let kv = [c.batch, c.heads, context, c.headDim]
            try cache.append(k: try Tensor.random(shape: kv, seed: UInt64(2 * index + 1)),
                             v: try Tensor.random(shape: kv, seed: UInt64(2 * index + 2)))
            let q = try Tensor.random(shape: [c.batch, c.heads, 1, c.headDim], seed: 99)
            let out = try Tensor(shape: q.shape), lse = try Tensor(shape: [c.batch, c.heads, 1])
            let decodeWorkspace = try Workspace(), forwardWorkspace = try Workspace()
            // capacity == length, so the cache's tensors are the contiguous K and V the forward takes.
            let decode = { try Attention.decode(q: q, cache: cache, into: out, lse: lse, options: options, pool: pool, workspace: decodeWorkspace) }
            let forward = {
                try Attention.forward(q: q, k: cache.keys, v: cache.values, into: out, lse: lse, options: options, pool: pool,
                                      workspace: forwardWorkspace)
            }
            let (d, f) = try Benchmark.measureAlternating(warmup: c.warmup, repeats: c.repeats, decode, forward)
            let shape = try Attention.decodeShape(q: q, cache: cache, options: options)
            let bytes = try Attention.decodeCost(shape: shape, capacity: context, options: options).dramBytes
            attention.append(AttentionRow(
                context: context, decode: d, forward: f, bytes: bytes,
                level: level(bytes: Double(cache.residentBytes), caches: caches, threads: c.threads),
                residentBytes: cache.residentBytes,
                speedup: Samples(seconds: zip(f.seconds, d.seconds).map { $0 / $1 }).median))
            Benchmark.blackHole(out[0])
        }
        progress?("scan and conv steps")
        return Result(config: c, attention: attention, steps: [try scanRow(c, pool), try convRow(c, pool)])
    }

    private static func scanRow(_ c: Config, _ pool: ThreadPool) throws -> StepRow {
        let (b, d, n) = (c.batch, c.channels, c.state)
        let u = try Tensor.random(shape: [b, d], seed: 1), delta = try Tensor.random(shape: [b, d], seed: 2, range: -3...0)
        let z = try Tensor.random(shape: [b, d], seed: 3)
        let A = try Tensor(shape: [d, n], values: (0..<(d * n)).map { -Float($0 % n + 1) })
        let Bm = try Tensor.random(shape: [b, n], seed: 4), C = try Tensor.random(shape: [b, n], seed: 5)
        let D = try Tensor.random(shape: [d], seed: 6), bias = try Tensor.random(shape: [d], seed: 7)
        let state = try Tensor(shape: [b, d, n]), out = try Tensor(shape: [b, d])
        let options = ScanOptions(deltaSoftplus: true)
        // The same token through the fused forward at L = 1 (h0 in, the last state out).
        let seq = { (t: Tensor) in try t.reshaped(t.shape + [1]) }
        let (u1, delta1, z1, B1, C1, out1) = try (seq(u), seq(delta), seq(z), seq(Bm), seq(C), seq(out))
        let last = try Tensor(shape: [b, d, n]), workspace = try Workspace()
        let step = {
            try Scan.step(u: u, delta: delta, A: A, B: Bm, C: C, D: D, z: z, deltaBias: bias, state: state, into: out,
                          options: options, pool: pool)
        }
        let forward = {
            try Scan.forward(u: u1, delta: delta1, A: A, B: B1, C: C1, D: D, z: z1, deltaBias: bias, h0: state,
                             into: out1, lastState: last, options: options, pool: pool, workspace: workspace)
        }
        let (s, f) = try Benchmark.measureAlternating(warmup: c.warmup, repeats: c.repeats, step, forward)
        let shape = try Scan.stepShape(u: u, delta: delta, A: A, B: Bm, C: C, D: D, z: z, deltaBias: bias)
        return StepRow(name: "scan step D\(d) N\(n)", step: s, forward: f, bytes: try Scan.stepCost(shape: shape).dramBytes,
                       residentBytes: state.count * 4)
    }

    private static func convRow(_ c: Config, _ pool: ThreadPool) throws -> StepRow {
        let (b, d, k) = (c.batch, c.channels, c.convWidth)
        let x = try Tensor.random(shape: [b, d], seed: 8), w = try Tensor.random(shape: [d, k], seed: 9)
        let bias = try Tensor.random(shape: [d], seed: 10)
        let state = try Tensor(shape: [b, d, k - 1]), y = try Tensor(shape: [b, d])
        let s = try Benchmark.measure(warmup: c.warmup, repeats: c.repeats) {
            try CausalConv1D.step(x, weight: w, bias: bias, state: state, into: y, pool: pool)
        }
        // x, y once; the state read and written; the weights and bias once.
        let bytes = 4.0 * Double(b * d * 2 + 2 * b * d * (k - 1) + d * (k + 1))
        return StepRow(name: "conv step D\(d) K\(k)", step: s, forward: nil, bytes: bytes, residentBytes: state.count * 4)
    }
}
