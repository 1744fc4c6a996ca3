import CKernels

/// Token embedding (`kl_embedding_fwd`/`_bwd`): rows of a `(V, d)` table
/// gathered by id, and the backward's scatter-add into the table's gradient.
public enum Embedding {
    /// `out[i] = table[ids[i]]`; `out` is `(ids.count, d)`.
    ///
    /// - Throws: `KernelLabError.shapeMismatch` naming `table` or `out`,
    ///   `.invalidArgument` naming `ids` for an id outside `0..<V`.
    public static func forward(ids: [Int32], table: Tensor, into out: Tensor, pool: ThreadPool? = nil) throws {
        let (V, d) = try tableShape(table)
        guard out.shape == [ids.count, d] else {
            throw KernelLabError.shapeMismatch(argument: "out", expected: "(n=\(ids.count), d=\(d))", got: describeShape(out.shape))
        }
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((table, out)) {
            ids.withUnsafeBufferPointer { i in
                pool.withUnsafePool { kl_embedding_fwd(ids.count, Int32(d), Int32(V), i.baseAddress, table.storage.base, out.storage.base, $0) }
            }
        }
        try checkIDs(status, "kl_embedding_fwd")
    }

    /// `gradTable[ids[i]] += gradOut[i]` (rows no id names are zeroed first
    /// unless `accumulate`).
    public static func backward(ids: [Int32], gradOut: Tensor, into gradTable: Tensor, accumulate: Bool = false,
                                pool: ThreadPool? = nil) throws {
        let (V, d) = try tableShape(gradTable, argument: "gradTable")
        guard gradOut.shape == [ids.count, d] else {
            throw KernelLabError.shapeMismatch(argument: "gradOut", expected: "(n=\(ids.count), d=\(d))", got: describeShape(gradOut.shape))
        }
        let pool = try pool ?? ThreadPool(threads: 1)
        let status = withExtendedLifetime((gradOut, gradTable)) {
            ids.withUnsafeBufferPointer { i in
                pool.withUnsafePool {
                    kl_embedding_bwd(ids.count, Int32(d), Int32(V), i.baseAddress, gradOut.storage.base, gradTable.storage.base,
                                     accumulate ? 1 : 0, $0)
                }
            }
        }
        try checkIDs(status, "kl_embedding_bwd")
    }

    private static func tableShape(_ table: Tensor, argument: String = "table") throws -> (Int, Int) {
        guard table.rank == 2, table.shape[0] >= 1, table.shape[1] >= 1, table.shape.allSatisfy({ $0 <= Int(Int32.max) }) else {
            throw KernelLabError.shapeMismatch(argument: argument, expected: "(V, d)", got: describeShape(table.shape))
        }
        return (table.shape[0], table.shape[1])
    }

    private static func checkIDs(_ status: kl_status, _ operation: String) throws {
        let detail = status == KL_OK ? "" : cString(kl_last_error())
        if detail.contains("ids[") {
            throw KernelLabError.invalidArgument(argument: "ids", reason: detail.replacingOccurrences(of: "embedding: ", with: ""))
        }
        try check(status, operation)
    }
}

extension Embedding {
    /// FLOPs and bytes of one call over `count` ids of width `dim`.
    public static func cost(count: Int, dim: Int, pass: KernelPass) throws -> KernelCost {
        var cost = kl_cost()
        try check(kl_embedding_cost(count, Int32(clamping: dim), pass.cValue, &cost), "kl_embedding_cost")
        return KernelCost(cost)
    }
}
