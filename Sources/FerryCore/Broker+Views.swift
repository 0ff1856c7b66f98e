import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// What the admin API and the read routes see: the store's records, with what this broker holds
/// in memory in their place (its acks, last-seen times and heads are at least as new as the
/// store's, which gets them at the next flush). The broker keeps in memory only the sessions and
/// topics in use, so listings read the store.
extension Broker {
    /// A durable session as an operator sees it.
    struct SessionView: Sendable {
        var record: SessionRecord
        var subscriptions: [String: SubscriptionRecord]
        var connected: Bool
        /// What its last hello did, if it said one since this broker started.
        var lastResume: ResumeInfo?
    }

    /// A topic as an operator sees it.
    struct TopicView: Sendable {
        var name: String
        /// Nil for a name only connected subscribers hold: no log is stored.
        var record: TopicRecord?
        /// The log's epoch, or the one a subscriber of a name with no log was given.
        var epoch: String
        /// Connected subscriptions on this broker, durable and ephemeral.
        var connected: Int

        /// The stored log, or an empty one (head 0) for a name only subscribers hold.
        var log: TopicRecord { record ?? TopicRecord(name: name, id: 0, epoch: epoch) }
    }

    /// Runs a store read for an operator's request; a failure is logged, counted and `unavailable`.
    func readForView<T: Sendable>(
        _ what: String, _ body: @escaping @Sendable (any MessageStore) throws(StoreError) -> T
    ) async throws(ProtocolError) -> T {
        switch await reader.read(body) {
        case .success(let value):
            return value
        case .failure(let error):
            metrics.storeFailed(.read, error, ["ferry.read": "\(what)"])
            throw ProtocolError(.unavailable, "cannot read \(what): \(error)")
        }
    }

    private func view(of session: DurableSession) -> SessionView {
        SessionView(record: session.record, subscriptions: session.subscriptions, connected: session.owner != nil, lastResume: session.lastResume)
    }

    private static func view(of stored: StoredSession) -> SessionView {
        SessionView(
            record: stored.record, subscriptions: Dictionary(stored.subscriptions.map { ($0.topic, $0) }) { $1 }, connected: false,
            lastResume: nil)
    }

    // Memory's copy of a session is the newer whenever this broker holds it: its commits may be
    // in flight, and another broker that claims the session makes this one let it go
    // (``sessionWanted(_:generation:)``). Other sessions are as stored.

    /// Every durable session, by client id.
    func sessionViews() async throws(ProtocolError) -> [String: SessionView] {
        let stored = try await readForView("sessions") { store throws(StoreError) in try store.sessions() }
        var views = Dictionary(stored.map { ($0.record.clientID, Self.view(of: $0)) }) { $1 }
        state.withLock { state in
            for (clientID, session) in state.sessions { views[clientID] = view(of: session) }
        }
        return views
    }

    /// The durable subscriptions to `topic`, with whether their client is connected here, by
    /// client id: the store's, with those of the sessions memory holds over them.
    func subscriptionViews(of topic: String) async throws(ProtocolError) -> [(record: SubscriptionRecord, connected: Bool)] {
        let stored = try await readForView("subscriptions to \(topic)") { store throws(StoreError) in try store.subscriptions(topic: topic) }
        var byClient = Dictionary(stored.map { ($0.clientID, (record: $0, connected: false)) }) { $1 }
        state.withLock { state in
            for (clientID, session) in state.sessions {
                byClient[clientID] = session.subscriptions[topic].map { ($0, session.owner != nil) }
            }
        }
        return byClient.values.sorted { $0.record.clientID < $1.record.clientID }
    }

    /// One durable session, or nil when there is none.
    func sessionView(_ clientID: String) async throws(ProtocolError) -> SessionView? {
        if let held = state.withLock({ $0.sessions[clientID] }) { return view(of: held) }
        let stored = try await readForView("session \(clientID)") { store throws(StoreError) in try store.session(clientID: clientID) }
        return stored.map(Self.view(of:))
    }

    /// One topic: its stored log (the store has every commit this broker mirrors, and those of
    /// other brokers), else a name only connected subscribers hold; nil when it has neither.
    func topicView(_ name: String) async throws(ProtocolError) -> TopicView? {
        let record = try await readForView("topic \(name)") { store throws(StoreError) in try store.topic(named: name) }
        return view(of: name, record: record, held: existingTopic(name))
    }

    /// Every topic with a log or a connected subscriber, by name.
    func topicViews() async throws(ProtocolError) -> [String: TopicView] {
        let stored = try await readForView("topics") { store throws(StoreError) in try store.topics() }
        let held = state.withLock { $0.topics }
        var views: [String: TopicView] = [:]
        for record in stored { views[record.name] = view(of: record.name, record: record, held: held[record.name]) }
        for (name, topic) in held where views[name] == nil {
            views[name] = view(of: name, record: nil, held: topic)
        }
        return views
    }

    private func view(of name: String, record: TopicRecord?, held: Topic?) -> TopicView? {
        let connected = held?.subscriberCount ?? 0
        if let record { return TopicView(name: name, record: record, epoch: record.epoch, connected: connected) }
        guard let held, connected > 0 else { return nil }
        return TopicView(name: name, record: nil, epoch: held.position.epoch, connected: connected)
    }
}
