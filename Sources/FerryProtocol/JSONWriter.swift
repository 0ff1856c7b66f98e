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

    /// One field: its key, then what `value` writes in at most `maxBytes`, in one append (an
    /// append per byte checks the array's uniqueness and capacity each time).
    private mutating func field(_ name: StaticString, maxBytes: Int, _ value: (inout JSONOutput) -> Void) {
        let first = !needsComma
        needsComma = true
        JSONOutput.append(to: &bytes, maxBytes: JSONOutput.keyBytes(name) + maxBytes, firstField: first) { output in
            output.key(name)
            value(&output)
        }
    }

    public mutating func field(_ name: StaticString, _ value: String) {
        field(name, maxBytes: JSONOutput.stringBytes(value)) { $0.string(value) }
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        if let value { field(name, value) } else { nullField(name) }
    }

    /// A string known at compile time that needs no escaping (an `op` name).
    public mutating func field(_ name: StaticString, literal value: StaticString) {
        field(name, maxBytes: value.utf8CodeUnitCount + 2) { $0.quoted(value) }
    }

    public mutating func field(_ name: StaticString, _ value: some BinaryInteger) {
        field(name, maxBytes: JSONOutput.maxIntegerBytes) { $0.decimal(value) }
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        field(name, maxBytes: 5) { $0.raw(value ? "true" : "false") }
    }

    /// A number that is whole when it can be (heartbeats of `20` rather than `20.0`).
    public mutating func field(_ name: StaticString, seconds value: Double) {
        let text = value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        field(name, rawJSON: Array(text.utf8))
    }

    /// Embeds bytes that are already valid JSON.
    public mutating func field(_ name: StaticString, rawJSON: some Collection<UInt8>) {
        field(name, maxBytes: rawJSON.count) { output in
            if rawJSON.withContiguousStorageIfAvailable({ output.raw(UnsafeRawBufferPointer($0)) }) == nil {
                output.raw(Array(rawJSON))
            }
        }
    }

    /// A nested object built by `body`.
    public mutating func field(_ name: StaticString, object body: (inout JSONWriter) -> Void) {
        var nested = JSONWriter(capacity: 64)
        body(&nested)
        field(name, rawJSON: nested.finish())
    }

    /// An object of string pairs, in the given order.
    public mutating func field(_ name: StaticString, pairs: [(String, String)]) {
        field(name, maxBytes: JSONOutput.pairsBytes(pairs)) { $0.pairs(pairs) }
    }

    /// An array whose elements are already-encoded JSON values.
    public mutating func field(_ name: StaticString, array elements: [[UInt8]]) {
        field(name, maxBytes: elements.reduce(2) { $0 + $1.count + 1 }) { output in
            output.byte(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.byte(UInt8(ascii: ",")) }
                output.raw(element)
            }
            output.byte(UInt8(ascii: "]"))
        }
    }

    public mutating func nullField(_ name: StaticString) {
        field(name, maxBytes: 4) { $0.raw("null") }
    }

    /// Appends `value` as a JSON string literal, escaping quotes, backslashes and control characters.
    public static func appendString(_ value: String, to bytes: inout [UInt8]) {
        JSONOutput.append(to: &bytes, maxBytes: JSONOutput.stringBytes(value)) { $0.string(value) }
    }
}
