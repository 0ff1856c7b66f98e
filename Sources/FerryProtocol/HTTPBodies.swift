/// Bodies of the HTTP API (PROTOCOL.md, "HTTP API"), shared by the broker and its clients.

/// `GET /v1/topics/{topic}` and the items of `GET /v1/admin/topics`.
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

    public init(topic: String, epoch: String, first: UInt64, head: UInt64, messages: UInt64, bytes: UInt64, subscribers: Int) {
        self.topic = topic
        self.epoch = epoch
        self.first = first
        self.head = head
        self.messages = messages
        self.bytes = bytes
        self.subscribers = subscribers
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

/// `GET /v1/admin/clients`.
public struct ClientList: Codable, Sendable {
    public var clients: [ClientSummary]

    public init(clients: [ClientSummary]) {
        self.clients = clients
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

    public init(topic: String, epoch: String, ackFloor: UInt64, head: UInt64, lag: UInt64, window: Int) {
        self.topic = topic
        self.epoch = epoch
        self.ackFloor = ackFloor
        self.head = head
        self.lag = lag
        self.window = window
    }

    enum CodingKeys: String, CodingKey {
        case topic, epoch, ackFloor = "ack_floor", head, lag, window
    }
}

/// `GET /v1/admin/clients/{id}`.
public struct ClientDetail: Codable, Sendable, Equatable {
    public var clientID: String
    public var connected: Bool
    public var createdAt: UInt64
    public var lastSeen: UInt64
    public var subscriptions: [SubscriptionInfo]

    public init(clientID: String, connected: Bool, createdAt: UInt64, lastSeen: UInt64, subscriptions: [SubscriptionInfo]) {
        self.clientID = clientID
        self.connected = connected
        self.createdAt = createdAt
        self.lastSeen = lastSeen
        self.subscriptions = subscriptions
    }

    enum CodingKeys: String, CodingKey {
        case clientID = "client_id", connected, createdAt = "created_at", lastSeen = "last_seen", subscriptions
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

    public init(
        version: String, uptimeSeconds: UInt64, connections: Int, topics: Int, sessions: Int, published: UInt64,
        delivered: UInt64, dataBytes: Int, mapSize: Int, sync: String
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
    }

    enum CodingKeys: String, CodingKey {
        case version, uptimeSeconds = "uptime_seconds", connections, topics, sessions, published, delivered
        case dataBytes = "data_bytes", mapSize = "map_size", sync
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

/// Every HTTP error: `{"error":{"code","message"}}`.
public struct ErrorBody: Codable, Sendable {
    public struct Detail: Codable, Sendable {
        public var code: String
        public var message: String
    }

    public var error: Detail

    public init(_ error: ProtocolError) {
        self.error = Detail(code: error.code.rawValue, message: error.message)
    }
}
