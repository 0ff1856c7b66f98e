import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus
import Synchronization

/// A protocol error as an HTTP response: `{"error":{"code","message"}}` with the code's status.
struct APIError: HTTPResponseError {
    let error: ProtocolError
    /// Whole seconds for `Retry-After`, when waiting that long lets the request pass.
    var retryAfter: Int?

    init(_ error: ProtocolError, retryAfter: Int? = nil) {
        self.error = error
        self.retryAfter = retryAfter
    }

    init(_ code: ErrorCode, _ message: String) {
        self.error = ProtocolError(code, message)
    }

    var status: HTTPResponse.Status { .init(code: error.code.httpStatus) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = jsonResponse(status: status, body: ErrorBody(error))
        // RFC 6750: a 401 names the scheme the request should have used.
        if error.code == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
        if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }
}

func jsonResponse(status: HTTPResponse.Status = .ok, bytes: [UInt8]) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
}

func jsonResponse(status: HTTPResponse.Status = .ok, body: some Encodable) -> Response {
    jsonResponse(status: status, bytes: Array((try? encoder.encode(body)) ?? Data("{}".utf8)))
}

/// The routes of PROTOCOL.md's HTTP API.
struct HTTPAPI: Sendable {
    let broker: Broker
    let adminToken: BearerSecret?
    /// Client authentication of the publish and read routes.
    let authenticator: Authenticator
    let metrics: PrometheusCollectorRegistry
    let gauges: StateGauges
    let readiness: Readiness
    /// The publish rate limit per client; nil when publishes are not rate limited.
    let publishRate: PublishRateBuckets?

    /// Whether the broker takes traffic: false once shutdown starts.
    final class Readiness: Sendable {
        private let ready = Atomic<Bool>(true)
        var isReady: Bool { ready.load(ordering: .relaxed) }
        func shuttingDown() { ready.store(false, ordering: .relaxed) }
    }

    func register(on router: Router<FerryRequestContext>) {
        router.add(middleware: ErrorBodyMiddleware())
        router.on(.publish) { request, context in try await publishOne(request, context) }
        router.on(.publishBatch) { request, context in try await publishBatch(request, context) }
        router.on(.readMessages) { request, context in try await readMessages(request, context) }
        router.on(.topicInfo) { request, context in
            let name = try topicName(context)
            try authorize(request, toSubscribe: name)
            guard let info = try await broker.topicInfo(name) else { throw APIError(.notFound, "no topic \(name)") }
            return jsonResponse(body: info)
        }
        router.on(.health) { _, _ in jsonResponse(bytes: Array(#"{"status":"ok"}"#.utf8)) }
        router.on(.readiness) { _, _ in
            readiness.isReady
                ? jsonResponse(bytes: Array(#"{"status":"ready"}"#.utf8))
                : jsonResponse(status: .serviceUnavailable, bytes: Array(#"{"status":"shutting_down"}"#.utf8))
        }
        router.on(.metrics) { _, _ in
            await gauges.update()
            var text: [UInt8] = []
            metrics.emit(into: &text)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
        // A module script is fetched with CORS: pages of other origins may import it only with this header.
        router.on(.ferryJS) { _, _ in
            staticFile(PackageResources.ferry_js, type: "text/javascript", headers: [.accessControlAllowOrigin: "*"])
        }
        // The console's shell holds no data, so it is served without the token; the page asks for
        // it and sends it on every admin API request. Framing is refused: the page takes a secret.
        let policy: HTTPFields = [.contentSecurityPolicy: "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"]
        router.on(.console) { _, _ in staticFile(PackageResources.console_html, type: "text/html", headers: policy) }
        // The console's scripts and style sheet, by name: any other name is 404.
        router.on(.consoleAsset) { _, context in
            let name = context.parameters.get("file") ?? ""
            guard let (bytes, type) = Self.consoleAssets[name] else { throw APIError(.notFound, "no console file \(name)") }
            return staticFile(bytes, type: type, headers: [:])
        }
        registerAdmin(on: router)
        router.on(.openAPI) { _, _ in staticFile(PackageResources.openapi_json, type: "application/json", headers: [.accessControlAllowOrigin: "*"]) }
        // A WebSocket upgrade is taken before the router; a plain GET of its path lands here.
        router.on(.webSocket) { _, _ in
            var response = jsonResponse(
                status: .upgradeRequired, body: ErrorBody(ProtocolError(.badFrame, "this is the WebSocket endpoint: send a WebSocket upgrade")))
            response.headers[.upgrade] = "websocket"
            return response
        }
        router.add(middleware: MethodNotAllowedMiddleware())
    }

    /// The files of `/console/{file}`: their bytes and type.
    static let consoleAssets: [String: ([UInt8], String)] = [
        "console.css": (PackageResources.console_css, "text/css"),
        "console.js": (PackageResources.console_js, "text/javascript"), "common.js": (PackageResources.common_js, "text/javascript"),
        "charts.js": (PackageResources.charts_js, "text/javascript"), "clients.js": (PackageResources.clients_js, "text/javascript"),
        "topic.js": (PackageResources.topic_js, "text/javascript"), "tail.js": (PackageResources.tail_js, "text/javascript"),
    ]

    /// A file compiled into the binary, as UTF-8 text of `type`.
    private func staticFile(_ bytes: [UInt8], type: String, headers: HTTPFields) -> Response {
        var fields = headers
        fields[.contentType] = "\(type); charset=utf-8"
        return Response(status: .ok, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    private func registerAdmin(on router: Router<FerryRequestContext>) {
        router.on(.adminTopics) { request, _ in
            try authorize(request)
            return jsonResponse(body: TopicList(topics: try await broker.topicInfos()))
        }
        router.on(.adminTopic) { request, context in
            try authorize(request)
            let name = try topicName(context)
            guard let info = try await broker.adminTopicInfo(name, listingSubscriptions: true) else { throw APIError(.notFound, "no topic \(name)") }
            return jsonResponse(body: info)
        }
        router.on(.adminTrimTopic) { request, context in
            try authorize(request)
            let name = try topicName(context)
            let trim = try await decode(TrimRequest.self, from: request, shape: #"{"to": <version>, "force": <bool>}"#)
            switch try await broker.trimTopic(name, through: trim.to, force: trim.force ?? false) {
            case .trimmed(let result):
                return jsonResponse(body: result)
            case .refused(let losses):
                let clients = losses.map { "\($0.clientID) (\($0.from)...\($0.to))" }.joined(separator: ", ")
                let error = ProtocolError(.sessionConflict, "durable subscribers have not acked what the trim would delete: \(clients)")
                return jsonResponse(status: .conflict, body: ErrorBody(error, affected: losses))
            }
        }
        router.on(.adminDeleteTopic) { request, context in
            try authorize(request)
            let name = try topicName(context)
            guard try await broker.deleteTopic(name) else { throw APIError(.notFound, "no topic \(name)") }
            return deleted("topic", name)
        }
        router.on(.adminClients) { request, _ in try await listClients(request) }
        router.on(.adminClient) { request, context in
            try authorize(request)
            let id = try clientID(context)
            guard let detail = try await broker.clientDetail(id) else { throw APIError(.notFound, "no client \(id)") }
            return jsonResponse(body: detail)
        }
        router.on(.adminRewindClient) { request, context in
            try authorize(request)
            let id = try clientID(context)
            let rewind = try await decode(RewindRequest.self, from: request, shape: #"{"topic": "<topic>", "to": <version>}"#)
            return jsonResponse(body: try await broker.rewindClient(id, topic: rewind.topic, to: rewind.to))
        }
        router.on(.adminDeleteClient) { request, context in
            try authorize(request)
            let id = try clientID(context)
            guard try await broker.deleteClient(id) else { throw APIError(.notFound, "no client \(id)") }
            return deleted("client_id", id)
        }
        router.on(.adminStats) { request, _ in
            try authorize(request)
            return jsonResponse(body: try await broker.stats())
        }
        registerBackup(on: router)
        registerTopicConfig(on: router)
    }

    /// A small JSON request body, or `bad_frame` naming the expected `shape`.
    func decode<Body: Decodable>(_ type: Body.Type, from request: Request, shape: String) async throws -> Body {
        let body = try await collect(request, upTo: 64 * 1024)
        guard let decoded = try? JSONDecoder().decode(type, from: Data(body)) else {
            throw APIError(.badFrame, "the body must be \(shape)")
        }
        return decoded
    }

    /// `{"<key>": name, "deleted": true}`, the answer of the admin deletes.
    func deleted(_ key: StaticString, _ name: String) -> Response {
        var writer = JSONWriter()
        writer.field(key, name)
        writer.field("deleted", true)
        return jsonResponse(bytes: writer.finish())
    }

    /// 403 when the admin API is off, 401 unless the bearer token matches (compared in constant time).
    func authorize(_ request: Request) throws {
        guard let adminToken else { throw APIError(.forbidden, "the admin API is off: set FERRY_ADMIN_TOKEN") }
        let header = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard header.hasPrefix(prefix), adminToken.matches(String(header.dropFirst(prefix.count))) else {
            throw APIError(.unauthorized, "a valid admin bearer token is required")
        }
    }

    /// Who sent `request` (a bearer token or `?token=`): 401 when authentication is on and the
    /// token is missing or not valid.
    private func principal(_ request: Request) throws(APIError) -> Principal {
        let token = Authenticator.presentedToken(authorization: request.headers[.authorization], query: request.uri.query.map { $0[...] })
        do {
            return try authenticator.principal(presenting: token)
        } catch {
            throw APIError(error)
        }
    }

    /// 403 unless `permissions` allow publishing to every one of `topics`.
    private func requirePublish(_ permissions: Permissions, to topics: some Sequence<String>) throws(APIError) {
        if let denied = topics.first(where: { !permissions.mayPublish($0) }) {
            throw APIError(.forbidden, "not allowed to publish to \(denied); nothing was published")
        }
    }

    /// 401 without a valid token, 403 when it may not subscribe to (so read) `topic`.
    private func authorize(_ request: Request, toSubscribe topic: String) throws(APIError) {
        guard try principal(request).permissions.maySubscribe(topic) else {
            throw APIError(.forbidden, "not allowed to read \(topic)")
        }
    }

    private func topicName(_ context: FerryRequestContext) throws -> String {
        let raw = context.parameters.get("topic") ?? ""
        let name = raw.removingPercentEncoding ?? raw
        guard Names.isValidTopic(name) else {
            throw APIError(.invalidTopic, "topic names are 1-255 bytes of A-Z a-z 0-9 _ - . : / and cannot start with $")
        }
        return name
    }

    private func clientID(_ context: FerryRequestContext) throws -> String {
        let raw = context.parameters.get("client") ?? ""
        let id = raw.removingPercentEncoding ?? raw
        guard Names.isValidClientID(id) else { throw APIError(.invalidClientID, "client ids are 1-128 bytes of A-Z a-z 0-9 _ - . : @") }
        return id
    }

    private var maxMessageBytes: Int { broker.configuration.limits.maxMessageBytes }

    private func publishOne(_ request: Request, _ context: FerryRequestContext) async throws -> Response {
        let topic = try topicName(context)
        let sender = try principal(request)
        try requirePublish(sender.permissions, to: [topic])
        let body = try await collect(request, upTo: maxMessageBytes)
        let payload: Payload
        if isJSON(request.headers[.contentType]) {
            do {
                _ = try JSONScanner.validate(body)
            } catch {
                throw APIError(.badFrame, "the body is not valid JSON: \(error)")
            }
            payload = .json(body)
        } else {
            payload = .bytes(body)
        }
        let messageID = request.headers[HTTPField.Name("Idempotency-Key")!]
        if let messageID, !Names.isValidMessageID(messageID) {
            throw APIError(.badFrame, "Idempotency-Key must be 1-128 bytes")
        }
        try admitPublishes(1, from: sender, context)
        let results = try await broker.publish([PublishRequest(topic: topic, payload: payload, messageID: messageID)]).get()
        return jsonResponse(status: .created, body: results[0])
    }

    private func publishBatch(_ request: Request, _ context: FerryRequestContext) async throws -> Response {
        // Who may publish is known from the head: an unauthenticated body is not read.
        let sender = try principal(request)
        // Room for every message's payload as base64 plus its fields.
        let body = try await collect(request, upTo: 4 * maxMessageBytes + 64 * 1024)
        let requests: [PublishRequest]
        do {
            requests = try BatchPublishBody.decode(body)
        } catch {
            throw APIError(error)
        }
        try requirePublish(sender.permissions, to: requests.lazy.map(\.topic))
        try admitPublishes(requests.count, from: sender, context)
        let results = try await broker.publish(requests).get()
        return jsonResponse(status: .created, body: BatchPublishResult(results: results))
    }

    private func readMessages(_ request: Request, _ context: FerryRequestContext) async throws -> Response {
        let name = try topicName(context)
        try authorize(request, toSubscribe: name)
        let query = request.uri.queryParameters
        func number(_ key: String, default value: UInt64) throws -> UInt64 {
            guard let text = query[key[...]] else { return value }
            guard let number = UInt64(text) else { throw APIError(.badFrame, "\(key) must be a non-negative integer") }
            return number
        }
        let after = try number("from", default: 0)
        let limit = min(try number("limit", default: 100), 1000)
        guard let (epoch, messages) = try await broker.messages(topic: name, after: after, limit: Int(limit)) else {
            throw APIError(.notFound, "no topic \(name)")
        }
        var writer = JSONWriter(capacity: 64 + messages.reduce(0) { $0 + $1.payload.count + 64 })
        writer.field("topic", name)
        writer.field("epoch", epoch)
        writer.field(
            "messages",
            array: messages.map { message in
                var item = JSONWriter(capacity: message.payload.count + 64)
                item.field("version", message.version)
                item.field("ts", message.timestamp)
                ServerFrame.writePayload(Payload(message.kind, message.payload), to: &item)
                if !message.headers.isEmpty { item.field("headers", pairs: message.headers.map { ($0.name, $0.value) }) }
                return item.finish()
            })
        return jsonResponse(bytes: writer.finish())
    }

    /// The body, or 413 `too_large` past `limit` bytes.
    func collect(_ request: Request, upTo limit: Int) async throws -> [UInt8] {
        do {
            return Array(buffer: try await request.body.collect(upTo: limit))
        } catch is NIOTooManyBytesError {
            throw APIError(.tooLarge, "the body is over \(limit) bytes")
        }
    }
}

/// Gives the framework's own errors (unknown route, wrong method, body over its limit) and the
/// broker's the protocol's JSON error body, so every HTTP error a client sees has one shape.
struct ErrorBodyMiddleware: RouterMiddleware {
    typealias Context = FerryRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let code: ErrorCode =
                switch error.status {
                case .notFound: .notFound
                case .contentTooLarge: .tooLarge
                case .unauthorized: .unauthorized
                case .forbidden: .forbidden
                case .serviceUnavailable: .unavailable
                default: .badFrame
                }
            var response = jsonResponse(status: error.status, body: ErrorBody(ProtocolError(code, error.body ?? error.status.reasonPhrase)))
            response.headers.append(contentsOf: error.headers)
            return response
        } catch is NIOTooManyBytesError {
            throw APIError(.tooLarge, "the body is over the limit")
        } catch let error as ProtocolError {
            // The broker's own refusals (not found, conflict, full store) keep their code's status.
            throw APIError(error)
        }
    }
}

/// `application/json` or `application/*+json`, parameters allowed.
func isJSON(_ contentType: String?) -> Bool {
    guard let contentType else { return false }
    let mediaType = contentType.split(separator: ";", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
    return mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json"))
}

func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    return zip(lhs, rhs).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
}

extension Result where Failure == ProtocolError {
    /// The value, or the error as an HTTP response.
    func get() throws(APIError) -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let error): throw APIError(error)
        }
    }
}

private let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}()
