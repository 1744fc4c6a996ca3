import Foundation

/// Training checkpoints in the safetensors format: an 8-byte little-endian
/// header length, a JSON header, then the fp32 data. The header's
/// `__metadata__` holds the model config, the training options and the step
/// (strings, as the format requires); the tensors are every parameter by
/// name, then AdamW's two moments as flat buffers (`optimizer.m`,
/// `optimizer.v`, the parameter table's layout). Files are written whole or
/// not at all; a reader checks every field against the file before it copies
/// a byte, so a truncated, corrupt or mismatched file is a clear error.
public enum Checkpoint {
    public static let format = "kernellab-checkpoint-1"
    /// The largest header accepted (safetensors caps it at 100 MB too).
    static let maxHeaderBytes = 100 << 20

    /// Writes the trainer's whole state to `path` (whole or not at all).
    public static func save(_ trainer: Trainer, to path: String) throws {
        let model = trainer.model, table = model.table
        var header: [String: Any] = [
            "__metadata__": ["format": format, "config": model.config.jsonString,
                             "training": trainer.options.jsonString, "step": String(trainer.step),
                             "threads": String(trainer.threads)],
        ]
        var offset = 0
        var pieces: [(UnsafeMutablePointer<Float>, Int)] = []
        for entry in table.entries {
            header[entry.name] = ["dtype": "F32", "shape": entry.shape, "data_offsets": [offset, offset + entry.count * 4]]
            pieces.append((model.params.base + entry.offset, entry.count))
            offset += entry.count * 4
        }
        for (name, buffer) in [("optimizer.m", trainer.m), ("optimizer.v", trainer.v)] {
            header[name] = ["dtype": "F32", "shape": [table.count], "data_offsets": [offset, offset + table.count * 4]]
            pieces.append((buffer.base, table.count))
            offset += table.count * 4
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad with spaces to 8 bytes, so the data is aligned (the format allows it).
        while json.count % 8 != 0 { json.append(0x20) }
        var length = UInt64(json.count).littleEndian
        try writeFileAtomically(path) { file in
            try withUnsafeBytes(of: &length) { try file.write($0, reportedPath: path) }
            try json.withUnsafeBytes { try file.write($0, reportedPath: path) }
            for (base, count) in pieces {
                try file.write(UnsafeRawBufferPointer(start: base, count: count * 4), reportedPath: path)
            }
        }
    }

    /// What a checkpoint holds besides its tensors.
    public struct Metadata: Sendable {
        public let config: ModelConfig
        public let options: TrainingOptions
        public let step: Int
        public let threads: Int
    }

    /// Reads the header of `path` and checks every tensor's entry against the file.
    public static func metadata(_ path: String) throws -> Metadata {
        try read(path).metadata
    }

    /// Restores `trainer` (parameters, moments, step) from `path`. The
    /// checkpoint's config and training options must equal the trainer's.
    ///
    /// - Throws: `KernelLabError.io` for an unreadable file, `.invalidArgument`
    ///   naming the field of a corrupt or mismatched one.
    public static func load(_ path: String, into trainer: Trainer) throws {
        let file = try read(path)
        let model = trainer.model
        if file.metadata.config != model.config {
            let theirs = file.metadata.config.jsonObject, ours = model.config.jsonObject
            let field = Set(theirs.keys).union(ours.keys).sorted().first { "\(theirs[$0] ?? "none")" != "\(ours[$0] ?? "none")" } ?? "config"
            throw KernelLabError.invalidArgument(argument: "checkpoint",
                                                 reason: "'\(path)' holds another model: \(field) is \(theirs[field] ?? "absent") there, \(ours[field] ?? "absent") here")
        }
        if file.metadata.options != trainer.options {
            let theirs = file.metadata.options.jsonObject, ours = trainer.options.jsonObject
            let field = theirs.keys.sorted().first { "\(theirs[$0]!)" != "\(ours[$0] ?? "none")" } ?? "training"
            throw KernelLabError.invalidArgument(argument: "checkpoint",
                                                 reason: "'\(path)' was trained with \(field) = \(theirs[field]!), this run has \(ours[field] ?? "none"); resume with the same options")
        }
        let table = model.table
        for entry in table.entries {
            try file.copy(entry.name, count: entry.count, into: model.params.base + entry.offset)
        }
        try file.copy("optimizer.m", count: table.count, into: trainer.m.base)
        try file.copy("optimizer.v", count: table.count, into: trainer.v.base)
        trainer.step = file.metadata.step
    }

    private struct File {
        let path: String
        let bytes: [UInt8]
        let dataStart: Int
        let tensors: [String: (shape: [Int], begin: Int, end: Int)]
        let metadata: Metadata

        func fail(_ reason: String) -> KernelLabError {
            .invalidArgument(argument: "checkpoint", reason: "'\(path)': \(reason)")
        }

        func copy(_ name: String, count: Int, into destination: UnsafeMutablePointer<Float>) throws {
            guard let tensor = tensors[name] else { throw fail("has no tensor '\(name)'") }
            guard tensor.end - tensor.begin == count * 4 else {
                throw fail("tensor '\(name)' holds \((tensor.end - tensor.begin) / 4) floats, the model needs \(count)")
            }
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(destination).copyMemory(from: raw.baseAddress! + dataStart + tensor.begin, byteCount: count * 4)
            }
        }
    }

    private static func read(_ path: String) throws -> File {
        let file = try FileDescriptor.openForReading(path)
        guard let size = try file.regularFileSize() else { throw KernelLabError.io(path: path, reason: "is not a regular file") }
        func fail(_ reason: String) -> KernelLabError { .invalidArgument(argument: "checkpoint", reason: "'\(path)': \(reason)") }
        guard size >= 8 else { throw fail("is \(size) bytes, too short for a safetensors header") }
        let bytes = try file.read(count: size)
        guard bytes.count == size else { throw fail("changed while being read") }
        let length = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(min(size - 8, maxHeaderBytes)) else {
            throw fail("header length \(length) exceeds the file (\(size) bytes) or the \(maxHeaderBytes)-byte limit: truncated or not a checkpoint")
        }
        let dataStart = 8 + Int(length)
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])), let header = object as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        guard let meta = header["__metadata__"] as? [String: String] else { throw fail("has no __metadata__ of strings") }
        guard meta["format"] == format else {
            throw fail("format is \(meta["format"].map { "'\($0)'" } ?? "missing"), expected '\(format)'")
        }
        guard let configText = meta["config"] else { throw fail("__metadata__ has no config") }
        let config = try ModelConfig.decode(Data(configText.utf8), source: path + " (config)")
        guard let trainingText = meta["training"] else { throw fail("__metadata__ has no training options") }
        let options = try TrainingOptions.decode(Data(trainingText.utf8), source: path + " (training)")
        guard let step = meta["step"].flatMap(Int.init), step >= 0 else { throw fail("__metadata__ step is missing or not a count") }
        let threads = meta["threads"].flatMap(Int.init) ?? 1
        let dataBytes = size - dataStart
        var tensors: [String: (shape: [Int], begin: Int, end: Int)] = [:]
        var spans: [(Int, Int, String)] = []
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any] else { throw fail("tensor '\(name)' is not an object") }
            guard entry["dtype"] as? String == "F32" else { throw fail("tensor '\(name)' has dtype \(entry["dtype"] ?? "none"), expected F32") }
            guard let shape = entry["shape"] as? [Int], shape.allSatisfy({ $0 >= 0 }),
                  let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail("tensor '\(name)' needs a shape and two data_offsets")
            }
            let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataBytes else {
                throw fail("tensor '\(name)' spans bytes \(offsets[0])..<\(offsets[1]) of \(dataBytes) data bytes: truncated or corrupt")
            }
            guard count < Int.max / 4, offsets[1] - offsets[0] == count * 4 else {
                throw fail("tensor '\(name)' of shape \(shape) needs \(count) floats, its offsets hold \((offsets[1] - offsets[0]) / 4)")
            }
            tensors[name] = (shape, offsets[0], offsets[1])
            spans.append((offsets[0], offsets[1], name))
        }
        spans.sort { $0.0 < $1.0 }
        for (a, b) in zip(spans, spans.dropFirst()) where b.0 < a.1 {
            throw fail("tensors '\(a.2)' and '\(b.2)' overlap")
        }
        let metadata = Metadata(config: config, options: options, step: step, threads: threads)
        // Every parameter of the model the config describes, with its shape.
        let model = try ParameterTableBuilder.table(for: config)
        for entry in model.entries {
            guard let tensor = tensors[entry.name] else { throw fail("has no tensor '\(entry.name)'") }
            guard tensor.shape == entry.shape else {
                throw fail("tensor '\(entry.name)' has shape \(tensor.shape), the config makes \(entry.shape)")
            }
        }
        for name in ["optimizer.m", "optimizer.v"] {
            guard tensors[name]?.shape == [model.count] else { throw fail("tensor '\(name)' is missing or not (\(model.count),)") }
        }
        return File(path: path, bytes: bytes, dataStart: dataStart, tensors: tensors, metadata: metadata)
    }
}

// MARK: - JSON of the training options

extension TrainingOptions {
    var jsonObject: [String: Any] {
        ["steps": steps, "lr": Double(learningRate), "warmup": warmup, "decay": decay.rawValue,
         "min_lr_fraction": Double(minLearningRateFraction), "weight_decay": Double(weightDecay), "beta1": Double(beta1),
         "beta2": Double(beta2), "eps": Double(epsilon), "clip": Double(clip), "accumulation": accumulation,
         "batch": batch, "seq": seq, "seed": String(seed)]
    }

    var jsonString: String {
        String(decoding: try! JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys]), as: UTF8.self)
    }

    static func decode(_ data: Data, source: String) throws -> TrainingOptions {
        guard case .object(let fields) = try StrictJSON.decode(data, argument: "training", source: source) else {
            throw KernelLabError.invalidArgument(argument: "training", reason: "'\(source)' must hold a JSON object")
        }
        var r = StrictFieldReader(fields: fields, path: "training", source: source)
        func need<T>(_ value: T?, _ key: String) throws -> T {
            guard let value else { throw r.error(key, "is required") }
            return value
        }
        let steps = try need(r.integer("steps", minimum: 1), "steps")
        let lr = try need(r.number("lr"), "lr")
        let warmup = try need(r.integer("warmup", minimum: 0), "warmup")
        let decayName = try need(r.string("decay"), "decay")
        guard let decay = Decay(rawValue: decayName) else { throw r.error("decay", "unknown '\(decayName)'") }
        let options = TrainingOptions(
            steps: steps, learningRate: Float(lr), warmup: warmup, decay: decay,
            minLearningRateFraction: Float(try need(r.number("min_lr_fraction"), "min_lr_fraction")),
            weightDecay: Float(try need(r.number("weight_decay"), "weight_decay")),
            beta1: Float(try need(r.number("beta1"), "beta1")), beta2: Float(try need(r.number("beta2"), "beta2")),
            epsilon: Float(try need(r.number("eps"), "eps")), clip: Float(try need(r.number("clip"), "clip")),
            accumulation: try need(r.integer("accumulation", minimum: 1), "accumulation"),
            batch: try need(r.integer("batch", minimum: 1), "batch"), seq: try need(r.integer("seq", minimum: 1), "seq"),
            seed: try need(r.string("seed").flatMap(UInt64.init), "seed"))
        try r.rejectUnknown()
        try options.validate()
        return options
    }
}
