import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Tensor {
    /// Reads a NumPy `.npy` file holding a little-endian float32 ('<f4')
    /// array in C order, format version 1.0, 2.0 or 3.0.
    ///
    /// - Throws: `KernelLabError.io` when the file cannot be opened or read;
    ///   `KernelLabError.npy` with the reason when it is not such a file
    ///   (another dtype, big-endian, Fortran order, bad magic or header,
    ///   truncated or trailing data).
    public convenience init(npyFile path: String) throws {
        let (shape, count, storage) = try Tensor.readNpy(path: path)
        self.init(shape: shape, count: count, storage: storage)
    }

    /// Reads a NumPy `.npy` file; see `init(npyFile:)` taking a path.
    public convenience init(npyFile url: URL) throws {
        try self.init(npyFile: url.path)
    }

    private static func readNpy(path: String) throws -> (shape: [Int], count: Int, storage: TensorStorage) {
        let file = try FileDescriptor.openForReading(path)
        let fileSize = try file.regularFileSize()
        do {
            let lead = try file.read(count: Npy.leadLength)
            let fieldSize = try Npy.headerLengthFieldSize(lead: lead)
            let field = try file.read(count: fieldSize)
            guard field.count == fieldSize else { throw NpyFormatError("the header length is truncated") }
            let headerLength = Npy.headerLength(field: field)
            guard headerLength <= Npy.maxHeaderLength else {
                throw NpyFormatError("the header length \(headerLength) exceeds the limit of \(Npy.maxHeaderLength) bytes")
            }
            let header = try file.read(count: headerLength)
            guard header.count == headerLength else {
                throw NpyFormatError("the header is truncated (\(header.count) of \(headerLength) bytes)")
            }
            let shape = try Npy.parseShape(header: header)
            let count: Int
            do {
                count = try Tensor.elementCount(of: shape)
            } catch {
                throw NpyFormatError("shape \(describeShape(shape)) is too large")
            }
            let dataBytes = count * MemoryLayout<Float>.stride
            let truncated = { (found: Int) in
                NpyFormatError("the data is truncated: shape \(describeShape(shape)) needs \(dataBytes) bytes of float32, the file has \(found)")
            }
            // Check the size before allocating, so a corrupt shape cannot
            // trigger a huge allocation.
            if let fileSize {
                let available = fileSize - (Npy.leadLength + fieldSize + headerLength)
                guard available >= dataBytes else { throw truncated(available) }
                guard available == dataBytes else {
                    throw NpyFormatError("\(available - dataBytes) unexpected bytes follow the data of shape \(describeShape(shape))")
                }
            }
            let storage = try TensorStorage(count: count, zeroed: false)
            let read = try file.read(into: UnsafeMutableRawBufferPointer(start: storage.base, count: dataBytes))
            guard read == dataBytes else { throw truncated(read) }
            if fileSize == nil, try file.read(count: 1).count > 0 {
                throw NpyFormatError("unexpected bytes follow the data of shape \(describeShape(shape))")
            }
            #if _endian(big)
            for i in 0..<count {
                storage.base[i] = Float(bitPattern: UInt32(littleEndian: storage.base[i].bitPattern))
            }
            #endif
            return (shape, count, storage)
        } catch let error as NpyFormatError {
            throw KernelLabError.npy(path: path, reason: error.reason)
        }
    }

    /// Writes the tensor as a NumPy `.npy` file (format 1.0, '<f4', C order,
    /// data aligned to 64 bytes).
    ///
    /// The file is written whole or not at all: the bytes go to a temporary
    /// file in the same directory, which is flushed and then renamed over
    /// `path`. On failure no partial file is left behind and an existing file
    /// at `path` is unchanged.
    ///
    /// - Throws: `KernelLabError.io` when the directory does not exist or is
    ///   not writable, or a write, flush or rename fails.
    public func save(npyFile path: String) throws {
        try writeFileAtomically(path) { file in
            let header = Npy.encodeHeader(shape: shape)
            try header.withUnsafeBytes { try file.write($0, reportedPath: path) }
            #if _endian(big)
            let data = toArray().map { $0.bitPattern.littleEndian }
            try data.withUnsafeBytes { try file.write($0, reportedPath: path) }
            #else
            try withUnsafeBufferPointer { try file.write(UnsafeRawBufferPointer($0), reportedPath: path) }
            #endif
        }
    }

    /// Writes the tensor as a NumPy `.npy` file; see `save(npyFile:)` taking a path.
    public func save(npyFile url: URL) throws {
        try save(npyFile: url.path)
    }
}
