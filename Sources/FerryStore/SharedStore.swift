/// What several brokers sharing one store (cluster mode) need of it beyond reads and commits:
/// one owner per durable session, notices between brokers, and the list of brokers. An engine
/// only one broker uses (LMDB) takes the defaults below: every claim is uncontested, notices
/// have nobody to reach, and the broker is alone.

/// The outcome of ``MessageStore/claimSession(_:)``.
public struct SessionClaim: Sendable, Equatable {
    /// The session as stored after the claim, with its subscriptions. Nil when there is none and
    /// the engine stores new sessions only with a commit (LMDB), and when the owner was asked.
    public var stored: StoredSession?
    /// Counts the session's claims across brokers: a notice about an older claim is stale.
    public var generation: UInt64
    public var handover: Handover

    /// What the previous owner of the session means for this broker.
    public enum Handover: Sendable, Equatable {
        /// No other broker has claimed the session since this one did: what this broker holds of
        /// it in memory, if anything, is newer than `stored`.
        case memoryIsNewest
        /// The session is new, or the broker that claimed it last is gone: `stored` is the newest
        /// state there is, and whatever this broker holds of it is stale.
        case storeIsNewest
        /// Another broker that is alive holds it and has been asked (``StoreChange/sessionWanted(_:generation:)``
        /// there) to close its connection, commit its acks and announce ``SessionNotice/released(_:generation:)``.
        /// `stored` is nil: read the session after that notice, or after a deadline if it never comes.
        case ownerAsked
    }

    public init(stored: StoredSession?, generation: UInt64, handover: Handover) {
        self.stored = stored
        self.generation = generation
        self.handover = handover
    }
}

/// What a broker tells the brokers sharing its store about a session (``MessageStore/announce(_:)``).
public enum SessionNotice: Sendable, Equatable {
    /// This broker let the session go for claim `generation`: its connection is closed and its
    /// acks are committed.
    case released(String, generation: UInt64)
    /// An operator deleted the session: a broker holding its connection closes it with 4010.
    case deleted(String)
}

/// One broker sharing the store (``MessageStore/nodes()``).
public struct NodeInfo: Sendable, Equatable {
    /// Random, made when the broker opened the store.
    public var id: String
    /// What the broker calls itself (host and port), for operators.
    public var name: String
    public var startedAt: Timestamp
    /// True for the broker that asked.
    public var isThisBroker: Bool

    public init(id: String, name: String, startedAt: Timestamp, isThisBroker: Bool) {
        self.id = id
        self.name = name
        self.startedAt = startedAt
        self.isThisBroker = isThisBroker
    }
}

extension MessageStore {
    /// Uncontested: one broker owns every session of a store only it uses.
    public func claimSession(_ proposed: SessionRecord) throws(StoreError) -> SessionClaim {
        SessionClaim(stored: try session(clientID: proposed.clientID), generation: 0, handover: .memoryIsNewest)
    }

    /// Nobody else to tell.
    public func announce(_ notice: SessionNotice) {}

    /// Generation 0 for each session that exists: nobody else claims one.
    public func sessionGenerations(_ clientIDs: [String]) throws(StoreError) -> [String: UInt64] {
        var generations: [String: UInt64] = [:]
        for clientID in clientIDs where try session(clientID: clientID) != nil { generations[clientID] = 0 }
        return generations
    }

    /// No other broker; the caller knows itself.
    public func nodes() throws(StoreError) -> [NodeInfo] { [] }

    /// The only broker serves every queue group.
    public func leaseQueueGroup(_ group: String, of topic: String) throws(StoreError) -> Bool { true }

    public func releaseQueueGroup(_ group: String, of topic: String) throws(StoreError) {}
}
