import CKernels
import Foundation

// Every kernel call of the engine goes through `kernel(_:_:cost:)`. While an
// OpProfiler is active (train-bench --profile), each call is timed on its
// own, from just before the C call to just after it, and its cost model is
// evaluated (only then: the cost closures cost nothing otherwise).

/// Runs one kernel call; throws its status as a named error.
@inline(__always)
func kernel(_ call: @autoclosure () -> kl_status, _ name: @autoclosure () -> String,
            cost: @autoclosure () -> kl_cost? = nil) throws {
    let status: kl_status
    if let profiler = OpProfiler.active {
        let start = OpProfiler.now()
        status = call()
        profiler.record(name(), seconds: OpProfiler.now() - start, cost: cost())
    } else {
        status = call()
    }
    if status != KL_OK { try check(status, name()) }
}

/// C = op(A) op(B) + beta C through kl_gemm (OpenBLAS), as one named op.
func gemm(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ lda: Int,
          _ b: UnsafePointer<Float>, _ ldb: Int, beta: Float, _ c: FloatPointer, _ ldc: Int, _ pool: OpaquePointer,
          _ name: @autoclosure () -> String) throws {
    try kernel(kl_gemm(ta ? KL_TRANS : KL_NO_TRANS, tb ? KL_TRANS : KL_NO_TRANS, Int32(m), Int32(n), Int32(k), 1, a, lda,
                       b, ldb, beta, c, ldc, pool), name(), cost: Cost.gemm(m, n, k, beta: beta))
}

/// Runs Swift-side work between kernels (residual copies, small loops) as
/// one named op, so a profile accounts for it too.
@inline(__always)
func timed(_ name: @autoclosure () -> String, cost: @autoclosure () -> kl_cost?, _ body: () throws -> Void) rethrows {
    if let profiler = OpProfiler.active {
        let start = OpProfiler.now()
        try body()
        profiler.record(name(), seconds: OpProfiler.now() - start, cost: cost())
    } else {
        try body()
    }
}

/// The cost models of the C kernels, as values (nil where a call fails).
enum Cost {
    private static func call(_ body: (UnsafeMutablePointer<kl_cost>) -> kl_status) -> kl_cost? {
        var c = kl_cost()
        return body(&c) == KL_OK ? c : nil
    }
    static func gemm(_ m: Int, _ n: Int, _ k: Int, beta: Float) -> kl_cost? { call { kl_gemm_cost(Int32(m), Int32(n), Int32(k), beta, $0) } }
    static func linear(_ rows: Int, _ i: Int, _ o: Int, bias: Bool, dx: Bool = true, _ pass: kl_pass) -> kl_cost? {
        call { kl_linear_cost(rows, Int32(i), Int32(o), bias ? 1 : 0, dx ? 1 : 0, pass, $0) }
    }
    static func act(_ kind: kl_activation, _ n: Int, _ pass: kl_pass, accumulate: Bool = false) -> kl_cost? {
        call { kl_act_cost(kind, n, pass, accumulate ? 1 : 0, $0) }
    }
    static func norm(rms: Bool, _ rows: Int, _ d: Int, _ pass: kl_pass, accumulate: Bool = false) -> kl_cost? {
        call { kl_norm_cost(rms ? 1 : 0, rows, Int32(d), pass, accumulate ? 1 : 0, $0) }
    }
    static func crossEntropy(_ rows: Int, _ V: Int, grad: Bool) -> kl_cost? { call { kl_cross_entropy_cost(rows, Int32(V), grad ? 1 : 0, $0) } }
    static func embedding(_ n: Int, _ d: Int, _ pass: kl_pass) -> kl_cost? { call { kl_embedding_cost(n, Int32(d), pass, $0) } }
    static func conv1d(_ B: Int, _ D: Int, _ L: Int, _ K: Int, _ pass: kl_pass) -> kl_cost? {
        call { kl_conv1d_cost(Int32(B), Int32(D), Int32(L), Int32(K), pass, $0) }
    }
    static func lstmCell(_ rows: Int, _ H: Int, _ pass: kl_pass) -> kl_cost? { call { kl_lstm_cell_cost(rows, H, pass, $0) } }
    static func attention(_ p: UnsafePointer<kl_attn_params>, _ pass: kl_pass) -> kl_cost? { call { kl_attn_cost(p, KL_IMPL_FUSED, pass, $0) } }
    static func scan(_ p: UnsafePointer<kl_scan_params>, _ pass: kl_pass) -> kl_cost? { call { kl_scan_cost(p, KL_IMPL_FUSED, pass, $0) } }
    static func adamw(_ n: Int) -> kl_cost? { call { kl_adamw_cost(n, $0) } }
    static func permute(_ elements: Int) -> kl_cost? { call { kl_permute_cost(elements, $0) } }
    static func rope(_ rows: Int, _ T: Int, _ rot: Int) -> kl_cost? { call { kl_rope_cost(rows, Int32(T), Int32(rot), $0) } }
    static func sumSquares(_ n: Int) -> kl_cost? { call { kl_sum_squares_cost(n, $0) } }
}

/// Times every kernel call the engine makes while it is `active`, summed by
/// scope and name (e.g. "attention fwd" / "qkv projection").
final class OpProfiler {
    /// The profiler kernel calls report to; set only around profiled steps,
    /// from the thread that runs them (the engine calls kernels from one thread).
    nonisolated(unsafe) static var active: OpProfiler?

    struct Entry {
        var scope: String, name: String
        var calls = 0
        var seconds = 0.0
        var flops = 0.0, bytes = 0.0, minBytes = 0.0
        var costed = true
    }

    /// Prefix of the ops recorded now (the model sets it per block and pass).
    var scope = ""
    private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    func record(_ name: String, seconds: Double, cost: kl_cost?) {
        let key = scope + "\u{1}" + name
        let i: Int
        if let found = index[key] {
            i = found
        } else {
            i = entries.count
            index[key] = i
            entries.append(Entry(scope: scope, name: name))
        }
        entries[i].calls += 1
        entries[i].seconds += seconds
        if let cost {
            entries[i].flops += cost.flops
            entries[i].bytes += cost.dram_bytes
            entries[i].minBytes += cost.min_bytes
        } else {
            entries[i].costed = false
        }
    }
}
