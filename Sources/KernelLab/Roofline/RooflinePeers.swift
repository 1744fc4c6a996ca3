import Foundation

/// Measurements of other implementations (PyTorch's, from `make compare`)
/// to place on the roofline beside the lab's points: the `peers` of a
/// `reports/compare.json`.
///
///     {
///       "schema": "kernellab-compare/1",
///       "threads": 1,
///       "source": "torch 2.13.0+cpu",
///       "peers": [
///         {"name": "torch-sdpa", "kernel": "attention", "label": "attn L4096", "pass": "forward",
///          "model": "fused", "batch": 1, "heads": 8, "seq": 4096, "head_dim": 64, "causal": false,
///          "threads": 1, "median_seconds": 0.41, "min_seconds": 0.40, "repeats": 9, "flops": 34359738368}
///       ]
///     }
///
/// A peer names its kernel and shape as a suite case does (`kv_seq`,
/// `causal` and `groups` optional), its pass (forward or backward) and
/// `model`: the lab cost model (fused or unfused) whose bytes stand in for
/// the peer's own, which nobody measured. FLOPs always come from the lab's
/// convention for the shape; a `flops` in the file must agree with it.
/// The document's other top-level keys (`date`, `torch`, `machine`,
/// `settings`, `comparisons`, `numerics`) are the comparison's record: their
/// types are checked, their contents not read. Any other key is an error, so
/// a typo cannot pass unnoticed.
public struct RooflinePeersFile: Sendable, Equatable {
    /// The schema this reader accepts.
    public static let schema = "kernellab-compare/1"

    /// Who measured the peers, e.g. "torch 2.13.0+cpu" (for the chart's legend).
    public var source: String
    /// Threads every peer ran on.
    public var threads: Int
    /// The peers, in file order.
    public var peers: [RooflinePeerEntry]

    /// Creates a peers file.
    public init(source: String, threads: Int, peers: [RooflinePeerEntry]) {
        self.source = source
        self.threads = threads
        self.peers = peers
    }

    /// Reads a peers file.
    ///
    /// - Throws: `KernelLabError.io` when it is missing or unreadable,
    ///   `.invalidArgument` naming the offending field (e.g.
    ///   `peers[2].median_seconds`) otherwise.
    public init(contentsOf path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw KernelLabError.io(path: path, reason: "no such peers file (make compare writes reports/compare.json)")
        }
        try self.init(json: try readWholeFile(path), source: path)
    }

    /// Parses a peers document. `source` names the document in errors.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming the offending field.
    public init(json data: Data, source: String = "peers") throws {
        let document = try StrictJSON.decode(data, argument: "peers", source: source)
        guard case .object(let fields) = document else {
            throw KernelLabError.invalidArgument(argument: "peers", reason: "'\(source)' must be a JSON object with \"schema\" and \"peers\"")
        }
        var reader = StrictFieldReader(fields: fields, path: "", source: source)
        guard let schema = try reader.string("schema") else {
            throw reader.error("schema", "is required: \"\(Self.schema)\"")
        }
        guard schema == Self.schema else {
            throw reader.error("schema", "unknown schema '\(schema)'; expected \"\(Self.schema)\"")
        }
        guard let threads = try reader.integer("threads", minimum: 1) else {
            throw reader.error("threads", "is required: the thread count of every peer")
        }
        let label = try reader.string("source") ?? "peer"
        // The comparison's record: typed, not interpreted.
        _ = try reader.string("date")
        for key in ["torch", "machine", "settings"] { try reader.skip(key, kind: .object) }
        for key in ["comparisons", "numerics"] { try reader.skip(key, kind: .array) }
        guard let items = try reader.array("peers") else {
            throw reader.error("peers", "is required: an array of peer measurements")
        }
        try reader.rejectUnknown()
        guard !items.isEmpty else { throw reader.error("peers", "must hold at least one peer") }
        let peers = try items.enumerated().map { index, item in
            try RooflinePeerEntry(item, path: "peers[\(index)]", source: source, threads: threads)
        }
        self.init(source: label, threads: threads, peers: peers)
    }
}

/// One peer measurement as the file gives it.
public struct RooflinePeerEntry: Sendable, Equatable {
    /// The implementation, e.g. "torch-sdpa".
    public var name: String
    /// The case's label (the lab's case of the same shape has the same one).
    public var label: String
    /// The kernel and its shape.
    public var shape: RooflineCase.Shape
    /// The pass.
    public var pass: KernelPass
    /// The lab cost model whose bytes stand in for the peer's.
    public var model: KernelImpl
    /// Median seconds of one call.
    public var medianSeconds: Double
    /// Fastest call, if given.
    public var minSeconds: Double?
    /// Timed calls behind the median, if given.
    public var repeats: Int?

    /// Creates an entry.
    public init(name: String, label: String, shape: RooflineCase.Shape, pass: KernelPass, model: KernelImpl,
                medianSeconds: Double, minSeconds: Double? = nil, repeats: Int? = nil) {
        self.name = name
        self.label = label
        self.shape = shape
        self.pass = pass
        self.model = model
        self.medianSeconds = medianSeconds
        self.minSeconds = minSeconds
        self.repeats = repeats
    }

    /// The lab's cost model of this shape and pass, as `model`.
    public func cost() throws -> KernelCost {
        switch shape {
        case let .attention(shape, causal):
            try Attention.cost(shape: shape, options: AttentionOptions(causal: causal), impl: model, pass: pass)
        case let .scan(shape):
            try Scan.cost(shape: shape, impl: model, pass: pass)
        case .layer:
            throw KernelLabError.invalidArgument(argument: "kernel", reason: "peers are attention or scan calls")
        }
    }

    fileprivate init(_ json: StrictJSON, path: String, source: String, threads fileThreads: Int) throws {
        guard case .object(let fields) = json else {
            throw KernelLabError.invalidArgument(argument: path, reason: "must be an object (in '\(source)')")
        }
        var reader = StrictFieldReader(fields: fields, path: path, source: source)
        guard let name = try reader.string("name"), !name.isEmpty else {
            throw reader.error("name", "is required: the implementation, e.g. \"torch-sdpa\"")
        }
        guard let label = try reader.string("label"), !label.isEmpty else {
            throw reader.error("label", "is required: the case's label, e.g. \"attn L4096\"")
        }
        // Peers are attention or scan calls (make compare's).
        let kernel: RooflineKernel = try reader.choice("kernel", among: [.attention, .scan])
        let pass: KernelPass = try reader.choice("pass")
        let model: KernelImpl = try reader.choice("model")
        let threads = try reader.required("threads")
        guard threads == fileThreads else {
            throw reader.error("threads", "must equal the file's threads (\(fileThreads)), got \(threads)")
        }
        let median = try reader.seconds("median_seconds")
        guard let median else { throw reader.error("median_seconds", "is required: the median seconds of one call") }
        let minimum = try reader.seconds("min_seconds")
        if let minimum, minimum > median {
            throw reader.error("min_seconds", "must not exceed median_seconds (\(median)), got \(minimum)")
        }
        let repeats = try reader.integer("repeats", minimum: 1)
        let flops = try reader.number("flops")

        let shape = try reader.kernelShape(kernel)
        try reader.rejectUnknown()
        self.init(name: name, label: label, shape: shape, pass: pass, model: model,
                  medianSeconds: median, minSeconds: minimum, repeats: repeats)
        // A peer timed under another FLOP convention would sit at the wrong height.
        if let flops {
            let expected = try cost().flops
            guard abs(flops - expected) <= 1e-9 * expected else {
                throw reader.error("flops", "is \(flops), but the lab's convention gives \(expected) for this shape and pass")
            }
        }
    }
}

/// A peer on the roofline: its time, the lab's FLOPs and modelled bytes for
/// the same shape (the bytes of `model`'s kernel: an estimate of the peer's
/// traffic, not a measurement), and the bound those bytes give.
public struct RooflinePeer: Codable, Sendable, Equatable {
    /// "peer1", "peer2", ... in file order; the chart's element ids use it.
    public var id: String
    /// Always true: marks the row as a peer in tables that mix them.
    public var peer = true
    /// The implementation, e.g. "torch-sdpa".
    public var name: String
    /// The kernel.
    public var kernel: RooflineKernel
    /// The case's label.
    public var label: String
    /// The pass.
    public var pass: KernelPass
    /// The lab cost model whose bytes are used.
    public var model: KernelImpl
    /// B.
    public var batch: Int
    /// Lq (attention) or L (scan).
    public var seq: Int
    /// Attention: H.
    public var heads: Int?
    /// Attention: Lk.
    public var kvSeq: Int?
    /// Attention: d.
    public var headDim: Int?
    /// Attention: causal masking.
    public var causal: Bool?
    /// Scan: D.
    public var channels: Int?
    /// Scan: N.
    public var state: Int?
    /// Scan: G.
    public var groups: Int?
    /// Threads the peer ran on.
    public var threads: Int
    /// Timed calls behind the median, if known.
    public var repeats: Int?
    /// Median of the timed calls.
    public var medianSeconds: Double
    /// Fastest timed call, if known.
    public var minSeconds: Double?
    /// FLOPs of one call (the lab's convention).
    public var flops: Double
    /// Compulsory bytes (the lab's model).
    public var minBytes: Double
    /// DRAM bytes of the lab's `model` kernel for this shape: an estimate.
    public var dramBytes: Double
    /// L3 <-> L2 bytes of the same model.
    public var l3Bytes: Double
    /// L2 <-> L1 bytes of the same model.
    public var l2Bytes: Double
    /// exp/log evaluations (the lab's count).
    public var exps: Double
    /// flops / dram_bytes (the chart's x axis).
    public var intensity: Double
    /// flops / l3_bytes.
    public var l3Intensity: Double
    /// flops / l2_bytes.
    public var l2Intensity: Double
    /// flops / median, GFLOP/s.
    public var gflops: Double
    /// The level of the lowest binding memory roof.
    public var memoryRoofLevel: MemoryLevel
    /// The binding roof under the lab's byte model.
    public var bound: RooflineBoundKind
    /// Its value, GFLOP/s.
    public var boundGflops: Double
    /// gflops / bound_gflops.
    public var fractionOfBound: Double

    /// The shape as text, as `RooflinePoint.shapeDescription`.
    public var shapeDescription: String {
        rooflineShapeDescription(kernel: kernel, batch: batch, seq: seq, heads: heads, kvSeq: kvSeq, headDim: headDim,
                                 causal: causal, channels: channels, state: state, groups: groups)
    }

    enum CodingKeys: String, CodingKey {
        case id, peer, name, kernel, label, pass, model, batch, seq, heads
        case kvSeq = "kv_seq"
        case headDim = "head_dim"
        case causal, channels, state, groups, threads, repeats
        case medianSeconds = "median_seconds"
        case minSeconds = "min_seconds"
        case flops
        case minBytes = "min_bytes"
        case dramBytes = "dram_bytes"
        case l3Bytes = "l3_bytes"
        case l2Bytes = "l2_bytes"
        case exps, intensity, gflops, bound
        case l3Intensity = "l3_intensity"
        case l2Intensity = "l2_intensity"
        case memoryRoofLevel = "memory_roof_level"
        case boundGflops = "bound_gflops"
        case fractionOfBound = "fraction_of_bound"
    }

    /// A peer of `entry`, bounded by the roofs of `ceilings` at `isa`.
    ///
    /// - Throws: `KernelLabError` for a cost model failure or missing ceilings.
    public init(id: String, entry: RooflinePeerEntry, threads: Int, isa: ISA, ceilings: RooflineCeilings) throws {
        let cost = try entry.cost()
        self.id = id
        name = entry.name
        kernel = entry.shape.kernel
        label = entry.label
        pass = entry.pass
        model = entry.model
        (batch, seq, heads, kvSeq, headDim, causal, channels, state, groups) = entry.shape.columns
        self.threads = threads
        repeats = entry.repeats
        medianSeconds = entry.medianSeconds
        minSeconds = entry.minSeconds
        flops = cost.flops
        minBytes = cost.minBytes
        dramBytes = cost.dramBytes
        l3Bytes = cost.l3Bytes
        l2Bytes = cost.l2Bytes
        exps = cost.exps
        intensity = rooflineIntensity(cost)
        l3Intensity = rooflineIntensity(flops: cost.flops, bytes: cost.l3Bytes)
        l2Intensity = rooflineIntensity(flops: cost.flops, bytes: cost.l2Bytes)
        gflops = gigaflopsPerSecond(flops: cost.flops, seconds: medianSeconds)
        let roof = try RooflineBound(cost: cost, isa: isa, ceilings: ceilings)
        memoryRoofLevel = roof.memoryLevel
        bound = roof.kind
        boundGflops = roof.gflops
        fractionOfBound = roof.gflops > 0 ? gflops / roof.gflops : 0
    }
}

extension RooflineReport {
    /// The method note a report with peers adds.
    public static let peersNote = "Peers (e.g. PyTorch, from make compare) are measured outside the lab and drawn as points of their own. Their FLOPs are the lab's convention for the same shape; their bytes, intensity and bound are the lab's cost model of the kernel named by their model (fused for a fused peer such as SDPA, unfused for a materialized one): an estimate of a peer's traffic, not a measurement. Compare speeds measured in the same run in compare.md."

    /// This report with `file`'s peers placed on it (replacing any it had),
    /// bounded by the report's own ceilings and ISA.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `peers` when the
    ///   peers ran on another thread count than the report's points.
    public func addingPeers(_ file: RooflinePeersFile) throws -> RooflineReport {
        guard file.threads == threads else {
            throw KernelLabError.invalidArgument(
                argument: "peers", reason: "the peers ran on \(file.threads) thread(s), the report's points on \(threads); use the same --threads")
        }
        var report = self
        report.peers = try file.peers.enumerated().map { index, entry in
            try RooflinePeer(id: "peer\(index + 1)", entry: entry, threads: threads, isa: isa, ceilings: ceilings)
        }
        report.peerSource = file.source
        report.notes = notes.filter { $0 != Self.peersNote } + [Self.peersNote]
        return report
    }
}
