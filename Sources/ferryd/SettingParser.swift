import FerryPostgres
import FerryProtocol
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

extension SettingParser where Value == UInt64 {
    /// A whole number in `range`.
    static func count(in range: ClosedRange<UInt64> = 0...UInt64.max) -> Self {
        Self(accepts: "a whole number" + bounds(range, String.init)) { text in
            try accepted(UInt64(text.trimmingCharacters(in: .whitespaces)).flatMap { range.contains($0) ? $0 : nil })
        }
    }

    /// Bytes with an optional `K`/`M`/`G`/`T` suffix (``Quantity/bytes(_:)``).
    static func size(in range: ClosedRange<UInt64> = 0...UInt64.max) -> Self {
        Self(accepts: Quantity.bytesAccepted + bounds(range, Quantity.formatBytes)) { text in
            try accepted(Quantity.bytes(text).flatMap { range.contains($0) ? $0 : nil })
        }
    }

    /// Plain seconds or a number with a unit (``Quantity/milliseconds(_:)``); in milliseconds.
    static func duration(in range: ClosedRange<UInt64> = 0...UInt64.max) -> Self {
        Self(accepts: Quantity.durationAccepted + bounds(range) { "\($0)ms" }) { text in
            try accepted(Quantity.milliseconds(text).flatMap { range.contains($0) ? $0 : nil })
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

extension SettingParser where Value == PostgresStoreConfiguration {
    /// A PostgreSQL URL; it may hold a password, so it is never written back.
    static var postgresURL: Self {
        Self(accepts: "postgres://user[:password]@host[:port]/database", isSecret: true) { text in
            try PostgresStoreConfiguration(url: text)
        }
    }
}
