import Foundation
import KernelLab
import XCTest

/// The fused masked cross-entropy against float64, the gradient by finite
/// differences of the float64 loss, every ISA, ragged vocabularies (V = 1,
/// 17, 32, 50257), extreme logits, the mask, in-place gradients, bad targets.
final class CrossEntropyTests: XCTestCase {
    static func reference(_ z: [Double], _ t: Int) -> (loss: Double, grad: [Double]) {
        let m = z.max()!
        let sum = z.reduce(0.0) { $0 + exp($1 - m) }
        var grad = z.map { exp($0 - m) / sum }
        grad[t] -= 1
        return (log(sum) + m - z[t], grad)
    }

    func testMatchesFloat64OnEveryISA() throws {
        let original = try ISA.active
        defer { try? ISA.set(original) }
        for isa in ISA.supported {
            try ISA.set(isa)
            // Rows past 16 at V a multiple of 16 (up to 128) take the 16-row block path, with a ragged tail.
            for (rows, V) in [(3, 1), (5, 17), (9, 32), (2, 50257), (37, 32), (40, 16), (35, 128), (17, 144), (33, 48),
                              (4, 2048), (3, 4099)] {
                var rng = ReferenceRNG(seed: UInt64(rows * 100_000 + V))
                var z = (0..<rows * V).map { _ in Float(rng.uniform() * 6) }
                if V > 1 { z[1] = 80; z[V + 1] = -80 }  // extreme logits stay finite
                let targets = (0..<rows).map { Int32((($0 * 7) + 3) % V) }
                let maskValues: [Float] = (0..<rows).map { $0 % 3 == 1 ? 0 : 1 }
                let logits = try Tensor(shape: [rows, V], values: z)
                let gradient = try Tensor(shape: [rows, V])
                let result = try CrossEntropy.compute(logits: logits, targets: targets, mask: try Tensor(shape: [rows], values: maskValues),
                                                      gradient: gradient, pool: try ThreadPool(threads: 2))
                let counted = Double(maskValues.reduce(0, +))
                XCTAssertEqual(result.counted, counted)
                var total = 0.0
                for r in 0..<rows {
                    let what = "\(isa) rows=\(rows) V=\(V) r=\(r)"
                    guard maskValues[r] != 0 else {
                        XCTAssertEqual(result.losses[r], 0, what)
                        XCTAssertTrue((0..<V).allSatisfy { gradient[r * V + $0] == 0 }, what)
                        continue
                    }
                    let ref = Self.reference(z[r * V..<(r + 1) * V].map(Double.init), Int(targets[r]))
                    total += ref.loss
                    XCTAssertEqual(Double(result.losses[r]), ref.loss, accuracy: 1e-5 * (1 + ref.loss), what)
                    for c in 0..<V {
                        XCTAssertEqual(Double(gradient[r * V + c]), ref.grad[c] / counted, accuracy: 1e-6, what + " c=\(c)")
                    }
                }
                XCTAssertEqual(result.meanLoss, total / counted, accuracy: 1e-5 * (1 + total))
            }
        }
    }

    /// The float64 gradient is the derivative of the float64 loss; the
    /// kernel's is the derivative of its own loss.
    func testGradientByFiniteDifferences() throws {
        var rng = ReferenceRNG(seed: 9)
        let z = (0..<13).map { _ in rng.uniform() * 3 }
        let ref = Self.reference(z, 4)
        for c in z.indices {
            var zp = z, zm = z
            zp[c] += 1e-6; zm[c] -= 1e-6
            XCTAssertEqual(ref.grad[c], (Self.reference(zp, 4).loss - Self.reference(zm, 4).loss) / 2e-6, accuracy: 1e-7)
        }
        let zf = z.map(Float.init)
        let gradient = try Tensor(shape: [1, 13])
        _ = try CrossEntropy.compute(logits: try Tensor(shape: [1, 13], values: zf), targets: [4], gradient: gradient)
        for c in zf.indices {
            var zp = zf, zm = zf
            zp[c] += 1e-2; zm[c] -= 1e-2
            let lp = try CrossEntropy.compute(logits: try Tensor(shape: [1, 13], values: zp), targets: [4]).meanLoss
            let lm = try CrossEntropy.compute(logits: try Tensor(shape: [1, 13], values: zm), targets: [4]).meanLoss
            XCTAssertEqual(Double(gradient[c]), (lp - lm) / 2e-2, accuracy: 2e-4)
        }
    }

    func testInPlaceAndBadInput() throws {
        let z: [Float] = [1, 2, 3, 4, 0, -1, 5, 2]
        let separate = try Tensor(shape: [2, 4])
        let first = try CrossEntropy.compute(logits: try Tensor(shape: [2, 4], values: z), targets: [2, 0], gradient: separate)
        let inPlace = try Tensor(shape: [2, 4], values: z)
        let second = try CrossEntropy.compute(logits: inPlace, targets: [2, 0], gradient: inPlace)
        XCTAssertEqual(inPlace.toArray(), separate.toArray())
        XCTAssertEqual(first.losses.toArray(), second.losses.toArray())
        // In place on the 16-row block path too, with a masked row whose target is out of range.
        let zb = (0..<(18 * 32)).map { Float(($0 * 13) % 17) * 0.3 }
        let tb = (0..<18).map { Int32($0 == 5 ? 99 : $0 % 32) }
        let mb = try Tensor(shape: [18], values: (0..<18).map { $0 == 5 ? 0 : 1 })
        let apart = try Tensor(shape: [18, 32])
        let lossApart = try CrossEntropy.compute(logits: try Tensor(shape: [18, 32], values: zb), targets: tb, mask: mb, gradient: apart)
        let together = try Tensor(shape: [18, 32], values: zb)
        let lossTogether = try CrossEntropy.compute(logits: together, targets: tb, mask: mb, gradient: together)
        XCTAssertEqual(together.toArray(), apart.toArray())
        XCTAssertEqual(lossApart.losses.toArray(), lossTogether.losses.toArray())
        XCTAssertEqual(lossApart.losses[5], 0)
        XCTAssertTrue((0..<32).allSatisfy { apart[5 * 32 + $0] == 0 }, "the masked row's gradient is zero")
        // The block path without a gradient gives the same losses.
        let lossOnly = try CrossEntropy.compute(logits: try Tensor(shape: [18, 32], values: zb), targets: tb, mask: mb)
        XCTAssertEqual(lossOnly.losses.toArray(), lossApart.losses.toArray())
        // A +inf logit makes its row NaN on the block path as on the row path (its sum of exps is NaN).
        var zi = zb
        zi[2 * 32 + 7] = .infinity
        let inf = try CrossEntropy.compute(logits: try Tensor(shape: [18, 32], values: zi), targets: tb, mask: mb)
        XCTAssertTrue(inf.losses[2].isNaN, "row 2: \(inf.losses[2])")
        XCTAssertTrue((0..<18).filter { $0 != 2 }.allSatisfy { inf.losses[$0].isFinite })
        let rowPath = try CrossEntropy.compute(logits: try Tensor(shape: [1, 32], values: Array(zi[64..<96])), targets: [tb[2]])
        XCTAssertTrue(rowPath.losses[0].isNaN)

        let logits = try Tensor(shape: [2, 4], values: z)
        XCTAssertThrows(.invalidArgument(argument: "targets", reason: "targets[1] = 4, expected 0 <= t < V = 4"),
                        try CrossEntropy.compute(logits: logits, targets: [0, 4], gradient: try Tensor(shape: [2, 4])))
        XCTAssertEqual(logits.toArray(), z, "nothing written on a bad target")
        // A masked-out row's target is never read.
        XCTAssertNoThrow(try CrossEntropy.compute(logits: logits, targets: [0, 99], mask: try Tensor(shape: [2], values: [1, 0])))
        XCTAssertThrows(.shapeMismatch(argument: "targets", expected: "2 (one per row of logits)", got: "3"),
                        try CrossEntropy.compute(logits: logits, targets: [0, 1, 2]))
        XCTAssertThrows(.shapeMismatch(argument: "gradient", expected: "(2, 4) (logits' shape)", got: "(8,)"),
                        try CrossEntropy.compute(logits: logits, targets: [0, 1], gradient: try Tensor(shape: [8])))
        let cost = try CrossEntropy.cost(rows: 10, vocabulary: 32)
        XCTAssertEqual(cost.exps, 320, "one exp per logit: the gradient pass reuses the stored exps")
        XCTAssertEqual(cost.flops, 5 * 320)
        XCTAssertEqual(cost.minBytes, 4 * 320 * 2 + 120)
    }

    /// -inf logits (a masked vocabulary) get a zero gradient (below 1e-30: without
    /// AVX-512's vscalefps the vector exp clamps its input at 2^-126, not 0); a NaN
    /// logit makes its row's loss and gradient NaN (on the row path the max keeps it;
    /// on the 16-row block path its exp is NaN, which makes the row's sum NaN).
    func testInfiniteAndNaNLogitsOnEveryISA() throws {
        let original = try ISA.active
        defer { try? ISA.set(original) }
        for isa in ISA.supported {
            try ISA.set(isa)
            for V in [32, 40, 7, 5000] {
                // 20 rows: at V = 32 the first 16 go through the block path.
                let rows = 20
                var z = (0..<(rows * V)).map { Float(($0 * 37) % 11) * 0.25 - 1 }
                z[1] = -.infinity; z[V - 1] = -.infinity   // row 0: two masked classes
                if V > 512 { for c in 256..<512 { z[c] = -.infinity } }  // and a long run of them
                z[V + 3] = .nan                           // row 1: a NaN
                let logits = try Tensor(shape: [rows, V], values: z), grad = try Tensor(shape: [rows, V])
                let loss = try CrossEntropy.compute(logits: logits, targets: [0, 0] + (2..<rows).map { Int32($0 % V) }, gradient: grad)
                let g = grad.toArray()
                XCTAssertTrue(loss.meanLoss.isNaN && loss.losses[1].isNaN && loss.losses[0].isFinite, "\(isa) V=\(V): a NaN logit makes its row NaN")
                XCTAssertTrue(g[0..<V].allSatisfy(\.isFinite) && abs(g[1]) < 1e-30 && abs(g[V - 1]) < 1e-30, "\(isa) V=\(V): row 0 \(Array(g[0..<V]))")
                if V > 512 { XCTAssertTrue(g[256..<512].allSatisfy { abs($0) < 1e-30 }, "\(isa): a run of -inf logits has a zero gradient") }
                let row0 = Self.reference(z[0..<V].map(Double.init), 0)
                XCTAssertEqual(Double(loss.losses[0]), row0.loss, accuracy: 1e-5 * (1 + row0.loss), "\(isa) V=\(V): row 0's loss")
                XCTAssertTrue(g[V..<(2 * V)].allSatisfy(\.isNaN), "\(isa) V=\(V): row 1 must be NaN")
                XCTAssertTrue(g[(2 * V)...].allSatisfy(\.isFinite), "\(isa) V=\(V): rows 2...")
                XCTAssertTrue((2..<rows).allSatisfy { loss.losses[$0].isFinite }, "\(isa) V=\(V): rows 2... finite")
            }
        }
    }
}
