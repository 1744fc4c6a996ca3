import Foundation
@testable import KernelLab
import XCTest

/// The bytes of a `.npy` file with the given version and header dict, and
/// `data` as the payload; the header is padded to a multiple of `alignment`.
func npyBytes(major: UInt8 = 1, header: String, data: [UInt8], alignment: Int = 64) -> [UInt8] {
    let lengthFieldSize = major == 1 ? 2 : 4
    var text = Array(header.utf8)
    let unpadded = 8 + lengthFieldSize + text.count + 1
    text += [UInt8](repeating: 0x20, count: (alignment - unpadded % alignment) % alignment)
    text.append(0x0A)
    var bytes: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, major, 0]
    for i in 0..<lengthFieldSize {
        bytes.append(UInt8(truncatingIfNeeded: text.count >> (8 * i)))
    }
    return bytes + text + data
}

/// Little-endian bytes of `values` as float32.
func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { value -> [UInt8] in
        let bits = value.bitPattern
        return (0..<4).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) }
    }
}

final class NpyTests: TemporaryDirectoryTestCase {
    private func write(_ bytes: [UInt8], to name: String) throws -> String {
        let path = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The reason of the `.npy` error thrown when reading `bytes`.
    private func rejection(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let path = try write(bytes, to: "rejected.npy")
        guard case .npy(let errorPath, let reason)? = kernelLabError(try Tensor(npyFile: path), file: file, line: line) else {
            XCTFail("expected a .npy error", file: file, line: line)
            return ""
        }
        XCTAssertEqual(errorPath, path, file: file, line: line)
        return reason
    }

    func testRoundTripShapes() throws {
        for (index, shape) in [[2, 3, 4], [5], [], [0], [3, 0, 2], [1, 1, 1, 1, 1, 1, 1, 2], [1, 2, 3, 70]].enumerated() {
            let original = try Tensor.random(shape: shape, seed: UInt64(index))
            let path = path("t\(index).npy")
            try original.save(npyFile: path)
            let loaded = try Tensor(npyFile: URL(fileURLWithPath: path))
            XCTAssertEqual(loaded.shape, shape)
            XCTAssertEqual(loaded.toArray(), original.toArray(), "shape \(shape)")
        }
    }

    func testSpecialValuesRoundTrip() throws {
        let values: [Float] = [.nan, .infinity, -.infinity, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        let path = path("special.npy")
        try Tensor(shape: [6], values: values).save(npyFile: path)
        let loaded = try Tensor(npyFile: path).toArray()
        XCTAssertEqual(loaded.map(\.bitPattern), values.map(\.bitPattern))
    }

    func testSavedHeaderFormat() throws {
        let path = path("header.npy")
        try Tensor(shape: [2, 3]).save(npyFile: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(Array(bytes[0..<8]), [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0, "data must start 64-byte aligned")
        XCTAssertEqual(bytes.count, 10 + headerLength + 6 * 4)
        let header = String(decoding: bytes[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), header)
        XCTAssertTrue(header.hasSuffix("\n"))

        try Tensor(shape: [7]).save(npyFile: path)
        let oneD = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
        XCTAssertTrue(oneD.contains("'shape': (7,)"))
        try Tensor(shape: []).save(npyFile: path)
        XCTAssertTrue(String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self).contains("'shape': ()"))
    }

    func testReadsHandWrittenVersions() throws {
        let values: [Float] = [1, -2, 3.5, 4, 5, 6]
        // Version 1.0 as old NumPy wrote it: 16-byte alignment, different key order, Python 2 longs.
        let v1 = npyBytes(header: "{'fortran_order': False, 'shape': (2L, 3L), 'descr': '<f4'}",
                          data: float32Bytes(values), alignment: 16)
        let t1 = try Tensor(npyFile: try write(v1, to: "v1.npy"))
        XCTAssertEqual(t1.shape, [2, 3])
        XCTAssertEqual(t1.toArray(), values)

        let v2 = npyBytes(major: 2, header: "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (6,)}",
                          data: float32Bytes(values))
        let t2 = try Tensor(npyFile: try write(v2, to: "v2.npy"))
        XCTAssertEqual(t2.shape, [6])
        XCTAssertEqual(t2.toArray(), values)

        let v3 = npyBytes(major: 3, header: "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
                          data: float32Bytes(values))
        XCTAssertEqual(try Tensor(npyFile: try write(v3, to: "v3.npy")).shape, [3, 2])
    }

    func testRejectsOtherDtypes() throws {
        let float64 = try rejection(npyBytes(header: "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                                             data: [UInt8](repeating: 0, count: 16)))
        XCTAssertTrue(float64.contains("dtype '<f8' is not supported; save as float32 ('<f4')"), float64)

        let int32 = try rejection(npyBytes(header: "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }",
                                           data: [UInt8](repeating: 0, count: 8)))
        XCTAssertTrue(int32.contains("dtype '<i4' is not supported"), int32)

        let bigEndian = try rejection(npyBytes(header: "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
                                               data: [UInt8](repeating: 0, count: 8)))
        XCTAssertTrue(bigEndian.contains("big-endian"), bigEndian)

        let structured = try rejection(npyBytes(header: "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
                                                data: [UInt8](repeating: 0, count: 8)))
        XCTAssertTrue(structured.contains("structured dtypes are not supported"), structured)
    }

    func testRejectsFortranOrder() throws {
        let reason = try rejection(npyBytes(header: "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                                            data: float32Bytes([1, 2, 3, 4])))
        XCTAssertTrue(reason.contains("Fortran-order"), reason)
    }

    func testRejectsTruncatedAndTrailingData() throws {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        let truncated = try rejection(npyBytes(header: header, data: float32Bytes([1, 2, 3])))
        XCTAssertTrue(truncated.contains("the data is truncated"), truncated)
        XCTAssertTrue(truncated.contains("needs 24 bytes"), truncated)

        let trailing = try rejection(npyBytes(header: header, data: float32Bytes([1, 2, 3, 4, 5, 6, 7])))
        XCTAssertTrue(trailing.contains("4 unexpected bytes"), trailing)

        let full = npyBytes(header: header, data: [])
        let shortHeader = try rejection(Array(full[0..<40]))
        XCTAssertTrue(shortHeader.contains("header is truncated"), shortHeader)

        let tiny = try rejection([0x93, 0x4E, 0x55])
        XCTAssertTrue(tiny.contains("too short"), tiny)
    }

    func testRejectsBadMagicVersionAndHeader() throws {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }"
        var badMagic = npyBytes(header: header, data: float32Bytes([1]))
        badMagic[1] = UInt8(ascii: "X")
        let magic = try rejection(badMagic)
        XCTAssertTrue(magic.contains("bad magic"), magic)

        var badVersion = npyBytes(header: header, data: float32Bytes([1]))
        badVersion[6] = 4
        let version = try rejection(badVersion)
        XCTAssertTrue(version.contains("format version 4.0 is not supported"), version)

        let unbalanced = try rejection(npyBytes(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1, }",
                                                data: float32Bytes([1])))
        XCTAssertTrue(unbalanced.contains("malformed header"), unbalanced)

        let notADict = try rejection(npyBytes(header: "['descr', '<f4']", data: float32Bytes([1])))
        XCTAssertTrue(notADict.contains("not a Python dict"), notADict)

        let missing = try rejection(npyBytes(header: "{'descr': '<f4', 'fortran_order': False}", data: []))
        XCTAssertTrue(missing.contains("no 'shape' key"), missing)

        let extra = try rejection(npyBytes(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
                                           data: float32Bytes([1])))
        XCTAssertTrue(extra.contains("unexpected key 'x'"), extra)

        let negative = try rejection(npyBytes(header: "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
                                              data: []))
        XCTAssertTrue(negative.contains("non-negative"), negative)
    }

    func testMissingFileAndDirectoryAreIOErrors() {
        let missing = path("missing.npy")
        guard case .io(missing, let reason)? = kernelLabError(try Tensor(npyFile: missing)) else {
            return XCTFail("missing file is not an .io error")
        }
        XCTAssertTrue(reason.lowercased().contains("no such file"), reason)

        guard case .io(_, let directoryReason)? = kernelLabError(try Tensor(npyFile: directory.path)) else {
            return XCTFail("directory is not an .io error")
        }
        XCTAssertTrue(directoryReason.contains("directory"), directoryReason)
    }

    func testSaveIsAtomic() throws {
        let tensor = try Tensor.random(shape: [4, 4], seed: 1)

        // Into a directory that does not exist: an error, and nothing created.
        let nowhere = directory.appendingPathComponent("no-such-dir").appendingPathComponent("x.npy").path
        guard case .io(nowhere, let reason)? = kernelLabError(try tensor.save(npyFile: nowhere)) else {
            return XCTFail("saving into a missing directory is not an .io error")
        }
        XCTAssertTrue(reason.contains("no-such-dir"), reason)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])

        // Onto an existing directory: rename fails, the temporary file is removed.
        let occupied = path("occupied.npy")
        try FileManager.default.createDirectory(atPath: occupied, withIntermediateDirectories: false)
        XCTAssertThrowsError(try tensor.save(npyFile: occupied))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["occupied.npy"])

        // A successful save replaces an existing file and leaves no temporary behind.
        let target = path("t.npy")
        try Tensor(shape: [1]).save(npyFile: target)
        try tensor.save(npyFile: target)
        XCTAssertEqual(try Tensor(npyFile: target).toArray(), tensor.toArray())
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: directory.path)), ["occupied.npy", "t.npy"])

        XCTAssertThrowsError(try tensor.save(npyFile: directory.path + "/"))
    }

    /// A writer killed mid-write (SIGKILL: no cleanup runs) leaves its
    /// temporary file; the next successful write of the path removes the
    /// temporaries of dead processes of this host, and only those.
    func testStaleTemporariesOfDeadWritersAreRemoved() throws {
        let target = path("t.npy")
        let dead = TemporaryName.make(for: "t.npy", pid: 4_194_305, suffix: "1f")  // above Linux's largest pid
        let alive = TemporaryName.make(for: "t.npy", pid: getppid(), suffix: "2e")
        let otherHost = ".t.npy.another-host.4194305.3d.tmp"
        let otherFile = TemporaryName.make(for: "u.npy", pid: 4_194_305, suffix: "4c")
        for name in [dead, alive, otherHost, otherFile] {
            XCTAssertTrue(FileManager.default.createFile(atPath: path(name), contents: Data([1, 2, 3])))
        }
        try Tensor(shape: [2]).save(npyFile: target)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: directory.path)), ["t.npy", alive, otherHost, otherFile])
    }

    func testRelativePathSave() throws {
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(directory.path))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try Tensor(shape: [2], values: [1, 2]).save(npyFile: "relative.npy")
        XCTAssertEqual(try Tensor(npyFile: "relative.npy").toArray(), [1, 2])
    }
}
