/// Big-endian encoding for keys and records, so LMDB's byte order is numeric order.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 32) {
        bytes.reserveCapacity(capacity)
    }

    mutating func append(_ value: UInt64) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ value: UInt32) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ value: UInt16) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func append(_ value: UInt8) {
        bytes.append(value)
    }

    mutating func append(_ raw: some Sequence<UInt8>) {
        bytes.append(contentsOf: raw)
    }

    /// A string with a 16-bit length prefix.
    mutating func appendShortString(_ string: String) {
        append(UInt16(clamping: string.utf8.count))
        bytes.append(contentsOf: string.utf8.prefix(Int(UInt16.max)))
    }
}

/// Reads what `ByteWriter` wrote; every read checks bounds and throws on short input.
struct ByteReader {
    let bytes: [UInt8]
    var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    private mutating func take(_ count: Int) throws(StoreError) -> ArraySlice<UInt8> {
        guard count >= 0, offset + count <= bytes.count else { throw StoreError.corrupted("record too short") }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func uint64() throws(StoreError) -> UInt64 {
        try take(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    mutating func uint32() throws(StoreError) -> UInt32 {
        try take(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func uint16() throws(StoreError) -> UInt16 {
        try take(2).reduce(0) { $0 << 8 | UInt16($1) }
    }

    mutating func uint8() throws(StoreError) -> UInt8 {
        try take(1).first ?? 0
    }

    mutating func shortString() throws(StoreError) -> String {
        let length = Int(try uint16())
        return String(decoding: try take(length), as: UTF8.self)
    }

    /// Everything left.
    mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }

    mutating func restString() -> String {
        String(decoding: rest(), as: UTF8.self)
    }
}

extension UInt64 {
    /// Reads a big-endian UInt64 at `offset` of raw bytes, or nil when too short.
    static func bigEndian(_ raw: some Collection<UInt8>, at offset: Int = 0) -> UInt64? {
        guard raw.count >= offset + 8 else { return nil }
        return raw.dropFirst(offset).prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}
