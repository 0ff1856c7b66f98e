import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// What a load connection does. Every call comes on the connection's event loop.
protocol FrameSink: AnyObject {
    /// The WebSocket is open: say hello, subscribe, start publishing.
    func start(_ connection: BenchConnection)
    /// A text frame from the broker.
    func received(_ text: ByteBuffer, on connection: BenchConnection)
    /// The end of one socket read: the moment to send acks and more publishes, then flush.
    func readComplete(on connection: BenchConnection)
}

/// A WebSocket client made for load: frames are handled on the event loop with no task, stream
/// or string per message. After the upgrade, ``Wire`` (next to the socket) parses the broker's
/// frames itself and outbound frames are encoded here into one buffer that `flush()` writes with
/// one syscall: NIO's frame codec, made for general use, would cost more than the broker's
/// work per message and hide it.
final class BenchConnection: ChannelInboundHandler {
    typealias InboundIn = Never

    private let sink: any FrameSink
    private var context: ChannelHandlerContext?
    /// The context of the pipeline's first handler, next to the socket.
    fileprivate var wire: ChannelHandlerContext?
    private var batch = ByteBuffer()
    /// One masking key for the connection's frames (RFC 6455 wants one per frame; the broker
    /// does not check, and a per-frame draw would measure the random generator).
    private let mask = WebSocketMaskingKey.random()

    init(sink: any FrameSink) {
        self.sink = sink
    }

    var eventLoop: (any EventLoop)? { context?.eventLoop }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func start() {
        sink.start(self)
    }

    /// A frame from the broker, parsed by ``Wire``.
    fileprivate func received(opcode: UInt8, _ payload: ByteBuffer) {
        switch opcode {
        case 0x1:
            sink.received(payload, on: self)
        case 0x9:
            append(opcode: 0xA, payload)
            flush()
        case 0x8:
            context?.close(promise: nil)
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sink.readComplete(on: self)
    }

    /// Queues a text frame; nothing leaves before `flush()`.
    func send(_ text: ByteBuffer) {
        append(opcode: 0x1, text)
    }

    func send(_ text: String) {
        send(ByteBuffer(string: text))
    }

    /// Appends a final, masked frame to the batch.
    private func append(opcode: UInt8, _ payload: ByteBuffer) {
        batch.writeInteger(0x80 | opcode)
        switch payload.readableBytes {
        case ..<126:
            batch.writeInteger(0x80 | UInt8(payload.readableBytes))
        case ...Int(UInt16.max):
            batch.writeInteger(UInt8(0x80 | 126))
            batch.writeInteger(UInt16(payload.readableBytes))
        default:
            batch.writeInteger(UInt8(0x80 | 127))
            batch.writeInteger(UInt64(payload.readableBytes))
        }
        batch.writeBytes(mask)
        let key = [mask[0], mask[1], mask[2], mask[3]]
        let count = payload.readableBytes
        batch.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { output in
            payload.withUnsafeReadableBytes { input in
                for index in 0..<count { output[index] = input[index] ^ key[index & 3] }
            }
            return count
        }
    }

    func flush() {
        guard let wire, batch.readableBytes > 0 else { return }
        wire.writeAndFlush(NIOAny(batch), promise: nil)
        batch = wire.channel.allocator.buffer(capacity: 1 << 16)
    }

    func allocate(_ capacity: Int) -> ByteBuffer {
        context?.channel.allocator.buffer(capacity: capacity) ?? ByteBuffer()
    }

    /// Opens a WebSocket to `127.0.0.1:port/v1/ws` with a sink made on its event loop, and
    /// starts the sink.
    static func open(port: Int, group: any EventLoopGroup, sink makeSink: @escaping @Sendable () -> any FrameSink) async throws
        -> any Channel
    {
        try await open(BenchEndpoint(host: "127.0.0.1", port: port), group: group, sink: makeSink)
    }

    /// Opens a WebSocket to `endpoint` with a sink made on its event loop, and starts the sink.
    static func open(_ endpoint: BenchEndpoint, group: any EventLoopGroup, sink makeSink: @escaping @Sendable () -> any FrameSink)
        async throws -> any Channel
    {
        let tls = try endpoint.tls ? NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        var bootstrap = ClientBootstrap(group: group).channelOption(.tcpOption(.tcp_nodelay), value: 1)
        if let source = endpoint.source {
            // The port is left to connect (IP_BIND_ADDRESS_NO_PORT), which only needs the four-
            // tuple unused: a bind picking it alone finds none free while the sweep's earlier
            // points leave tens of thousands of sockets in TIME_WAIT for a minute.
            bootstrap = bootstrap.channelOption(ChannelOptions.socket(SocketOptionLevel(IPPROTO_IP), SocketOptionName(IP_BIND_ADDRESS_NO_PORT)), value: 1)
                .bind(to: try SocketAddress(ipAddress: source, port: 0))
        }
        let (channel, upgraded) = try await bootstrap
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // With TLS, the frames go to and from the TLS handler instead of the socket.
                    let secure = try tls.map { try NIOSSLClientHandler(context: $0, serverHostname: endpoint.host) }
                    if let secure { try channel.pipeline.syncOperations.addHandler(secure) }
                    let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(
                        maxFrameSize: 1 << 24,
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                let connection = BenchConnection(sink: makeSink())
                                let wire = Wire(connection)
                                let position: ChannelPipeline.SynchronousOperations.Position =
                                    endpoint.tls ? .after(try channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self)) : .first
                                try channel.pipeline.syncOperations.addHandler(wire, position: position)
                                connection.wire = wire.context
                                try channel.pipeline.syncOperations.addHandler(connection)
                                return true
                            }
                        })
                    var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/ws")
                    head.headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
                    if let token = endpoint.token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Bool>(
                        upgradeRequestHead: head, upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(false) })
                    let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration))
                    return (channel, negotiated)
                }
            }
        guard try await upgraded.get() else { throw BenchError("the broker refused the WebSocket upgrade (a token it does not accept?)") }
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: BenchConnection.self).start()
        }.get()
        return channel
    }
}

/// Where a load connection goes: a broker started here, or one named by a URL, with the token
/// its upgrade presents.
struct BenchEndpoint: Sendable {
    var host: String
    var port: Int
    var tls = false
    var token: String?
    /// The local address the connection is made from; nil: the system's choice.
    var source: String?

    /// `http://`, `https://`, `ws://` or `wss://` host and port (the path is the broker's).
    init(url: String, token: String?) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty
        else { throw BenchError("--url must be like http://broker.example:8080, not \(url)") }
        switch scheme {
        case "http", "ws": tls = false
        case "https", "wss": tls = true
        default: throw BenchError("--url must start with http://, https://, ws:// or wss://, not \(url)")
        }
        self.host = host
        port = components.port ?? (tls ? 443 : 80)
        self.token = token
    }

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// The pipeline's first handler: its context writes bytes straight to the socket, and it cuts
/// the bytes read into the broker's frames (unmasked, never fragmented) for the connection, so
/// nothing reaches NIO's frame decoder behind it.
private final class Wire: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var context: ChannelHandlerContext?
    private unowned let connection: BenchConnection
    private var pending = ByteBuffer()

    init(_ connection: BenchConnection) {
        self.connection = connection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if pending.readableBytes == 0 {
            pending = incoming
        } else {
            pending.writeBuffer(&incoming)
        }
        while let (opcode, payload) = nextFrame() { connection.received(opcode: opcode, payload) }
    }

    /// The next whole frame of `pending`: RFC 6455 §5.2 header, a 7, 16 or 64-bit length.
    private func nextFrame() -> (UInt8, ByteBuffer)? {
        let start = pending.readerIndex
        guard let first = pending.getInteger(at: start, as: UInt8.self), let second = pending.getInteger(at: start + 1, as: UInt8.self)
        else { return nil }
        var header = 2
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = pending.getInteger(at: start + 2, as: UInt16.self) else { return nil }
            (header, length) = (4, Int(extended))
        } else if length == 127 {
            guard let extended = pending.getInteger(at: start + 2, as: UInt64.self) else { return nil }
            (header, length) = (10, Int(extended))
        }
        guard pending.readableBytes >= header + length else { return nil }
        pending.moveReaderIndex(forwardBy: header)
        guard let payload = pending.readSlice(length: length) else { return nil }
        return (first & 0x0F, payload)
    }
}

/// Runs `body` with an event-loop group and shuts the group down after it, also when it throws:
/// that closes every connection left open, so a failed run leaves no socket or thread behind
/// (`scale` runs many in one process).
func withEventLoopGroup<Value>(threads: Int, _ body: (MultiThreadedEventLoopGroup) async throws -> Value) async throws -> Value {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let value: Value
    do {
        value = try await body(group)
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
    try await group.shutdownGracefully()
    return value
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
