import ArgumentParser
import Foundation
import KernelLab

/// `kernel-lab layers`: the memory-bound layer kernels against the DRAM triad bandwidth.
struct LayersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layers",
        abstract: "Time the memory-bound layer kernels past the caches: GB/s, and the fraction of the DRAM triad.",
        discussion: """
            Each kernel runs on --count elements (the norms on rows of --dim, the \
            cross-entropy on rows of --vocabulary). GB/s are the cost model's bytes over \
            the median; "of triad" divides them by this machine's DRAM triad bandwidth \
            on the same threads (Profiles/machines/, from make report). AdamW runs beside \
            its unfused twin (four passes over memory), alternately.
            """)

    @Option(help: "Elements (default 2^24: 64 MiB per array).") var count = 1 << 24
    @Option(help: "Row length of the norms.") var dim = 1024
    @Option(parsing: .upToNextOption, help: "Vocabularies of the cross-entropy.") var vocabularies = [32, 8192, 50257]
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: "Timed calls per kernel.") var repeats = 9
    @Option(help: "Untimed calls first.") var warmup = 2
    @Option(help: "Also write layers.md, .csv and a roofline SVG into this directory.") var out: String?

    func validate() throws {
        try validateThreads(threads)
        for (name, value) in [("--count", count), ("--dim", dim), ("--repeats", repeats)] + vocabularies.map({ ("--vocabularies", $0) })
        where value < 1 {
            throw ValidationError("\(name) must be positive, got \(value)")
        }
        if dim > count { throw ValidationError("--dim (\(dim)) must be <= --count (\(count))") }
        if warmup < 0 { throw ValidationError("--warmup must be at least 0, got \(warmup)") }
    }

    func run() throws {
        var config = LayersBenchmark.Config()
        (config.count, config.dim, config.vocabularies) = (count, dim, vocabularies)
        (config.threads, config.repeats, config.warmup) = (threadsOrAllCPUs(threads), repeats, warmup)
        let system = try SystemInfo.current()
        let profile = try MachineProfile.load(for: system)
        let triad = profile?.bandwidthGBs(.dram, .triad, threads: config.threads)
        let r = try LayersBenchmark.run(config, progress: terminalProgress())
        print("layer kernels, \(system.activeISA.rawValue), \(config.threads) thread(s), \(count) elements"
              + (triad.map { String(format: ", DRAM triad %.1f GB/s", $0) } ?? " (no machine profile: run make report for 'of triad')"))
        print("kernel                            median ms    GB/s  of triad")
        for row in r.rows {
            let of = triad.map { String(format: "%7.0f%%", 100 * row.gbs / $0) } ?? "       -"
            let name = row.name.padding(toLength: 32, withPad: " ", startingAt: 0)
            print(name + String(format: "  %9.3f  %6.1f  ", row.samples.median * 1e3, row.gbs) + of)
        }
        print(String(format: "adamw: fused over unfused %.2fx (median of per-call ratios)", r.adamwSpeedup))
        if let out {
            let roofs = triad.flatMap { t in
                profile.flatMap { TrainBenchmark.Roofs(profile: $0, isa: system.activeISA, threads: config.threads) }
                    .map { LayersBenchmark.Roofs(triadGBs: t, roofs: $0) }
            }
            let header = "# Layer kernels against the memory roofs\n\n\(system.cpuModel); \(system.activeISA.rawValue), "
                + "\(config.threads) thread(s), \(count) elements (norms on rows of \(dim)), median of \(repeats) calls after \(warmup). "
                + "Bytes and FLOPs are each kernel's cost model (inputs read once, outputs written once, as STREAM counts); "
                + (roofs.map { String(format: "DRAM triad %.1f GB/s, DRAM read %.1f, L3 read %.1f GB/s, peak %.0f GFLOP/s (Profiles/machines/).",
                                      $0.triadGBs, $0.roofs.dramGBs, $0.roofs.l3GBs, $0.roofs.peakGflops) }
                   ?? "no machine profile (run make report for the roofs).")
            for path in try LayersBenchmark.write(r, header: header, caption: "\(system.cpuModel), \(system.activeISA.rawValue)",
                                                  roofs: roofs, to: out) {
                print("wrote \(path)")
            }
        }
    }
}
