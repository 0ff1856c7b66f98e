import FerryCore
import FerryProtocol
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle

/// How `ferryd` runs its WebSockets: each one is a ``WebSocketHandler`` on its channel's event
/// loop, feeding a core ``Connection``.
struct WebSocketSession: Sendable {
    let broker: Broker
    let logger: Logger

    /// Puts a handler for a new WebSocket on `channel`'s pipeline (on its event loop) and returns
    /// the connection it feeds.
    func attach(to channel: any Channel) throws -> Connection {
        let handler = WebSocketHandler(
            heartbeat: .milliseconds(Int64(broker.configuration.heartbeatSeconds * 1000)),
            maxMessageBytes: broker.configuration.limits.maxFrameBytes, logger: logger)
        let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        let loop = channel.eventLoop
        // The core calls this from any thread; the handler drains on its own loop.
        let connection = broker.makeConnection { loop.execute { bound.value.drain() } }
        handler.connection = connection
        let wire = WireWriter()
        try channel.pipeline.syncOperations.addHandler(wire, position: .first)
        handler.wire = wire
        try channel.pipeline.syncOperations.addHandler(handler)
        return connection
    }

    /// Lives as long as the WebSocket; on graceful shutdown closes it with 1001.
    func serve(_ channel: any Channel, _ connection: Connection) async {
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            connection.close(.goingAway, reason: "broker shutting down")
        }
    }
}

/// One WebSocket, run on its event loop with no task per frame: frames in to the core
/// ``Connection``, its frames out in batches with one flush each, heartbeats, and the close codes
/// of PROTOCOL.md.
final class WebSocketHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame

    /// How long to wait for the client's close reply before dropping the TCP connection.
    static let closeGrace: TimeAmount = .seconds(2)

    /// Set once by ``WebSocketSession/attach(to:)`` before the handler joins the pipeline.
    var connection: Connection?
    /// Where frames leave, encoded here, past NIO's frame encoder (see ``WireWriter``).
    var wire: WireWriter?
    private let heartbeat: TimeAmount
    private let maxMessageBytes: Int
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var lastHeard = NIODeadline.now()
    private var heartbeats: RepeatedTask?
    private var beats = 0
    /// A fragmented text message being collected.
    private var fragments: ByteBuffer?
    /// The peer sent its close, or broke the framing: later frames are ignored.
    private var readingEnded = false
    /// Reading stopped for back-pressure (too many unconfirmed publishes).
    private var readingPaused = false
    private var closeSent = false

    init(heartbeat: TimeAmount, maxMessageBytes: Int, logger: Logger) {
        self.heartbeat = heartbeat
        self.maxMessageBytes = maxMessageBytes
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        // Checks twice per heartbeat, so a silent peer is closed between 2.5 and 3 heartbeats.
        let half = TimeAmount.nanoseconds(max(1_000_000, heartbeat.nanoseconds / 2))
        heartbeats = context.eventLoop.scheduleRepeatedTask(initialDelay: half, delay: half) { _ in bound.value.beat() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        heartbeats?.cancel()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        heartbeats?.cancel()
        connection?.closed()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection, !readingEnded else { return }
        let frame = unwrapInboundIn(data)
        lastHeard = .now()
        switch frame.opcode {
        case .text where frame.fin && fragments == nil:
            connection.receive(Array(buffer: frame.unmaskedData))
        case .text, .continuation:
            guard frame.opcode == .continuation ? fragments != nil : fragments == nil else {
                connection.fail(ProtocolError(.badFrame, "unexpected continuation frame"), close: .protocolViolation)
                readingEnded = true
                return
            }
            var data = frame.unmaskedData
            var collected = fragments ?? ByteBuffer()
            guard collected.readableBytes + data.readableBytes <= maxMessageBytes else {
                connection.fail(ProtocolError(.tooLarge, "message over \(maxMessageBytes) bytes"), close: .frameTooLarge)
                readingEnded = true
                return
            }
            collected.writeBuffer(&data)
            if frame.fin {
                fragments = nil
                connection.receive(Array(buffer: collected))
            } else {
                fragments = collected
            }
        case .binary:
            connection.fail(ProtocolError(.badFrame, "binary frames are not part of the protocol; send JSON text"))
            if !frame.fin { endReading() }
        case .ping:
            wire?.send(.pong, Array(buffer: frame.unmaskedData))
        case .pong:
            break
        case .connectionClose:
            endReading()
        default:
            connection.fail(ProtocolError(.badFrame, "unknown WebSocket opcode"), close: .protocolViolation)
            readingEnded = true
        }
        if !readingPaused && !connection.acceptsInput {
            readingPaused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketError, error == .invalidFrameLength {
            connection?.fail(ProtocolError(.tooLarge, "frame over \(maxMessageBytes) bytes"), close: .frameTooLarge)
            readingEnded = true
            return
        }
        // After a framing error the decoder refuses the rest of the input with more errors; the
        // close being sent ends the connection.
        if readingEnded { return }
        logger.debug("websocket failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
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
    /// takes it.
    func drain() {
        guard let context, let wire, let connection, !closeSent else { return }
        while context.channel.isWritable, let outbound = connection.takeOutbound() {
            switch outbound {
            case .frames(let frames):
                wire.write(frames)
            case .close(let code, let reason):
                var payload = ByteBuffer()
                payload.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code.rawValue)))
                payload.writeString(String(reason.utf8.prefix(120)) ?? "")
                wire.send(.connectionClose, Array(buffer: payload))
                closeSent = true
                if readingEnded {
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
    private func beat() {
        guard let context, !closeSent else { return }
        beats += 1
        if (NIODeadline.now() - lastHeard).nanoseconds * 2 >= heartbeat.nanoseconds * 5 {
            connection?.close(.heartbeatTimeout, reason: "no frame or pong for 2.5 heartbeats")
        } else if beats % 2 == 0 {
            wire?.send(.ping, [])
        }
    }
}

/// The first handler of a WebSocket's pipeline, next to the socket: ``WebSocketHandler`` writes
/// through its context, so a batch of frames it encoded leaves as one buffer instead of passing
/// NIO's frame encoder as one header buffer plus one payload buffer per frame. Server frames are
/// unmasked, so encoding is a 2-to-10-byte header.
final class WireWriter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var context: ChannelHandlerContext?
    private var unflushed = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Queues text frames in one buffer.
    func write(_ frames: [Frame]) {
        guard let context, !frames.isEmpty else { return }
        var buffer = context.channel.allocator.buffer(capacity: frames.reduce(0) { $0 + $1.count + 4 })
        for frame in frames { buffer.writeServerFrame(.text, frame) }
        context.write(NIOAny(buffer), promise: nil)
        unflushed = true
    }

    /// Writes one control frame now.
    func send(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        guard let context else { return }
        var buffer = context.channel.allocator.buffer(capacity: payload.count + 4)
        buffer.writeServerFrame(opcode, payload)
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
    /// Appends one final, unmasked frame (RFC 6455 §5.2: FIN + opcode, then the length in 7, 16
    /// or 64 bits).
    fileprivate mutating func writeServerFrame(_ opcode: WebSocketOpcode, _ payload: [UInt8]) {
        writeInteger(0x80 | UInt8(webSocketOpcode: opcode))
        switch payload.count {
        case ..<126:
            writeInteger(UInt8(payload.count))
        case ...Int(UInt16.max):
            writeInteger(UInt8(126))
            writeInteger(UInt16(payload.count))
        default:
            writeInteger(UInt8(127))
            writeInteger(UInt64(payload.count))
        }
        writeBytes(payload)
    }
}
