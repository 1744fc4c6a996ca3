import Foundation
import KernelLab
import XCTest

/// Tiles are a per-call argument: results agree across tiles, workspaces and
/// saved-state layouts follow the call's tiles, and bad tiles are named.
final class TilesTests: XCTestCase {
    func testAttentionTilesPerCall() throws {
        let q = try Tensor.random(shape: [1, 2, 70, 24], seed: 1), k = try Tensor.random(shape: [1, 2, 90, 24], seed: 2)
        let v = try Tensor.random(shape: [1, 2, 90, 24], seed: 3)
        let plain = AttentionOptions(causal: true)
        var tiled = plain
        tiled.tiles = AttentionTiles(queryBlock: 7, keyBlock: 20)
        let a = try Attention.forward(q: q, k: k, v: v, options: plain)
        let b = try Attention.forward(q: q, k: k, v: v, options: tiled)
        XCTAssertLessThan(try a.out.maxAbsDifference(b.out), 1e-5)
        let ga = try Attention.backward(q: q, k: k, v: v, out: a.out, lse: a.lse, gradOut: q, options: plain)
        let gb = try Attention.backward(q: q, k: k, v: v, out: b.out, lse: b.lse, gradOut: q, options: tiled)
        XCTAssertLessThan(try ga.dk.maxAbsDifference(gb.dk), 1e-4)
        // The default call is unchanged by the tiled one before it (nothing is process-global).
        let again = try Attention.forward(q: q, k: k, v: v, options: plain)
        XCTAssertEqual(again.out.toArray(), a.out.toArray())
        let shape = try Attention.shape(q: q, k: k, v: v)
        XCTAssertNotEqual(try Attention.workspaceBytes(shape: shape, options: plain), try Attention.workspaceBytes(shape: shape, options: tiled))
        var bad = plain
        bad.tiles = AttentionTiles(queryBlock: -1, keyBlock: 16)
        XCTAssertThrows(.invalidArgument(argument: "tiles", reason: "queryBlock must be in 0...65536 and keyBlock in 0...4096 (0: default), got -1/16"),
                        try Attention.forward(q: q, k: k, v: v, options: bad))
    }

    func testScanTilesPerCallAndSavedLayout() throws {
        let shape = try ScanShape(batch: 1, channels: 20, seqLen: 50, state: 4)
        let u = try Tensor.random(shape: shape.sequenceShape, seed: 1), delta = try Tensor.random(shape: shape.sequenceShape, seed: 2)
        let A = try Tensor(shape: shape.transitionShape, values: (0..<80).map { -Float($0 % 4 + 1) })
        let B = try Tensor.random(shape: shape.projectionShape, seed: 3), C = try Tensor.random(shape: shape.projectionShape, seed: 4)
        let plain = ScanOptions(deltaSoftplus: true)
        let tiled = ScanOptions(deltaSoftplus: true, tiles: ScanTiles(chunk: 16, blockChannels: 16))
        XCTAssertEqual(Scan.savedStatesShape(shape, options: tiled), [1, 20, 4, 4])  // ceil(50 / 16) chunks
        XCTAssertNotEqual(Scan.savedStatesShape(shape, options: tiled), Scan.savedStatesShape(shape, options: plain))
        let a = try Scan.forward(u: u, delta: delta, A: A, B: B, C: C, options: plain, saveStates: true)
        let b = try Scan.forward(u: u, delta: delta, A: A, B: B, C: C, options: tiled, saveStates: true)
        XCTAssertLessThan(try a.out.maxAbsDifference(b.out), 1e-5)
        let dout = try Tensor.random(shape: shape.sequenceShape, seed: 5)
        let ga = try Scan.backward(u: u, delta: delta, A: A, B: B, C: C, gradOut: dout, saved: a.saved, options: plain)
        let gb = try Scan.backward(u: u, delta: delta, A: A, B: B, C: C, gradOut: dout, saved: b.saved, options: tiled)
        XCTAssertLessThan(try ga.dA.maxAbsDifference(gb.dA), 1e-3)
        // Saved states of other tiles do not fit this call's layout: named, not misread.
        XCTAssertThrowsError(try Scan.backward(u: u, delta: delta, A: A, B: B, C: C, gradOut: dout, saved: a.saved, options: tiled)) {
            guard case KernelLabError.shapeMismatch(argument: "saved", _, _) = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try Scan.forward(u: u, delta: delta, A: A, B: B, C: C,
                                              options: ScanOptions(tiles: ScanTiles(chunk: 70_000)))) {
            guard case KernelLabError.invalidArgument(argument: "tiles", _) = $0 else { return XCTFail("\($0)") }
        }
    }
}
