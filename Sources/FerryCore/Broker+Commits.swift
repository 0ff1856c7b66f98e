import FerryProtocol
import FerryStore
import Logging
import Metrics
import Synchronization

/// What the committer thread hands back: each commit's outcome mirrored into memory, a failed
/// commit's deferred writes kept for the next one, and the deferred writes each commit carries.
extension Broker {
    /// Mirrors a commit into the topics and wakes their subscribers.
    func committed(_ operations: [StoreOperation], _ result: CommitResult) {
        var appended: [String: [(version: UInt64, frame: Frame)]] = [:]
        // Runs of one topic are collected before touching the dictionary (one hash per run).
        var run: (topic: String, messages: [(version: UInt64, frame: Frame)])?
        var published: UInt64 = 0
        var refused = 0
        for (operation, outcome) in zip(operations, result.outcomes) {
            guard case .publish(let message) = operation else { continue }
            if case .failed = outcome { refused += 1 }
            guard case .published(let version, let timestamp, false) = outcome else { continue }
            let frame = Self.messageFrame(
                topic: message.topic, version: version, timestamp: timestamp, kind: message.kind, payload: message.payload,
                headers: message.headers)
            if run?.topic != message.topic {
                if let run { appended[run.topic, default: []] += run.messages }
                run = (message.topic, [])
            }
            run?.messages.append((version, frame))
            published += 1
        }
        if let run { appended[run.topic, default: []] += run.messages }
        var appeared: [String] = []
        // Under the broker's lock, once for every topic of the commit (a commit of a thousand
        // topics is not a thousand lock handovers with the connections' threads), so no topic is
        // forgotten before it holds its record.
        let changed = state.withLock { state -> [(name: String, subscribers: [Connection])] in
            result.topics.map { name, record in
                guard let record else {
                    guard let topic = state.topics[name] else { return (name, []) }
                    defer { forgetIfUnheld(topic, in: &state) }
                    return (name, topic.deleted())
                }
                let topic = topic(named: name, in: &state)
                if !state.patterns.isEmpty, topic.record == nil { appeared.append(name) }
                return (name, topic.committed(record: record, appended: appended[name] ?? [], cacheLimit: configuration.cachedMessagesPerTopic))
            }
        }
        for (name, subscribers) in changed {
            for connection in subscribers { connection.topicChanged(name) }
        }
        topicsAppeared(appeared)
        if published > 0 {
            state.withLock { $0.published += published }
            metrics.published.increment(by: Int64(published))
        }
        for outcome in result.outcomes {
            guard case .expired(let clientIDs) = outcome else { continue }
            for clientID in clientIDs { logger.info("durable session expired", metadata: ["ferry.client_id": "\(clientID)"]) }
        }
        if refused > 0 { metrics.refusedForSpace(refused) }
        if refused > 0 || published > 0 { noteSpace(refusing: refused > 0) }
        metrics.commits.increment()
    }

    /// Logs when publishes start and stop being refused for want of space.
    func noteSpace(refusing: Bool) {
        let changed = state.withLock { state in
            defer { state.refusingPublishes = refusing }
            return state.refusingPublishes != refusing
        }
        guard changed else { return }
        if refusing {
            logger.warning("the store is full: publishes are refused with unavailable until space is freed (delete or trim topics)")
        } else {
            logger.notice("the store has room again: publishes are accepted")
        }
    }

    /// A whole commit failed: nothing of it is stored. Its jobs were answered `unavailable`; the
    /// deferred acks and sessions it carried are marked for the next commit again, and deletes of
    /// sessions and subscriptions are retried with the next flush, so a passing failure loses none
    /// of them (and a lasting one does not spin the committer).
    func commitFailed(_ operations: [StoreOperation], _ error: StoreError) {
        metrics.storeFailed(.commit, error, ["ferry.operations": "\(operations.count)"])
        state.withLock { state in
            for operation in operations {
                switch operation {
                case .putSession(let record):
                    if state.dirtySessions[record.clientID] == nil, let session = state.sessions[record.clientID] {
                        state.dirtySessions[record.clientID] = session.record
                    }
                case .putSubscription(let record), .raiseAckFloor(let record):
                    let key = Self.key(record.clientID, record.topic)
                    if state.dirtySubscriptions[key] == nil, let current = state.sessions[record.clientID]?.subscriptions[record.topic] {
                        state.dirtySubscriptions[key] = current
                    }
                case .deleteSession, .deleteSubscription:
                    state.failedDeletes.append(operation)
                case .publish, .ensureTopic, .deleteTopic, .trimTopic, .renewEpoch, .sweep, .expireSessions, .putTopicConfig,
                    .deleteTopicConfig:
                    // Answered to their requester, or redone by the next sweep.
                    break
                }
            }
        }
    }

    /// Deferred writes for the next commit: lazy acks, sweeps, expired sessions.
    func maintenance(now: Timestamp, busy: Bool) -> [StoreOperation] {
        state.withLock { state in
            var operations: [StoreOperation] = []
            var sweeping: [StoreOperation] = []
            if now >= state.lastSweep + configuration.sweepInterval {
                state.lastSweep = now
                sweeping.append(.sweep)
            }
            if now >= state.lastSessionSweep + configuration.sessionSweepInterval {
                state.lastSessionSweep = now
                // A connected session is seen now: stored so in the same commit, before the expiry.
                for (clientID, session) in state.sessions where session.owner != nil {
                    state.sessions[clientID]?.record.lastSeen = now
                    state.dirtySessions[clientID] = state.sessions[clientID]?.record
                }
                state.sessions = state.sessions.filter { $0.value.owner != nil || $0.value.record.lastSeen + configuration.sessionTTL >= now }
                if now > configuration.sessionTTL { sweeping.append(.expireSessions(lastSeenBefore: now - configuration.sessionTTL)) }
            }
            if busy || !sweeping.isEmpty || now >= state.lastFlush + configuration.ackFlushInterval {
                operations += state.dirtySessions.values.map { .putSession($0) }
                operations += state.dirtySubscriptions.values.map { .raiseAckFloor($0) }
                operations += takeGroupTrims(&state)
                // Only those memory still agrees with: a session or subscription made since stays.
                operations += state.failedDeletes.filter { operation in
                    switch operation {
                    case .deleteSession(let clientID): state.sessions[clientID] == nil
                    case .deleteSubscription(let clientID, let topic): state.sessions[clientID]?.subscriptions[topic] == nil
                    default: false
                    }
                }
                state.failedDeletes.removeAll()
                state.dirtySessions.removeAll()
                state.dirtySubscriptions.removeAll()
                state.lastFlush = now
            }
            return operations + sweeping
        }
    }
}
