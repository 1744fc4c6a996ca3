import CKernels
import Foundation
@testable import KernelLab
import XCTest

/// The hierarchical byte models of `kl_attn_cost` and `kl_scan_cost`: one
/// traffic function evaluated at each cache's capacity (dram_bytes at the
/// LLC, l3_bytes at the L2, l2_bytes at the L1d). Cache sizes are set through
/// KERNELLAB_{L1,L2,LLC}_BYTES; expected values are computed here from the
/// formulas documented next to the C code.
final class CostModelTests: XCTestCase {
    private static let keys = ["KERNELLAB_L1_BYTES", "KERNELLAB_L2_BYTES", "KERNELLAB_LLC_BYTES"]

    override func tearDown() {
        for key in Self.keys { unsetenv(key) }
        super.tearDown()
    }

    /// Sets the three cache sizes the models read.
    private func caches(l1: Int, l2: Int, llc: Int) {
        for (key, value) in zip(Self.keys, [l1, l2, llc]) { setenv(key, "\(value)", 1) }
    }

    /// The fused attention's default tiles (query block, key tile).
    private func attentionTiles(_ shape: AttentionShape) -> (q: Double, kv: Double) {
        var p = kl_attn_params(batch: Int32(shape.batch), heads: Int32(shape.heads), q_len: Int32(shape.queryLength),
                               kv_len: Int32(shape.keyLength), head_dim: Int32(shape.headDim), causal: 0, scale: 0,
                               alibi_slopes: nil, windows: nil, tiles: nil, layout: nil, accumulate: 0)
        var t = kl_attn_tiles()
        kl_attn_default_tiles(&p, &t)
        return (Double(t.q_block), Double(t.kv_block))
    }

    func testEveryLevelIsAtLeastTheNextAndTheCompulsoryBytes() throws {
        // The machine's own caches (no override): the ordering holds at any sizes that grow with the level.
        let attention = [(1, 2, 1024, 64), (1, 8, 4096, 64), (2, 4, 2048, 128), (1, 1, 16384, 64), (1, 2, 512, 16)]
        for (b, h, l, d) in attention {
            let shape = try AttentionShape(batch: b, heads: h, queryLength: l, keyLength: l, headDim: d)
            for causal in [false, true] {
                for impl in KernelImpl.allCases {
                    for pass in KernelPass.allCases {
                        let c = try Attention.cost(shape: shape, options: AttentionOptions(causal: causal), impl: impl, pass: pass)
                        let what = "attention \(shape) causal=\(causal) \(impl) \(pass)"
                        XCTAssertGreaterThanOrEqual(c.l2Bytes, c.l3Bytes, what)
                        XCTAssertGreaterThanOrEqual(c.l3Bytes, c.dramBytes, what)
                        XCTAssertGreaterThanOrEqual(c.dramBytes, c.minBytes, what)
                    }
                }
            }
        }
        for (b, dch, l, n) in [(1, 64, 1024, 16), (1, 1024, 4096, 16), (2, 256, 2048, 64), (1, 64, 65536, 16)] {
            let shape = try ScanShape(batch: b, channels: dch, seqLen: l, state: n)
            for impl in KernelImpl.allCases {
                for pass in KernelPass.allCases {
                    let c = try Scan.cost(shape: shape, impl: impl, pass: pass)
                    let what = "scan \(shape) \(impl) \(pass)"
                    XCTAssertGreaterThanOrEqual(c.l2Bytes, c.l3Bytes, what)
                    XCTAssertGreaterThanOrEqual(c.l3Bytes, c.dramBytes, what)
                    XCTAssertGreaterThanOrEqual(c.dramBytes, c.minBytes, what)
                }
            }
        }
    }

    func testUnfusedAttentionScoreMatrixPassesPerLevel() throws {
        // S is (256, 256) floats = 256 KiB: fits a 1 MiB LLC, overflows a 128 KiB L2 and the L1.
        caches(l1: 32 << 10, l2: 128 << 10, llc: 1 << 20)
        let (bh, L, d) = (2.0, 256.0, 32.0)
        let shape = try AttentionShape(batch: 1, heads: 2, queryLength: 256, keyLength: 256, headDim: 32)
        let s = L * L * 4
        for (pass, passes, buffers, gemms) in [(KernelPass.forward, 7.0, 1.0, 2.0), (.backward, 15.0, 2.0, 5.0)] {
            let c = try Attention.cost(shape: shape, impl: .unfused, pass: pass)
            let outputs = pass == .forward ? bh * L * (d + 1) * 4 : bh * L * d * 4 * 3  // o, lse | dq, dk, dv
            let base = c.minBytes + outputs
            XCTAssertEqual(c.dramBytes, base + 2 * buffers * s, accuracy: 1, "\(pass): fits, one fetch + write-back")
            XCTAssertEqual(c.l3Bytes, base + bh * passes * s, accuracy: 1, "\(pass): overflows the L2")
            // At L1 the sgemms' A-block streams (4 m n k / nr, nr = 8) come on top.
            XCTAssertEqual(c.l2Bytes, c.l3Bytes + bh * gemms * L * L * d * 4 / 8, accuracy: 1, "\(pass)")
        }
    }

    func testFusedAttentionKVRereadsWhenAHeadOverflowsTheL2() throws {
        // K and V of a head: 2 x 1024 x 64 x 4 = 512 KiB, beside the block's working set: re-read per
        // query block with a 512 KiB L2 (the tile workspaces, forward and backward, still fit it).
        caches(l1: 32 << 10, l2: 512 << 10, llc: 32 << 20)
        let shape = try AttentionShape(batch: 1, heads: 2, queryLength: 1024, keyLength: 1024, headDim: 64)
        let (bh, L, d) = (2.0, 1024.0, 64.0)
        let tiles = attentionTiles(shape)
        let forward = try Attention.cost(shape: shape, impl: .fused, pass: .forward)
        let base = forward.minBytes + bh * L * (d + 1) * 4
        XCTAssertEqual(forward.dramBytes, base, accuracy: 1)
        XCTAssertEqual(forward.l3Bytes, base + bh * ((L / tiles.q).rounded(.up) - 1) * 2 * L * d * 4, accuracy: 1)
        XCTAssertGreaterThan(forward.l2Bytes, forward.l3Bytes, "the tile streams through the L1")
        // Backward: q, o, dout, dq, lse of a head (1 MiB) overflow the L2: re-read per key tile, dq written back.
        let backward = try Attention.cost(shape: shape, impl: .fused, pass: .backward)
        let bbase = backward.minBytes + bh * L * d * 4 * 3
        XCTAssertEqual(backward.dramBytes, bbase, accuracy: 1)
        XCTAssertEqual(backward.l3Bytes, bbase + bh * ((L / tiles.kv).rounded(.up) - 1) * (5 * L * d + L) * 4, accuracy: 1)
        // With an LLC as small as that L2, DRAM sees the same traffic: one function of the capacity.
        setenv("KERNELLAB_LLC_BYTES", "\(512 << 10)", 1)
        let small = try Attention.cost(shape: shape, impl: .fused, pass: .backward)
        XCTAssertEqual(small.dramBytes, backward.l3Bytes, accuracy: 1)
    }

    func testUnfusedScanPassesPerLevel() throws {
        // Three (B, D, L, N) tensors of 64 x 256 x 4 x 4 = 256 KiB each: fit a 1 MiB LLC, not a 512 KiB L2.
        // One (N, L) array of B or C, 4 KiB, fits a 32 KiB L1, not a 2 KiB one.
        let shape = try ScanShape(batch: 1, channels: 64, seqLen: 256, state: 4)
        let (rows, L, N) = (64.0, 256.0, 4.0)
        let big = rows * L * N * 4
        for (pass, passes, rowPasses) in [(KernelPass.forward, 9.0, 2.0), (.backward, 11.0, 8.0)] {
            caches(l1: 32 << 10, l2: 512 << 10, llc: 1 << 20)
            var c = try Scan.cost(shape: shape, impl: .unfused, pass: pass)
            let base = c.dramBytes - 6 * big
            XCTAssertEqual(c.l3Bytes, base + passes * big, accuracy: 1, "\(pass)")
            XCTAssertEqual(c.l2Bytes, c.l3Bytes, accuracy: 1, "\(pass): B and C rows fit a 32 KiB L1")
            caches(l1: 2 << 10, l2: 512 << 10, llc: 1 << 20)
            c = try Scan.cost(shape: shape, impl: .unfused, pass: pass)
            XCTAssertEqual(c.l2Bytes, base + passes * big + rows * N * L * 4 * rowPasses, accuracy: 1,
                           "\(pass): B and C re-read per row below a 4 KiB L1")
        }
    }

    func testFusedScanReReadsBAndCPerChannelBlockWhenTheyOverflow() throws {
        // B and C of the batch: 2 x 16 x 4096 x 4 = 512 KiB; 64 channels = 4 blocks of 16 in the forward.
        let shape = try ScanShape(batch: 1, channels: 64, seqLen: 4096, state: 16)
        caches(l1: 32 << 10, l2: 256 << 10, llc: 32 << 20)
        let c = try Scan.cost(shape: shape, impl: .fused, pass: .forward)
        XCTAssertEqual(c.l3Bytes - c.dramBytes, 3 * 2 * 16 * 4096 * 4, accuracy: 1)
        XCTAssertGreaterThan(c.l2Bytes, c.l3Bytes)
    }

    func testCostJSONCarriesTheLevelsAndOldFilesStillDecode() throws {
        let cost = KernelCost(flops: 10, minBytes: 1, dramBytes: 2, l3Bytes: 3, l2Bytes: 4, exps: 5)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(cost)) as? [String: Double])
        XCTAssertEqual(object, ["flops": 10, "min_bytes": 1, "dram_bytes": 2, "l3_bytes": 3, "l2_bytes": 4, "exps": 5])
        let old = try JSONDecoder().decode(KernelCost.self, from: Data(#"{"flops": 10, "min_bytes": 1, "dram_bytes": 2, "exps": 5}"#.utf8))
        XCTAssertEqual(old.l3Bytes, 2)
        XCTAssertEqual(old.l2Bytes, 2)
        XCTAssertEqual(cost.bytes(servedBy: .l2), 4)
        XCTAssertEqual(cost.bytes(servedBy: .l3), 3)
        XCTAssertEqual(cost.bytes(servedBy: .dram), 2)
        XCTAssertNil(cost.bytes(servedBy: .l1))
    }
}
