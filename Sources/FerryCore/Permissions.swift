import FerryStore

/// A topic pattern with NATS semantics over `.`-separated tokens: a literal token matches
/// itself, `*` matches exactly one token, and `>` (last only) matches one or more tokens.
///
/// ```swift
/// TopicPattern("orders.*")!.matches("orders.eu")      // true
/// TopicPattern("orders.*")!.matches("orders.eu.1")    // false
/// TopicPattern("chat.>")!.matches("chat.room.7")      // true
/// TopicPattern("chat.>")!.matches("chat")             // false
/// ```
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible {
    private enum Token: Sendable, Hashable {
        case literal([UInt8])
        case one
        case rest
    }

    private let tokens: [Token]
    /// `>` alone, what authentication off and the operator get: every publish checks it, so it
    /// is answered without splitting the name.
    private let isEverything: Bool
    public let description: String

    /// Parses a pattern; nil when it is empty, longer than a topic name, uses `*` or `>` inside a
    /// token, or has `>` anywhere but last.
    public init?(_ text: String) {
        guard !text.isEmpty, text.utf8.count <= 255 else { return nil }
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        var tokens: [Token] = []
        for (index, part) in parts.enumerated() {
            switch Array(part) {
            case [UInt8(ascii: "*")]: tokens.append(.one)
            case [UInt8(ascii: ">")] where index == parts.count - 1: tokens.append(.rest)
            case let bytes where bytes.contains(UInt8(ascii: "*")) || bytes.contains(UInt8(ascii: ">")): return nil
            case let bytes: tokens.append(.literal(bytes))
            }
        }
        self.tokens = tokens
        isEverything = tokens == [.rest]
        description = text
    }

    /// Whether `topic` is one of the names this pattern stands for.
    public func matches(_ topic: String) -> Bool {
        if isEverything { return true }
        let names = topic.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        for (index, token) in tokens.enumerated() {
            switch token {
            case .rest:
                return names.count > index
            case .one:
                guard index < names.count else { return false }
            case .literal(let bytes):
                guard index < names.count, names[index].elementsEqual(bytes) else { return false }
            }
        }
        return names.count == tokens.count
    }
}

/// What a principal may do with topics: publish to and subscribe to (or read over HTTP) the
/// topics that one of its patterns matches.
public struct Permissions: Sendable, Equatable {
    public var publish: [TopicPattern]
    public var subscribe: [TopicPattern]

    public init(publish: [TopicPattern], subscribe: [TopicPattern]) {
        self.publish = publish
        self.subscribe = subscribe
    }

    /// Every topic, both ways.
    public static let all = Permissions(publish: [.everything], subscribe: [.everything])
    /// No topic.
    public static let none = Permissions(publish: [], subscribe: [])

    public func mayPublish(_ topic: String) -> Bool { publish.contains { $0.matches(topic) } }
    public func maySubscribe(_ topic: String) -> Bool { subscribe.contains { $0.matches(topic) } }

    /// Permissions from pattern texts; nil when one of them is not a valid pattern.
    public init?(publishing publish: [String], subscribing subscribe: [String]) {
        let parsedPublish = publish.compactMap(TopicPattern.init)
        let parsedSubscribe = subscribe.compactMap(TopicPattern.init)
        guard parsedPublish.count == publish.count, parsedSubscribe.count == subscribe.count else { return nil }
        self.init(publish: parsedPublish, subscribe: parsedSubscribe)
    }

    /// Both sets of patterns together.
    public func union(_ other: Permissions) -> Permissions {
        Permissions(publish: publish + other.publish, subscribe: subscribe + other.subscribe)
    }
}

extension TopicPattern {
    /// `>`: every topic.
    // A literal that always parses.
    public static let everything = TopicPattern(">")!
}

/// Who is on the other end of a connection or request, as the transport authenticated them:
/// which durable client id they may use, what they may do with topics, and until when.
///
/// The core only enforces it; tokens are verified by the transport.
public struct Principal: Sendable {
    /// The durable client ids this principal may use.
    public enum Identity: Sendable, Equatable {
        /// Any client id: authentication is off, or the operator (admin token).
        case anyClient
        /// Only this one (a token's `sub`), or none when nil: ephemeral sessions only.
        case client(String?)
    }

    public var identity: Identity
    public var permissions: Permissions
    /// When the credential stops being valid (ms since 1970); nil: never.
    public var expiresAt: Timestamp?

    public init(identity: Identity, permissions: Permissions, expiresAt: Timestamp? = nil) {
        self.identity = identity
        self.permissions = permissions
        self.expiresAt = expiresAt
    }

    /// Everything allowed: the principal of every connection while authentication is off, and of
    /// the operator.
    public static let unrestricted = Principal(identity: .anyClient, permissions: .all)

    /// Whether a hello may open or resume the durable session `clientID`.
    public func mayUse(clientID: String) -> Bool {
        switch identity {
        case .anyClient: true
        case .client(let subject): subject == clientID
        }
    }
}
