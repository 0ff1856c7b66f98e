import FerryProtocol

/// The records the store keeps and the core reads: messages, topics, sessions, subscriptions.

/// One message to append.
public struct NewMessage: Sendable, Equatable {
    public var topic: String
    public var kind: PayloadKind
    public var payload: [UInt8]
    public var messageID: String?
    public var headers: [Header]

    public init(topic: String, kind: PayloadKind, payload: [UInt8], messageID: String? = nil, headers: [Header] = []) {
        self.topic = topic
        self.kind = kind
        self.payload = payload
        self.messageID = messageID
        self.headers = headers
    }
}

/// A header pair, in publish order.
public struct Header: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A stored message.
public struct StoredMessage: Sendable, Equatable {
    public var version: UInt64
    public var timestamp: Timestamp
    public var kind: PayloadKind
    public var payload: [UInt8]
    public var headers: [Header]

    public init(version: UInt64, timestamp: Timestamp, kind: PayloadKind, payload: [UInt8], headers: [Header]) {
        self.version = version
        self.timestamp = timestamp
        self.kind = kind
        self.payload = payload
        self.headers = headers
    }
}

/// The state of one topic's log.
public struct TopicRecord: Sendable, Equatable {
    public var name: String
    /// The key prefix of this incarnation's messages; never reused.
    public var id: UInt64
    public var epoch: String
    /// Oldest stored version, or `head + 1` when nothing is stored.
    public var first: UInt64
    public var head: UInt64
    public var messages: UInt64
    /// Payload bytes stored.
    public var bytes: UInt64

    public init(name: String, id: UInt64, epoch: String, first: UInt64 = 1, head: UInt64 = 0, messages: UInt64 = 0, bytes: UInt64 = 0) {
        self.name = name
        self.id = id
        self.epoch = epoch
        self.first = first
        self.head = head
        self.messages = messages
        self.bytes = bytes
    }
}

/// A durable session.
public struct SessionRecord: Sendable, Equatable {
    public var clientID: String
    /// Changes when a session is created anew, so tokens of an earlier session stop resuming.
    public var incarnation: String
    public var createdAt: Timestamp
    public var lastSeen: Timestamp

    public init(clientID: String, incarnation: String, createdAt: Timestamp, lastSeen: Timestamp) {
        self.clientID = clientID
        self.incarnation = incarnation
        self.createdAt = createdAt
        self.lastSeen = lastSeen
    }
}

/// A durable subscription: where a client stands in a topic, or a pattern subscription.
///
/// A pattern subscription is stored as a record whose `topic` is the pattern (topic names never
/// contain `*` or `>`) with its window and no epoch or floor; each topic it delivers has a
/// record of its own, with the floor in that topic and `pattern` naming it: together, the
/// pattern's version vector.
public struct SubscriptionRecord: Sendable, Equatable {
    public var clientID: String
    public var topic: String
    public var epoch: String
    public var ackFloor: UInt64
    public var window: Int
    /// The pattern subscription this topic is delivered through; nil for a topic subscription.
    public var pattern: String?

    public init(clientID: String, topic: String, epoch: String, ackFloor: UInt64, window: Int, pattern: String? = nil) {
        self.clientID = clientID
        self.topic = topic
        self.epoch = epoch
        self.ackFloor = ackFloor
        self.window = window
        self.pattern = pattern
    }

    /// The record of a pattern subscription itself.
    public static func pattern(_ pattern: String, clientID: String, window: Int) -> SubscriptionRecord {
        SubscriptionRecord(clientID: clientID, topic: pattern, epoch: "", ackFloor: 0, window: window)
    }

    /// True for a pattern subscription's own record: it names no log.
    public var isPattern: Bool { TopicPattern.looksLikePattern(topic) }
}
