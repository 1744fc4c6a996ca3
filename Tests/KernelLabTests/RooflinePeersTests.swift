import Foundation
import KernelLab
import XCTest

/// Peers on the roofline (`kernel-lab roofline --peers`, fed by `make
/// compare`): the strict reader of the peers file, the peers' FLOPs, bytes
/// and bounds from the lab's models, and their points on the chart and in
/// the tables. Times in the fixtures are made up; nothing asserts a time.
final class RooflinePeersTests: TemporaryDirectoryTestCase {
    /// The tiny suite's attention case (label "attn L64 d16 B1H2 causal") and
    /// its scan case, as compare.py writes them.
    static let attentionShape = #""batch": 1, "heads": 2, "seq": 64, "kv_seq": 64, "head_dim": 16, "causal": true"#
    static let scanShape = #""batch": 1, "channels": 32, "seq": 64, "state": 4, "groups": 1"#

    static func peer(_ name: String = "torch-sdpa", pass: String = "forward", model: String = "fused",
                     kernel: String = "attention", label: String = "attn L64 d16 B1H2 causal",
                     extra: String = "", shape: String? = nil) -> String {
        let fields = shape ?? (kernel == "attention" ? attentionShape : scanShape)
        return #"{"name": "\#(name)", "kernel": "\#(kernel)", "label": "\#(label)", "pass": "\#(pass)", "model": "\#(model)", "#
            + #"\#(fields), "threads": 1, "median_seconds": 0.002, "min_seconds": 0.0015, "repeats": 6\#(extra)}"#
    }

    static func document(_ peers: [String], top: String = "") -> String {
        #"{"schema": "kernellab-compare/1", "threads": 1, "source": "torch 9.9.9+cpu", "date": "2026-01-01T00:00:00Z", "#
            + #""torch": {"version": "9.9.9+cpu"}, "machine": {}, "settings": {}, "comparisons": [], "numerics": [], "#
            + #"\#(top)"peers": [\#(peers.joined(separator: ", "))]}"#
    }

    /// Four peers: SDPA and the unfused torch attention forward, SDPA
    /// backward, the reference scan forward (whose `flops` is given and right).
    static var goodDocument: String {
        let scanFlops = 1.0 * 32 * 64 * (6 * 4 + 8)
        return document([
            peer(), peer(pass: "backward"), peer("torch-unfused", model: "unfused"),
            peer("torch-scan-ref", model: "unfused", kernel: "scan", label: "scan D32 L64 N4",
                 extra: #", "flops": \#(scanFlops)"#),
        ])
    }

    private func fixtureTable() throws -> RooflineCeilingTable {
        let path = directory.appendingPathComponent("ceilings.json").path
        try Data(RooflineTests.fixtureCeilings.utf8).write(to: URL(fileURLWithPath: path))
        return try RooflineCeilingTable(contentsOf: path)
    }

    /// The tiny suite measured on one thread, with the good peers added.
    private func makeReport() throws -> (plain: RooflineReport, withPeers: RooflineReport) {
        let suite = try RooflineSuite(json: Data(RooflineTests.tinySuite.utf8), name: "tiny")
        let measurements = try RooflineRunner(threads: 1).measure(suite)
        let report = try RooflineReport(suite: suite, measurements: measurements, ceilings: try fixtureTable(),
                                        threads: 1, isa: RooflineTests.fixtureISA)
        let file = try RooflinePeersFile(json: Data(Self.goodDocument.utf8), source: "compare.json")
        return (report, try report.addingPeers(file))
    }

    // MARK: - the reader

    func testReadsAGoodPeersFile() throws {
        let path = directory.appendingPathComponent("compare.json").path
        try Data(Self.goodDocument.utf8).write(to: URL(fileURLWithPath: path))
        let file = try RooflinePeersFile(contentsOf: path)
        XCTAssertEqual(file.source, "torch 9.9.9+cpu")
        XCTAssertEqual(file.threads, 1)
        XCTAssertEqual(file.peers.count, 4)
        let sdpa = file.peers[0]
        XCTAssertEqual(sdpa.name, "torch-sdpa")
        XCTAssertEqual(sdpa.label, "attn L64 d16 B1H2 causal")
        XCTAssertEqual(sdpa.pass, .forward)
        XCTAssertEqual(sdpa.model, .fused)
        XCTAssertEqual(sdpa.medianSeconds, 0.002)
        XCTAssertEqual(sdpa.minSeconds, 0.0015)
        XCTAssertEqual(sdpa.repeats, 6)
        XCTAssertEqual(sdpa.shape, .attention(try AttentionShape(batch: 1, heads: 2, queryLength: 64, keyLength: 64, headDim: 16),
                                              causal: true))
        XCTAssertEqual(file.peers[3].shape, .scan(try ScanShape(batch: 1, channels: 32, seqLen: 64, state: 4)))

        // Optional fields may be left out: kv_seq, causal, groups, min_seconds, repeats, flops, source.
        let minimal = #"{"schema": "kernellab-compare/1", "threads": 2, "peers": [{"name": "x", "kernel": "scan", "#
            + #""label": "s", "pass": "backward", "model": "fused", "batch": 1, "channels": 8, "seq": 4, "state": 2, "#
            + #""threads": 2, "median_seconds": 1}]}"#
        let parsed = try RooflinePeersFile(json: Data(minimal.utf8))
        XCTAssertEqual(parsed.source, "peer")
        XCTAssertNil(parsed.peers[0].minSeconds)
        XCTAssertEqual(parsed.peers[0].shape, .scan(try ScanShape(batch: 1, channels: 8, seqLen: 4, state: 2, groups: 1)))
    }

    func testMalformedPeersFilesNameTheField() throws {
        func error(_ json: String) -> KernelLabError? {
            kernelLabError(try RooflinePeersFile(json: Data(json.utf8), source: "c.json"))
        }
        func invalid(_ argument: String, _ reason: String) -> KernelLabError {
            .invalidArgument(argument: argument, reason: "\(reason) (in 'c.json')")
        }
        let good = Self.peer()
        XCTAssertEqual(error(#"{"threads": 1, "peers": [\#(good)]}"#),
                       invalid("schema", #"is required: "kernellab-compare/1""#))
        XCTAssertEqual(error(#"{"schema": "kernellab-compare/9", "threads": 1, "peers": [\#(good)]}"#),
                       invalid("schema", #"unknown schema 'kernellab-compare/9'; expected "kernellab-compare/1""#))
        XCTAssertEqual(error(#"{"schema": "kernellab-compare/1", "peers": [\#(good)]}"#),
                       invalid("threads", "is required: the thread count of every peer"))
        XCTAssertEqual(error(Self.document([good], top: #""peer": [], "#)), invalid("peer", "unknown key"))
        XCTAssertEqual(error(#"{"schema": "kernellab-compare/1", "threads": 1, "torch": [], "peers": [\#(good)]}"#),
                       invalid("torch", "must be an object, got an array"))
        XCTAssertEqual(error(#"{"schema": "kernellab-compare/1", "threads": 1}"#),
                       invalid("peers", "is required: an array of peer measurements"))
        XCTAssertEqual(error(Self.document([])), invalid("peers", "must hold at least one peer"))
        XCTAssertEqual(error(Self.document(["3"])), .invalidArgument(argument: "peers[0]", reason: "must be an object (in 'c.json')"))

        // Peer fields, named by their path.
        XCTAssertEqual(error(Self.document([good, Self.peer(extra: #", "median": 1"#)])), invalid("peers[1].median", "unknown key"))
        XCTAssertEqual(error(Self.document([Self.peer(pass: "both")])),
                       invalid("peers[0].pass", "unknown value 'both'; expected one of forward, backward"))
        XCTAssertEqual(error(Self.document([Self.peer(model: "flash")])),
                       invalid("peers[0].model", "unknown value 'flash'; expected one of fused, unfused"))
        XCTAssertEqual(error(Self.document([Self.peer(kernel: "mlp")])),
                       invalid("peers[0].kernel", "unknown value 'mlp'; expected one of attention, scan"))
        XCTAssertEqual(error(Self.document([Self.peer("")])),
                       invalid("peers[0].name", #"is required: the implementation, e.g. "torch-sdpa""#))
        let noMedian = Self.peer().replacingOccurrences(of: #""median_seconds": 0.002, "#, with: "")
        XCTAssertEqual(error(Self.document([noMedian])),
                       invalid("peers[0].median_seconds", "is required: the median seconds of one call"))
        let negative = Self.peer().replacingOccurrences(of: #""median_seconds": 0.002"#, with: #""median_seconds": -1"#)
        XCTAssertEqual(error(Self.document([negative])),
                       invalid("peers[0].median_seconds", "must be a positive number of seconds, got -1.0"))
        let text = Self.peer().replacingOccurrences(of: #""median_seconds": 0.002"#, with: #""median_seconds": "2 ms""#)
        XCTAssertEqual(error(Self.document([text])), invalid("peers[0].median_seconds", "must be a number, got a string"))
        XCTAssertEqual(error(Self.document([Self.peer(extra: "").replacingOccurrences(of: #""min_seconds": 0.0015"#, with: #""min_seconds": 0.01"#)])),
                       invalid("peers[0].min_seconds", "must not exceed median_seconds (0.002), got 0.01"))
        XCTAssertEqual(error(Self.document([Self.peer().replacingOccurrences(of: #""threads": 1"#, with: #""threads": 2"#)])),
                       invalid("peers[0].threads", "must equal the file's threads (1), got 2"))
        XCTAssertEqual(error(Self.document([Self.peer(shape: #""batch": 1, "heads": 2, "seq": 64, "head_dim": 0"#)])),
                       invalid("peers[0].head_dim", "must be at least 1, got 0"))
        XCTAssertEqual(error(Self.document([Self.peer(shape: #""batch": 1, "seq": 64, "head_dim": 16"#)])),
                       invalid("peers[0].heads", "is required for this kernel"))
        XCTAssertEqual(error(Self.document([Self.peer(shape: #""batch": 1, "heads": 2, "seq": 64, "head_dim": 16, "causal": 1"#)])),
                       invalid("peers[0].causal", "must be true or false, got a number"))
        XCTAssertEqual(error(Self.document([Self.peer(shape: #""batch": 1, "heads": 2, "seq": 64, "head_dim": 2000"#)])),
                       invalid("peers[0].head_dim", "must be at most 1024, got 2000"))
        XCTAssertEqual(error(Self.document([Self.peer("s", model: "unfused", kernel: "scan", label: "s",
                                                      shape: #""batch": 1, "channels": 10, "seq": 8, "state": 2, "groups": 3"#)])),
                       invalid("peers[0].groups", "must divide channels (10), got 3"))
        // FLOPs under another convention are caught: 4 B H L^2 d, not halved for causal.
        let flops = 4.0 * 2 * 64 * 64 * 16
        XCTAssertEqual(error(Self.document([Self.peer(extra: #", "flops": \#(flops)"#)])),
                       invalid("peers[0].flops", "is 524288.0, but the lab's convention gives 262144.0 for this shape and pass"))

        guard case .invalidArgument(let argument, let reason)? = error("{nope") else {
            return XCTFail("expected invalidArgument for bad JSON")
        }
        XCTAssertEqual(argument, "peers")
        XCTAssertTrue(reason.hasPrefix("'c.json' is not valid JSON"), reason)
        XCTAssertThrows(.io(path: directory.path + "/none.json", reason: "no such peers file (make compare writes reports/compare.json)"),
                        try RooflinePeersFile(contentsOf: directory.path + "/none.json"))
    }

    // MARK: - the report

    func testPeersTakeTheLabsCostModelsAndBounds() throws {
        let (plain, report) = try makeReport()
        let peers = try XCTUnwrap(report.peers)
        XCTAssertEqual(peers.map(\.id), ["peer1", "peer2", "peer3", "peer4"])
        XCTAssertEqual(report.peerSource, "torch 9.9.9+cpu")
        XCTAssertTrue(peers.allSatisfy(\.peer))
        XCTAssertEqual(report.points, plain.points, "the lab's points are untouched")
        XCTAssertEqual(report.notes, plain.notes + [RooflineReport.peersNote])

        let shape = try AttentionShape(batch: 1, heads: 2, queryLength: 64, keyLength: 64, headDim: 16)
        let options = AttentionOptions(causal: true)
        for (peer, impl, pass) in [(peers[0], KernelImpl.fused, KernelPass.forward), (peers[1], .fused, .backward),
                                   (peers[2], .unfused, .forward)] {
            let cost = try Attention.cost(shape: shape, options: options, impl: impl, pass: pass)
            XCTAssertEqual(peer.flops, cost.flops, peer.id)
            XCTAssertEqual(peer.dramBytes, cost.dramBytes, peer.id)
            XCTAssertEqual(peer.l3Bytes, cost.l3Bytes, peer.id)
            XCTAssertEqual(peer.intensity, cost.flops / cost.dramBytes, accuracy: peer.intensity * 1e-12)
            XCTAssertEqual(peer.gflops, cost.flops / 0.002 / 1e9, accuracy: peer.gflops * 1e-12)
            let bound = try RooflineBound(cost: cost, isa: RooflineTests.fixtureISA, ceilings: report.ceilings)
            XCTAssertEqual(peer.bound, bound.kind)
            XCTAssertEqual(peer.boundGflops, bound.gflops)
            XCTAssertEqual(peer.fractionOfBound, peer.gflops / bound.gflops, accuracy: 1e-12)
            XCTAssertEqual(peer.causal, true)
        }
        let scanCost = try Scan.cost(shape: try ScanShape(batch: 1, channels: 32, seqLen: 64, state: 4), impl: .unfused, pass: .forward)
        XCTAssertEqual(peers[3].kernel, .scan)
        XCTAssertEqual(peers[3].dramBytes, scanCost.dramBytes)
        XCTAssertEqual(peers[3].exps, scanCost.exps)

        // Adding twice replaces, it does not append.
        let again = try report.addingPeers(try RooflinePeersFile(json: Data(Self.goodDocument.utf8)))
        XCTAssertEqual(again.peers?.count, 4)
        XCTAssertEqual(again.notes, report.notes)
        // Another thread count is refused.
        let twoThreads = Self.goodDocument.replacingOccurrences(of: #""threads": 1"#, with: #""threads": 2"#)
        XCTAssertThrows(.invalidArgument(argument: "peers", reason: "the peers ran on 2 thread(s), the report's points on 1; use the same --threads"),
                        try plain.addingPeers(try RooflinePeersFile(json: Data(twoThreads.utf8))))
    }

    func testDocumentsFlagThePeersAndKeepTheirShapeWithout() throws {
        let (plain, report) = try makeReport()
        let out = directory.appendingPathComponent("out").path
        try report.write(to: out)

        // JSON: a peers array with the flag, read back equal; none without peers.
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/roofline.json"))) as? [String: Any])
        let peers = try XCTUnwrap(object["peers"] as? [[String: Any]])
        XCTAssertEqual(peers.count, 4)
        XCTAssertTrue(peers.allSatisfy { $0["peer"] as? Bool == true })
        XCTAssertEqual(peers[0]["name"] as? String, "torch-sdpa")
        XCTAssertEqual(peers[0]["model"] as? String, "fused")
        XCTAssertEqual(object["peer_source"] as? String, "torch 9.9.9+cpu")
        XCTAssertEqual(try RooflineReport(contentsOf: out + "/roofline.json"), report)
        let plainObject = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try plain.json().utf8)) as? [String: Any])
        XCTAssertNil(plainObject["peers"])
        XCTAssertNil(plainObject["peer_source"])

        // CSV: a last "peer" column, false for the lab's rows, true for the peers', every row as wide as the header.
        let csv = try String(contentsOfFile: out + "/roofline.csv", encoding: .utf8)
        let lines = csv.split(separator: "\n").map(String.init)
        let header = lines[0].split(separator: ",", omittingEmptySubsequences: false)
        XCTAssertEqual(header.last, "peer")
        XCTAssertEqual(lines.count, 1 + report.points.count + 4)
        for line in lines.dropFirst() where !line.contains("\"") {
            XCTAssertEqual(line.split(separator: ",", omittingEmptySubsequences: false).count, header.count, line)
        }
        XCTAssertEqual(lines.filter { $0.hasSuffix(",true") }.count, 4)
        XCTAssertEqual(lines.filter { $0.hasSuffix(",false") }.count, report.points.count)
        XCTAssertTrue(lines.contains { $0.hasPrefix("peer1,attention,torch-sdpa,forward,") })
        XCTAssertFalse(plain.csv().contains("peer"), "no peer column without peers")

        // Markdown and HTML: a peers section that says the bytes are the lab's models.
        let markdown = try String(contentsOfFile: out + "/roofline.md", encoding: .utf8)
        XCTAssertTrue(markdown.contains("## Peers (torch 9.9.9+cpu)"), markdown)
        XCTAssertTrue(markdown.contains("| peer1 | torch-sdpa | attention 1x2x64x64x16 causal | forward | lab fused |"), markdown)
        XCTAssertTrue(markdown.contains("not a measurement"))
        XCTAssertFalse(plain.markdown().contains("## Peers"))
        let html = try String(contentsOfFile: out + "/roofline.html", encoding: .utf8)
        XCTAssertTrue(html.contains("<h2>Peers (torch 9.9.9+cpu)</h2>"))
    }

    // MARK: - the chart

    func testChartDrawsThePeersAsPointsOfTheirOwn() throws {
        let (plain, report) = try makeReport()
        let path = directory.appendingPathComponent("peers.svg")
        try Data(RooflineChart(report: report).svg().utf8).write(to: path)
        let svg = try SVGElements(contentsOf: path)

        // The same pixel mapping as the lab's points (from the decade ticks).
        let xTicks = svg.all("text", class: "tick-x").map { (value: Double($0["data-value"]!)!, px: Double($0["x"]!)!) }
        let yTicks = svg.all("text", class: "tick-y").map { (value: Double($0["data-value"]!)!, px: Double($0["y"]!)! - 4.5) }
        func mapping(_ ticks: [(value: Double, px: Double)]) -> (Double) -> Double {
            let (a, b) = (ticks.first!, ticks.last!)
            let slope = (b.px - a.px) / (log10(b.value) - log10(a.value))
            return { a.px + (log10($0) - log10(a.value)) * slope }
        }
        let x = mapping(xTicks), y = mapping(yTicks)

        XCTAssertEqual(svg.all("g", class: "point").count, report.points.count, "the lab's points stay as they are")
        let groups = svg.all("g", class: "peer-point")
        let peers = try XCTUnwrap(report.peers)
        XCTAssertEqual(groups.map { $0["id"]! }, peers.map(\.id))
        for group in groups {
            let peer = try XCTUnwrap(peers.first { $0.id == group["id"] })
            XCTAssertEqual(group["data-peer"], peer.name)
            XCTAssertEqual(group["data-model"], peer.model.rawValue)
            let polygon = try XCTUnwrap(svg.children(of: group).first { $0.name == "polygon" })
            let corners = polygon["points"]!.split(separator: " ").map { $0.split(separator: ",").map { Double($0)! } }
            XCTAssertEqual(corners.count, peer.kernel == .attention ? 4 : 3, "diamond for attention, triangle for the scan")
            // The diamond's centre is its corners' mean; the triangle's, its bounding box's.
            let xs = corners.map { $0[0] }, ys = corners.map { $0[1] }
            XCTAssertEqual((xs.min()! + xs.max()!) / 2, x(peer.intensity), accuracy: 0.05, peer.id)
            let centerY = peer.kernel == .attention ? (ys.min()! + ys.max()!) / 2 : ys.min()! + 7.5
            XCTAssertEqual(centerY, y(peer.gflops), accuracy: 0.05, peer.id)
            XCTAssertEqual(polygon["fill"] == "#ffffff", peer.model == .unfused, "hollow when the bytes are the unfused model's")
            XCTAssertEqual(polygon["stroke"], peer.pass == .forward ? "#d62728" : "#c2188f", "red forward, magenta backward")
            XCTAssertNotNil(svg.all("text", class: "peer-label").first { $0["data-peer"] == peer.id }, "\(peer.id) has no label")
        }
        // A legend block names every (peer, pass) and says what the bytes are.
        let entries = svg.all("text", class: "peer-legend-entry").map(\.text)
        XCTAssertEqual(entries, ["torch-sdpa forward · lab fused bytes", "torch-sdpa backward · lab fused bytes",
                                 "torch-unfused forward · lab unfused bytes", "torch-scan-ref forward · lab unfused bytes"])
        XCTAssertTrue(svg.all("text", class: "peer-legend-note").map(\.text).joined(separator: " ").contains("an estimate, not a measurement"))
        // The picture grows by the block; without peers nothing of it is drawn.
        let plainSVG = RooflineChart(report: plain).svg()
        XCTAssertFalse(plainSVG.contains("peer"))
    }

    // MARK: - the executable

    func testExecutableReadsPeersBeforeTiming() throws {
        let suite = directory.appendingPathComponent("tiny.json").path
        try Data(RooflineTests.tinySuite.utf8).write(to: URL(fileURLWithPath: suite))
        let ceilings = directory.appendingPathComponent("ceilings.json").path
        try Data(RooflineTests.fixtureCeilings.utf8).write(to: URL(fileURLWithPath: ceilings))
        let peers = directory.appendingPathComponent("compare.json").path
        try Data(Self.goodDocument.utf8).write(to: URL(fileURLWithPath: peers))
        let out = directory.appendingPathComponent("cli").path
        let devices = packageProfiles.appendingPathComponent("devices").path
        let run = try launchKernelLab(["roofline", "--suite", suite, "--ceilings", ceilings, "--threads", "1", "--out", out,
                                       "--devices", devices, "--peers", peers, "--json"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((object["peers"] as? [Any])?.count, 4)

        // --from with --peers places them on an existing report.
        let plainOut = directory.appendingPathComponent("plain").path
        XCTAssertEqual(try launchKernelLab(["roofline", "--suite", suite, "--ceilings", ceilings, "--threads", "1",
                                            "--out", plainOut, "--devices", devices]).status, 0)
        let from = try launchKernelLab(["roofline", "--from", plainOut + "/roofline.json", "--peers", peers, "--out", out + "2"])
        XCTAssertEqual(from.status, 0, from.stderr)
        XCTAssertTrue(try String(contentsOfFile: out + "2/roofline.md", encoding: .utf8).contains("## Peers"))

        // A bad peers file and a thread mismatch fail at once, naming the field.
        let bad = directory.appendingPathComponent("bad.json").path
        try Data(Self.document([Self.peer(pass: "sideways")]).utf8).write(to: URL(fileURLWithPath: bad))
        let failed = try launchKernelLab(["roofline", "--suite", suite, "--ceilings", ceilings, "--threads", "1", "--out", out,
                                          "--peers", bad])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.contains("peers[0].pass") && failed.stderr.contains("sideways"), failed.stderr)
        let threads = try launchKernelLab(["roofline", "--suite", suite, "--ceilings", ceilings, "--threads", "2", "--out", out,
                                           "--peers", peers])
        XCTAssertNotEqual(threads.status, 0)
        XCTAssertTrue(threads.stderr.contains("the peers ran on 1 thread(s)"), threads.stderr)
    }
}
