/// The framing of RFC 6455 for frames a client sends, as a pure function over bytes: the
/// server's transport feeds it what it has read, and tests can feed it anything.
///
/// It enforces what PROTOCOL.md's Transport section asks of client frames: masked, no reserved
/// bits, control frames whole and at most 125 bytes, payload within the frame limit (checked
/// from the header, before the payload is buffered).
public enum WebSocketFrameParser {
    /// One client frame, unmasked.
    public struct Frame: Sendable, Equatable {
        /// The 4-bit opcode; unknown values are the caller's to refuse.
        public var opcode: UInt8
        public var fin: Bool
        public var payload: [UInt8]

        public init(opcode: UInt8, fin: Bool, payload: [UInt8]) {
            self.opcode = opcode
            self.fin = fin
            self.payload = payload
        }
    }

    public enum Outcome: Sendable, Equatable {
        /// The bytes do not hold a whole frame yet.
        case needMore
        /// A whole frame, and how many bytes it took.
        case frame(Frame, consumed: Int)
        /// The framing broke: answer with this error and close with this code.
        case failure(ProtocolError, CloseCode)
    }

    /// The first frame of `bytes`.
    /// - Parameter maxPayload: the largest payload accepted (`max_frame_bytes`).
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxPayload: Int) -> Outcome {
        guard bytes.count >= 2 else { return .needMore }
        let first = bytes[0]
        let second = bytes[1]
        var header = 2
        var length = UInt64(second & 0x7F)
        if length == 126 {
            guard bytes.count >= 4 else { return .needMore }
            (header, length) = (4, UInt64(bytes[2]) << 8 | UInt64(bytes[3]))
        } else if length == 127 {
            guard bytes.count >= 10 else { return .needMore }
            (header, length) = (10, (2..<10).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) })
        }
        let fin = first & 0x80 != 0
        if first & 0x70 != 0 {
            return .failure(ProtocolError(.badFrame, "reserved frame bits set"), .protocolViolation)
        }
        if second & 0x80 == 0 {
            return .failure(ProtocolError(.badFrame, "client frames must be masked"), .protocolViolation)
        }
        if first & 0x08 != 0 && (length > 125 || !fin) {
            return .failure(ProtocolError(.badFrame, "control frames must be whole and at most 125 bytes"), .protocolViolation)
        }
        guard length <= UInt64(max(0, maxPayload)) else {
            return .failure(ProtocolError(.tooLarge, "frame over \(maxPayload) bytes"), .frameTooLarge)
        }
        let count = Int(length)
        let body = header + 4
        guard bytes.count - body >= count else { return .needMore }
        let key = bytes.loadUnaligned(fromByteOffset: header, as: UInt32.self)
        let payload = [UInt8].written(capacity: count) { output in
            unmask(UnsafeRawBufferPointer(rebasing: bytes[body..<(body + count)]), key: key, into: output)
            return count
        }
        return .frame(Frame(opcode: first & 0x0F, fin: fin, payload: payload), consumed: body + count)
    }

    /// XORs `input` with the repeating 4-byte masking `key` (loaded in memory order, as the
    /// payload's words are), 8 bytes at a time.
    static func unmask(_ input: UnsafeRawBufferPointer, key: UInt32, into output: UnsafeMutableBufferPointer<UInt8>) {
        let wide = UInt64(key) | UInt64(key) << 32
        let destination = UnsafeMutableRawBufferPointer(output)
        var index = 0
        while index + 8 <= input.count {
            destination.storeBytes(of: input.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ wide, toByteOffset: index, as: UInt64.self)
            index += 8
        }
        withUnsafeBytes(of: key) { key in
            while index < input.count {
                output[index] = input[index] ^ key[index & 3]
                index += 1
            }
        }
    }
}
