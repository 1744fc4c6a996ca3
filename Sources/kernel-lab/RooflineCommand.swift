import ArgumentParser
import Foundation
import KernelLab

/// `kernel-lab roofline`: runs a suite of kernel cases and places them on
/// this machine's roofline, with projections onto accelerators.
struct RooflineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roofline",
        abstract: "Place fused and unfused kernels on this machine's measured roofline; write JSON, CSV, Markdown, SVG and HTML.",
        discussion: """
            Runs every case of the suite (Profiles/suites/NAME.json, or a path) with the \
            Swift kernel APIs, times the median call after warm-up, and takes FLOPs and \
            modelled DRAM bytes from the C cost models. Each point's bound is the lowest \
            of the compute roof of the ISA in use, the exp roof and the DRAM roof times \
            its intensity. The ceilings come from this machine's profile \
            (Profiles/machines/<machine-id>.json, measured first when absent or lacking \
            the thread count, as `kernel-lab ceilings` does) or from --ceilings FILE. \
            Accelerator projections (Profiles/devices/*.json) are models, not \
            measurements. --peers FILE adds measurements from outside the lab (make \
            compare's reports/compare.json: PyTorch on the same shapes) as points of \
            their own; their bytes are the lab's cost models, an estimate. Writes roofline.{json,csv,md,svg,html} to --out and prints a \
            five-line summary (--json: the report's JSON instead).
            """)

    @Option(help: "Suite name in Profiles/suites (default, smoke, full) or a path to a suite file.")
    var suite = "default"
    @Option(help: "Threads for every kernel (default: all CPUs).")
    var threads: Int?
    @Option(help: "Output directory.")
    var out = RooflineReport.defaultDirectory
    @Flag(help: "Print the report as one JSON object instead of the summary.")
    var json = false
    @Option(help: "Ceilings file (a machine profile or a ceilings table) instead of this machine's stored profile.")
    var ceilings: String?
    @Flag(name: .customLong("quick-ceilings"), help: "If the profile must be measured, use the quick settings (seconds, less precise).")
    var quickCeilings = false
    @Option(help: "Directory of accelerator profiles to project onto.")
    var devices = "Profiles/devices"
    @Option(help: "Kernel ISA to use (scalar, avx2, avx512; default: KERNELLAB_ISA or the best available).")
    var isa: ISA?
    @Option(help: "Seed of the random inputs.")
    var seed: UInt64 = 0
    @Option(name: .customLong("from"), help: "Rewrite the documents and print the summary of an existing roofline.json, measuring nothing.")
    var from: String?
    @Option(help: "Peers file (make compare's reports/compare.json): measurements from outside the lab, drawn as points of their own.")
    var peers: String?

    func validate() throws {
        try validateThreads(threads)
        if out.isEmpty { throw ValidationError("--out must name a directory") }
    }

    func run() throws {
        // Read before anything is timed, so a bad file fails at once.
        let peerFile = try peers.map { try RooflinePeersFile(contentsOf: $0) }
        if let from {
            try output(try withPeers(try RooflineReport(contentsOf: from), peerFile))
            return
        }
        if let isa { try ISA.set(isa) }
        let progress = terminalProgress()
        let threads = threadsOrAllCPUs(self.threads)
        if let peerFile, peerFile.threads != threads {
            throw KernelLabError.invalidArgument(
                argument: "peers", reason: "the peers ran on \(peerFile.threads) thread(s), this report runs \(threads); pass --threads \(peerFile.threads)")
        }
        // Everything that can fail cheaply is checked before any timing.
        let suite = try RooflineSuite.load(self.suite)
        let accelerators = try AcceleratorProfile.loadAll(directory: devices)
        let provider = try loadCeilings(threads: threads, progress: progress)
        _ = try provider.requireCeilings(threads: threads)
        let activeISA = try ISA.active

        let measurements = try RooflineRunner(threads: threads, seed: seed).measure(suite, progress: progress)
        let report = try RooflineReport(
            suite: suite, measurements: measurements, ceilings: provider,
            threads: threads, isa: activeISA, devices: accelerators)
        try output(try withPeers(report, peerFile))
    }

    private func withPeers(_ report: RooflineReport, _ file: RooflinePeersFile?) throws -> RooflineReport {
        try file.map { try report.addingPeers($0) } ?? report
    }

    /// Writes the documents, then prints the JSON, or the files written and
    /// the five-line summary last.
    private func output(_ report: RooflineReport) throws {
        let written = try report.write(to: out)
        if json {
            print(try report.json())
        } else {
            print("wrote " + written.joined(separator: ", "))
            print(report.summaryText())
        }
    }

    /// The ceilings: --ceilings FILE, else this machine's profile, measured
    /// and saved first when there is none that covers `threads`.
    private func loadCeilings(threads: Int, progress: ((String) -> Void)?) throws -> any RooflineCeilingProvider {
        if let ceilings {
            return try loadRooflineCeilings(path: ceilings)
        }
        let system = try SystemInfo.current()
        let settings = quickCeilings ? CeilingsSettings.quick(maxThreads: threads) : .full(maxThreads: threads)
        let machineID = MachineProfile.machineID(for: system)
        let path = MachineProfile.defaultPath(machineID: machineID)
        let (profile, decision) = try MachineProfile.loadOrMeasure(
            path: path, machineID: machineID, settings: settings, remeasure: false
        ) {
            progress?("measuring ceilings (\(quickCeilings ? "quick" : "full"), threads 1...\(threads)); saved for later runs")
            return try CeilingsMeasurement(settings: settings, system: system)
                .run(measurer: KernelCeilingMeasurer(), progress: progress)
        }
        switch decision {
        case .reused: progress?("ceilings from \(path) (measured \(profile.date))")
        case .measured(let reason): progress?("ceilings measured and saved to \(path) (\(reason))")
        }
        return profile
    }
}
