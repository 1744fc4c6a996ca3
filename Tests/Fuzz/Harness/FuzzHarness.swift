// The libFuzzer entry point over the readers of FuzzTargets. `make fuzz`
// builds it with -sanitize=fuzzer,address and -DKERNELLAB_FUZZ, then runs it
// once per target with KERNELLAB_FUZZ_TARGET=NAME; the target's seeds
// (FuzzTarget.seedDirectories) and kept crashes are added to its corpus. In an ordinary build it is a small tool
// that replays files through a target (no libFuzzer runtime there).
import Foundation
import KernelLabFuzzTargets

#if KERNELLAB_FUZZ
nonisolated(unsafe) private var target: FuzzTarget?

// SwiftPM names an executable's entry point <Module>_main and defines main as
// that symbol, so libFuzzer's own main is never linked: start its driver here.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

// The target's seed directories and kept crashes join the corpus
// directories given on the command line (read, never written: libFuzzer
// writes new inputs to the first directory only).
@_cdecl("KernelLabFuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let chosen = chooseTarget()
    var arguments = (0..<Int(argc)).map { argv![$0].map { String(cString: $0) } ?? "" }
    let kept = "Tests/Fuzz/Regressions/" + chosen.rawValue
    arguments += chosen.seedDirectories() + (FileManager.default.fileExists(atPath: kept) ? [kept] : [])
    var pointers: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    var count = CInt(arguments.count)
    return pointers.withUnsafeMutableBufferPointer { buffer in
        var base = buffer.baseAddress
        return LLVMFuzzerRunDriver(&count, &base, fuzzOneInput)
    }
}

func chooseTarget() -> FuzzTarget {
    if let target { return target }
    let name = ProcessInfo.processInfo.environment["KERNELLAB_FUZZ_TARGET"] ?? ""
    guard let chosen = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("set KERNELLAB_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    target = chosen
    return chosen
}

func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    chooseTarget().run(bytes)
    return 0
}
#else
@main
struct FuzzReplay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "--write-checkpoint-seed", let path = arguments.dropFirst().first {
            // The checkpoint corpus's seed: the fuzz target's tiny trainer,
            // trained two steps (regenerate it when the format changes).
            do {
                try FuzzCheckpoint.writeSeed(to: path)
                print("wrote \(path)")
                return
            } catch {
                print("error: \(error)"); exit(1)
            }
        }
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            print("usage: kernel-lab-fuzz TARGET FILE... | --write-checkpoint-seed PATH\n  (TARGET: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
            print("Replays files through a fuzz target; `make fuzz` builds the libFuzzer harness itself.")
            exit(2)
        }
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else { print("\(path): cannot read"); exit(1) }
            print("\(path): \(target.run(Array(data)) ? "accepted" : "rejected")")
        }
    }
}
#endif
