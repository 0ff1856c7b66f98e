import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// Changes other brokers make to a shared store: each topic this broker holds is read once per
/// notice, record and new messages together, and handed to all its subscribers here through the
/// topic's cache, as a commit of its own would be.
extension Broker {
    /// What one read of a changed topic found.
    private struct Refresh: Sendable {
        var topic: Topic
        /// The topic's change count before the read.
        var seen: UInt64
        /// The log as this broker knew it before the read: a read cannot find less unless the
        /// database lost it (a log it knows now may be newer than the read).
        var known: TopicRecord?
        var record: TopicRecord?
        var messages: [StoredMessage]
    }

    func changed(_ change: StoreChange) {
        switch change {
        case .topics(let names): topicsChanged(names)
        case .everything:
            topicsChanged(nil)
            discoverTopics()
            renewQueueGroupLeases()
            checkHeldSessions()
            refreshTopicConfigs()
        case .sessionWanted(let clientID, let generation): sessionWanted(clientID, generation: generation)
        case .sessionReleased(let clientID, let generation): sessionReleased(clientID, generation: generation)
        case .sessionDeleted(let clientID): sessionDeletedElsewhere(clientID)
        case .topicConfigs: refreshTopicConfigs()
        }
    }

    /// `names` nil: every topic this broker holds.
    ///
    /// A topic already waiting for a read that has not started is not read again: that read
    /// takes the topic's state when it starts and the store's after, so it sees this change too.
    /// A burst of notices (a fast publisher on another broker) then costs a read per reader
    /// thread, not one per notice queued ahead of every other read (an HTTP view waited seconds).
    private func topicsChanged(_ names: [String]?) {
        let (queued, unknown) = state.withLock { state in
            let topics = names.map { $0.compactMap { state.topics[$0] } } ?? Array(state.topics.values)
            // Topics new here that a pattern subscriber here waits for.
            let unknown = state.patterns.isEmpty ? [] : (names ?? []).filter { state.topics[$0] == nil && state.patterns.matchesAny($0) }
            // Only subscribers here read a topic's memory; listings read the store.
            let queued = topics.filter { $0.subscriberCount > 0 && state.unreadChanges.insert(ObjectIdentifier($0)).inserted }
            return (queued, unknown)
        }
        topicsAppeared(unknown)
        guard !queued.isEmpty else { return }
        let cacheLimit = configuration.cachedMessagesPerTopic
        reader.read({ [self] store throws(StoreError) in
            // What this broker knew before the store is read (a change of its own since is newer).
            let held = state.withLock { state in
                queued.map { topic in
                    state.unreadChanges.remove(ObjectIdentifier(topic))
                    return (topic: topic, seen: topic.changeCount, known: topic.record, position: topic.position)
                }
            }
            let records = Dictionary(try store.topics(named: held.map(\.topic.name)).map { ($0.name, $0) }) { $1 }
            return try held.map { entry throws(StoreError) in
                let record = records[entry.topic.name]
                var messages: [StoredMessage] = []
                // Only what a subscriber here waits for, and what the cache keeps of it.
                if let record, record.epoch == entry.position.epoch, record.head > entry.position.head, entry.topic.subscriberCount > 0 {
                    let after = max(entry.position.head, record.head - UInt64(min(Int(record.head - entry.position.head), cacheLimit)))
                    messages = try store.messages(topicID: record.id, after: after, limit: Int(record.head - after))
                }
                return Refresh(topic: entry.topic, seen: entry.seen, known: entry.known, record: record, messages: messages)
            }
        }) { [self] result in
            switch result {
            case .success(let refreshes):
                apply(refreshes)
            case .failure(let error):
                // The engine notices again (and polls): nothing waits on this read alone.
                metrics.storeFailed(.read, error, ["ferry.read": "topics changed elsewhere"])
            }
        }
    }

    private func apply(_ refreshes: [Refresh]) {
        let cacheLimit = configuration.cachedMessagesPerTopic
        for refresh in refreshes {
            if let record = refresh.record, let known = refresh.known,
                renewIfTailLost(refresh.topic.name, epoch: record.epoch, seen: known, firstFound: record.head + 1)
            {
                continue
            }
            let appended = refresh.messages.map { ($0.version, Self.encode($0, topic: refresh.topic.name)) }
            // Under the broker's lock, as the mirror of a commit of this broker is.
            let subscribers = state.withLock { state -> [Connection] in
                guard state.topics[refresh.topic.name] === refresh.topic else { return [] }
                return refresh.topic.changedElsewhere(record: refresh.record, appended: appended, seen: refresh.seen, cacheLimit: cacheLimit)
            }
            for connection in subscribers { connection.topicChanged(refresh.topic.name) }
            // Created by another broker while only subscribers here named it.
            if refresh.known == nil, refresh.record != nil { topicsAppeared([refresh.topic.name]) }
        }
    }

    /// When the store gives out again, in `epoch`, a version this broker had seen there (a
    /// failover to a replica that had not received the tail), the topic gets a new epoch (one
    /// broker's renewal wins; the rest find the epoch changed), so every subscriber is told `reset`
    /// rather than handed a reused version. `seen` must be what this broker knew *before* the
    /// store was read or written (a later mirror may be newer than that read), and `firstFound`
    /// the first version the store would give next after it (the found head + 1), or the first a
    /// commit gave. True when renewing.
    @discardableResult
    func renewIfTailLost(_ name: String, epoch: String, seen: TopicRecord, firstFound: UInt64) -> Bool {
        guard seen.epoch == epoch, firstFound <= seen.head else { return false }
        logger.warning(
            "topic log is shorter than seen: giving it a new epoch",
            metadata: ["ferry.topic": "\(name)", "ferry.head_seen": "\(seen.head)", "ferry.version_found": "\(firstFound)"])
        committer.submit([.renewEpoch(name, from: epoch, to: Epoch.random())], completion: nil)
        return true
    }
}
