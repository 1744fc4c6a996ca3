import Foundation

/// Event totals of one callgrind output file (`events:` names, `totals:` or
/// `summary:` values).
public struct CallgrindTotals: Sendable, Equatable {
    public var events: [String: UInt64]

    public init(events: [String: UInt64]) {
        self.events = events
    }

    /// Parses a callgrind output file's text: the `summary:` line (the
    /// profile's total), else the last `totals:` line. (With --toggle-collect
    /// callgrind 3.19 can write a `totals:` that differs from `summary:` in
    /// Ir/Dw; the last-level events agree.)
    ///
    /// - Throws: `KernelLabError.invalidArgument` when there is no `events:`
    ///   line, no totals, or a count is not a number.
    public init(parsing text: String) throws {
        var names: [String]?
        var totals: [Substring]?
        var summary: [Substring]?
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if line.hasPrefix("events:") {
                names = line.dropFirst("events:".count).split(separator: " ").map(String.init)
            } else if line.hasPrefix("totals:") {
                totals = line.dropFirst("totals:".count).split(separator: " ")
            } else if line.hasPrefix("summary:") {
                summary = line.dropFirst("summary:".count).split(separator: " ")
            }
        }
        guard let names, !names.isEmpty else {
            throw KernelLabError.invalidArgument(argument: "callgrind output", reason: "has no events: line")
        }
        guard let values = summary ?? totals else {
            throw KernelLabError.invalidArgument(argument: "callgrind output", reason: "has no totals: or summary: line")
        }
        var events: [String: UInt64] = [:]
        for (i, name) in names.enumerated() {
            // Callgrind leaves trailing zero counts out.
            guard i < values.count else { events[name] = 0; continue }
            guard let v = UInt64(values[i]) else {
                throw KernelLabError.invalidArgument(argument: "callgrind output", reason: "count \(values[i]) of \(name) is not a number")
            }
            events[name] = v
        }
        self.events = events
    }

    public subscript(_ name: String) -> UInt64 { events[name] ?? 0 }

    /// Last-level misses (instruction reads, data reads, data writes): lines
    /// fetched from memory, write misses included (write-allocate).
    public var llMisses: UInt64 { self["ILmr"] + self["DLmr"] + self["DLmw"] }

    /// Misses that evicted a dirty line (`--simulate-wb=yes`): write-backs.
    public var dirtyEvictions: UInt64 { self["ILdmr"] + self["DLdmr"] + self["DLdmw"] }
}

/// Model against simulation for one case.
public struct TrafficComparison: Sendable, Equatable, Codable {
    /// The agreement the roofline issue asks for.
    public static let tolerance = 0.25

    public var label: String
    /// The boundary compared: `.dram` (below the LLC, model `dram_bytes`) or
    /// `.l3` (below the L2, model `l3_bytes`).
    public var level: MemoryLevel = .dram
    /// The simulated last-level cache: the LLC, or the L2 for `.l3`.
    public var llcBytes: Int
    public var modelBytes: Double
    public var minBytes: Double
    /// Lines fetched (LL misses) times the line size, during the call.
    public var fetchedBytes: Double
    /// Dirty lines written back, during the call and when evicted after it.
    public var writtenBackBytes: Double
    /// Model `l2_bytes` and simulated D1 misses times the line size (fetches
    /// only: callgrind does not count D1 write-backs), for `.l3` rows.
    public var l1Model: Double?
    public var l1Fetched: Double?

    public init(label: String, llcBytes: Int, modelBytes: Double, minBytes: Double,
                fetchedBytes: Double, writtenBackBytes: Double) {
        self.label = label
        self.llcBytes = llcBytes
        self.modelBytes = modelBytes
        self.minBytes = minBytes
        self.fetchedBytes = fetchedBytes
        self.writtenBackBytes = writtenBackBytes
    }

    /// Builds a comparison from the call's dump and the drain's dump: misses
    /// and write-backs of the call, plus the write-backs of its dirty lines
    /// that the drain forced (the drain's own fetches are not counted).
    public init(label: String, llcBytes: Int, modelBytes: Double, minBytes: Double,
                call: CallgrindTotals, drain: CallgrindTotals?, lineBytes: Int = 64) {
        let line = Double(lineBytes)
        self.init(label: label, llcBytes: llcBytes, modelBytes: modelBytes, minBytes: minBytes,
                  fetchedBytes: Double(call.llMisses) * line,
                  writtenBackBytes: Double(call.dirtyEvictions + (drain?.dirtyEvictions ?? 0)) * line)
    }

    /// The L3-level comparison of a run whose simulated LL has the L2's
    /// geometry: model `l3_bytes` against its misses and write-backs, with
    /// the D1 misses beside model `l2_bytes`.
    public init(l3Of cost: KernelCost, label: String, l2Bytes: Int, call: CallgrindTotals, drain: CallgrindTotals?,
                lineBytes: Int = 64) {
        self.init(label: label, llcBytes: l2Bytes, modelBytes: cost.l3Bytes, minBytes: cost.minBytes,
                  call: call, drain: drain, lineBytes: lineBytes)
        level = .l3
        l1Model = cost.l2Bytes
        l1Fetched = Double(call["D1mr"] + call["D1mw"]) * Double(lineBytes)
    }

    public var simulatedBytes: Double { fetchedBytes + writtenBackBytes }

    /// simulated / model (infinity for a zero model with traffic).
    public var ratio: Double {
        modelBytes > 0 ? simulatedBytes / modelBytes : (simulatedBytes > 0 ? .infinity : 1)
    }

    /// Whether |simulated - model| <= 25% of the model.
    public var withinTolerance: Bool { abs(ratio - 1) <= Self.tolerance + 1e-12 }

    public var verdict: String { withinTolerance ? "ok" : (ratio > 1 ? "model low" : "model high") }
}

/// One case of `kernel-lab traffic validate`: a probe and the simulated LLC.
public struct TrafficCase: Sendable {
    public var probe: TrafficProbe
    public var llcBytes: Int
    /// Why the model and the simulation may differ, printed next to the row.
    public var note: String
    /// The same for the L3-level (simulated L2) comparison.
    public var l3Note: String

    public init(probe: TrafficProbe, llcBytes: Int, note: String = "", l3Note: String = "") {
        self.probe = probe
        self.llcBytes = llcBytes
        self.note = note
        self.l3Note = l3Note
    }

    public static let fullLLC = 32 << 20
    public static let smallLLC = 1 << 20
    /// The L2 simulated for the L3-level comparison: 1 MiB, 8-way, this
    /// machine's (Zen 4) per-core L2.
    public static let l2Bytes = 1 << 20
    public static let l2Ways = 8

    /// Small shapes (each well under a minute under valgrind): both kernels,
    /// both implementations, with the machine's 32 MiB L3 and with a 1 MiB LLC
    /// that the unfused intermediates overflow.
    public static let defaultSuite: [TrafficCase] = {
        func attn(_ impl: KernelImpl, _ pass: KernelPass, seq: Int = 1024) -> TrafficProbe {
            TrafficProbe(kernel: .attention, impl: impl, pass: pass, batch: 1, heads: 2, seq: seq, headDim: 64)
        }
        func scan(_ impl: KernelImpl, _ pass: KernelPass) -> TrafficProbe {
            TrafficProbe(kernel: .scan, impl: impl, pass: pass, batch: 1, seq: 1024, channels: 64, state: 16)
        }
        let scanConflicts = "D1 far above l2_bytes: the unfused passes read B and C (N, L) a time step at a time, "
            + "N lines 4 KiB apart (L = 1024 floats), which share one set of the 8-way L1 and miss on every access; "
            + "l2_bytes counts capacity, not such conflict misses"
        return [
            TrafficCase(probe: attn(.fused, .forward), llcBytes: fullLLC),
            TrafficCase(probe: attn(.unfused, .forward), llcBytes: fullLLC),
            TrafficCase(probe: attn(.fused, .forward), llcBytes: smallLLC),
            TrafficCase(probe: attn(.unfused, .forward), llcBytes: smallLLC),
            TrafficCase(probe: scan(.fused, .forward), llcBytes: fullLLC),
            TrafficCase(probe: scan(.unfused, .forward), llcBytes: fullLLC, l3Note: scanConflicts),
            TrafficCase(probe: scan(.unfused, .forward), llcBytes: smallLLC),
            TrafficCase(probe: attn(.fused, .backward), llcBytes: fullLLC),
            TrafficCase(probe: attn(.unfused, .backward), llcBytes: smallLLC,
                        note: "the model's 15 passes over (L, L) leave out OpenBLAS re-reading the dq/dk/dv "
                            + "accumulators once per k-block of the three Lk- or Lq-deep sgemms and its packing buffers",
                        l3Note: "as at DRAM with a 1 MiB LLC: OpenBLAS's accumulator re-reads and packing buffers"),
            TrafficCase(probe: scan(.fused, .backward), llcBytes: fullLLC),
            TrafficCase(probe: scan(.unfused, .backward), llcBytes: smallLLC, l3Note: scanConflicts),
        ]
    }()
}

/// Runs `kernel-lab traffic` under callgrind's cache simulator and compares
/// the simulated DRAM bytes with the cost model.
public struct TrafficValidator {
    public var valgrind: String
    public var executable: String
    public var workDirectory: URL
    public var log: ((String) -> Void)?

    public init(valgrind: String = "/usr/bin/valgrind", executable: String, workDirectory: URL,
                log: ((String) -> Void)? = nil) {
        self.valgrind = valgrind
        self.executable = executable
        self.workDirectory = workDirectory
        self.log = log
    }

    /// Valgrind's arguments for one case (output files under `outFile`).
    /// With `level: .l3` the simulated LL is the L2 (`TrafficCase.l2Bytes`,
    /// 8-way): its misses and write-backs are the L3 <-> L2 traffic.
    public static func valgrindArguments(for c: TrafficCase, outFile: String, level: MemoryLevel = .dram) -> [String] {
        let ll = level == .l3 ? "\(TrafficCase.l2Bytes),\(TrafficCase.l2Ways),64" : "\(c.llcBytes),16,64"
        return [
            "--tool=callgrind", "--cache-sim=yes", "--simulate-wb=yes",
            "--I1=32768,8,64", "--D1=32768,8,64", "--LL=\(ll)",
            "--collect-atstart=no",
            // One --toggle-collect is honoured (valgrind 3.19): the region
            // holds the call and the drain; the dump before the drain ends
            // the call's part.
            "--toggle-collect=\(TrafficProbe.regionSymbol)", "--dump-before=\(TrafficProbe.drainSymbol)",
            "--callgrind-out-file=\(outFile)",
        ]
    }

    /// The environment of the simulated run: AVX2 (valgrind cannot decode
    /// AVX-512), OpenBLAS on its Haswell kernels with one thread, and the
    /// simulated LLC size for the cost model.
    public static func environment(for c: TrafficCase, base: [String: String]) -> [String: String] {
        var env = base
        env["KERNELLAB_ISA"] = "avx2"
        env["OPENBLAS_CORETYPE"] = "Haswell"
        env["OPENBLAS_NUM_THREADS"] = "1"
        env["KERNELLAB_LLC_BYTES"] = "\(c.llcBytes)"
        env["KERNELLAB_L2_BYTES"] = "\(TrafficCase.l2Bytes)"
        env["KERNELLAB_L1_BYTES"] = "32768"
        return env
    }

    /// Valgrind 3.19 cannot read the DWARF 5 the Swift toolchain emits
    /// ("unhandled dwarf2 abbrev form code 0x25", then it gives up): run a copy
    /// without debug info (symbols stay, which is all callgrind needs).
    public func prepareExecutable() throws -> String {
        let fm = FileManager.default
        try fm.createDirectory(at: workDirectory, withIntermediateDirectories: true)
        let copy = workDirectory.appendingPathComponent("kernel-lab").path
        try? fm.removeItem(atPath: copy)
        let objcopy = Process()
        objcopy.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        objcopy.arguments = ["objcopy", "--strip-debug", executable, copy]
        try objcopy.run()
        objcopy.waitUntilExit()
        return objcopy.terminationStatus == 0 ? copy : executable
    }

    /// Runs one case under callgrind: with `level: .dram` the simulated LL is
    /// the case's LLC and the model's `dram_bytes` is compared; with `.l3` it
    /// is the L2 and `l3_bytes` is compared.
    public func run(_ c: TrafficCase, index: Int, executable: String? = nil, level: MemoryLevel = .dram) throws -> TrafficComparison {
        let fm = FileManager.default
        let dir = workDirectory.appendingPathComponent(level == .l3 ? "case\(index)-l2" : "case\(index)")
        try? fm.removeItem(at: dir)
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let outFile = dir.appendingPathComponent("callgrind.out").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: valgrind)
        process.arguments = Self.valgrindArguments(for: c, outFile: outFile, level: level)
            + ["--log-file=\(dir.appendingPathComponent("valgrind.log").path)", executable ?? self.executable, "traffic"]
            + c.probe.arguments + ["--threads", "1"]
        process.environment = Self.environment(for: c, base: ProcessInfo.processInfo.environment)
        let stdout = Pipe()
        process.standardOutput = stdout
        log?("valgrind \(c.probe.label), " + (level == .l3 ? "LL = L2 \(TrafficCase.l2Bytes >> 10) KiB" : "LLC \(c.llcBytes >> 10) KiB"))
        try process.run()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw KernelLabError.invalidArgument(
                argument: "valgrind", reason: "exit \(process.terminationStatus) for \(c.probe.label); see \(dir.path)/valgrind.log")
        }
        let model = try JSONDecoder().decode(KernelCost.self, from: output)
        // Callgrind writes the part up to the drain as <out>.1 and the rest
        // (the drain) as <out> at exit.
        let files = try fm.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("callgrind.out") }
        func load(_ name: String) throws -> CallgrindTotals? {
            guard files.contains(name) else { return nil }
            return try CallgrindTotals(parsing: String(contentsOfFile: dir.appendingPathComponent(name).path, encoding: .utf8))
        }
        guard let call = try load("callgrind.out.1") else {
            throw KernelLabError.invalidArgument(argument: "callgrind", reason: "no dump before \(TrafficProbe.drainSymbol) in \(dir.path)")
        }
        let drain = try load("callgrind.out.2") ?? load("callgrind.out")
        if level == .l3 {
            return TrafficComparison(l3Of: model, label: c.probe.label, l2Bytes: TrafficCase.l2Bytes, call: call, drain: drain)
        }
        return TrafficComparison(label: c.probe.label, llcBytes: c.llcBytes, modelBytes: model.dramBytes,
                                 minBytes: model.minBytes, call: call, drain: drain)
    }

    /// A table printed and written to reports/traffic.md, one row per
    /// comparison. DRAM rows (`.dram`) name the simulated LLC; L3 rows (`.l3`,
    /// a simulated L2 against `l3_bytes`) add, for information, model
    /// `l2_bytes` against the simulated D1 misses. Rows are of one level.
    public static func table(_ rows: [(TrafficComparison, String)]) -> String {
        func mib(_ b: Double) -> String { String(format: "%.2f", b / 1_048_576) }
        let l3 = rows.first?.0.level == .l3
        var s = l3
            ? "| case | min MiB | model l3 MiB | simulated MiB (fetched + written back) | sim/model | verdict "
                + "| model l2 MiB | D1 misses MiB | D1/model |\n|---|---:|---:|---:|---:|---|---:|---:|---:|\n"
            : "| case | LLC | min MiB | model MiB | simulated MiB (fetched + written back) | sim/model | verdict |\n"
                + "|---|---:|---:|---:|---:|---:|---|\n"
        func llc(_ r: TrafficComparison) -> String {
            r.llcBytes >= 1 << 20 ? "\(r.llcBytes >> 20) MiB" : "\(r.llcBytes >> 10) KiB"
        }
        for (r, _) in rows {
            s += "| \(r.label) | " + (l3 ? "" : "\(llc(r)) | ") + "\(mib(r.minBytes)) | \(mib(r.modelBytes)) | "
            s += "\(mib(r.simulatedBytes)) (\(mib(r.fetchedBytes)) + \(mib(r.writtenBackBytes))) | "
            s += String(format: "%.2f", r.ratio) + " | \(r.verdict) |"
            if !l3 {
                s += "\n"
            } else if let model = r.l1Model, let fetched = r.l1Fetched, model > 0 {
                s += " \(mib(model)) | \(mib(fetched)) | " + String(format: "%.2f", fetched / model) + " |\n"
            } else {
                s += " - | - | - |\n"
            }
        }
        let notes = rows.filter { !$0.1.isEmpty }
        if !notes.isEmpty {
            s += "\n"
            for (r, note) in notes { s += "- \(r.label)" + (l3 ? "" : ", LLC \(r.llcBytes >> 10) KiB") + ": \(note)\n" }
        }
        return s
    }
}
