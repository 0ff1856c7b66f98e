import FerryCore
import FerryProtocol
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import Prometheus
import ServiceLifecycle

/// Where and how `ferryd` serves.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Bearer token of the admin API; nil turns the admin API off (403). Also accepted wherever
    /// a client token is, as the operator (any client id, every topic).
    public var adminToken: String?
    /// The key client JWTs are verified with; nil turns client authentication off.
    public var jwtKey: JWTKey?
    /// Topic permissions for tokens without a `ferry` claim (`--acl`); needs `jwtKey`.
    public var accessRules: AccessRules?
    /// PEM files of the certificate chain and private key: HTTP and WebSocket then take TLS only.
    public var tls: (certificate: String, privateKey: String)?
    /// How many topics (by head) and durable clients (by lag) get a series of their own in `/metrics`.
    public var metricsTopN = 20
    /// WebSockets open at once; an upgrade over it is answered 503 `unavailable`. Nil: no cap
    /// (`ferryd` sets 90 % of its open-file limit).
    public var maxConnections: Int?
    /// WebSockets open at once from one remote IP; an upgrade over it is answered 429
    /// `rate_limited`. Nil (the default): no cap, since behind a proxy every client has its address.
    public var maxConnectionsPerIP: Int?

    public init() {}
}

/// Builds the HTTP + WebSocket application around a broker.
public enum FerryServer {
    /// The Hummingbird application serving PROTOCOL.md on `configuration.host:port`.
    /// - Throws: ``ConfigurationError`` for a JWT key, certificate or private key it cannot use.
    public static func application(
        broker: Broker, configuration: ServerConfiguration, metrics: PrometheusCollectorRegistry, logger: Logger,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws(ConfigurationError) -> some ApplicationProtocol {
        if configuration.accessRules != nil && configuration.jwtKey == nil {
            // With no token, a client id is only what the client says: rules on it would protect nothing.
            throw ConfigurationError("an ACL file needs authentication: set FERRY_JWT_SECRET or FERRY_JWT_PUBLIC_KEY")
        }
        let authenticator = try await Authenticator(
            key: configuration.jwtKey, adminToken: configuration.adminToken, rules: configuration.accessRules, now: broker.configuration.now)
        let tls = try configuration.tls.map { files throws(ConfigurationError) in try tlsContext(files) }
        let router = Router(context: FerryRequestContext.self)
        let readiness = HTTPAPI.Readiness()
        let gauges = StateGauges(broker: broker, registry: metrics, limit: configuration.metricsTopN)
        HTTPAPI(
            broker: broker, adminToken: configuration.adminToken.map(BearerSecret.init), authenticator: authenticator, metrics: metrics,
            gauges: gauges, readiness: readiness, publishRate: PublishRateBuckets(limits: broker.configuration.limits)
        ).register(on: router)
        let limiter = ConnectionLimiter(maxConnections: configuration.maxConnections, maxPerAddress: configuration.maxConnectionsPerIP)
        let session = WebSocketSession(broker: broker, limiter: limiter, logger: logger)
        return Application(
            router: router,
            server: .ferry(webSocketPath: "/v1/ws", webSocket: session, authenticator: authenticator, tls: tls),
            // A broker restart brings every client back at once: a short accept queue drops their
            // SYNs and TCP retries them after 1, 3, 7, 15 s. The kernel caps this at
            // net.core.somaxconn.
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "ferry", backlog: 4096),
            services: [ReadinessService(readiness: readiness)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger
        )
    }
}

extension FerryServer {
    /// Checks that TLS can be served with these PEM files, as the broker will at start.
    /// - Throws: ``ConfigurationError`` saying why it cannot.
    public static func validateTLS(certificate: String, privateKey: String) throws(ConfigurationError) {
        _ = try tlsContext((certificate, privateKey))
    }
}

/// The server side of TLS from a certificate chain and a private key, both PEM files.
private func tlsContext(_ files: (certificate: String, privateKey: String)) throws(ConfigurationError) -> NIOSSLContext {
    do {
        let chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
        guard !chain.isEmpty else { throw ConfigurationError("no certificate in \(files.certificate)") }
        let key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        return try NIOSSLContext(configuration: configuration)
    } catch let error as ConfigurationError {
        throw error
    } catch {
        throw ConfigurationError("TLS certificate \(files.certificate) or key \(files.privateKey): \(error)")
    }
}

/// Turns `/readyz` to 503 as soon as graceful shutdown begins.
private struct ReadinessService: Service {
    let readiness: HTTPAPI.Readiness

    func run() async throws {
        try? await gracefulShutdown()
        readiness.shuttingDown()
    }
}

/// Runs the broker's writer for the life of the service group and commits on shutdown.
public struct BrokerService: Service {
    let broker: Broker

    public init(broker: Broker) {
        self.broker = broker
    }

    public func run() async throws {
        broker.start()
        try? await gracefulShutdown()
        await broker.shutdown()
    }
}
