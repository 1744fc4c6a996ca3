import CKernels

/// Scratch memory for kernels, which never allocate themselves.
///
/// A 64-byte-aligned byte buffer that only grows: call `ensure(bytes:)` before
/// each kernel call (cheap once large enough) and reuse one workspace across
/// a benchmark loop, so the loop itself allocates nothing. Not thread-safe:
/// one workspace serves one kernel call at a time.
public final class Workspace {
    /// The usable size in bytes (at least what was last ensured).
    public private(set) var capacity: Int

    private var base: UnsafeMutableRawPointer
    private var allocatedBytes: Int

    /// Creates a workspace of at least `bytes` bytes.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for a negative size,
    ///   `KernelLabError.kernel` if the memory cannot be allocated.
    public init(bytes: Int = 0) throws {
        let (base, allocated) = try Workspace.allocate(bytes)
        self.base = base
        self.allocatedBytes = allocated
        self.capacity = allocated
    }

    deinit {
        kl_free(base, allocatedBytes)
    }

    /// Grows the workspace to at least `bytes` bytes. Growing discards the
    /// contents; a request within `capacity` does nothing.
    ///
    /// - Throws: `KernelLabError.invalidArgument` for a negative size,
    ///   `KernelLabError.kernel` if the memory cannot be allocated.
    public func ensure(bytes: Int) throws {
        try Workspace.validate(bytes)
        guard bytes > capacity else { return }
        let (newBase, allocated) = try Workspace.allocate(bytes)
        kl_free(base, allocatedBytes)
        base = newBase
        allocatedBytes = allocated
        capacity = allocated
    }

    /// Calls `body` with the whole buffer; the pointer is valid only inside `body`.
    public func withUnsafeMutableRawBufferPointer<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) {
            try body(UnsafeMutableRawBufferPointer(start: base, count: capacity))
        }
    }

    private static func validate(_ bytes: Int) throws {
        guard bytes >= 0, bytes <= Int.max - 63 else {
            throw KernelLabError.invalidArgument(argument: "bytes", reason: "must be in 0...\(Int.max - 63), got \(bytes)")
        }
    }

    private static func allocate(_ bytes: Int) throws -> (UnsafeMutableRawPointer, Int) {
        try validate(bytes)
        // At least one cache line: kernels treat a null workspace as missing
        // even when they need no scratch memory.
        let rounded = max((bytes + 63) & ~63, 64)
        guard let pointer = kl_alloc(rounded) else {
            throw KernelLabError.kernel(status: .allocation, detail: "kl_alloc(\(rounded)) failed for a workspace")
        }
        return (pointer, rounded)
    }
}
