import Foundation

/// This process's memory as the kernel accounts it (Linux `/proc/self/status`).
public enum ProcessMemory {
    /// Resident set size now (VmRSS), in bytes; nil where /proc is absent.
    public static func residentBytes() -> Int? { field("VmRSS:") }

    /// Peak resident set size so far (VmHWM), in bytes; nil where /proc is absent.
    public static func peakResidentBytes() -> Int? { field("VmHWM:") }

    /// A "Name:   1234 kB" line of /proc/self/status, in bytes.
    private static func field(_ name: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(name) {
            let parts = line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let value = parts.first.flatMap({ Int($0) }) else { return nil }
            return parts.count > 1 && parts[1] == "kB" ? value * 1024 : value
        }
        return nil
    }
}
