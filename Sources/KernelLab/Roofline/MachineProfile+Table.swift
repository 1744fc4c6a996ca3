import Foundation

extension MachineProfile {
    /// The profile as text: machine, compute ceilings, bandwidth plateaus,
    /// the STREAM cross-check, NUMA and the raw sweep, one aligned table each.
    public func table() -> String {
        let threads = machine.threads
        let threadHeaders = threads.map { "T=\($0)" }
        let numeric = Set(2..<(2 + threads.count))
        func cell(_ value: Double?, _ format: String) -> String {
            value.map { String(format: format, $0) } ?? "-"
        }
        var sections: [String] = []

        let phases = ["compute", "sweep", "stream_check", "numa", "sgemm"].compactMap { name in
            phaseSeconds[name].map { "\(name) " + String(format: "%.1f", $0) }
        }.joined(separator: ", ")
        let supported = machine.supportedISAs.map(\.rawValue).joined(separator: ", ")
        let caches = machine.cacheBytes
        sections.append(formatTable([
            ["machine", "\(machineID)\(quick ? " (quick)" : "")"],
            ["cpu", "\(machine.cpuModel), \(machine.cpuCount) CPUs, \(machine.numaNodes) NUMA node(s)"],
            ["isa", "\(machine.isa.rawValue) (supported: \(supported))"],
            ["caches", "L1d \(formatBytes(caches.l1)), L2 \(formatBytes(caches.l2)), L3 \(formatBytes(caches.l3))"],
            ["openblas", "\(machine.blasConfig) (core \(machine.blasCore))"],
            ["measured", "\(date) in \(String(format: "%.1f", measurementSeconds)) s (\(phases)), \(machine.compiler)"],
        ]))

        if !warnings.isEmpty {
            sections.append(warnings.map { "warning: " + $0 }.joined(separator: "\n"))
        }

        var compute = [["compute", "isa"] + threadHeaders]
        for isa in ISA.allCases where peakGflops[isa.rawValue] != nil {
            compute.append(["peak GFLOP/s", isa.rawValue] + threads.map { cell(peakGflops(isa, threads: $0), "%.1f") })
        }
        for isa in ISA.allCases where expPerSecond[isa.rawValue] != nil {
            compute.append(["exp G/s", isa.rawValue] + threads.map { cell(expPerSecond(isa, threads: $0).map { $0 / 1e9 }, "%.2f") })
        }
        compute.append(["sgemm GFLOP/s", "n=\(settings.sgemmSize)"] + threads.map { cell(sgemmGflops(threads: $0), "%.1f") })
        sections.append(formatTable(compute, rightAligned: numeric))

        var bandwidth = [["bandwidth GB/s", "kernel"] + threadHeaders]
        for level in MemoryLevel.allCases where bandwidthGBs[level.rawValue] != nil {
            for kernel in BandwidthKernel.allCases {
                bandwidth.append([level.label, kernel.rawValue] + threads.map { cell(bandwidthGBs(level, kernel, threads: $0), "%.1f") })
            }
        }
        sections.append(formatTable(bandwidth, rightAligned: numeric)
            + "\n(STREAM bytes: read 4, copy 8, triad 12 per float; write-allocate traffic not counted;"
            + " plateau = median of the sweep points in the level's region)")

        var check = [["triad (lab kernel) vs STREAM-style check", "lab GB/s", "check GB/s", "lab/check", "median pair", "sweep GB/s"]]
        for t in threads {
            let key = String(t)
            check.append(["DRAM, \(t) thread(s)", cell(streamCheck.labTriadGBs[key], "%.1f"),
                          cell(streamCheck.streamTriadGBs[key], "%.1f"), cell(streamCheck.ratio[key], "%.3f"),
                          cell(streamCheck.pairedRatioMedian?[key], "%.3f"), cell(streamCheck.sweepTriadGBs?[key], "%.1f")])
        }
        sections.append(formatTable(check, rightAligned: [1, 2, 3, 4, 5])
            + "\n(check: plain C triad, 3 arrays of \(formatBytes(streamCheck.arrayBytes)); interleaved single passes of both"
            + " kernels over the same bytes, best of each; median pair = median of the rounds' lab/check ratios;"
            + " sweep = the sweep's DRAM triad plateau)")

        if numa.remoteApplicable {
            var rows = [["NUMA GB/s, 1 thread"] + BandwidthKernel.allCases.map(\.rawValue)]
            rows.append(["local"] + BandwidthKernel.allCases.map { cell(numa.localGBs?[$0.rawValue], "%.1f") })
            rows.append(["remote (slowest node)"] + BandwidthKernel.allCases.map { cell(numa.remoteGBs?[$0.rawValue], "%.1f") })
            for node in (numa.byNodeGBs ?? [:]).keys.sorted(by: { Int($0) ?? 0 < Int($1) ?? 0 }) {
                rows.append(["node \(node)"] + BandwidthKernel.allCases.map { cell(numa.byNodeGBs?[node]?[$0.rawValue], "%.1f") })
            }
            sections.append(formatTable(rows, rightAligned: [1, 2, 3]))
        } else {
            sections.append("NUMA: remote bandwidth \(numa.note)")
        }

        // The sweep: one row per working set, one column per (kernel, threads).
        let columns = threads.flatMap { t in BandwidthKernel.allCases.map { (kernel: $0, threads: t) } }
        var byKey: [String: SweepPoint] = [:]
        for point in sweep { byKey["\(point.kernel.rawValue)/\(point.threads)/\(point.bytesPerThread)"] = point }
        var rows = [["sweep bytes/thread"] + columns.map { "\($0.kernel.rawValue) T=\($0.threads)" }]
        for bytes in Set(sweep.map(\.bytesPerThread)).sorted() {
            rows.append([formatBytes(bytes)] + columns.map { column in
                guard let point = byKey["\(column.kernel.rawValue)/\(column.threads)/\(bytes)"] else { return "-" }
                return String(format: "%.1f", point.gbs) + (point.level.map { " " + $0.label } ?? "")
            })
        }
        sections.append(formatTable(rows, rightAligned: Set(1..<(1 + columns.count)))
            + "\n(best GB/s of the trials; the level tag marks points inside a plateau region)")
        return sections.joined(separator: "\n\n")
    }
}
