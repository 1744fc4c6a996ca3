import Foundation
import KernelLab
import XCTest

/// `kernel-lab decode-bench`'s measurement: state accounting against the
/// closed forms, growth with context, and the documents it writes.
final class ModelDecodeBenchmarkTests: XCTestCase {
    func testStateGrowsOnlyWithAttention() throws {
        let models = try ModelDecodeBenchmark.defaultModels(vocabulary: 11, dModel: 16, layers: 2, heads: 2)
        XCTAssertEqual(models.map(\.config.pattern), ["AA", "MM", "LL", "AM"])
        var config = ModelDecodeBenchmark.Config(models: models)
        (config.contexts, config.batch, config.threads, config.warmup, config.repeats) = ([4, 64], 3, 2, 0, 2)
        let rows = try ModelDecodeBenchmark.run(config)
        XCTAssertEqual(rows.count, 8)
        for row in rows {
            XCTAssertEqual(row.stateBytes, row.expectedStateBytes, "\(row.model) L=\(row.context)")
            XCTAssertGreaterThanOrEqual(row.arenaBytes, row.stateBytes)
            XCTAssertGreaterThan(row.step.median, 0)
            XCTAssertNotNil(row.residentGrowthBytes, "Linux has /proc/self/status")
        }
        func row(_ pattern: String, _ L: Int) -> ModelDecodeBenchmark.Row { rows.first { $0.pattern == pattern && $0.context == L }! }
        // The KV cache: 2 x layers x B x L x d_model x 4 bytes, and nothing else in a transformer.
        XCTAssertEqual(row("AA", 64).stateBytes, 2 * 2 * 3 * 64 * 16 * 4)
        XCTAssertEqual(row("AA", 64).kvCacheBytes, row("AA", 64).stateBytes)
        XCTAssertEqual(row("AA", 64).stateBytes, 16 * row("AA", 4).stateBytes)
        // Fixed states: Mamba's conv (K - 1) and SSM (N) per inner channel, the LSTM's h and c.
        XCTAssertEqual(row("MM", 64).stateBytes, row("MM", 4).stateBytes)
        XCTAssertEqual(row("MM", 4).stateBytes, 2 * 3 * 32 * (3 + 16) * 4)
        XCTAssertEqual(row("LL", 64).stateBytes, 2 * 3 * 2 * 16 * 4)
        XCTAssertEqual(row("AM", 64).stateBytes - row("AM", 4).stateBytes, 2 * 3 * 60 * 16 * 4)

        let directory = NSTemporaryDirectory() + "decode-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let written = try ModelDecodeBenchmark.write(rows, header: "# test", caption: "test", to: directory)
        XCTAssertEqual(written.map { ($0 as NSString).lastPathComponent }, ["decode-bench.md", "decode-bench.csv", "decode-bench.svg"])
        let csv = try String(contentsOfFile: written[1], encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 1 + rows.count)
        let markdown = try String(contentsOfFile: written[0], encoding: .utf8)
        XCTAssertTrue(markdown.contains("| transformer | 64 |"), markdown)
        XCTAssertTrue(markdown.contains("state x16.00"), markdown)
        let svg = try String(contentsOfFile: written[2], encoding: .utf8)
        // One line per model in each of the two panels.
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 8)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
    }

    func testBadSettingsAreErrors() throws {
        var config = ModelDecodeBenchmark.Config(models: try ModelDecodeBenchmark.defaultModels(vocabulary: 11, dModel: 16, layers: 1, heads: 2))
        config.contexts = [0]
        XCTAssertThrowsError(try ModelDecodeBenchmark.run(config))
        config.contexts = []
        XCTAssertThrowsError(try ModelDecodeBenchmark.run(config))
    }

    func testLinePlotAxes() {
        let plot = LinePlot(title: "t", xLabel: "x <len>", yLabel: "y", logX: true, logY: false,
                            series: [.init(name: "a&b", points: [(x: 128, y: 1), (x: 65536, y: 3), (x: 0, y: 2)])])
        let svg = LinePlot.svg([plot])
        // Decade ticks on the log axis, 1-2-5 steps on the linear one; the x = 0 point is dropped on a log axis; text escaped.
        for tick in [">100<", ">1000<", ">10000<", ">0<", ">1<", ">2<", ">3<"] { XCTAssertTrue(svg.contains(tick), tick) }
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, 2 + 1)  // two points and the legend's marker
        XCTAssertTrue(svg.contains("x &lt;len&gt;") && svg.contains("a&amp;b"))
    }
}
