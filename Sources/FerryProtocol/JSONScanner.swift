/// A strict RFC 8259 scanner that validates JSON text without building a tree.
///
/// Ferry must deliver a JSON payload exactly as it was published (same key order, same number
/// text), so frames are not decoded into Foundation values: the scanner validates the whole text
/// and hands out the byte range of each top-level member, which the frame decoder reads as typed
/// fields and keeps verbatim where the payload lives.
public struct JSONScanner: Sendable {
    /// The kind of a JSON value, from its first byte.
    public enum Kind: Sendable, Equatable {
        case object, array, string, number, bool, null
    }

    /// One member of a top-level object: where its key is and the exact bytes of its value.
    ///
    /// The key stays a byte range: decoding every key into a `String` cost more than the rest of
    /// a publish frame's scan, and lookups by a known name can compare bytes.
    public struct Member: Sendable {
        /// The key's string token, quotes included.
        public let keyRange: Range<Int>
        public let kind: Kind
        public let value: Range<Int>
        /// The key has escapes: its bytes are not its text.
        public let keyEscaped: Bool
        /// The value is a string with escapes; a string without them is its bytes between the quotes.
        public let valueEscaped: Bool

        /// The decoded key; `text` is the scanned text this member came from.
        public func key(in text: [UInt8]) -> String {
            (try? JSONScanner.string(in: text, keyRange)) ?? ""
        }

        /// Whether the key is `name`, compared as bytes unless the key has escapes (most lookups
        /// end at the length).
        public func hasKey(_ name: StaticString, in text: [UInt8]) -> Bool {
            let expected = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
            if keyEscaped { return key(in: text).utf8.elementsEqual(expected) }
            guard keyRange.count - 2 == expected.count else { return false }
            return text.withUnsafeBytes { bytes in
                UnsafeRawBufferPointer(rebasing: bytes[(keyRange.lowerBound + 1)..<(keyRange.upperBound - 1)]).elementsEqual(expected)
            }
        }
    }

    /// Why a text is not valid JSON; `offset` is the byte where scanning stopped.
    public struct SyntaxError: Error, Sendable, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    /// Deeper nesting than this is refused so hostile input cannot exhaust memory.
    public static let maxDepth = 512

    // Not private: the string scanning (JSONScanner+Strings.swift) reads and moves them.
    let bytes: [UInt8]
    var index = 0
    /// A string skipped since this was last cleared had an escape.
    var sawEscape = false

    private init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    /// Validates `bytes` as one JSON value (surrounding whitespace allowed) and returns its kind.
    public static func validate(_ bytes: [UInt8]) throws(SyntaxError) -> Kind {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        let kind = try scanner.skipValue()
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { throw scanner.error("trailing characters") }
        return kind
    }

    /// Validates `bytes` as a JSON object and returns its members in order.
    /// Returns nil when the text is valid JSON but not an object.
    public static func members(of bytes: [UInt8]) throws(SyntaxError) -> [Member]? {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        guard scanner.peek == UInt8(ascii: "{") else {
            _ = try validate(bytes)
            return nil
        }
        let members = try scanner.scanObjectMembers()
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { throw scanner.error("trailing characters") }
        return members
    }

    /// Members of the object whose bytes are `range` of `bytes` (already validated).
    public static func members(of bytes: [UInt8], in range: Range<Int>) throws(SyntaxError) -> [Member] {
        var scanner = JSONScanner(bytes)
        scanner.index = range.lowerBound
        return try scanner.scanObjectMembers()
    }

    /// The element ranges of the array whose bytes are `range` of `bytes` (already validated).
    public static func elements(of bytes: [UInt8], in range: Range<Int>) throws(SyntaxError) -> [(kind: Kind, value: Range<Int>)] {
        var scanner = JSONScanner(bytes)
        scanner.index = range.lowerBound + 1
        var elements: [(kind: Kind, value: Range<Int>)] = []
        scanner.skipWhitespace()
        if scanner.peek == UInt8(ascii: "]") { return elements }
        while true {
            scanner.skipWhitespace()
            let start = scanner.index
            let kind = try scanner.skipValue()
            elements.append((kind, start..<scanner.index))
            scanner.skipWhitespace()
            if try scanner.consumeSeparator(closing: UInt8(ascii: "]")) { return elements }
        }
    }

    /// Decodes the JSON string whose bytes (quotes included) are `range` of `bytes`.
    public static func string(in bytes: [UInt8], _ range: Range<Int>) throws(SyntaxError) -> String {
        var scanner = JSONScanner(bytes)
        scanner.index = range.lowerBound
        return try scanner.scanString()
    }

    // MARK: - Scanning

    var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

    func error(_ reason: String) -> SyntaxError {
        SyntaxError(offset: index, reason: reason)
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// After a member or element: consumes `,` (returns false) or the closing bracket (returns true).
    private mutating func consumeSeparator(closing: UInt8) throws(SyntaxError) -> Bool {
        switch peek {
        case UInt8(ascii: ","): index += 1; return false
        case closing: index += 1; return true
        default: throw error("expected ',' or '\(Character(Unicode.Scalar(closing)))'")
        }
    }

    private mutating func scanObjectMembers() throws(SyntaxError) -> [Member] {
        index += 1  // {
        var members: [Member] = []
        members.reserveCapacity(8)  // a frame's handful, without regrowing
        skipWhitespace()
        if peek == UInt8(ascii: "}") {
            index += 1
            return members
        }
        while true {
            skipWhitespace()
            guard peek == UInt8(ascii: "\"") else { throw error("expected a key") }
            let keyStart = index
            sawEscape = false
            try skipString()
            let keyRange = keyStart..<index
            let keyEscaped = sawEscape
            skipWhitespace()
            guard peek == UInt8(ascii: ":") else { throw error("expected ':'") }
            index += 1
            skipWhitespace()
            let start = index
            sawEscape = false
            let kind = try skipValue()
            members.append(
                Member(keyRange: keyRange, kind: kind, value: start..<index, keyEscaped: keyEscaped, valueEscaped: kind == .string && sawEscape))
            skipWhitespace()
            if try consumeSeparator(closing: UInt8(ascii: "}")) { return members }
        }
    }

    /// Skips one value iteratively (no recursion, so nesting depth cannot overflow the stack).
    private mutating func skipValue() throws(SyntaxError) -> Kind {
        guard let first = peek else { throw error("expected a value") }
        let kind: Kind
        switch first {
        case UInt8(ascii: "{"): kind = .object
        case UInt8(ascii: "["): kind = .array
        default: return try skipScalar()
        }
        var open = OpenContainers()
        // Each iteration is positioned where a value is expected, or after a container opened.
        while true {
            skipWhitespace()
            guard let byte = peek else { throw error("unexpected end") }
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard open.depth < Self.maxDepth else { throw error("nesting too deep") }
                let isObject = byte == UInt8(ascii: "{")
                index += 1
                skipWhitespace()
                if peek == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    index += 1  // an empty container is a whole value
                } else {
                    open.push(isObject: isObject)
                    if isObject { try skipKeyAndColon() }
                    continue
                }
            default:
                _ = try skipScalar()
            }
            // A value just ended: close containers or move to the next member or element.
            while let isObject = open.innermostIsObject {
                skipWhitespace()
                if try consumeSeparator(closing: isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    open.pop()
                } else {
                    if isObject {
                        skipWhitespace()
                        try skipKeyAndColon()
                    }
                    break
                }
            }
            if open.depth == 0 { return kind }
        }
    }

    /// The containers open around the scanner, one bit each (object or array): the usual
    /// shallow payload is skipped without allocating; deeper ones spill into an array.
    private struct OpenContainers {
        private var shallow: UInt64 = 0
        private var deep: [Bool] = []
        private(set) var depth = 0

        mutating func push(isObject: Bool) {
            if depth < 64 {
                shallow = isObject ? shallow | 1 << depth : shallow & ~(1 << depth)
            } else {
                deep.append(isObject)
            }
            depth += 1
        }

        mutating func pop() {
            depth -= 1
            if depth >= 64 { deep.removeLast() }
        }

        var innermostIsObject: Bool? {
            guard depth > 0 else { return nil }
            return depth > 64 ? deep[depth - 65] : shallow & 1 << (depth - 1) != 0
        }
    }

    private mutating func skipKeyAndColon() throws(SyntaxError) {
        guard peek == UInt8(ascii: "\"") else { throw error("expected a key") }
        try skipString()
        skipWhitespace()
        guard peek == UInt8(ascii: ":") else { throw error("expected ':'") }
        index += 1
    }

    private mutating func skipScalar() throws(SyntaxError) -> Kind {
        guard let first = peek else { throw error("expected a value") }
        switch first {
        case UInt8(ascii: "\""):
            try skipString()
            return .string
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try skipNumber()
            return .number
        default:
            throw error("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(SyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end") }
        for offset in 0..<count where bytes[index + offset] != literal.utf8Start[offset] {
            throw error("invalid literal")
        }
        index += count
    }

    private mutating func skipDigits() -> Int {
        let start = index
        while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
            index += 1
        }
        return index - start
    }

    private mutating func skipNumber() throws(SyntaxError) {
        if peek == UInt8(ascii: "-") { index += 1 }
        if peek == UInt8(ascii: "0") {
            index += 1
        } else if skipDigits() == 0 {
            throw error("invalid number")
        }
        if peek == UInt8(ascii: ".") {
            index += 1
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() > 0 else { throw error("invalid number") }
        }
    }
}
