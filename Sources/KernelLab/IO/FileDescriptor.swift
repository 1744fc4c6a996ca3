#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal owned POSIX file descriptor: reads and writes that retry on
/// EINTR and partial transfers, and errors that carry `strerror(errno)`.
struct FileDescriptor: ~Copyable {
    private(set) var raw: Int32
    let path: String

    /// Opens `path` for reading.
    static func openForReading(_ path: String) throws -> FileDescriptor {
        let fd = retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw ioError(path) }
        return FileDescriptor(raw: fd, path: path)
    }

    /// Creates a new file that must not exist yet (O_EXCL), for writing.
    static func createExclusive(_ path: String) throws -> FileDescriptor {
        let fd = retryingOnInterrupt { open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666) }
        guard fd >= 0 else { throw ioError(path) }
        return FileDescriptor(raw: fd, path: path)
    }

    deinit {
        if raw >= 0 { _ = systemClose(raw) }
    }

    /// Closes the descriptor, reporting the errors that some file systems
    /// (NFS) only detect at close.
    mutating func close(reportedPath: String) throws {
        let fd = raw
        raw = -1
        guard systemClose(fd) == 0 else { throw FileDescriptor.ioError(reportedPath) }
    }

    /// Whether the descriptor is a regular file, and its size if so.
    func regularFileSize() throws -> Int? {
        var info = stat()
        guard fstat(raw, &info) == 0 else { throw FileDescriptor.ioError(path) }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw KernelLabError.io(path: path, reason: "is a directory")
        }
        return (info.st_mode & S_IFMT) == S_IFREG ? Int(info.st_size) : nil
    }

    /// Reads up to `buffer.count` bytes, stopping early only at end of file.
    /// Returns the number of bytes read.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < buffer.count {
            let n = retryingOnInterrupt { systemRead(raw, base + done, buffer.count - done) }
            if n < 0 { throw FileDescriptor.ioError(path) }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads exactly `count` bytes, or fewer at end of file, into a new array.
    func read(count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let n = try bytes.withUnsafeMutableBytes { try read(into: $0) }
        bytes.removeLast(count - n)
        return bytes
    }

    /// Writes all of `buffer`.
    func write(_ buffer: UnsafeRawBufferPointer, reportedPath: String) throws {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = retryingOnInterrupt { systemWrite(raw, base + done, buffer.count - done) }
            if n < 0 { throw FileDescriptor.ioError(reportedPath) }
            done += n
        }
    }

    /// Flushes the file's data to stable storage.
    func sync(reportedPath: String) throws {
        guard retryingOnInterrupt({ fsync(raw) }) == 0 else { throw FileDescriptor.ioError(reportedPath) }
    }

    /// `KernelLabError.io` for the current `errno`.
    static func ioError(_ path: String) -> KernelLabError {
        .io(path: path, reason: String(cString: strerror(errno)))
    }
}

/// Repeats a system call while it fails with EINTR.
func retryingOnInterrupt<T: FixedWidthInteger>(_ call: () -> T) -> T {
    while true {
        let result = call()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}

// File-scope wrappers: inside FileDescriptor, `read`/`write` name its methods.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}

private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}

private func systemClose(_ fd: Int32) -> Int32 {
    close(fd)
}
