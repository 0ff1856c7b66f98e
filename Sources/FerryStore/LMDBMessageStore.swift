import Foundation

/// How the LMDB store is opened and what it enforces.
public struct LMDBStoreConfiguration: Sendable {
    /// The data folder, created if missing.
    public var path: String
    public var mapSize: Int = 8 << 30
    /// fsync every commit (`FERRY_SYNC=full`) or leave flushing to the OS (`none`).
    public var syncOnCommit = true
    public var retention = RetentionPolicy()
    /// How long a `msg_id` is remembered, in milliseconds.
    public var dedupWindow: UInt64 = 24 * 3600 * 1000

    /// Space kept free for deletes and trims, so an operator can recover a full store without a
    /// restart: LMDB copies pages on write, so even a delete needs free pages.
    public var reserveBytes: Int { min(mapSize / 8, 64 << 20) }

    public init(path: String) {
        self.path = path
    }
}

/// Ferry's schema on LMDB.
///
/// Databases and their keys (integers big-endian, so byte order is numeric order):
/// - `topics`: name → id, first, head, message count, payload bytes, epoch
/// - `messages`: topic id + version → timestamp, kind, headers, payload (stored once per topic)
/// - `dedup`: topic id + msg_id → version, timestamp; `dedup_by_time`: timestamp + topic id + msg_id → ∅
/// - `sessions`: client id → created, last seen, incarnation
/// - `subscriptions`: client id + 0x00 + topic → ack floor, window, epoch
/// - `meta`: the token secret and the next topic id
public final class LMDBMessageStore: MessageStore {
    public let configuration: LMDBStoreConfiguration
    private let env: LMDBEnvironment
    private let meta: LMDBDatabase
    private let topics: LMDBDatabase
    private let messageLog: LMDBDatabase
    private let dedup: LMDBDatabase
    private let dedupByTime: LMDBDatabase
    private let sessions: LMDBDatabase
    private let subscriptions: LMDBDatabase

    public init(configuration: LMDBStoreConfiguration) throws(StoreError) {
        self.configuration = configuration
        do {
            try FileManager.default.createDirectory(atPath: configuration.path, withIntermediateDirectories: true)
        } catch {
            throw StoreError.engine("cannot create data folder \(configuration.path): \(error.localizedDescription)")
        }
        var options = LMDBOptions()
        options.mapSize = configuration.mapSize
        options.syncOnCommit = configuration.syncOnCommit
        do {
            env = try LMDBEnvironment(path: configuration.path, options: options)
            meta = try env.openDatabase("meta")
            topics = try env.openDatabase("topics")
            messageLog = try env.openDatabase("messages")
            dedup = try env.openDatabase("dedup")
            dedupByTime = try env.openDatabase("dedup_by_time")
            sessions = try env.openDatabase("sessions")
            subscriptions = try env.openDatabase("subscriptions")
        } catch {
            throw StoreError(error)
        }
    }

    // MARK: - Loading

    public func load() throws(StoreError) -> StoreSnapshot {
        do {
            let secret = try env.write { txn throws(LMDBError) in
                if let secret = try txn.get(meta, Self.secretKey) { return secret }
                let secret = (0..<32).map { _ in UInt8.random(in: .min ... .max) }
                try txn.put(meta, Self.secretKey, secret)
                return secret
            }
            return try env.read { txn throws(LMDBError) in
                StoreSnapshot(
                    topics: try txn.entries(topics, prefix: []).map { try? Self.decodeTopic($0.key, $0.value) }.compactMap { $0 },
                    sessions: try txn.entries(sessions, prefix: []).compactMap { try? Self.decodeSession($0.key, $0.value) },
                    subscriptions: try txn.entries(subscriptions, prefix: []).compactMap {
                        try? Self.decodeSubscription($0.key, $0.value)
                    },
                    secret: secret
                )
            }
        } catch {
            throw StoreError(error)
        }
    }

    // MARK: - Commit

    public func commit(_ operations: [StoreOperation], now: Timestamp) throws(StoreError) -> CommitResult {
        let hasPublishes = operations.contains { if case .publish = $0 { true } else { false } }
        do {
            let acceptPublishes = hasPublishes ? !isInReserve() : true
            return try env.write { txn throws(LMDBError) in
                try apply(operations, in: txn, now: now, acceptPublishes: acceptPublishes)
            }
        } catch let error where error.isOutOfSpace && hasPublishes {
            // Nothing was written. Retry without the publishes so acks and sessions still commit.
            do {
                return try env.write { txn throws(LMDBError) in
                    try apply(operations, in: txn, now: now, acceptPublishes: false)
                }
            } catch {
                throw StoreError(error)
            }
        } catch {
            throw StoreError(error)
        }
    }

    /// True when the space left is within the reserve kept for deletes.
    private func isInReserve() -> Bool {
        let info = env.info()
        let limit = info.mapSize - configuration.reserveBytes
        guard (info.lastPage + 1) * info.pageSize > limit else { return false }
        // The file's high-water mark is in the reserve; free pages may still make room.
        let free = (try? env.freePages()) ?? 0
        return (info.lastPage + 1 - free) * info.pageSize > limit
    }

    private func apply(
        _ operations: [StoreOperation], in txn: WriteTransaction, now: Timestamp, acceptPublishes: Bool
    ) throws(LMDBError) -> CommitResult {
        var state = CommitState(store: self, txn: txn, now: now)
        var outcomes: [CommitResult.Outcome] = []
        outcomes.reserveCapacity(operations.count)
        for operation in operations {
            switch operation {
            case .publish(let message):
                if acceptPublishes {
                    outcomes.append(try state.publish(message))
                } else {
                    outcomes.append(.failed(.full))
                }
            case .ensureTopic(let name, let epoch):
                _ = try state.topic(name, createWithEpoch: epoch)
                outcomes.append(.done)
            case .deleteTopic(let name):
                try state.deleteTopic(name)
                outcomes.append(.done)
            case .putSession(let session):
                try txn.put(sessions, Array(session.clientID.utf8), Self.encodeSession(session))
                outcomes.append(.done)
            case .deleteSession(let clientID):
                try txn.delete(sessions, Array(clientID.utf8))
                let prefix = Self.subscriptionPrefix(clientID)
                try txn.deleteWhile(subscriptions, from: prefix) { key, _ in key.starts(with: prefix) }
                outcomes.append(.done)
            case .putSubscription(let subscription):
                try txn.put(
                    subscriptions, Self.subscriptionKey(subscription.clientID, subscription.topic),
                    Self.encodeSubscription(subscription))
                outcomes.append(.done)
            case .deleteSubscription(let clientID, let topic):
                try txn.delete(subscriptions, Self.subscriptionKey(clientID, topic))
                outcomes.append(.done)
            case .sweep:
                try state.sweep()
                outcomes.append(.done)
            }
        }
        try state.finish()
        return CommitResult(outcomes: outcomes, topics: state.changed)
    }

    /// The topics one commit touches, kept in memory until they are written once at the end.
    private struct CommitState {
        let store: LMDBMessageStore
        let txn: WriteTransaction
        let now: Timestamp
        var current: [String: TopicRecord] = [:]
        var changed: [String: TopicRecord?] = [:]

        init(store: LMDBMessageStore, txn: WriteTransaction, now: Timestamp) {
            self.store = store
            self.txn = txn
            self.now = now
        }

        mutating func topic(_ name: String, createWithEpoch epoch: String?) throws(LMDBError) -> TopicRecord? {
            if let topic = current[name] { return topic }
            if let value = try txn.get(store.topics, Array(name.utf8)), let topic = try? decodeTopic(Array(name.utf8), value) {
                current[name] = topic
                return topic
            }
            guard let epoch else { return nil }
            var counter = ByteReader(try txn.get(store.meta, LMDBMessageStore.nextTopicIDKey) ?? [])
            let id = (try? counter.uint64()) ?? 1
            var next = ByteWriter()
            next.append(id + 1)
            try txn.put(store.meta, LMDBMessageStore.nextTopicIDKey, next.bytes)
            let topic = TopicRecord(name: name, id: id, epoch: epoch)
            current[name] = topic
            changed[name] = topic
            return topic
        }

        mutating func publish(_ message: NewMessage) throws(LMDBError) -> CommitResult.Outcome {
            guard var topic = try topic(message.topic, createWithEpoch: LMDBMessageStore.newEpoch()) else { return .failed(.engine("topic not created")) }
            var dedupKey: [UInt8]?
            if let messageID = message.messageID {
                let key = LMDBMessageStore.dedupKey(topic.id, messageID)
                if let hit = try txn.get(store.dedup, key),
                    let version = UInt64.bigEndian(hit), let stamp = UInt64.bigEndian(hit, at: 8),
                    stamp + store.configuration.dedupWindow > now
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
                var timeKey = ByteWriter(capacity: 8 + dedupKey.count)
                timeKey.append(now)
                timeKey.append(dedupKey)
                try txn.put(store.dedupByTime, timeKey.bytes, [])
            }
            current[topic.name] = topic
            changed[topic.name] = topic
            return .published(version: topic.head, timestamp: now, duplicate: false)
        }

        mutating func deleteTopic(_ name: String) throws(LMDBError) {
            guard let topic = try topic(name, createWithEpoch: nil) else { return }
            var prefixWriter = ByteWriter()
            prefixWriter.append(topic.id)
            let prefix = prefixWriter.bytes
            try txn.deleteWhile(store.messageLog, from: prefix) { key, _ in key.starts(with: prefix) }
            try txn.deleteWhile(store.dedup, from: prefix) { key, _ in key.starts(with: prefix) }
            try txn.delete(store.topics, Array(name.utf8))
            current[name] = nil
            changed[name] = .some(nil)
        }

        /// Age retention on every topic, and expiry of remembered `msg_id`s.
        mutating func sweep() throws(LMDBError) {
            for (key, value) in try txn.entries(store.topics, prefix: []) {
                guard let topic = try? decodeTopic(key, value), current[topic.name] == nil else { continue }
                current[topic.name] = topic
            }
            for name in current.keys {
                try enforceRetention(name)
            }
            let window = store.configuration.dedupWindow
            guard now > window else { return }
            let cutoff = now - window
            var expired: [[UInt8]] = []
            try txn.deleteWhile(store.dedupByTime, from: []) { key, _ in
                guard let stamp = UInt64.bigEndian(key), stamp <= cutoff else { return false }
                expired.append(Array(key.dropFirst(8)))
                return true
            }
            for key in expired {
                // Delete only if not re-published since (a newer entry has a newer stamp).
                if let value = try txn.get(store.dedup, key), let stamp = UInt64.bigEndian(value, at: 8), stamp <= cutoff {
                    try txn.delete(store.dedup, key)
                }
            }
        }

        /// Deletes the oldest messages while a retention limit is exceeded.
        mutating func enforceRetention(_ name: String) throws(LMDBError) {
            guard var topic = current[name], topic.messages > 0 else { return }
            let policy = store.configuration.retention
            let ageCutoff = policy.maxAge.map { now > $0 ? now - $0 : 0 }
            var removed = false
            try txn.deleteWhile(store.messageLog, from: messageKey(topic.id, topic.first)) { key, value in
                guard topic.messages > 0, UInt64.bigEndian(key) == topic.id else { return false }
                let overCount = policy.maxMessages.map { topic.messages > $0 } ?? false
                let overBytes = policy.maxBytes.map { topic.bytes > $0 } ?? false
                let tooOld = ageCutoff.map { cutoff in (UInt64.bigEndian(value) ?? 0) < cutoff } ?? false
                guard overCount || overBytes || tooOld else { return false }
                topic.messages -= 1
                topic.bytes -= min(topic.bytes, UInt64(payloadSize(value)))
                topic.first = (UInt64.bigEndian(key, at: 8) ?? topic.first) + 1
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
            for (name, record) in changed where record != nil {
                try enforceRetention(name)
            }
            for (name, record) in changed {
                guard let record else { continue }
                try txn.put(store.topics, Array(name.utf8), encodeTopic(record))
            }
        }
    }

    // MARK: - Reads

    public func messages(topicID: UInt64, after: UInt64, limit: Int) throws(StoreError) -> [StoredMessage] {
        guard limit > 0, after < .max else { return [] }
        do {
            return try env.read { txn throws(LMDBError) in
                var result: [StoredMessage] = []
                result.reserveCapacity(min(limit, 1024))
                try txn.forEach(messageLog, from: Self.messageKey(topicID, after + 1)) { key, value in
                    guard UInt64.bigEndian(key) == topicID, let version = UInt64.bigEndian(key, at: 8),
                        let message = try? Self.decodeMessage(version: version, value)
                    else { return false }
                    result.append(message)
                    return result.count < limit
                }
                return result
            }
        } catch {
            throw StoreError(error)
        }
    }

    public func backup(to path: String) throws(StoreError) -> Int {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            if let existing = try? FileManager.default.contentsOfDirectory(atPath: path), !existing.isEmpty {
                throw StoreError.engine("backup folder \(path) is not empty")
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.engine("cannot create backup folder \(path): \(error.localizedDescription)")
        }
        do {
            try env.copy(to: path)
        } catch {
            throw StoreError(error)
        }
        let size = ((try? FileManager.default.attributesOfItem(atPath: path + "/data.mdb"))?[.size] as? Int) ?? 0
        return size
    }

    public func usage() -> StoreUsage {
        let info = env.info()
        return StoreUsage(mapSize: info.mapSize, usedBytes: (info.lastPage + 1) * info.pageSize, syncOnCommit: configuration.syncOnCommit)
    }

    // MARK: - Encoding

    static let secretKey = Array("secret".utf8)
    static let nextTopicIDKey = Array("next_topic_id".utf8)

    /// A fresh epoch: 48 random bits in hex.
    public static func newEpoch() -> String {
        (0..<6).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max)) }.joined()
    }

    static func messageKey(_ topicID: UInt64, _ version: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.append(topicID)
        writer.append(version)
        return writer.bytes
    }

    static func dedupKey(_ topicID: UInt64, _ messageID: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + messageID.utf8.count)
        writer.append(topicID)
        writer.append(messageID.utf8)
        return writer.bytes
    }

    static func subscriptionPrefix(_ clientID: String) -> [UInt8] {
        Array(clientID.utf8) + [0]
    }

    static func subscriptionKey(_ clientID: String, _ topic: String) -> [UInt8] {
        subscriptionPrefix(clientID) + Array(topic.utf8)
    }

    static func encodeMessage(_ message: NewMessage, timestamp: Timestamp) -> [UInt8] {
        var writer = ByteWriter(capacity: message.payload.count + 16)
        writer.append(timestamp)
        writer.append(message.kind.rawValue)
        writer.append(UInt8(clamping: message.headers.count))
        for header in message.headers.prefix(Int(UInt8.max)) {
            writer.appendShortString(header.name)
            writer.appendShortString(header.value)
        }
        writer.append(message.payload)
        return writer.bytes
    }

    static func decodeMessage(version: UInt64, _ value: [UInt8]) throws(StoreError) -> StoredMessage {
        var reader = ByteReader(value)
        let timestamp = try reader.uint64()
        guard let kind = PayloadKind(rawValue: try reader.uint8()) else { throw StoreError.corrupted("payload kind") }
        let headerCount = Int(try reader.uint8())
        var headers: [Header] = []
        for _ in 0..<headerCount {
            headers.append(Header(try reader.shortString(), try reader.shortString()))
        }
        return StoredMessage(version: version, timestamp: timestamp, kind: kind, payload: reader.rest(), headers: headers)
    }

    /// Payload size of an encoded message without copying it.
    static func payloadSize(_ value: UnsafeRawBufferPointer) -> Int {
        guard value.count >= 10 else { return 0 }
        var offset = 10
        for _ in 0..<Int(value[9]) {
            for _ in 0..<2 {
                guard offset + 2 <= value.count else { return 0 }
                offset += 2 + (Int(value[offset]) << 8 | Int(value[offset + 1]))
            }
        }
        return max(0, value.count - offset)
    }

    static func encodeTopic(_ topic: TopicRecord) -> [UInt8] {
        var writer = ByteWriter(capacity: 56)
        writer.append(topic.id)
        writer.append(topic.first)
        writer.append(topic.head)
        writer.append(topic.messages)
        writer.append(topic.bytes)
        writer.append(topic.epoch.utf8)
        return writer.bytes
    }

    static func decodeTopic(_ key: [UInt8], _ value: [UInt8]) throws(StoreError) -> TopicRecord {
        var reader = ByteReader(value)
        return TopicRecord(
            name: String(decoding: key, as: UTF8.self), id: try reader.uint64(), epoch: "",
            first: try reader.uint64(), head: try reader.uint64(), messages: try reader.uint64(), bytes: try reader.uint64()
        ).withEpoch(reader.restString())
    }

    static func encodeSession(_ session: SessionRecord) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.append(session.createdAt)
        writer.append(session.lastSeen)
        writer.append(session.incarnation.utf8)
        return writer.bytes
    }

    static func decodeSession(_ key: [UInt8], _ value: [UInt8]) throws(StoreError) -> SessionRecord {
        var reader = ByteReader(value)
        let created = try reader.uint64()
        let lastSeen = try reader.uint64()
        return SessionRecord(
            clientID: String(decoding: key, as: UTF8.self), incarnation: reader.restString(), createdAt: created, lastSeen: lastSeen)
    }

    static func encodeSubscription(_ subscription: SubscriptionRecord) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.append(subscription.ackFloor)
        writer.append(UInt32(clamping: subscription.window))
        writer.append(subscription.epoch.utf8)
        return writer.bytes
    }

    static func decodeSubscription(_ key: [UInt8], _ value: [UInt8]) throws(StoreError) -> SubscriptionRecord {
        guard let separator = key.firstIndex(of: 0) else { throw StoreError.corrupted("subscription key") }
        var reader = ByteReader(value)
        let floor = try reader.uint64()
        let window = Int(try reader.uint32())
        return SubscriptionRecord(
            clientID: String(decoding: key[..<separator], as: UTF8.self),
            topic: String(decoding: key[(separator + 1)...], as: UTF8.self),
            epoch: reader.restString(), ackFloor: floor, window: window)
    }
}

extension TopicRecord {
    fileprivate func withEpoch(_ epoch: String) -> TopicRecord {
        var copy = self
        copy.epoch = epoch
        return copy
    }
}

extension StoreError {
    init(_ error: LMDBError) {
        switch error {
        case .mapFull, .diskFull: self = .full
        case .corrupted: self = .corrupted(error.description)
        default: self = .engine(error.description)
        }
    }
}
