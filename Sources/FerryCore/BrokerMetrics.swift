import FerryProtocol
import FerryStore
import Logging
import Metrics
import Synchronization

/// The names of Ferry's metrics that a metrics backend must treat specially (histogram buckets),
/// and the buckets that fit them. `ferryd` hands these to the Prometheus factory.
public enum MetricLabels {
    /// Time one store commit holds the writer, fsync included (a `Timer`).
    public static let commitDuration = "ferry_commit_duration_seconds"
    /// Operations per store commit: publishes plus deferred acks and sessions (a `Recorder`).
    public static let commitBatchSize = "ferry_commit_batch_operations"

    /// A synced commit costs ~0.6 ms on a local SSD and a slow disk tens of ms: buckets from
    /// 50 µs (sync off) to 2.5 s (a stalled disk).
    public static let commitDurationBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .seconds(1), .milliseconds(2500),
    ]

    /// Powers of two up to the committer's cap per commit (``Committer/maxOperationsPerCommit``).
    public static let commitBatchSizeBuckets: [Double] = (0...14).map { Double(1 << $0) }
}

/// The broker's counters and gauges, created once, and the debug log lines that go with them.
/// Each hot-path use is one atomic add; what can be computed from state (sessions, heads, lag,
/// map use) is computed when `/metrics` is scraped.
struct BrokerMetrics: Sendable {
    private let logger = Logger(label: "ferry.broker")
    /// While the store is down every deferred flush fails again (every ack-flush interval): one
    /// line per kind of failure every few seconds says so without flooding the log.
    private let failureLog = SharedLogThrottle(interval: 5_000_000_000)
    let published = Counter(label: "ferry_messages_published_total")
    let delivered = Counter(label: "ferry_messages_delivered_total")
    let commits = Counter(label: "ferry_store_commits_total")
    let connections = Meter(label: "ferry_connections")
    private let acks = Counter(label: "ferry_acks_total")
    private let redelivered = Counter(label: "ferry_messages_redelivered_total")
    private let gaps = Counter(label: "ferry_gaps_total")
    private let resumed = Counter(label: "ferry_resumes_total", dimensions: [("result", "resumed")])
    private let created = Counter(label: "ferry_resumes_total", dimensions: [("result", "new")])
    private let rejected = Counter(label: "ferry_resumes_total", dimensions: [("result", "rejected")])
    /// One counter per close code, so the table never changes at run time.
    private let disconnects: [CloseCode: Counter] = Dictionary(
        uniqueKeysWithValues: CloseCode.allCases.map { code in
            (code, Counter(label: "ferry_disconnects_total", dimensions: [("reason", code.metricReason)]))
        })

    /// One counter per limit, so the table never changes at run time.
    private let limitRejections: [LimitKind: Counter] = Dictionary(
        uniqueKeysWithValues: LimitKind.allCases.map { limit in
            (limit, Counter(label: "ferry_limit_rejections_total", dimensions: [("limit", limit.rawValue)]))
        })

    /// One counter per store activity and kind of failure, so the table never changes at run time.
    private let storeFailures: [StoreActivity: [StoreFailureKind: Counter]] = Dictionary(
        uniqueKeysWithValues: StoreActivity.allCases.map { activity in
            (
                activity,
                Dictionary(
                    uniqueKeysWithValues: StoreFailureKind.allCases.map { kind in
                        (
                            kind,
                            Counter(
                                label: "ferry_store_errors_total", dimensions: [("operation", activity.rawValue), ("error", kind.rawValue)])
                        )
                    })
            )
        })

    /// Logs a failure of the store with what it was doing, and counts it in
    /// `ferry_store_errors_total{operation,error}`; `count` is the number of requests it failed.
    func storeFailed(_ activity: StoreActivity, _ error: StoreError, count: Int = 1, _ metadata: Logger.Metadata = [:]) {
        let kind = StoreFailureKind(error)
        storeFailures[activity]?[kind]?.increment(by: Int64(count))
        let (due, unlogged) = failureLog.due("\(activity.rawValue) \(kind)", now: monotonicNanoseconds())
        guard due else { return }
        var metadata = metadata
        metadata["ferry.error"] = "\(error)"
        metadata["ferry.operation"] = "\(activity.rawValue)"
        if unlogged > 0 { metadata["ferry.unlogged_since"] = "\(unlogged)" }
        logger.log(level: kind == .full ? .warning : .error, "store failure", metadata: metadata)
    }

    /// Counts publishes a commit refused because the store is full; the broker logs when that
    /// starts and ends rather than per commit.
    func refusedForSpace(_ count: Int) {
        storeFailures[.publish]?[.full]?.increment(by: Int64(count))
    }

    /// Counts a request refused by `limit`.
    func rejected(by limit: LimitKind, count: Int = 1) {
        limitRejections[limit]?.increment(by: count)
    }

    /// Counts an accepted ack frame (a cumulative ack counts once, however many versions it covers).
    func acked() {
        acks.increment()
    }

    /// Counts a `gap` frame: versions a subscriber should have had but retention or a trim deleted.
    func sentGap() {
        gaps.increment()
    }

    /// Counts a `hello` that named a durable session, by what it found; ephemeral hellos are not
    /// resumes and are not counted.
    func hello(_ attachment: Broker.Attachment) {
        guard let clientID = attachment.clientID else { return }
        (attachment.resumed ? resumed : created).increment()
        logger.debug(
            "durable hello",
            metadata: [
                "ferry.client_id": "\(clientID)", "ferry.result": "\(attachment.resumed ? "resumed" : "new")",
                "ferry.subscriptions": "\(attachment.subscriptions.count)",
            ])
    }

    /// Counts a `hello` refused with `invalid_client_id`, `bad_resume_token` or `session_conflict`.
    func helloRejected(_ error: ProtocolError, clientID: String?) {
        rejected.increment()
        logger.debug(
            "durable hello",
            metadata: ["ferry.client_id": "\(clientID ?? "")", "ferry.result": "rejected", "ferry.code": "\(error.code.rawValue)"])
    }

    /// Counts a connection closed by the broker with `code`.
    func disconnected(_ code: CloseCode) {
        disconnects[code]?.increment()
    }

    /// Counts the versions a resumed session will be sent again: for each restored subscription,
    /// those its previous connection sent above the ack floor, in the same epoch. Too many when
    /// retention deleted some meanwhile (they become a `gap`); none after a broker restart or
    /// a takeover of a live session, where nothing is known of what was sent.
    func countRedeliveries(_ subscriptions: some Collection<SubscriptionRecord>, sentThrough: [String: SentPosition]) {
        let count = subscriptions.reduce(UInt64(0)) { total, record in
            guard let sent = sentThrough[record.topic], sent.epoch == record.epoch, sent.version > record.ackFloor else { return total }
            return total + (sent.version - record.ackFloor)
        }
        if count > 0 { redelivered.increment(by: count) }
    }
}

/// The limits whose refusals `ferry_limit_rejections_total` counts (its `limit` label). A
/// connection closed for not reading is counted by `ferry_disconnects_total{reason="slow_consumer"}`.
public enum LimitKind: String, Sendable, CaseIterable {
    case publishRate = "publish_rate"
    case connections = "max_connections"
    case connectionsPerIP = "max_connections_per_ip"
}

/// What the store was doing when it failed (the `operation` label of `ferry_store_errors_total`).
enum StoreActivity: String, Sendable, CaseIterable {
    /// A group commit as a whole (its publishes, acks and sessions are not stored).
    case commit
    /// Publishes refused inside a commit that stored the rest (the store is full).
    case publish
    /// A range read for delivery or the admin API.
    case read
}

/// The `error` label of `ferry_store_errors_total`.
enum StoreFailureKind: String, Sendable, CaseIterable {
    case full
    case corrupted
    case engine

    init(_ error: StoreError) {
        switch error {
        case .full: self = .full
        case .corrupted: self = .corrupted
        case .engine, .unsupported: self = .engine
        }
    }
}

/// The highest version a connection had sent on one subscription when it closed.
struct SentPosition: Sendable {
    var epoch: String
    var version: UInt64
}

/// The committer's histograms.
struct CommitMetrics: Sendable {
    private let duration = Timer(label: MetricLabels.commitDuration)
    private let batchSize = Recorder(label: MetricLabels.commitBatchSize)

    /// Runs `commit`, recording how long it took and how many operations it held.
    func measure<Result>(_ operations: [StoreOperation], _ commit: () throws(StoreError) -> Result) throws(StoreError) -> Result {
        batchSize.record(operations.count)
        return try duration.measure(body: commit)
    }
}

extension CloseCode {
    /// The `reason` label of `ferry_disconnects_total`.
    var metricReason: String {
        switch self {
        case .normal: "normal"
        case .goingAway: "shutdown"
        case .protocolViolation: "protocol_violation"
        case .unauthorized: "unauthorized"
        case .heartbeatTimeout: "heartbeat_timeout"
        case .frameTooLarge: "frame_too_large"
        case .sessionTakenOver: "session_taken_over"
        case .sessionDeleted: "session_deleted"
        case .rateLimited: "rate_limited"
        case .slowConsumer: "slow_consumer"
        case .internalError: "internal_error"
        }
    }
}

/// What `/metrics` reports of the broker's state, computed when it is scraped.
public struct MetricsSnapshot: Sendable {
    /// Durable sessions, connected or not.
    public var sessions: Int
    /// Topics in the broker's registry: stored ones, and names only connected subscribers hold.
    public var topicsInMemory: Int
    /// Every stored topic and its head version.
    public var topicHeads: [(topic: String, head: UInt64)]
    /// Every durable session and its lag: head − ack floor summed over its subscriptions in the
    /// topics' current epochs.
    public var clientLags: [(clientID: String, lag: UInt64)]
    /// LMDB pages in use (the data file's high-water mark), in bytes.
    public var usedBytes: Int
    /// The LMDB map size, in bytes: publishes fail once ``usedBytes`` reaches it.
    public var mapSize: Int

    init(
        topics: [TopicRecord], topicsInMemory: Int, sessions: [(clientID: String, subscriptions: [SubscriptionRecord])], usage: StoreUsage
    ) {
        let positions = Dictionary(topics.map { ($0.name, $0) }) { $1 }
        self.sessions = sessions.count
        self.topicsInMemory = topicsInMemory
        topicHeads = topics.map { ($0.name, $0.head) }
        clientLags = sessions.map { session in
            let lag = session.subscriptions.reduce(UInt64(0)) { total, record in
                guard let position = positions[record.topic], position.epoch == record.epoch, position.head > record.ackFloor else {
                    return total
                }
                return total + (position.head - record.ackFloor)
            }
            return (session.clientID, lag)
        }
        usedBytes = usage.usedBytes
        mapSize = usage.mapSize
    }
}

/// At most one log line per key every `interval` nanoseconds, counting the lines left out.
struct LogThrottle {
    let interval: UInt64
    private var last: [String: (at: UInt64, unlogged: Int)] = [:]

    init(interval: UInt64) {
        self.interval = interval
    }

    /// Whether a line for `key` is due now, and how many were left out since the last one.
    mutating func due(_ key: String, now: UInt64) -> (due: Bool, unlogged: Int) {
        let previous = last[key]
        if let previous, now < previous.at + interval {
            last[key] = (previous.at, previous.unlogged + 1)
            return (false, 0)
        }
        last[key] = (now, 0)
        return (true, previous?.unlogged ?? 0)
    }
}

/// A ``LogThrottle`` shared by the copies of ``BrokerMetrics``.
final class SharedLogThrottle: Sendable {
    private let throttle: Mutex<LogThrottle>

    init(interval: UInt64) {
        throttle = Mutex(LogThrottle(interval: interval))
    }

    func due(_ key: String, now: UInt64) -> (due: Bool, unlogged: Int) {
        throttle.withLock { $0.due(key, now: now) }
    }
}
