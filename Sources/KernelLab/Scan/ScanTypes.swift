import CKernels

/// Options of one selective-scan call (everything but the tensors).
public struct ScanOptions: Sendable, Equatable {
    /// Pass delta + delta_bias through softplus before the scan (Mamba does).
    public var deltaSoftplus: Bool
    /// The fused scan's tiles for this call; `nil` takes the defaults. Saved
    /// chunk states are laid out by them: a backward given saved states must
    /// use the tiles of their forward.
    public var tiles: ScanTiles?

    /// Creates options; the default uses delta + delta_bias as given.
    public init(deltaSoftplus: Bool = false, tiles: ScanTiles? = nil) {
        self.deltaSoftplus = deltaSoftplus
        self.tiles = tiles
    }
}

/// Tile sizes of the fused scan (`kl_scan_tiles`), per call: time steps per
/// chunk (1...65536) and channels per backward work item (1...4096, rounded
/// up to 16); 0 takes the default.
public struct ScanTiles: Sendable, Equatable {
    public var chunk: Int
    public var blockChannels: Int

    public init(chunk: Int = 0, blockChannels: Int = 0) {
        self.chunk = chunk
        self.blockChannels = blockChannels
    }
}

/// The sizes of one selective-scan call: u, delta, z and out are (B, D, L),
/// A is (D, N), B and C are (B, G, N, L), the states are (B, D, N).
public struct ScanShape: Sendable, Hashable, Codable, CustomStringConvertible {
    /// B, the batch size.
    public let batch: Int
    /// D, the channels.
    public let channels: Int
    /// L, the sequence length.
    public let seqLen: Int
    /// N, the state size per channel.
    public let state: Int
    /// G, the groups sharing B and C: channel d uses group d / (D / G).
    public let groups: Int

    /// Creates a shape.
    ///
    /// - Throws: `KernelLabError.invalidArgument` naming the dimension unless
    ///   every size is in 1...Int32.max (the C API takes `int`),
    ///   `state <= maxState`, `groups` divides `channels` and B·D·L is at
    ///   most `maxElements`.
    public init(batch: Int, channels: Int, seqLen: Int, state: Int, groups: Int = 1) throws {
        try checkCDimensions([("batch", batch), ("channels", channels), ("seqLen", seqLen),
                              ("state", state), ("groups", groups)])
        guard state <= ScanShape.maxState else {
            throw KernelLabError.invalidArgument(argument: "state", reason: "must be at most \(ScanShape.maxState), got \(state)")
        }
        guard channels % groups == 0 else {
            throw KernelLabError.invalidArgument(argument: "groups", reason: "must divide channels (\(channels)), got \(groups)")
        }
        // Each factor is below 2^31, so the products cannot overflow Int.
        guard batch * channels * seqLen <= ScanShape.maxElements else {
            throw KernelLabError.invalidArgument(
                argument: "shape", reason: "B*D*L = \(batch * channels * seqLen) exceeds the C API limit of \(ScanShape.maxElements)")
        }
        self.batch = batch
        self.channels = channels
        self.seqLen = seqLen
        self.state = state
        self.groups = groups
    }

    /// The largest state size N the kernels accept.
    public static let maxState = 1024
    /// The largest B·D·L the kernels accept (2^40).
    public static let maxElements = 1 << 40

    /// (B, D, L): the shape of u, delta, z, out and their gradients.
    public var sequenceShape: [Int] { [batch, channels, seqLen] }
    /// (D, N): the shape of A and dA.
    public var transitionShape: [Int] { [channels, state] }
    /// (B, G, N, L): the shape of B and C (and dB, dC) with explicit groups.
    public var projectionShape: [Int] { [batch, groups, state, seqLen] }
    /// (D,): the shape of D and delta_bias.
    public var channelShape: [Int] { [channels] }
    /// (B, D, N): the shape of h0 and the last state.
    public var stateShape: [Int] { [batch, channels, state] }
    /// B·D·L, the number of (batch, channel, step) elements of the sequence.
    public var elements: Int { batch * channels * seqLen }

    /// "B×D×L×N×G", e.g. `1x1024x4096x16x1`.
    public var description: String {
        "\(batch)x\(channels)x\(seqLen)x\(state)x\(groups)"
    }

    enum CodingKeys: String, CodingKey {
        case batch, channels
        case seqLen = "seq"
        case state, groups
    }

    /// Calls `body` with the C parameters of a call with this shape; the
    /// tiles pointer in them is valid only inside `body`.
    func withCParams<R>(_ options: ScanOptions, _ body: (UnsafePointer<kl_scan_params>) throws -> R) rethrows -> R {
        var tiles = kl_scan_tiles(chunk: Int32(clamping: options.tiles?.chunk ?? 0),
                                  block_channels: Int32(clamping: options.tiles?.blockChannels ?? 0))
        return try withUnsafePointer(to: &tiles) { tilesPointer in
            var params = kl_scan_params(
                batch: Int32(batch), channels: Int32(channels), seq_len: Int32(seqLen),
                state: Int32(state), groups: Int32(groups),
                delta_softplus: options.deltaSoftplus ? 1 : 0,
                tiles: options.tiles == nil ? nil : tilesPointer)
            return try withUnsafePointer(to: &params) { try body($0) }
        }
    }
}

/// The gradients of a selective scan, each shaped like its input.
public struct ScanGradients: Sendable {
    /// d loss / d u, (B, D, L).
    public let du: Tensor
    /// d loss / d delta, (B, D, L) (with respect to the raw delta, before bias and softplus).
    public let ddelta: Tensor
    /// d loss / d A, (D, N).
    public let dA: Tensor
    /// d loss / d B, shaped like B: (B, G, N, L) or (B, N, L).
    public let dB: Tensor
    /// d loss / d C, shaped like C.
    public let dC: Tensor
    /// d loss / d D, (D); nil when D was not given.
    public let dD: Tensor?
    /// d loss / d z, (B, D, L); nil when z was not given.
    public let dz: Tensor?
    /// d loss / d delta_bias, (D); nil when delta_bias was not given.
    public let ddeltaBias: Tensor?
    /// d loss / d h0, (B, D, N): the gradient into the initial state, which
    /// is zero when h0 is not given (the gradient is still defined).
    public let dh0: Tensor
}
