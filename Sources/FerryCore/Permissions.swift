import FerryStore

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
