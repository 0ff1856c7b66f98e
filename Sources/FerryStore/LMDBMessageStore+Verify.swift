import Foundation

extension LMDBMessageStore {
    // MARK: - Verification

    public func verify() throws(StoreError) -> [StoreFault] {
        do {
            return try env.read { txn throws(LMDBError) in
                var faults: [StoreFault] = []
                var byID: [UInt64: TopicRecord] = [:]
                var byName: [String: TopicRecord] = [:]
                for (key, value) in try txn.entries(topicTable, prefix: []) {
                    guard let topic = try? Self.decodeTopic(key, value) else {
                        faults.append(StoreFault(.unreadableRecord, subject: String(decoding: key, as: UTF8.self), "topic record"))
                        continue
                    }
                    byID[topic.id] = topic
                    byName[topic.name] = topic
                }
                faults += try verifyMessages(txn, topics: byID)
                var sessionIDs: Set<String> = []
                for (key, value) in try txn.entries(sessionTable, prefix: []) {
                    let clientID = String(decoding: key, as: UTF8.self)
                    if (try? Self.decodeSession(key, value)) == nil {
                        faults.append(StoreFault(.unreadableRecord, subject: clientID, "session record"))
                    }
                    sessionIDs.insert(clientID)
                }
                for (key, value) in try txn.entries(subscriptionTable, prefix: []) {
                    guard let subscription = try? Self.decodeSubscription(key, value) else {
                        faults.append(StoreFault(.unreadableRecord, subject: String(decoding: key, as: UTF8.self), "subscription record"))
                        continue
                    }
                    let subject = "\(subscription.clientID) on \(subscription.topic)"
                    if !sessionIDs.contains(subscription.clientID) {
                        faults.append(StoreFault(.orphanSubscription, subject: subject, "no session \(subscription.clientID)"))
                    }
                    // A floor in an older epoch is legitimate: the client gets `reset` when it resumes.
                    if let topic = byName[subscription.topic], topic.epoch == subscription.epoch, subscription.ackFloor > topic.head {
                        faults.append(
                            StoreFault(.ackFloorBeyondHead, subject: subject, "ack floor \(subscription.ackFloor) is above head \(topic.head)"))
                    }
                }
                faults += try verifyDedup(txn, topics: byID)
                if let topicConfigTable {
                    for (key, value) in try txn.entries(topicConfigTable, prefix: []) where (try? Self.decodeTopicConfig(key, value)) == nil {
                        faults.append(StoreFault(.unreadableRecord, subject: String(decoding: key, as: UTF8.self), "topic configuration"))
                    }
                }
                return faults
            }
        } catch {
            throw StoreError(error)
        }
    }

    /// One pass over the message log, in key order, so each topic's versions arrive ascending.
    private func verifyMessages(_ txn: ReadTransaction, topics: [UInt64: TopicRecord]) throws(LMDBError) -> [StoreFault] {
        var faults: [StoreFault] = []
        var seen: [UInt64: (count: UInt64, bytes: UInt64, last: UInt64)] = [:]
        var orphans: [UInt64: Int] = [:]
        try txn.forEach(messageLog, from: []) { key, value in
            guard key.count == 16, let id = UInt64.bigEndian(key), let version = UInt64.bigEndian(key, at: 8) else {
                faults.append(StoreFault(.unreadableRecord, "message key of \(key.count) bytes"))
                return true
            }
            guard let topic = topics[id] else {
                orphans[id, default: 0] += 1
                return true
            }
            guard let message = try? Self.decodeMessage(version: version, value) else {
                faults.append(StoreFault(.unreadableRecord, subject: topic.name, "message \(version)"))
                return true
            }
            var state = seen[id] ?? (0, 0, topic.first - 1)
            if version < topic.first || version > topic.head {
                faults.append(
                    StoreFault(.versionOutOfRange, subject: topic.name, "message \(version) is outside \(topic.first)...\(topic.head)"))
            } else if version != state.last + 1 {
                faults.append(StoreFault(.versionGap, subject: topic.name, "versions \(state.last + 1)...\(version - 1) are missing"))
            }
            state.count += 1
            state.bytes += UInt64(message.payload.count)
            state.last = max(state.last, version)
            seen[id] = state
            return true
        }
        for (id, topic) in topics.sorted(by: { $0.key < $1.key }) {
            let state = seen[id] ?? (0, 0, topic.first - 1)
            if state.last < topic.head {
                faults.append(StoreFault(.versionGap, subject: topic.name, "versions \(state.last + 1)...\(topic.head) are missing"))
            }
            if state.count != topic.messages || state.bytes != topic.bytes {
                faults.append(
                    StoreFault(
                        .countMismatch, subject: topic.name,
                        "the record says \(topic.messages) messages of \(topic.bytes) bytes, the log holds \(state.count) of \(state.bytes)"))
            }
        }
        for (id, count) in orphans.sorted(by: { $0.key < $1.key }) {
            faults.append(StoreFault(.orphanMessage, "\(count) messages of topic id \(id), which no topic has"))
        }
        return faults
    }

    private func verifyDedup(_ txn: ReadTransaction, topics: [UInt64: TopicRecord]) throws(LMDBError) -> [StoreFault] {
        var faults: [StoreFault] = []
        try txn.forEach(dedup, from: []) { key, value throws(LMDBError) in
            let messageID = String(decoding: key.dropFirst(8), as: UTF8.self)
            guard let id = UInt64.bigEndian(key), let version = UInt64.bigEndian(value), let stamp = UInt64.bigEndian(value, at: 8) else {
                faults.append(StoreFault(.unreadableRecord, "dedup entry \(messageID)"))
                return true
            }
            guard let topic = topics[id] else {
                faults.append(StoreFault(.dedupMismatch, "msg_id \(messageID) names topic id \(id), which no topic has"))
                return true
            }
            if version > topic.head {
                faults.append(StoreFault(.dedupMismatch, subject: topic.name, "msg_id \(messageID) names version \(version), above head \(topic.head)"))
            }
            if try txn.get(dedupByTime, Self.dedupTimeKey(stamp, key)) == nil {
                faults.append(StoreFault(.dedupMismatch, subject: topic.name, "msg_id \(messageID) is missing from the expiry index"))
            }
            return true
        }
        return faults
    }
}
