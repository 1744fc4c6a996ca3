import XCTest
@testable import KernelLab

/// The callgrind parser and the model-vs-simulation verdicts of `kernel-lab
/// traffic validate` (valgrind itself is not run here).
final class TrafficTests: XCTestCase {
    // Shaped like a callgrind 3.19 dump with --cache-sim=yes --simulate-wb=yes.
    private let fixture = """
        # callgrind format
        version: 1
        creator: callgrind-3.19.0
        pid: 4242
        cmd:  kernel-lab traffic --kernel attention --impl fused
        part: 1

        desc: I1 cache: 32768 B, 64 B, 8-way associative
        desc: D1 cache: 32768 B, 64 B, 8-way associative
        desc: LL cache: 1048576 B, 64 B, 16-way associative
        desc: Timerange: Basic block 0 - 1000
        desc: Trigger: --dump-after=kl_attn_fwd

        positions: line
        events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw I1dmr D1dmr D1dmw ILdmr DLdmr DLdmw
        summary: 100 40 20 3 10 5 2 1000 300 1 200 50 0 20 10

        ob=(1) /work/main/.build/release/kernel-lab
        fl=(1) ???
        fn=(1) kl_attn_fwd
        0 100 40 20 3 10 5 2 1000 300 1 200 50 0 20 10

        totals: 100 40 20 3 10 5 2 1000 300 1 200 50 0 20 10
        """

    func testParsesEventsAndTotals() throws {
        let t = try CallgrindTotals(parsing: fixture)
        XCTAssertEqual(t["Ir"], 100)
        XCTAssertEqual(t["DLmr"], 1000)
        XCTAssertEqual(t["DLmw"], 300)
        XCTAssertEqual(t["DLdmw"], 10)
        XCTAssertEqual(t.llMisses, 2 + 1000 + 300)
        XCTAssertEqual(t.dirtyEvictions, 0 + 20 + 10)
    }

    func testSummaryWinsAndShortLines() throws {
        let text = "events: Ir DLmr DLmw DLdmr\nsummary: 7 5\ntotals: 8 5\n"
        let t = try CallgrindTotals(parsing: text)
        XCTAssertEqual(t["Ir"], 7)
        XCTAssertEqual(t["DLmr"], 5)
        XCTAssertEqual(t["DLmw"], 0)  // trailing zeros are omitted by callgrind
        XCTAssertEqual(t["ILmr"], 0)  // absent event
    }

    func testRejectsMissingLines() {
        XCTAssertThrowsError(try CallgrindTotals(parsing: "totals: 1 2\n"))
        XCTAssertThrowsError(try CallgrindTotals(parsing: "events: Ir\n"))
        XCTAssertThrowsError(try CallgrindTotals(parsing: "events: Ir\ntotals: x\n"))
    }

    func testComparisonCountsCallMissesAndDrainWriteBacksOnly() throws {
        let call = try CallgrindTotals(parsing: fixture)
        // The drain's own fetches (DLmr) are the eviction reads: not counted.
        let drain = try CallgrindTotals(parsing: "events: DLmr DLmw DLdmr DLdmw\ntotals: 99999 0 100 0\n")
        let c = TrafficComparison(label: "x", llcBytes: 1 << 20, modelBytes: 100_000, minBytes: 90_000,
                                  call: call, drain: drain)
        XCTAssertEqual(c.fetchedBytes, Double(1302 * 64))
        XCTAssertEqual(c.writtenBackBytes, Double((30 + 100) * 64))
        XCTAssertEqual(c.simulatedBytes, Double(1432 * 64))
    }

    func testVerdicts() {
        func row(model: Double, sim: Double) -> TrafficComparison {
            TrafficComparison(label: "x", llcBytes: 1 << 20, modelBytes: model, minBytes: model,
                              fetchedBytes: sim, writtenBackBytes: 0)
        }
        XCTAssertEqual(row(model: 100, sim: 125).ratio, 1.25, accuracy: 1e-12)
        XCTAssertTrue(row(model: 100, sim: 125).withinTolerance)
        XCTAssertTrue(row(model: 100, sim: 75).withinTolerance)
        XCTAssertEqual(row(model: 100, sim: 100).verdict, "ok")
        XCTAssertFalse(row(model: 100, sim: 126).withinTolerance)
        XCTAssertEqual(row(model: 100, sim: 126).verdict, "model low")
        XCTAssertEqual(row(model: 100, sim: 74).verdict, "model high")
        XCTAssertEqual(row(model: 0, sim: 0).ratio, 1)
        XCTAssertFalse(row(model: 0, sim: 64).withinTolerance)
    }

    func testTableAndValgrindArguments() {
        let probe = TrafficProbe(kernel: .scan, impl: .unfused, pass: .backward, seq: 1024, channels: 64, state: 16)
        let c = TrafficCase(probe: probe, llcBytes: 1 << 20)
        let args = TrafficValidator.valgrindArguments(for: c, outFile: "/tmp/o")
        XCTAssertTrue(args.contains("--LL=1048576,16,64"))
        XCTAssertTrue(args.contains("--toggle-collect=kl_traffic_region"))
        XCTAssertTrue(args.contains("--dump-before=kl_traffic_drain"))
        XCTAssertTrue(args.contains("--simulate-wb=yes"))
        let env = TrafficValidator.environment(for: c, base: [:])
        XCTAssertEqual(env["KERNELLAB_ISA"], "avx2")
        XCTAssertEqual(env["KERNELLAB_LLC_BYTES"], "1048576")
        let row = TrafficComparison(label: probe.label, llcBytes: 1 << 20, modelBytes: 2_097_152, minBytes: 1_048_576,
                                    fetchedBytes: 2_097_152, writtenBackBytes: 1_048_576)
        let table = TrafficValidator.table([(row, "why")])
        XCTAssertTrue(table.contains("| scan unfused backward B=1 D=64 L=1024 N=16 | 1 MiB | 1.00 | 2.00 | 3.00 (2.00 + 1.00) | 1.50 | model low |"), table)
        XCTAssertTrue(table.contains("- scan unfused backward B=1 D=64 L=1024 N=16, LLC 1024 KiB: why"))
    }

    func testL3LevelRunSimulatesTheL2AndComparesL3Bytes() throws {
        let probe = TrafficProbe(kernel: .attention, impl: .fused, pass: .forward)
        let c = TrafficCase(probe: probe, llcBytes: TrafficCase.fullLLC)
        let args = TrafficValidator.valgrindArguments(for: c, outFile: "/tmp/o", level: .l3)
        XCTAssertTrue(args.contains("--LL=\(TrafficCase.l2Bytes),\(TrafficCase.l2Ways),64"), "\(args)")
        XCTAssertFalse(args.contains("--LL=\(TrafficCase.fullLLC),16,64"))
        XCTAssertTrue(TrafficValidator.valgrindArguments(for: c, outFile: "/tmp/o").contains("--LL=\(TrafficCase.fullLLC),16,64"))
        let env = TrafficValidator.environment(for: c, base: [:])
        XCTAssertEqual(env["KERNELLAB_L2_BYTES"], "\(TrafficCase.l2Bytes)")
        XCTAssertEqual(env["KERNELLAB_LLC_BYTES"], "\(TrafficCase.fullLLC)")

        let call = try CallgrindTotals(parsing: fixture)
        let cost = KernelCost(flops: 1, minBytes: 50_000, dramBytes: 60_000, l3Bytes: 100_000, l2Bytes: 200_000, exps: 0)
        let r = TrafficComparison(l3Of: cost, label: probe.label, l2Bytes: TrafficCase.l2Bytes, call: call, drain: nil)
        XCTAssertEqual(r.level, .l3)
        XCTAssertEqual(r.modelBytes, cost.l3Bytes)
        XCTAssertEqual(r.simulatedBytes, Double((call.llMisses + call.dirtyEvictions) * 64))
        XCTAssertEqual(r.l1Model, cost.l2Bytes)
        XCTAssertEqual(r.l1Fetched, Double((call["D1mr"] + call["D1mw"]) * 64))
        let table = TrafficValidator.table([(r, "why not")])
        XCTAssertTrue(table.contains("| \(probe.label) | "), table)
        XCTAssertTrue(table.contains(String(format: "| %.2f | %@ |", r.ratio, r.verdict)), table)
        XCTAssertTrue(table.contains("- \(probe.label): why not"), table)
    }

    func testLLCOverrideReachesTheModel() throws {
        let shape = try AttentionShape(batch: 1, heads: 2, queryLength: 1024, keyLength: 1024, headDim: 64)
        setenv("KERNELLAB_LLC_BYTES", "\(1 << 20)", 1)
        defer { unsetenv("KERNELLAB_LLC_BYTES") }
        let small = try Attention.cost(shape: shape, impl: .unfused)
        // The 4 MiB score matrix overflows a 1 MiB LLC: seven passes per head,
        // plus the write-allocate fetch of o and lse.
        XCTAssertEqual(small.dramBytes - small.minBytes, 2 * 7 * 4 * 1024 * 1024 + 524_288 + 8192, accuracy: 1)
    }
}
