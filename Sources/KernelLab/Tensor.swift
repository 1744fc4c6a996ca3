import CKernels

/// Element storage of one or more tensors: 64-byte-aligned fp32 memory from
/// `kl_alloc` (placed on the allocating thread's NUMA node), freed on deinit.
final class TensorStorage: @unchecked Sendable {
    let base: UnsafeMutablePointer<Float>
    let bytes: Int

    /// Allocates room for `count` floats. The memory is left uninitialized
    /// unless `zeroed`; callers that fill every element skip the extra pass.
    init(count: Int, zeroed: Bool) throws {
        // Never ask for 0 bytes (kl_alloc may return NULL for it), so every
        // tensor, even an empty one, has a valid base address for C calls.
        let needed = max(count, 1) * MemoryLayout<Float>.stride
        let bytes = (needed + 63) & ~63
        guard let raw = kl_alloc(bytes) else {
            throw KernelLabError.kernel(status: .allocation, detail: "kl_alloc(\(bytes)) failed")
        }
        self.bytes = bytes
        base = raw.bindMemory(to: Float.self, capacity: bytes / MemoryLayout<Float>.stride)
        if zeroed {
            base.initialize(repeating: 0, count: bytes / MemoryLayout<Float>.stride)
        }
    }

    deinit {
        kl_free(UnsafeMutableRawPointer(base), bytes)
    }
}

/// A dense fp32 tensor in C (row-major) order that owns its memory.
///
/// Storage is 64-byte aligned and allocated through the C layer (NUMA aware).
/// `Tensor` is a reference type: copies of a reference see the same elements,
/// and `reshaped(_:)` returns a view on the same storage; use `copy()` for an
/// independent tensor. It is `Sendable` so that it can be handed between
/// tasks, but concurrent writes to one tensor are the caller's to serialize.
public final class Tensor: @unchecked Sendable {
    /// The most dimensions a tensor may have.
    public static let maxRank = 8

    /// The extent of each dimension, outermost first. Empty for a scalar (0-d) tensor.
    public let shape: [Int]
    /// The number of elements: the product of `shape` (1 for a 0-d tensor).
    public let count: Int

    let storage: TensorStorage

    /// The number of dimensions.
    public var rank: Int { shape.count }

    init(shape: [Int], count: Int, storage: TensorStorage) {
        self.shape = shape
        self.count = count
        self.storage = storage
    }

    /// Creates a zero-filled tensor.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for a negative dimension, a
    ///   rank above `Tensor.maxRank` or a size that overflows.
    public convenience init(shape: [Int]) throws {
        let count = try Tensor.elementCount(of: shape)
        self.init(shape: shape, count: count, storage: try TensorStorage(count: count, zeroed: true))
    }

    /// Creates a tensor holding `values` in C order.
    ///
    /// - Throws: `KernelLabError.invalidArgument` if `values.count` is not the
    ///   product of `shape`, or if `shape` is invalid.
    public convenience init(shape: [Int], values: [Float]) throws {
        let count = try Tensor.elementCount(of: shape)
        guard values.count == count else {
            throw KernelLabError.invalidArgument(
                argument: "values",
                reason: "shape \(describeShape(shape)) needs \(count) values, got \(values.count)")
        }
        self.init(shape: shape, count: count, storage: try TensorStorage(count: count, zeroed: false))
        values.withUnsafeBufferPointer { source in
            if let start = source.baseAddress {
                storage.base.initialize(from: start, count: count)
            }
        }
    }

    /// Creates a tensor whose elements are drawn uniformly from `range` by a
    /// `SplitMix64` generator seeded with `seed`: the same seed and shape give
    /// the same tensor on every machine.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for an invalid shape or a non-finite range.
    public static func random(shape: [Int], seed: UInt64 = 0, range: ClosedRange<Float> = -1...1) throws -> Tensor {
        guard range.lowerBound.isFinite, range.upperBound.isFinite else {
            throw KernelLabError.invalidArgument(argument: "range", reason: "bounds must be finite, got \(range)")
        }
        let count = try elementCount(of: shape)
        let tensor = Tensor(shape: shape, count: count, storage: try TensorStorage(count: count, zeroed: false))
        var generator = SplitMix64(seed: seed)
        let low = range.lowerBound
        let width = range.upperBound - range.lowerBound
        for i in 0..<count {
            (tensor.storage.base + i).initialize(to: low + width * generator.nextUnitFloat())
        }
        return tensor
    }

    /// Validates `shape` and returns its element count.
    static func elementCount(of shape: [Int], argument: String = "shape") throws -> Int {
        guard shape.count <= maxRank else {
            throw KernelLabError.invalidArgument(
                argument: argument,
                reason: "rank \(shape.count) exceeds the maximum of \(maxRank) dimensions")
        }
        var count = 1
        for (axis, extent) in shape.enumerated() {
            guard extent >= 0 else {
                throw KernelLabError.invalidArgument(
                    argument: argument,
                    reason: "dimension \(axis) of \(describeShape(shape)) is negative")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: extent)
            // Bound by bytes, not elements, so the byte size below cannot overflow either.
            guard !overflow, product <= Int.max / (2 * MemoryLayout<Float>.stride) else {
                throw KernelLabError.invalidArgument(
                    argument: argument,
                    reason: "shape \(describeShape(shape)) is too large to allocate")
            }
            count = product
        }
        return count
    }

    /// The element at flat (C-order) index `index`. Traps when out of bounds, like `Array`.
    public subscript(index: Int) -> Float {
        get {
            precondition(index >= 0 && index < count, "Tensor index \(index) out of range 0..<\(count)")
            return storage.base[index]
        }
        set {
            precondition(index >= 0 && index < count, "Tensor index \(index) out of range 0..<\(count)")
            storage.base[index] = newValue
        }
    }

    /// The elements in C order.
    public func toArray() -> [Float] {
        withUnsafeBufferPointer { Array($0) }
    }

    /// Calls `body` with the elements. The pointer is valid only inside `body`.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) {
            try body(UnsafeBufferPointer(start: storage.base, count: count))
        }
    }

    /// Calls `body` with the elements for writing. The pointer is valid only inside `body`.
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(storage) {
            try body(UnsafeMutableBufferPointer(start: storage.base, count: count))
        }
    }

    /// A tensor with a new shape that views the same storage (no copy).
    ///
    /// - Throws: `KernelLabError.invalidArgument` if `newShape` is invalid or
    ///   holds a different number of elements.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        let newCount = try Tensor.elementCount(of: newShape)
        guard newCount == count else {
            throw KernelLabError.invalidArgument(
                argument: "shape",
                reason: "\(describeShape(newShape)) has \(newCount) elements, the tensor \(describeShape(shape)) has \(count)")
        }
        return Tensor(shape: newShape, count: count, storage: storage)
    }

    /// An independent tensor with the same shape and elements.
    public func copy() throws -> Tensor {
        let result = Tensor(shape: shape, count: count, storage: try TensorStorage(count: count, zeroed: false))
        result.storage.base.initialize(from: storage.base, count: count)
        return result
    }

    /// Whether `self` and `other` view the same memory (one was reshaped from the other).
    public func sharesStorage(with other: Tensor) -> Bool {
        storage === other.storage
    }

    /// The largest `|self[i] - other[i]|`.
    ///
    /// Equal elements count as 0 even when infinite (so `-inf` matches
    /// `-inf`); any other pair involving NaN or opposite infinities makes the
    /// result NaN, so a `< tolerance` test fails.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` when the shapes differ.
    public func maxAbsDifference(_ other: Tensor) throws -> Float {
        guard other.shape == shape else {
            throw KernelLabError.shapeMismatch(
                argument: "other", expected: describeShape(shape), got: describeShape(other.shape))
        }
        var worst: Float = 0
        for i in 0..<count {
            let a = storage.base[i], b = other.storage.base[i]
            if a == b { continue }
            let difference = abs(a - b)
            if difference.isNaN { return .nan }
            worst = max(worst, difference)
        }
        return worst
    }

    /// Whether no element is NaN or infinite.
    public var allFinite: Bool {
        firstNonFiniteIndex == nil
    }

    /// The flat index of the first NaN or infinite element, if any.
    public var firstNonFiniteIndex: Int? {
        withUnsafeBufferPointer { $0.firstIndex { !$0.isFinite } }
    }
}

extension Tensor: CustomStringConvertible {
    /// `Tensor(shape: (2, 3))`; the elements are not printed.
    public var description: String {
        "Tensor(shape: \(describeShape(shape)))"
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64).
/// Its output depends only on the seed, which makes test inputs reproducible.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator; equal seeds give equal sequences.
    public init(seed: UInt64) {
        state = seed
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform value in [0, 1) with 24 random bits, all exactly representable as Float.
    public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * 0x1p-24
    }
}
