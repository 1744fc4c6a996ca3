import KernelLab
import XCTest

/// Whole-model checks of the training engine: the gradient of the masked
/// loss against central finite differences for every parameter tensor of
/// every block kind (each kernel is checked against float64 on its own;
/// these check the wiring: layouts, transposes, residuals, accumulation).
final class ModelGradientTests: XCTestCase {
    private func randomBatch(_ config: ModelConfig, batch: Int, seq: Int, seed: UInt64) -> TokenBatch {
        let b = TokenBatch(batch: batch, seq: seq)
        var rng = SplitMix64(seed: seed)
        for i in 0..<(batch * seq) {
            b.tokens[i] = Int32(rng.next() % UInt64(config.vocabulary))
            b.targets[i] = Int32(rng.next() % UInt64(config.vocabulary))
            b.mask[i] = rng.next() % 3 == 0 ? 0 : 1  // some positions do not count
        }
        return b
    }

    private func checkGradients(_ config: ModelConfig, batch: Int = 2, seq: Int = 7, threads: Int = 1,
                                file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try LanguageModel(config: config, seed: 7)
        try model.prepare(batch: batch, seq: seq, threads: threads)
        let data = randomBatch(config, batch: batch, seq: seq, seed: 11)
        model.zeroGradients()
        let base = try model.forward(data, training: true)
        XCTAssertGreaterThan(base.count, 0)
        try model.backward()
        func loss() throws -> Double { try model.forward(data, training: false).mean }
        var rng = SplitMix64(seed: 3)
        for entry in model.table.entries {
            let analytic = try model.gradient(entry.name)
            // A few indices per tensor, the largest gradient among them.
            var indices = (0..<3).map { _ in Int(rng.next() % UInt64(entry.count)) }
            indices.append(analytic.indices.max { abs(analytic[$0]) < abs(analytic[$1]) }!)
            for index in indices {
                let saved = model[parameter: entry.name, index]
                let h: Float = Float(ProcessInfo.processInfo.environment["FD_H"] ?? "") ?? 2e-3
                model[parameter: entry.name, index] = saved + h
                let plus = try loss()
                model[parameter: entry.name, index] = saved - h
                let minus = try loss()
                model[parameter: entry.name, index] = saved
                let numeric = (plus - minus) / Double(2 * h)
                let got = Double(analytic[index])
                let tolerance = 3e-2 * max(abs(numeric), abs(got)) + 2e-4
                XCTAssertLessThanOrEqual(abs(numeric - got), tolerance,
                                         "\(config.pattern) \(entry.name)[\(index)]: analytic \(got), numeric \(numeric)",
                                         file: file, line: line)
            }
        }
    }

    func testTransformerNoPE() throws {
        try checkGradients(try ModelConfig(vocabulary: 11, dModel: 16, pattern: "AA", heads: 2, position: .nope))
    }

    func testTransformerRoPEUntied() throws {
        try checkGradients(try ModelConfig(vocabulary: 11, dModel: 16, pattern: "AA", heads: 2, position: .rope,
                                           rotaryDims: 4, tiedEmbeddings: false))
    }

    func testTransformerALiBiTwoThreads() throws {
        try checkGradients(try ModelConfig(vocabulary: 11, dModel: 16, pattern: "A", heads: 4, position: .alibi), threads: 2)
    }

    func testTransformerHardALiBi() throws {
        // Windows 1 and 2 on two heads, two unlimited: the copy paper's layout.
        try checkGradients(try ModelConfig(vocabulary: 11, dModel: 16, pattern: "A", heads: 4, position: .hardAlibi), seq: 9)
    }

    func testMamba() throws {
        try checkGradients(try ModelConfig(vocabulary: 11, dModel: 8, pattern: "MM", dState: 4), seq: 9)
    }

    func testLSTM() throws {
        try checkGradients(try ModelConfig(vocabulary: 11, dModel: 8, pattern: "LL"), seq: 6)
    }

    func testHybrid() throws {
        try checkGradients(try ModelConfig(vocabulary: 11, dModel: 16, pattern: "MAL", heads: 2, position: .rope, rotaryDims: 2,
                                           dState: 4), seq: 5, threads: 2)
    }
}
