/// The NumPy `.npy` format (versions 1.0, 2.0, 3.0) restricted to what
/// KernelLab stores: little-endian float32 ('<f4') in C order.
///
/// Layout: the magic "\x93NUMPY", a major and a minor version byte, the
/// header length (little-endian UInt16 for 1.0, UInt32 for 2.0 and 3.0),
/// then the header: a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with
/// spaces and ended by '\n', so the data starts at a multiple of 64 bytes.
enum Npy {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
    /// Magic plus the two version bytes.
    static let leadLength = 8
    /// NumPy refuses longer headers by default as a guard against hostile files; so do we.
    static let maxHeaderLength = 1 << 20

    /// Parses the magic and version; returns how many bytes encode the header length.
    static func headerLengthFieldSize(lead: [UInt8]) throws(NpyFormatError) -> Int {
        guard lead.count == leadLength else {
            throw NpyFormatError("file is too short to be a .npy file (\(lead.count) bytes)")
        }
        guard Array(lead[0..<6]) == magic else {
            throw NpyFormatError("bad magic: the file does not start with \"\\x93NUMPY\", so it is not a NumPy .npy file")
        }
        let (major, minor) = (lead[6], lead[7])
        switch (major, minor) {
        case (1, 0): return 2
        case (2, 0), (3, 0): return 4
        default:
            throw NpyFormatError("format version \(major).\(minor) is not supported (supported: 1.0, 2.0, 3.0)")
        }
    }

    /// Decodes the little-endian header length field.
    static func headerLength(field: [UInt8]) -> Int {
        field.reversed().reduce(0) { $0 << 8 | Int($1) }
    }

    /// Parses the header dict and returns the array's shape, rejecting every
    /// dtype other than '<f4' and Fortran order with a reason a user can act on.
    static func parseShape(header: [UInt8]) throws(NpyFormatError) -> [Int] {
        var parser = PythonLiteralParser(bytes: header)
        guard case .dict(let dict) = try parser.parseValue() else {
            throw NpyFormatError("the header is not a Python dict")
        }
        try parser.expectEnd()

        var descr: PythonLiteral?
        var fortranOrder: PythonLiteral?
        var shape: PythonLiteral?
        for (key, value) in dict {
            switch key {
            case "descr": descr = value
            case "fortran_order": fortranOrder = value
            case "shape": shape = value
            default: throw NpyFormatError("the header has an unexpected key '\(key)'")
            }
        }
        guard let descr else { throw NpyFormatError("the header has no 'descr' key") }
        guard let fortranOrder else { throw NpyFormatError("the header has no 'fortran_order' key") }
        guard let shape else { throw NpyFormatError("the header has no 'shape' key") }

        guard case .string(let dtype) = descr else {
            throw NpyFormatError("structured dtypes are not supported; save a plain float32 ('<f4') array")
        }
        switch dtype {
        case "<f4":
            break
        case ">f4":
            throw NpyFormatError("dtype '>f4' is big-endian; save as little-endian float32 ('<f4'), e.g. a.astype('<f4')")
        default:
            throw NpyFormatError("dtype '\(dtype)' is not supported; save as float32 ('<f4'), e.g. a.astype(np.float32)")
        }
        guard case .bool(let isFortran) = fortranOrder else {
            throw NpyFormatError("'fortran_order' must be True or False")
        }
        guard !isFortran else {
            throw NpyFormatError("Fortran-order (column-major) arrays are not supported; save a C-order array, e.g. np.ascontiguousarray(a)")
        }
        guard case .tuple(let items) = shape else {
            throw NpyFormatError("'shape' must be a tuple of integers")
        }
        var dims: [Int] = []
        for item in items {
            guard case .int(let extent) = item, extent >= 0 else {
                throw NpyFormatError("'shape' must be a tuple of non-negative integers")
            }
            dims.append(extent)
        }
        guard dims.count <= Tensor.maxRank else {
            throw NpyFormatError("shape \(describeShape(dims)) has \(dims.count) dimensions; at most \(Tensor.maxRank) are supported")
        }
        return dims
    }

    /// The complete version 1.0 preamble and header for a '<f4' C-order array,
    /// padded so that the data starts at a multiple of 64 bytes.
    static func encodeHeader(shape: [Int]) -> [UInt8] {
        // describeShape prints Python tuple syntax: (), (5,), (2, 3).
        var text = Array("{'descr': '<f4', 'fortran_order': False, 'shape': \(describeShape(shape)), }".utf8)
        let unpadded = leadLength + 2 + text.count + 1  // + length field, + '\n'
        text += [UInt8](repeating: UInt8(ascii: " "), count: (64 - unpadded % 64) % 64)
        text.append(UInt8(ascii: "\n"))
        // A rank <= 8 shape keeps the header far below the 65535 bytes of a 1.0 header.
        precondition(text.count <= Int(UInt16.max))
        let length = UInt16(text.count)
        return magic + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + text
    }
}

/// Why a `.npy` file was rejected; wrapped into `KernelLabError.npy` with the path.
struct NpyFormatError: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// The Python literals that appear in a `.npy` header.
enum PythonLiteral: Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case none
    case tuple([PythonLiteral])
    case list([PythonLiteral])
    case dict([(key: String, value: PythonLiteral)])

    static func == (lhs: PythonLiteral, rhs: PythonLiteral) -> Bool {
        switch (lhs, rhs) {
        case let (.string(a), .string(b)): a == b
        case let (.int(a), .int(b)): a == b
        case let (.bool(a), .bool(b)): a == b
        case (.none, .none): true
        case let (.tuple(a), .tuple(b)), let (.list(a), .list(b)): a == b
        case let (.dict(a), .dict(b)): a.map(\.key) == b.map(\.key) && a.map(\.value) == b.map(\.value)
        default: false
        }
    }
}

/// A recursive-descent parser for the subset of Python literal syntax that
/// NumPy writes into headers (it never needs `eval`).
struct PythonLiteralParser {
    private let bytes: [UInt8]
    private var position = 0
    /// Nesting bound, so a hostile header cannot exhaust the stack.
    private static let maxDepth = 16

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func parseValue(depth: Int = 0) throws(NpyFormatError) -> PythonLiteral {
        guard depth < PythonLiteralParser.maxDepth else { throw failure("nesting too deep") }
        skipWhitespace()
        guard let byte = peek() else { throw failure("unexpected end of header") }
        switch byte {
        case UInt8(ascii: "'"), UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "("):
            return .tuple(try parseSequence(closer: UInt8(ascii: ")"), depth: depth))
        case UInt8(ascii: "["):
            return .list(try parseSequence(closer: UInt8(ascii: "]"), depth: depth))
        case UInt8(ascii: "{"):
            return .dict(try parseDict(depth: depth))
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"):
            return .int(try parseInt())
        default:
            let word = parseWord()
            switch word {
            case "True": return .bool(true)
            case "False": return .bool(false)
            case "None": return .none
            default: throw failure("unexpected token '\(word.isEmpty ? String(UnicodeScalar(byte)) : word)'")
            }
        }
    }

    /// Fails unless only whitespace remains.
    mutating func expectEnd() throws(NpyFormatError) {
        skipWhitespace()
        if position < bytes.count { throw failure("unexpected text after the dict") }
    }

    private func peek() -> UInt8? {
        position < bytes.count ? bytes[position] : nil
    }

    private mutating func skipWhitespace() {
        while let byte = peek(), byte == 0x20 || byte == 0x0A || byte == 0x09 || byte == 0x0D {
            position += 1
        }
    }

    private mutating func expect(_ byte: UInt8) throws(NpyFormatError) {
        skipWhitespace()
        guard peek() == byte else { throw failure("expected '\(Character(UnicodeScalar(byte)))'") }
        position += 1
    }

    private mutating func parseString() throws(NpyFormatError) -> String {
        let quote = bytes[position]
        position += 1
        var content: [UInt8] = []
        while let byte = peek() {
            position += 1
            if byte == quote { return String(decoding: content, as: UTF8.self) }
            if byte == UInt8(ascii: "\\") {
                guard let escaped = peek() else { break }
                position += 1
                content.append(escaped)
            } else {
                content.append(byte)
            }
        }
        throw failure("unterminated string")
    }

    private mutating func parseInt() throws(NpyFormatError) -> Int {
        var text = ""
        if let sign = peek(), sign == UInt8(ascii: "-") || sign == UInt8(ascii: "+") {
            text.append(Character(UnicodeScalar(sign)))
            position += 1
        }
        while let byte = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
            text.append(Character(UnicodeScalar(byte)))
            position += 1
        }
        // Python 2 NumPy wrote long integers with an 'L' suffix, e.g. (3L, 4L).
        if peek() == UInt8(ascii: "L") { position += 1 }
        guard let value = Int(text) else { throw failure("invalid integer '\(text)'") }
        return value
    }

    private mutating func parseWord() -> String {
        var word = ""
        while let byte = peek(), byte.isASCIILetterOrDigit {
            word.append(Character(UnicodeScalar(byte)))
            position += 1
        }
        return word
    }

    private mutating func parseSequence(closer: UInt8, depth: Int) throws(NpyFormatError) -> [PythonLiteral] {
        position += 1  // opener
        var items: [PythonLiteral] = []
        while true {
            skipWhitespace()
            if peek() == closer { position += 1; return items }
            items.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            if peek() == UInt8(ascii: ",") { position += 1; continue }
            try expect(closer)
            return items
        }
    }

    private mutating func parseDict(depth: Int) throws(NpyFormatError) -> [(key: String, value: PythonLiteral)] {
        position += 1  // '{'
        var entries: [(key: String, value: PythonLiteral)] = []
        while true {
            skipWhitespace()
            if peek() == UInt8(ascii: "}") { position += 1; return entries }
            guard case .string(let key) = try parseValue(depth: depth + 1) else {
                throw failure("dict keys must be strings")
            }
            guard !entries.contains(where: { $0.key == key }) else { throw failure("duplicate key '\(key)'") }
            try expect(UInt8(ascii: ":"))
            entries.append((key, try parseValue(depth: depth + 1)))
            skipWhitespace()
            if peek() == UInt8(ascii: ",") { position += 1; continue }
            try expect(UInt8(ascii: "}"))
            return entries
        }
    }

    private func failure(_ what: String) -> NpyFormatError {
        NpyFormatError("malformed header: \(what) at offset \(position)")
    }
}

extension UInt8 {
    fileprivate var isASCIILetterOrDigit: Bool {
        (0x30...0x39).contains(self) || (0x41...0x5A).contains(self) || (0x61...0x7A).contains(self) || self == 0x5F
    }
}
