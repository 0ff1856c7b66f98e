import Dispatch
import FerryCore
import FerryProtocol
import Logging
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import Synchronization

/// Runs one WebSocket: frames in to a core ``Connection``, its frames out, heartbeats, and the
/// close codes of PROTOCOL.md.
struct WebSocketSession {
    let broker: Broker
    let logger: Logger

    /// How long to wait for the client's close reply before dropping the TCP connection.
    static let closeGrace: Duration = .seconds(2)
    /// The largest header of an unmasked frame.
    private static let headerRoom = 10

    /// When the peer last sent anything (any frame, pongs included), and whether reading ended.
    private final class Liveness: Sendable {
        let lastHeard: Atomic<Int64>
        let readingEnded = Atomic<Bool>(false)

        init() {
            lastHeard = Atomic(Self.now())
        }

        /// Monotonic milliseconds.
        static func now() -> Int64 {
            Int64(DispatchTime.now().uptimeNanoseconds / 1_000_000)
        }

        func heard() {
            lastHeard.store(Self.now(), ordering: .relaxed)
        }
    }

    func run(_ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>) async {
        let connection = broker.makeConnection()
        let liveness = Liveness()
        let heartbeatMilliseconds = Int64(broker.configuration.heartbeatSeconds * 1000)
        let maxMessageBytes = broker.configuration.limits.maxFrameBytes
        do {
            try await channel.executeThenClose { inbound, outbound in
                await withGracefulShutdownHandler {
                    await withDiscardingTaskGroup { group in
                        group.addTask {
                            await write(connection, to: outbound, channel: channel.channel, liveness: liveness)
                        }
                        let heartbeat = Task {
                            await keepAlive(connection, outbound: outbound, liveness: liveness, every: heartbeatMilliseconds)
                        }
                        await read(inbound, into: connection, outbound: outbound, maxMessageBytes: maxMessageBytes, liveness: liveness)
                        liveness.readingEnded.store(true, ordering: .relaxed)
                        heartbeat.cancel()
                        connection.close(.normal, reason: "closed")
                    }
                } onGracefulShutdown: {
                    connection.close(.goingAway, reason: "broker shutting down")
                }
            }
        } catch {
            logger.debug("websocket ended", metadata: ["error": "\(error)"])
        }
        connection.closed()
    }

    /// Reads frames until the peer closes, the channel fails, or a frame breaks the rules.
    private func read(
        _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>, into connection: Connection,
        outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>, maxMessageBytes: Int, liveness: Liveness
    ) async {
        var message: ByteBuffer?
        do {
            for try await frame in inbound {
                liveness.heard()
                switch frame.opcode {
                case .text where frame.fin && message == nil:
                    await connection.receive(Array(buffer: frame.unmaskedData))
                case .text, .continuation:
                    guard frame.opcode == .continuation ? message != nil : message == nil else {
                        connection.fail(ProtocolError(.badFrame, "unexpected continuation frame"), close: .protocolViolation)
                        return
                    }
                    var data = frame.unmaskedData
                    var collected = message ?? ByteBuffer()
                    guard collected.readableBytes + data.readableBytes <= maxMessageBytes else {
                        connection.fail(ProtocolError(.tooLarge, "message over \(maxMessageBytes) bytes"), close: .frameTooLarge)
                        return
                    }
                    collected.writeBuffer(&data)
                    if frame.fin {
                        message = nil
                        await connection.receive(Array(buffer: collected))
                    } else {
                        message = collected
                    }
                case .binary:
                    connection.fail(ProtocolError(.badFrame, "binary frames are not part of the protocol; send JSON text"))
                    if !frame.fin { return }
                case .ping:
                    try await outbound.write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData))
                case .pong:
                    break
                case .connectionClose:
                    return
                default:
                    connection.fail(ProtocolError(.badFrame, "unknown WebSocket opcode"), close: .protocolViolation)
                    return
                }
            }
        } catch NIOWebSocketError.invalidFrameLength {
            connection.fail(ProtocolError(.tooLarge, "frame over \(maxMessageBytes) bytes"), close: .frameTooLarge)
        } catch {
            logger.debug("websocket read failed", metadata: ["error": "\(error)"])
        }
    }

    /// Writes what the connection produces, one flush per batch, until it says close.
    private func write(
        _ connection: Connection, to outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>, channel: any Channel,
        liveness: Liveness
    ) async {
        let allocator = channel.allocator
        do {
            while true {
                switch await connection.nextOutbound() {
                case .frames(let frames):
                    try await outbound.write(
                        contentsOf: frames.map { frame in
                            // Room in front for the frame header (at most 10 bytes from a server), so
                            // the encoder writes it in place instead of as a second buffer per frame.
                            var buffer = allocator.buffer(capacity: Self.headerRoom + frame.count)
                            buffer.moveWriterIndex(forwardBy: Self.headerRoom)
                            buffer.moveReaderIndex(forwardBy: Self.headerRoom)
                            buffer.writeBytes(frame)
                            return WebSocketFrame(fin: true, opcode: .text, data: buffer)
                        })
                case .close(let code, let reason):
                    var buffer = allocator.buffer(capacity: 2 + reason.utf8.count)
                    buffer.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: Int(code.rawValue)))
                    buffer.writeString(String(reason.utf8.prefix(120)) ?? "")
                    try await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, data: buffer))
                    outbound.finish()
                    // Give the peer time to answer the close, then drop the connection.
                    if !liveness.readingEnded.load(ordering: .relaxed) {
                        try? await Task.sleep(for: Self.closeGrace)
                        try? await channel.close()
                    }
                    return
                }
            }
        } catch {
            logger.debug("websocket write failed", metadata: ["error": "\(error)"])
            try? await channel.close()
        }
    }

    /// Pings every heartbeat and closes with 4002 after 2.5 heartbeats of silence. Checks twice
    /// per heartbeat so the close comes between 2.5 and 3 heartbeats.
    private func keepAlive(
        _ connection: Connection, outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>, liveness: Liveness, every interval: Int64
    ) async {
        var tick = 0
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: .milliseconds(max(1, interval / 2)))
            } catch {
                return
            }
            tick += 1
            let silence = Liveness.now() - liveness.lastHeard.load(ordering: .relaxed)
            if silence * 2 >= interval * 5 {
                connection.close(.heartbeatTimeout, reason: "no frame or pong for 2.5 heartbeats")
                return
            }
            if tick % 2 == 0 {
                try? await outbound.write(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer()))
            }
        }
    }
}
