import ArgumentParser
import FerryCore
import FerryPostgres
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
        discussion: """
            Every option falls back to the environment variable named in its help, read the same way; an empty value \
            counts as unset, and a value ferryd cannot use stops it at start. Durations take 500ms, 30s, 10m, 24h, 7d \
            or plain seconds; sizes take bytes or K/M/G/T suffixes.
            """,
        version: Broker.version
    )

    @Option(help: "Listen address (FERRY_HOST, default 127.0.0.1).") var host: String?
    @Option(help: "Listen port for HTTP and WebSocket (FERRY_PORT, default 8080).") var port: String?
    @Option(help: "LMDB data folder (FERRY_DATA, default ./ferry-data).") var data: String?
    @Option(
        help:
            "PostgreSQL URL, postgres://user[:password]@host[:port]/database: store everything there instead of LMDB, shared by every ferryd given the same URL (FERRY_POSTGRES_URL, default unset: LMDB)."
    )
    var postgres: String?
    @Option(help: "full: fsync each commit before confirming; none: leave it to the OS (FERRY_SYNC, default full).") var sync: String?
    @Option(help: "LMDB map size (FERRY_MAP_SIZE, default 8G).") var mapSize: String?
    @Option(help: "Seconds between pings; 2.5x of silence closes with 4002 (FERRY_HEARTBEAT, default 20).") var heartbeat: String?
    @Option(help: "Payload limit in bytes (FERRY_MAX_MESSAGE_BYTES, default 1048576).") var maxMessageBytes: String?
    @Option(help: "Subscriptions per connection (FERRY_MAX_SUBSCRIPTIONS, default 1000).") var maxSubscriptions: String?
    @Option(help: "Pattern subscriptions per connection (FERRY_MAX_PATTERNS, default 100).") var maxPatterns: String?
    @Option(help: "Topics one pattern subscription delivers at most (FERRY_MAX_PATTERN_TOPICS, default 10000).") var maxPatternTopics: String?
    @Option(help: "Publishes per second per WebSocket connection and per HTTP client, 0 for no limit; over it, rate_limited (FERRY_PUBLISH_RATE, default 0).")
    var publishRate: String?
    @Option(help: "Publishes a connection or HTTP client may send at once above the rate (FERRY_PUBLISH_BURST, default 1000).") var publishBurst: String?
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
    @Option(help: "Acks are committed at most this long after they arrive (FERRY_ACK_FLUSH, default 50ms, at most 10s).") var ackFlush: String?
    @Option(help: "Bearer token of the admin API, also accepted as the operator's client token; unset turns it off (FERRY_ADMIN_TOKEN).")
    var adminToken: String?
    @Option(help: "HS256 secret of client JWTs, at least 32 bytes; turns authentication on (FERRY_JWT_SECRET).") var jwtSecret: String?
    @Option(help: "PEM file of the RS256 or ES256 public key of client JWTs; turns authentication on (FERRY_JWT_PUBLIC_KEY).")
    var jwtPublicKey: String?
    @Option(help: "JSON file of topic permissions per client id, for tokens without a ferry claim; needs authentication (FERRY_ACL).")
    var acl: String?
    @Option(help: "PEM certificate chain: serve HTTPS and WSS only (FERRY_TLS_CERT, with FERRY_TLS_KEY).") var tlsCert: String?
    @Option(help: "PEM private key of --tls-cert (FERRY_TLS_KEY).") var tlsKey: String?
    @Option(help: "trace, debug, info, notice, warning, error, critical (FERRY_LOG_LEVEL, default info).") var logLevel: String?
    @Option(help: "Topics (by head) and clients (by lag) with a series of their own in /metrics (FERRY_METRICS_TOP_N, default 20).")
    var metricsTopN: String?

    func run() async throws {
        // Before the store opens: a bad setting stops the start having changed nothing.
        let openFiles = raiseOpenFileLimit()
        let environment = ProcessInfo.processInfo.environment
        let flags = Dictionary(uniqueKeysWithValues: Setting.allCases.compactMap { setting in flag(setting).map { (setting, $0) } })
        var reader = SettingsReader(flags: flags, environment: environment)
        let settings = try await FerrydSettings(reading: &reader, openFiles: openFiles)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        let metrics = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: metrics)
        factory.durationHistogramBuckets[MetricLabels.commitDuration] = MetricLabels.commitDurationBuckets
        factory.valueHistogramBuckets[MetricLabels.commitBatchSize] = MetricLabels.commitBatchSizeBuckets
        MetricsSystem.bootstrap(factory)
        let logger = Logger(label: "ferry")
        for (variable, closest) in Setting.unknownVariables(in: environment) {
            logger.warning("\(variable) is not a ferryd setting and is ignored; did you mean \(closest)?")
        }
        let (storeConfiguration, brokerConfiguration, serverConfiguration) = (settings.store, settings.broker, settings.server)
        let store: any MessageStore
        let location: String
        if var postgres = settings.postgres {
            // How operators tell the brokers of a cluster apart in `ferryctl status`.
            postgres.nodeName = "\(ProcessInfo.processInfo.hostName):\(serverConfiguration.port)"
            store = try PostgresMessageStore(configuration: postgres)
            location = "postgres=\(postgres.host):\(postgres.port)/\(postgres.database)"
        } else {
            store = try LMDBMessageStore(configuration: storeConfiguration)
            location = "data=\(storeConfiguration.path)"
        }
        let broker = try Broker(store: store, configuration: brokerConfiguration)
        let sync = storeConfiguration.syncOnCommit ? "full" : "none"
        let scheme = serverConfiguration.tls == nil ? "http" : "https"
        let auth = serverConfiguration.jwtKey == nil ? "off" : serverConfiguration.accessRules == nil ? "jwt" : "jwt+acl"
        let application = try await FerryServer.application(
            broker: broker, configuration: serverConfiguration, metrics: metrics, logger: logger,
            onServerRunning: { port in
                logger.info(
                    "ferryd \(Broker.version) listening on \(scheme)://\(serverConfiguration.host):\(port) \(location) sync=\(sync) auth=\(auth)",
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

    /// The flag given for `setting`, nil when it was not.
    private func flag(_ setting: Setting) -> String? {
        switch setting {
        case .host: host
        case .port: port
        case .data: data
        case .postgres: postgres
        case .sync: sync
        case .mapSize: mapSize
        case .heartbeat: heartbeat
        case .maxMessageBytes: maxMessageBytes
        case .maxSubscriptions: maxSubscriptions
        case .maxPatterns: maxPatterns
        case .maxPatternTopics: maxPatternTopics
        case .publishRate: publishRate
        case .publishBurst: publishBurst
        case .publishRejectionsBeforeClose: publishRejectionsBeforeClose
        case .maxPendingBytes: maxPendingBytes
        case .maxConnections: maxConnections
        case .maxConnectionsPerIP: maxConnectionsPerIP
        case .retentionMaxMessages: retentionMaxMessages
        case .retentionMaxBytes: retentionMaxBytes
        case .retentionMaxAge: retentionMaxAge
        case .dedupWindow: dedupWindow
        case .sessionTTL: sessionTTL
        case .ackFlush: ackFlush
        case .adminToken: adminToken
        case .jwtSecret: jwtSecret
        case .jwtPublicKey: jwtPublicKey
        case .acl: acl
        case .tlsCert: tlsCert
        case .tlsKey: tlsKey
        case .logLevel: logLevel
        case .metricsTopN: metricsTopN
        }
    }
}
