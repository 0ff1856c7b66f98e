import FerryProtocol
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket

/// Opens the broker's WebSocket in steps the caller can put deadlines on (TCP connect, then TLS
/// and the upgrade's answer), and shows the HTTP status of a refused upgrade. swift-websocket's
/// client does the whole in one call that hides the status and cannot be abandoned: NIO's
/// upgrade handler waits for ever when the server closes without answering.
struct WebSocketDialer: Sendable {
    enum Failure: Error, CustomStringConvertible {
        case invalidURL(String)
        /// The server answered the upgrade with an HTTP error.
        case refused(UpgradeRefusal)
        /// The connection ended before the upgrade was answered (a broker dying, or restarting).
        case closedDuringHandshake

        var description: String {
            switch self {
            case .invalidURL(let url): "not a ws:// or wss:// URL: \(url)"
            case .refused(let refusal): "upgrade refused with HTTP \(refusal.status): \(refusal.error)"
            case .closedDuringHandshake: "the connection closed before the upgrade was answered"
            }
        }
    }

    /// What the upgrade's answer turned the connection into.
    enum Answer: Sendable {
        case upgraded(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused(EventLoopFuture<UpgradeRefusal>)
    }

    /// A TCP connection whose upgrade request is on its way.
    struct Handshake: Sendable {
        let channel: any Channel
        let answer: EventLoopFuture<Answer>
    }

    private let host: String
    private let port: Int
    /// The host when it is an IP address: connected to directly, without a resolver thread and
    /// happy-eyeballs timers per attempt (a tenth of a reconnecting client's CPU).
    private let address: SocketAddress?
    /// Path and query of the upgrade request.
    private let target: String
    private let hostHeader: String
    private let tls: NIOSSLContext?
    private let maxFrameSize: Int
    private let connectTimeout: Duration

    init(url: String, maxFrameSize: Int, connectTimeout: Duration) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            let host = components.host, !host.isEmpty, ["ws", "wss", "http", "https"].contains(scheme)
        else { throw Failure.invalidURL(url) }
        let secure = scheme == "wss" || scheme == "https"
        self.host = host
        port = components.port ?? (secure ? 443 : 80)
        address = try? SocketAddress(ipAddress: host, port: port)
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        target = path + (components.percentEncodedQuery.map { "?\($0)" } ?? "")
        let bracketed = host.contains(":") ? "[\(host)]" : host
        hostHeader = components.port.map { "\(bracketed):\($0)" } ?? bracketed
        tls = secure ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        self.maxFrameSize = maxFrameSize
        self.connectTimeout = connectTimeout
    }

    /// Opens the TCP connection with TLS and the upgrade set up; the request (with `token` as
    /// `Authorization: Bearer`) goes out as soon as it is open. Cancelling stops the wait at once.
    func connect(token: String?) async throws -> Handshake {
        let timeout = TimeAmount.nanoseconds(connectTimeout.components.seconds * 1_000_000_000 + connectTimeout.components.attoseconds / 1_000_000_000)
        return try await abandoningOnCancel(dispose: { $0.channel.close(promise: nil) }) {
            let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(timeout)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            let initializer: @Sendable (any Channel) -> EventLoopFuture<Handshake> = { channel in
                channel.eventLoop.makeCompletedFuture { try self.configure(channel, token: token) }
            }
            if let address = self.address { return try await bootstrap.connect(to: address, channelInitializer: initializer) }
            return try await bootstrap.connect(host: self.host, port: self.port, channelInitializer: initializer)
        }
    }

    /// Waits for the upgrade's answer: the open WebSocket, or `Failure.refused` with the
    /// status, `Retry-After` and error body. Cancelling closes the connection.
    func answer(_ handshake: Handshake) async throws -> NIOAsyncChannel<WebSocketFrame, WebSocketFrame> {
        let channel = handshake.channel
        return try await withTaskCancellationHandler {
            switch try await Self.answerOrClose(handshake) {
            case .upgraded(let webSocket): return webSocket
            case .refused(let refusal): throw Failure.refused(try await refusal.get())
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    private func configure(_ channel: any Channel, token: String?) throws -> Handshake {
        let pipeline = channel.pipeline.syncOperations
        if let tls {
            // SNI names hosts; an IP address is not allowed there.
            try pipeline.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: address == nil ? host : nil))
        }
        let maxFrameSize = maxFrameSize
        let upgrader = NIOTypedWebSocketClientUpgrader<Answer>(maxFrameSize: maxFrameSize) { channel, _ in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    NIOWebSocketFrameAggregator(minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 1 << 16, maxAccumulatedFrameSize: maxFrameSize))
                return .upgraded(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
            }
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: hostHeader)
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        let upgrade = NIOTypedHTTPClientUpgradeConfiguration<Answer>(
            upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: headers),
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.eventLoop.makeCompletedFuture {
                    let promise = channel.eventLoop.makePromise(of: UpgradeRefusal.self)
                    try channel.pipeline.syncOperations.addHandler(RefusalReader(promise: promise))
                    return .refused(promise.futureResult)
                }
            })
        var configuration = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: upgrade)
        configuration.leftOverBytesStrategy = .forwardBytes  // frames right behind the 101 are the WebSocket's
        return Handshake(channel: channel, answer: try pipeline.configureUpgradableHTTPClientPipeline(configuration: configuration))
    }

    /// The upgrade's answer, or `closedDuringHandshake` when the connection ends first: NIO's
    /// handler leaves its answer pending for ever when the server closes without one.
    private static func answerOrClose(_ handshake: Handshake) async throws -> Answer {
        let loop = handshake.channel.eventLoop
        let settled = NIOLoopBoundBox.makeBoxSendingValue(false, eventLoop: loop)
        let promise = loop.makePromise(of: Answer.self)
        // Both callbacks run on the channel's event loop, so the flag needs no lock.
        handshake.answer.whenComplete { result in
            guard !settled.value else { return }
            settled.value = true
            promise.completeWith(result)
        }
        handshake.channel.closeFuture.whenComplete { _ in
            guard !settled.value else { return }
            settled.value = true
            promise.fail(Failure.closedDuringHandshake)
        }
        return try await promise.futureResult.get()
    }
}

extension WebSocketDialer {
    /// Runs an open WebSocket until either side ends it: `outgoing` texts go out as masked text
    /// frames (its end sends close 1000), text frames come in through `onText`, pings are
    /// answered. Returns the broker's close code and reason when it sent a close frame.
    /// Cancelling closes the connection.
    static func serve(
        _ webSocket: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, outgoing: AsyncStream<[UInt8]>,
        onText: @escaping @Sendable ([UInt8]) async -> Void, onHeard: @escaping @Sendable () async -> Void
    ) async throws -> (code: UInt16?, reason: String) {
        let channel = webSocket.channel
        return try await withTaskCancellationHandler {
            try await webSocket.executeThenClose { inbound, outbound in
                try await withThrowingTaskGroup(of: (code: UInt16?, reason: String)?.self) { group in
                    group.addTask {
                        for await text in outgoing { try await outbound.write(frame(.text, ByteBuffer(bytes: text))) }
                        // The application closed: say so, and leave without waiting for the echo.
                        var goodbye = ByteBuffer()
                        goodbye.write(webSocketErrorCode: .normalClosure)
                        try await outbound.write(frame(.connectionClose, goodbye))
                        return nil
                    }
                    group.addTask {
                        for try await message in inbound {
                            switch message.opcode {
                            case .text: await onText(Array(message.unmaskedData.readableBytesView))
                            case .ping:
                                await onHeard()
                                try await outbound.write(frame(.pong, message.unmaskedData))
                            case .pong: await onHeard()
                            case .connectionClose:
                                var data = message.unmaskedData
                                let code = data.readWebSocketErrorCode()
                                let reason = data.readString(length: data.readableBytes) ?? ""
                                // The echo completes the closing handshake; the connection ends either way.
                                var echo = ByteBuffer()
                                if let code { echo.write(webSocketErrorCode: code) }
                                try? await outbound.write(frame(.connectionClose, echo))
                                return (code.map { UInt16(webSocketErrorCode: $0) }, reason)
                            default: break
                            }
                        }
                        return (nil, "the connection ended")
                    }
                    let first = try await group.next() ?? nil
                    group.cancelAll()
                    return first ?? (nil, "closed by the client")
                }
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// A client frame: always masked (RFC 6455 §5.3).
    private static func frame(_ opcode: WebSocketOpcode, _ data: ByteBuffer) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data)
    }
}

/// Collects a refused upgrade's response (status, headers, the first 64 KiB of the body) and
/// closes the connection: the broker closes it too, and nothing else may use it.
private final class RefusalReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    private static let bodyLimit = 65536

    private let promise: EventLoopPromise<UpgradeRefusal>
    private var head: HTTPResponseHead?
    private var body: [UInt8] = []
    private var done = false

    init(promise: EventLoopPromise<UpgradeRefusal>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body(let buffer):
            let room = max(0, Self.bodyLimit - body.count)
            body += buffer.readableBytesView.prefix(room)
        case .end: complete(context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        complete(context)  // a body cut short still tells the status
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        complete(context)
    }

    private func complete(_ context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        if let head {
            let headers = head.headers.map { (name: $0.name, value: $0.value) }
            promise.succeed(UpgradeRefusal(status: Int(head.status.code), headers: headers, body: body))
        } else {
            promise.fail(WebSocketDialer.Failure.closedDuringHandshake)
        }
        context.close(promise: nil)
    }
}
