import Foundation

// Strict JSON reading for the lab's own documents (suites, peers files):
// every field is taken by type, so what is left at the end is unknown keys,
// and every error names the field by its JSON path.

/// A JSON value, decoded strictly: booleans are not numbers, numbers are not
/// booleans, so `"causal": 1` is an error rather than a guess.
enum StrictJSON: Decodable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([StrictJSON]), object([String: StrictJSON])

    /// The kinds a skipped field may be.
    enum Kind: String {
        case object = "an object", array = "an array"
    }

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([StrictJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: StrictJSON].self))
        }
    }

    /// Decodes `data`, or throws `.invalidArgument(argument:)` saying that
    /// `source` is not valid JSON.
    static func decode(_ data: Data, argument: String, source: String) throws -> StrictJSON {
        do {
            return try JSONDecoder().decode(StrictJSON.self, from: data)
        } catch let error as DecodingError {
            throw KernelLabError.invalidArgument(argument: argument, reason: "'\(source)' is not valid JSON: \(describeDecodingError(error))")
        }
    }

    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// Takes typed fields out of a JSON object, so that what is left at the end
/// is unknown keys. Errors name the field by its JSON path.
struct StrictFieldReader {
    var fields: [String: StrictJSON]
    let path: String
    let source: String

    func error(_ key: String, _ reason: String) -> KernelLabError {
        .invalidArgument(argument: path.isEmpty ? key : "\(path).\(key)", reason: "\(reason) (in '\(source)')")
    }

    mutating func take(_ key: String) -> StrictJSON? {
        fields.removeValue(forKey: key)
    }

    mutating func string(_ key: String) throws -> String? {
        switch take(key) {
        case nil, .null?: return nil
        case .string(let value)?: return value
        case let other?: throw error(key, "must be a string, got \(other.kind)")
        }
    }

    mutating func bool(_ key: String) throws -> Bool? {
        switch take(key) {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        case let other?: throw error(key, "must be true or false, got \(other.kind)")
        }
    }

    mutating func number(_ key: String) throws -> Double? {
        switch take(key) {
        case nil, .null?: return nil
        case .number(let value)?: return value
        case let other?: throw error(key, "must be a number, got \(other.kind)")
        }
    }

    mutating func integer(_ key: String, minimum: Int) throws -> Int? {
        switch take(key) {
        case nil, .null?: return nil
        case .number(let value)?:
            guard value.rounded() == value, abs(value) < 1e15 else { throw error(key, "must be an integer, got \(value)") }
            guard Int(value) >= minimum else { throw error(key, "must be at least \(minimum), got \(Int(value))") }
            return Int(value)
        case let other?: throw error(key, "must be an integer, got \(other.kind)")
        }
    }

    /// A positive shape field that must be present.
    mutating func required(_ key: String) throws -> Int {
        guard fields[key] != nil else { throw error(key, "is required for this kernel") }
        return try integer(key, minimum: 1)!
    }

    /// A duration: a finite number of seconds above zero.
    mutating func seconds(_ key: String) throws -> Double? {
        guard let value = try number(key) else { return nil }
        guard value.isFinite, value > 0 else { throw error(key, "must be a positive number of seconds, got \(value)") }
        return value
    }

    /// A required string naming one case of `T`.
    mutating func choice<T: RawRepresentable & CaseIterable & Equatable>(_ key: String, among allowed: [T]? = nil) throws -> T
        where T.RawValue == String {
        let cases = allowed ?? Array(T.allCases)
        let names = cases.map(\.rawValue).joined(separator: ", ")
        guard let name = try string(key) else { throw error(key, "is required: one of \(names)") }
        guard let value = T(rawValue: name), cases.contains(value) else {
            throw error(key, "unknown value '\(name)'; expected one of \(names)")
        }
        return value
    }

    mutating func array(_ key: String) throws -> [StrictJSON]? {
        switch take(key) {
        case nil, .null?: return nil
        case .array(let items)?: return items
        case let other?: throw error(key, "must be an array, got \(other.kind)")
        }
    }

    /// Takes a field that is recorded but not interpreted, checking its type.
    mutating func skip(_ key: String, kind: StrictJSON.Kind) throws {
        switch (take(key), kind) {
        case (nil, _), (.null?, _), (.object?, .object), (.array?, .array): return
        case let (other?, kind): throw error(key, "must be \(kind.rawValue), got \(other.kind)")
        }
    }

    /// Runs a shape initializer, renaming its argument to the JSON key.
    func shape<S>(_ make: () throws -> S) throws -> S {
        let jsonKeys = ["queryLength": "seq", "keyLength": "kv_seq", "headDim": "head_dim", "seqLen": "seq"]
        do {
            return try make()
        } catch KernelLabError.invalidArgument(let argument, let reason) {
            throw error(jsonKeys[argument] ?? argument, reason)
        }
    }

    /// A kernel's shape as suite cases and peers files give it: attention's
    /// batch, heads, seq, head_dim, optional kv_seq (default seq) and causal
    /// (default false); the scan's batch, channels, seq, state and optional
    /// groups (default 1).
    mutating func kernelShape(_ kernel: RooflineKernel) throws -> RooflineCase.Shape {
        switch kernel {
        case .attention:
            let batch = try required("batch"), heads = try required("heads")
            let seq = try required("seq"), headDim = try required("head_dim")
            let kvSeq = try integer("kv_seq", minimum: 1) ?? seq
            let causal = try bool("causal") ?? false
            return .attention(try shape {
                try AttentionShape(batch: batch, heads: heads, queryLength: seq, keyLength: kvSeq, headDim: headDim)
            }, causal: causal)
        case .scan:
            let batch = try required("batch"), channels = try required("channels")
            let seq = try required("seq"), state = try required("state")
            let groups = try integer("groups", minimum: 1) ?? 1
            return .scan(try shape {
                try ScanShape(batch: batch, channels: channels, seqLen: seq, state: state, groups: groups)
            })
        case .layer:
            let op: LayerShape.Op = try choice("op")
            let rows = try required("rows"), dim = try required("dim")
            return .layer(try shape { try LayerShape(op: op, rows: rows, dim: dim) })
        }
    }

    func rejectUnknown() throws {
        if let key = fields.keys.sorted().first {
            throw error(key, "unknown key")
        }
    }
}
