import FerryProtocol
import FerryStore
import NIOCore
import PostgresNIO

/// One commit, inside its transaction. The operations are applied in order to an in-memory view
/// of the topics they touch (locked first), then written with a fixed number of set-based
/// statements, whatever the number of operations:
///
/// 1. `SELECT ... ORDER BY name FOR UPDATE` of every touched topic (all of them for a sweep);
/// 2. only when some do not exist: `INSERT ... ON CONFLICT DO NOTHING` of those a publish or
///    ensure creates, and the same `SELECT` of them;
/// 3. one `SELECT` of the dedup entries of the commit's msg_ids;
/// then, each only when needed: delete the deleted topics' rows; delete trimmed versions; insert
/// all new messages (one `INSERT ... SELECT FROM unnest(...)`); read the oldest messages of the
/// topics retention may shorten and delete what it drops; upsert dedup entries; expire old ones;
/// upsert the changed topics; delete and upsert subscriptions and sessions.
struct PostgresCommit {
    let session: PostgresSession
    let configuration: PostgresStoreConfiguration
    /// The per-topic configuration this commit enforces (with its own changes).
    var config: EffectiveConfigMemo
    let now: Timestamp
    let acceptPublishes: Bool
    /// This broker runs the cluster's sweeps and session expiry now (``PostgresSweepLock``).
    let sweeping: Bool

    var current: [String: TopicRecord] = [:]
    var changed: [String: TopicRecord?] = [:]
    var deletedIDs: Set<UInt64> = []
    var newMessages: [PendingMessage] = []
    var dedup: [DedupKey: (version: UInt64, stamp: Timestamp)] = [:]
    var newDedup: [DedupKey: (version: UInt64, stamp: Timestamp)] = [:]
    /// Per topic id: versions below this are deleted by a trim.
    var trimCuts: [UInt64: UInt64] = [:]
    var sweep = false
    /// Configuration entries this commit stores; nil deletes one.
    var configWrites: [TopicPattern: TopicConfig?] = [:]
    var sessions: [String: SessionRecord?] = [:]
    var clearedClients: Set<String> = []
    var deletedSubscriptions: Set<SubscriptionKey> = []
    /// `exact` for records stored as given (``StoreOperation/putSubscription(_:)``), else acks
    /// whose floor only rises within an epoch (``StoreOperation/raiseAckFloor(_:)``).
    var subscriptions: [SubscriptionKey: (record: SubscriptionRecord, exact: Bool)] = [:]
    /// `expireSessions` operations: the index of each one's outcome, and its cutoff.
    private var expiries: [(index: Int, cutoff: Timestamp)] = []

    struct PendingMessage {
        var topicID: UInt64
        var version: UInt64
        var message: NewMessage
    }

    struct DedupKey: Hashable, Comparable {
        var topicID: UInt64
        var messageID: [UInt8]

        static func < (lhs: Self, rhs: Self) -> Bool {
            lhs.topicID != rhs.topicID ? lhs.topicID < rhs.topicID : lhs.messageID.lexicographicallyPrecedes(rhs.messageID)
        }
    }

    struct SubscriptionKey: Hashable, Comparable {
        var clientID: String
        var topic: String

        /// Byte order, as the "C" collation sorts them: every node writes rows in one order.
        static func < (lhs: Self, rhs: Self) -> Bool {
            lhs.clientID != rhs.clientID
                ? lhs.clientID.utf8.lexicographicallyPrecedes(rhs.clientID.utf8) : lhs.topic.utf8.lexicographicallyPrecedes(rhs.topic.utf8)
        }
    }

    init(
        session: PostgresSession, configuration: PostgresStoreConfiguration, configs: TopicConfigs, now: Timestamp, acceptPublishes: Bool,
        sweeping: Bool
    ) {
        self.session = session
        self.configuration = configuration
        config = EffectiveConfigMemo(configs)
        self.now = now
        self.acceptPublishes = acceptPublishes
        self.sweeping = sweeping
    }

    mutating func run(_ operations: [StoreOperation]) throws(StoreError) -> CommitResult {
        try lockTopics(operations)
        try loadDedup(operations)
        var outcomes: [CommitResult.Outcome] = []
        outcomes.reserveCapacity(operations.count)
        for operation in operations {
            switch operation {
            case .publish(let message):
                outcomes.append(acceptPublishes ? try publish(message) : .failed(.full))
            case .ensureTopic(let name, let epoch):
                _ = try topic(name, createWithEpoch: epoch)
                outcomes.append(.done)
            case .renewEpoch(let name, let from, let to):
                if var topic = current[name], topic.epoch == from {
                    topic.epoch = to
                    current[name] = topic
                    changed[name] = topic
                }
                outcomes.append(.done)
            case .deleteTopic(let name):
                if let topic = current.removeValue(forKey: name) {
                    deletedIDs.insert(topic.id)
                    changed[name] = .some(nil)
                }
                outcomes.append(.done)
            case .trimTopic(let name, let through):
                trim(name, through: through)
                outcomes.append(.done)
            case .putSession(let record):
                sessions[record.clientID] = record
                outcomes.append(.done)
            case .deleteSession(let clientID):
                sessions[clientID] = .some(nil)
                clearedClients.insert(clientID)
                subscriptions = subscriptions.filter { $0.key.clientID != clientID }
                outcomes.append(.done)
            case .putSubscription(let record):
                subscriptions[SubscriptionKey(clientID: record.clientID, topic: record.topic)] = (record, exact: true)
                outcomes.append(.done)
            case .raiseAckFloor(let record):
                let key = SubscriptionKey(clientID: record.clientID, topic: record.topic)
                var merged = (record: record, exact: false)
                // On top of a record this commit wrote: the same rule as the upsert's.
                if let earlier = subscriptions[key] {
                    merged.exact = earlier.exact
                    if earlier.record.epoch == record.epoch { merged.record.ackFloor = max(earlier.record.ackFloor, record.ackFloor) }
                }
                subscriptions[key] = merged
                outcomes.append(.done)
            case .deleteSubscription(let clientID, let topic):
                let key = SubscriptionKey(clientID: clientID, topic: topic)
                subscriptions[key] = nil
                deletedSubscriptions.insert(key)
                outcomes.append(.done)
            case .sweep:
                // Another broker sweeps: this one's would only contend for every topic's lock.
                if sweeping { sweep = true }
                outcomes.append(.done)
            case .expireSessions(let cutoff):
                // After the sessions this commit writes: a session it marks as seen now stays.
                if sweeping { expiries.append((outcomes.count, cutoff)) }
                outcomes.append(.expired([]))
            case .putTopicConfig(let pattern, let entry):
                configWrites[pattern] = entry
                outcomes.append(.done)
            case .deleteTopicConfig(let pattern):
                configWrites[pattern] = .some(nil)
                outcomes.append(.done)
            }
        }
        try writeTopicsAndMessages()
        try writeSessionsAndSubscriptions()
        if !configWrites.isEmpty { try PostgresTopicConfigs.write(configWrites, in: session) }
        for (index, cutoff) in expiries {
            outcomes[index] = .expired(try expireSessions(lastSeenBefore: cutoff))
        }
        return CommitResult(outcomes: outcomes, topics: changed)
    }

    // MARK: - Reading and locking

    /// Locks every touched topic's row in name order, then creates (and locks) those a publish or
    /// ensure needs that do not exist. Nodes lock existing rows before new ones, in name order
    /// within each step; a cycle through a topic two nodes create at once is a deadlock that
    /// PostgreSQL breaks and the commit retries.
    private mutating func lockTopics(_ operations: [StoreOperation]) throws(StoreError) {
        var creatable: [String: String] = [:]
        var touched: Set<String> = []
        for operation in operations {
            switch operation {
            case .publish(let message) where acceptPublishes:
                touched.insert(message.topic)
                if creatable[message.topic] == nil { creatable[message.topic] = Epoch.random() }
            case .ensureTopic(let name, let epoch):
                touched.insert(name)
                if creatable[name] == nil { creatable[name] = epoch }
            case .deleteTopic(let name), .trimTopic(let name, _), .renewEpoch(let name, _, _):
                touched.insert(name)
            case .sweep:
                sweep = sweeping
            default:
                break
            }
        }
        guard sweep || !touched.isEmpty else { return }
        let select = "SELECT name, id, epoch, first, head, messages, bytes FROM topics"
        try lock(
            sweep
                ? try session.query(PostgresQuery(unsafeSQL: select + " ORDER BY name FOR UPDATE"))
                : try session.query("\(unescaped: select) WHERE name = ANY(\(Array(touched))::text[]) ORDER BY name FOR UPDATE"),
            created: [])
        // Usually every topic exists, and this is the commit's only statement before its writes.
        let missing = creatable.keys.filter { current[$0] == nil }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        guard !missing.isEmpty else { return }
        let rows = try session.query(
            """
            INSERT INTO topics (name, id, epoch, first, head, messages, bytes)
            SELECT name, nextval('ferry_topic_ids'), epoch, 1, 0, 0, 0
            FROM unnest(\(missing)::text[], \(missing.map { creatable[$0] ?? "" })::text[]) WITH ORDINALITY AS n(name, epoch, position)
            ORDER BY position
            ON CONFLICT (name) DO NOTHING RETURNING name
            """)
        let created = Set(try PostgresMessageStore.decodeRows(rows, "created topic name") { try $0.decode(String.self) })
        // Those another node created meanwhile are locked now (deadlocks with it are retried).
        try lock(try session.query("\(unescaped: select) WHERE name = ANY(\(missing)::text[]) ORDER BY name FOR UPDATE"), created: created)
    }

    private mutating func lock(_ rows: PostgresQueryResult, created: Set<String>) throws(StoreError) {
        for topic in try PostgresMessageStore.decodeRows(rows, "topic record", PostgresMessageStore.topic) {
            current[topic.name] = topic
            if created.contains(topic.name) { changed[topic.name] = topic }
        }
    }

    /// Reads the remembered msg_ids of the commit's publishes, after the topics are locked so that
    /// another node's commit to them is either complete and visible or not begun.
    private mutating func loadDedup(_ operations: [StoreOperation]) throws(StoreError) {
        var ids: [Int64] = []
        var messageIDs: [ByteBuffer] = []
        for case .publish(let message) in operations where acceptPublishes {
            guard let messageID = message.messageID, let topic = current[message.topic] else { continue }
            ids.append(topic.id.signed)
            messageIDs.append(ByteBuffer(string: messageID))
        }
        guard !ids.isEmpty else { return }
        let rows = try session.query(
            """
            SELECT d.topic_id, d.msg_id, d.version, d.stamp FROM dedup d
            JOIN unnest(\(ids)::bigint[], \(messageIDs)::bytea[]) AS k(topic_id, msg_id) ON d.topic_id = k.topic_id AND d.msg_id = k.msg_id
            """)
        for (id, messageID, version, stamp) in try PostgresMessageStore.decodeRows(rows, "dedup entry", {
            try $0.decode((Int64, ByteBuffer, Int64, Int64).self)
        }) {
            dedup[DedupKey(topicID: id.unsigned, messageID: Array(messageID.readableBytesView))] = (version.unsigned, stamp.unsigned)
        }
    }

    // MARK: - Operations

    /// The topic, created with `epoch()` when it does not exist (any more) and an epoch is given.
    /// A topic missing after the locking step was deleted earlier in this commit (or by a node that
    /// committed while this one waited): it gets a new id, never a reused one.
    private mutating func topic(_ name: String, createWithEpoch epoch: @autoclosure () -> String?) throws(StoreError) -> TopicRecord? {
        if let topic = current[name] { return topic }
        guard let epoch = epoch() else { return nil }
        let rows = try session.query("SELECT nextval('ferry_topic_ids')")
        guard let id = try PostgresSchema.decodeFirst(rows, as: Int64.self, "a topic id") else {
            throw StoreError.engine("nextval returned no row")
        }
        let topic = TopicRecord(name: name, id: id.unsigned, epoch: epoch)
        current[name] = topic
        changed[name] = topic
        return topic
    }

    private mutating func publish(_ message: NewMessage) throws(StoreError) -> CommitResult.Outcome {
        guard var topic = try topic(message.topic, createWithEpoch: Epoch.random()) else { return .failed(.engine("topic not created")) }
        var dedupKey: DedupKey?
        if let messageID = message.messageID {
            let key = DedupKey(topicID: topic.id, messageID: Array(messageID.utf8))
            if let hit = dedup[key], hit.stamp + config.of(topic.name).dedupWindow > now {
                return .published(version: hit.version, timestamp: hit.stamp, duplicate: true)
            }
            dedupKey = key
        }
        topic.head += 1
        topic.messages += 1
        topic.bytes += UInt64(message.payload.count)
        newMessages.append(PendingMessage(topicID: topic.id, version: topic.head, message: message))
        if let dedupKey {
            dedup[dedupKey] = (topic.head, now)
            newDedup[dedupKey] = (topic.head, now)
        }
        current[topic.name] = topic
        changed[topic.name] = topic
        return .published(version: topic.head, timestamp: now, duplicate: false)
    }

    /// Moves `first` past `through`; the counts follow once the rows are deleted (`applyTrims`).
    /// Interest retention on the topics whose configuration asks for it (``InterestRetention``),
    /// from their durable subscriptions and every pattern subscription as this commit leaves them
    /// (its acks are written after the messages, so they are laid over what the table has).
    mutating func applyInterest() throws(StoreError) {
        let topics = config.topics(current.values, retainedBy: .interest)
        guard !topics.isEmpty else { return }
        let rows = try session.query(
            """
            SELECT client_id, topic, epoch, ack_floor, window_size, pattern FROM subscriptions
            WHERE topic = ANY(\(topics.map(\.name))::text[]) OR strpos(topic, '*') > 0 OR strpos(topic, '>') > 0
            """)
        var stored: [SubscriptionKey: SubscriptionRecord] = [:]
        for record in try PostgresMessageStore.decodeRows(rows, "subscription", PostgresMessageStore.subscription)
        where !clearedClients.contains(record.clientID) {
            stored[SubscriptionKey(clientID: record.clientID, topic: record.topic)] = record
        }
        for key in deletedSubscriptions { stored[key] = nil }
        for (key, pending) in subscriptions {
            var record = pending.record
            if !pending.exact, let earlier = stored[key], earlier.epoch == record.epoch { record.ackFloor = max(record.ackFloor, earlier.ackFloor) }
            stored[key] = record
        }
        for (name, through) in InterestRetention.deletableThrough(topics, subscriptions: Array(stored.values)) {
            trim(name, through: through)
        }
    }

    private mutating func trim(_ name: String, through: UInt64) {
        guard var topic = current[name], topic.first <= topic.head, through >= topic.first else { return }
        let cut = min(through, topic.head) + 1
        trimCuts[topic.id] = cut
        topic.first = cut
        current[name] = topic
        changed[name] = topic
    }
}
