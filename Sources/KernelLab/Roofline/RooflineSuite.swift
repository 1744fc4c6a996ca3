import Foundation

/// A list of kernel cases to place on the roofline, read from
/// `Profiles/suites/NAME.json`:
///
///     {
///       "name": "default",
///       "description": "...",
///       "warmup": 1, "repeats": 3,
///       "cases": [
///         {"kernel": "attention", "impl": "both", "pass": "forward",
///          "batch": 1, "heads": 8, "seq": 4096, "head_dim": 64, "causal": true},
///         {"kernel": "scan", "impl": "both", "pass": "backward",
///          "batch": 1, "channels": 1024, "seq": 4096, "state": 16}
///       ]
///     }
///
/// A bare array of cases is also a suite. `impl` is fused, unfused or both
/// (both makes a pair: the chart draws an arrow from the unfused point to
/// its fused twin); `pass` is forward, backward or both. Attention takes
/// batch, heads, seq, head_dim and optionally kv_seq (default seq) and causal
/// (default false); the scan takes batch, channels, seq, state and optionally
/// groups (default 1); a layer kernel (`"kernel": "layer"`) takes op (one of
/// `LayerShape.Op`), rows and dim, impl defaulting to fused unless the op has
/// an unfused twin (AdamW). Optional per case: `label`, `warmup`, `repeats`.
/// (`level`, which once chose the one memory level bounding a case, is
/// retired and rejected: the bound is hierarchical, see `RooflineBound`.)
/// Optional in the suite and per case: `thresholds`, the
/// regression thresholds of `kernel-lab bench --check` (see
/// `BenchThresholds`; a case's override the suite's, key by key). Optional
/// per case: `min_speedup`, the fused/unfused speedup floor of each ISA, e.g.
/// `{"avx2": 1.5, "avx512": {"forward": 1.5, "backward": 2}}`, that
/// `kernel-lab bench --floors` gates on (see `BenchFloorCheck`), and
/// `min_vector_gain`, the floor of the fused run's scalar-path time over its
/// vector-path time (default 1.5 for attention and the scan, none for a layer). Unknown keys are errors, so a typo cannot
/// silently fall back to a default.
public struct RooflineSuite: Sendable, Equatable {
    /// The suite's name (the file name without `.json`).
    public var name: String
    /// What the suite is for.
    public var description: String
    /// Untimed calls before timing, unless a case says otherwise.
    public var warmup: Int
    /// Timed calls (the report gives their median), unless a case says otherwise.
    public var repeats: Int
    /// The cases, in order.
    public var cases: [RooflineCase]
    /// Regression thresholds of `kernel-lab bench --check` for every case.
    public var thresholds: BenchThresholds

    /// Creates a suite.
    public init(name: String, description: String = "", warmup: Int = 1, repeats: Int = 3, cases: [RooflineCase],
                thresholds: BenchThresholds = BenchThresholds()) {
        self.name = name
        self.description = description
        self.warmup = warmup
        self.repeats = repeats
        self.cases = cases
        self.thresholds = thresholds
    }

    /// The default directory of suites, relative to the working directory.
    public static let defaultDirectory = "Profiles/suites"

    /// Resolves `nameOrPath` to a file: a path when it contains "/" or ends
    /// in ".json", else `directory/NAME.json`.
    public static func path(for nameOrPath: String, directory: String = defaultDirectory) -> String {
        nameOrPath.contains("/") || nameOrPath.hasSuffix(".json")
            ? nameOrPath
            : (directory as NSString).appendingPathComponent(nameOrPath + ".json")
    }

    /// Loads a suite by name (from `directory`) or path.
    ///
    /// - Throws: `KernelLabError.io` when the file is missing (listing the
    ///   suites in `directory`) or unreadable; `KernelLabError.invalidArgument`
    ///   naming the offending field (e.g. `cases[2].kernel`) otherwise.
    public static func load(_ nameOrPath: String, directory: String = defaultDirectory) throws -> RooflineSuite {
        let path = path(for: nameOrPath, directory: directory)
        guard FileManager.default.fileExists(atPath: path) else {
            let available = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
            throw KernelLabError.io(
                path: path,
                reason: "no such suite" + (available.isEmpty ? "" : "; available in '\(directory)': \(available.joined(separator: ", "))"))
        }
        let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        return try RooflineSuite(json: try readWholeFile(path), name: name, source: path)
    }

    /// Parses a suite document. `source` names the document in errors.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming the offending field.
    public init(json data: Data, name: String, source: String = "suite") throws {
        let document = try StrictJSON.decode(data, argument: "suite", source: source)
        let fields: [String: StrictJSON]
        switch document {
        case .array: fields = ["cases": document]
        case .object(let object): fields = object
        default:
            throw KernelLabError.invalidArgument(argument: "suite", reason: "'\(source)' must be an object with \"cases\" or an array of cases")
        }
        var reader = StrictFieldReader(fields: fields, path: "", source: source)
        let suiteName = try reader.string("name") ?? name
        let description = try reader.string("description") ?? ""
        let warmup = try reader.integer("warmup", minimum: 0) ?? 1
        let repeats = try reader.integer("repeats", minimum: 1) ?? 3
        let thresholds = try reader.thresholds("thresholds", base: BenchThresholds())
        guard case .array(let items)? = reader.take("cases") else {
            throw reader.error("cases", "is required: an array of cases")
        }
        try reader.rejectUnknown()
        guard !items.isEmpty else { throw reader.error("cases", "must name at least one case") }
        let cases = try items.enumerated().map { index, item in
            try RooflineCase(item, path: "cases[\(index)]", source: source, thresholds: thresholds)
        }
        self.init(name: suiteName, description: description, warmup: warmup, repeats: repeats, cases: cases,
                  thresholds: thresholds)
    }

    /// Every (case, pass, impl) to measure, in order: per case, each pass,
    /// and within a pass the unfused run before its fused twin.
    public var runs: [RooflineRun] {
        cases.enumerated().flatMap { index, item in
            item.passes.flatMap { pass in
                item.impls.map { impl in
                    RooflineRun(caseIndex: index, case: item, impl: impl, pass: pass,
                                warmup: item.warmup ?? warmup, repeats: item.repeats ?? repeats)
                }
            }
        }
    }
}

/// One kernel call to measure: a suite case at one pass and implementation.
public struct RooflineRun: Sendable, Equatable {
    /// The index of the case in its suite.
    public var caseIndex: Int
    /// The case.
    public var `case`: RooflineCase
    /// The implementation.
    public var impl: KernelImpl
    /// The pass.
    public var pass: KernelPass
    /// Untimed calls.
    public var warmup: Int
    /// Timed calls.
    public var repeats: Int
}

/// The kernels a suite can name.
public enum RooflineKernel: String, CaseIterable, Codable, Sendable {
    /// Scaled dot-product attention (`Attention`).
    case attention
    /// Mamba-1 selective scan (`Scan`).
    case scan
    /// A layer kernel (`LayerShape.Op`: activations, norms, cross-entropy, sum of squares, AdamW).
    case layer
}

/// One case of a suite: a kernel at one shape, with the implementations and
/// passes to measure.
public struct RooflineCase: Sendable, Equatable {
    /// The kernel and its shape.
    public enum Shape: Sendable, Equatable {
        /// Attention of `shape`, causal or not.
        case attention(AttentionShape, causal: Bool)
        /// The selective scan of `shape` (Mamba's defaults: D, z, delta_bias, softplus).
        case scan(ScanShape)
        /// A layer kernel at `shape`.
        case layer(LayerShape)

        /// The kernel.
        public var kernel: RooflineKernel {
            switch self {
            case .attention: .attention
            case .scan: .scan
            case .layer: .layer
            }
        }

        /// The implementations the kernel has (attention and the scan have both; most layers only fused).
        public var impls: [KernelImpl] {
            if case let .layer(shape) = self { return shape.op.impls }
            return [.unfused, .fused]
        }

        /// The layer op, for a layer kernel.
        public var layerOp: LayerShape.Op? {
            if case let .layer(shape) = self { return shape.op }
            return nil
        }

        /// The passes the kernel has.
        public var passes: [KernelPass] {
            if case let .layer(shape) = self { return shape.op.passes }
            return [.forward, .backward]
        }
    }

    /// A short name for charts and tables, e.g. "attn L4096 causal".
    public var label: String
    /// The kernel and its shape.
    public var shape: Shape
    /// Implementations to run: one, or unfused and fused (a pair).
    public var impls: [KernelImpl]
    /// Passes to run.
    public var passes: [KernelPass]
    /// Overrides the suite's warmup.
    public var warmup: Int?
    /// Overrides the suite's repeats.
    public var repeats: Int?
    /// Regression thresholds of `kernel-lab bench --check` (the suite's,
    /// overridden by the case's own).
    public var thresholds: BenchThresholds
    /// Fused/unfused speedup floors by ISA name (`min_speedup`), for
    /// `kernel-lab bench --floors`; empty when the case states none.
    public var minSpeedup: [String: Double]
    /// The fused run's floor of scalar-path time over its time on the
    /// hardware's vector ISA (`min_vector_gain`, for `bench --floors`).
    /// Attention and the scan default to `BenchFloorCheck.defaultVectorGainFloor`;
    /// a layer kernel is checked only when it states one, because a
    /// memory-bound kernel's scalar path can reach the DRAM roof too (on Zen 4
    /// the norms, the sum of squares and AdamW measured 1.0-1.2x), so the
    /// gain cannot tell a vector path from a scalar one there.
    public var minVectorGain: Double?

    /// A case's vector-gain floor: the kernel's default, none, or a stated one.
    public enum VectorGainFloor: Sendable, Equatable {
        /// `BenchFloorCheck.defaultVectorGainFloor` for attention and the scan, none for a layer.
        case kernelDefault
        case none
        case atLeast(Double)
    }

    /// Creates a case; `impls` defaults to every implementation the kernel has
    /// (those it lacks are dropped) and `label` to a description of the shape.
    public init(shape: Shape, impls: [KernelImpl]? = nil, passes: [KernelPass] = [.forward],
                label: String? = nil, warmup: Int? = nil, repeats: Int? = nil,
                thresholds: BenchThresholds = BenchThresholds(), minSpeedup: [String: Double] = [:],
                minVectorGain: VectorGainFloor = .kernelDefault) {
        self.thresholds = thresholds
        self.minSpeedup = minSpeedup
        switch minVectorGain {
        case .kernelDefault: self.minVectorGain = shape.kernel == .layer ? nil : BenchFloorCheck.defaultVectorGainFloor
        case .none: self.minVectorGain = nil
        case .atLeast(let floor): self.minVectorGain = floor
        }
        self.shape = shape
        // Implementations and passes the kernel lacks are dropped (the JSON reader rejects them by name
        // first); a case left with none takes the kernel's own.
        let kept = (impls ?? shape.impls).filter { shape.impls.contains($0) }, keptPasses = passes.filter { shape.passes.contains($0) }
        self.impls = kept.isEmpty ? shape.impls : kept
        self.passes = keptPasses.isEmpty ? [.forward] : keptPasses
        self.label = label ?? RooflineCase.defaultLabel(shape)
        self.warmup = warmup
        self.repeats = repeats
    }

    /// "attn L4096" (with kv, d and B, H when not the common ones) or "scan D1024 L4096".
    static func defaultLabel(_ shape: Shape) -> String {
        switch shape {
        case let .attention(s, causal):
            var parts = ["attn", "L\(s.queryLength)"]
            if s.keyLength != s.queryLength { parts.append("Lk\(s.keyLength)") }
            if s.headDim != 64 { parts.append("d\(s.headDim)") }
            if s.batch != 1 || s.heads != 8 { parts.append("B\(s.batch)H\(s.heads)") }
            if causal { parts.append("causal") }
            return parts.joined(separator: " ")
        case let .scan(s):
            var parts = ["scan", "D\(s.channels)", "L\(s.seqLen)"]
            if s.state != 16 { parts.append("N\(s.state)") }
            if s.batch != 1 { parts.append("B\(s.batch)") }
            if s.groups != 1 { parts.append("G\(s.groups)") }
            return parts.joined(separator: " ")
        case let .layer(s):
            return s.op == .crossEntropy ? "cross_entropy V\(s.dim) x\(s.rows)" : "\(s.op.rawValue) \(s.rows)x\(s.dim)"
        }
    }

    fileprivate init(_ json: StrictJSON, path: String, source: String, thresholds suiteThresholds: BenchThresholds) throws {
        guard case .object(let fields) = json else {
            throw KernelLabError.invalidArgument(argument: path, reason: "must be an object (in '\(source)')")
        }
        var reader = StrictFieldReader(fields: fields, path: path, source: source)
        guard let kernelName = try reader.string("kernel") else {
            throw reader.error("kernel", "is required: one of \(RooflineKernel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let kernel = RooflineKernel(rawValue: kernelName) else {
            throw reader.error("kernel", "unknown kernel '\(kernelName)'; expected one of \(RooflineKernel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let implName = try reader.string("impl"), passName = try reader.string("pass")
        let label = try reader.string("label")
        let warmup = try reader.integer("warmup", minimum: 0)
        let repeats = try reader.integer("repeats", minimum: 1)
        if try reader.string("level") != nil {
            throw reader.error("level", "is retired: every case is bounded by each memory level with its own modelled traffic (L3 and DRAM bytes); remove it")
        }
        let thresholds = try reader.thresholds("thresholds", base: suiteThresholds)
        let minSpeedup = try reader.isaFloors("min_speedup")
        let minVectorGain = try reader.number("min_vector_gain")
        if let minVectorGain, !(minVectorGain > 0 && minVectorGain.isFinite) {
            throw reader.error("min_vector_gain", "must be a positive number (a speedup), got \(minVectorGain)")
        }
        let shape = try reader.kernelShape(kernel)
        try reader.rejectUnknown()
        let what = shape.kernel == .layer ? "\(kernel.rawValue) \(shape.layerOp!.rawValue)" : kernel.rawValue
        // "both" is the default where the kernel has both (a layer without a twin defaults to fused).
        let impls: [KernelImpl]
        switch implName ?? (shape.impls.count > 1 ? "both" : "fused") {
        case "both": impls = [.unfused, .fused]
        case let name:
            guard let impl = KernelImpl(rawValue: name) else {
                throw reader.error("impl", "unknown implementation '\(name)'; expected fused, unfused or both")
            }
            impls = [impl]
        }
        for impl in impls where !shape.impls.contains(impl) {
            throw reader.error("impl", "\(what) has no \(impl.rawValue) implementation (it has \(shape.impls.map(\.rawValue).joined(separator: ", ")))")
        }
        let passes: [KernelPass]
        switch passName ?? "forward" {
        case "both": passes = [.forward, .backward]
        case let name:
            guard let pass = KernelPass(rawValue: name) else {
                throw reader.error("pass", "unknown pass '\(name)'; expected forward, backward or both")
            }
            passes = [pass]
        }
        for pass in passes where !shape.passes.contains(pass) {
            throw reader.error("pass", "\(what) has no \(pass.rawValue) pass (it has \(shape.passes.map(\.rawValue).joined(separator: ", ")))")
        }
        if !minSpeedup.isEmpty, impls.count < 2 {
            throw reader.error("min_speedup", "needs \"impl\": \"both\" (a speedup is the fused run over its unfused twin)")
        }
        self.init(shape: shape, impls: impls, passes: passes, label: label, warmup: warmup, repeats: repeats,
                  thresholds: thresholds, minSpeedup: minSpeedup, minVectorGain: minVectorGain.map { .atLeast($0) } ?? .kernelDefault)
    }
}

// MARK: - Suite fields

extension StrictFieldReader {
    /// An object of fractions in (0, 10], e.g. `{"time": 0.1}`, each
    /// replacing the same key of `base`.
    mutating func thresholds(_ key: String, base: BenchThresholds) throws -> BenchThresholds {
        switch take(key) {
        case nil, .null?: return base
        case .object(let object)?:
            var inner = StrictFieldReader(fields: object, path: path.isEmpty ? key : "\(path).\(key)", source: source)
            var result = base
            result.time = try inner.fraction("time") ?? base.time
            result.efficiency = try inner.fraction("efficiency") ?? base.efficiency
            result.speedup = try inner.fraction("speedup") ?? base.speedup
            try inner.rejectUnknown()
            return result
        case let other?: throw error(key, "must be an object like {\"time\": 0.1}, got \(other.kind)")
        }
    }

    /// An object of positive numbers keyed by ISA name, e.g.
    /// `{"avx2": 1.5}`; empty when absent.
    mutating func isaFloors(_ key: String) throws -> [String: Double] {
        switch take(key) {
        case nil, .null?: return [:]
        case .object(let object)?:
            var floors: [String: Double] = [:]
            func floor(_ value: StrictJSON, _ field: String) throws -> Double {
                guard case .number(let floor) = value, floor > 0, floor.isFinite else {
                    throw KernelLabError.invalidArgument(argument: field, reason: "must be a positive number (a speedup) (in '\(source)')")
                }
                return floor
            }
            for (name, value) in object {
                let field = "\(path.isEmpty ? key : "\(path).\(key)").\(name)"
                guard ISA(rawValue: name) != nil else {
                    throw KernelLabError.invalidArgument(
                        argument: field,
                        reason: "unknown ISA; expected one of \(ISA.allCases.map(\.rawValue).joined(separator: ", ")) (in '\(source)')")
                }
                // One floor for both passes, or {"forward": x, "backward": y}: kept as "isa/pass".
                if case .object(let byPass) = value {
                    for (pass, passValue) in byPass {
                        guard KernelPass(rawValue: pass) != nil else {
                            throw KernelLabError.invalidArgument(argument: "\(field).\(pass)",
                                                                 reason: "unknown pass; expected forward or backward (in '\(source)')")
                        }
                        floors["\(name)/\(pass)"] = try floor(passValue, "\(field).\(pass)")
                    }
                } else {
                    floors[name] = try floor(value, field)
                }
            }
            return floors
        case let other?: throw error(key, "must be an object like {\"avx2\": 1.5} or {\"avx2\": {\"forward\": 1.5}}, got \(other.kind)")
        }
    }

    /// A relative change: a number in (0, 10].
    mutating func fraction(_ key: String) throws -> Double? {
        switch take(key) {
        case nil, .null?: return nil
        case .number(let value)?:
            guard value > 0, value <= 10 else { throw error(key, "must be a fraction in (0, 10] (0.1 = 10%), got \(value)") }
            return value
        case let other?: throw error(key, "must be a number, got \(other.kind)")
        }
    }
}
