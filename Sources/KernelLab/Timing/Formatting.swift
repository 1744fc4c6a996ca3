import Foundation

/// A byte count for people: "512 B", "1.2 KiB", "3.4 MiB", "1.0 GiB".
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while abs(value) >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
}

/// Lays out rows (the first is the header) in columns separated by two
/// spaces; columns whose index is in `rightAligned` are right-aligned.
func formatTable(_ rows: [[String]], rightAligned: Set<Int> = []) -> String {
    let columns = rows.map(\.count).max() ?? 0
    var widths = [Int](repeating: 0, count: columns)
    for row in rows {
        for (index, cell) in row.enumerated() {
            widths[index] = max(widths[index], cell.count)
        }
    }
    return rows.map { row in
        var line = row.enumerated().map { index, cell in
            let padding = String(repeating: " ", count: widths[index] - cell.count)
            return rightAligned.contains(index) ? padding + cell : cell + padding
        }
        .joined(separator: "  ")
        while line.last == " " { line.removeLast() }
        return line
    }
    .joined(separator: "\n")
}

/// Encodes `value` as JSON with sorted keys (stable, diffable output).
func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
