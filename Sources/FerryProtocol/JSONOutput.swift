/// JSON written straight into memory whose size was worked out first: the one pass that encodes
/// the per-message frames (`msg`, `published`) into an array of the right size, and the
/// primitives every ``JSONWriter`` field is made of.
///
/// Appending to an array byte by byte checks its uniqueness and capacity each time, which cost
/// more than the bytes themselves; here a frame reserves its room once. Every write checks that it
/// fits (a compare, not a call): a size worked out wrongly stops the process rather than writing
/// past the memory.
struct JSONOutput: ~Copyable {
    private let buffer: UnsafeMutableBufferPointer<UInt8>
    /// Bytes written, from the buffer's start.
    private(set) var count: Int
    private var needsComma = false

    /// Writes into `buffer` from `start`, the first field of an object being next.
    init(_ buffer: UnsafeMutableBufferPointer<UInt8>, from start: Int, firstField: Bool = true) {
        self.buffer = buffer
        count = start
        needsComma = !firstField
    }

    /// A JSON object of at most `maxBytes` bytes (braces included), written by `body` in one pass.
    static func object(maxBytes: Int, _ body: (inout JSONOutput) -> Void) -> [UInt8] {
        [UInt8].written(capacity: maxBytes) { buffer in
            var output = JSONOutput(buffer, from: 0)
            output.byte(UInt8(ascii: "{"))
            body(&output)
            output.byte(UInt8(ascii: "}"))
            return output.count
        }
    }

    /// Writes through `body` into room for `maxBytes` more bytes at the end of `bytes`.
    static func append(to bytes: inout [UInt8], maxBytes: Int, firstField: Bool = true, _ body: (inout JSONOutput) -> Void) {
        bytes.append(addingCapacity: maxBytes) { span in
            span.withUnsafeMutableBufferPointer { buffer, initialized in
                var output = JSONOutput(buffer, from: initialized, firstField: firstField)
                body(&output)
                initialized = output.count
            }
        }
    }

    @inline(__always)
    private mutating func reserve(_ length: Int) {
        precondition(length <= buffer.count - count, "JSON output past its reserved size")
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        reserve(1)
        buffer[count] = value
        count += 1
    }

    @inline(__always)
    mutating func raw(_ bytes: UnsafeRawBufferPointer) {
        reserve(bytes.count)
        UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[count..<(count + bytes.count)])).copyMemory(from: bytes)
        count += bytes.count
    }

    /// Bytes that are already valid JSON.
    mutating func raw(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw($0) }
    }

    /// Text known at compile time, written as it is (`true`, `null`).
    @inline(__always)
    mutating func raw(_ text: StaticString) {
        raw(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// `,"name":`, the comma before any but the first field. At most `keyBytes(name)`.
    @inline(__always)
    mutating func key(_ name: StaticString) {
        if needsComma { byte(UInt8(ascii: ",")) }
        needsComma = true
        quoted(name)
        byte(UInt8(ascii: ":"))
    }

    static func keyBytes(_ name: StaticString) -> Int { name.utf8CodeUnitCount + 4 }

    /// A string known at compile time that needs no escaping (an `op` name).
    @inline(__always)
    mutating func quoted(_ text: StaticString) {
        byte(UInt8(ascii: "\""))
        raw(text)
        byte(UInt8(ascii: "\""))
    }

    /// Room for any integer: a sign and 20 digits.
    static let maxIntegerBytes = 21

    /// The integer's decimal digits, written without making a String.
    mutating func decimal(_ value: some BinaryInteger) {
        if value < 0 { byte(UInt8(ascii: "-")) }
        var magnitude = UInt64(value.magnitude)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for a UInt64's 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var start = buffer.count
            repeat {
                start -= 1
                buffer[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            raw(UnsafeRawBufferPointer(rebasing: buffer[start...]))
        }
    }

    /// The exact length of `value` as a JSON string literal (quotes included).
    static func stringBytes(_ value: String) -> Int {
        var value = value
        return value.withUTF8 { utf8 in
            var length = utf8.count + 2
            for byte in utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                length += Self.escaped(byte).utf8CodeUnitCount - 1
            }
            return length
        }
    }

    /// `value` as a JSON string literal, escaping quotes, backslashes and control characters;
    /// `stringBytes(value)` long.
    mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            byte(UInt8(ascii: "\""))
            var run = 0
            for (index, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                raw(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8[run..<index])))
                Self.escaped(byte).withUTF8Buffer { raw(UnsafeRawBufferPointer($0)) }
                run = index + 1
            }
            raw(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8[run...])))
            byte(UInt8(ascii: "\""))
        }
    }

    /// An object of string pairs, in the given order; `pairsBytes(pairs)` long at most.
    mutating func pairs(_ pairs: [(String, String)]) {
        byte(UInt8(ascii: "{"))
        for (index, pair) in pairs.enumerated() {
            if index > 0 { byte(UInt8(ascii: ",")) }
            string(pair.0)
            byte(UInt8(ascii: ":"))
            string(pair.1)
        }
        byte(UInt8(ascii: "}"))
    }

    static func pairsBytes(_ pairs: [(String, String)]) -> Int {
        pairs.reduce(2) { $0 + stringBytes($1.0) + stringBytes($1.1) + 2 }
    }

    /// The escape of a byte JSON strings cannot hold as it is.
    private static func escaped(_ byte: UInt8) -> StaticString {
        switch byte {
        case UInt8(ascii: "\""): "\\\""
        case UInt8(ascii: "\\"): "\\\\"
        case UInt8(ascii: "\n"): "\\n"
        case UInt8(ascii: "\r"): "\\r"
        case UInt8(ascii: "\t"): "\\t"
        default: controlEscapes[Int(byte)]
        }
    }

    /// `\u0000` … `\u001f`, by byte.
    private static let controlEscapes: [StaticString] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\u0008", "\\u0009", "\\u000a", "\\u000b", "\\u000c", "\\u000d", "\\u000e", "\\u000f",
        "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
        "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ]
}
