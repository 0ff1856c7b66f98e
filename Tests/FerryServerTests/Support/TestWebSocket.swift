import FerryTestSupport
import Foundation

/// A minimal, blocking RFC 6455 client on a raw socket, so tests control every byte that goes out.
///
/// Client frames are masked; server frames are expected unmasked and unfragmented.
/// Server pings are answered with pongs unless `answerPings` is false.
final class TestWebSocket {
    enum Event: Equatable {
        case text(String)
        case binary([UInt8])
        case ping([UInt8])
        case pong([UInt8])
        case close(code: UInt16?)
        case timeout
        case eof
        /// A frame this client does not expect from a server (fragmented, reserved opcode).
        case unexpected(String)
    }

    enum Opcode: UInt8 {
        case continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA
    }

    /// The upgrade was answered with something other than 101.
    struct UpgradeRefused: Error, CustomStringConvertible {
        let status: Int
        let head: String
        var description: String { "WebSocket upgrade refused with \(status): \(head)" }
    }

    var answerPings: Bool
    private(set) var pingsReceived = 0
    /// The code of the close frame the broker sent, once one arrived.
    private(set) var closeCode: UInt16?
    /// The last text frame returned by `nextText`, for messages and verbatim checks.
    private(set) var lastText: String?
    private var ended: Event?
    private var closeSent = false
    private var buffer: [UInt8] = []
    private let connection: TCPConnection

    /// Connects and upgrades; `path` may carry a query. Throws `UpgradeRefused` on a non-101 answer.
    /// - Parameter plainRequests: HTTP requests sent and answered on the connection first, as a
    ///   proxy's pooled keep-alive connection has served before it carries an upgrade.
    init(
        port: Int, path: String = "/v1/ws", headers: [String: String] = [:],
        answerPings: Bool = true, timeout: TimeInterval = 5, plainRequests: [String] = []
    ) throws {
        self.answerPings = answerPings
        connection = try TCPConnection(port: port)
        let deadline = Deadline(seconds: timeout)
        for path in plainRequests {
            try connection.write(Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\r\n".utf8))
            let head = try readHead(until: deadline)
            guard head.hasPrefix("HTTP/1.1 200") else { throw TestFailure("GET \(path) before the upgrade: \(head)") }
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            while buffer.count < length {
                guard case .bytes(let bytes) = connection.read(until: deadline) else { throw TestFailure("GET \(path): body cut short") }
                buffer += bytes
            }
            buffer.removeFirst(length)
        }
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\n"
        request += "Connection: Upgrade\r\nSec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        try connection.write(Array((request + "\r\n").utf8))
        let head = try readHead(until: deadline)
        let statusLine = head.prefix { $0 != "\r" }.split(separator: " ")
        let status = statusLine.count >= 2 ? Int(statusLine[1]) ?? 0 : 0
        guard status == 101 else { throw UpgradeRefused(status: status, head: head) }
    }

    /// Reads an HTTP response head; what follows it stays in `buffer` (frames may follow in the
    /// same read).
    private func readHead(until deadline: Deadline) throws -> String {
        let separator = Array("\r\n\r\n".utf8)
        while buffer.firstRange(of: separator) == nil {
            switch connection.read(until: deadline) {
            case .bytes(let bytes): buffer += bytes
            case .eof, .timeout:
                throw UpgradeRefused(status: 0, head: "no full answer: \(String(decoding: buffer, as: UTF8.self))")
            }
        }
        guard let headEnd = buffer.firstRange(of: separator) else { throw TestFailure("unreachable") }
        let head = String(decoding: buffer[..<headEnd.lowerBound], as: UTF8.self)
        buffer.removeSubrange(..<headEnd.upperBound)
        return head
    }

    // MARK: Sending

    func sendText(_ text: String) throws { try sendFrame(.text, Array(text.utf8)) }
    func sendJSON(_ object: JSON) throws { try sendText(jsonText(object)) }
    func sendBinary(_ bytes: [UInt8]) throws { try sendFrame(.binary, bytes) }
    func sendPing(_ payload: [UInt8] = []) throws { try sendFrame(.ping, payload) }
    /// Sends bytes as they are: for hand-made frames (oversize, fragmented, malformed).
    func sendRaw(_ bytes: [UInt8]) throws { try connection.write(bytes) }

    func sendFrame(_ opcode: Opcode, _ payload: [UInt8], fin: Bool = true) throws {
        try connection.write(Self.frame(opcode, payload, fin: fin))
    }

    /// Sends a close frame, waits (bounded) for the broker's answer, and closes the socket.
    func close(code: UInt16 = 1000, timeout: TimeInterval = 2) {
        if !closeSent && ended == nil {
            closeSent = true
            try? sendFrame(.close, Self.bigEndian(UInt64(code), bytes: 2))
            _ = waitForClose(timeout: timeout)
        }
        connection.close()
    }

    /// Closes the TCP connection without a close frame, as a lost network does.
    func drop() {
        connection.close()
    }

    /// One client frame: FIN flag, opcode, 7/16/64-bit length, mask key and masked payload.
    static func frame(_ opcode: Opcode, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0x00) | opcode.rawValue]
        switch payload.count {
        case ..<126: frame.append(0x80 | UInt8(payload.count))
        case ...0xFFFF: frame += [0x80 | 126] + bigEndian(UInt64(payload.count), bytes: 2)
        default: frame += [0x80 | 127] + bigEndian(UInt64(payload.count), bytes: 8)
        }
        let mask = (0..<4).map { _ in UInt8.random(in: 0...255) }
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset & 3] }
        return frame
    }

    private static func bigEndian(_ value: UInt64, bytes: Int) -> [UInt8] {
        (0..<bytes).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    // MARK: Receiving

    /// The next frame, or `.timeout` / `.eof`. Answers pings itself when `answerPings` is set.
    func receive(timeout: TimeInterval = 5) -> Event {
        let deadline = Deadline(seconds: timeout)
        while true {
            if let (fin, opcode, payload) = takeFrame() { return handle(fin: fin, opcode: opcode, payload: payload) }
            switch connection.read(until: deadline) {
            case .bytes(let bytes): buffer += bytes
            case .timeout: return .timeout
            case .eof:
                if ended == nil { ended = .eof }
                return .eof
            }
        }
    }

    /// Removes one complete frame from the buffer, or returns nil while it is incomplete.
    private func takeFrame() -> (fin: Bool, opcode: UInt8, payload: [UInt8])? {
        guard buffer.count >= 2 else { return nil }
        var length = Int(buffer[1] & 0x7F)
        var offset = 2
        if length >= 126 {
            let size = length == 126 ? 2 : 8
            guard buffer.count >= 2 + size else { return nil }
            length = buffer[2..<2 + size].reduce(0) { $0 << 8 | Int($1) }
            offset += size
        }
        let masked = buffer[1] & 0x80 != 0
        guard buffer.count >= offset + (masked ? 4 : 0) + length else { return nil }
        let mask = masked ? Array(buffer[offset..<offset + 4]) : [0, 0, 0, 0]
        if masked { offset += 4 }
        let payload = buffer[offset..<offset + length].enumerated().map { $0.element ^ mask[$0.offset & 3] }
        let header = buffer[0]
        buffer.removeSubrange(..<(offset + length))
        return (header & 0x80 != 0, header & 0x0F, payload)
    }

    private func handle(fin: Bool, opcode: UInt8, payload: [UInt8]) -> Event {
        guard fin, let kind = Opcode(rawValue: opcode), kind != .continuation else {
            return .unexpected("frame with FIN=\(fin) opcode=\(opcode)")
        }
        switch kind {
        case .text: return .text(String(decoding: payload, as: UTF8.self))
        case .binary: return .binary(payload)
        case .ping:
            pingsReceived += 1
            if answerPings { try? sendFrame(.pong, payload) }
            return .ping(payload)
        case .pong: return .pong(payload)
        case .close, .continuation:
            let code = payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil
            closeCode = code
            if !closeSent {
                closeSent = true  // echo the close, as RFC 6455 asks of the receiving side
                try? sendFrame(.close, Array(payload.prefix(2)))
            }
            connection.close()  // the closing handshake is complete: nothing may follow
            ended = .close(code: code)
            return .close(code: code)
        }
    }

    // MARK: Helpers

    /// The next text frame, skipping pings and pongs; nil on timeout, close or end of stream.
    func nextText(timeout: TimeInterval = 5) throws -> String? {
        let deadline = Deadline(seconds: timeout)
        while true {
            switch receive(timeout: deadline.remaining) {
            case .text(let text):
                lastText = text
                return text
            case .ping, .pong: continue
            case .timeout, .eof, .close: return nil
            case .binary(let bytes): throw TestFailure("unexpected binary frame of \(bytes.count) bytes")
            case .unexpected(let what): throw TestFailure("unexpected \(what)")
            }
        }
    }

    /// The next text frame as a JSON object (pings skipped); nil on timeout, close or end of stream.
    func nextJSON(timeout: TimeInterval = 5) throws -> JSON? {
        guard let text = try nextText(timeout: timeout) else { return nil }
        guard let object = parseJSONObject(text) else { throw TestFailure("frame is not a JSON object: \(text)") }
        return object
    }

    /// The next frame, which must be a JSON object whose `op` is `op`.
    @discardableResult
    func expectOp(_ op: String, timeout: TimeInterval = 5) throws -> JSON {
        guard let frame = try nextJSON(timeout: timeout) else {
            throw TestFailure("expected \(op), got \(endDescription(timeout: timeout))")
        }
        guard frame.string("op") == op else { throw TestFailure("expected \(op), got \(lastText ?? "")") }
        return frame
    }

    /// Up to `count` `msg` frames within `timeout`; any other op is a failure.
    func collectMessages(count: Int, timeout: TimeInterval = 5) throws -> [JSON] {
        let deadline = Deadline(seconds: timeout)
        var messages: [JSON] = []
        while messages.count < count, let frame = try nextJSON(timeout: deadline.remaining) {
            guard frame.string("op") == "msg" else {
                throw TestFailure("expected msg #\(messages.count + 1) of \(count), got \(lastText ?? "")")
            }
            messages.append(frame)
        }
        return messages
    }

    /// Frames (pings skipped) until each topic in `counts` has had that many `msg` frames; a
    /// failure when `timeout` passes first. For subscriptions of several topics (patterns).
    func frames(untilMessages counts: [String: Int], timeout: TimeInterval = 10) throws -> [JSON] {
        let deadline = Deadline(seconds: timeout)
        var frames: [JSON] = []
        while !counts.allSatisfy({ frames.versions(of: $0.key).count >= $0.value }) {
            guard let frame = try nextJSON(timeout: deadline.remaining) else {
                throw TestFailure("timed out after \(frames.map(\.text))")
            }
            frames.append(frame)
        }
        return frames
    }

    /// Every JSON frame that arrives within `seconds` (pings skipped): for "nothing more comes" checks.
    func framesWithin(_ seconds: TimeInterval) throws -> [JSON] {
        let deadline = Deadline(seconds: seconds)
        var frames: [JSON] = []
        while let frame = try nextJSON(timeout: deadline.remaining) { frames.append(frame) }
        return frames
    }

    /// Reads (skipping anything else) until the broker closes; the close code, or nil on timeout
    /// or when the connection ended without a close frame.
    func waitForClose(timeout: TimeInterval = 5) -> UInt16? {
        let deadline = Deadline(seconds: timeout)
        while true {
            switch receive(timeout: deadline.remaining) {
            case .close(let code): return code
            case .eof: return closeCode
            case .timeout: return nil
            default: continue
            }
        }
    }

    private func endDescription(timeout: TimeInterval) -> String {
        switch ended {
        case .close(let code): "close \(code.map(String.init) ?? "without code")"
        case .eof: "end of stream"
        default: "nothing within \(timeout) s"
        }
    }
}
