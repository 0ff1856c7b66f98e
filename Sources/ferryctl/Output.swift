import Foundation

/// A plain text table: a header row and aligned columns, two spaces apart.
struct Table {
    let header: [String]
    private(set) var rows: [[String]] = []

    init(_ header: String...) {
        self.header = header
    }

    mutating func add(_ cells: String...) {
        rows.append(cells)
    }

    var text: String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// Label and value lines, the labels aligned.
func fields(_ pairs: [(String, String)]) -> String {
    let width = pairs.map(\.0.count).max() ?? 0
    return pairs.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
}

/// Output for humans and for scripts.
enum Format {
    /// `1.5 KiB`, `12.0 MiB`: sizes in binary units.
    static func bytes(_ count: some BinaryInteger) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// `850ms`, `12s`, `5m 03s`, `2h 07m`, `3d 04h`.
    static func duration(milliseconds: UInt64) -> String {
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        let seconds = milliseconds / 1000
        switch seconds {
        case ..<60: return "\(seconds)s"
        case ..<3600: return String(format: "%dm %02ds", seconds / 60, seconds % 60)
        case ..<86400: return String(format: "%dh %02dm", seconds / 3600, seconds % 3600 / 60)
        default: return String(format: "%dd %02dh", seconds / 86400, seconds % 86400 / 3600)
        }
    }

    /// How long ago a time in milliseconds since 1970 was.
    static func ago(_ timestamp: UInt64) -> String {
        let now = UInt64(Date().timeIntervalSince1970 * 1000)
        return duration(milliseconds: now > timestamp ? now - timestamp : 0) + " ago"
    }

    /// Messages per second with one decimal.
    static func rate(_ perSecond: Double) -> String {
        String(format: "%.1f/s", perSecond)
    }

    static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }

    /// The broker's JSON answer as received, one document per line.
    static func printBody(_ data: Data) {
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }

    /// A value as sorted-key JSON, for what `ferryctl` computes itself.
    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        printBody(try encoder.encode(value))
    }

    static func printError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// True when standard output (or `fd`) is a terminal, where live views and progress bars belong.
    static func isTerminal(_ fd: Int32 = STDOUT_FILENO) -> Bool {
        isatty(fd) == 1
    }
}
