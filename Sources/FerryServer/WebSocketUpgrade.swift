import Crypto
import FerryCore
import FerryProtocol
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Watches the requests of a connection; a WebSocket upgrade of `path` is answered here (RFC 6455
/// §4.2: 101 with `Sec-WebSocket-Accept`), every other request goes on to the HTTP API. When
/// authentication is on, an upgrade without a valid token is refused with 401 before it happens.
///
/// It also settles what the connection's first request made of it (see ``FerryChannel``): the
/// first request that is not an upgrade installs the HTTP API's handlers behind it.
final class WebSocketUpgrade: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let path: String
    private let session: WebSocketSession
    private let authenticator: Authenticator
    private let logger: Logger
    /// The upgrade whose request is still arriving: its accept value and who presented it.
    private var upgrading: (accept: String, principal: Principal)?
    /// An upgrade was refused (a bad token, a connection limit) and answered: the rest of its
    /// request is dropped and the connection closes.
    private var refused = false
    /// Pending until the first request's head arrives.
    private var firstRequest: EventLoopPromise<FerryChannel.FirstRequest>?
    private let serveHTTP: (any Channel) throws -> NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    init(
        path: String, session: WebSocketSession, authenticator: Authenticator, logger: Logger,
        firstRequest: EventLoopPromise<FerryChannel.FirstRequest>,
        serveHTTP: @escaping (any Channel) throws -> NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    ) {
        self.path = path
        self.session = session
        self.authenticator = authenticator
        self.logger = logger
        self.firstRequest = firstRequest
        self.serveHTTP = serveHTTP
    }

    /// The first request is plain HTTP (or could not be parsed): the API's handlers go in behind
    /// this one before it reaches them, and the connection's task starts serving.
    private func settleAsHTTP(context: ChannelHandlerContext) {
        guard let promise = firstRequest else { return }
        firstRequest = nil
        do {
            promise.succeed(.http(try serveHTTP(context.channel)))
        } catch {
            promise.fail(error)
            context.close(promise: nil)
        }
    }

    /// The first request was answered here (upgraded or refused): no HTTP task for this one.
    private func settleAsHandled() {
        firstRequest?.succeed(.handled)
        firstRequest = nil
    }

    /// Also how a connection that closes before its first request ends: a closed channel's
    /// pipeline removes its handlers.
    func handlerRemoved(context: ChannelHandlerContext) {
        firstRequest?.fail(ChannelError.ioOnClosedChannel)
        firstRequest = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A first request that does not parse is the API's to answer (400), as any later one.
        settleAsHTTP(context: context)
        context.fireErrorCaught(error)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // A server shutting down closes connections that have not sent a request yet; the HTTP
        // handlers, once installed, finish the request in progress first.
        if event is ChannelShouldQuiesceEvent, firstRequest != nil {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let part = unwrapInboundIn(data)
        if case .head(let head) = part, let accept = acceptValue(for: head) {
            let principal: Principal
            do {
                principal = try admit(head, context: context, takingSlot: true)
            } catch {
                refuse(error, context: context)
                return
            }
            upgrading = (accept, principal)
            return
        }
        if case .head(let head) = part, head.method == .GET, target(of: head) == path + "/check" {
            // The upgrade's checks without the upgrade: a browser's WebSocket API hides why an
            // upgrade failed, so ferry.js asks here. Answered like a refusal, then closed.
            do {
                _ = try admit(head, context: context, takingSlot: false)
                refuse(nil, context: context, crossOrigin: true)
            } catch {
                refuse(error, context: context, crossOrigin: true)
            }
            return
        }
        guard let upgrade = upgrading else {
            settleAsHTTP(context: context)
            context.fireChannelRead(data)
            return
        }
        // The upgrade request's body (there should be none) is dropped; at its end, switch.
        guard case .end = part else { return }
        upgrading = nil
        switchToWebSocket(context: context, accept: upgrade.accept, principal: upgrade.principal)
    }

    /// The checks an upgrade must pass: a valid token (when authentication is on), then the
    /// connection limits. With `takingSlot`, an admitted upgrade takes its connection slot,
    /// given back however its connection ends.
    private func admit(_ head: HTTPRequestHead, context: ChannelHandlerContext, takingSlot: Bool) throws(ProtocolError) -> Principal {
        let query = head.uri.split(separator: "?", maxSplits: 1).dropFirst().first
        let token = Authenticator.presentedToken(authorization: head.headers.first(name: "authorization"), query: query)
        let principal = try authenticator.principal(presenting: token)
        let address = context.channel.remoteAddress?.ipAddress ?? ""
        guard takingSlot else {
            if let limit = session.limiter.limit(refusing: address) { throw limit.refusal }
            return principal
        }
        if let limit = session.limiter.acquire(address) {
            session.broker.rejected(by: limit)
            logger.debug("websocket upgrade refused", metadata: ["ferry.limit": "\(limit.rawValue)"])
            throw limit.refusal
        }
        let limiter = session.limiter
        context.channel.closeFuture.whenComplete { _ in limiter.release(address) }
        return principal
    }

    private func switchToWebSocket(context: ChannelHandlerContext, accept: String, principal: Principal) {
        var headers = HTTPHeaders()
        headers.add(name: "Upgrade", value: "websocket")
        headers.add(name: "Connection", value: "Upgrade")
        headers.add(name: "Sec-WebSocket-Accept", value: accept)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .switchingProtocols, headers: headers))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        settleAsHandled()
        do {
            try session.attach(to: context.channel, principal: principal)
            try removeHTTPHandlers(context: context)
        } catch {
            logger.debug("websocket upgrade failed", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    /// After the 101 is encoded, no byte of this connection is HTTP again: the decoder (and the
    /// request bytes it keeps), the encoder, its validator and this handler leave the pipeline.
    /// Bytes a client sent after its upgrade request without waiting for the 101 are dropped with
    /// the decoder; RFC 6455 §4.1 has the client wait.
    private func removeHTTPHandlers(context: ChannelHandlerContext) throws {
        let pipeline = context.pipeline.syncOperations
        pipeline.removeHandler(try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self), promise: nil)
        pipeline.removeHandler(try pipeline.handler(type: HTTPResponseEncoder.self), promise: nil)
        pipeline.removeHandler(try pipeline.handler(type: NIOHTTPResponseHeadersValidator.self), promise: nil)
        pipeline.removeHandler(context: context, promise: nil)
    }

    /// Answers a refused upgrade with the HTTP API's error body, before any WebSocket exists, and
    /// closes this connection (the HTTP handlers behind never saw the request, so it cannot go on
    /// serving them in order); open WebSockets are untouched. A nil error answers a check that
    /// passed (204); `crossOrigin` lets a page of any origin read the answer.
    private func refuse(_ error: ProtocolError?, context: ChannelHandlerContext, crossOrigin: Bool = false) {
        refused = true
        settleAsHandled()
        var headers = HTTPHeaders()
        var body = ByteBuffer()
        if let error {
            logger.debug("websocket upgrade refused", metadata: ["ferry.code": "\(error.code.rawValue)"])
            body = ByteBuffer(bytes: (try? JSONEncoder().encode(ErrorBody(error))) ?? Data())
            headers.add(name: "Content-Type", value: "application/json")
            if error.code == .unauthorized { headers.add(name: "WWW-Authenticate", value: "Bearer") }
            if error.code == .unavailable || error.code == .rateLimited { headers.add(name: "Retry-After", value: "1") }
        }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        headers.add(name: "Connection", value: "close")
        if crossOrigin {
            headers.add(name: "Access-Control-Allow-Origin", value: "*")
            headers.add(name: "Access-Control-Expose-Headers", value: "Retry-After")
        }
        let status = error.map { HTTPResponseStatus(statusCode: $0.code.httpStatus) } ?? .noContent
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    /// `Sec-WebSocket-Accept` for a well-formed upgrade of `path`, else nil (the request is then
    /// an ordinary one, and the API answers 426).
    private func acceptValue(for head: HTTPRequestHead) -> String? {
        guard head.method == .GET, target(of: head) == path,
            head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }),
            head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "upgrade" }),
            head.headers.first(name: "sec-websocket-version") == "13",
            let key = head.headers.first(name: "sec-websocket-key"), Data(base64Encoded: key)?.count == 16
        else { return nil }
        let digest = Insecure.SHA1.hash(data: Data((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))
        return Data(digest).base64EncodedString()
    }

    /// The request's path, without its query.
    private func target(of head: HTTPRequestHead) -> String {
        head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
    }
}
