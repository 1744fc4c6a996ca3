import ArgumentParser
import Foundation
import KernelLab

/// `kernel-lab traffic`: checks the cost models' DRAM bytes against
/// callgrind's cache simulation. `traffic probe` (the default) makes one
/// kernel call for the simulator; `traffic validate` runs the suite.
struct TrafficCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "traffic",
        abstract: "Validate the DRAM- and L3-byte models against a cache simulation (callgrind).",
        shouldDisplay: false,
        subcommands: [Probe.self, Validate.self],
        defaultSubcommand: Probe.self)

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "probe",
            abstract: "Run one kernel call once on random inputs and print its cost model as JSON.",
            discussion: """
                Made to run under valgrind: caches are evicted before the call \
                (kl_attn_fwd, kl_attn_bwd, kl_scan_fwd or kl_scan_bwd, made once; a \
                backward's forward runs before the eviction), which runs inside \
                kl_traffic_region, followed there by kl_traffic_drain, which writes back \
                the lines the call dirtied. Collect with --toggle-collect=kl_traffic_region \
                --dump-before=kl_traffic_drain.
                """)

        @Option(help: "attention or scan.")
        var kernel: TrafficProbe.Kernel
        @Option(help: "fused or unfused.")
        var impl: KernelImpl
        @Option(help: "forward or backward.")
        var pass: KernelPass = .forward
        @Option(help: "Batch size B.")
        var batch = 1
        @Option(help: "Sequence length L (attention: Lq = Lk = L).")
        var seq = 1024
        @Option(help: "Attention heads H.")
        var heads = 2
        @Option(name: .customLong("head-dim"), help: "Attention head dimension d.")
        var headDim = 64
        @Flag(help: "Causal attention.")
        var causal = false
        @Option(help: "Scan channels D.")
        var channels = 64
        @Option(help: "Scan state size N.")
        var state = 16
        @Option(help: "Threads.")
        var threads = 1

        func run() throws {
            let probe = TrafficProbe(kernel: kernel, impl: impl, pass: pass, batch: batch, heads: heads, seq: seq,
                                     headDim: headDim, channels: channels, state: state, causal: causal)
            let cost = try probe.run(threads: threads)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(cost), as: UTF8.self))
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "validate",
            abstract: "Run the traffic suite under callgrind and compare model and simulated DRAM and L3 bytes.")

        @Option(help: "valgrind executable.")
        var valgrind = "/usr/bin/valgrind"
        @Option(help: "Markdown report to write.")
        var out = "reports/traffic.md"
        @Option(help: "Directory for callgrind's files.")
        var work = ".build/traffic"
        @Option(help: "Run only the first N cases.")
        var limit: Int?

        func run() throws {
            let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            let validator = TrafficValidator(valgrind: valgrind, executable: exe,
                                             workDirectory: URL(fileURLWithPath: work),
                                             log: { printError("… \($0)") })
            var rows: [(TrafficComparison, String)] = []
            let cases = TrafficCase.defaultSuite.prefix(limit ?? Int.max)
            let start = Date()
            let runnable = try validator.prepareExecutable()
            // The L2 simulation does not depend on the case's LLC: one per probe.
            var l3Rows: [(TrafficComparison, String)] = []
            var simulatedL2: Set<String> = []
            for (i, c) in cases.enumerated() {
                for level in [MemoryLevel.dram, .l3] {
                    if level == .l3 && !simulatedL2.insert(c.probe.label).inserted { continue }
                    let t0 = Date()
                    let r = try validator.run(c, index: i, executable: runnable, level: level)
                    if level == .l3 { l3Rows.append((r, c.l3Note)) } else { rows.append((r, c.note)) }
                    printError(String(format: "   %@: %.2f model / %.2f simulated MiB (ratio %.2f, %@) in %.0f s",
                                      level.rawValue, r.modelBytes / 1_048_576, r.simulatedBytes / 1_048_576, r.ratio,
                                      r.verdict, Date().timeIntervalSince(t0)))
                }
            }
            let table = TrafficValidator.table(rows)
            let l3Table = TrafficValidator.table(l3Rows)
            print(table + "\n" + l3Table, terminator: "")
            let ok = rows.filter { $0.0.withinTolerance }.count, l3OK = l3Rows.filter { $0.0.withinTolerance }.count
            print("\nDRAM: \(ok) of \(rows.count) cases within 25%; L3: \(l3OK) of \(l3Rows.count) "
                  + "(\(String(format: "%.0f", Date().timeIntervalSince(start))) s)")
            let doc = """
                # DRAM traffic: cost model vs callgrind cache simulation

                `make validate-traffic` (`kernel-lab traffic validate`): each case runs once under
                `valgrind --tool=callgrind --cache-sim=yes --simulate-wb=yes` with KERNELLAB_ISA=avx2,
                OPENBLAS_CORETYPE=Haswell, one thread, D1 32 KiB 8-way and the LLC shown (16-way, 64 B lines;
                the model is told the same size through KERNELLAB_LLC_BYTES). Caches are evicted before the
                call; simulated bytes = 64 x (LL misses of the call + dirty lines written back during the call
                and when evicted after it).

                ## DRAM (dram_bytes against the simulated LLC)

                """ + table + """

                ## L3 <-> L2 (l3_bytes against a simulated 1 MiB 8-way L2)

                The same runs with callgrind's LL set to the L2's geometry (`--LL=1048576,8,64`; the model is
                told the size through KERNELLAB_L2_BYTES): its misses and write-backs are the traffic between
                L2 and L3. One run per shape (it does not depend on the LLC). Beside it, for information, the
                model's l2_bytes (L1d traffic, a rougher model) and callgrind's D1 misses x 64 (fetches only:
                callgrind does not count D1 write-backs, so D1/model is expected below 1 where write-backs
                are a large share).


                """ + l3Table
            try FileManager.default.createDirectory(
                at: URL(fileURLWithPath: out).deletingLastPathComponent(), withIntermediateDirectories: true)
            try doc.write(toFile: out, atomically: true, encoding: .utf8)
            printError("report written to \(out)")
        }
    }
}

extension TrafficProbe.Kernel: ExpressibleByArgument {}
extension KernelPass: ExpressibleByArgument {}
