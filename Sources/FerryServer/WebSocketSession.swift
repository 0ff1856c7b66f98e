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
    typealias OutboundOut = WebSocketFrame

    /// How long to wait for the client's close reply before dropping the TCP connection.
    static let closeGrace: TimeAmount = .seconds(2)
    /// The largest header of an unmasked frame: buffers get this much room in front so the
    /// encoder writes the header in place instead of as a second buffer per frame.
    private static let headerRoom = 10

    /// Set once by ``WebSocketSession/attach(to:)`` before the handler joins the pipeline.
    var connection: Connection?
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
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
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

    /// Writes what the connection has, one flush per batch, while the socket takes it.
    func drain() {
        guard let context, let connection, !closeSent else { return }
        var wrote = false
        while context.channel.isWritable, let outbound = connection.takeOutbound() {
            switch outbound {
            case .frames(let frames):
                for frame in frames {
                    var buffer = context.channel.allocator.buffer(capacity: Self.headerRoom + frame.count)
                    buffer.moveWriterIndex(forwardBy: Self.headerRoom)
                    buffer.moveReaderIndex(forwardBy: Self.headerRoom)
                    buffer.writeBytes(frame)
                    context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
                }
                wrote = true
            case .close(let code, let reason):
                var buffer = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
                buffer.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code.rawValue)))
                buffer.writeString(String(reason.utf8.prefix(120)) ?? "")
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer)), promise: nil)
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
        if wrote { context.flush() }
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
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
        }
    }
}
