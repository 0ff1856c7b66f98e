import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOSSL

/// The server's child channel: HTTP/1.1 for the API, and on `GET /v1/ws` an upgrade to Ferry's
/// own WebSocket handling; with a TLS context, both behind TLS.
///
/// A connection's first request decides what it costs. Only the HTTP decoder and encoder and
/// ``WebSocketUpgrade`` wait for it. A first request that upgrades keeps nothing of HTTP: the
/// upgrade removes them, and no task, async channel or HTTP codec is ever made for the
/// connection, so an idle WebSocket holds its socket, ``Wire``, ``WebSocketHandler`` and its core
/// connection only. Any other first request installs Hummingbird's HTTP handling behind, and the
/// connection's task serves requests until it closes.
///
/// The upgrade is answered on any request of a connection, not only the first: a proxy that
/// keeps a pool of connections to the broker (nginx `keepalive`, ingress-nginx by default) sends
/// a WebSocket request down a connection that has already served plain HTTP. NIO's upgrade
/// handler only looks at the first request, so ``WebSocketUpgrade`` does the handshake itself.
/// Such a connection keeps its HTTP task, idle, until it closes.
struct FerryChannel: ServerChildChannel, HTTPChannelHandler {
    /// What a connection's first request turned it into.
    enum FirstRequest: Sendable {
        /// Plain HTTP: the API serves it through this channel.
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// Upgraded to a WebSocket, or refused: the pipeline's handlers own it now.
        case handled
    }

    struct Value: ServerChildChannelValue {
        let channel: any Channel
        /// Settled when the first request's head arrives; failed if the connection closes first.
        let firstRequest: EventLoopFuture<FirstRequest>
    }

    let responder: HTTPChannelHandler.Responder
    let webSocketPath: String
    let webSocket: WebSocketSession
    let authenticator: Authenticator
    let tls: NIOSSLContext?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls)) }
            try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false)
            let firstRequest = channel.eventLoop.makePromise(of: FirstRequest.self)
            let secure = tls != nil
            try pipeline.addHandler(
                WebSocketUpgrade(
                    path: webSocketPath, session: webSocket, authenticator: authenticator, logger: logger,
                    firstRequest: firstRequest
                ) { channel in try Self.serveHTTP(on: channel, secure: secure, logger: logger) })
            return Value(channel: channel, firstRequest: firstRequest.futureResult)
        }
    }

    func handle(value: Value, logger: Logger) async {
        // A failure here is a connection that closed before its first request: nothing to serve.
        guard case .http(let http) = try? await value.firstRequest.get() else { return }
        await handleHTTP(asyncChannel: http, logger: logger)
    }

    /// Hummingbird's HTTP handling, behind the handlers that wait for the first request.
    private static func serveHTTP(on channel: any Channel, secure: Bool, logger: Logger) throws
        -> NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(HTTP1ToHTTPServerCodec(secure: secure))
        try pipeline.addHandler(HTTPConnectionStateHandler(idleTimeout: nil, logger: logger))
        return try NIOAsyncChannel(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with Ferry's WebSocket endpoint.
    static func ferry(webSocketPath: String, webSocket: WebSocketSession, authenticator: Authenticator, tls: NIOSSLContext?)
        -> HTTPServerBuilder
    {
        .init { responder in
            FerryChannel(responder: responder, webSocketPath: webSocketPath, webSocket: webSocket, authenticator: authenticator, tls: tls)
        }
    }
}
