import FerryPostgres
import Foundation

/// How a setting's text becomes a value, and what it accepts (said when it refuses a text).
///
/// A flag and its `FERRY_*` variable go through the same parser, so a value means the same
/// whichever way it is given.
struct SettingParser<Value> {
    /// What the setting accepts, in words: "a whole number, at least 1".
    let accepts: String
    /// A secret is never written back in a message.
    var isSecret = false
    /// The value; throws ``SettingRefused`` (or an error that says why) when the text is not accepted.
    let parse: (String) throws -> Value
}

/// A setting's text is not one its parser accepts.
struct SettingRefused: Error {}

/// The value, or ``SettingRefused`` when there is none.
private func accepted<Value>(_ value: Value?) throws -> Value {
    guard let value else { throw SettingRefused() }
    return value
}

/// " from 1 to 256M", ", at least 1", or nothing for every value. Bounds from `Int.max` up are
/// what the value's type holds, not worth a word.
private func bounds(_ range: ClosedRange<UInt64>, _ format: (UInt64) -> String) -> String {
    switch (range.lowerBound, range.upperBound >= UInt64(Int.max)) {
    case (0, true): ""
    case (let lower, true): ", at least \(format(lower))"
    case (let lower, false): " from \(format(lower)) to \(format(range.upperBound))"
    }
}

/// A non-negative number with an optional unit suffix, as a whole count of the smallest unit,
/// or nil past what a `UInt64` holds (and for `inf`, `nan` and negatives).
private func scaled(_ text: String, units: [(suffix: String, factor: Double)]) -> UInt64? {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    let (number, factor) =
        units.first { trimmed.hasSuffix($0.suffix) && trimmed.count > $0.suffix.count }
        .map { (trimmed.dropLast($0.suffix.count).trimmingCharacters(in: .whitespaces), $0.factor) } ?? (trimmed, 1)
    if let whole = UInt64(number), factor == 1 { return whole }
    guard let value = Double(number), value.isFinite, value >= 0, value * factor < 0x1p64 else { return nil }
    return UInt64(value * factor)
}

extension SettingParser where Value == UInt64 {
    /// A whole number in `range`.
    static func count(in range: ClosedRange<UInt64> = 0...UInt64.max) -> Self {
        Self(accepts: "a whole number" + bounds(range, String.init)) { text in
            try accepted(UInt64(text.trimmingCharacters(in: .whitespaces)).flatMap { range.contains($0) ? $0 : nil })
        }
    }

    /// Bytes with an optional `K`/`M`/`G`/`T` suffix (powers of 1024; `KB`, `KiB` also read).
    static func size(in range: ClosedRange<UInt64> = 0...UInt64.max) -> Self {
        let units = ["k", "m", "g", "t"].enumerated().flatMap { power, letter in
            let factor = Double(UInt64(1) << (10 * (power + 1)))
            return [(letter + "ib", factor), (letter + "b", factor), (letter, factor)]
        }
        return Self(accepts: "a size in bytes, with an optional K, M, G or T suffix (e.g. 512M)" + bounds(range, formatSize)) { text in
            try accepted(scaled(text, units: units + [("b", 1)]).flatMap { range.contains($0) ? $0 : nil })
        }
    }

    /// Plain seconds or a number with a unit (`500ms`, `30s`, `10m`, `24h`, `7d`); in milliseconds.
    static func duration(in range: ClosedRange<UInt64> = 0...UInt64.max) -> Self {
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        return Self(accepts: "a duration: seconds, or a number with ms, s, m, h or d (e.g. 500ms, 30s, 7d)" + bounds(range) { "\($0)ms" }) {
            text in
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            // Plain numbers are seconds.
            let milliseconds = Double(trimmed) == nil ? scaled(trimmed, units: units) : scaled(trimmed + "s", units: units)
            return try accepted(milliseconds.flatMap { range.contains($0) ? $0 : nil })
        }
    }
}

extension SettingParser {
    /// What `parser` accepts, or `unlimited` (also `none`, `0`) for nil.
    static func unlimitedOr(_ parser: SettingParser<UInt64>) -> SettingParser<UInt64?> {
        SettingParser<UInt64?>(accepts: parser.accepts + "; or unlimited (also none or 0)") { text in
            ["unlimited", "none", "0"].contains(text.trimmingCharacters(in: .whitespaces).lowercased()) ? nil : try parser.parse(text)
        }
    }

    /// One of `choices`' names, in any case.
    static func oneOf(_ choices: [(name: String, value: Value)]) -> Self {
        Self(accepts: "one of " + choices.map(\.name).joined(separator: ", ")) { text in
            try accepted(choices.first { $0.name == text.lowercased() }?.value)
        }
    }
}

extension SettingParser where Value == String {
    /// An IPv4 or IPv6 address, or a host name (letters, digits and `-` in `.`-separated labels).
    static var host: Self {
        Self(accepts: "an IP address or a host name") { text in
            var address = in6_addr()
            if inet_pton(AF_INET, text, &address) == 1 || inet_pton(AF_INET6, text, &address) == 1 { return text }
            let labels = text.split(separator: ".", omittingEmptySubsequences: false)
            let valid =
                text.utf8.count <= 253
                && labels.allSatisfy { label in
                    (1...63).contains(label.utf8.count) && label.first != "-" && label.last != "-"
                        && label.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-") }
                }
            return try accepted(valid ? text : nil)
        }
    }

    /// A folder, or a path where one can be made: not an existing file.
    static var folder: Self {
        Self(accepts: "a folder (made when missing), not a file") { text in
            var isFolder: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: text, isDirectory: &isFolder)
            return try accepted(!exists || isFolder.boolValue ? text : nil)
        }
    }

    /// The path of a file this process can read.
    static var readableFile: Self {
        Self(accepts: "a readable file") { text in
            var isFolder: ObjCBool = false
            let isFile = FileManager.default.fileExists(atPath: text, isDirectory: &isFolder) && !isFolder.boolValue
            return try accepted(isFile && FileManager.default.isReadableFile(atPath: text) ? text : nil)
        }
    }

    /// A bearer token: visible ASCII, since a header cannot carry the rest and the bearer parse
    /// trims spaces (a token ending in a newline from a secrets file would never match).
    static var bearerToken: Self {
        Self(accepts: "visible ASCII characters, without spaces", isSecret: true) { text in
            try accepted(text.utf8.allSatisfy { (0x21...0x7E).contains($0) } ? text : nil)
        }
    }

    /// Text of at least `bytes` bytes, shown to no one.
    static func secret(atLeast bytes: Int) -> Self {
        Self(accepts: "at least \(bytes) bytes", isSecret: true) { text in try accepted(text.utf8.count >= bytes ? text : nil) }
    }
}

/// `65536` as `64K`, `268435456` as `256M`: the largest unit that divides it.
private func formatSize(_ bytes: UInt64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
        return "\(bytes >> shift)\(suffix)"
    }
    return "\(bytes)"
}

extension SettingParser where Value == PostgresStoreConfiguration {
    /// A PostgreSQL URL; it may hold a password, so it is never written back.
    static var postgresURL: Self {
        Self(accepts: "postgres://user[:password]@host[:port]/database", isSecret: true) { text in
            try PostgresStoreConfiguration(url: text)
        }
    }
}
