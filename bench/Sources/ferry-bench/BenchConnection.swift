import NIOCore
import NIOHTTP1
import NIOPosix
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
/// or string per message, and writes wait for `flush()` so a batch costs one syscall.
final class BenchConnection: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let sink: any FrameSink
    private var context: ChannelHandlerContext?

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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            sink.received(frame.unmaskedData, on: self)
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        sink.readComplete(on: self)
    }

    /// Queues a text frame; nothing leaves before `flush()`.
    func send(_ text: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: text)), promise: nil)
    }

    func send(_ text: String) {
        guard let context else { return }
        send(context.channel.allocator.buffer(string: text))
    }

    func flush() {
        context?.flush()
    }

    func allocate(_ capacity: Int) -> ByteBuffer {
        context?.channel.allocator.buffer(capacity: capacity) ?? ByteBuffer()
    }

    /// Opens a WebSocket to `127.0.0.1:port/v1/ws` with a sink made on its event loop, and
    /// starts the sink.
    static func open(port: Int, group: any EventLoopGroup, sink makeSink: @escaping @Sendable () -> any FrameSink) async throws
        -> any Channel
    {
        let (channel, upgraded) = try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Bool>(
                        maxFrameSize: 1 << 24,
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                try channel.pipeline.syncOperations.addHandler(BenchConnection(sink: makeSink()))
                                return true
                            }
                        })
                    var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/v1/ws")
                    head.headers.add(name: "Host", value: "127.0.0.1:\(port)")
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Bool>(
                        upgradeRequestHead: head, upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(false) })
                    let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration))
                    return (channel, negotiated)
                }
            }
        guard try await upgraded.get() else { throw BenchError("the broker refused the WebSocket upgrade") }
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: BenchConnection.self).start()
        }.get()
        return channel
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
