import CKernels
@testable import KernelLab
import XCTest

/// kl_heads_split / kl_heads_merge (the engine's layout moves) against the
/// index map they state: x (B, T, P, H, e) <-> y (P, B, H, T, e), on ragged
/// sizes, for rows of e floats and for e = 1 (the tiled transpose path).
final class LayoutTests: XCTestCase {
    func testSplitAndMergeFollowTheIndexMap() throws {
        for (B, T, P, H, e) in [(2, 37, 3, 5, 8), (3, 19, 2, 45, 1), (1, 1, 1, 1, 1), (2, 33, 2, 17, 1), (1, 16, 2, 16, 1)] {
            for threads in [1, 2] {
                let pool = try ThreadPool(threads: threads)
                let n = B * T * P * H * e
                let x = (0..<n).map { Float($0) }
                var y = [Float](repeating: -1, count: n), back = [Float](repeating: -1, count: n)
                pool.withUnsafePool { handle in
                    XCTAssertEqual(kl_heads_split(Int32(B), Int32(T), Int32(P), Int32(H), Int32(e), x, &y, handle), KL_OK)
                    XCTAssertEqual(kl_heads_merge(Int32(B), Int32(T), Int32(P), Int32(H), Int32(e), y, &back, handle), KL_OK)
                }
                var wrong = 0
                for b in 0..<B { for t in 0..<T { for p in 0..<P { for h in 0..<H { for i in 0..<e {
                    let from = (((b * T + t) * P + p) * H + h) * e + i
                    let to = (((p * B + b) * H + h) * T + t) * e + i
                    if y[to] != x[from] { wrong += 1 }
                } } } } }
                XCTAssertEqual(wrong, 0, "split B\(B) T\(T) P\(P) H\(H) e\(e), \(threads) threads")
                XCTAssertTrue(back == x, "merge is not split's inverse at B\(B) T\(T) P\(P) H\(H) e\(e), \(threads) threads")
            }
        }
    }

    func testBadSizesAreErrors() throws {
        let pool = try ThreadPool(threads: 1)
        var y = [Float](repeating: 0, count: 4)
        let x = [Float](repeating: 0, count: 4)
        pool.withUnsafePool { handle in
            XCTAssertEqual(kl_heads_split(1, 0, 1, 4, 1, x, &y, handle), KL_ERR_INVALID_ARGUMENT)
            XCTAssertEqual(kl_heads_merge(1, 4, 1, 1, 1, nil, &y, handle), KL_ERR_INVALID_ARGUMENT)
        }
    }
}
