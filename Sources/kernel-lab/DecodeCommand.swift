import ArgumentParser
import Foundation
import KernelLab

/// `kernel-lab decode`: per-token time of the decoding kernels against context length.
struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Time the decoding kernels per token: attention over a KV cache, and the scan and conv steps.",
        discussion: """
            Attention: one new query per head over a cache of each --contexts length, \
            Attention.decode beside the fused forward at Lq = 1 on the same keys, timed \
            alternately. GB/s are the cost model's bytes over the median; "of bw" divides \
            them by this machine's measured read bandwidth of the level the cache fits in \
            (from Profiles/machines/, written by make report), and "x bytes" is the time \
            over the time to stream those bytes at that bandwidth (1.0 = moves only the \
            bytes it must at the measured ceiling). The KV cache grows with the context; \
            the scan and conv states do not.
            """)

    @Option(help: "Batch size.") var batch = 1
    @Option(help: "Attention heads.") var heads = 8
    @Option(help: "Head dimension.") var headDim = 64
    @Option(parsing: .upToNextOption, help: "Context lengths (keys in the cache).") var contexts = [128, 1024, 8192, 65536]
    @Option(help: "Scan and conv channels (Mamba's d_inner).") var channels = 2048
    @Option(help: "Scan state size.") var state = 16
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: "Timed calls per kernel.") var repeats = 15
    @Option(help: "Untimed calls first.") var warmup = 3

    func validate() throws {
        try validateThreads(threads)
        for (name, value) in [("--batch", batch), ("--heads", heads), ("--head-dim", headDim), ("--channels", channels),
                              ("--state", state), ("--repeats", repeats)] where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if let bad = contexts.first(where: { $0 < 1 }) { throw ValidationError("--contexts must be positive, got \(bad)") }
        if warmup < 0 { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
    }

    private func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }

    func run() throws {
        var config = DecodeBenchmark.Config()
        (config.batch, config.heads, config.headDim, config.contexts) = (batch, heads, headDim, contexts)
        (config.channels, config.state) = (channels, state)
        (config.threads, config.repeats, config.warmup) = (threadsOrAllCPUs(threads), repeats, warmup)
        let system = try SystemInfo.current()
        let profile = try MachineProfile.load(for: system)
        let r = try DecodeBenchmark.run(config, progress: terminalProgress())
        print("decode kernels, \(system.activeISA.rawValue), \(config.threads) thread(s), B=\(batch) H=\(heads) d=\(headDim)"
              + (profile == nil ? " (no machine profile: run make report for the bandwidth columns)" : ""))
        func ofBandwidth(_ bytes: Double, _ seconds: Double, _ level: MemoryLevel) -> String {
            guard let bw = profile?.bandwidthGBs(level, .read, threads: config.threads) else { return "     -          -" }
            let gbs = bytes / seconds / 1e9
            return String(format: "%5.0f%% %9.2fx", 100 * gbs / bw, seconds / (bytes / (bw * 1e9)))
        }
        print("context  kv cache    level  decode ms  fwd(Lq=1) ms  fwd/decode   GB/s  of bw   x bytes")
        for row in r.attention {
            print(String(format: "%7d  ", row.context) + pad(formatBytes(row.residentBytes), 10) + "  " + pad(row.level.label, 5)
                  + String(format: "  %9.4f  %12.4f  %9.2fx  %5.1f  ", row.decode.median * 1e3, row.forward.median * 1e3, row.speedup,
                           row.bytes / row.decode.median / 1e9) + ofBandwidth(row.bytes, row.decode.median, row.level))
        }
        print("step                state         step ms  fwd(L=1) ms     GB/s")
        for row in r.steps {
            print(pad(row.name, 20) + pad(formatBytes(row.residentBytes), 10) + String(format: "  %8.4f  ", row.step.median * 1e3)
                  + pad(row.forward.map { String(format: "%.4f", $0.median * 1e3) } ?? "-", 12) + String(format: "  %5.1f", row.bytes / row.step.median / 1e9))
        }
    }
}
