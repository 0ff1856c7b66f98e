import FerryCore
import FerryStore
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import FerryServer

/// What a connection's first request leaves on its pipeline. A WebSocket must keep nothing of
/// HTTP once upgraded (no decoder, encoder, codec or HTTP task): ten thousand idle ones would
/// otherwise hold ~10 KiB each for nothing. Runs `FerryChannel` on an embedded channel, with a
/// real broker on LMDB in a temporary folder.
@Suite("A connection's first request")
struct FirstRequestTests {
    @Test func anUpgradeAsFirstRequestLeavesOnlyTheWebSocketHandlers() async throws {
        try await withFerryChannel { channel, value in
            try channel.writeInbound(ByteBuffer(string: Self.upgradeRequest))
            channel.embeddedEventLoop.run()
            let answer = try #require(try channel.readOutbound(as: ByteBuffer.self))
            #expect(String(buffer: answer).hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
            guard case .handled = try await value.firstRequest.get() else {
                Issue.record("an upgraded connection was handed to the HTTP API")
                return
            }
            let pipeline = channel.pipeline.syncOperations
            #expect(throws: (any Error).self) { try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self) }
            #expect(throws: (any Error).self) { try pipeline.handler(type: HTTPResponseEncoder.self) }
            #expect(throws: (any Error).self) { try pipeline.handler(type: WebSocketUpgrade.self) }
            _ = try pipeline.handler(type: Wire.self)
            _ = try pipeline.handler(type: WebSocketHandler.self)

            // And it speaks the protocol: a masked `hello` is answered with `welcome`.
            try channel.writeInbound(Self.maskedText(#"{"op":"hello"}"#))
            channel.embeddedEventLoop.run()
            let welcome = try await Self.nextOutbound(of: channel)
            #expect(String(buffer: welcome).contains(#""op":"welcome""#))
        }
    }

    /// Nothing of HTTP is left to end the connection when the client's side closes (the server
    /// allows half-closure): the WebSocket handler must.
    @Test func anUpgradedConnectionClosesWhenTheClientsSideEnds() async throws {
        try await withFerryChannel { channel, _ in
            try channel.writeInbound(ByteBuffer(string: Self.upgradeRequest))
            channel.embeddedEventLoop.run()
            channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            channel.embeddedEventLoop.run()
            #expect(!channel.isActive)
        }
    }

    @Test func aPlainFirstRequestGoesToTheHTTPAPI() async throws {
        try await withFerryChannel { channel, value in
            try channel.writeInbound(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
            guard case .http = try await value.firstRequest.get() else {
                Issue.record("a plain request was not handed to the HTTP API")
                return
            }
            // The upgrade stays possible on this connection (a proxy's pooled connection).
            _ = try channel.pipeline.syncOperations.handler(type: WebSocketUpgrade.self)
        }
    }

    @Test func aConnectionClosedBeforeItsFirstRequestEndsWithoutOne() async throws {
        try await withFerryChannel { channel, value in
            _ = try channel.finish()
            await #expect(throws: ChannelError.self) { try await value.firstRequest.get() }
        }
    }

    private static let upgradeRequest =
        "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

    /// One final client text frame, masked as RFC 6455 §5.3 requires.
    private static func maskedText(_ text: String) -> ByteBuffer {
        let payload = Array(text.utf8)
        let mask: [UInt8] = [1, 2, 3, 4]
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(0x81))
        buffer.writeInteger(UInt8(0x80 | payload.count))
        buffer.writeBytes(mask)
        buffer.writeBytes(payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        return buffer
    }

    /// The next bytes the connection wrote; the core answers from its own threads.
    private static func nextOutbound(of channel: EmbeddedChannel) async throws -> ByteBuffer {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            channel.embeddedEventLoop.run()
            if let buffer = try channel.readOutbound(as: ByteBuffer.self) { return buffer }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw ChannelError.ioOnClosedChannel
    }

    private func withFerryChannel(_ body: (EmbeddedChannel, FerryChannel.Value) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-first-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var store = LMDBStoreConfiguration(path: folder)
        store.mapSize = 64 << 20
        let broker = try Broker(store: try LMDBMessageStore(configuration: store), configuration: BrokerConfiguration())
        broker.start()
        let logger = Logger(label: "test")
        let session = WebSocketSession(broker: broker, limiter: ConnectionLimiter(maxConnections: nil, maxPerAddress: nil), logger: logger)
        let ferry = FerryChannel(
            responder: { _, _, _ in }, webSocketPath: "/v1/ws", webSocket: session,
            authenticator: try await Authenticator(key: nil, adminToken: nil, rules: nil), tls: nil)
        let channel = EmbeddedChannel()
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()
        let value = try await ferry.setup(channel: channel, logger: logger).get()
        do {
            try await body(channel, value)
        } catch {
            await broker.shutdown()
            throw error
        }
        _ = try? channel.finish()
        await broker.shutdown()
    }
}
