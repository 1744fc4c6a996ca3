import Foundation

extension RooflineReport {
    /// The report's file names in an output directory, in the order written.
    public static let fileNames = ["roofline.json", "roofline.csv", "roofline.md", "roofline.svg", "roofline.html"]

    /// The default output directory, relative to the working directory.
    public static let defaultDirectory = "reports/roofline"

    /// Writes roofline.json, .csv, .md, .svg and .html into `directory`
    /// (created if missing). Each file is written whole or not at all
    /// (temporary file, flush, rename), so a reader never sees half a report
    /// file; a failure leaves the files not yet written unchanged.
    ///
    /// - Returns: the paths written.
    /// - Throws: `KernelLabError.io` naming the directory or file that failed.
    @discardableResult
    public func write(to directory: String) throws -> [String] {
        let svg = RooflineChart(report: self).svg()
        let documents = [
            try json() + "\n",
            csv(),
            markdown(),
            svg,
            html(svg: svg),
        ]
        return try writeDocuments(Array(zip(Self.fileNames, documents)), to: directory)
    }

    // MARK: - CSV

    /// One row per point; shape fields of the other kernel are empty. Device
    /// columns are `<device>_fp32_attainable_gflops` and `<device>_fp32_bound`.
    public func csv() -> String {
        var header = ["id", "kernel", "impl", "pass", "label", "batch", "heads", "seq", "kv_seq", "head_dim", "causal",
                      "channels", "state", "groups", "threads", "isa", "repeats", "median_seconds", "flops", "min_bytes",
                      "dram_bytes", "l3_bytes", "l2_bytes", "exps", "intensity", "l3_intensity", "l2_intensity", "gflops",
                      "memory_roof_level", "bound", "bound_gflops", "fraction_of_bound",
                      "workspace_bytes", "footprint_bytes", "footprint_level"]
        for device in devices {
            header += ["\(device.profile.id)_fp32_attainable_gflops", "\(device.profile.id)_fp32_bound"]
        }
        // Without peers or layer kernels the columns stay exactly as they were.
        let peers = self.peers ?? []
        if !peers.isEmpty { header.append("peer") }
        let layers = points.contains { $0.op != nil }
        if layers { header.append("op") }
        var lines = [header.joined(separator: ",")]
        for p in points {
            func optional(_ value: Int?) -> String { value.map(String.init) ?? "" }
            var row = [p.id, p.kernel.rawValue, p.impl.rawValue, p.pass.rawValue, csvField(p.label), String(p.batch),
                       optional(p.heads), String(p.seq), optional(p.kvSeq), optional(p.headDim),
                       p.causal.map { $0 ? "true" : "false" } ?? "", optional(p.channels), optional(p.state), optional(p.groups),
                       String(p.threads), p.isa.rawValue, String(p.repeats), csvNumber(p.medianSeconds), csvNumber(p.flops),
                       csvNumber(p.minBytes), csvNumber(p.dramBytes), csvNumber(p.l3Bytes), csvNumber(p.l2Bytes),
                       csvNumber(p.exps), csvNumber(p.intensity), csvNumber(p.l3Intensity), csvNumber(p.l2Intensity),
                       csvNumber(p.gflops), p.memoryRoofLevel.rawValue, p.bound.rawValue, csvNumber(p.boundGflops),
                       csvNumber(p.fractionOfBound), String(p.workspaceBytes), csvNumber(p.footprintBytes), p.footprintLevel.rawValue]
            for device in devices {
                let projection = p.projections[device.profile.id]?.fp32
                row += [projection.map { csvNumber($0.attainableGflops) } ?? "", projection?.bound.rawValue ?? ""]
            }
            if !peers.isEmpty { row.append("false") }
            if layers { row.append(p.op?.rawValue ?? "") }
            lines.append(row.joined(separator: ","))
        }
        // Peers: impl is the peer's name; no ISA, workspace, footprint or projections of theirs are known.
        for p in peers {
            func optional(_ value: Int?) -> String { value.map(String.init) ?? "" }
            var row = [p.id, p.kernel.rawValue, csvField(p.name), p.pass.rawValue, csvField(p.label), String(p.batch),
                       optional(p.heads), String(p.seq), optional(p.kvSeq), optional(p.headDim),
                       p.causal.map { $0 ? "true" : "false" } ?? "", optional(p.channels), optional(p.state), optional(p.groups),
                       String(p.threads), "", optional(p.repeats), csvNumber(p.medianSeconds), csvNumber(p.flops),
                       csvNumber(p.minBytes), csvNumber(p.dramBytes), csvNumber(p.l3Bytes), csvNumber(p.l2Bytes),
                       csvNumber(p.exps), csvNumber(p.intensity), csvNumber(p.l3Intensity), csvNumber(p.l2Intensity),
                       csvNumber(p.gflops), p.memoryRoofLevel.rawValue, p.bound.rawValue, csvNumber(p.boundGflops),
                       csvNumber(p.fractionOfBound), "", "", ""]
            row += Array(repeating: "", count: devices.count * 2)
            row.append("true")
            if layers { row.append("") }
            lines.append(row.joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - Markdown

    /// The report as Markdown: summary, the points table, the pairs, the
    /// roofs, the projections and the method notes.
    public func markdown() -> String {
        var md = "# Roofline: \(machine.cpuModel), \(isa.rawValue), \(threads) thread\(threads == 1 ? "" : "s")\n\n"
        md += "Suite `\(suite)`\(suiteDescription.isEmpty ? "." : ": " + sentence(suiteDescription)) Generated \(date).\n\n"
        md += "## Summary\n\n```\n\(summaryText())\n```\n\n"
        md += "![roofline](roofline.svg)\n\n"
        md += "## Points\n\n"
        md += markdownTable(pointRows(), rightAligned: [4, 5, 6, 7, 8, 9, 10, 12, 13])
        md += "\n"
        if let peers, !peers.isEmpty {
            md += "## Peers (\(peerSource ?? "peer"))\n\n"
            md += Self.peersIntro + "\n\n"
            md += markdownTable(peerRows(peers), rightAligned: [5, 6, 7, 8, 9, 11]) + "\n"
        }
        if !pairs.isEmpty {
            md += "## Fused over unfused\n\n"
            var rows = [["kernel", "case", "pass", "unfused ms", "fused ms", "speedup", "bound unfused → fused"]]
            for pair in pairs {
                guard let u = points.first(where: { $0.id == pair.unfused }), let f = points.first(where: { $0.id == pair.fused }) else { continue }
                rows.append([pair.kernel.rawValue, pair.label, pair.pass.rawValue,
                             String(format: "%.2f", u.medianSeconds * 1e3), String(format: "%.2f", f.medianSeconds * 1e3),
                             formatSpeedup(pair.speedup), "\(u.bound.rawValue) → \(f.bound.rawValue)"])
            }
            md += markdownTable(rows, rightAligned: [3, 4, 5]) + "\n"
        }
        md += "## Roofs (\(threads) thread\(threads == 1 ? "" : "s"))\n\n"
        md += markdownTable(roofRows(), rightAligned: [1, 2]) + "\n"
        if !devices.isEmpty {
            md += "## Projections onto accelerators (model, not measurement)\n\n"
            md += projectionIntro() + "\n\n"
            md += markdownTable(projectionRows(), rightAligned: Set(2..<(2 + devices.count * 2))) + "\n"
            for line in bandwidthBoundStatements() {
                md += "- \(line)\n"
            }
            md += "\n"
        }
        md += "## Machine\n\n"
        md += markdownTable(machineRows(), rightAligned: []) + "\n"
        md += "## Method\n\n"
        for note in notes {
            md += "- \(note)\n"
        }
        return md
    }

    // MARK: - HTML

    /// A self-contained HTML page: the chart inline, the tables, the machine
    /// profile and the method notes. No scripts, no external resources.
    public func html(svg: String? = nil) -> String {
        let chart = svg ?? RooflineChart(report: self).svg()
        var h = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>Roofline: \(escapeXML(machine.cpuModel)), \(isa.rawValue), \(threads) thread\(threads == 1 ? "" : "s")</title>
            <style>
            body { font-family: \(RooflineChart.fontFamily); color: #222; margin: 24px auto; max-width: 1120px; line-height: 1.45; }
            h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
            table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
            th, td { border: 1px solid #d5d5d5; padding: 3px 8px; }
            th { background: #f3f3f3; text-align: left; }
            td.num { text-align: right; font-variant-numeric: tabular-nums; }
            pre { background: #f6f6f6; padding: 10px; font-size: 13px; overflow-x: auto; }
            .note { color: #555; font-size: 13px; }
            svg { max-width: 100%; height: auto; }
            </style>
            </head>
            <body>

            """
        h += "<h1>Roofline: \(escapeXML(machine.cpuModel)) · \(isa.rawValue) · \(threads) thread\(threads == 1 ? "" : "s")</h1>\n"
        h += "<p class=\"note\">Suite <code>\(escapeXML(suite))</code>\(suiteDescription.isEmpty ? "." : ": " + escapeXML(sentence(suiteDescription))) Generated \(escapeXML(date)).</p>\n"
        h += "<h2>Summary</h2>\n<pre>\(escapeXML(summaryText()))</pre>\n"
        h += "<h2>Chart</h2>\n"
        // The SVG document without its XML prolog is valid inline HTML.
        h += chart + "\n"
        h += "<h2>Points</h2>\n" + htmlTable(pointRows(), numeric: [4, 5, 6, 7, 8, 10, 11])
        if let peers, !peers.isEmpty {
            h += "<h2>Peers (\(escapeXML(peerSource ?? "peer")))</h2>\n<p class=\"note\">\(escapeXML(Self.peersIntro))</p>\n"
            h += htmlTable(peerRows(peers), numeric: [5, 6, 7, 8, 9, 11])
        }
        if !pairs.isEmpty {
            var rows = [["kernel", "case", "pass", "speedup (unfused / fused median)"]]
            rows += pairs.map { [$0.kernel.rawValue, $0.label, $0.pass.rawValue, formatSpeedup($0.speedup)] }
            h += "<h2>Fused over unfused</h2>\n" + htmlTable(rows, numeric: [3])
        }
        h += "<h2>Roofs (\(threads) thread\(threads == 1 ? "" : "s"))</h2>\n" + htmlTable(roofRows(), numeric: [1, 2])
        if !devices.isEmpty {
            h += "<h2>Projections onto accelerators (model, not measurement)</h2>\n"
            h += "<p>\(escapeXML(projectionIntro()))</p>\n"
            h += htmlTable(projectionRows(), numeric: Set(2..<(2 + devices.count * 2)))
            h += "<ul>\n" + bandwidthBoundStatements().map { "<li>\(escapeXML($0))</li>\n" }.joined() + "</ul>\n"
            for device in devices {
                h += "<p class=\"note\"><b>\(escapeXML(device.profile.name))</b>: \(escapeXML(device.profile.note ?? ""))"
                for (key, source) in (device.profile.sources ?? [:]).sorted(by: { $0.key < $1.key }) {
                    h += "<br>\(escapeXML(key)): \(escapeXML(source))"
                }
                h += "</p>\n"
            }
        }
        h += "<h2>Machine profile</h2>\n" + htmlTable(machineRows(), numeric: [])
        h += "<h2>Method notes</h2>\n<ul>\n" + notes.map { "<li>\(escapeXML($0))</li>\n" }.joined() + "</ul>\n"
        h += "</body>\n</html>\n"
        return h
    }

    // MARK: - Table rows shared by the documents

    private func pointRows() -> [[String]] {
        var rows = [["id", "kernel / case", "pass", "impl", "median ms", "GFLOP/s", "FLOP/B", "DRAM MB", "L3 MB", "L2 MB",
                     "bound GFLOP/s", "bound", "of bound", "exp roof", "footprint"]]
        for p in points {
            rows.append([p.id, "\(p.kernel.rawValue) \(p.shapeDescription)", p.pass.rawValue, p.impl.rawValue,
                         String(format: "%.3f", p.medianSeconds * 1e3), formatSignificant(p.gflops),
                         formatSignificant(p.intensity), formatSignificant(p.dramBytes / 1e6),
                         formatSignificant(p.l3Bytes / 1e6), formatSignificant(p.l2Bytes / 1e6), formatSignificant(p.boundGflops),
                         p.bound.rawValue, formatPercent(p.fractionOfBound),
                         p.expRoofGflops.map(formatSignificant) ?? "-",
                         "\(formatBytes(Int(p.footprintBytes))) (\(p.footprintLevel.label))"])
        }
        return rows
    }

    /// What the peers table shows, and what its bytes are.
    static let peersIntro = "Measured outside the lab (make compare: reports/compare.md has the speed ratios, each measured in one run). "
        + "FLOPs are the lab's convention for the shape; bytes, intensity and bound come from the lab's cost model named in "
        + "the bytes model column (an estimate of the peer's traffic, not a measurement)."

    private func peerRows(_ peers: [RooflinePeer]) -> [[String]] {
        var rows = [["id", "peer", "kernel / case", "pass", "bytes model", "median ms", "GFLOP/s", "FLOP/B (model)",
                     "DRAM MB (model)", "bound GFLOP/s", "bound", "of bound"]]
        for p in peers {
            rows.append([p.id, p.name, "\(p.kernel.rawValue) \(p.shapeDescription)", p.pass.rawValue, "lab \(p.model.rawValue)",
                         String(format: "%.3f", p.medianSeconds * 1e3), formatSignificant(p.gflops),
                         formatSignificant(p.intensity), formatSignificant(p.dramBytes / 1e6), formatSignificant(p.boundGflops),
                         p.bound.rawValue, formatPercent(p.fractionOfBound)])
        }
        return rows
    }

    private func roofRows() -> [[String]] {
        var rows = [["roof", "value", "ridge FLOP/B", "note"]]
        for compute in roofs.compute {
            rows.append(["compute \(compute.isa.rawValue)", "\(formatSignificant(compute.gflops)) GFLOP/s",
                         formatSignificant(compute.ridgeFlopPerByte), compute.isa == isa ? "in use; ridge with DRAM" : "ridge with DRAM"])
        }
        for memory in roofs.memory {
            rows.append(["\(memory.level.label) bandwidth", "\(formatSignificant(memory.gbs)) GB/s",
                         formatSignificant(memory.ridgeFlopPerByte), "\(memory.kernel.rawValue) kernel (fastest); ridge with \(isa.rawValue) peak"])
        }
        for exp in roofs.exp {
            rows.append(["exp, \(exp.kernel.rawValue) \(exp.pass.rawValue)", "\(formatSignificant(exp.gflops)) GFLOP/s-eq",
                         formatSignificant(exp.gflops / roofs.dramGBs),
                         "\(formatSignificant(exp.expPerSecond / 1e9)) Gexp/s × \(formatSignificant(exp.flopsPerExp)) FLOP/exp"])
        }
        if let sgemm = roofs.sgemmGflops {
            rows.append(["OpenBLAS sgemm", "\(formatSignificant(sgemm)) GFLOP/s", "-", "reference, not a roof"])
        }
        return rows
    }

    private func projectionIntro() -> String {
        let ridges = devices.map { device -> String in
            let fp32 = device.ridgeFlopPerByte["fp32"].map(formatSignificant) ?? "-"
            let peak = device.profile.peakGflops("fp32").map { formatSignificant($0 / 1e3) } ?? "-"
            return "\(device.profile.name): fp32 \(peak) TFLOP/s over \(formatSignificant(device.profile.memory.bandwidthGBs)) GB/s, ridge \(fp32) FLOP/byte"
        }
        return "attainable = min(peak, bandwidth × intensity), with this lab's fp32 intensities; a model, not a measurement. "
            + ridges.joined(separator: "; ") + "."
    }

    private func projectionRows() -> [[String]] {
        var header = ["id", "case"]
        for device in devices {
            header += ["\(device.profile.id) fp32 GFLOP/s", "bound"]
        }
        header += devices.flatMap { device in
            ["tf32_tensor", "fp16_tensor"].map { "\(device.profile.id) \($0) GFLOP/s" }
        }
        var rows = [header]
        for p in points {
            var row = [p.id, "\(p.label) \(RooflineChart.passShort(p.pass)) \(p.impl.rawValue)"]
            for device in devices {
                let fp32 = p.projections[device.profile.id]?.fp32
                row += [fp32.map { formatSignificant($0.attainableGflops) } ?? "-", fp32?.bound.rawValue ?? "-"]
            }
            for device in devices {
                for precision in ["tf32_tensor", "fp16_tensor"] {
                    let roof = p.projections[device.profile.id]?.byPrecision[precision]
                    row.append(roof.map { "\(formatSignificant($0.attainableGflops)) (\($0.bound == .bandwidth ? "bw" : "compute"))" } ?? "-")
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// "On NVIDIA A100 (fp32 ridge 9.56 FLOP/B), bandwidth-bound: ...".
    func bandwidthBoundStatements() -> [String] {
        devices.map { device in
            let bound = points.filter { device.bandwidthBoundFp32.contains($0.id) }
            let ridge = device.ridgeFlopPerByte["fp32"].map(formatSignificant) ?? "-"
            let names = bound.map { "\($0.label) \(RooflineChart.passShort($0.pass)) \($0.impl.rawValue) (\(formatSignificant($0.intensity)) FLOP/B)" }
            let tensorRidge = device.ridgeFlopPerByte["fp16_tensor"].map(formatSignificant) ?? "-"
            return "\(device.profile.name) (fp32 ridge \(ridge) FLOP/B, fp16 tensor ridge \(tensorRidge)): "
                + (names.isEmpty ? "no point is bandwidth-bound at the fp32 peak"
                    : "\(names.count) of \(points.count) points bandwidth-bound at fp32: " + names.joined(separator: ", "))
                + "; the other \(points.count - bound.count) compute-bound."
        }
    }

    private func machineRows() -> [[String]] {
        func cache(_ bytes: Int) -> String { bytes > 0 ? formatBytes(bytes) : "unknown" }
        var rows = [["property", "value"],
                    ["cpu", machine.cpuModel],
                    ["logical CPUs", String(machine.cpuCount)],
                    ["NUMA nodes", String(machine.numaNodes)],
                    ["caches", "L1d \(cache(machine.cacheBytes.l1)), L2 \(cache(machine.cacheBytes.l2)), L3 \(cache(machine.cacheBytes.l3))"],
                    ["ISAs", machine.supportedISAs.map(\.rawValue).joined(separator: ", ") + " (in use: \(isa.rawValue))"],
                    ["threads", String(threads)]]
        if let core = machine.blasCore { rows.append(["OpenBLAS core", core]) }
        for isa in ISA.allCases {
            if let peak = ceilings.peakGflops(isa) { rows.append(["peak \(isa.rawValue)", "\(formatSignificant(peak)) GFLOP/s"]) }
            if let rate = ceilings.expPerSecond(isa) { rows.append(["exp \(isa.rawValue)", "\(formatSignificant(rate / 1e9)) Gexp/s"]) }
        }
        for level in MemoryLevel.allCases {
            let kernels = BandwidthKernel.allCases.compactMap { kernel in
                ceilings.bandwidthGBs(level, kernel).map { "\(kernel.rawValue) \(formatSignificant($0))" }
            }
            if !kernels.isEmpty { rows.append(["\(level.label) GB/s", kernels.joined(separator: ", ")]) }
        }
        if let sgemm = ceilings.sgemmGflops { rows.append(["sgemm", "\(formatSignificant(sgemm)) GFLOP/s"]) }
        return rows
    }
}

// MARK: - Table helpers

/// `text` ending with one full stop.
private func sentence(_ text: String) -> String {
    text.hasSuffix(".") ? text : text + "."
}

/// A Markdown table: `rows[0]` is the header; `|` in a cell is escaped.
func markdownTable(_ rows: [[String]], rightAligned: Set<Int>) -> String {
    guard let header = rows.first else { return "" }
    let escape = { (cell: String) in cell.replacingOccurrences(of: "|", with: "\\|") }
    var lines = ["| " + header.map(escape).joined(separator: " | ") + " |"]
    lines.append("|" + header.indices.map { rightAligned.contains($0) ? "---:|" : "---|" }.joined())
    for row in rows.dropFirst() {
        lines.append("| " + row.map(escape).joined(separator: " | ") + " |")
    }
    return lines.joined(separator: "\n") + "\n"
}

private func htmlTable(_ rows: [[String]], numeric: Set<Int>) -> String {
    guard let header = rows.first else { return "" }
    var html = "<table>\n<tr>" + header.map { "<th>\(escapeXML($0))</th>" }.joined() + "</tr>\n"
    for row in rows.dropFirst() {
        html += "<tr>" + row.enumerated().map { index, cell in
            numeric.contains(index) ? "<td class=\"num\">\(escapeXML(cell))</td>" : "<td>\(escapeXML(cell))</td>"
        }.joined() + "</tr>\n"
    }
    return html + "</table>\n"
}

/// A CSV field, quoted when it holds a comma, quote or newline.
func csvField(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// A number in full precision (round-trips), "inf" for infinity.
private func csvNumber(_ value: Double) -> String {
    value.isFinite ? String(value) : (value > 0 ? "inf" : "-inf")
}
