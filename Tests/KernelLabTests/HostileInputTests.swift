import Foundation
import KernelLab
import XCTest

/// Hostile and extreme inputs through the CLI (issue "Reliability", item 3):
/// each ends in a result or a clear error naming the argument, never a
/// crash, a huge allocation or a partial file.
final class HostileInputTests: TemporaryDirectoryTestCase {
    private func launch(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try launchKernelLab(arguments)
    }

    /// Runs `script` under /bin/sh with `$KL` set to the kernel-lab executable.
    private func shell(_ script: String, unshare: Bool = false) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: unshare ? "/usr/bin/unshare" : "/bin/sh")
        process.arguments = (unshare ? ["-rm", "/bin/sh"] : []) + ["-c", script]
        process.environment = ProcessInfo.processInfo.environment.merging(["KL": try kernelLabExecutable().path]) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    private func attention(_ q: String, _ k: String, _ v: String, out: String, _ extra: [String] = []) throws
        -> (status: Int32, stdout: String, stderr: String) {
        try launch(["run", "attention", "--q", path(q), "--k", path(k), "--v", path(v), "--out", out] + extra)
    }

    /// The npy header of `shape` followed by `dataBytes` zero bytes.
    private func rawNpy(shape: [Int], dataBytes: Int) -> Data {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        header += String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xff), UInt8(header.count >> 8)]
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: dataBytes)
        return Data(bytes)
    }

    func testTruncatedFilesAndHugeHeaderClaims() throws {
        try Tensor.random(shape: [1, 2, 64, 8], seed: 1).save(npyFile: path("q.npy"))
        let whole = try Data(contentsOf: URL(fileURLWithPath: path("q.npy")))
        for (name, cut) in [("data", whole.count - 1000), ("header", 40), ("magic", 3), ("empty", 0)] {
            try whole.prefix(cut).write(to: URL(fileURLWithPath: path("cut.npy")))
            let run = try attention("cut.npy", "q.npy", "q.npy", out: path("o.npy"))
            XCTAssertEqual(run.status, 1, "\(name): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("cut.npy"), "\(name): \(run.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.npy")), name)
        }
        // A header claiming 3 GiB over 64 bytes of data is refused before any
        // allocation: under a 2 GiB address-space limit an allocation of what
        // the header claims would fail with another error. (ASan reserves
        // terabytes of shadow memory, so the limit is left off under it.)
        try rawNpy(shape: [768, 1024, 1024], dataBytes: 64).write(to: URL(fileURLWithPath: path("huge.npy")))
        let limit = ProcessInfo.processInfo.environment["ASAN_OPTIONS"] == nil ? "ulimit -v 2097152; " : ""
        let huge = try shell(#"\#(limit)"$KL" run attention --q "\#(path("huge.npy"))" --k "\#(path("q.npy"))" --v "\#(path("q.npy"))" --out "\#(path("o.npy"))""#)
        XCTAssertEqual(huge.status, 1, huge.output)
        XCTAssertTrue(huge.output.contains("needs 3221225472 bytes of float32, the file has 64"), huge.output)
        // A shape whose element count overflows.
        try rawNpy(shape: [1 << 40, 1 << 40], dataBytes: 0).write(to: URL(fileURLWithPath: path("overflow.npy")))
        let overflow = try attention("overflow.npy", "q.npy", "q.npy", out: path("o.npy"))
        XCTAssertEqual(overflow.status, 1, overflow.stderr)
        XCTAssertTrue(overflow.stderr.contains("too large"), overflow.stderr)
        // A checkpoint cut short, and one whose header length points past the file.
        let train = ["train", "--pattern", "M", "--d-model", "8", "--d-state", "2", "--batch", "1", "--seq", "8", "--steps", "1",
                     "--threads", "1", "--checkpoint", path("ck.safetensors")]
        XCTAssertEqual(try launch(train).status, 0)
        let checkpoint = try Data(contentsOf: URL(fileURLWithPath: path("ck.safetensors")))
        for (name, bytes) in [("cut", checkpoint.prefix(checkpoint.count / 2)),
                              ("header", Data([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]) + checkpoint.dropFirst(8))] {
            try bytes.write(to: URL(fileURLWithPath: path("bad.safetensors")))
            let resume = try launch(Array(train.dropLast()) + [path("bad.safetensors"), "--resume", "--steps", "2"])
            XCTAssertEqual(resume.status, 1, "\(name): \(resume.stderr)")
            XCTAssertTrue(resume.stderr.contains("bad.safetensors") && resume.stderr.contains("truncated"), "\(name): \(resume.stderr)")
        }
    }

    func testNonfiniteArraysAreNamedOrAllowed() throws {
        let shape = [1, 4, 16]
        for (name, seed) in [("u", 1), ("delta", 2), ("z", 3)] {
            try Tensor.random(shape: shape, seed: UInt64(seed), range: 0.1...1).save(npyFile: path("\(name).npy"))
        }
        try Tensor.random(shape: [4, 2], seed: 4, range: -1 ... -0.1).save(npyFile: path("A.npy"))
        try Tensor.random(shape: [1, 2, 16], seed: 5).save(npyFile: path("B.npy"))
        try Tensor.random(shape: [1, 2, 16], seed: 6).save(npyFile: path("C.npy"))
        let delta = try Tensor(npyFile: path("delta.npy"))
        delta[7] = .infinity
        try delta.save(npyFile: path("delta.npy"))
        let scan = ["run", "scan", "--u", path("u.npy"), "--delta", path("delta.npy"), "--A", path("A.npy"), "--B", path("B.npy"),
                    "--C", path("C.npy"), "--z", path("z.npy"), "--out", path("out.npy"), "--threads", "1"]
        let rejected = try launch(scan)
        XCTAssertEqual(rejected.status, 1, rejected.stderr)
        XCTAssertTrue(rejected.stderr.contains("delta") && rejected.stderr.contains("flat index 7"), rejected.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("out.npy")))
        let allowed = try launch(scan + ["--allow-nonfinite"])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        let out = try Tensor(npyFile: path("out.npy")).toArray()
        // delta[7] is channel 0, step 7: channel 0 from step 7 on is not finite, the other channels are.
        XCTAssertTrue(out[0..<7].allSatisfy(\.isFinite) && !out[7].isFinite, "\(out[0..<16])")
        XCTAssertTrue(out[16...].allSatisfy(\.isFinite))
    }

    func testZeroSizeAndOneElementDimensions() throws {
        try Tensor(shape: [1, 2, 0, 8], values: []).save(npyFile: path("empty.npy"))
        try Tensor.random(shape: [1, 2, 4, 8], seed: 1).save(npyFile: path("k.npy"))
        let empty = try attention("empty.npy", "k.npy", "k.npy", out: path("o.npy"))
        XCTAssertEqual(empty.status, 1)
        XCTAssertTrue(empty.stderr.contains("argument 'q' has shape (1, 2, 0, 8)") && empty.stderr.contains("every size positive"), empty.stderr)
        // One element everywhere: softmax over one key is 1, so out = v.
        try Tensor(shape: [1, 1, 1, 1], values: [0.75]).save(npyFile: path("q1.npy"))
        try Tensor(shape: [1, 1, 1, 1], values: [-2.5]).save(npyFile: path("v1.npy"))
        for impl in ["fused", "unfused"] {
            let one = try attention("q1.npy", "q1.npy", "v1.npy", out: path("o1.npy"), ["--impl", impl, "--causal"])
            XCTAssertEqual(one.status, 0, one.stderr)
            XCTAssertEqual(try Tensor(npyFile: path("o1.npy")).toArray(), [-2.5], impl)
        }
        // A one-element scan: h = exp(delta A) * 0 + delta B u, y = C h.
        let (u, delta, a, b, c): (Float, Float, Float, Float, Float) = (0.5, 0.25, -1, 2, 3)
        for (name, value, shape) in [("u", u, [1, 1, 1]), ("delta", delta, [1, 1, 1]), ("A", a, [1, 1]), ("B", b, [1, 1, 1]), ("C", c, [1, 1, 1])] {
            try Tensor(shape: shape, values: [value]).save(npyFile: path("s-\(name).npy"))
        }
        for impl in ["fused", "unfused"] {
            let scan = try launch(["run", "scan", "--u", path("s-u.npy"), "--delta", path("s-delta.npy"), "--A", path("s-A.npy"),
                                   "--B", path("s-B.npy"), "--C", path("s-C.npy"), "--out", path("s-out.npy"), "--impl", impl])
            XCTAssertEqual(scan.status, 0, scan.stderr)
            XCTAssertEqual(Double(try Tensor(npyFile: path("s-out.npy")).toArray()[0]), Double(c * delta * b * u), accuracy: 1e-6, impl)
        }
    }

    /// L = 65536: finite results, and the memory the run used is what the
    /// kernel states (its workspace) plus the arrays, far below the L x L
    /// scores or the B D L N states an unfused kernel would materialize.
    func testLongSequencesStayFiniteWithinTheStatedWorkspace() throws {
        func memory(_ stdout: String) -> (workspace: Int, peak: Int)? {
            guard let line = stdout.split(separator: "\n").first(where: { $0.hasPrefix("workspace ") }) else { return nil }
            let numbers = line.split(separator: " ").compactMap { Int($0) }
            return numbers.count == 2 ? (numbers[0], numbers[1]) : nil
        }
        // The resident floor of a run with tiny arrays.
        try Tensor.random(shape: [1, 1, 4, 8], seed: 1).save(npyFile: path("t.npy"))
        let tiny = try attention("t.npy", "t.npy", "t.npy", out: path("t-out.npy"), ["--threads", "2"])
        guard let floor = memory(tiny.stdout)?.peak else { return XCTFail("no memory line: \(tiny.stdout)") }

        // Under AddressSanitizer the resident set also holds its shadow and its
        // quarantine of freed blocks (up to 256 MiB), so the bounds are checked
        // without it; and the 64K x 64K attention (a minute on the scalar path
        // there) runs in the unsanitized passes only, the scan in all of them.
        let sanitized = ProcessInfo.processInfo.environment["ASAN_OPTIONS"] != nil
        let L = 65536
        if !sanitized {
            let d = 8
            for (name, seed) in [("q", 1), ("k", 2), ("v", 3)] {
                try Tensor.random(shape: [1, 1, L, d], seed: UInt64(seed)).save(npyFile: path("\(name).npy"))
            }
            let run = try attention("q.npy", "k.npy", "v.npy", out: path("o.npy"), ["--causal", "--threads", "2", "--lse", path("lse.npy")])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertTrue(try Tensor(npyFile: path("o.npy")).toArray().allSatisfy(\.isFinite))
            XCTAssertTrue(try Tensor(npyFile: path("lse.npy")).toArray().allSatisfy(\.isFinite))
            let shape = try AttentionShape(batch: 1, heads: 1, queryLength: L, keyLength: L, headDim: d)
            let stated = try Attention.workspaceBytes(shape: shape, options: AttentionOptions(causal: true), threads: 2)
            guard let used = memory(run.stdout) else { return XCTFail("no memory line: \(run.stdout)") }
            XCTAssertEqual(used.workspace, stated)
            let arrays = 5 * L * d * 4 + L * 4  // q, k, v, out (and a copy in flight), lse
            XCTAssertLessThan(used.peak, floor + arrays + stated + (32 << 20), "peak resident \(used.peak) bytes, floor \(floor)")
            XCTAssertLessThan(stated + arrays, L * L * 4 / 100, "the scores alone would take \(L * L * 4) bytes")
        }
        // The scan at L = 65536: D = 64 channels, N = 16 states (16 channels under
        // ASan, where the memory bound is not checked and the debug scalar path is slow).
        let D = sanitized ? 16 : 64, N = 16
        for (name, seed) in [("u", 4), ("delta", 5)] {
            try Tensor.random(shape: [1, D, L], seed: UInt64(seed), range: 0.01...0.1).save(npyFile: path("\(name).npy"))
        }
        try Tensor.random(shape: [D, N], seed: 6, range: -1 ... -0.1).save(npyFile: path("A.npy"))
        try Tensor.random(shape: [1, N, L], seed: 7).save(npyFile: path("B.npy"))
        try Tensor.random(shape: [1, N, L], seed: 8).save(npyFile: path("C.npy"))
        let scan = try launch(["run", "scan", "--u", path("u.npy"), "--delta", path("delta.npy"), "--A", path("A.npy"), "--B", path("B.npy"),
                               "--C", path("C.npy"), "--out", path("y.npy"), "--threads", "2"])
        XCTAssertEqual(scan.status, 0, scan.stderr)
        XCTAssertTrue(try Tensor(npyFile: path("y.npy")).toArray().allSatisfy(\.isFinite))
        let scanShape = try ScanShape(batch: 1, channels: D, seqLen: L, state: N)
        guard let scanUsed = memory(scan.stdout) else { return XCTFail("no memory line: \(scan.stdout)") }
        XCTAssertEqual(scanUsed.workspace, try Scan.workspaceBytes(shape: scanShape, threads: 2))
        let scanArrays = 4 * D * L * 4 + 2 * N * L * 4  // u, delta, y (and a copy in flight), B, C
        let states = D * L * N * 4
        if !sanitized {
            XCTAssertLessThan(scanUsed.peak, floor + scanArrays + scanUsed.workspace + (32 << 20), "peak \(scanUsed.peak), floor \(floor)")
        }
        if !sanitized {
            XCTAssertGreaterThan(states, scanArrays + (64 << 20), "the materialized states (\(states) bytes) would not fit the bound")
        }
    }

    func testThreadCountsAboveTheCPUCount() throws {
        try Tensor.random(shape: [2, 3, 37, 16], seed: 1).save(npyFile: path("q.npy"))
        try Tensor.random(shape: [2, 3, 53, 16], seed: 2).save(npyFile: path("k.npy"))
        try Tensor.random(shape: [2, 3, 53, 16], seed: 3).save(npyFile: path("v.npy"))
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        let one = try attention("q.npy", "k.npy", "v.npy", out: path("o1.npy"), ["--threads", "1"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let many = try attention("q.npy", "k.npy", "v.npy", out: path("o64.npy"), ["--threads", "\(max(64, 4 * cpus))"])
        XCTAssertEqual(many.status, 0, many.stderr)
        XCTAssertLessThan(try Tensor(npyFile: path("o64.npy")).maxAbsDifference(try Tensor(npyFile: path("o1.npy"))), 1e-6)
        let tooMany = try attention("q.npy", "k.npy", "v.npy", out: path("o.npy"), ["--threads", "\(ThreadPool.maxThreads + 1)"])
        XCTAssertNotEqual(tooMany.status, 0)
        XCTAssertTrue(tooMany.stderr.contains("--threads must be in 1...\(ThreadPool.maxThreads)"), tooMany.stderr)
        let train = try launch(["train", "--pattern", "MA", "--d-model", "8", "--heads", "2", "--d-state", "2", "--batch", "3", "--seq", "8",
                                "--steps", "2", "--threads", "\(max(16, 2 * cpus))"])
        XCTAssertEqual(train.status, 0, train.stderr)
    }

    /// A full and a read-only output directory: a clear error naming the
    /// file, no partial or temporary file, the old file untouched. The
    /// directories are real: a 64 KiB tmpfs, then remounted read-only, in a
    /// private mount namespace (unshare); where namespaces are not allowed,
    /// a file-size limit (RLIMIT_FSIZE) stands in for the full disk.
    func testFullAndReadOnlyOutputDirectories() throws {
        try Tensor.random(shape: [1, 2, 4096, 8], seed: 1).save(npyFile: path("q.npy"))  // 256 KiB of output
        try Tensor(shape: [4], values: [1, 2, 3, 4]).save(npyFile: path("old.npy"))
        let mount = path("mnt")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        let run = #""$KL" run attention --q "\#(path("q.npy"))" --k "\#(path("q.npy"))" --v "\#(path("q.npy"))" --out "\#(mount)/o.npy" --threads 1"#
        let train = #""$KL" train --pattern M --d-model 64 --d-state 16 --batch 1 --seq 8 --steps 1 --threads 1 --checkpoint "\#(mount)/ck.safetensors""#
        let check = #"echo "status $?"; cmp "\#(path("old.npy"))" "\#(mount)/o.npy" && echo "old file intact"; ls -A "\#(mount)" | tr '\n' ' '; echo"#
        let namespaces = try shell("mount -t tmpfs -o size=4k none \"\(mount)\" && echo mounted", unshare: true)
        if namespaces.output.contains("mounted") {
            let script = """
                mount -t tmpfs -o size=64k none "\(mount)" || exit 9
                cp "\(path("old.npy"))" "\(mount)/o.npy"
                echo "== full"; \(run); \(check)
                echo "== full checkpoint"; \(train); echo "status $?"; ls -A "\(mount)" | tr '\\n' ' '; echo
                mount -o remount,ro "\(mount)" || exit 9
                echo "== read-only"; \(run); \(check)
                """
            let result = try shell(script, unshare: true)
            let parts = result.output.components(separatedBy: "== ")
            XCTAssertEqual(parts.count, 4, result.output)
            guard parts.count == 4 else { return }
            for (part, reason) in [(parts[1], "No space left on device"), (parts[3], "Read-only file system")] {
                XCTAssertTrue(part.contains("o.npy") && part.contains(reason), part)
                XCTAssertTrue(part.contains("status 1") && part.contains("old file intact"), part)
                XCTAssertTrue(part.hasSuffix("o.npy \n"), "only the old file is left: \(part)")
            }
            XCTAssertTrue(parts[2].contains("ck.safetensors") && parts[2].contains("No space left on device") && parts[2].contains("status 1"), parts[2])
            XCTAssertTrue(parts[2].hasSuffix("o.npy \n"), "no checkpoint or temporary file: \(parts[2])")
        } else {
            print("mount namespaces unavailable (\(namespaces.output)): the full disk is a file-size limit only")
        }
        // The file-size limit: writes past 64 KiB fail with EFBIG (SIGXFSZ ignored, as a shell can).
        try FileManager.default.copyItem(atPath: path("old.npy"), toPath: mount + "/o.npy")
        let limited = try shell("trap '' XFSZ; ulimit -f 128; \(run); \(check)")
        XCTAssertTrue(limited.output.contains("File too large") && limited.output.contains("status 1"), limited.output)
        XCTAssertTrue(limited.output.contains("old file intact") && limited.output.hasSuffix("o.npy \n"), limited.output)
    }
}
