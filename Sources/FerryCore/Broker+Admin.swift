import FerryProtocol
import FerryStore
import Foundation
import Logging
import Metrics
import Synchronization

extension Broker {
    // MARK: - Reads and administration

    /// `GET /v1/topics/{topic}`; nil when the topic does not exist. A topic exists while it has
    /// a stored log or a connected subscriber: a name only an ephemeral subscriber holds shows as
    /// empty (head 0) with the epoch its `subscribed` frame gave.
    public func topicInfo(_ name: String) async throws(ProtocolError) -> TopicInfo? {
        guard let topic = try await topicView(name) else { return nil }
        return info(of: topic, durable: try await subscriptionViews(of: name))
    }

    private func info(of topic: TopicView, durable: [(record: SubscriptionRecord, connected: Bool)]) -> TopicInfo {
        let ephemeral = max(0, topic.connected - durable.filter(\.connected).count)
        let log = topic.log
        return TopicInfo(
            topic: topic.name, epoch: log.epoch, first: log.first, head: log.head, messages: log.messages, bytes: log.bytes,
            subscribers: durable.count + ephemeral, config: configInfo(for: topic.name))
    }

    /// Every existing topic, by name, as the admin API lists them.
    public func topicInfos() async throws(ProtocolError) -> [TopicInfo] {
        let topics = try await topicViews()
        let sessions = try await sessionViews()
        var infos: [TopicInfo] = []
        for name in topics.keys.sorted() {
            guard let topic = topics[name] else { continue }
            infos.append(await adminInfo(of: topic, durable: Self.durableSubscriptions(of: name, in: sessions), listingSubscriptions: false))
        }
        return infos
    }

    /// Stored messages of `topic` after version `after`; nil when the topic does not exist.
    public func messages(topic name: String, after: UInt64, limit: Int) async throws(ProtocolError)
        -> (epoch: String, messages: [StoredMessage])?
    {
        guard let topic = try await topicView(name) else { return nil }
        guard let record = topic.record else { return (topic.epoch, []) }
        let messages = try await readForView("messages of \(name) after \(after)") { store throws(StoreError) in
            try store.messages(topicID: record.id, after: after, limit: limit)
        }
        return (record.epoch, messages)
    }

    /// Deletes a topic's log; subscribers get `reset` and a later publish starts at version 1
    /// with a new epoch. Returns false when the topic has no log.
    public func deleteTopic(_ name: String) async throws(ProtocolError) -> Bool {
        guard try await topicView(name)?.record != nil else { return false }
        let result = await commit([.deleteTopic(name)])
        if case .failure(let error) = result { throw ProtocolError(.unavailable, "\(error)") }
        return true
    }

    func commit(_ operations: [StoreOperation]) async -> Result<ArraySlice<CommitResult.Outcome>, StoreError> {
        await withCheckedContinuation { continuation in
            committer.submit(operations) { continuation.resume(returning: $0) }
        }
    }

    /// `GET /v1/admin/clients`: the durable sessions whose client id contains `search` (letters
    /// in any case; empty matches every one), in client id order from the first after `after`,
    /// at most `limit` of them (nil: all), with how many match in all and, when more follow, the
    /// `after` of the next page. A cursor need not name a session that still exists.
    public func clientList(search: String = "", after: String? = nil, limit: Int? = nil) async throws(ProtocolError) -> ClientList {
        // Client ids are ASCII (Names.isValidClientID), so lowercasing compares them caselessly.
        let needle = search.lowercased()
        let matching = try await sessionViews().values
            .filter { needle.isEmpty || $0.record.clientID.lowercased().contains(needle) }
            .sorted { $0.record.clientID < $1.record.clientID }
        let rest = matching.drop { session in after.map { session.record.clientID <= $0 } ?? false }
        let page = rest.prefix(limit ?? rest.count).map {
            ClientSummary(clientID: $0.record.clientID, connected: $0.connected, subscriptions: $0.subscriptions.count, lastSeen: $0.record.lastSeen)
        }
        let next = page.count < rest.count ? page.last?.clientID : nil
        return ClientList(clients: page, total: matching.count, next: next)
    }

    public func clientDetail(_ clientID: String) async throws(ProtocolError) -> ClientDetail? {
        guard let session = try await sessionView(clientID) else { return nil }
        let now = configuration.now()
        var subscriptions: [SubscriptionInfo] = []
        var patterns: [PatternInfo] = []
        for record in session.subscriptions.values.sorted(by: { $0.topic < $1.topic }) {
            if record.isPattern {
                let topics = session.subscriptions.values.count { $0.pattern == record.topic }
                patterns.append(PatternInfo(pattern: record.topic, window: record.window, topics: topics))
            } else {
                subscriptions.append(await subscriptionInfo(record, in: try await topicView(record.topic), now: now))
            }
        }
        return ClientDetail(
            clientID: clientID, connected: session.connected, createdAt: session.record.createdAt, lastSeen: session.record.lastSeen,
            subscriptions: subscriptions, patterns: patterns, lastResume: session.lastResume)
    }

    private func subscriptionInfo(_ record: SubscriptionRecord, in topic: TopicView?, now: Timestamp) async -> SubscriptionInfo {
        let standing = await standing(of: record, in: topic?.log, now: now, withAge: true)
        return SubscriptionInfo(
            topic: record.topic, epoch: record.epoch, ackFloor: record.ackFloor, head: standing.head, lag: standing.lag,
            window: record.window, oldestUnackedAgeMs: standing.oldestUnackedAge, pattern: record.pattern)
    }

    /// Where a durable subscription stands in its topic's current log: the head (0 when its epoch
    /// is gone), the lag, and `withAge`, the age of the oldest stored message it has not acked
    /// (a store read).
    private func standing(of record: SubscriptionRecord, in log: TopicRecord?, now: Timestamp, withAge: Bool) async
        -> (head: UInt64, lag: UInt64, oldestUnackedAge: UInt64?)
    {
        guard let log, log.epoch == record.epoch else { return (0, 0, nil) }
        guard log.head > record.ackFloor else { return (log.head, 0, nil) }
        let oldest = max(record.ackFloor + 1, log.first)
        var stamp: Timestamp?
        if withAge, log.messages > 0, oldest <= log.head {
            switch await reader.read({ store throws(StoreError) in try store.messages(topicID: log.id, after: oldest - 1, limit: 1) }) {
            case .success(let messages):
                stamp = messages.first?.timestamp
            case .failure(let error):
                // Only an age for operators depends on it: shown as unknown, logged and counted.
                metrics.storeFailed(.read, error, ["ferry.topic": "\(record.topic)", "ferry.version": "\(oldest)"])
            }
        }
        return (log.head, log.head - record.ackFloor, stamp.map { now > $0 ? now - $0 : 0 })
    }

    /// The durable subscriptions of topic `name` among `sessions` (all of them, read once for a
    /// listing of every topic), with whether their client is connected.
    private static func durableSubscriptions(of name: String, in sessions: [String: SessionView])
        -> [(record: SubscriptionRecord, connected: Bool)]
    {
        sessions.values.compactMap { session in session.subscriptions[name].map { ($0, session.connected) } }
            .sorted { $0.record.clientID < $1.record.clientID }
    }

    /// A topic as the admin API shows it: with connected subscriptions and the largest lag, and
    /// with `listingSubscriptions`, each durable subscription. Nil when the topic does not exist.
    public func adminTopicInfo(_ name: String, listingSubscriptions: Bool) async throws(ProtocolError) -> TopicInfo? {
        guard let topic = try await topicView(name) else { return nil }
        return await adminInfo(of: topic, durable: try await subscriptionViews(of: name), listingSubscriptions: listingSubscriptions)
    }

    private func adminInfo(
        of topic: TopicView, durable: [(record: SubscriptionRecord, connected: Bool)], listingSubscriptions: Bool
    ) async -> TopicInfo {
        var info = info(of: topic, durable: durable)
        let now = configuration.now()
        var subscriptions: [TopicSubscription] = []
        for entry in durable {
            let standing = await standing(of: entry.record, in: topic.log, now: now, withAge: listingSubscriptions)
            subscriptions.append(
                TopicSubscription(
                    clientID: entry.record.clientID, connected: entry.connected, ackFloor: entry.record.ackFloor, lag: standing.lag,
                    oldestUnackedAgeMs: standing.oldestUnackedAge))
        }
        info.connected = topic.connected
        info.lag = subscriptions.map(\.lag).max() ?? 0
        if listingSubscriptions { info.durableSubscriptions = subscriptions }
        return info
    }

    /// What a trim did, or the durable subscribers it would cut when not forced.
    public enum TrimOutcome: Sendable {
        case trimmed(TrimResult)
        case refused([TrimLoss])
    }

    /// Deletes the messages of topic `name` with versions ≤ `through`. Unless `force`, refuses
    /// when a durable subscriber has not acked some of them. Subscribers behind the new first
    /// version get `gap`, as after retention.
    public func trimTopic(_ name: String, through: UInt64, force: Bool) async throws(ProtocolError) -> TrimOutcome {
        guard let before = try await topicView(name)?.record else { throw ProtocolError(.notFound, "no topic \(name)") }
        guard through <= before.head else {
            throw ProtocolError(.badFrame, "to (\(through)) is above the head of \(name) (\(before.head))")
        }
        if !force {
            let losses = try await subscriptionViews(of: name).compactMap { entry -> TrimLoss? in
                let from = max(entry.record.ackFloor + 1, before.first)
                guard entry.record.epoch == before.epoch, from <= through else { return nil }
                return TrimLoss(clientID: entry.record.clientID, ackFloor: entry.record.ackFloor, from: from, to: through)
            }
            if !losses.isEmpty { return .refused(losses) }
        }
        if case .failure(let error) = await commit([.trimTopic(name, through: through)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        let after = existingTopic(name)?.record ?? before
        logger.notice(
            "topic trimmed", metadata: ["ferry.topic": "\(name)", "ferry.through": "\(through)", "ferry.forced": "\(force)"])
        return .trimmed(
            TrimResult(
                topic: name, first: after.first, head: after.head, messages: after.messages,
                removed: through >= before.first ? through - before.first + 1 : 0))
    }

    /// Sets the ack floor of `clientID`'s subscription to `topic` to `version`, in the topic's
    /// current epoch, so the client is sent everything after it when it resumes. A connected
    /// client is refused (`session_conflict`): its connection holds the position in flight.
    public func rewindClient(_ clientID: String, topic name: String, to version: UInt64) async throws(ProtocolError) -> SubscriptionInfo {
        guard let session = try await sessionView(clientID) else { throw ProtocolError(.notFound, "no client \(clientID)") }
        guard var record = session.subscriptions[name], let topic = try await topicView(name) else {
            throw ProtocolError(.notFound, "client \(clientID) has no subscription to \(name)")
        }
        let log = topic.log
        guard version <= log.head else {
            throw ProtocolError(.badFrame, "to (\(version)) is above the head of \(name) (\(log.head))")
        }
        record.epoch = log.epoch
        record.ackFloor = version
        let conflict = state.withLock { state -> Bool in
            guard let held = state.sessions[clientID] else { return false }
            guard held.owner == nil else { return true }
            state.sessions[clientID]?.subscriptions[name] = record
            state.dirtySubscriptions[Self.key(clientID, name)] = nil
            return false
        }
        if conflict || session.connected {
            throw ProtocolError(.sessionConflict, "client \(clientID) is connected: rewind it while it is away")
        }
        if case .failure(let error) = await commit([.putSubscription(record)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        logger.notice(
            "subscription rewound", metadata: ["ferry.client_id": "\(clientID)", "ferry.topic": "\(name)", "ferry.to": "\(version)"])
        return await subscriptionInfo(record, in: topic, now: configuration.now())
    }

    /// Deletes a durable session; its connection is closed with 4010. False when unknown.
    public func deleteClient(_ clientID: String) async throws(ProtocolError) -> Bool {
        let removed = state.withLock { state -> DurableSession? in
            dropDeferredWrites(of: clientID, in: &state)
            return state.sessions.removeValue(forKey: clientID)
        }
        if removed == nil, try await sessionView(clientID) == nil { return false }
        removed?.owner?.close(.sessionDeleted, reason: "session deleted by an operator")
        if case .failure(let error) = await commit([.deleteSession(clientID)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        // A broker sharing the store that holds its connection closes it too.
        store.announce(.deleted(clientID))
        return true
    }

    public func stats() async throws(ProtocolError) -> BrokerStats {
        let topics = try await topicViews().values.filter { $0.record != nil }.count
        let sessions = try await sessionViews().count
        let usage = try await readForView("usage") { store throws(StoreError) in store.usage() }
        let nodes = try await readForView("nodes") { store throws(StoreError) in try store.nodes() }.map {
            NodeStats(id: $0.id, name: $0.name, connectedSince: $0.startedAt, isThisBroker: $0.isThisBroker)
        }
        return state.withLock { state in
            BrokerStats(
                version: Self.version, uptimeSeconds: (configuration.now() - startedAt) / 1000, connections: state.connections,
                topics: topics, sessions: sessions, published: state.published, delivered: state.delivered, dataBytes: usage.usedBytes,
                mapSize: usage.mapSize, sync: usage.syncOnCommit ? "full" : "none", nodes: nodes.isEmpty ? nil : nodes)
        }
    }

    /// The broker's state for `/metrics`: one read of the store's topics and sessions per scrape,
    /// nothing on the publish or delivery path.
    public func metricsSnapshot() async throws(ProtocolError) -> MetricsSnapshot {
        let topics = try await topicViews()
        let sessions = try await sessionViews()
        let usage = try await readForView("usage") { store throws(StoreError) in store.usage() }
        return MetricsSnapshot(
            topics: topics.values.compactMap(\.record), topicsInMemory: state.withLock { $0.topics.count },
            sessions: sessions.values.map { ($0.record.clientID, Array($0.subscriptions.values)) }, usage: usage)
    }
}
