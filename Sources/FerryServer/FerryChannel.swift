import FerryCore
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The server's child channel: HTTP/1.1, upgraded to a raw WebSocket on `GET /v1/ws`.
///
/// Modelled on HummingbirdWebSocket's `HTTP1WebSocketUpgradeChannel`, but an upgraded channel
/// gets Ferry's own frame handler rather than a message stream: the protocol needs its own close
/// codes (4002 on heartbeat silence, 4008 on an oversize frame), to see pongs, and to write a
/// batch of frames with one flush, all without a task hop per frame.
struct FerryChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case websocket(any Channel, Connection)
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let maxFrameSize: Int
    let webSocketPath: String
    let webSocket: WebSocketSession

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let path = webSocketPath
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                // Oversize frames surface as errors so the session can close with 4008 itself.
                maxFrameSize: maxFrameSize,
                enableAutomaticErrorHandling: false,
                shouldUpgrade: { channel, head in
                    let target = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
                    return channel.eventLoop.makeSucceededFuture(target == path ? HTTPHeaders() : nil)
                },
                upgradePipelineHandler: { [webSocket] channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        UpgradeResult.websocket(channel, try webSocket.attach(to: channel))
                    }
                }
            )
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
                        return UpgradeResult.notUpgraded(
                            try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                                wrappingChannelSynchronously: channel,
                                configuration: .init(isOutboundHalfClosureEnabled: true)
                            ))
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(
                upgradeConfiguration: serverUpgradeConfiguration)
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let negotiation = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(upgradeResult: negotiation, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .websocket(let channel, let connection):
                await webSocket.serve(channel, connection)
            }
        } catch {
            logger.debug("connection ended before it was set up", metadata: ["error": "\(error)"])
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with Ferry's WebSocket endpoint.
    static func ferry(maxFrameSize: Int, webSocketPath: String, webSocket: WebSocketSession) -> HTTPServerBuilder {
        .init { responder in
            FerryChannel(responder: responder, maxFrameSize: maxFrameSize, webSocketPath: webSocketPath, webSocket: webSocket)
        }
    }
}
