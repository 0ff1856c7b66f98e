import ArgumentParser
import FerryCore
import FerryProtocol
import FerryServer
import FerryStore
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

/// `ferryd`: the Ferry broker. Every option falls back to a `FERRY_*` environment variable.
@main
struct Ferryd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferryd",
        abstract: "Ferry: a pub/sub broker with durable delivery over WebSocket and HTTP.",
        discussion: "Every option falls back to the environment variable named in its help. Durations take 500ms, 30s, 10m, 24h, 7d or plain seconds; sizes take bytes or K/M/G suffixes.",
        version: Broker.version
    )

    @Option(help: "Listen address (FERRY_HOST, default 127.0.0.1).") var host: String?
    @Option(help: "Listen port for HTTP and WebSocket (FERRY_PORT, default 8080).") var port: Int?
    @Option(help: "LMDB data folder (FERRY_DATA, default ./ferry-data).") var data: String?
    @Option(help: "full: fsync each commit before confirming; none: leave it to the OS (FERRY_SYNC, default full).") var sync: String?
    @Option(help: "LMDB map size (FERRY_MAP_SIZE, default 8G).") var mapSize: String?
    @Option(help: "Seconds between pings; 2.5x of silence closes with 4002 (FERRY_HEARTBEAT, default 20).") var heartbeat: String?
    @Option(help: "Payload limit in bytes (FERRY_MAX_MESSAGE_BYTES, default 1048576).") var maxMessageBytes: String?
    @Option(help: "Subscriptions per connection (FERRY_MAX_SUBSCRIPTIONS, default 1000).") var maxSubscriptions: Int?
    @Option(help: "Publishes per second per connection, 0 for no limit; over it, rate_limited (FERRY_PUBLISH_RATE, default 0).")
    var publishRate: String?
    @Option(help: "Publishes a connection may send at once above the rate (FERRY_PUBLISH_BURST, default 1000).") var publishBurst: String?
    @Option(help: "Rate-limited publishes within 10 s that close the connection with 4029 (FERRY_PUBLISH_REJECTIONS_BEFORE_CLOSE, default 100).")
    var publishRejectionsBeforeClose: String?
    @Option(help: "Bytes queued for a client that does not read before it is closed with 4013 (FERRY_MAX_PENDING_BYTES, default 16M).")
    var maxPendingBytes: String?
    @Option(help: "WebSocket connections at once; more are refused with 503 (FERRY_MAX_CONNECTIONS, default 90% of the open-file limit, 0 for unlimited).")
    var maxConnections: String?
    @Option(help: "WebSocket connections at once per remote IP; more are refused with 429 (FERRY_MAX_CONNECTIONS_PER_IP, default unlimited).")
    var maxConnectionsPerIP: String?
    @Option(help: "Messages kept per topic (FERRY_RETENTION_MAX_MESSAGES, default unlimited).") var retentionMaxMessages: String?
    @Option(help: "Payload bytes kept per topic (FERRY_RETENTION_MAX_BYTES, default 1G).") var retentionMaxBytes: String?
    @Option(help: "Age of the oldest message kept (FERRY_RETENTION_MAX_AGE, default 7d).") var retentionMaxAge: String?
    @Option(help: "How long a msg_id is remembered per topic (FERRY_DEDUP_WINDOW, default 24h).") var dedupWindow: String?
    @Option(help: "A durable session unused this long is removed (FERRY_SESSION_TTL, default 7d).") var sessionTTL: String?
    @Option(help: "Bearer token of the admin API, also accepted as the operator's client token; unset turns it off (FERRY_ADMIN_TOKEN).")
    var adminToken: String?
    @Option(help: "HS256 secret of client JWTs, at least 32 bytes; turns authentication on (FERRY_JWT_SECRET).") var jwtSecret: String?
    @Option(help: "PEM file of the RS256 or ES256 public key of client JWTs; turns authentication on (FERRY_JWT_PUBLIC_KEY).")
    var jwtPublicKey: String?
    @Option(help: "JSON file of topic permissions per client id, for tokens without a ferry claim; needs authentication (FERRY_ACL).")
    var acl: String?
    @Option(help: "PEM certificate chain: serve HTTPS and WSS only (FERRY_TLS_CERT, with FERRY_TLS_KEY).") var tlsCert: String?
    @Option(help: "PEM private key of --tls-cert (FERRY_TLS_KEY).") var tlsKey: String?
    @Option(help: "trace, debug, info, notice, warning, error (FERRY_LOG_LEVEL, default info).") var logLevel: String?
    @Option(help: "Topics (by head) and clients (by lag) with a series of their own in /metrics (FERRY_METRICS_TOP_N, default 20).")
    var metricsTopN: Int?

    func run() async throws {
        let level = Logger.Level(rawValue: setting(logLevel, "FERRY_LOG_LEVEL") ?? "info") ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let metrics = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: metrics)
        factory.durationHistogramBuckets[MetricLabels.commitDuration] = MetricLabels.commitDurationBuckets
        factory.valueHistogramBuckets[MetricLabels.commitBatchSize] = MetricLabels.commitBatchSizeBuckets
        MetricsSystem.bootstrap(factory)
        let logger = Logger(label: "ferry")

        let openFiles = raiseOpenFileLimit()
        let (storeConfiguration, brokerConfiguration, serverConfiguration) = try settings(openFiles: openFiles)
        let store = try LMDBMessageStore(configuration: storeConfiguration)
        let broker = try Broker(store: store, configuration: brokerConfiguration)
        let sync = storeConfiguration.syncOnCommit ? "full" : "none"
        let scheme = serverConfiguration.tls == nil ? "http" : "https"
        let auth = serverConfiguration.jwtKey == nil ? "off" : serverConfiguration.accessRules == nil ? "jwt" : "jwt+acl"
        let application = try await FerryServer.application(
            broker: broker, configuration: serverConfiguration, metrics: metrics, logger: logger,
            onServerRunning: { port in
                logger.info(
                    "ferryd \(Broker.version) listening on \(scheme)://\(serverConfiguration.host):\(port) data=\(storeConfiguration.path) sync=\(sync) auth=\(auth)",
                    metadata: [
                        "ferry.open_files": "\(openFiles)",
                        "ferry.max_connections": "\(serverConfiguration.maxConnections.map(String.init) ?? "unlimited")",
                    ])
            })
        let group = ServiceGroup(
            configuration: .init(
                // Shut down in reverse: the server stops accepting and closes sockets with 1001,
                // then the broker commits what is queued.
                services: [.init(service: BrokerService(broker: broker)), .init(service: application)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        try await group.run()
    }

    /// - Parameter openFiles: the open-file limit in force, which bounds the default connection cap.
    private func settings(openFiles: UInt64) throws -> (LMDBStoreConfiguration, BrokerConfiguration, ServerConfiguration) {
        var store = LMDBStoreConfiguration(path: setting(data, "FERRY_DATA") ?? "./ferry-data")
        switch (setting(sync, "FERRY_SYNC") ?? "full").lowercased() {
        case "full": store.syncOnCommit = true
        case "none": store.syncOnCommit = false
        case let other: throw SettingError(description: "FERRY_SYNC: '\(other)' is not full or none")
        }
        if let text = setting(mapSize, "FERRY_MAP_SIZE") { store.mapSize = Int(try parseSize(text, name: "FERRY_MAP_SIZE")) }
        if let text = setting(retentionMaxMessages, "FERRY_RETENTION_MAX_MESSAGES") {
            store.retention.maxMessages = try parseLimit(text, name: "FERRY_RETENTION_MAX_MESSAGES", parse: parseCount)
        }
        if let text = setting(retentionMaxBytes, "FERRY_RETENTION_MAX_BYTES") {
            store.retention.maxBytes = try parseLimit(text, name: "FERRY_RETENTION_MAX_BYTES", parse: parseSize)
        }
        if let text = setting(retentionMaxAge, "FERRY_RETENTION_MAX_AGE") {
            store.retention.maxAge = try parseLimit(text, name: "FERRY_RETENTION_MAX_AGE", parse: parseDuration)
        }
        if let text = setting(dedupWindow, "FERRY_DEDUP_WINDOW") {
            store.dedupWindow = try parseDuration(text, name: "FERRY_DEDUP_WINDOW")
        }

        var broker = BrokerConfiguration()
        if let text = setting(heartbeat, "FERRY_HEARTBEAT") {
            let milliseconds = try parseDuration(text, name: "FERRY_HEARTBEAT")
            guard milliseconds >= 100 else { throw SettingError(description: "FERRY_HEARTBEAT must be at least 100ms") }
            broker.heartbeatSeconds = Double(milliseconds) / 1000
        }
        if let text = setting(maxMessageBytes, "FERRY_MAX_MESSAGE_BYTES") {
            let bytes = try parseSize(text, name: "FERRY_MAX_MESSAGE_BYTES")
            guard bytes >= 1, bytes <= 256 << 20 else { throw SettingError(description: "FERRY_MAX_MESSAGE_BYTES must be 1 byte to 256 MiB") }
            broker.limits.maxMessageBytes = Int(bytes)
        }
        if let count = maxSubscriptions ?? setting(nil, "FERRY_MAX_SUBSCRIPTIONS").flatMap({ Int($0) }) {
            guard count >= 1 else { throw SettingError(description: "FERRY_MAX_SUBSCRIPTIONS must be at least 1") }
            broker.limits.maxSubscriptions = count
        }
        if let text = setting(publishRate, "FERRY_PUBLISH_RATE") {
            broker.limits.publishRate = Int(clamping: try parseCount(text, name: "FERRY_PUBLISH_RATE"))
        }
        if let text = setting(publishBurst, "FERRY_PUBLISH_BURST") {
            let burst = try parseCount(text, name: "FERRY_PUBLISH_BURST")
            guard burst >= 1 else { throw SettingError(description: "FERRY_PUBLISH_BURST must be at least 1") }
            broker.limits.publishBurst = Int(clamping: burst)
        }
        if let text = setting(publishRejectionsBeforeClose, "FERRY_PUBLISH_REJECTIONS_BEFORE_CLOSE") {
            let count = try parseCount(text, name: "FERRY_PUBLISH_REJECTIONS_BEFORE_CLOSE")
            guard count >= 1 else { throw SettingError(description: "FERRY_PUBLISH_REJECTIONS_BEFORE_CLOSE must be at least 1") }
            broker.publishRejectionsBeforeClose = Int(clamping: count)
        }
        if let text = setting(maxPendingBytes, "FERRY_MAX_PENDING_BYTES") {
            let bytes = try parseSize(text, name: "FERRY_MAX_PENDING_BYTES")
            // Below this, replies to an ordinary burst of requests could trip it.
            guard bytes >= 64 << 10 else { throw SettingError(description: "FERRY_MAX_PENDING_BYTES must be at least 64K") }
            broker.limits.maxPendingBytes = Int(clamping: bytes)
        }
        if let text = setting(sessionTTL, "FERRY_SESSION_TTL") {
            broker.sessionTTL = try parseDuration(text, name: "FERRY_SESSION_TTL")
        }

        var server = ServerConfiguration()
        server.host = setting(host, "FERRY_HOST") ?? "127.0.0.1"
        if let text = port.map(String.init) ?? setting(nil, "FERRY_PORT") {
            guard let value = Int(text), (0...65535).contains(value) else { throw SettingError(description: "FERRY_PORT: '\(text)' is not a port") }
            server.port = value
        }
        server.adminToken = setting(adminToken, "FERRY_ADMIN_TOKEN")
        switch (setting(jwtSecret, "FERRY_JWT_SECRET"), setting(jwtPublicKey, "FERRY_JWT_PUBLIC_KEY")) {
        case (.some, .some):
            throw SettingError(description: "FERRY_JWT_SECRET and FERRY_JWT_PUBLIC_KEY: set one of them, not both")
        case (.some(let secret), nil):
            server.jwtKey = .secret(secret)
        case (nil, .some(let path)):
            server.jwtKey = .publicKeyPEM(String(decoding: try readSettingFile(path, name: "FERRY_JWT_PUBLIC_KEY"), as: UTF8.self))
        case (nil, nil):
            break
        }
        if let path = setting(acl, "FERRY_ACL") {
            server.accessRules = try AccessRules(json: readSettingFile(path, name: "FERRY_ACL"))
        }
        switch (setting(tlsCert, "FERRY_TLS_CERT"), setting(tlsKey, "FERRY_TLS_KEY")) {
        case (.some(let certificate), .some(let key)):
            server.tls = (certificate, key)
        case (nil, nil):
            break
        default:
            throw SettingError(description: "FERRY_TLS_CERT and FERRY_TLS_KEY go together: set both or neither")
        }
        if let text = metricsTopN.map(String.init) ?? setting(nil, "FERRY_METRICS_TOP_N") {
            guard let count = Int(text), count >= 0 else { throw SettingError(description: "FERRY_METRICS_TOP_N: '\(text)' is not a count") }
            server.metricsTopN = count
        }
        if let text = setting(maxConnections, "FERRY_MAX_CONNECTIONS") {
            server.maxConnections = try parseLimit(text, name: "FERRY_MAX_CONNECTIONS", parse: parseCount).map { Int(clamping: $0) }
        } else if openFiles > 0 {
            // A WebSocket holds a descriptor: refuse with 503 before accept() fails for want of one,
            // keeping a tenth for the store, plain HTTP and the listener.
            server.maxConnections = Int(clamping: openFiles / 10 * 9)
        }
        if let text = setting(maxConnectionsPerIP, "FERRY_MAX_CONNECTIONS_PER_IP") {
            server.maxConnectionsPerIP = try parseLimit(text, name: "FERRY_MAX_CONNECTIONS_PER_IP", parse: parseCount).map { Int(clamping: $0) }
        }
        return (store, broker, server)
    }
}
