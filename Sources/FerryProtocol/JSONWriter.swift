/// Builds one JSON object into bytes, fields in call order.
///
/// Frames are written by hand rather than with `JSONEncoder` because the `msg` frame is the hot
/// path (encoded once per message and shared by every subscriber) and because a JSON payload must
/// be embedded verbatim, which `Encodable` cannot express.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8]
    private var needsComma = false

    public init(capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "{"))
    }

    /// Closes the object and returns its bytes.
    public consuming func finish() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    /// `,"name":` in one append: each append of its own checks the array's uniqueness and
    /// capacity, which cost more than the bytes (two frames of five keys per message).
    private mutating func key(_ name: StaticString) {
        let comma = needsComma
        needsComma = true
        bytes.append(addingCapacity: name.utf8CodeUnitCount + 4) { span in
            if comma { span.append(UInt8(ascii: ",")) }
            Self.quoted(name, into: &span)
            span.append(UInt8(ascii: ":"))
        }
    }

    private static func quoted(_ text: StaticString, into span: inout OutputSpan<UInt8>) {
        span.append(UInt8(ascii: "\""))
        let start = text.utf8Start
        for index in 0..<text.utf8CodeUnitCount { span.append(start[index]) }
        span.append(UInt8(ascii: "\""))
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        key(name)
        Self.appendString(value, to: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        key(name)
        if let value { Self.appendString(value, to: &bytes) } else { appendNull() }
    }

    /// A string known at compile time that needs no escaping (an `op` name).
    public mutating func field(_ name: StaticString, literal value: StaticString) {
        key(name)
        bytes.append(addingCapacity: value.utf8CodeUnitCount + 2) { Self.quoted(value, into: &$0) }
    }

    public mutating func field(_ name: StaticString, _ value: some BinaryInteger) {
        key(name)
        appendDecimal(value)
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        append(value ? "true" : "false")
    }

    /// A number that is whole when it can be (heartbeats of `20` rather than `20.0`).
    public mutating func field(_ name: StaticString, seconds value: Double) {
        key(name)
        if value == value.rounded(), abs(value) < 1e15 {
            bytes.append(contentsOf: String(Int64(value)).utf8)
        } else {
            bytes.append(contentsOf: String(value).utf8)
        }
    }

    /// Embeds bytes that are already valid JSON.
    public mutating func field(_ name: StaticString, rawJSON: some Collection<UInt8>) {
        key(name)
        bytes.append(contentsOf: rawJSON)
    }

    /// A nested object built by `body`.
    public mutating func field(_ name: StaticString, object body: (inout JSONWriter) -> Void) {
        key(name)
        var nested = JSONWriter(capacity: 64)
        body(&nested)
        bytes.append(contentsOf: nested.finish())
    }

    /// An object of string pairs, in the given order.
    public mutating func field(_ name: StaticString, pairs: [(String, String)]) {
        key(name)
        bytes.append(UInt8(ascii: "{"))
        for (index, pair) in pairs.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.appendString(pair.0, to: &bytes)
            bytes.append(UInt8(ascii: ":"))
            Self.appendString(pair.1, to: &bytes)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    /// An array whose elements are already-encoded JSON values.
    public mutating func field(_ name: StaticString, array elements: [[UInt8]]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (index, element) in elements.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: element)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    public mutating func nullField(_ name: StaticString) {
        key(name)
        appendNull()
    }

    private mutating func appendNull() {
        append("null")
    }

    private mutating func append(_ text: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// The integer's decimal digits, written without making a String.
    private mutating func appendDecimal(_ value: some BinaryInteger) {
        let negative = value < 0
        var magnitude = UInt64(value.magnitude)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for a UInt64's 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var start = buffer.count
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            bytes.append(addingCapacity: buffer.count - start + 1) { span in
                if negative { span.append(UInt8(ascii: "-")) }
                for index in start..<buffer.count { span.append(buffer[index]) }
            }
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends `value` as a JSON string literal, escaping quotes, backslashes and control characters.
    public static func appendString(_ value: String, to bytes: inout [UInt8]) {
        // Most strings (topics, ids) need no escaping: copy them whole, in one append.
        var value = value
        let plain = value.withUTF8 { utf8 in
            for byte in utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return false }
            bytes.append(addingCapacity: utf8.count + 2) { span in
                span.append(UInt8(ascii: "\""))
                for byte in utf8 { span.append(byte) }
                span.append(UInt8(ascii: "\""))
            }
            return true
        }
        if plain { return }
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case UInt8(ascii: "\n"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
            case 0x00..<0x20:
                bytes.append(contentsOf: Array("\\u00".utf8))
                bytes.append(hexDigits[Int(byte >> 4)])
                bytes.append(hexDigits[Int(byte & 0x0F)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
