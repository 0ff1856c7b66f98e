extension Array where Element == UInt8 {
    /// An array of at most `capacity` bytes, as many as `body` writes into the buffer it is given
    /// and returns. Not `init(unsafeUninitializedCapacity:initializingWith:)`: on Linux its
    /// unspecialized buffer init looks the array type's metadata up on every call, which cost more
    /// than the allocation (three arrays per message: a client frame, `msg`, `published`).
    static func written(capacity: Int, _ body: (UnsafeMutableBufferPointer<UInt8>) -> Int) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(capacity)
        bytes.append(addingCapacity: capacity) { span in
            span.withUnsafeMutableBufferPointer { buffer, initialized in
                initialized = body(buffer)
            }
        }
        return bytes
    }
}
