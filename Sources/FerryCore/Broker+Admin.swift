import FerryProtocol
import FerryStore
import Foundation
import Logging
import Metrics
import Synchronization

extension Broker {
    // MARK: - Reads and administration

    /// `GET /v1/topics/{topic}`; nil when the topic does not exist.
    /// A topic exists while it has a stored log or a connected subscriber: a name only an ephemeral
    /// subscriber holds shows as empty (head 0) with the epoch its `subscribed` frame gave.
    public func topicInfo(_ name: String) -> TopicInfo? {
        let (topic, durable) = state.withLock { state in
            (state.topics[name], state.sessions.values.filter { $0.subscriptions[name] != nil })
        }
        guard let topic, let log = Self.visibleLog(of: topic) else { return nil }
        let connectedDurable = durable.filter { $0.owner != nil }.count
        let ephemeral = max(0, topic.subscriberCount - connectedDurable)
        return TopicInfo(
            topic: name, epoch: log.epoch, first: log.first, head: log.head, messages: log.messages,
            bytes: log.bytes, subscribers: durable.count + ephemeral)
    }

    /// The stored record of `topic`, or an empty one for a topic held only by subscribers; nil for
    /// a topic registered only while a commit creates it.
    private static func visibleLog(of topic: Topic) -> TopicRecord? {
        if let record = topic.record { return record }
        guard topic.subscriberCount > 0 else { return nil }
        return TopicRecord(name: topic.name, id: 0, epoch: topic.position.epoch)
    }

    /// Every existing topic, by name, as the admin API lists them.
    public func topicInfos() async -> [TopicInfo] {
        let names = state.withLock { Array($0.topics.keys) }
        var infos: [TopicInfo] = []
        for name in names.sorted() {
            if let info = await adminTopicInfo(name, listingSubscriptions: false) { infos.append(info) }
        }
        return infos
    }

    /// Stored messages of `topic` after version `after`; nil when the topic does not exist.
    public func messages(topic name: String, after: UInt64, limit: Int) async throws(ProtocolError)
        -> (epoch: String, messages: [StoredMessage])?
    {
        guard let topic = existingTopic(name) else { return nil }
        guard let record = topic.record else { return Self.visibleLog(of: topic).map { ($0.epoch, []) } }
        switch await reader.read({ store throws(StoreError) in try store.messages(topicID: record.id, after: after, limit: limit) }) {
        case .success(let messages):
            return (record.epoch, messages)
        case .failure(let error):
            metrics.storeFailed(.read, error, ["ferry.topic": "\(name)", "ferry.after": "\(after)"])
            throw ProtocolError(.unavailable, "\(error)")
        }
    }

    /// Deletes a topic's log; subscribers get `reset` and a later publish starts at version 1
    /// with a new epoch. Returns false when the topic does not exist.
    public func deleteTopic(_ name: String) async throws(ProtocolError) -> Bool {
        guard state.withLock({ $0.topics[name] })?.record != nil else { return false }
        let result = await commit([.deleteTopic(name)])
        if case .failure(let error) = result { throw ProtocolError(.unavailable, "\(error)") }
        return true
    }

    private func commit(_ operations: [StoreOperation]) async -> Result<ArraySlice<CommitResult.Outcome>, StoreError> {
        await withCheckedContinuation { continuation in
            committer.submit(operations) { continuation.resume(returning: $0) }
        }
    }

    public func clientSummaries() -> [ClientSummary] {
        state.withLock { state in
            state.sessions.values.map {
                ClientSummary(
                    clientID: $0.record.clientID, connected: $0.owner != nil, subscriptions: $0.subscriptions.count,
                    lastSeen: $0.record.lastSeen)
            }
        }.sorted { $0.clientID < $1.clientID }
    }

    public func clientDetail(_ clientID: String) async -> ClientDetail? {
        guard let session = state.withLock({ $0.sessions[clientID] }) else { return nil }
        let now = configuration.now()
        var subscriptions: [SubscriptionInfo] = []
        for record in session.subscriptions.values.sorted(by: { $0.topic < $1.topic }) {
            subscriptions.append(await subscriptionInfo(record, now: now))
        }
        return ClientDetail(
            clientID: clientID, connected: session.owner != nil, createdAt: session.record.createdAt, lastSeen: session.record.lastSeen,
            subscriptions: subscriptions, lastResume: session.lastResume)
    }

    private func subscriptionInfo(_ record: SubscriptionRecord, now: Timestamp) async -> SubscriptionInfo {
        let standing = await standing(of: record, now: now, withAge: true)
        return SubscriptionInfo(
            topic: record.topic, epoch: record.epoch, ackFloor: record.ackFloor, head: standing.head, lag: standing.lag,
            window: record.window, oldestUnackedAgeMs: standing.oldestUnackedAge)
    }

    /// Where a durable subscription stands in its topic's current log: the head (0 when its epoch
    /// is gone), the lag, and `withAge`, the age of the oldest stored message it has not acked
    /// (a store read).
    private func standing(of record: SubscriptionRecord, now: Timestamp, withAge: Bool) async
        -> (head: UInt64, lag: UInt64, oldestUnackedAge: UInt64?)
    {
        guard let position = existingTopic(record.topic)?.position, position.epoch == record.epoch else { return (0, 0, nil) }
        guard position.head > record.ackFloor else { return (position.head, 0, nil) }
        let oldest = max(record.ackFloor + 1, position.first)
        var stamp: Timestamp?
        if withAge, let id = position.storeID, oldest <= position.head {
            switch await reader.read({ store throws(StoreError) in try store.messages(topicID: id, after: oldest - 1, limit: 1) }) {
            case .success(let messages):
                stamp = messages.first?.timestamp
            case .failure(let error):
                // Only an age for operators depends on it: shown as unknown, logged and counted.
                metrics.storeFailed(.read, error, ["ferry.topic": "\(record.topic)", "ferry.version": "\(oldest)"])
            }
        }
        return (position.head, position.head - record.ackFloor, stamp.map { now > $0 ? now - $0 : 0 })
    }

    /// The durable subscriptions of topic `name`, with whether their client is connected.
    private func durableSubscriptions(of name: String) -> [(record: SubscriptionRecord, connected: Bool)] {
        state.withLock { state in
            state.sessions.values.compactMap { session in session.subscriptions[name].map { ($0, session.owner != nil) } }
        }.sorted { $0.record.clientID < $1.record.clientID }
    }

    /// A topic as the admin API shows it: with connected subscriptions and the largest lag, and
    /// with `listingSubscriptions`, each durable subscription. Nil when the topic does not exist.
    public func adminTopicInfo(_ name: String, listingSubscriptions: Bool) async -> TopicInfo? {
        guard var info = topicInfo(name) else { return nil }
        let now = configuration.now()
        var subscriptions: [TopicSubscription] = []
        for entry in durableSubscriptions(of: name) {
            let standing = await standing(of: entry.record, now: now, withAge: listingSubscriptions)
            subscriptions.append(
                TopicSubscription(
                    clientID: entry.record.clientID, connected: entry.connected, ackFloor: entry.record.ackFloor, lag: standing.lag,
                    oldestUnackedAgeMs: standing.oldestUnackedAge))
        }
        info.connected = existingTopic(name)?.subscriberCount ?? 0
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
        guard let before = existingTopic(name)?.record else { throw ProtocolError(.notFound, "no topic \(name)") }
        guard through <= before.head else {
            throw ProtocolError(.badFrame, "to (\(through)) is above the head of \(name) (\(before.head))")
        }
        if !force {
            let losses = durableSubscriptions(of: name).compactMap { entry -> TrimLoss? in
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
        let position = existingTopic(name)?.position
        let outcome: Result<SubscriptionRecord, ProtocolError> = state.withLock { state in
            guard let session = state.sessions[clientID] else { return .failure(ProtocolError(.notFound, "no client \(clientID)")) }
            // A durable subscription always has its topic in memory.
            guard var record = session.subscriptions[name], let position else {
                return .failure(ProtocolError(.notFound, "client \(clientID) has no subscription to \(name)"))
            }
            guard version <= position.head else {
                return .failure(ProtocolError(.badFrame, "to (\(version)) is above the head of \(name) (\(position.head))"))
            }
            guard session.owner == nil else {
                return .failure(ProtocolError(.sessionConflict, "client \(clientID) is connected: rewind it while it is away"))
            }
            record.epoch = position.epoch
            record.ackFloor = version
            state.sessions[clientID]?.subscriptions[name] = record
            state.dirtySubscriptions[Self.key(clientID, name)] = nil
            return .success(record)
        }
        let record = try outcome.get()
        if case .failure(let error) = await commit([.putSubscription(record)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        logger.notice(
            "subscription rewound", metadata: ["ferry.client_id": "\(clientID)", "ferry.topic": "\(name)", "ferry.to": "\(version)"])
        return await subscriptionInfo(record, now: configuration.now())
    }

    /// Deletes a durable session; its connection is closed with 4010. False when unknown.
    public func deleteClient(_ clientID: String) async throws(ProtocolError) -> Bool {
        guard let removed = state.withLock({ state -> DurableSession? in
            defer {
                state.sessions[clientID] = nil
                state.dirtySessions[clientID] = nil
                state.dirtySubscriptions = state.dirtySubscriptions.filter { $0.value.clientID != clientID }
            }
            return state.sessions[clientID]
        }) else { return false }
        removed.owner?.close(.sessionDeleted, reason: "session deleted by an operator")
        if case .failure(let error) = await commit([.deleteSession(clientID)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        return true
    }

    public func stats() -> BrokerStats {
        let usage = store.usage()
        return state.withLock { state in
            BrokerStats(
                version: Self.version, uptimeSeconds: (configuration.now() - startedAt) / 1000, connections: state.connections,
                topics: state.topics.values.filter { $0.record != nil }.count, sessions: state.sessions.count,
                published: state.published, delivered: state.delivered, dataBytes: usage.usedBytes, mapSize: usage.mapSize,
                sync: usage.syncOnCommit ? "full" : "none")
        }
    }

    /// The broker's state for `/metrics`, from memory only (no store reads), so a scrape costs one
    /// pass over topics and sessions and nothing on the publish or delivery path.
    public func metricsSnapshot() -> MetricsSnapshot {
        let (topics, sessions) = state.withLock { state in
            (Array(state.topics.values), state.sessions.values.map { ($0.record.clientID, Array($0.subscriptions.values)) })
        }
        return MetricsSnapshot(topics: topics, sessions: sessions, usage: store.usage())
    }

    /// A compacted hot copy of the store in the empty folder `path`; returns its size in bytes.
    /// Deferred acks and sessions are committed first, so the copy holds every ack seen so far.
    public func backup(to path: String) async throws(ProtocolError) -> Int {
        // An empty job makes the committer flush what maintenance holds back.
        if case .failure(let error) = await commit([]) { throw ProtocolError(.unavailable, "\(error)") }
        let store = self.store
        let result: Result<Int, StoreError> = await withCheckedContinuation { continuation in
            // The copy blocks for as long as it takes: keep it off the cooperative pool.
            Thread {
                continuation.resume(returning: Result { () throws(StoreError) -> Int in try store.backup(to: path) })
            }.start()
        }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let error): throw ProtocolError(.unavailable, "\(error)")
        }
    }
}
