import ArgumentParser
import KernelLab

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension KernelImpl: ExpressibleByArgument {}
extension ISA: ExpressibleByArgument {}

/// Writes a line to standard error (diagnostics never go to stdout, which
/// may carry JSON).
func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    // write(2) on the descriptor: unbuffered, and no shared C `stderr` global.
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// A progress callback that writes to standard error only when it is a
/// terminal, so redirected or piped runs stay quiet.
func terminalProgress() -> ((String) -> Void)? {
    isatty(STDERR_FILENO) != 0 ? { printError("… \($0)") } : nil
}

/// The shape `(2, 3)` as NumPy prints it.
func describe(shape: [Int]) -> String {
    shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
}

/// Throws unless `threads`, if given, is a usable `--threads` value.
func validateThreads(_ threads: Int?) throws {
    if let threads, !(1...ThreadPool.maxThreads).contains(threads) {
        throw ValidationError("--threads must be in 1...\(ThreadPool.maxThreads), got \(threads)")
    }
}

/// `--threads`, or all CPUs (at most the pool's maximum) when not given.
func threadsOrAllCPUs(_ threads: Int?) -> Int {
    threads ?? min(SystemInfo.cpuCount, ThreadPool.maxThreads)
}

/// Prints the files a `kernel-lab run` job wrote, one line each.
func printWritten(_ written: [(path: String, shape: [Int])]) {
    for file in written {
        print("wrote \(file.path) \(describe(shape: file.shape))")
    }
}

/// The memory line of `run`: the kernels' stated workspace and the process's
/// peak resident set (inputs, outputs and workspace together).
func printMemory(_ workspaceBytes: Int, impl: KernelImpl) {
    let peak = ProcessMemory.peakResidentBytes().map { "\($0) bytes" } ?? "unknown"
    print("workspace \(workspaceBytes) bytes (\(impl.rawValue), as stated by the kernel), peak resident \(peak)")
}

/// Throws unless --grad-out and --grads-dir are given together (or both left out).
func validateGradOptions(gradOut: String?, gradsDir: String?) throws {
    if (gradOut == nil) != (gradsDir == nil) {
        throw ValidationError("--grad-out and --grads-dir must be given together")
    }
}
