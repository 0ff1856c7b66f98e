import Foundation

extension LMDBMessageStore {
    /// The topics one commit touches, kept in memory until they are written once at the end.
    struct CommitState {
        let store: LMDBMessageStore
        let txn: WriteTransaction
        let now: Timestamp
        /// The per-topic configuration this commit enforces (with its own changes).
        var config: EffectiveConfigMemo
        var configs: TopicConfigs { config.configs }
        /// Read through ``topic(_:createWithEpoch:)``, which first puts `appending` in place.
        private var current: [String: TopicRecord] = [:]
        /// Complete once ``finish()`` ran.
        private(set) var changed: [String: TopicRecord?] = [:]
        /// The topic of the last publish, ahead of `current` and `changed`: a run of publishes
        /// to one topic hashes its name once, not three times a message.
        private var appending: TopicRecord?

        init(store: LMDBMessageStore, txn: WriteTransaction, now: Timestamp, configs: TopicConfigs) {
            self.store = store
            self.txn = txn
            self.now = now
            config = EffectiveConfigMemo(configs)
        }

        /// The topic, created with `epoch()` when it does not exist and an epoch is given (made only then:
        /// a publish to an existing topic must not pay for random bytes).
        mutating func topic(_ name: String, createWithEpoch epoch: @autoclosure () -> String?) throws(LMDBError) -> TopicRecord? {
            settle()
            if let topic = current[name] { return topic }
            let key = Array(name.utf8)
            if let value = try txn.get(store.topicTable, key) {
                let topic = try decoded("topic record", key) { () throws(StoreError) in try decodeTopic(key, value) }
                current[name] = topic
                return topic
            }
            guard let epoch = epoch() else { return nil }
            // No counter yet means a new store, whose first topic id is 1.
            var id: UInt64 = 1
            if let value = try txn.get(store.meta, LMDBMessageStore.nextTopicIDKey) {
                id = try decoded("topic id counter", LMDBMessageStore.nextTopicIDKey) { () throws(StoreError) -> UInt64 in
                    var counter = ByteReader(value)
                    return try counter.uint64()
                }
            }
            var next = ByteWriter()
            next.append(id + 1)
            try txn.put(store.meta, LMDBMessageStore.nextTopicIDKey, next.bytes)
            let topic = TopicRecord(name: name, id: id, epoch: epoch)
            current[name] = topic
            changed[name] = topic
            return topic
        }

        /// Puts the topic publishes ran ahead on in `current` and `changed`.
        private mutating func settle() {
            guard let topic = appending else { return }
            appending = nil
            current[topic.name] = topic
            changed[topic.name] = topic
        }

        mutating func publish(_ message: NewMessage) throws(LMDBError) -> CommitResult.Outcome {
            var topic: TopicRecord
            if let appending, appending.name == message.topic {
                topic = appending
            } else {
                guard let found = try self.topic(message.topic, createWithEpoch: Epoch.random()) else {
                    return .failed(.engine("topic not created"))
                }
                topic = found
            }
            var dedupKey: [UInt8]?
            if let messageID = message.messageID {
                let key = LMDBMessageStore.dedupKey(topic.id, messageID)
                if let hit = try txn.get(store.dedup, key),
                    let version = UInt64.bigEndian(hit), let stamp = UInt64.bigEndian(hit, at: 8),
                    stamp + config.of(topic.name).dedupWindow > now
                {
                    return .published(version: version, timestamp: stamp, duplicate: true)
                }
                dedupKey = key
            }
            topic.head += 1
            topic.messages += 1
            topic.bytes += UInt64(message.payload.count)
            try txn.put(
                store.messageLog, LMDBMessageStore.messageKey(topic.id, topic.head),
                LMDBMessageStore.encodeMessage(message, timestamp: now))
            if let dedupKey {
                var value = ByteWriter(capacity: 16)
                value.append(topic.head)
                value.append(now)
                try txn.put(store.dedup, dedupKey, value.bytes)
                try txn.put(store.dedupByTime, LMDBMessageStore.dedupTimeKey(now, dedupKey), [])
            }
            appending = topic
            return .published(version: topic.head, timestamp: now, duplicate: false)
        }

        mutating func renewEpoch(_ name: String, from: String, to: String) throws(LMDBError) {
            guard var topic = try topic(name, createWithEpoch: nil), topic.epoch == from else { return }
            topic.epoch = to
            current[name] = topic
            changed[name] = topic
        }

        mutating func deleteTopic(_ name: String) throws(LMDBError) {
            guard let topic = try topic(name, createWithEpoch: nil) else { return }
            var prefixWriter = ByteWriter()
            prefixWriter.append(topic.id)
            let prefix = prefixWriter.bytes
            try txn.deleteWhile(store.messageLog, from: prefix) { key, _ in key.starts(with: prefix) }
            try txn.deleteWhile(store.dedup, from: prefix) { key, _ in key.starts(with: prefix) }
            try txn.delete(store.topicTable, Array(name.utf8))
            current[name] = nil
            changed[name] = .some(nil)
        }

        /// Age retention on every topic, and expiry of remembered `msg_id`s.
        mutating func sweep() throws(LMDBError) {
            settle()
            for (key, value) in try txn.entries(store.topicTable, prefix: []) {
                let topic = try decoded("topic record", key) { () throws(StoreError) in try decodeTopic(key, value) }
                if current[topic.name] == nil { current[topic.name] = topic }
            }
            for name in current.keys {
                try enforceRetention(name)
            }
            try applyInterest()
            try expireMessageIDs()
        }

        /// Interest retention on the topics whose configuration asks for it, from every durable
        /// subscription as this commit leaves them (its acks included).
        private mutating func applyInterest() throws(LMDBError) {
            let topics = config.topics(current.values, retainedBy: .interest)
            guard !topics.isEmpty else { return }
            let cuts = InterestRetention.deletableThrough(topics, subscriptions: try store.subscriptions(in: txn, prefix: []))
            for (name, through) in cuts {
                try dropOldest(name) { _, version, _ in version <= through }
            }
        }

        /// Forgets the `msg_id`s older than their topic's dedup window. The time index is in time
        /// order across topics, so it is read up to the shortest window; an entry of a topic with a
        /// longer window stays, and is looked at again by later sweeps until it expires.
        private func expireMessageIDs() throws(LMDBError) {
            let shortest = configs.shortestDedupWindow
            guard now > shortest else { return }
            let latestCutoff = now - shortest
            var namesByID: [UInt64: String] = [:]
            if !configs.entries.isEmpty {
                for topic in current.values { namesByID[topic.id] = topic.name }
            }
            var cutoffs: [UInt64: UInt64] = [:]
            var expired: [(key: [UInt8], cutoff: UInt64)] = []
            var timeKeys: [[UInt8]] = []
            try txn.forEach(store.dedupByTime, from: []) { timeKey, _ throws(LMDBError) in
                guard let stamp = UInt64.bigEndian(timeKey), stamp <= latestCutoff, let topicID = UInt64.bigEndian(timeKey, at: 8) else {
                    return false
                }
                let cutoff: UInt64
                if let known = cutoffs[topicID] {
                    cutoff = known
                } else {
                    // A topic deleted since has no name: its entries go with the global window.
                    let window = namesByID[topicID].map { configs.effective(for: $0).dedupWindow } ?? configs.defaultDedupWindow
                    cutoff = now > window ? now - window : 0
                    cutoffs[topicID] = cutoff
                }
                if stamp <= cutoff {
                    expired.append((Array(timeKey.dropFirst(8)), cutoff))
                    timeKeys.append(timeKey)
                }
                return true
            }
            for timeKey in timeKeys {
                try txn.delete(store.dedupByTime, timeKey)
            }
            for (key, cutoff) in expired {
                // Delete only if not re-published since (a newer entry has a newer stamp).
                if let value = try txn.get(store.dedup, key), let stamp = UInt64.bigEndian(value, at: 8), stamp <= cutoff {
                    try txn.delete(store.dedup, key)
                }
            }
        }

        /// Deletes the oldest messages while a retention limit is exceeded.
        mutating func enforceRetention(_ name: String) throws(LMDBError) {
            let policy = config.of(name).retentionLimits
            let ageCutoff = policy.maxAge.map { now > $0 ? now - $0 : 0 }
            try dropOldest(name) { topic, _, value in
                let overCount = policy.maxMessages.map { topic.messages > $0 } ?? false
                let overBytes = policy.maxBytes.map { topic.bytes > $0 } ?? false
                let tooOld = ageCutoff.map { cutoff in (UInt64.bigEndian(value) ?? 0) < cutoff } ?? false
                return overCount || overBytes || tooOld
            }
        }

        /// Deletes a topic's oldest messages, one at a time, while `shouldDelete` (given the topic
        /// as it stands, the version and the encoded message) says so, keeping its record in step.
        mutating func dropOldest(
            _ name: String, while shouldDelete: (TopicRecord, UInt64, UnsafeRawBufferPointer) -> Bool
        ) throws(LMDBError) {
            guard var topic = try topic(name, createWithEpoch: nil), topic.messages > 0 else { return }
            var removed = false
            try txn.deleteWhile(store.messageLog, from: messageKey(topic.id, topic.first)) { key, value in
                guard topic.messages > 0, UInt64.bigEndian(key) == topic.id, let version = UInt64.bigEndian(key, at: 8),
                    shouldDelete(topic, version, value)
                else { return false }
                topic.messages -= 1
                topic.bytes -= min(topic.bytes, UInt64(payloadSize(value)))
                topic.first = version + 1
                removed = true
                return true
            }
            if topic.messages == 0 { topic.first = topic.head + 1 }
            if removed {
                current[name] = topic
                changed[name] = topic
            }
        }

        /// Retention for every topic that changed, then one write per topic record.
        mutating func finish() throws(LMDBError) {
            settle()
            for (name, record) in changed where record != nil {
                try enforceRetention(name)
            }
            for (name, record) in changed {
                guard let record else { continue }
                try txn.put(store.topicTable, Array(name.utf8), encodeTopic(record))
            }
        }
    }
}
