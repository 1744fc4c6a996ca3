import ArgumentParser
import KernelLab

/// `kernel-lab ceilings`: this machine's measured ceilings, measured once and
/// reused from its machine profile.
struct CeilingsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ceilings",
        abstract: "Measure this machine's ceilings: peak GFLOP/s and exp/s per ISA, cache and DRAM bandwidth, sgemm.",
        discussion: """
            Every ceiling is measured for each thread count 1...--threads, each point the \
            best of several timed trials after a discarded warm-up. Bandwidth follows \
            STREAM's byte convention (read 4, copy 8, triad 12 bytes per float; \
            write-allocate traffic not counted); cache and DRAM plateaus are medians over \
            a working-set sweep from 8 KiB to 8x the last-level cache. The DRAM triad is \
            reported next to an independent STREAM-style triad. The result is saved as a \
            machine profile (Profiles/machines/<machine-id>.json, or --out) and reused by \
            later runs on the same machine unless --remeasure is given. A full measurement \
            takes about a minute on 2 CPUs; --quick takes seconds.
            """)

    @Option(help: "Largest thread count to measure (default: all CPUs).")
    var threads: Int?
    @Flag(help: "Print one JSON object instead of tables.")
    var json = false
    @Flag(help: "Measure even when a matching profile is stored.")
    var remeasure = false
    @Flag(help: "Fewer sweep points and shorter trials (seconds instead of a minute).")
    var quick = false
    @Option(help: "Profile file to reuse and write (default: Profiles/machines/<machine-id>.json).")
    var out: String?

    func validate() throws {
        try validateThreads(threads)
        if let out, out.isEmpty || out.hasSuffix("/") {
            throw ValidationError("--out must name a file, got '\(out)'")
        }
    }

    func run() throws {
        let system = try SystemInfo.current()
        let maxThreads = threadsOrAllCPUs(threads)
        let settings = quick ? CeilingsSettings.quick(maxThreads: maxThreads) : .full(maxThreads: maxThreads)
        let machineID = MachineProfile.machineID(for: system)
        let path = out ?? MachineProfile.defaultPath(machineID: machineID)
        let progress = terminalProgress()
        let (profile, decision) = try MachineProfile.loadOrMeasure(
            path: path, machineID: machineID, settings: settings, remeasure: remeasure
        ) {
            progress?("measuring ceilings (\(quick ? "quick" : "full"), threads 1...\(maxThreads))")
            return try CeilingsMeasurement(settings: settings, system: system)
                .run(measurer: KernelCeilingMeasurer(), progress: progress)
        }
        let origin: String
        switch decision {
        case .reused: origin = "reused \(path) (measured \(profile.date); --remeasure to measure again)"
        case .measured(let reason): origin = "measured and saved \(path) (\(reason))"
        }
        for warning in profile.warnings {
            printError("kernel-lab: warning: \(warning)")
        }
        if json {
            progress?(origin)
            print(try profile.json())
        } else {
            print("profile  \(origin)\n")
            print(profile.table())
        }
    }
}
