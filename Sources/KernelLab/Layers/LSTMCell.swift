import CKernels

/// The fused LSTM cell (`kl_lstm_cell_fwd`/`_bwd`): the four gates'
/// pre-activations `[i | f | g | o]` in, `c` and `h` out, and back. The
/// projections that make the gates are `GEMM` calls.
public enum LSTMCell {
    /// `c = sigmoid(f) cPrev + sigmoid(i) tanh(g)`, `h = sigmoid(o) tanh(c)`;
    /// `gates` is `(rows, 4H)`, the rest `(rows, H)`.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming the tensor that does not fit.
    public static func forward(gates: Tensor, cPrev: Tensor, c: Tensor, h: Tensor, pool: ThreadPool? = nil) throws {
        let (rows, H) = try shapes(gates: gates, [("cPrev", cPrev), ("c", c), ("h", h)])
        try checkDistinct(outputs: [("c", c), ("h", h)], inputs: [("gates", gates), ("cPrev", cPrev)])
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((gates, cPrev, c, h)) {
            pool.withUnsafePool { kl_lstm_cell_fwd(rows, H, gates.storage.base, cPrev.storage.base, c.storage.base, h.storage.base, $0) }
        }
        try check(status, "kl_lstm_cell_fwd")
    }

    /// `dGates` `(rows, 4H)` and `dcPrev` from `dh` and `dcNext` (the
    /// gradient reaching `c` from the next step; nil at the last step).
    public static func backward(gates: Tensor, cPrev: Tensor, c: Tensor, dh: Tensor, dcNext: Tensor?, dGates: Tensor,
                                dcPrev: Tensor, pool: ThreadPool? = nil) throws {
        var rowTensors = [("cPrev", cPrev), ("c", c), ("dh", dh), ("dcPrev", dcPrev)]
        if let dcNext { rowTensors.append(("dcNext", dcNext)) }
        let (rows, H) = try shapes(gates: gates, rowTensors)
        guard dGates.shape == gates.shape else {
            throw KernelLabError.shapeMismatch(argument: "dGates", expected: describeShape(gates.shape), got: describeShape(dGates.shape))
        }
        try checkDistinct(outputs: [("dGates", dGates), ("dcPrev", dcPrev)],
                          inputs: [("gates", gates), ("cPrev", cPrev), ("c", c), ("dh", dh)] + (dcNext.map { [("dcNext", $0)] } ?? []))
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((gates, cPrev, c, dh, dcNext, dGates, dcPrev)) {
            pool.withUnsafePool {
                kl_lstm_cell_bwd(rows, H, gates.storage.base, cPrev.storage.base, c.storage.base, dh.storage.base,
                                 dcNext?.storage.base, dGates.storage.base, dcPrev.storage.base, $0)
            }
        }
        try check(status, "kl_lstm_cell_bwd")
    }

    private static func shapes(gates: Tensor, _ rowTensors: [(String, Tensor)]) throws -> (Int, Int) {
        guard gates.rank == 2, gates.shape[1] >= 4, gates.shape[1] % 4 == 0 else {
            throw KernelLabError.shapeMismatch(argument: "gates", expected: "(rows, 4H)", got: describeShape(gates.shape))
        }
        let (rows, H) = (gates.shape[0], gates.shape[1] / 4)
        for (name, tensor) in rowTensors where tensor.shape != [rows, H] {
            throw KernelLabError.shapeMismatch(argument: name, expected: "(rows=\(rows), H=\(H))", got: describeShape(tensor.shape))
        }
        return (rows, H)
    }
}

extension LSTMCell {
    /// FLOPs, exps and bytes of one call on `rows` rows of `hidden` units.
    public static func cost(rows: Int, hidden: Int, pass: KernelPass) throws -> KernelCost {
        var cost = kl_cost()
        try check(kl_lstm_cell_cost(rows, hidden, pass.cValue, &cost), "kl_lstm_cell_cost")
        return KernelCost(cost)
    }
}
