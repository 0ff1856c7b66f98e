import FerryProtocol

/// The core's whole view of storage: one small protocol, so another engine (PostgreSQL for
/// several brokers sharing state) can replace LMDB without touching delivery logic.
///
/// An implementation applies a batch of operations atomically (one transaction, the group
/// commit), assigns versions, enforces retention and deduplicates `msg_id`s inside that
/// transaction, and serves range reads that never block the writer.
///
/// The methods are synchronous and may block: the core calls ``commit(_:now:)`` only from its
/// one committer thread and the reads from threads of its own (or inline, when
/// ``readsMayBlock`` is false), never from an event loop or the cooperative pool.
public protocol MessageStore: AnyObject, Sendable {
    /// False when a read never waits for anything but memory (LMDB's mapped file): the core then
    /// reads inline on the thread that needs the messages, instead of on a read thread.
    var readsMayBlock: Bool { get }

    /// Makes the store ready to serve (creates or migrates what it needs, checks what must be
    /// whole before serving) and returns the key that signs resume tokens: made once with the
    /// store, the same for every broker on it. A store that is not fit to serve throws.
    func open() throws(StoreError) -> [UInt8]

    /// One topic's log, or nil when it does not exist. The core reads a topic when it is first
    /// named, not all of them at start.
    func topic(named name: String) throws(StoreError) -> TopicRecord?

    /// The logs of the topics in `names` that exist, in one read where the engine can (a broker
    /// reads again the topics its subscribers wait on, after another broker's change).
    func topics(named names: [String]) throws(StoreError) -> [TopicRecord]

    /// Every topic, by name (admin listings and metrics).
    func topics() throws(StoreError) -> [TopicRecord]

    /// The per-topic configuration entries as stored, with the global settings the engine was
    /// opened with (what unset fields fall back to). Always read from the store, not a cache.
    func topicConfigs() throws(StoreError) -> TopicConfigs

    /// A durable session with its subscriptions, or nil: read when its `hello` arrives.
    func session(clientID: String) throws(StoreError) -> StoredSession?

    /// Every durable session with its subscriptions, by client id (admin listings, metrics, expiry).
    func sessions() throws(StoreError) -> [StoredSession]

    /// The durable subscriptions to `topic`, any order (a topic's subscriber count, its admin view, a trim's check).
    func subscriptions(topic: String) throws(StoreError) -> [SubscriptionRecord]

    /// Starts telling `handler` about changes other brokers sharing this store make (on a
    /// thread of the engine's). An engine only one broker uses (LMDB) never calls it. Delivery
    /// is at least once and may be late or coalesced; the engine says `.everything` when it may
    /// have missed some (a lost notification channel), and periodically, so nothing depends on
    /// one notification arriving.
    func watch(_ handler: @escaping @Sendable (StoreChange) -> Void)

    /// Makes this broker the owner of the durable session `proposed.clientID` among the brokers
    /// sharing the store, creating it as `proposed` if the engine can and it does not exist, and
    /// returns it as stored, with what its previous owner means (``SessionClaim``). Called when a
    /// `hello` names the session; a live previous owner is asked to let it go.
    func claimSession(_ proposed: SessionRecord) throws(StoreError) -> SessionClaim

    /// Tells the other brokers sharing the store about a session; never blocks, may be lost.
    func announce(_ notice: SessionNotice)

    /// The claim generation of each session in `clientIDs` that exists: a broker checks the
    /// sessions it holds against it when it may have missed notices (``StoreChange/everything``).
    func sessionGenerations(_ clientIDs: [String]) throws(StoreError) -> [String: UInt64]

    /// The brokers sharing the store now, this one included; empty when it is the only one.
    func nodes() throws(StoreError) -> [NodeInfo]

    /// Makes this broker the one that serves queue group `group` of `topic`, unless a live
    /// broker does; true when this one does (it did already, or took it now). One broker serves a
    /// group at a time, so each message goes to one member.
    func leaseQueueGroup(_ group: String, of topic: String) throws(StoreError) -> Bool

    /// Gives up the lease of a group this broker served (its last member here left).
    func releaseQueueGroup(_ group: String, of topic: String) throws(StoreError)

    /// Applies `operations` in order in one durable commit. An operation that cannot be applied
    /// (a publish when space is exhausted) fails alone; the rest still commit.
    func commit(_ operations: [StoreOperation], now: Timestamp) throws(StoreError) -> CommitResult

    /// Messages of `topicID` with versions `> after`, oldest first, at most `limit`.
    func messages(topicID: UInt64, after: UInt64, limit: Int) throws(StoreError) -> [StoredMessage]

    /// A consistent, compacted copy of the whole store written into the empty folder `path`.
    /// Throws ``StoreError/unsupported(_:)`` when ferryd does not back up this engine.
    func backup(to path: String) throws(StoreError) -> Int

    /// Writes a consistent, compacted copy of the store's data file into `descriptor` (a pipe or
    /// a file), blocking until it is written or a write fails; the caller owns the descriptor.
    func backup(into descriptor: Int32) throws(StoreError)

    /// About how many bytes ``backup(into:)`` would write now, for a progress bar. Throws
    /// ``StoreError/unsupported(_:)`` when ferryd does not back up this engine.
    func backupSizeEstimate() throws(StoreError) -> Int

    /// Size and use, for stats and metrics.
    func usage() -> StoreUsage

    /// Checks that the stored state agrees with itself: each topic's versions run from `first`
    /// to `head` with no gap and match its counts, ack floors are within their logs, and the
    /// dedup index points into existing logs. Returns every fault found; empty means consistent.
    func verify() throws(StoreError) -> [StoreFault]
}

/// One inconsistency ``MessageStore/verify()`` found.
public struct StoreFault: Sendable, Equatable, CustomStringConvertible {
    /// What is wrong, as a stable name for scripts.
    public enum Kind: String, Sendable, CaseIterable {
        /// A record that does not decode.
        case unreadableRecord = "unreadable_record"
        /// A version missing between a topic's `first` and `head`.
        case versionGap = "version_gap"
        /// A message stored outside its topic's `first...head`.
        case versionOutOfRange = "version_out_of_range"
        /// A topic's message count or payload bytes disagree with its messages.
        case countMismatch = "count_mismatch"
        /// A message whose topic id belongs to no topic.
        case orphanMessage = "orphan_message"
        /// An ack floor above the head of the log it names.
        case ackFloorBeyondHead = "ack_floor_beyond_head"
        /// A subscription whose session does not exist.
        case orphanSubscription = "orphan_subscription"
        /// A dedup entry of no topic, past its topic's head, or missing from the time index.
        case dedupMismatch = "dedup_mismatch"
    }

    public var kind: Kind
    /// The topic or client concerned, when there is one.
    public var subject: String?
    public var message: String

    public init(_ kind: Kind, subject: String? = nil, _ message: String) {
        self.kind = kind
        self.subject = subject
        self.message = message
    }

    public var description: String {
        "\(kind.rawValue): " + (subject.map { "\($0): " } ?? "") + message
    }
}

/// Epochs name one incarnation of a topic's log (and of a session): every engine makes them the
/// same way, so the core never depends on which engine it runs on.
public enum Epoch {
    /// A fresh epoch: 48 random bits in 12 hex digits.
    public static func random() -> String {
        let hex = String(UInt64.random(in: 0..<(1 << 48)), radix: 16)
        return String(repeating: "0", count: 12 - hex.count) + hex
    }
}

/// Milliseconds since 1970, the unit of every time the store records.
public typealias Timestamp = UInt64

/// A failure of the store.
public enum StoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Out of space (map or disk full, or the reserve kept for deletes reached): nothing was stored.
    case full
    /// Stored data does not decode: a bug or corruption.
    case corrupted(String)
    case engine(String)
    /// The engine does not do what was asked (a PostgreSQL store is backed up by PostgreSQL's tools).
    case unsupported(String)

    public var description: String {
        switch self {
        case .full: "the store is full"
        case .corrupted(let what): "corrupted store: \(what)"
        case .engine(let what), .unsupported(let what): what
        }
    }
}

/// A message payload's kind, as stored.
public enum PayloadKind: UInt8, Sendable {
    case json = 0
    case bytes = 1
}

/// Per-topic retention, applied at every commit and by `.sweep`.
public struct RetentionPolicy: Sendable, Equatable {
    public var maxMessages: UInt64?
    public var maxBytes: UInt64?
    /// Milliseconds.
    public var maxAge: UInt64?

    public init(maxMessages: UInt64? = nil, maxBytes: UInt64? = 1 << 30, maxAge: UInt64? = 7 * 24 * 3600 * 1000) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAge = maxAge
    }
}

/// One change in a commit.
public enum StoreOperation: Sendable, Equatable {
    /// Appends a message (or finds its `msg_id` within the dedup window), creating the topic if needed.
    case publish(NewMessage)
    /// Creates the topic with this epoch if it does not exist.
    case ensureTopic(String, epoch: String)
    /// Deletes a topic's log; a later publish starts a new epoch at version 1.
    case deleteTopic(String)
    /// Deletes a topic's messages with versions `<= through`; versions are never reused.
    case trimTopic(String, through: UInt64)
    /// Gives the topic epoch `to` if its epoch is still `from`, keeping its messages and versions:
    /// a broker found the log shorter than it had seen (a database failover lost its tail), so
    /// versions will be given again, and every position in the old epoch must be reset.
    case renewEpoch(String, from: String, to: String)
    case putSession(SessionRecord)
    /// Deletes a session and all its subscriptions.
    case deleteSession(String)
    /// Stores a subscription as given: a new one, a rewind, a subscribe from an explicit position.
    case putSubscription(SubscriptionRecord)
    /// Stores acks: within the stored epoch the floor only rises (two brokers may commit one
    /// client's acks out of order during a takeover); in another epoch the record replaces it.
    case raiseAckFloor(SubscriptionRecord)
    case deleteSubscription(clientID: String, topic: String)
    /// Applies age retention to every topic and forgets expired `msg_id`s.
    case sweep
    /// Deletes every session last seen before this time, with its subscriptions; the outcome is
    /// ``CommitResult/Outcome/expired(_:)`` with their client ids.
    case expireSessions(lastSeenBefore: Timestamp)
    /// Creates or replaces the configuration entry of `pattern`; retention and the dedup window
    /// of the topics it matches follow it from this commit on.
    case putTopicConfig(TopicPattern, TopicConfig)
    /// Deletes the configuration entry of `pattern`, if any.
    case deleteTopicConfig(TopicPattern)
}

/// What a commit did.
public struct CommitResult: Sendable {
    /// One entry per operation, in order.
    public var outcomes: [Outcome]
    /// The state after the commit of every topic the commit changed; nil for a deleted topic.
    public var topics: [String: TopicRecord?]

    public enum Outcome: Sendable, Equatable {
        case done
        case published(version: UInt64, timestamp: Timestamp, duplicate: Bool)
        /// The sessions ``StoreOperation/expireSessions(lastSeenBefore:)`` deleted.
        case expired([String])
        case failed(StoreError)
    }

    public init(outcomes: [Outcome], topics: [String: TopicRecord?]) {
        self.outcomes = outcomes
        self.topics = topics
    }
}

/// A change another broker made to a shared store (``MessageStore/watch(_:)``).
public enum StoreChange: Sendable, Equatable {
    /// These topics' logs changed (appended, trimmed, deleted): read them again.
    case topics([String])
    /// Anything may have changed: read again every topic this broker holds.
    case everything
    /// Another broker claimed this session (claim `generation`): if this broker holds it, close
    /// its connection with 4009, commit its acks and announce ``SessionNotice/released(_:generation:)``.
    case sessionWanted(String, generation: UInt64)
    /// The broker asked for this session let it go for claim `generation`.
    case sessionReleased(String, generation: UInt64)
    /// An operator deleted this session through another broker.
    case sessionDeleted(String)
    /// Another broker changed the per-topic configuration: read it again (``MessageStore/topicConfigs()``).
    case topicConfigs
}

/// A durable session as stored: its record and its subscriptions, by topic.
public struct StoredSession: Sendable, Equatable {
    public var record: SessionRecord
    public var subscriptions: [SubscriptionRecord]

    public init(record: SessionRecord, subscriptions: [SubscriptionRecord]) {
        self.record = record
        self.subscriptions = subscriptions
    }
}

extension MessageStore {
    /// One read per name: for an engine whose reads are of memory.
    public func topics(named names: [String]) throws(StoreError) -> [TopicRecord] {
        var records: [TopicRecord] = []
        for name in names {
            if let record = try topic(named: name) { records.append(record) }
        }
        return records
    }

    /// The whole store at once, for tests and offline tools; the broker reads lazily.
    public func load() throws(StoreError) -> StoreSnapshot {
        let secret = try open()
        let sessions = try sessions()
        return StoreSnapshot(
            topics: try topics(), sessions: sessions.map(\.record), subscriptions: sessions.flatMap(\.subscriptions), secret: secret)
    }
}

/// The whole store at once (``MessageStore/load()``).
public struct StoreSnapshot: Sendable {
    public var topics: [TopicRecord]
    public var sessions: [SessionRecord]
    public var subscriptions: [SubscriptionRecord]
    /// The key that signs resume tokens, created with the store.
    public var secret: [UInt8]

    public init(topics: [TopicRecord], sessions: [SessionRecord], subscriptions: [SubscriptionRecord], secret: [UInt8]) {
        self.topics = topics
        self.sessions = sessions
        self.subscriptions = subscriptions
        self.secret = secret
    }
}

/// Space figures.
public struct StoreUsage: Sendable {
    public var mapSize: Int
    public var usedBytes: Int
    public var syncOnCommit: Bool

    public init(mapSize: Int, usedBytes: Int, syncOnCommit: Bool) {
        self.mapSize = mapSize
        self.usedBytes = usedBytes
        self.syncOnCommit = syncOnCommit
    }
}
