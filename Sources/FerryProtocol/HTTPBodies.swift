/// Bodies of the HTTP API (PROTOCOL.md, "HTTP API"), shared by the broker and its clients.

/// `GET /v1/topics/{topic}`, the items of `GET /v1/admin/topics` and `GET /v1/admin/topics/{topic}`.
///
/// The admin API adds `connected` and `lag`, and for one topic `durable_subscriptions`; the
/// public endpoint leaves them out.
public struct TopicInfo: Codable, Sendable, Equatable {
    public var topic: String
    public var epoch: String
    public var first: UInt64
    public var head: UInt64
    public var messages: UInt64
    /// Payload bytes stored.
    public var bytes: UInt64
    /// Durable subscriptions plus connected ephemeral ones.
    public var subscribers: Int
    /// Subscriptions with a connection right now (admin only).
    public var connected: Int?
    /// The largest head − ack_floor of the durable subscriptions in this epoch (admin only).
    public var lag: UInt64?
    /// Each durable subscription (admin, one topic only).
    public var durableSubscriptions: [TopicSubscription]?
    /// The configuration that applies to the topic.
    public var config: TopicConfigInfo?

    public init(
        topic: String, epoch: String, first: UInt64, head: UInt64, messages: UInt64, bytes: UInt64, subscribers: Int,
        connected: Int? = nil, lag: UInt64? = nil, durableSubscriptions: [TopicSubscription]? = nil, config: TopicConfigInfo? = nil
    ) {
        self.topic = topic
        self.epoch = epoch
        self.first = first
        self.head = head
        self.messages = messages
        self.bytes = bytes
        self.subscribers = subscribers
        self.connected = connected
        self.lag = lag
        self.durableSubscriptions = durableSubscriptions
        self.config = config
    }

    enum CodingKeys: String, CodingKey {
        case topic, epoch, first, head, messages, bytes, subscribers, connected, lag
        case durableSubscriptions = "durable_subscriptions", config
    }
}

/// A durable subscription as `GET /v1/admin/topics/{topic}` shows it.
public struct TopicSubscription: Codable, Sendable, Equatable {
    public var clientID: String
    public var connected: Bool
    public var ackFloor: UInt64
    /// head − ack_floor, 0 when the floor is in an older epoch.
    public var lag: UInt64
    /// Milliseconds since the oldest unacknowledged message was committed; nil when none is stored.
    public var oldestUnackedAgeMs: UInt64?

    public init(clientID: String, connected: Bool, ackFloor: UInt64, lag: UInt64, oldestUnackedAgeMs: UInt64?) {
        self.clientID = clientID
        self.connected = connected
        self.ackFloor = ackFloor
        self.lag = lag
        self.oldestUnackedAgeMs = oldestUnackedAgeMs
    }

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", connected, ackFloor = "ack_floor", lag, oldestUnackedAgeMs = "oldest_unacked_age_ms"
    }
}

/// `POST /v1/admin/topics/{topic}/trim`: delete the messages with versions ≤ `to`.
public struct TrimRequest: Codable, Sendable {
    public var to: UInt64
    /// Trim even what durable subscribers have not acked.
    public var force: Bool?

    public init(to: UInt64, force: Bool? = nil) {
        self.to = to
        self.force = force
    }
}

/// The answer of a trim: the topic after it, and how many messages went.
public struct TrimResult: Codable, Sendable, Equatable {
    public var topic: String
    public var first: UInt64
    public var head: UInt64
    public var messages: UInt64
    public var removed: UInt64

    public init(topic: String, first: UInt64, head: UInt64, messages: UInt64, removed: UInt64) {
        self.topic = topic
        self.first = first
        self.head = head
        self.messages = messages
        self.removed = removed
    }
}

/// What one durable subscriber would lose to a trim: the unacked versions `from...to`.
public struct TrimLoss: Codable, Sendable, Equatable {
    public var clientID: String
    public var ackFloor: UInt64
    public var from: UInt64
    public var to: UInt64

    public init(clientID: String, ackFloor: UInt64, from: UInt64, to: UInt64) {
        self.clientID = clientID
        self.ackFloor = ackFloor
        self.from = from
        self.to = to
    }

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", ackFloor = "ack_floor", from, to
    }
}

/// `POST /v1/admin/clients/{id}/rewind`: set the ack floor of a durable subscription.
public struct RewindRequest: Codable, Sendable {
    public var topic: String
    public var to: UInt64

    public init(topic: String, to: UInt64) {
        self.topic = topic
        self.to = to
    }
}

/// `GET /v1/admin/topics`.
public struct TopicList: Codable, Sendable {
    public var topics: [TopicInfo]

    public init(topics: [TopicInfo]) {
        self.topics = topics
    }
}

/// The outcome of one publish: `POST /v1/topics/{topic}/messages` and the items of `POST /v1/publish`.
public struct PublishResult: Codable, Sendable, Equatable {
    public var topic: String
    public var version: UInt64
    public var epoch: String
    public var duplicate: Bool

    public init(topic: String, version: UInt64, epoch: String, duplicate: Bool) {
        self.topic = topic
        self.version = version
        self.epoch = epoch
        self.duplicate = duplicate
    }
}

/// `POST /v1/publish`.
public struct BatchPublishResult: Codable, Sendable {
    public var results: [PublishResult]

    public init(results: [PublishResult]) {
        self.results = results
    }
}

/// An item of `GET /v1/admin/clients`.
public struct ClientSummary: Codable, Sendable, Equatable {
    public var clientID: String
    public var connected: Bool
    public var subscriptions: Int
    /// Milliseconds since 1970.
    public var lastSeen: UInt64

    public init(clientID: String, connected: Bool, subscriptions: Int, lastSeen: UInt64) {
        self.clientID = clientID
        self.connected = connected
        self.subscriptions = subscriptions
        self.lastSeen = lastSeen
    }

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", connected, subscriptions, lastSeen = "last_seen"
    }
}

/// `GET /v1/admin/clients`: one page of the durable sessions, in client id order.
public struct ClientList: Codable, Sendable {
    public var clients: [ClientSummary]
    /// The sessions that match the search, on every page (optional: older brokers leave it out).
    public var total: Int?
    /// The `after` that asks for the next page; nil on the last one.
    public var next: String?

    public init(clients: [ClientSummary], total: Int? = nil, next: String? = nil) {
        self.clients = clients
        self.total = total
        self.next = next
    }
}

/// A durable subscription as the admin API shows it.
public struct SubscriptionInfo: Codable, Sendable, Equatable {
    public var topic: String
    public var epoch: String
    public var ackFloor: UInt64
    public var head: UInt64
    /// head − ack_floor.
    public var lag: UInt64
    public var window: Int
    /// Milliseconds since the oldest unacknowledged message was committed; nil when none is stored.
    public var oldestUnackedAgeMs: UInt64?
    /// The pattern subscription that delivers the topic; nil for a topic subscription.
    public var pattern: String?

    public init(
        topic: String, epoch: String, ackFloor: UInt64, head: UInt64, lag: UInt64, window: Int, oldestUnackedAgeMs: UInt64? = nil,
        pattern: String? = nil
    ) {
        self.pattern = pattern
        self.topic = topic
        self.epoch = epoch
        self.ackFloor = ackFloor
        self.head = head
        self.lag = lag
        self.window = window
        self.oldestUnackedAgeMs = oldestUnackedAgeMs
    }

    enum CodingKeys: String, CodingKey {
        case topic, epoch, ackFloor = "ack_floor", head, lag, window, oldestUnackedAgeMs = "oldest_unacked_age_ms", pattern
    }
}

/// A durable pattern subscription as the admin API shows it; its topics are subscriptions.
public struct PatternInfo: Codable, Sendable, Equatable {
    public var pattern: String
    public var window: Int
    /// The topics it delivers now (those with a position).
    public var topics: Int

    public init(pattern: String, window: Int, topics: Int) {
        self.pattern = pattern
        self.window = window
        self.topics = topics
    }
}

/// The last `hello` that attached a durable session, since the broker started.
public struct ResumeInfo: Codable, Sendable, Equatable {
    /// Milliseconds since 1970.
    public var at: UInt64
    /// True when an existing session was resumed, false when the hello created it.
    public var resumed: Bool
    /// Subscriptions restored by it.
    public var subscriptions: Int

    public init(at: UInt64, resumed: Bool, subscriptions: Int) {
        self.at = at
        self.resumed = resumed
        self.subscriptions = subscriptions
    }
}

/// `GET /v1/admin/clients/{id}`.
public struct ClientDetail: Codable, Sendable, Equatable {
    public var clientID: String
    public var connected: Bool
    public var createdAt: UInt64
    public var lastSeen: UInt64
    public var subscriptions: [SubscriptionInfo]
    public var patterns: [PatternInfo]
    /// Nil when the client has not said hello since the broker started.
    public var lastResume: ResumeInfo?

    public init(
        clientID: String, connected: Bool, createdAt: UInt64, lastSeen: UInt64, subscriptions: [SubscriptionInfo],
        patterns: [PatternInfo] = [], lastResume: ResumeInfo? = nil
    ) {
        self.patterns = patterns
        self.clientID = clientID
        self.connected = connected
        self.createdAt = createdAt
        self.lastSeen = lastSeen
        self.subscriptions = subscriptions
        self.lastResume = lastResume
    }

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", connected, createdAt = "created_at", lastSeen = "last_seen", subscriptions, patterns
        case lastResume = "last_resume"
    }
}

/// `GET /v1/admin/stats`.
public struct BrokerStats: Codable, Sendable {
    public var version: String
    public var uptimeSeconds: UInt64
    public var connections: Int
    public var topics: Int
    public var sessions: Int
    public var published: UInt64
    public var delivered: UInt64
    public var dataBytes: Int
    public var mapSize: Int
    public var sync: String
    /// The brokers sharing this broker's database (cluster mode), this one included; nil for one broker alone.
    public var nodes: [NodeStats]?

    public init(
        version: String, uptimeSeconds: UInt64, connections: Int, topics: Int, sessions: Int, published: UInt64,
        delivered: UInt64, dataBytes: Int, mapSize: Int, sync: String, nodes: [NodeStats]? = nil
    ) {
        self.version = version
        self.uptimeSeconds = uptimeSeconds
        self.connections = connections
        self.topics = topics
        self.sessions = sessions
        self.published = published
        self.delivered = delivered
        self.dataBytes = dataBytes
        self.mapSize = mapSize
        self.sync = sync
        self.nodes = nodes
    }

    enum CodingKeys: String, CodingKey {
        case version, uptimeSeconds = "uptime_seconds", connections, topics, sessions, published, delivered
        case dataBytes = "data_bytes", mapSize = "map_size", sync, nodes
    }
}

/// One broker of a cluster, in ``BrokerStats/nodes``.
public struct NodeStats: Codable, Sendable, Equatable {
    /// Random, made when the broker started.
    public var id: String
    /// Its host and port, as it names itself.
    public var name: String
    /// Milliseconds since 1970 since when it has been connected to the database.
    public var connectedSince: UInt64
    /// True for the broker that answered.
    public var isThisBroker: Bool

    public init(id: String, name: String, connectedSince: UInt64, isThisBroker: Bool) {
        self.id = id
        self.name = name
        self.connectedSince = connectedSince
        self.isThisBroker = isThisBroker
    }

    enum CodingKeys: String, CodingKey {
        case id, name, connectedSince = "connected_since", isThisBroker = "this"
    }
}

/// `POST /v1/admin/backup` request and answer.
public struct BackupRequest: Codable, Sendable {
    public var path: String

    public init(path: String) {
        self.path = path
    }
}

public struct BackupResult: Codable, Sendable {
    public var path: String
    public var bytes: Int

    public init(path: String, bytes: Int) {
        self.path = path
        self.bytes = bytes
    }
}

/// Every HTTP error: `{"error":{"code","message"}}`; a refused trim adds `affected`.
public struct ErrorBody: Codable, Sendable {
    public struct Detail: Codable, Sendable {
        public var code: String
        public var message: String
        /// The durable subscribers a refused trim would have cut.
        public var affected: [TrimLoss]?
    }

    public var error: Detail

    public init(_ error: ProtocolError, affected: [TrimLoss]? = nil) {
        self.error = Detail(code: error.code.rawValue, message: error.message, affected: affected)
    }
}
