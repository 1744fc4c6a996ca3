import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import KernelLab
import XCTest

/// The roofline report: suites, bounds, projections, and the files it
/// writes (JSON, CSV, SVG read back and checked against the data). Ceilings
/// come from a fixture, shapes are tiny, and nothing asserts a time.
final class RooflineTests: TemporaryDirectoryTestCase {
    /// Ceilings of an imaginary 1-thread machine; distinct ISA peaks so every
    /// compute roof gets its own line.
    static let fixtureCeilings = """
        {
          "machine": {"cpu_model": "Fixture CPU", "cpu_count": 1, "numa_nodes": 1,
                      "cache_bytes": {"l1": 32768, "l2": 1048576, "l3": 33554432},
                      "supported_isas": ["scalar", "avx2", "avx512"]},
          "ceilings": [
            {"threads": 1,
             "peak_gflops": {"scalar": 8, "avx2": 60, "avx512": 120},
             "exp_per_second": {"scalar": 0.5e9, "avx2": 5e9, "avx512": 10e9},
             "bandwidth_gbs": {"l1": {"read": 400, "copy": 350, "triad": 360},
                               "l2": {"read": 150, "copy": 110, "triad": 120},
                               "l3": {"read": 70, "copy": 55, "triad": 60},
                               "dram": {"read": 20, "copy": 15, "triad": 16}},
             "sgemm_gflops": 90}
          ]
        }
        """

    /// Two pairs (attention causal, the scan) and a single fused case.
    static let tinySuite = """
        {
          "name": "tiny", "description": "test shapes", "warmup": 0, "repeats": 1,
          "cases": [
            {"kernel": "attention", "impl": "both", "pass": "both", "batch": 1, "heads": 2, "seq": 64, "head_dim": 16, "causal": true},
            {"kernel": "attention", "impl": "fused", "pass": "forward", "batch": 1, "heads": 1, "seq": 32, "kv_seq": 48, "head_dim": 8,
             "label": "attn, odd"},
            {"kernel": "scan", "impl": "both", "pass": "both", "batch": 1, "channels": 32, "seq": 64, "state": 4, "repeats": 2}
          ]
        }
        """

    private static var profiles: URL { packageProfiles }

    /// The ISA the report is drawn for: the fixture's widest, whatever the
    /// host runs, so the ridge, the bounds and the chart's roofs are the same
    /// on scalar-only, AVX2 and AVX-512 hosts (the kernels still run the
    /// host's path; the tests assert no time).
    static let fixtureISA = ISA.avx512

    private func fixtureTable() throws -> RooflineCeilingTable {
        let path = directory.appendingPathComponent("ceilings.json").path
        try Data(Self.fixtureCeilings.utf8).write(to: URL(fileURLWithPath: path))
        return try RooflineCeilingTable(contentsOf: path)
    }

    private func devices() throws -> [AcceleratorProfile] {
        try AcceleratorProfile.loadAll(directory: Self.profiles.appendingPathComponent("devices").path)
    }

    /// Runs the tiny suite on one thread and writes the report.
    private func makeReport() throws -> (RooflineReport, [String]) {
        let suite = try RooflineSuite(json: Data(Self.tinySuite.utf8), name: "tiny")
        let measurements = try RooflineRunner(threads: 1).measure(suite)
        let report = try RooflineReport(suite: suite, measurements: measurements, ceilings: try fixtureTable(),
                                        threads: 1, isa: Self.fixtureISA, devices: try devices())
        let written = try report.write(to: directory.appendingPathComponent("out").path)
        return (report, written)
    }

    // MARK: - report files

    func testWritesEveryFileWhole() throws {
        let (report, written) = try makeReport()
        XCTAssertEqual(written.map { ($0 as NSString).lastPathComponent }, RooflineReport.fileNames)
        let out = directory.appendingPathComponent("out").path
        // Only the five files: no temporary file is left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), RooflineReport.fileNames.sorted())
        // 2 passes x 2 impls for each pair, plus the single fused forward.
        XCTAssertEqual(report.points.count, 9)
        XCTAssertEqual(report.pairs.count, 4)

        let html = try String(contentsOfFile: out + "/roofline.html", encoding: .utf8)
        XCTAssertTrue(html.contains("<svg"), "the chart is inline")
        XCTAssertFalse(html.contains("<script"), "no scripts")
        XCTAssertFalse(html.contains("src=\"http"), "no external resources")
        XCTAssertTrue(html.contains("Machine profile") && html.contains("Method notes"))
        XCTAssertTrue(html.contains("model, not measurement"))
        let markdown = try String(contentsOfFile: out + "/roofline.md", encoding: .utf8)
        XCTAssertTrue(markdown.contains("## Summary") && markdown.contains("| id |"))
        XCTAssertTrue(markdown.contains("L3 bandwidth × flops / l3_bytes"), "the method names the hierarchical bound")
        XCTAssertTrue(markdown.contains("| L3 MB | L2 MB |"), "the points table has the per-level bytes")
    }

    func testJSONPointsCarryCostBoundAndProjections() throws {
        let (report, _) = try makeReport()
        let data = try Data(contentsOf: directory.appendingPathComponent("out/roofline.json"))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        for key in ["machine", "ceilings", "points", "pairs", "roofs", "devices", "summary", "notes"] {
            XCTAssertNotNil(object[key], "missing \(key)")
        }
        let machine = try XCTUnwrap(object["machine"] as? [String: Any])
        XCTAssertEqual(machine["cpu_model"] as? String, "Fixture CPU")
        let ceilings = try XCTUnwrap(object["ceilings"] as? [String: Any])
        XCTAssertEqual((ceilings["peak_gflops"] as? [String: Double])?["avx512"], 120)

        let points = try XCTUnwrap(object["points"] as? [[String: Any]])
        XCTAssertEqual(points.count, report.points.count)
        let fixture = try fixtureTable().ceilings[0]
        let isa = Self.fixtureISA
        let boundNames: Set<String> = ["compute", "exp", "l1", "l2", "l3", "dram"]
        for point in points {
            for key in ["kernel", "impl", "pass", "batch", "seq", "flops", "dram_bytes", "l3_bytes", "l2_bytes", "intensity",
                        "l3_intensity", "l2_intensity", "median_seconds", "gflops", "bound", "bound_gflops",
                        "memory_roof_level", "memory_roofs_gflops", "fraction_of_bound", "projections"] {
                XCTAssertNotNil(point[key], "point lacks \(key)")
            }
            let flops = try XCTUnwrap(point["flops"] as? Double)
            let dramBytes = try XCTUnwrap(point["dram_bytes"] as? Double)
            let exps = try XCTUnwrap(point["exps"] as? Double)
            let intensity = try XCTUnwrap(point["intensity"] as? Double)
            let gflops = try XCTUnwrap(point["gflops"] as? Double)
            let median = try XCTUnwrap(point["median_seconds"] as? Double)
            XCTAssertEqual(intensity, flops / dramBytes, accuracy: intensity * 1e-12)
            // Tiny shapes fit in a cache, which the point says.
            XCTAssertEqual(point["footprint_bytes"] as? Double,
                           (point["min_bytes"] as? Double ?? 0) + Double(point["workspace_bytes"] as? Int ?? -1))
            XCTAssertTrue(["l1", "l2"].contains(point["footprint_level"] as? String), "\(point["footprint_level"] ?? "nil")")
            XCTAssertEqual(gflops, flops / median / 1e9, accuracy: gflops * 1e-12)

            // The bound is the lowest roof, and named after it.
            let compute = try XCTUnwrap(fixture.peakGflops(isa))
            let exp = try XCTUnwrap(fixture.expPerSecond(isa)) * flops / exps / 1e9
            // Hierarchical: each level's fastest kernel (read in the fixture) times that level's intensity.
            let l3Bytes = try XCTUnwrap(point["l3_bytes"] as? Double), l2Bytes = try XCTUnwrap(point["l2_bytes"] as? Double)
            XCTAssertEqual(try XCTUnwrap(point["l3_intensity"] as? Double), flops / l3Bytes, accuracy: flops / l3Bytes * 1e-12)
            XCTAssertEqual(try XCTUnwrap(point["l2_intensity"] as? Double), flops / l2Bytes, accuracy: flops / l2Bytes * 1e-12)
            XCTAssertGreaterThanOrEqual(l2Bytes, l3Bytes)
            XCTAssertGreaterThanOrEqual(l3Bytes, dramBytes)
            let memory = [("dram", 20 * intensity), ("l3", 70 * flops / l3Bytes), ("l2", 150 * flops / l2Bytes)]
            let lowestMemory = memory.filter { $0.0 != "l2" }.min { $0.1 < $1.1 }!  // L2 reported, never binding
            XCTAssertEqual(point["memory_roof_level"] as? String, lowestMemory.0)
            let roofs = try XCTUnwrap(point["memory_roofs_gflops"] as? [String: Double])
            XCTAssertEqual(Set(roofs.keys), ["l2", "l3", "dram"])
            for (level, value) in memory { XCTAssertEqual(try XCTUnwrap(roofs[level]), value, accuracy: value * 1e-12, level) }
            let expected = [("compute", compute), ("exp", exp), lowestMemory].min { $0.1 < $1.1 }!
            let bound = try XCTUnwrap(point["bound"] as? String)
            let boundGflops = try XCTUnwrap(point["bound_gflops"] as? Double)
            XCTAssertTrue(boundNames.contains(bound))
            XCTAssertEqual(bound, expected.0)
            XCTAssertEqual(boundGflops, expected.1, accuracy: expected.1 * 1e-12)
            let fraction = try XCTUnwrap(point["fraction_of_bound"] as? Double)
            XCTAssertEqual(fraction, gflops / boundGflops, accuracy: fraction * 1e-12)

            // Projections: min(peak, bandwidth x intensity) per device.
            let projections = try XCTUnwrap(point["projections"] as? [String: [String: Any]])
            XCTAssertEqual(Set(projections.keys), ["nvidia-a100-sxm4-80gb", "nvidia-h100-sxm5-80gb"])
            let a100 = try XCTUnwrap(projections["nvidia-a100-sxm4-80gb"])
            let attainable = try XCTUnwrap(a100["attainable_gflops"] as? Double)
            XCTAssertEqual(attainable, min(19_500, 2039 * intensity), accuracy: attainable * 1e-12)
            XCTAssertEqual(a100["bound"] as? String, 2039 * intensity < 19_500 ? "bandwidth" : "compute")
            XCTAssertEqual(a100["basis"] as? String, "model, not measurement")
        }

        // FLOPs and bytes are the C cost models'.
        let attention = try XCTUnwrap(report.points.first { $0.kernel == .attention && $0.pass == .backward && $0.impl == .unfused })
        let cost = try Attention.cost(shape: try AttentionShape(batch: 1, heads: 2, queryLength: 64, keyLength: 64, headDim: 16),
                                      options: AttentionOptions(causal: true), impl: .unfused, pass: .backward)
        XCTAssertEqual(attention.flops, cost.flops)
        XCTAssertEqual(attention.dramBytes, cost.dramBytes)
        XCTAssertEqual(attention.l3Bytes, cost.l3Bytes)
        XCTAssertEqual(attention.l2Bytes, cost.l2Bytes)
        let scan = try XCTUnwrap(report.points.first { $0.kernel == .scan && $0.pass == .forward && $0.impl == .fused })
        let scanCost = try Scan.cost(shape: try ScanShape(batch: 1, channels: 32, seqLen: 64, state: 4), impl: .fused, pass: .forward)
        XCTAssertEqual(scan.flops, scanCost.flops)
        XCTAssertEqual(scan.exps, scanCost.exps)
        XCTAssertEqual(scan.repeats, 2, "a case's repeats override the suite's")

        // The pairs' speedups are the medians' ratio.
        for pair in report.pairs {
            let unfused = try XCTUnwrap(report.points.first { $0.id == pair.unfused })
            let fused = try XCTUnwrap(report.points.first { $0.id == pair.fused })
            XCTAssertEqual(unfused.impl, .unfused)
            XCTAssertEqual(fused.impl, .fused)
            XCTAssertEqual(pair.speedup, unfused.medianSeconds / fused.medianSeconds, accuracy: 1e-12)
        }

        // The JSON decodes back to the same report.
        XCTAssertEqual(try RooflineReport(contentsOf: directory.appendingPathComponent("out/roofline.json").path), report)
    }

    func testSummaryHasRidgeSpeedupsAndBounds() throws {
        let (report, _) = try makeReport()
        let lines = report.summaryLines()
        XCTAssertEqual(lines.count, 5)
        XCTAssertTrue(lines[0].hasPrefix("ridge point 6.00 FLOP/byte"), lines[0])  // 120 GFLOP/s over 20 GB/s
        XCTAssertTrue(lines[1].hasPrefix("attention: fused over unfused forward"), lines[1])
        XCTAssertTrue(lines[2].hasPrefix("scan: fused over unfused forward"), lines[2])
        XCTAssertTrue(lines[3].hasPrefix("attention bounds: fused "), lines[3])
        XCTAssertTrue(lines[4].hasPrefix("scan bounds: fused "), lines[4])
        XCTAssertEqual(report.summaryText(), lines.joined(separator: "\n"))
    }

    func testCSVHeaderAndRows() throws {
        let (report, _) = try makeReport()
        let csv = try String(contentsOf: directory.appendingPathComponent("out/roofline.csv"), encoding: .utf8)
        let lines = csv.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        XCTAssertEqual(lines.first, [
            "id", "kernel", "impl", "pass", "label", "batch", "heads", "seq", "kv_seq", "head_dim", "causal",
            "channels", "state", "groups", "threads", "isa", "repeats", "median_seconds", "flops", "min_bytes",
            "dram_bytes", "l3_bytes", "l2_bytes", "exps", "intensity", "l3_intensity", "l2_intensity", "gflops",
            "memory_roof_level", "bound", "bound_gflops", "fraction_of_bound",
            "workspace_bytes", "footprint_bytes", "footprint_level", "nvidia-a100-sxm4-80gb_fp32_attainable_gflops", "nvidia-a100-sxm4-80gb_fp32_bound",
            "nvidia-h100-sxm5-80gb_fp32_attainable_gflops", "nvidia-h100-sxm5-80gb_fp32_bound",
        ].joined(separator: ","))
        XCTAssertEqual(lines.count, report.points.count + 1)
        // The label with a comma is quoted, so every row has the header's column count.
        XCTAssertTrue(csv.contains("\"attn, odd\""))
        for line in lines.dropFirst() where !line.contains("\"") {
            XCTAssertEqual(line.split(separator: ",", omittingEmptySubsequences: false).count, 39, line)
        }
    }

    // MARK: - the chart

    func testChartHasRoofsPointsAndArrowsWhereTheDataSays() throws {
        let (report, _) = try makeReport()
        let svg = try SVGElements(contentsOf: directory.appendingPathComponent("out/roofline.svg"))

        // Decade ticks give the pixel mapping; everything else must follow it.
        let xTicks = svg.all("text", class: "tick-x").map { (value: Double($0["data-value"]!)!, px: Double($0["x"]!)!) }
        let yTicks = svg.all("text", class: "tick-y").map { (value: Double($0["data-value"]!)!, px: Double($0["y"]!)! - 4.5) }
        XCTAssertGreaterThanOrEqual(xTicks.count, 3)
        XCTAssertGreaterThanOrEqual(yTicks.count, 3)
        func mapping(_ ticks: [(value: Double, px: Double)]) -> (Double) -> Double {
            let (a, b) = (ticks.first!, ticks.last!)
            let slope = (b.px - a.px) / (log10(b.value) - log10(a.value))
            return { a.px + (log10($0) - log10(a.value)) * slope }
        }
        let x = mapping(xTicks), y = mapping(yTicks)
        for tick in xTicks { XCTAssertEqual(x(tick.value), tick.px, accuracy: 0.02, "x ticks are a decade apart each") }

        // Compute roofs: one per ISA, horizontal at the peak.
        let computeRoofs = svg.all("line", class: "roof-compute")
        XCTAssertEqual(Set(computeRoofs.map { $0["data-isa"]! }), ["scalar", "avx2", "avx512"], "the fixture's ISAs")
        for roof in computeRoofs {
            let gflops = Double(roof["data-gflops"]!)!
            XCTAssertEqual(Double(roof["y1"]!)!, y(gflops), accuracy: 0.05)
            XCTAssertEqual(Double(roof["y1"]!)!, Double(roof["y2"]!)!)
        }
        // Memory roofs: one per level, on y = bandwidth * x, ending at the ridge with the peak.
        let memoryRoofs = svg.all("line", class: "roof-memory")
        XCTAssertEqual(Set(memoryRoofs.map { $0["data-level"]! }), ["l1", "l2", "l3", "dram"])
        let peak = report.roofs.peakGflops
        for roof in memoryRoofs {
            let gbs = Double(roof["data-gbs"]!)!
            let (x1, y1, x2, y2) = (Double(roof["x1"]!)!, Double(roof["y1"]!)!, Double(roof["x2"]!)!, Double(roof["y2"]!)!)
            // Back from pixels to data: y / x must be the bandwidth at both ends.
            func inverse(_ px: Double, _ ticks: [(value: Double, px: Double)]) -> Double {
                let (a, b) = (ticks.first!, ticks.last!)
                return pow(10, log10(a.value) + (px - a.px) / (b.px - a.px) * (log10(b.value) - log10(a.value)))
            }
            XCTAssertEqual(inverse(y1, yTicks) / inverse(x1, xTicks), gbs, accuracy: gbs * 1e-3)
            XCTAssertEqual(inverse(y2, yTicks) / inverse(x2, xTicks), gbs, accuracy: gbs * 1e-3)
            XCTAssertEqual(inverse(x2, xTicks), peak / gbs, accuracy: peak / gbs * 1e-3, "ends at the ridge")
        }
        XCTAssertEqual(svg.all("text", class: "roof-label-memory").count, 4, "every memory roof is labelled")
        XCTAssertEqual(svg.all("text", class: "roof-label-compute").count, computeRoofs.count, "every compute roof is labelled")
        let dramLabel = try XCTUnwrap(svg.all("text", class: "roof-label-memory").first { $0["data-level"] == "dram" })
        XCTAssertEqual(dramLabel.text, "DRAM 20.0 GB/s")

        // Points: one group per point with a marker where the data says, and a label.
        let groups = svg.all("g", class: "point")
        XCTAssertEqual(groups.count, report.points.count)
        let labels = svg.all("text", class: "point-label")
        var centers: [String: (x: Double, y: Double)] = [:]
        for group in groups {
            let id = group["id"]!
            let point = try XCTUnwrap(report.points.first { $0.id == id })
            let marker = try XCTUnwrap(svg.children(of: group).first { $0.name == "circle" || $0.name == "rect" })
            let center = marker.name == "circle"
                ? (x: Double(marker["cx"]!)!, y: Double(marker["cy"]!)!)
                : (x: Double(marker["x"]!)! + Double(marker["width"]!)! / 2, y: Double(marker["y"]!)! + Double(marker["height"]!)! / 2)
            XCTAssertEqual(marker.name, point.kernel == .attention ? "circle" : "rect")
            XCTAssertEqual(center.x, x(point.intensity), accuracy: 0.05, "\(id) x")
            XCTAssertEqual(center.y, y(point.gflops), accuracy: 0.05, "\(id) y")
            XCTAssertEqual(group["data-bound"], point.bound.rawValue)
            centers[id] = center
            let label = try XCTUnwrap(labels.first { $0["data-point"] == id }, "\(id) has no label")
            XCTAssertFalse(label.text.isEmpty)
            XCTAssertEqual(group["data-label"], point.label)
        }
        // x is monotone in intensity, y in GFLOP/s.
        let byIntensity = report.points.sorted { $0.intensity < $1.intensity }
        for (a, b) in zip(byIntensity, byIntensity.dropFirst()) where b.intensity > a.intensity * (1 + 1e-9) {
            XCTAssertLessThan(centers[a.id]!.x, centers[b.id]!.x)
        }
        let byGflops = report.points.sorted { $0.gflops < $1.gflops }
        for (a, b) in zip(byGflops, byGflops.dropFirst()) where b.gflops > a.gflops * (1 + 1e-9) {
            XCTAssertGreaterThan(centers[a.id]!.y, centers[b.id]!.y)
        }

        // Arrows: one per pair, from near the unfused point towards its fused twin.
        let arrows = svg.all("line", class: "arrow")
        XCTAssertEqual(arrows.count, report.pairs.count)
        for arrow in arrows {
            let from = try XCTUnwrap(centers[arrow["data-from"]!]), to = try XCTUnwrap(centers[arrow["data-to"]!])
            XCTAssertEqual(report.points.first { $0.id == arrow["data-from"] }?.impl, .unfused)
            XCTAssertEqual(report.points.first { $0.id == arrow["data-to"] }?.impl, .fused)
            let (x1, y1, x2, y2) = (Double(arrow["x1"]!)!, Double(arrow["y1"]!)!, Double(arrow["x2"]!)!, Double(arrow["y2"]!)!)
            XCTAssertLessThanOrEqual(hypot(x1 - from.x, y1 - from.y), 10)
            XCTAssertLessThanOrEqual(hypot(x2 - to.x, y2 - to.y), 10)
            if hypot(to.x - from.x, to.y - from.y) > 30 {
                // Pointing from unfused to fused.
                XCTAssertGreaterThan((x2 - x1) * (to.x - from.x) + (y2 - y1) * (to.y - from.y), 0)
                XCTAssertEqual(arrow["marker-end"], "url(#arrowhead)")
            }
        }
        XCTAssertFalse(svg.all("g", class: "legend").isEmpty)
    }

    /// Labels that cannot be placed apart become case codes with a key.
    func testCrowdedChartFallsBackToCaseCodes() throws {
        // Thirty copies of one shape land on (nearly) one spot: more labels
        // than there are places around it.
        let cases = (1...30).map { index in
            #"{"kernel": "attention", "impl": "fused", "batch": 1, "heads": 1, "seq": 16, "head_dim": 8, "label": "copy \#(index)"}"#
        }
        let suite = try RooflineSuite(json: Data(#"{"warmup": 0, "repeats": 1, "cases": [\#(cases.joined(separator: ","))]}"#.utf8),
                                      name: "crowd")
        let report = try RooflineReport(suite: suite, measurements: try RooflineRunner(threads: 1).measure(suite),
                                        ceilings: try fixtureTable(), threads: 1, isa: Self.fixtureISA)
        let path = directory.appendingPathComponent("crowd.svg")
        try Data(RooflineChart(report: report).svg().utf8).write(to: path)
        let svg = try SVGElements(contentsOf: path)
        let labels = svg.all("text", class: "point-label")
        XCTAssertEqual(labels.count, 30)
        XCTAssertEqual(Set(labels.map(\.text)), Set((1...30).map { "A\($0)" }))
        let key = svg.all("text", class: "case-key-entry").map(\.text)
        XCTAssertEqual(key, (1...30).map { "A\($0) = copy \($0)" })
    }

    // MARK: - bounds and projections

    func testBoundNamesTheLowestRoof() throws {
        let ceilings = RooflineCeilings(
            threads: 1, peakGflops: [.avx512: 100], expPerSecond: [.avx512: 10e9],
            bandwidthGBs: [.l2: [.read: 200], .l3: [.read: 50], .dram: [.read: 20, .triad: 25, .copy: 10]])
        func bound(flops: Double, l2: Double, l3: Double, dram: Double, exps: Double = 0) throws -> RooflineBound {
            try RooflineBound(flops: flops, bytes: [.l2: l2, .l3: l3, .dram: dram], exps: exps, isa: .avx512, ceilings: ceilings)
        }
        // DRAM: the fastest DRAM kernel (triad, 25 GB/s) at 1 FLOP/B; L3 and L2 at the same bytes are higher.
        var b = try bound(flops: 1e9, l2: 1e9, l3: 1e9, dram: 1e9)
        XCTAssertEqual(b.kind, .dram)
        XCTAssertEqual(b.gflops, 25)
        XCTAssertEqual(b.memoryLevel, .dram)
        XCTAssertEqual(b.memoryRoofsGflops, ["l2": 200, "l3": 50, "dram": 25])
        XCTAssertNil(b.expGflops)
        // L3 binds when its traffic is more than 50/25 times DRAM's.
        b = try bound(flops: 1e9, l2: 1e9, l3: 4e9, dram: 1e9)
        XCTAssertEqual(b.kind, .l3)
        XCTAssertEqual(b.gflops, 50.0 / 4, accuracy: 1e-12)
        // The L2 roof is computed but never binds (its byte model is a rough estimate):
        // 200 GB/s over 10x the traffic is the lowest roof, yet DRAM is named.
        b = try bound(flops: 1e9, l2: 10e9, l3: 1e9, dram: 1e9)
        XCTAssertEqual(b.kind, .dram)
        XCTAssertEqual(b.gflops, 25, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(b.memoryRoofsGflops["l2"]), 20, accuracy: 1e-12)
        // Equal roofs: the slower level is named.
        b = try bound(flops: 1e9, l2: 1e9, l3: 2e9, dram: 1e9)
        XCTAssertEqual(b.memoryLevel, .dram)
        // Compute at high intensity at every level.
        b = try bound(flops: 1e12, l2: 1e9, l3: 1e9, dram: 1e9, exps: 1e9)
        XCTAssertEqual(b.kind, .compute)
        XCTAssertEqual(b.gflops, 100)
        XCTAssertEqual(try XCTUnwrap(b.expGflops), 10e9 * 1000 / 1e9)
        // ... and a heavy L2 stream is reported, not binding; a heavy L3 stream binds.
        b = try bound(flops: 1e12, l2: 4e12, l3: 1e9, dram: 1e9, exps: 1e9)
        XCTAssertEqual(b.kind, .compute)
        XCTAssertEqual(try XCTUnwrap(b.memoryRoofsGflops["l2"]), 50, accuracy: 1e-9)
        b = try bound(flops: 1e12, l2: 1e9, l3: 1e12, dram: 1e9, exps: 1e9)
        XCTAssertEqual(b.kind, .l3)
        XCTAssertEqual(b.gflops, 50, accuracy: 1e-9)
        // exp when there are few FLOPs per exp: 10 Gexp/s x 5 FLOP/exp = 50 GFLOP/s-eq.
        b = try bound(flops: 5e11, l2: 1e9, l3: 1e9, dram: 1e9, exps: 1e11)
        XCTAssertEqual(b.kind, .exp)
        XCTAssertEqual(b.gflops, 50, accuracy: 1e-9)
        // A level without a measured bandwidth is left out; from a cost, every level's own bytes are used.
        let dramOnly = RooflineCeilings(threads: 1, peakGflops: [.avx512: 100], expPerSecond: [:],
                                        bandwidthGBs: [.dram: [.read: 20]])
        let cost = KernelCost(flops: 1e9, minBytes: 1e8, dramBytes: 1e9, l3Bytes: 1e12, l2Bytes: 1e12, exps: 0)
        b = try RooflineBound(cost: cost, isa: .avx512, ceilings: dramOnly)
        XCTAssertEqual(b.kind, .dram)
        XCTAssertEqual(b.memoryRoofsGflops, ["dram": 20])
        b = try RooflineBound(cost: cost, isa: .avx512, ceilings: ceilings)
        XCTAssertEqual(b.kind, .l3)
        XCTAssertEqual(b.gflops, 50 * 1e9 / 1e12, accuracy: 1e-12)
        // A missing ceiling is an error naming the ceilings.
        XCTAssertThrows(.invalidArgument(argument: "ceilings", reason: "no peak GFLOP/s for ISA avx2 at 1 thread(s)"),
                        try RooflineBound(cost: cost, isa: .avx2, ceilings: ceilings))
        let noDRAM = RooflineCeilings(threads: 1, peakGflops: [.avx512: 100], expPerSecond: [:], bandwidthGBs: [.l3: [.read: 50]])
        XCTAssertThrows(.invalidArgument(argument: "ceilings", reason: "no DRAM bandwidth at 1 thread(s)"),
                        try RooflineBound(cost: cost, isa: .avx512, ceilings: noDRAM))
    }

    func testA100ProjectionAtOneFlopPerByteIsBandwidthBound() throws {
        let a100 = try AcceleratorProfile(contentsOf: Self.profiles.appendingPathComponent("devices/nvidia-a100-sxm4-80gb.json").path)
        let low = a100.project(intensity: 1)
        for precision in AcceleratorProfile.precisions {
            let roof = try XCTUnwrap(low.byPrecision[precision])
            XCTAssertEqual(roof.bound, .bandwidth, precision)
            XCTAssertEqual(roof.attainableGflops, 2039, accuracy: 1e-9, precision)
        }
        XCTAssertEqual(try XCTUnwrap(low.fp32).ridgeFlopPerByte, 19_500.0 / 2039, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(low.fp32).ridgeFlopPerByte, 9.56, accuracy: 0.01)
        // At 100 FLOP/B: fp32 and TF32 are compute-bound, FP16 tensor still bandwidth-bound.
        let high = a100.project(intensity: 100)
        XCTAssertEqual(high.byPrecision["fp32"]?.bound, .compute)
        XCTAssertEqual(try XCTUnwrap(high.byPrecision["fp32"]).attainableGflops, 19_500, accuracy: 1e-9)
        XCTAssertEqual(high.byPrecision["tf32_tensor"]?.bound, .compute)
        XCTAssertEqual(high.byPrecision["fp16_tensor"]?.bound, .bandwidth)
        XCTAssertEqual(try XCTUnwrap(high.byPrecision["fp16_tensor"]).attainableGflops, 203_900, accuracy: 1e-6)
    }

    func testMissingThreadCountIsAnError() throws {
        let suite = try RooflineSuite(json: Data(Self.tinySuite.utf8), name: "tiny")
        XCTAssertThrows(
            .invalidArgument(argument: "threads",
                             reason: "the ceilings have no measurements for 2 thread(s) (measured: 1); measure them with `kernel-lab ceilings --threads 2`"),
            try RooflineReport(suite: suite, measurements: [], ceilings: try fixtureTable(), threads: 2, isa: .avx512))
    }

    /// The machine profile of `kernel-lab ceilings` drives the report
    /// directly (measured here with a deterministic fake, so nothing is timed).
    func testMachineProfileIsACeilingSource() throws {
        let system = try SystemInfo.current()
        let profile = try CeilingsMeasurement(settings: .quick(maxThreads: 1), system: system)
            .run(measurer: FakeCeilingMeasurer())
        XCTAssertEqual(profile.rooflineThreadCounts, [1])
        XCTAssertEqual(profile.rooflineMachine.cpuModel, system.cpuModel)
        let ceilings = try profile.requireCeilings(threads: 1)
        XCTAssertEqual(try XCTUnwrap(ceilings.peakGflops(system.activeISA)), 50, accuracy: 0.01)
        XCTAssertEqual(try XCTUnwrap(ceilings.expPerSecond(system.activeISA)), 5e9, accuracy: 5e6)
        XCTAssertEqual(try XCTUnwrap(ceilings.memoryRoof(.dram)).gbs, 20, accuracy: 0.01)
        XCTAssertNotNil(ceilings.sgemmGflops)
        XCTAssertNil(profile.rooflineCeilings(threads: 2))

        // Saved and read back through --ceilings' loader.
        let path = directory.appendingPathComponent("profile.json").path
        try profile.save(path: path)
        let loaded = try loadRooflineCeilings(path: path)
        XCTAssertEqual(loaded.rooflineCeilings(threads: 1), ceilings)
    }

    // MARK: - the executable

    /// A suite of layer kernels: `roofline` places them as points of their
    /// own (op, rows, dim in the JSON and the CSV's op column, diamonds on the
    /// chart) and `bench --floors` gates AdamW's fused/unfused speedup.
    func testExecutableLayerSuiteOnTheRooflineAndInBench() throws {
        let suite = directory.appendingPathComponent("layers.json").path
        try Data("""
            {"warmup": 0, "repeats": 1, "cases": [
              {"kernel": "layer", "op": "rms_norm", "pass": "both", "rows": 8, "dim": 40},
              {"kernel": "layer", "op": "cross_entropy", "rows": 5, "dim": 32},
              {"kernel": "layer", "op": "adamw", "rows": 4, "dim": 64, "min_speedup": {"scalar": 0.01, "avx2": 0.01, "avx512": 0.01}}]}
            """.utf8).write(to: URL(fileURLWithPath: suite))
        let ceilings = directory.appendingPathComponent("ceilings.json").path
        try Data(Self.fixtureCeilings.utf8).write(to: URL(fileURLWithPath: ceilings))
        let out = directory.appendingPathComponent("layers").path
        let run = try launchKernelLab(["roofline", "--suite", suite, "--ceilings", ceilings, "--threads", "1", "--out", out, "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        let points = try XCTUnwrap(object["points"] as? [[String: Any]])
        XCTAssertEqual(points.map { $0["op"] as? String }, ["rms_norm", "rms_norm", "cross_entropy", "adamw", "adamw"])
        XCTAssertEqual(points.map { $0["kernel"] as? String }, Array(repeating: "layer", count: 5))
        XCTAssertEqual(points.map { $0["seq"] as? Int }, [8, 8, 5, 4, 4])
        XCTAssertEqual(points.map { $0["channels"] as? Int }, [40, 40, 32, 64, 64])
        // Which roof binds depends on the fixture's roofs for the host's ISA (a scalar host is compute-bound here).
        XCTAssertTrue(points.allSatisfy { ["compute", "exp", "l3", "dram"].contains($0["bound"] as? String ?? "") })
        let csv = try String(contentsOfFile: out + "/roofline.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertTrue(csv[0].hasSuffix(",op"), String(csv[0]))
        XCTAssertTrue(csv[3].hasSuffix(",cross_entropy"), String(csv[3]))
        let svg = try String(contentsOfFile: out + "/roofline.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("data-kernel=\"layer\"") && svg.contains("<polygon"), "layer points are diamonds")

        let bench = try launchKernelLab(["bench", "--suite", suite, "--threads", "1", "--floors", "--repeats", "8"])
        XCTAssertEqual(bench.status, 0, bench.stderr + bench.stdout)
        XCTAssertTrue(bench.stdout.contains("adamw 4x64 forward fused") && bench.stdout.contains("fused/unfused"), bench.stdout)
        XCTAssertFalse(bench.stdout.contains("vector/scalar"), "no layer case here states a vector-gain floor")
    }

    /// `kernel-lab roofline --json` prints only the report; bad input fails
    /// before anything is timed, naming what is wrong.
    func testExecutableJSONIsCleanAndErrorsAreNamed() throws {
        let suite = directory.appendingPathComponent("tiny.json").path
        try Data(Self.tinySuite.utf8).write(to: URL(fileURLWithPath: suite))
        let ceilings = directory.appendingPathComponent("ceilings.json").path
        try Data(Self.fixtureCeilings.utf8).write(to: URL(fileURLWithPath: ceilings))
        let out = directory.appendingPathComponent("cli").path
        let devices = Self.profiles.appendingPathComponent("devices").path
        let run = try launchKernelLab(["roofline", "--suite", suite, "--ceilings", ceilings, "--threads", "1",
                                       "--out", out, "--devices", devices, "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stderr, "", "no progress when stderr is not a terminal")
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((object["points"] as? [Any])?.count, 9)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), RooflineReport.fileNames.sorted())

        // --from rewrites the documents from the JSON and prints the summary.
        let again = try launchKernelLab(["roofline", "--from", out + "/roofline.json", "--out", out + "2"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let lines = again.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 6, again.stdout)
        XCTAssertTrue(lines.first?.hasPrefix("wrote ") == true, again.stdout)
        XCTAssertTrue(lines.dropFirst().first?.hasPrefix("ridge point ") == true, again.stdout)

        let missing = try launchKernelLab(["roofline", "--suite", directory.appendingPathComponent("nope.json").path,
                                           "--ceilings", ceilings, "--threads", "1", "--out", out])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("nope.json") && missing.stderr.contains("no such suite"), missing.stderr)
        let threads = try launchKernelLab(["roofline", "--suite", suite, "--ceilings", ceilings, "--threads", "2",
                                           "--out", out, "--devices", devices])
        XCTAssertNotEqual(threads.status, 0)
        XCTAssertTrue(threads.stderr.contains("no measurements for 2 thread(s)"), threads.stderr)
    }

    // MARK: - suites

    func testShippedSuitesLoad() throws {
        let directory = Self.profiles.appendingPathComponent("suites").path
        for name in ["smoke", "default", "full"] {
            let suite = try RooflineSuite.load(name, directory: directory)
            XCTAssertEqual(suite.name, name)
            XCTAssertEqual(Set(suite.cases.map(\.shape.kernel)), [.attention, .scan], name)
            XCTAssertTrue(suite.cases.allSatisfy { $0.impls == [.unfused, .fused] && $0.passes == [.forward, .backward] }, name)
            XCTAssertTrue(suite.cases.allSatisfy { $0.minVectorGain == BenchFloorCheck.defaultVectorGainFloor }, name)
        }
        // The layers suite: every op the issue's targets name, each pass it has, AdamW beside its twin.
        let layers = try RooflineSuite.load("layers", directory: directory)
        XCTAssertEqual(Set(layers.cases.map(\.shape.kernel)), [.layer])
        XCTAssertEqual(Set(layers.cases.compactMap(\.shape.layerOp)), Set(LayerShape.Op.allCases).subtracting([.softplus]))
        XCTAssertTrue(layers.cases.allSatisfy { $0.impls == $0.shape.impls && $0.passes == $0.shape.passes })
        let adamw = try XCTUnwrap(layers.cases.first { $0.shape.layerOp == .adamw })
        XCTAssertEqual(adamw.impls, [.unfused, .fused])
        XCTAssertNil(adamw.minVectorGain)
        XCTAssertFalse(adamw.minSpeedup.isEmpty)
        XCTAssertEqual(layers.cases.filter { $0.minVectorGain != nil }.compactMap(\.shape.layerOp),
                       [.silu, .geluTanh, .crossEntropy, .crossEntropy])
    }

    func testLayerCasesParseWithDefaultsFromTheirOp() throws {
        let suite = try RooflineSuite(json: Data("""
            [{"kernel": "layer", "op": "layer_norm", "pass": "both", "rows": 4, "dim": 8},
             {"kernel": "layer", "op": "cross_entropy", "rows": 3, "dim": 32, "min_vector_gain": 2},
             {"kernel": "layer", "op": "adamw", "rows": 2, "dim": 8}]
            """.utf8), name: "l")
        XCTAssertEqual(suite.cases.map(\.label), ["layer_norm 4x8", "cross_entropy V32 x3", "adamw 2x8"])
        XCTAssertEqual(suite.cases.map(\.impls), [[.fused], [.fused], [.unfused, .fused]])
        XCTAssertEqual(suite.cases.map(\.passes), [[.forward, .backward], [.forward], [.forward]])
        XCTAssertEqual(suite.cases.map(\.minVectorGain), [nil, 2, nil])
        XCTAssertEqual(suite.runs.map { "\($0.case.label) \($0.pass.rawValue) \($0.impl.rawValue)" },
                       ["layer_norm 4x8 forward fused", "layer_norm 4x8 backward fused", "cross_entropy V32 x3 forward fused",
                        "adamw 2x8 forward unfused", "adamw 2x8 forward fused"])
    }

    func testSuiteDefaultsAndRunOrder() throws {
        let suite = try RooflineSuite(json: Data("""
            [{"kernel": "scan", "batch": 1, "channels": 16, "seq": 8, "state": 2}]
            """.utf8), name: "bare")
        XCTAssertEqual(suite.name, "bare")
        XCTAssertEqual(suite.warmup, 1)
        XCTAssertEqual(suite.repeats, 3)
        let only = try XCTUnwrap(suite.cases.first)
        XCTAssertEqual(only.impls, [.unfused, .fused])
        XCTAssertEqual(only.passes, [.forward])
        XCTAssertEqual(only.label, "scan D16 L8 N2")
        XCTAssertEqual(suite.runs.map { "\($0.pass.rawValue)/\($0.impl.rawValue)" }, ["forward/unfused", "forward/fused"])
    }

    func testSuiteErrorsNameTheField() throws {
        func error(_ json: String) -> KernelLabError? {
            kernelLabError(try RooflineSuite(json: Data(json.utf8), name: "t", source: "t.json"))
        }
        let attention = #""batch": 1, "heads": 2, "seq": 8, "head_dim": 4"#
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attn", \#(attention)}]}"#),
                       .invalidArgument(argument: "cases[0].kernel", reason: "unknown kernel 'attn'; expected one of attention, scan, layer (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{\#(attention)}]}"#),
                       .invalidArgument(argument: "cases[0].kernel", reason: "is required: one of attention, scan, layer (in 't.json')"))
        // Layer kernels: the op, its size, and only the implementations and passes it has.
        XCTAssertEqual(error(#"{"cases": [{"kernel": "layer", "op": "swish", "rows": 2, "dim": 4}]}"#),
                       .invalidArgument(argument: "cases[0].op", reason: "unknown value 'swish'; expected one of silu, gelu_tanh, softplus, layer_norm, rms_norm, cross_entropy, sum_of_squares, adamw (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "layer", "op": "silu", "rows": 2}]}"#),
                       .invalidArgument(argument: "cases[0].dim", reason: "is required for this kernel (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "layer", "op": "silu", "impl": "both", "rows": 2, "dim": 4}]}"#),
                       .invalidArgument(argument: "cases[0].impl", reason: "layer silu has no unfused implementation (it has fused) (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "layer", "op": "cross_entropy", "pass": "both", "rows": 2, "dim": 4}]}"#),
                       .invalidArgument(argument: "cases[0].pass", reason: "layer cross_entropy has no backward pass (it has forward) (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "layer", "op": "silu", "rows": 2, "dim": 4, "min_vector_gain": 0}]}"#),
                       .invalidArgument(argument: "cases[0].min_vector_gain", reason: "must be a positive number (a speedup), got 0.0 (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "layer", "op": "silu", "rows": 2, "dim": 4, "min_speedup": {"avx2": 2}}]}"#),
                       .invalidArgument(argument: "cases[0].min_speedup", reason: "needs \"impl\": \"both\" (a speedup is the fused run over its unfused twin) (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "impl": "fast", \#(attention)}]}"#),
                       .invalidArgument(argument: "cases[0].impl", reason: "unknown implementation 'fast'; expected fused, unfused or both (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "pass": "sideways", \#(attention)}]}"#),
                       .invalidArgument(argument: "cases[0].pass", reason: "unknown pass 'sideways'; expected forward, backward or both (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "batch": 1, "seq": 8, "head_dim": 4}]}"#),
                       .invalidArgument(argument: "cases[0].heads", reason: "is required for this kernel (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "batch": 1, "heads": 2, "seq": 8, "head_dim": 0}]}"#),
                       .invalidArgument(argument: "cases[0].head_dim", reason: "must be at least 1, got 0 (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "batch": 1, "heads": 2, "seq": 8, "head_dim": 2000}]}"#),
                       .invalidArgument(argument: "cases[0].head_dim", reason: "must be at most 1024, got 2000 (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "batch": 1.5, "heads": 2, "seq": 8, "head_dim": 4}]}"#),
                       .invalidArgument(argument: "cases[0].batch", reason: "must be an integer, got 1.5 (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "causal": 1, \#(attention)}]}"#),
                       .invalidArgument(argument: "cases[0].causal", reason: "must be true or false, got a number (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "attention", "head_dims": 4, \#(attention)}]}"#),
                       .invalidArgument(argument: "cases[0].head_dims", reason: "unknown key (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "scan", "batch": 1, "channels": 10, "seq": 8, "state": 2, "groups": 3}]}"#),
                       .invalidArgument(argument: "cases[0].groups", reason: "must divide channels (10), got 3 (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "scan", "batch": 1, "channels": 16, "seq": 8, "state": 2, "level": "l3"}]}"#),
                       .invalidArgument(argument: "cases[0].level", reason: "is retired: every case is bounded by each memory level with its own modelled traffic (L3 and DRAM bytes); remove it (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": []}"#),
                       .invalidArgument(argument: "cases", reason: "must name at least one case (in 't.json')"))
        XCTAssertEqual(error(#"{"name": "x"}"#),
                       .invalidArgument(argument: "cases", reason: "is required: an array of cases (in 't.json')"))
        XCTAssertEqual(error(#"{"cases": [{"kernel": "scan", "batch": 1, "channels": 16, "seq": 8, "state": 2}], "repeat": 3}"#),
                       .invalidArgument(argument: "repeat", reason: "unknown key (in 't.json')"))
        XCTAssertEqual(error(#"{"repeats": 0, "cases": []}"#),
                       .invalidArgument(argument: "repeats", reason: "must be at least 1, got 0 (in 't.json')"))
        guard case .invalidArgument(let argument, let reason)? = error("{not json") else {
            return XCTFail("expected invalidArgument for bad JSON")
        }
        XCTAssertEqual(argument, "suite")
        XCTAssertTrue(reason.hasPrefix("'t.json' is not valid JSON"), reason)
    }

    func testMissingSuiteListsTheAvailableOnes() throws {
        let suites = directory.appendingPathComponent("suites")
        try FileManager.default.createDirectory(at: suites, withIntermediateDirectories: true)
        try Data("[]".utf8).write(to: suites.appendingPathComponent("a.json"))
        try Data("[]".utf8).write(to: suites.appendingPathComponent("b.json"))
        XCTAssertThrows(.io(path: suites.path + "/nope.json", reason: "no such suite; available in '\(suites.path)': a, b"),
                        try RooflineSuite.load("nope", directory: suites.path))
        XCTAssertEqual(RooflineSuite.path(for: "x/y.json"), "x/y.json")
        XCTAssertEqual(RooflineSuite.path(for: "smoke"), "Profiles/suites/smoke.json")
    }
}

// MARK: - Helpers

/// The elements of an SVG file, flat, with their attributes, text and parent
/// (internal: the peers' chart tests read it too).
struct SVGElements {
    struct Element {
        var name: String
        var attributes: [String: String]
        var text = ""
        var parent: Int?

        subscript(key: String) -> String? { attributes[key] }
        var classes: Set<String> { Set((attributes["class"] ?? "").split(separator: " ").map(String.init)) }
    }

    private(set) var elements: [Element] = []

    init(contentsOf url: URL) throws {
        let parser = XMLParser(data: try Data(contentsOf: url))
        let delegate = Delegate()
        parser.delegate = delegate
        guard parser.parse() else {
            throw KernelLabError.io(path: url.path, reason: "not well-formed XML: \(String(describing: parser.parserError))")
        }
        elements = delegate.elements
    }

    func all(_ name: String, class className: String) -> [Element] {
        elements.filter { $0.name == name && $0.classes.contains(className) }
    }

    func children(of element: Element) -> [Element] {
        guard let index = elements.firstIndex(where: { $0.name == element.name && $0.attributes == element.attributes }) else { return [] }
        return elements.filter { $0.parent == index }
    }

    private final class Delegate: NSObject, XMLParserDelegate {
        var elements: [Element] = []
        var stack: [Int] = []

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            elements.append(Element(name: name, attributes: attributes, parent: stack.last))
            stack.append(elements.count - 1)
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            stack.removeLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if let last = stack.last { elements[last].text += string }
        }
    }
}

/// Ceiling runs at fixed rates: 50 GFLOP/s, 5 Gexp/s and 20 GB/s per
/// thread, sgemm 40 GFLOP/s. Times follow from the amounts, so the
/// measurement's calibration converges without timing anything.
private final class FakeCeilingMeasurer: CeilingMeasurer {
    func flops(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun {
        let amount = Double(iterations) * 1024 * Double(threads)
        return CeilingRun(seconds: amount / (50e9 * Double(threads)), amount: amount)
    }

    func exp(isa: ISA, iterations: Int, threads: Int) throws -> CeilingRun {
        let amount = Double(iterations) * 4096 * Double(threads)
        return CeilingRun(seconds: amount / (5e9 * Double(threads)), amount: amount)
    }

    func bandwidth(isa: ISA, kernel: BandwidthKernel, bytesPerThread: Int, iterations: Int,
                   node: Int?, threads: Int) throws -> CeilingRun {
        let amount = Double(bytesPerThread) * Double(iterations) * Double(threads)
        return CeilingRun(seconds: amount / (20e9 * Double(threads)), amount: amount)
    }

    func streamTriadCheck(arrayBytes: Int, trials: Int, threads: Int) throws -> CeilingRun {
        let amount = 3 * Double(arrayBytes)
        return CeilingRun(seconds: amount / 20e9, amount: amount)
    }

    func sgemmGflops(n: Int, threads: Int, repeats: Int) throws -> Double {
        40
    }
}
