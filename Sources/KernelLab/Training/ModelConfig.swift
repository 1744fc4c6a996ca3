import Foundation

/// The architecture of a language model the training engine builds: a token
/// embedding, a stack of blocks named by `pattern`, a final norm and an LM
/// head.
///
/// `pattern` spells the stack bottom to top, one letter per block:
/// `A` a pre-norm transformer block (LayerNorm, causal multi-head attention
/// on the fused kernel, residual; LayerNorm, GELU MLP, residual), `M` a
/// Mamba-1 block (RMSNorm, in_proj, causal conv1d + SiLU, x_proj, dt_proj,
/// the fused selective scan, out_proj, residual), `L` an LSTM layer (the
/// fused cell; no residual, as a stacked LSTM). `AAAA` is a transformer,
/// `MMMM` a Mamba model, `LL` an LSTM, `MMAM` a hybrid.
public struct ModelConfig: Equatable, Sendable {
    /// How attention blocks see positions.
    public enum Position: String, CaseIterable, Sendable {
        /// No positional information (causality alone).
        case nope
        /// Rotary embeddings on the first `rotaryDims` of each head's dimensions.
        case rope
        /// ALiBi with MPT's slopes, `2^(-8 (h + 1) / H)`.
        case alibi
        /// Hard-ALiBi: heads with a window see only their last `windows[h]`
        /// tokens; the others are unlimited and without positions.
        case hardAlibi = "hard_alibi"
    }

    public var vocabulary: Int
    public var dModel: Int
    public var pattern: String
    /// Attention heads (`A` blocks); `dModel` must divide by it.
    public var heads: Int
    public var position: Position
    /// RoPE's rotated dimensions per head (even, at most the head dimension).
    public var rotaryDims: Int
    public var ropeBase: Float
    /// Per-head windows for Hard-ALiBi (`<= 0`: unlimited); `heads` entries.
    public var windows: [Int]
    public var mlpRatio: Int
    /// Whether the LM head reuses the embedding table.
    public var tiedEmbeddings: Bool
    /// Mamba: state size N, expansion (d_inner = expand d_model), conv kernel, dt rank.
    public var dState: Int
    public var expand: Int
    public var convKernel: Int
    public var dtRank: Int
    public var normEpsilon: Float
    /// The final norm: RMSNorm when the stack has no attention block, else LayerNorm.
    public var finalNorm: Normalization {
        pattern.contains("A") ? .layerNorm : .rmsNorm
    }

    public var headDim: Int { dModel / heads }
    public var dInner: Int { expand * dModel }

    /// A model with the usual defaults: 4 heads, NoPE, MLP ratio 4, tied
    /// embeddings, Mamba's N = 16, expand 2, kernel 4, dt rank
    /// ceil(d_model / 16); Hard-ALiBi windows 1...H/2 on the first half of
    /// the heads (the copy paper's choice), the rest unlimited.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming the field that is
    ///   out of range (see `validate()`).
    public init(vocabulary: Int, dModel: Int, pattern: String, heads: Int = 4, position: Position = .nope,
                rotaryDims: Int? = nil, ropeBase: Float = 10000, windows: [Int]? = nil, mlpRatio: Int = 4,
                tiedEmbeddings: Bool = true, dState: Int = 16, expand: Int = 2, convKernel: Int = 4,
                dtRank: Int? = nil, normEpsilon: Float = 1e-5) throws {
        self.vocabulary = vocabulary
        self.dModel = dModel
        self.pattern = pattern
        self.heads = heads
        self.position = position
        let headDim = heads > 0 ? dModel / heads : 0
        // GPT-NeoX's rotary_pct = 0.25 (the copy paper's models), at least one pair.
        self.rotaryDims = rotaryDims ?? max(2, headDim / 4 / 2 * 2)
        self.ropeBase = ropeBase
        self.windows = windows ?? ModelConfig.hardAlibiWindows(heads: heads)
        self.mlpRatio = mlpRatio
        self.tiedEmbeddings = tiedEmbeddings
        self.dState = dState
        self.expand = expand
        self.convKernel = convKernel
        self.dtRank = dtRank ?? (dModel + 15) / 16
        self.normEpsilon = normEpsilon
        // Fields that shape no layer of this pattern take their defaults, so
        // that equal models compare equal and a config survives the JSON a
        // checkpoint stores (which leaves them out).
        if !pattern.contains("A") {
            self.heads = 4
            self.position = .nope
            self.mlpRatio = 4
        }
        if self.position != .rope {
            self.rotaryDims = max(2, (self.heads > 0 ? self.dModel / self.heads : 0) / 4 / 2 * 2)
            self.ropeBase = 10000
        }
        if self.position != .hardAlibi { self.windows = ModelConfig.hardAlibiWindows(heads: self.heads) }
        if !pattern.contains("M") {
            self.dState = 16
            self.expand = 2
            self.convKernel = 4
            self.dtRank = (dModel + 15) / 16
        }
        try validate()
    }

    /// The deepest stack a config may describe.
    public static let maxLayers = 256

    /// The copy paper's Hard-ALiBi: head h < H/2 sees its last h + 1 tokens,
    /// the others are unlimited.
    public static func hardAlibiWindows(heads: Int) -> [Int] {
        (0..<max(heads, 0)).map { $0 < heads / 2 ? $0 + 1 : 0 }
    }

    /// ALiBi's per-head slopes (MPT's, alibi_bias_max = 8).
    public var alibiSlopes: [Float] {
        (0..<heads).map { Float(pow(2.0, -8.0 * Double($0 + 1) / Double(heads))) }
    }

    /// Checks every field; the error names the field and its range.
    public func validate() throws {
        func fail(_ field: String, _ reason: String) -> KernelLabError {
            .invalidArgument(argument: field, reason: reason)
        }
        guard (2...1 << 20).contains(vocabulary) else { throw fail("vocab", "must be in 2...\(1 << 20), got \(vocabulary)") }
        guard (1...1 << 16).contains(dModel) else { throw fail("d_model", "must be in 1...65536, got \(dModel)") }
        guard !pattern.isEmpty, pattern.count <= ModelConfig.maxLayers, pattern.allSatisfy({ "AML".contains($0) }) else {
            throw fail("pattern", "must be 1...\(ModelConfig.maxLayers) letters of A (attention), M (Mamba), L (LSTM), got '\(pattern)'")
        }
        if pattern.contains("A") {
            guard heads >= 1, dModel % heads == 0 else {
                throw fail("heads", "must divide d_model = \(dModel), got \(heads)")
            }
            guard mlpRatio >= 1, mlpRatio <= 64 else { throw fail("mlp_ratio", "must be in 1...64, got \(mlpRatio)") }
            if position == .rope {
                guard rotaryDims >= 2, rotaryDims % 2 == 0, rotaryDims <= headDim else {
                    throw fail("rotary_dims", "must be even and in 2...\(headDim) (the head dimension), got \(rotaryDims)")
                }
                guard ropeBase > 1, ropeBase.isFinite else { throw fail("rope_base", "must be a finite number > 1, got \(ropeBase)") }
            }
            if position == .hardAlibi {
                guard windows.count == heads else {
                    throw fail("windows", "needs one entry per head (\(heads)), got \(windows.count)")
                }
                guard windows.allSatisfy({ $0 <= Int(Int32.max) }) else { throw fail("windows", "entries must fit in 32 bits") }
            }
        }
        if pattern.contains("M") {
            guard (1...1024).contains(dState) else { throw fail("d_state", "must be in 1...1024, got \(dState)") }
            guard (1...16).contains(expand) else { throw fail("expand", "must be in 1...16, got \(expand)") }
            guard (1...64).contains(convKernel) else { throw fail("conv_kernel", "must be in 1...64, got \(convKernel)") }
            guard (1...dModel).contains(dtRank) else { throw fail("dt_rank", "must be in 1...\(dModel), got \(dtRank)") }
        }
        guard normEpsilon > 0, normEpsilon.isFinite else { throw fail("norm_eps", "must be a positive number, got \(normEpsilon)") }
    }
}

// MARK: - JSON

extension ModelConfig {
    /// Reads a config from JSON: `pattern` (or `model`: `transformer`,
    /// `mamba`, `lstm` with `layers`), `vocab`, `d_model`, and the optional
    /// `heads`, `position`, `rotary_dims`, `rope_base`, `windows`,
    /// `mlp_ratio`, `tied`, `d_state`, `expand`, `conv_kernel`, `dt_rank`,
    /// `norm_eps`. Unknown keys are an error (a typo is not a default).
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming the field at fault.
    public static func decode(_ data: Data, source: String) throws -> ModelConfig {
        guard case .object(let fields) = try StrictJSON.decode(data, argument: "config", source: source) else {
            throw KernelLabError.invalidArgument(argument: "config", reason: "'\(source)' must hold a JSON object")
        }
        var reader = StrictFieldReader(fields: fields, path: "", source: source)
        return try decode(&reader)
    }

    static func decode(_ reader: inout StrictFieldReader) throws -> ModelConfig {
        let kind = try reader.string("model")
        let layers = try reader.integer("layers", minimum: 1)
        // Checked before the pattern is spelled out: a huge count must not become a huge string.
        if let layers, layers > ModelConfig.maxLayers {
            throw reader.error("layers", "must be in 1...\(ModelConfig.maxLayers), got \(layers)")
        }
        var pattern = try reader.string("pattern")
        if let kind {
            let letter: String
            switch kind {
            case "transformer": letter = "A"
            case "mamba": letter = "M"
            case "lstm": letter = "L"
            case "hybrid": letter = ""
            default: throw reader.error("model", "unknown model '\(kind)'; expected transformer, mamba, lstm or hybrid")
            }
            if letter.isEmpty {
                guard pattern != nil else { throw reader.error("pattern", "a hybrid needs a layer pattern such as \"MMAM\"") }
            } else {
                guard pattern == nil else { throw reader.error("pattern", "give either model and layers or a pattern") }
                pattern = String(repeating: letter, count: layers ?? 2)
            }
        } else if layers != nil {
            throw reader.error("layers", "needs model (transformer, mamba or lstm)")
        }
        guard let pattern else { throw reader.error("pattern", "is required (or model and layers)") }
        guard let vocabulary = try reader.integer("vocab", minimum: 2) else { throw reader.error("vocab", "is required") }
        guard let dModel = try reader.integer("d_model", minimum: 1) else { throw reader.error("d_model", "is required") }
        let givenHeads = try reader.integer("heads", minimum: 1)
        var givenPosition: Position?
        if let name = try reader.string("position") {
            guard let value = Position(rawValue: name) else {
                throw reader.error("position", "unknown '\(name)'; expected one of \(Position.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            givenPosition = value
        }
        let position = givenPosition ?? .nope
        let rotary = try reader.integer("rotary_dims", minimum: 2)
        let givenRopeBase = try reader.number("rope_base").map(Float.init)
        var windows: [Int]?
        if let items = try reader.array("windows") {
            windows = try items.enumerated().map { index, item in
                guard case .number(let value) = item, value.rounded() == value, abs(value) < 1e9 else {
                    throw reader.error("windows[\(index)]", "must be an integer (<= 0 for an unlimited head)")
                }
                return Int(value)
            }
        }
        let givenMLPRatio = try reader.integer("mlp_ratio", minimum: 1)
        let tied = try reader.bool("tied") ?? true
        let givenDState = try reader.integer("d_state", minimum: 1)
        let givenExpand = try reader.integer("expand", minimum: 1)
        let givenConvKernel = try reader.integer("conv_kernel", minimum: 1)
        let dtRank = try reader.integer("dt_rank", minimum: 1)
        let eps = try reader.number("norm_eps").map(Float.init) ?? 1e-5
        // A key that shapes no layer of this pattern is an error, as an
        // unknown key is: it would be dropped from the checkpoint's config,
        // and the model it describes would not match the file on resume.
        func inapplicable(_ keys: [(String, Bool)], _ reason: String) throws {
            if let key = keys.first(where: { $0.1 })?.0 { throw reader.error(key, reason) }
        }
        if !pattern.contains("A") {
            try inapplicable([("heads", givenHeads != nil), ("position", givenPosition != nil), ("rotary_dims", rotary != nil),
                              ("rope_base", givenRopeBase != nil), ("windows", windows != nil), ("mlp_ratio", givenMLPRatio != nil)],
                             "applies to attention blocks (A), and pattern '\(pattern)' has none")
        } else {
            if position != .rope {
                try inapplicable([("rotary_dims", rotary != nil), ("rope_base", givenRopeBase != nil)],
                                 "applies to position rope only, this config has \(position.rawValue)")
            }
            if position != .hardAlibi {
                try inapplicable([("windows", windows != nil)], "applies to position hard_alibi only, this config has \(position.rawValue)")
            }
        }
        if !pattern.contains("M") {
            try inapplicable([("d_state", givenDState != nil), ("expand", givenExpand != nil),
                              ("conv_kernel", givenConvKernel != nil), ("dt_rank", dtRank != nil)],
                             "applies to Mamba blocks (M), and pattern '\(pattern)' has none")
        }
        let heads = givenHeads ?? 4, ropeBase = givenRopeBase ?? 10000, mlpRatio = givenMLPRatio ?? 4
        let dState = givenDState ?? 16, expand = givenExpand ?? 2, convKernel = givenConvKernel ?? 4
        try reader.rejectUnknown()
        do {
            return try ModelConfig(vocabulary: vocabulary, dModel: dModel, pattern: pattern, heads: heads, position: position,
                                   rotaryDims: rotary, ropeBase: ropeBase, windows: windows, mlpRatio: mlpRatio,
                                   tiedEmbeddings: tied, dState: dState, expand: expand, convKernel: convKernel,
                                   dtRank: dtRank, normEpsilon: eps)
        } catch KernelLabError.invalidArgument(let argument, let reason) {
            throw reader.error(argument, reason)
        }
    }

    /// The config as JSON (every field, pattern form), as checkpoints store it.
    public var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "pattern": pattern, "vocab": vocabulary, "d_model": dModel, "tied": tiedEmbeddings, "norm_eps": Double(normEpsilon),
        ]
        if pattern.contains("A") {
            object["heads"] = heads
            object["position"] = position.rawValue
            object["mlp_ratio"] = mlpRatio
            if position == .rope {
                object["rotary_dims"] = rotaryDims
                object["rope_base"] = Double(ropeBase)
            }
            if position == .hardAlibi { object["windows"] = windows }
        }
        if pattern.contains("M") {
            object["d_state"] = dState
            object["expand"] = expand
            object["conv_kernel"] = convKernel
            object["dt_rank"] = dtRank
        }
        return object
    }

    /// `jsonObject` serialized with sorted keys (stable bytes).
    public var jsonString: String {
        let data = try! JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
