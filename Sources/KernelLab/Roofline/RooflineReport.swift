import Foundation

/// One measured kernel call on the roofline: its cost model, its time, the
/// roofs it meets and its projections onto accelerators.
public struct RooflinePoint: Codable, Sendable, Equatable {
    /// "p1", "p2", ... in suite order; the chart's element ids use it.
    public var id: String
    /// The index of the suite case it came from.
    public var caseIndex: Int
    /// The case's short name.
    public var label: String
    /// The kernel.
    public var kernel: RooflineKernel
    /// The implementation.
    public var impl: KernelImpl
    /// The pass.
    public var pass: KernelPass
    /// B.
    public var batch: Int
    /// Lq (attention), L (scan) or rows (a layer kernel).
    public var seq: Int
    /// A layer kernel: its op.
    public var op: LayerShape.Op?
    /// Attention: H.
    public var heads: Int?
    /// Attention: Lk.
    public var kvSeq: Int?
    /// Attention: d.
    public var headDim: Int?
    /// Attention: causal masking.
    public var causal: Bool?
    /// Scan: D; a layer kernel: dim (the vocabulary for the cross-entropy).
    public var channels: Int?
    /// Scan: N.
    public var state: Int?
    /// Scan: G.
    public var groups: Int?
    /// Threads the kernel ran on.
    public var threads: Int
    /// The ISA path the kernel used.
    public var isa: ISA
    /// Untimed calls before timing.
    public var warmup: Int
    /// Timed calls.
    public var repeats: Int
    /// Median of the timed calls.
    public var medianSeconds: Double
    /// Fastest timed call.
    public var minSeconds: Double
    /// FLOPs of one call (the kernel's convention, `kl_*_cost`).
    public var flops: Double
    /// Compulsory bytes (inputs once, outputs once).
    public var minBytes: Double
    /// Modelled DRAM bytes.
    public var dramBytes: Double
    /// Modelled L3 <-> L2 bytes (L2 misses and write-backs).
    public var l3Bytes: Double
    /// Modelled L2 <-> L1 bytes (L1d misses and write-backs; a rougher model).
    public var l2Bytes: Double
    /// exp/log evaluations.
    public var exps: Double
    /// flops / dram_bytes (the chart's x axis).
    public var intensity: Double
    /// flops / l3_bytes.
    public var l3Intensity: Double
    /// flops / l2_bytes.
    public var l2Intensity: Double
    /// flops / median, GFLOP/s.
    public var gflops: Double
    /// The level of the lowest binding memory roof (hierarchical: L3 and DRAM
    /// bound the call with their own bytes; see `RooflineBound`).
    public var memoryRoofLevel: MemoryLevel
    /// Every memory roof, GFLOP/s, by level name (`l2`, `l3`, `dram`).
    public var memoryRoofsGflops: [String: Double]
    /// The binding roof.
    public var bound: RooflineBoundKind
    /// Its value, GFLOP/s.
    public var boundGflops: Double
    /// The compute roof of `isa` at `threads`.
    public var computeRoofGflops: Double
    /// The exp roof in GFLOP/s-equivalent (nil without exps or exp ceiling).
    public var expRoofGflops: Double?
    /// The lowest memory roof: bandwidth of `memoryRoofLevel` times the
    /// intensity at that level.
    public var memoryRoofGflops: Double
    /// gflops / bound_gflops.
    public var fractionOfBound: Double
    /// The call's workspace (its peak extra memory).
    public var workspaceBytes: Int
    /// Compulsory bytes plus workspace: the data one call touches.
    public var footprintBytes: Double
    /// The smallest level that can hold `footprintBytes` (private caches
    /// counted once per thread), or DRAM. When it is a cache, repeated calls
    /// find their data there and the cold-call byte models overstate the
    /// DRAM traffic of a timed loop.
    public var footprintLevel: MemoryLevel
    /// Per accelerator id: the model's projection (not a measurement).
    public var projections: [String: AcceleratorProjection]

    /// The shape as text: "1x8x4096x4096x64 causal", "1x1024x4096x16x1" or "layer_norm 16384x1024".
    public var shapeDescription: String {
        (op.map { "\($0.rawValue) " } ?? "") + rooflineShapeDescription(kernel: kernel, batch: batch, seq: seq, heads: heads, kvSeq: kvSeq, headDim: headDim,
                                 causal: causal, channels: channels, state: state, groups: groups)
    }

    enum CodingKeys: String, CodingKey {
        case id
        case caseIndex = "case"
        case label, kernel, impl, pass, batch, seq, op, heads
        case kvSeq = "kv_seq"
        case headDim = "head_dim"
        case causal, channels, state, groups, threads, isa, warmup, repeats
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
        case boundGflops = "bound_gflops"
        case computeRoofGflops = "compute_roof_gflops"
        case expRoofGflops = "exp_roof_gflops"
        case memoryRoofGflops = "memory_roof_gflops"
        case memoryRoofLevel = "memory_roof_level"
        case memoryRoofsGflops = "memory_roofs_gflops"
        case fractionOfBound = "fraction_of_bound"
        case workspaceBytes = "workspace_bytes"
        case footprintBytes = "footprint_bytes"
        case footprintLevel = "footprint_level"
        case projections
    }
}

/// An unfused point and its fused twin (same case and pass).
public struct RooflinePair: Codable, Sendable, Equatable {
    /// The kernel.
    public var kernel: RooflineKernel
    /// The case's short name.
    public var label: String
    /// The pass.
    public var pass: KernelPass
    /// The unfused point's id.
    public var unfused: String
    /// The fused point's id.
    public var fused: String
    /// Unfused median over fused median: how many times faster fused is.
    public var speedup: Double
}

/// The roofs of the machine at the report's thread count and ISA.
public struct RooflineRoofs: Codable, Sendable, Equatable {
    /// A horizontal roof.
    public struct Compute: Codable, Sendable, Equatable {
        /// The ISA.
        public var isa: ISA
        /// Peak GFLOP/s.
        public var gflops: Double
        /// Where it meets the DRAM roof, FLOP/byte.
        public var ridgeFlopPerByte: Double

        enum CodingKeys: String, CodingKey {
            case isa, gflops
            case ridgeFlopPerByte = "ridge_flop_per_byte"
        }
    }

    /// A diagonal roof.
    public struct Memory: Codable, Sendable, Equatable {
        /// The level.
        public var level: MemoryLevel
        /// Bandwidth, GB/s: the fastest kernel measured at this level.
        public var gbs: Double
        /// That kernel.
        public var kernel: BandwidthKernel
        /// Where it meets the compute roof of the ISA in use, FLOP/byte.
        public var ridgeFlopPerByte: Double

        enum CodingKeys: String, CodingKey {
            case level, gbs, kernel
            case ridgeFlopPerByte = "ridge_flop_per_byte"
        }
    }

    /// The exp throughput as a roof for one kind of call: it depends on the
    /// call's FLOPs per exp, so each (kernel, pass, ratio) has its own.
    public struct Exp: Codable, Sendable, Equatable {
        /// The kernel.
        public var kernel: RooflineKernel
        /// The pass.
        public var pass: KernelPass
        /// flops / exps of the calls it applies to.
        public var flopsPerExp: Double
        /// exp/s of the ISA in use.
        public var expPerSecond: Double
        /// exp/s times flops per exp, GFLOP/s-equivalent.
        public var gflops: Double

        enum CodingKeys: String, CodingKey {
            case kernel, pass
            case flopsPerExp = "flops_per_exp"
            case expPerSecond = "exp_per_second"
            case gflops
        }
    }

    /// One per ISA measured, slowest first.
    public var compute: [Compute]
    /// One per level measured, L1 first.
    public var memory: [Memory]
    /// One per (kernel, pass, FLOPs per exp) among the points.
    public var exp: [Exp]
    /// The compute roof of the ISA in use.
    public var peakGflops: Double
    /// The DRAM roof, GB/s.
    public var dramGBs: Double
    /// peak / DRAM bandwidth: the intensity above which a DRAM-resident
    /// kernel can be compute-bound on this machine.
    public var ridgeFlopPerByte: Double
    /// OpenBLAS sgemm GFLOP/s (a reference line, not a roof).
    public var sgemmGflops: Double?

    enum CodingKeys: String, CodingKey {
        case compute, memory, exp
        case peakGflops = "peak_gflops"
        case dramGBs = "dram_gbs"
        case ridgeFlopPerByte = "ridge_flop_per_byte"
        case sgemmGflops = "sgemm_gflops"
    }
}

/// An accelerator of the projections, with its ridge points and which
/// points the model says are bandwidth-bound there.
public struct RooflineDevice: Codable, Sendable, Equatable {
    /// The device profile.
    public var profile: AcceleratorProfile
    /// Per precision: peak / bandwidth, FLOP/byte.
    public var ridgeFlopPerByte: [String: Double]
    /// Ids of the points that are bandwidth-bound at the fp32 peak.
    public var bandwidthBoundFp32: [String]

    enum CodingKeys: String, CodingKey {
        case profile
        case ridgeFlopPerByte = "ridge_flop_per_byte"
        case bandwidthBoundFp32 = "bandwidth_bound_fp32"
    }
}

/// The roofline report: the machine's roofs, every measured point with its
/// bound, fused/unfused pairs, accelerator projections, the summary and the
/// method notes. `roofline.json` is this, encoded.
public struct RooflineReport: Codable, Sendable, Equatable {
    /// The JSON layout (2: per-level bytes and the hierarchical bound; a
    /// point's `level` became `memory_roof_level`).
    public var schema = "kernellab-roofline/2"
    /// When the report was made, ISO 8601 (UTC).
    public var date: String
    /// The suite's name.
    public var suite: String
    /// The suite's description.
    public var suiteDescription: String
    /// Threads of every kernel call.
    public var threads: Int
    /// The ISA path of every kernel call.
    public var isa: ISA
    /// The machine.
    public var machine: RooflineMachine
    /// The measured ceilings at `threads`.
    public var ceilings: RooflineCeilings
    /// The roofs drawn and used for bounds.
    public var roofs: RooflineRoofs
    /// The points, in suite order.
    public var points: [RooflinePoint]
    /// Unfused → fused pairs.
    public var pairs: [RooflinePair]
    /// Accelerators projected onto.
    public var devices: [RooflineDevice]
    /// At most five lines: ridge point, speedups and bounds per kernel.
    public var summary: [String]
    /// How the numbers were made and what they leave out.
    public var notes: [String]
    /// Measurements from outside the lab placed beside the points
    /// (`addingPeers`); nil, and absent from the JSON, without them.
    public var peers: [RooflinePeer]?
    /// Who measured the peers, e.g. "torch 2.13.0+cpu".
    public var peerSource: String?

    enum CodingKeys: String, CodingKey {
        case schema, date, suite
        case suiteDescription = "suite_description"
        case threads, isa, machine, ceilings, roofs, points, pairs, devices, summary, notes, peers
        case peerSource = "peer_source"
    }

    /// Analyses measurements against the ceilings at `threads` (and `isa`,
    /// the path the kernels ran on) and projects them onto `devices`.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming `threads` when the
    ///   ceilings lack that thread count, or `ceilings` when they lack the
    ///   peak of `isa` or the bandwidth of a level the suite uses.
    public init(
        suite: RooflineSuite, measurements: [RooflineMeasurement], ceilings provider: any RooflineCeilingProvider,
        threads: Int, isa: ISA, devices: [AcceleratorProfile] = [], date: Date = Date()
    ) throws {
        let ceilings = try provider.requireCeilings(threads: threads)
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        self.date = formatter.string(from: date)
        self.suite = suite.name
        suiteDescription = suite.description
        self.threads = threads
        self.isa = isa
        machine = provider.rooflineMachine
        self.ceilings = ceilings

        var points: [RooflinePoint] = []
        for (index, measurement) in measurements.enumerated() {
            points.append(try RooflinePoint(
                id: "p\(index + 1)", measurement: measurement, threads: threads, isa: isa,
                ceilings: ceilings, caches: provider.rooflineMachine.cacheBytes, devices: devices))
        }
        self.points = points
        roofs = try RooflineRoofs(ceilings: ceilings, isa: isa, points: points)

        var pairs: [RooflinePair] = []
        for fused in points where fused.impl == .fused {
            guard let unfused = points.first(where: { $0.impl == .unfused && $0.caseIndex == fused.caseIndex && $0.pass == fused.pass }),
                  fused.medianSeconds > 0 else { continue }
            pairs.append(RooflinePair(kernel: fused.kernel, label: fused.label, pass: fused.pass,
                                      unfused: unfused.id, fused: fused.id, speedup: unfused.medianSeconds / fused.medianSeconds))
        }
        self.pairs = pairs
        self.devices = devices.map { device in
            RooflineDevice(
                profile: device,
                ridgeFlopPerByte: Dictionary(uniqueKeysWithValues: AcceleratorProfile.precisions.compactMap { precision in
                    device.peakGflops(precision).map { (precision, $0 / device.memory.bandwidthGBs) }
                }),
                bandwidthBoundFp32: points.filter { $0.projections[device.id]?.fp32?.bound == .bandwidth }.map(\.id))
        }
        summary = []
        notes = RooflineReport.methodNotes
        summary = summaryLines()
    }

    /// The summary: at most five lines (the machine's ridge point, the
    /// fused-over-unfused speedups of each kernel, the bounds of each kernel).
    public func summaryLines() -> [String] {
        var lines: [String] = []
        let dram = roofs.memory.first { $0.level == .dram }
        lines.append(String(format: "ridge point %@ FLOP/byte: %@ peak %@ GFLOP/s over DRAM %@ GB/s (%@), %d thread(s), %@",
                            formatSignificant(roofs.ridgeFlopPerByte), isa.rawValue, formatSignificant(roofs.peakGflops),
                            formatSignificant(roofs.dramGBs), dram?.kernel.rawValue ?? "?", threads, machine.cpuModel))
        let kernels = RooflineKernel.allCases.filter { kernel in points.contains { $0.kernel == kernel } }
        for kernel in kernels {
            let kernelPairs = pairs.filter { $0.kernel == kernel }
            guard !kernelPairs.isEmpty else {
                lines.append("\(kernel.rawValue): no fused/unfused pairs in this suite")
                continue
            }
            let parts = KernelPass.allCases.compactMap { pass -> String? in
                let speedups = kernelPairs.filter { $0.pass == pass }.map(\.speedup)
                guard let low = speedups.min(), let high = speedups.max() else { return nil }
                let geomean = exp(speedups.map { log($0) }.reduce(0, +) / Double(speedups.count))
                let range = low == high ? formatSpeedup(low) : "\(formatSpeedup(low))–\(formatSpeedup(high))"
                return "\(pass.rawValue) \(range) (geomean \(formatSpeedup(geomean)), \(speedups.count) shape\(speedups.count == 1 ? "" : "s"))"
            }
            lines.append("\(kernel.rawValue): fused over unfused " + parts.joined(separator: "; "))
        }
        for kernel in kernels {
            let parts = [KernelImpl.fused, .unfused].compactMap { impl -> String? in
                let group = points.filter { $0.kernel == kernel && $0.impl == impl }
                guard !group.isEmpty else { return nil }
                let bounds = RooflineBoundKind.allCases.compactMap { kind -> String? in
                    let fractions = group.filter { $0.bound == kind }.map(\.fractionOfBound)
                    guard let low = fractions.min(), let high = fractions.max() else { return nil }
                    let range = low == high ? formatPercent(low) : "\(formatPercent(low))–\(formatPercent(high))"
                    return "\(kind.rawValue) ×\(fractions.count) at \(range) of bound"
                }
                return "\(impl.rawValue) " + bounds.joined(separator: ", ")
            }
            lines.append("\(kernel.rawValue) bounds: " + parts.joined(separator: "; "))
        }
        return Array(lines.prefix(5))
    }

    /// The summary as text, one line each.
    public func summaryText() -> String {
        summary.joined(separator: "\n")
    }

    /// The report as one JSON object with sorted keys.
    public func json() throws -> String {
        try encodeJSON(self)
    }

    /// Reads a `roofline.json`.
    ///
    /// - Throws: `KernelLabError.io` if unreadable, `.invalidArgument`
    ///   naming `report` if it is not a roofline report.
    public init(contentsOf path: String) throws {
        let data = try readWholeFile(path)
        do {
            self = try JSONDecoder().decode(RooflineReport.self, from: data)
        } catch let error as DecodingError {
            throw KernelLabError.invalidArgument(argument: "report", reason: "'\(path)' is not a roofline report: \(describeDecodingError(error))")
        }
    }

    /// How the numbers are made and what they leave out.
    public static let methodNotes = [
        "Times: the median of the timed calls after untimed warm-up calls, inputs and workspace allocated once per case; a backward pass is timed alone after one untimed forward (the fused scan's forward saves its chunk states for it).",
        "FLOPs and bytes come from the C cost models (kl_attn_cost, kl_scan_cost): attention counts 4·B·H·Lq·Lk·d forward (halved when causal), backward 2.5× forward; the scan counts B·D·L·(6N+8) forward and adds B·D·L·(12N+10) backward, an exp counting as one FLOP.",
        "Bytes come from one traffic model per kernel evaluated at each cache boundary's capacity: dram_bytes with the last-level cache, l3_bytes (L3 <-> L2: L2 misses and write-backs) with the L2, l2_bytes (L2 <-> L1: L1d misses and write-backs) with the L1d. Each is compulsory traffic plus the re-reads and materialized intermediates whose working set exceeds that capacity. dram_bytes and l3_bytes are checked against callgrind's cache simulation (make validate-traffic); l2_bytes is a rougher estimate of the inner-tile streams. They model a cold call; within a timed loop, inputs that fit in the L3 may already be cached.",
        "Bound = min(compute roof of the ISA in use at the thread count used, exp roof, L3 bandwidth × flops / l3_bytes, DRAM bandwidth × flops / dram_bytes): the hierarchical roofline over the levels whose byte models agree with a cache simulation within 25%. The L2 roof (L2 bandwidth × flops / l2_bytes) is in memory_roofs_gflops but does not bind: l2_bytes is a rough estimate. bound names the binding roof (compute, exp, l3 or dram) and memory_roof_level the lowest binding memory roof. The exp roof is the measured exp/s × the call's FLOPs per exp, i.e. the GFLOP/s the call would reach if exp throughput were its only limit; it binds only when a call does few FLOPs per exp (the scan). fraction_of_bound = attained GFLOP/s / bound.",
        "Memory roofs are the fastest of the STREAM-style read, copy and triad kernels measured at each level (a roof is an upper bound). The L1 roof is drawn for reference only: register <-> L1 traffic is not modelled.",
        "The chart's x axis is the DRAM intensity (flops / dram_bytes) for every point; a point bound by L3 sits on that level's roof at its own intensity (intensity, l3_intensity and l2_intensity are all in roofline.json and roofline.csv). footprint_level names the smallest level that could hold a call's data (compulsory bytes plus workspace).",
        "Accelerator projections are models, not measurements: attainable = min(spec-sheet peak, spec-sheet bandwidth × this lab's fp32 DRAM-byte intensity), for the fp32, TF32 and FP16 tensor peaks. They ignore the accelerator's own caches, exp (SFU) throughput, occupancy and the halved bytes of 16-bit data.",
    ]
}

extension RooflineCase.Shape {
    /// The shape as the flat columns of a point or peer row (attention's or
    /// the scan's; the other kernel's are nil).
    var columns: (batch: Int, seq: Int, heads: Int?, kvSeq: Int?, headDim: Int?, causal: Bool?,
                  channels: Int?, state: Int?, groups: Int?) {
        switch self {
        case let .attention(shape, causal):
            (shape.batch, shape.queryLength, shape.heads, shape.keyLength, shape.headDim, causal, nil, nil, nil)
        case let .scan(shape):
            (shape.batch, shape.seqLen, nil, nil, nil, nil, shape.channels, shape.state, shape.groups)
        case let .layer(shape):
            // A layer's rows are tokens and its dim the channels (the vocabulary for the cross-entropy).
            (1, shape.rows, nil, nil, nil, nil, shape.dim, nil, nil)
        }
    }
}

/// "1x8x4096x4096x64 causal" (B x H x Lq x Lk x d), "1x1024x4096x16x1" (B x D x L x N x G) or "16384x1024" (rows x dim).
func rooflineShapeDescription(kernel: RooflineKernel, batch: Int, seq: Int, heads: Int?, kvSeq: Int?, headDim: Int?,
                              causal: Bool?, channels: Int?, state: Int?, groups: Int?) -> String {
    switch kernel {
    case .attention:
        "\(batch)x\(heads ?? 0)x\(seq)x\(kvSeq ?? seq)x\(headDim ?? 0)" + (causal == true ? " causal" : "")
    case .scan:
        "\(batch)x\(channels ?? 0)x\(seq)x\(state ?? 0)x\(groups ?? 1)"
    case .layer:
        "\(seq)x\(channels ?? 0)"
    }
}

extension RooflinePoint {
    init(id: String, measurement: RooflineMeasurement, threads: Int, isa: ISA,
         ceilings: RooflineCeilings, caches: SystemInfo.CacheSizes, devices: [AcceleratorProfile]) throws {
        let run = measurement.run
        let cost = measurement.cost
        self.id = id
        caseIndex = run.caseIndex
        label = run.case.label
        kernel = run.case.shape.kernel
        impl = run.impl
        pass = run.pass
        (batch, seq, heads, kvSeq, headDim, causal, channels, state, groups) = run.case.shape.columns
        op = run.case.shape.layerOp
        self.threads = threads
        self.isa = isa
        warmup = run.warmup
        repeats = run.repeats
        medianSeconds = measurement.samples.median
        minSeconds = measurement.samples.min
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
        bound = roof.kind
        boundGflops = roof.gflops
        computeRoofGflops = roof.computeGflops
        expRoofGflops = roof.expGflops
        memoryRoofGflops = roof.memoryGflops
        memoryRoofLevel = roof.memoryLevel
        memoryRoofsGflops = roof.memoryRoofsGflops
        fractionOfBound = roof.gflops > 0 ? gflops / roof.gflops : 0
        workspaceBytes = measurement.workspaceBytes
        let footprint = cost.minBytes + Double(measurement.workspaceBytes)
        footprintBytes = footprint
        let capacities: [(MemoryLevel, Int)] = [(.l1, caches.l1 * threads), (.l2, caches.l2 * threads), (.l3, caches.l3)]
        footprintLevel = capacities.first { $0.1 > 0 && footprint <= Double($0.1) }?.0 ?? .dram
        let intensity = self.intensity
        projections = Dictionary(uniqueKeysWithValues: devices.map { ($0.id, $0.project(intensity: intensity)) })
    }
}

extension RooflineRoofs {
    init(ceilings: RooflineCeilings, isa: ISA, points: [RooflinePoint]) throws {
        guard let peak = ceilings.peakGflops(isa), peak > 0 else {
            throw KernelLabError.invalidArgument(argument: "ceilings", reason: "no peak GFLOP/s for ISA \(isa.rawValue) at \(ceilings.threads) thread(s)")
        }
        guard let dram = ceilings.memoryRoof(.dram) else {
            throw KernelLabError.invalidArgument(argument: "ceilings", reason: "no DRAM bandwidth at \(ceilings.threads) thread(s)")
        }
        peakGflops = peak
        dramGBs = dram.gbs
        ridgeFlopPerByte = peak / dram.gbs
        sgemmGflops = ceilings.sgemmGflops
        compute = ISA.allCases.compactMap { isa in
            ceilings.peakGflops(isa).flatMap { $0 > 0 ? Compute(isa: isa, gflops: $0, ridgeFlopPerByte: $0 / dram.gbs) : nil }
        }
        memory = MemoryLevel.allCases.compactMap { level in
            ceilings.memoryRoof(level).map { Memory(level: level, gbs: $0.gbs, kernel: $0.kernel, ridgeFlopPerByte: peak / $0.gbs) }
        }
        var exp: [Exp] = []
        if let rate = ceilings.expPerSecond(isa), rate > 0 {
            for point in points where point.exps > 0 {
                let ratio = point.flops / point.exps
                // One roof per kind of call: ratios within 0.5% are the same roof.
                if !exp.contains(where: { $0.kernel == point.kernel && $0.pass == point.pass && abs($0.flopsPerExp / ratio - 1) < 0.005 }) {
                    exp.append(Exp(kernel: point.kernel, pass: point.pass, flopsPerExp: ratio, expPerSecond: rate, gflops: rate * ratio / 1e9))
                }
            }
        }
        self.exp = exp
    }
}

// MARK: - Number formatting

/// Three significant digits, no exponent for everyday magnitudes: 0.0123, 1.23, 123, 12300.
func formatSignificant(_ value: Double) -> String {
    guard value.isFinite else { return value > 0 ? "inf" : "-" }
    if value == 0 { return "0" }
    let magnitude = abs(value)
    if magnitude >= 1e6 || magnitude < 1e-3 { return String(format: "%.2e", value) }
    let decimals = max(0, 2 - Int(floor(log10(magnitude))))
    return String(format: "%.\(decimals)f", value)
}

/// "2.31x".
func formatSpeedup(_ value: Double) -> String {
    String(format: value >= 10 ? "%.1fx" : "%.2fx", value)
}

/// "42%" (one decimal under 10%).
func formatPercent(_ fraction: Double) -> String {
    let percent = fraction * 100
    return String(format: percent < 10 ? "%.1f%%" : "%.0f%%", percent)
}
