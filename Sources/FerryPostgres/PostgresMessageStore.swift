import FerryStore
import NIOCore
import PostgresNIO

/// Ferry's `MessageStore` on PostgreSQL, so several ferryd nodes can share one database.
///
/// It creates or migrates its tables when it opens (``PostgresSchema``). Each `commit` is one
/// transaction that locks its topics' rows in name order, so commits of different nodes to one
/// topic are serialized and its versions stay gapless. Methods block the calling thread while
/// they wait for the database: call them from the core's own threads, never from an event loop
/// or the Swift cooperative pool.
public final class PostgresMessageStore: MessageStore {
    /// What the store was opened with.
    public let configuration: PostgresStoreConfiguration
    let connections: PostgresConnections
    /// This broker's id among those sharing the database.
    let node = Epoch.random()
    private let watcher: PostgresWatch
    private let sweepLock: PostgresSweepLock
    private let topicConfigCache = PostgresTopicConfigCache()

    /// Connects, then creates or migrates the schema.
    public init(configuration: PostgresStoreConfiguration) throws(StoreError) {
        self.configuration = configuration
        connections = PostgresConnections(configuration, node: node)
        watcher = PostgresWatch(connections: connections, node: node)
        sweepLock = PostgresSweepLock(connections: connections)
        try PostgresSchema.migrate(connections)
    }

    /// LISTENs for other brokers' commits and polls every half second (``PostgresWatch``).
    public func watch(_ handler: @escaping @Sendable (StoreChange) -> Void) {
        watcher.watch { [topicConfigCache] change in
            // A poll may follow a lost notice of a configuration change: the next commit reads it again.
            if change == .topicConfigs || change == .everything { topicConfigCache.invalidate() }
            handler(change)
        }
    }

    /// Every read waits for the database.
    public var readsMayBlock: Bool { true }

    // MARK: - Sharing

    /// Claims in one statement (``PostgresNodes``); a live previous owner is asked to let go.
    public func claimSession(_ proposed: SessionRecord) throws(StoreError) -> SessionClaim {
        let (claim, previousOwner) = try connections.withSession { session throws(StoreError) in
            try PostgresNodes.claim(proposed, node: node, in: session)
        }
        if claim.handover == .ownerAsked, let previousOwner {
            watcher.ask(previousOwner, toRelease: proposed.clientID, generation: claim.generation)
        }
        return claim
    }

    public func announce(_ notice: SessionNotice) {
        watcher.tell(notice)
    }

    public func sessionGenerations(_ clientIDs: [String]) throws(StoreError) -> [String: UInt64] {
        guard !clientIDs.isEmpty else { return [:] }
        return try connections.withSession { session throws(StoreError) in
            let rows = try session.query("SELECT client_id, claims FROM sessions WHERE client_id = ANY(\(clientIDs)::text[])")
            return Dictionary(
                try Self.decodeRows(rows, "session claim count") { row throws in
                    let (clientID, claims) = try row.decode((String, Int64).self)
                    return (clientID, claims.unsigned)
                }) { $1 }
        }
    }

    public func nodes() throws(StoreError) -> [NodeInfo] {
        try connections.withSession { session throws(StoreError) in try PostgresNodes.live(thisNode: node, in: session) }
    }

    public func leaseQueueGroup(_ group: String, of topic: String) throws(StoreError) -> Bool {
        try connections.withSession { session throws(StoreError) in try PostgresNodes.lease(group, of: topic, node: node, in: session) }
    }

    public func releaseQueueGroup(_ group: String, of topic: String) throws(StoreError) {
        _ = try connections.withSession { session throws(StoreError) in
            try session.query("DELETE FROM queue_groups WHERE topic = \(topic) AND grp = \(group) AND owner = \(node)")
        }
    }

    // MARK: - Reading state

    /// Every node proposes a secret and all keep the first one stored.
    public func open() throws(StoreError) -> [UInt8] {
        try connections.withSession { session throws(StoreError) in
            let proposal = ByteBuffer(bytes: (0..<32).map { _ in UInt8.random(in: .min ... .max) })
            try session.query("INSERT INTO meta (key, value) VALUES ('secret', \(proposal)) ON CONFLICT (key) DO NOTHING")
            guard let secret = try PostgresSchema.decodeFirst(
                try session.query("SELECT value FROM meta WHERE key = 'secret'"), as: ByteBuffer.self, "the token secret")
            else { throw StoreError.corrupted("the token secret is missing from meta") }
            return Array(secret.readableBytesView)
        }
    }

    public func topic(named name: String) throws(StoreError) -> TopicRecord? {
        try connections.withSession { session throws(StoreError) in
            try Self.decodeRows(
                try session.query("SELECT name, id, epoch, first, head, messages, bytes FROM topics WHERE name = \(name)"), "topic record",
                Self.topic
            ).first
        }
    }

    public func topics(named names: [String]) throws(StoreError) -> [TopicRecord] {
        guard !names.isEmpty else { return [] }
        return try connections.withSession { session throws(StoreError) in
            try Self.decodeRows(
                try session.query("SELECT name, id, epoch, first, head, messages, bytes FROM topics WHERE name = ANY(\(names)::text[])"),
                "topic record", Self.topic)
        }
    }

    public func topics() throws(StoreError) -> [TopicRecord] {
        try connections.withSession { session throws(StoreError) in
            try Self.decodeRows(
                try session.query("SELECT name, id, epoch, first, head, messages, bytes FROM topics ORDER BY name"), "topic record",
                Self.topic)
        }
    }

    /// The cached configuration while nothing may have changed it (one read per change or poll,
    /// shared by this broker's commits and its core).
    public func topicConfigs() throws(StoreError) -> TopicConfigs {
        try topicConfigCache.current { () throws(StoreError) in
            try connections.withSession { session throws(StoreError) in
                try PostgresTopicConfigs.read(in: session, defaults: configuration.retention, dedupWindow: configuration.dedupWindow)
            }
        }
    }

    public func session(clientID: String) throws(StoreError) -> StoredSession? {
        try connections.withSession { session throws(StoreError) in
            try Self.stored(
                sessions: try session.query(
                    "SELECT client_id, incarnation, created_at, last_seen FROM sessions WHERE client_id = \(clientID)"),
                subscriptions: try session.query(
                    "SELECT client_id, topic, epoch, ack_floor, window_size, pattern FROM subscriptions WHERE client_id = \(clientID) ORDER BY topic")
            ).first
        }
    }

    public func sessions() throws(StoreError) -> [StoredSession] {
        try connections.withSession { session throws(StoreError) in
            try Self.stored(
                sessions: try session.query("SELECT client_id, incarnation, created_at, last_seen FROM sessions ORDER BY client_id"),
                subscriptions: try session.query(
                    "SELECT client_id, topic, epoch, ack_floor, window_size, pattern FROM subscriptions ORDER BY client_id, topic"))
        }
    }

    public func subscriptions(topic: String) throws(StoreError) -> [SubscriptionRecord] {
        try connections.withSession { session throws(StoreError) in
            try Self.decodeRows(
                try session.query("SELECT client_id, topic, epoch, ack_floor, window_size, pattern FROM subscriptions WHERE topic = \(topic)"),
                "subscription record", Self.subscription)
        }
    }

    static func subscription(_ row: PostgresRow) throws -> SubscriptionRecord {
        let (clientID, topic, epoch, floor, window, pattern) = try row.decode((String, String, String, Int64, Int32, String?).self)
        return SubscriptionRecord(clientID: clientID, topic: topic, epoch: epoch, ackFloor: floor.unsigned, window: Int(window), pattern: pattern)
    }

    /// Sessions and subscriptions as `SELECT`ed above, each session with its own.
    private static func stored(sessions: PostgresQueryResult, subscriptions: PostgresQueryResult) throws(StoreError) -> [StoredSession] {
        let records = try decodeRows(sessions, "session record") { row throws in
            let (clientID, incarnation, created, lastSeen) = try row.decode((String, String, Int64, Int64).self)
            return SessionRecord(clientID: clientID, incarnation: incarnation, createdAt: created.unsigned, lastSeen: lastSeen.unsigned)
        }
        let byClient = Dictionary(grouping: try decodeRows(subscriptions, "subscription record", subscription), by: \.clientID)
        return records.map { StoredSession(record: $0, subscriptions: byClient[$0.clientID] ?? []) }
    }

    // MARK: - Commit

    public func commit(_ operations: [StoreOperation], now: Timestamp) throws(StoreError) -> CommitResult {
        let result: CommitResult
        let sweeping = operations.contains(where: \.isClusterChore) && sweepLock.isHeld()
        var configs = try topicConfigs()
        for operation in operations where operation.isTopicConfigChange { configs.apply(operation) }
        do {
            result = try connections.transaction { session throws(StoreError) in
                var commit = PostgresCommit(
                    session: session, configuration: configuration, configs: configs, now: now, acceptPublishes: true, sweeping: sweeping)
                return try commit.run(operations)
            }
        } catch .full where operations.contains(where: \.isPublish) {
            // The disk is full and the transaction rolled back. Retry without the publishes so
            // acks, sessions and deletes (which free space) still commit, as LMDB does.
            result = try connections.transaction { session throws(StoreError) in
                var commit = PostgresCommit(
                    session: session, configuration: configuration, configs: configs, now: now, acceptPublishes: false, sweeping: sweeping)
                return try commit.run(operations)
            }
        }
        // After COMMIT: other brokers read these topics again, and the configuration.
        watcher.changed(result.topics.keys)
        if operations.contains(where: \.isTopicConfigChange) {
            topicConfigCache.invalidate()
            watcher.topicConfigsChanged()
        }
        return result
    }

    // MARK: - Reads

    public func messages(topicID: UInt64, after: UInt64, limit: Int) throws(StoreError) -> [StoredMessage] {
        // Ids and versions are bigint: nothing is stored past Int64.max.
        guard limit > 0, topicID <= UInt64(Int64.max), after < UInt64(Int64.max) else { return [] }
        return try connections.withSession { session throws(StoreError) in
            let rows = try session.query(
                """
                SELECT version, ts, kind, payload, headers FROM messages
                WHERE topic_id = \(Int64(topicID)) AND version > \(Int64(after)) ORDER BY version LIMIT \(Int64(limit))
                """)
            return try Self.decodeRows(rows, "message of topic id \(topicID)") { row throws in
                let (version, timestamp, kind, payload, headers) = try row.decode((Int64, Int64, Int16, ByteBuffer, ByteBuffer).self)
                guard let kind = UInt8(exactly: kind).flatMap(PayloadKind.init(rawValue:)) else {
                    throw StoreError.corrupted("message \(version) has payload kind \(kind)")
                }
                return StoredMessage(
                    version: version.unsigned, timestamp: timestamp.unsigned, kind: kind, payload: Array(payload.readableBytesView),
                    headers: try PostgresHeaders.decode(headers))
            }
        }
    }

    /// Not done by ferryd: a database is backed up by PostgreSQL's own tools.
    public func backup(to path: String) throws(StoreError) -> Int {
        throw Self.backupsArePostgreSQLs
    }

    public func backup(into descriptor: Int32) throws(StoreError) {
        throw Self.backupsArePostgreSQLs
    }

    public func backupSizeEstimate() throws(StoreError) -> Int {
        throw Self.backupsArePostgreSQLs
    }

    private static let backupsArePostgreSQLs = StoreError.unsupported(
        "the PostgreSQL store is backed up with PostgreSQL's tools: pg_dump for a copy, or a base backup (pg_basebackup) with WAL archiving")

    /// `usedBytes` is the database's size on disk; there is no map, and every commit is synchronous.
    public func usage() -> StoreUsage {
        let size = try? connections.withSession { session throws(StoreError) in
            try PostgresSchema.decodeFirst(try session.query("SELECT pg_database_size(current_database())"), as: Int64.self, "database size")
        }
        return StoreUsage(mapSize: 0, usedBytes: Int(size.flatMap { $0 } ?? 0), syncOnCommit: true)
    }

    // MARK: - Decoding

    static func topic(_ row: PostgresRow) throws -> TopicRecord {
        let (name, id, epoch, first, head, messages, bytes) = try row.decode((String, Int64, String, Int64, Int64, Int64, Int64).self)
        return TopicRecord(
            name: name, id: id.unsigned, epoch: epoch, first: first.unsigned, head: head.unsigned, messages: messages.unsigned,
            bytes: bytes.unsigned)
    }

    /// Decodes every row; one that does not decode is corruption, never skipped.
    static func decodeRows<T>(_ rows: PostgresQueryResult, _ what: String, _ decode: (PostgresRow) throws -> T) throws(StoreError) -> [T] {
        var result: [T] = []
        for row in rows {
            do {
                result.append(try decode(row))
            } catch let error as StoreError {
                throw error
            } catch {
                throw StoreError.corrupted("a \(what) does not decode: \(error)")
            }
        }
        return result
    }
}

extension StoreOperation {
    var isPublish: Bool {
        if case .publish = self { true } else { false }
    }

    /// Work one broker of a cluster does for all: retention sweeps and session expiry.
    var isClusterChore: Bool {
        switch self {
        case .sweep, .expireSessions: true
        default: false
        }
    }
}

/// Unsigned store values in bigint columns, bit for bit (none reaches 2⁶³ in practice).
extension UInt64 {
    var signed: Int64 { Int64(bitPattern: self) }
}

extension Int64 {
    var unsigned: UInt64 { UInt64(bitPattern: self) }
}

/// A message's headers in one bytea: per header, the name's and then the value's UTF-8 bytes,
/// each after its length as a 32-bit big-endian integer; no headers is the empty string. Names and
/// values are arbitrary and their order is kept.
enum PostgresHeaders {
    static func encode(_ headers: [Header]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for header in headers {
            for text in [header.name, header.value] {
                buffer.writeInteger(UInt32(text.utf8.count))
                buffer.writeString(text)
            }
        }
        return buffer
    }

    static func decode(_ encoded: ByteBuffer) throws(StoreError) -> [Header] {
        var buffer = encoded
        var headers: [Header] = []
        func text() throws(StoreError) -> String {
            guard let length = buffer.readInteger(as: UInt32.self), let text = buffer.readString(length: Int(length)) else {
                throw StoreError.corrupted("message headers are truncated")
            }
            return text
        }
        while buffer.readableBytes > 0 {
            headers.append(Header(try text(), try text()))
        }
        return headers
    }
}
