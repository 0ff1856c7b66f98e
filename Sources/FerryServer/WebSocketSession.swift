import FerryCore
import FerryProtocol
import Logging
import NIOCore
import NIOSSL
import NIOWebSocket

/// How `ferryd` runs its WebSockets: each one is a ``WebSocketHandler`` on its channel's event
/// loop, feeding a core ``Connection``.
struct WebSocketSession: Sendable {
    let broker: Broker
    let limiter: ConnectionLimiter
    let logger: Logger

    /// Puts the framing and a handler for a new WebSocket on `channel`'s pipeline (on its event
    /// loop), feeding a new core connection for `principal`.
    func attach(to channel: any Channel, principal: Principal) throws {
        let handler = WebSocketHandler(
            heartbeat: .milliseconds(Int64(broker.configuration.heartbeatSeconds * 1000)),
            maxFrameBytes: broker.configuration.limits.maxFrameBytes,
            expiresIn: principal.expiresAt.map { .milliseconds(Int64(clamping: $0) - Int64(clamping: broker.configuration.now())) },
            logger: logger)
        let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        let loop = channel.eventLoop
        // The core calls this from any thread; the handler drains on its own loop.
        let connection = broker.makeConnection(principal: principal) { loop.execute { bound.value.drain() } }
        handler.connection = connection
        let wire = Wire(handler: handler, maxFrameBytes: broker.configuration.limits.maxFrameBytes)
        // Next to the socket, or behind TLS: the framing reads and writes plaintext.
        let tls = try? channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
        let position: ChannelPipeline.SynchronousOperations.Position = tls.map { .after($0) } ?? .first
        try channel.pipeline.syncOperations.addHandler(wire, position: position)
        handler.wire = wire
        // Next to the wire, ahead of the HTTP handlers: it sees the connection's events first.
        try channel.pipeline.syncOperations.addHandler(handler, position: .after(wire))
    }
}

/// One WebSocket, run on its event loop with no task per frame: frames in to the core
/// ``Connection``, its frames out in batches with one flush each, heartbeats, and the close codes
/// of PROTOCOL.md. ``Wire`` does the framing both ways.
final class WebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = Never

    /// How long to wait for the client's close reply before dropping the TCP connection.
    static let closeGrace: TimeAmount = .seconds(2)

    /// Set once by ``WebSocketSession/attach(to:)`` before the handler joins the pipeline.
    var connection: Connection?
    /// The framing, next to the socket (see ``Wire``).
    var wire: Wire?
    private let heartbeat: TimeAmount
    private let maxFrameBytes: Int
    /// Time left on the credential the connection was opened with; nil: it does not expire.
    private let expiresIn: TimeAmount?
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var lastHeard = NIODeadline.now()
    private var heartbeats: RepeatedTask?
    private var expiry: Scheduled<Void>?
    private var beats = 0
    /// A fragmented text message being collected.
    private var fragments: [UInt8]?
    /// Whole text messages of the current socket read, handed over together at its end.
    private var texts: [[UInt8]] = []
    /// The peer sent its close, or broke the framing: later frames are ignored.
    private var readingEnded = false
    /// Reading stopped for back-pressure (too many unconfirmed publishes).
    private var readingPaused = false
    private var closeSent = false

    init(heartbeat: TimeAmount, maxFrameBytes: Int, expiresIn: TimeAmount?, logger: Logger) {
        self.heartbeat = heartbeat
        self.maxFrameBytes = maxFrameBytes
        self.expiresIn = expiresIn
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        // Checks twice per heartbeat, so a silent peer is closed between 2.5 and 3 heartbeats.
        let half = TimeAmount.nanoseconds(max(1_000_000, heartbeat.nanoseconds / 2))
        heartbeats = context.eventLoop.scheduleRepeatedTask(initialDelay: half, delay: half) { _ in bound.value.beat() }
        // An idle connection whose token expires is closed (4001) then, not at its next frame.
        if let expiresIn {
            expiry = context.eventLoop.scheduleTask(in: expiresIn) { bound.value.connection?.expired() }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        heartbeats?.cancel()
        expiry?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        heartbeats?.cancel()
        expiry?.cancel()
        connection?.closed()
        context.fireChannelInactive()
    }

    /// One frame from the client.
    func received(_ opcode: WebSocketOpcode, fin: Bool, _ payload: [UInt8]) {
        guard context != nil, let connection, !readingEnded else { return }
        lastHeard = .now()
        if opcode != .text && opcode != .continuation { deliverTexts() }
        switch opcode {
        case .text where fin && fragments == nil:
            texts.append(payload)
        case .text, .continuation:
            guard opcode == .continuation ? fragments != nil : fragments == nil else {
                framingFailed(ProtocolError(.badFrame, "unexpected continuation frame"), close: .protocolViolation)
                return
            }
            var collected = fragments ?? []
            guard collected.count + payload.count <= maxFrameBytes else {
                framingFailed(ProtocolError(.tooLarge, "message over \(maxFrameBytes) bytes"), close: .frameTooLarge)
                return
            }
            collected += payload
            if fin {
                fragments = nil
                texts.append(collected)
            } else {
                fragments = collected
            }
        case .binary:
            connection.fail(ProtocolError(.badFrame, "binary frames are not part of the protocol; send JSON text"))
            if !fin { endReading() }
        case .ping:
            wire?.send(.pong, payload)
        case .pong:
            break
        case .connectionClose:
            endReading()
        default:
            framingFailed(ProtocolError(.badFrame, "unknown WebSocket opcode"), close: .protocolViolation)
        }
    }

    /// The frames of one socket read are in: the connection takes their texts together.
    func endOfRead() {
        deliverTexts()
        guard let context, let connection else { return }
        if !readingPaused && !connection.acceptsInput {
            readingPaused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    private func deliverTexts() {
        guard !texts.isEmpty else { return }
        connection?.receive(contentsOf: texts, at: lastHeard.uptimeNanoseconds)
        texts.removeAll(keepingCapacity: true)
    }

    /// The client broke the framing: tell it why, close with `code`, read nothing more.
    func framingFailed(_ error: ProtocolError, close code: CloseCode) {
        deliverTexts()
        connection?.fail(error, close: code)
        readingEnded = true
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("websocket failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    /// The server is shutting down: close with 1001 once queued frames are out. The event stops
    /// here, so the HTTP handlers behind, which see an idle connection, do not drop it first.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            connection?.close(.goingAway, reason: "broker shutting down")
        } else if case .inputClosed = event as? ChannelEvent {
            // The client's side of the TCP connection ended (the server allows half-closure for
            // HTTP): nothing more can come, so the WebSocket is gone.
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { drain() }
        context.fireChannelWritabilityChanged()
    }

    /// The peer closed (or the framing broke): answer with a close, and drop the connection at
    /// once if ours already went out.
    private func endReading() {
        readingEnded = true
        if closeSent {
            context?.close(promise: nil)
        } else {
            connection?.close(.normal, reason: "closed")
        }
    }

    /// Writes what the connection has, one buffer and one flush per batch, while the socket
    /// takes it. While it takes nothing, only a slow-consumer close goes out (behind what is buffered).
    func drain() {
        guard let context, let wire, let connection, !closeSent else { return }
        while let outbound = context.channel.isWritable ? connection.takeOutbound() : connection.takeClose() {
            switch outbound {
            case .frames(let frames):
                wire.write(frames)
            case .close(let code, let reason):
                if code == .slowConsumer || code == .rateLimited {
                    logger.notice(
                        "websocket closed by a limit",
                        metadata: [
                            "ferry.close_code": "\(code.rawValue)", "ferry.reason": "\(reason)",
                            "ferry.remote": "\(context.channel.remoteAddress?.description ?? "")",
                        ])
                }
                var payload = ByteBuffer()
                payload.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code.rawValue)))
                payload.writeString(String(reason.utf8.prefix(120)) ?? "")
                wire.send(.connectionClose, Array(buffer: payload))
                closeSent = true
                // A peer that does not read would not see the close frame within the grace either.
                if readingEnded || !context.channel.isWritable {
                    context.close(promise: nil)
                } else {
                    // Give the peer time to answer the close, then drop the connection.
                    let channel = context.channel
                    context.eventLoop.scheduleTask(in: Self.closeGrace) { channel.close(promise: nil) }
                }
                return
            }
        }
        wire.flush()
        if readingPaused && connection.acceptsInput {
            readingPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        }
    }

    /// Pings every heartbeat and closes with 4002 after 2.5 heartbeats of silence.
    /// A peer that stopped reading fills the socket, so the close frame cannot go out: then
    /// the connection is dropped without it (its durable state stays).
    private func beat() {
        guard let context, !closeSent else { return }
        beats += 1
        if (NIODeadline.now() - lastHeard).nanoseconds * 2 >= heartbeat.nanoseconds * 5 {
            connection?.close(.heartbeatTimeout, reason: "no frame or pong for 2.5 heartbeats")
            if !context.channel.isWritable { context.close(promise: nil) }
        } else if beats % 2 == 0 {
            wire?.send(.ping, [])
        }
    }
}

/// The first handler of a WebSocket's pipeline, next to the socket: the framing of RFC 6455 both
/// ways. It cuts the bytes read into client frames (masked, checked against the frame limit
/// before the payload is buffered) and hands them to ``WebSocketHandler`` unmasked in one pass;
/// the handler writes through it, so a batch of frames leaves as one buffer. NIO's own codec,
/// which the upgrade put behind it, sees no bytes: it wrapped each frame in a frame value, a
/// masked and an unmasked buffer, and wrote a separate header buffer per outbound frame.
final class Wire: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private unowned let handler: WebSocketHandler
    private let maxFrameBytes: Int
    private var context: ChannelHandlerContext?
    private var unflushed = false
    /// Bytes read that do not make a whole frame yet.
    private var pending = ByteBuffer()
    /// The framing broke: the rest of the input is ignored while the close goes out.
    private var broken = false

    init(handler: WebSocketHandler, maxFrameBytes: Int) {
        self.handler = handler
        self.maxFrameBytes = maxFrameBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !broken else { return }
        var incoming = unwrapInboundIn(data)
        if pending.readableBytes == 0 {
            pending = incoming
        } else {
            pending.writeBuffer(&incoming)
        }
        while !broken, let frame = nextFrame() {
            handler.received(frame.opcode, fin: frame.fin, frame.payload)
        }
        handler.endOfRead()
    }

    private struct InboundFrame {
        var opcode: WebSocketOpcode
        var fin: Bool
        var payload: [UInt8]
    }

    /// The next whole frame of `pending`, or nil when more bytes are needed (or the framing broke).
    private func nextFrame() -> InboundFrame? {
        let outcome = pending.withUnsafeReadableBytes { WebSocketFrameParser.parse($0, maxPayload: maxFrameBytes) }
        switch outcome {
        case .needMore:
            return nil
        case .failure(let error, let code):
            return fail(error, code)
        case .frame(let frame, let consumed):
            pending.moveReaderIndex(forwardBy: consumed)
            // Any 4-bit value is an opcode to NIO; reserved ones reach the handler's "unknown".
            guard let opcode = WebSocketOpcode(encodedWebSocketOpcode: frame.opcode) else { return nil }
            return InboundFrame(opcode: opcode, fin: frame.fin, payload: frame.payload)
        }
    }

    private func fail(_ error: ProtocolError, _ code: CloseCode) -> InboundFrame? {
        broken = true
        pending.clear()
        handler.framingFailed(error, close: code)
        return nil
    }

    /// Queues text frames in one buffer, copied in with one bounds check for the batch (writing
    /// each header byte and payload through `ByteBuffer`'s checked calls cost more than the copy).
    func write(_ frames: [Frame]) {
        guard let context, !frames.isEmpty else { return }
        let total = frames.reduce(0) { $0 + $1.count + ByteBuffer.maxServerFrameHeader }
        var buffer = context.channel.allocator.buffer(capacity: total)
        buffer.writeServerFrames(.text, frames, upTo: total)
        context.write(NIOAny(buffer), promise: nil)
        unflushed = true
    }

    /// Writes one control frame now.
    func send(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        guard let context else { return }
        let total = payload.count + ByteBuffer.maxServerFrameHeader
        var buffer = context.channel.allocator.buffer(capacity: total)
        buffer.writeServerFrames(opcode, CollectionOfOne(payload), upTo: total)
        context.writeAndFlush(NIOAny(buffer), promise: nil)
        unflushed = false
    }

    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }
}

extension ByteBuffer {
    /// The longest header of a server frame: unmasked, with a 64-bit length.
    fileprivate static let maxServerFrameHeader = 10

    /// Appends each payload as one final, unmasked frame (RFC 6455 §5.2: FIN + opcode, then the
    /// length in 7, 16 or 64 bits); `capacity` is at least the payloads plus
    /// ``maxServerFrameHeader`` each.
    fileprivate mutating func writeServerFrames(_ opcode: WebSocketOpcode, _ payloads: some Collection<[UInt8]>, upTo capacity: Int) {
        let first = 0x80 | UInt8(webSocketOpcode: opcode)
        writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { output in
            var offset = 0
            for payload in payloads {
                let count = payload.count
                output[offset] = first
                switch count {
                case ..<126:
                    output[offset + 1] = UInt8(count)
                    offset += 2
                case ...Int(UInt16.max):
                    output[offset + 1] = 126
                    output.storeBytes(of: UInt16(count).bigEndian, toByteOffset: offset + 2, as: UInt16.self)
                    offset += 4
                default:
                    output[offset + 1] = 127
                    output.storeBytes(of: UInt64(count).bigEndian, toByteOffset: offset + 2, as: UInt64.self)
                    offset += 10
                }
                payload.withUnsafeBytes { bytes in
                    UnsafeMutableRawBufferPointer(rebasing: output[offset..<(offset + count)]).copyMemory(from: bytes)
                }
                offset += count
            }
            return offset
        }
    }
}
