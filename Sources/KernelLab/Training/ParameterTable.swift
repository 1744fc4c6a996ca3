import CKernels
import Foundation

/// A float buffer the engine owns (`kl_alloc`: 64-byte aligned, NUMA-local),
/// zeroed on creation and freed on deinit.
final class FloatBuffer {
    let count: Int
    let base: UnsafeMutablePointer<Float>
    private let bytes: Int

    init(count: Int) throws {
        self.count = count
        bytes = max((count * MemoryLayout<Float>.stride + 63) & ~63, 64)
        guard let raw = kl_alloc(bytes) else {
            throw KernelLabError.kernel(status: .allocation, detail: "kl_alloc(\(bytes)) failed")
        }
        base = raw.bindMemory(to: Float.self, capacity: bytes / 4)
        base.initialize(repeating: 0, count: bytes / 4)
    }

    deinit { kl_free(base, bytes) }

    func zero() { base.update(repeating: 0, count: count) }
}

/// How a parameter starts.
enum ParameterInit: Equatable {
    case normal(std: Float)
    case uniform(bound: Float)
    case constant(Float)
    /// Mamba's A_log: row d holds log(1), ..., log(N).
    case aLog
    /// Mamba's dt bias: softplus(bias) log-uniform in [low, high].
    case dtBias(low: Float, high: Float)
}

/// One named parameter: its place in the flat buffers and what it belongs to.
public struct ParameterEntry: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    /// The component it is counted under ("embedding", "attention", "mlp", "mamba", ...).
    public let component: String
    /// Whether AdamW's weight decay applies (matrices yes; norms, biases, Mamba's A and D no).
    public let decayed: Bool
    public var count: Int { shape.reduce(1, *) }
}

/// The size table of a model's one flat parameter buffer (llm.c's design):
/// every parameter is a slice at a fixed offset, so parameters, gradients
/// and AdamW's two moments are four buffers of the same layout and one
/// optimizer call covers them. Decayed parameters come first, so the
/// optimizer runs as two calls (with and without weight decay).
public struct ParameterTable: Sendable {
    public private(set) var entries: [ParameterEntry] = []
    /// Parameters with weight decay: `[0, decayedCount)` of the flat buffer.
    public private(set) var decayedCount = 0
    public private(set) var count = 0
    var inits: [String: ParameterInit] = [:]

    private var pending: [(name: String, shape: [Int], component: String, decayed: Bool, initializer: ParameterInit)] = []

    mutating func add(_ name: String, _ shape: [Int], _ component: String, decayed: Bool, _ initializer: ParameterInit) {
        pending.append((name, shape, component, decayed, initializer))
    }

    /// Fixes the offsets: decayed entries first, each group in the order added.
    mutating func finish() {
        var offset = 0
        for decayedGroup in [true, false] {
            for p in pending where p.decayed == decayedGroup {
                let entry = ParameterEntry(name: p.name, shape: p.shape, offset: offset, component: p.component, decayed: p.decayed)
                entries.append(entry)
                inits[p.name] = p.initializer
                // 16-float alignment keeps every slice on its own cache lines.
                offset += (entry.count + 15) / 16 * 16
            }
            if decayedGroup { decayedCount = offset }
        }
        count = offset
        pending = []
    }

    public func entry(_ name: String) -> ParameterEntry? {
        entries.first { $0.name == name }
    }

    /// Offset of a parameter the model defined (a missing name is a bug).
    func offset(_ name: String) -> Int {
        guard let entry = entry(name) else { preconditionFailure("no parameter named \(name)") }
        return entry.offset
    }

    /// Parameter counts per component, in first-seen order (padding excluded).
    public var componentCounts: [(component: String, count: Int)] {
        var order: [String] = []
        var counts: [String: Int] = [:]
        for entry in entries {
            if counts[entry.component] == nil { order.append(entry.component) }
            counts[entry.component, default: 0] += entry.count
        }
        return order.map { ($0, counts[$0]!) }
    }

    /// Parameters proper (without the alignment padding).
    public var parameterCount: Int { entries.reduce(0) { $0 + $1.count } }

    /// Writes every parameter's initial values (the padding stays zero).
    func initialize(_ params: UnsafeMutablePointer<Float>, seed: UInt64) {
        for (index, entry) in entries.enumerated() {
            // One stream per parameter, so adding a parameter does not shift the others.
            var rng = SplitMix64(seed: seed &+ 0x9E37_79B9 &* UInt64(index + 1))
            let p = params + entry.offset
            switch inits[entry.name]! {
            case .normal(let std):
                var i = 0
                while i < entry.count {
                    // Box-Muller: two normals per pair of uniforms.
                    let u1 = max(Double(rng.nextUnitFloat()), 1e-12), u2 = Double(rng.nextUnitFloat())
                    let r = (-2 * log(u1)).squareRoot()
                    p[i] = Float(r * cos(2 * .pi * u2)) * std
                    if i + 1 < entry.count { p[i + 1] = Float(r * sin(2 * .pi * u2)) * std }
                    i += 2
                }
            case .uniform(let bound):
                for i in 0..<entry.count { p[i] = (2 * rng.nextUnitFloat() - 1) * bound }
            case .constant(let value):
                p.update(repeating: value, count: entry.count)
            case .aLog:
                let n = entry.shape[1]
                for i in 0..<entry.count { p[i] = Float(log(Double(i % n + 1))) }
            case .dtBias(let low, let high):
                for i in 0..<entry.count {
                    let dt = exp(Double(rng.nextUnitFloat()) * (log(Double(high)) - log(Double(low))) + log(Double(low)))
                    // The inverse of softplus: dt = log(1 + e^b)  <=>  b = dt + log(1 - e^-dt).
                    p[i] = Float(dt + log(-expm1(-dt)))
                }
            }
        }
    }
}
