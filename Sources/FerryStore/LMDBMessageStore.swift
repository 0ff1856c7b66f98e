import FerryProtocol
import Foundation
import Synchronization

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
    /// Opens an existing data folder without writing to it (for offline checks); commits fail.
    public var readOnly = false

    /// Space kept free for deletes and trims, in the map and on the disk, so an operator can
    /// recover a full store without a restart: LMDB copies pages on write, so even a delete needs
    /// free pages. Publishes stop when less than this is left.
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
/// - `topic_configs`: pattern → the entry's fields (``encodeTopicConfig(_:)``)
/// - `meta`: the token secret and the next topic id
public final class LMDBMessageStore: MessageStore {
    public let configuration: LMDBStoreConfiguration
    let env: LMDBEnvironment
    let meta: LMDBDatabase
    let topicTable: LMDBDatabase
    let messageLog: LMDBDatabase
    let dedup: LMDBDatabase
    let dedupByTime: LMDBDatabase
    let sessionTable: LMDBDatabase
    let subscriptionTable: LMDBDatabase
    /// Nil only when a data folder made before per-topic configuration is opened read-only.
    let topicConfigTable: LMDBDatabase?
    /// What the commits enforce; nil until the first commit reads it. Written by the committing thread only.
    let topicConfigCache = Mutex<TopicConfigs?>(nil)
    /// Nil when read-only. Used by the committing thread only; the lock makes that checkable.
    let diskReserve: Mutex<DiskReserve?>

    public init(configuration: LMDBStoreConfiguration) throws(StoreError) {
        self.configuration = configuration
        if configuration.readOnly {
            guard FileManager.default.fileExists(atPath: configuration.path + "/data.mdb") else {
                throw StoreError.engine("\(configuration.path) holds no data.mdb")
            }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: configuration.path, withIntermediateDirectories: true)
            } catch {
                throw StoreError.engine("cannot create data folder \(configuration.path): \(error.localizedDescription)")
            }
        }
        var options = LMDBOptions()
        options.mapSize = configuration.mapSize
        options.syncOnCommit = configuration.syncOnCommit
        options.readOnly = configuration.readOnly
        do {
            env = try LMDBEnvironment(path: configuration.path, options: options)
            meta = try env.openDatabase("meta")
            topicTable = try env.openDatabase("topics")
            messageLog = try env.openDatabase("messages")
            dedup = try env.openDatabase("dedup")
            dedupByTime = try env.openDatabase("dedup_by_time")
            sessionTable = try env.openDatabase("sessions")
            subscriptionTable = try env.openDatabase("subscriptions")
            topicConfigTable = try Self.openAddedDatabase("topic_configs", in: env, readOnly: configuration.readOnly)
            diskReserve = Mutex(
                configuration.readOnly ? nil : DiskReserve(descriptor: try env.fileDescriptor(), reserve: configuration.reserveBytes))
        } catch .notFound where configuration.readOnly {
            throw StoreError.engine("\(configuration.path) is not a Ferry data folder: a database of the schema is missing")
        } catch {
            throw StoreError(error)
        }
    }

    /// Reads are of the memory map, and never wait for the writer.
    public var readsMayBlock: Bool { false }

    /// An LMDB store serves one broker, on the machine it is on: nobody else changes it.
    public func watch(_ handler: @escaping @Sendable (StoreChange) -> Void) {}

    // MARK: - Loading

    /// Makes the secret if the store is new, and reads every topic, session and subscription
    /// record once: a store with one that does not decode refuses to start.
    public func open() throws(StoreError) -> [UInt8] {
        let secret = try withCorruptionNamed { () throws(LMDBError) in
            try env.write { txn throws(LMDBError) in
                if let secret = try txn.get(meta, Self.secretKey) { return secret }
                let secret = (0..<32).map { _ in UInt8.random(in: .min ... .max) }
                try txn.put(meta, Self.secretKey, secret)
                return secret
            }
        }
        _ = try topics()
        _ = try sessions()
        _ = try topicConfigs()
        return secret
    }

    public func topic(named name: String) throws(StoreError) -> TopicRecord? {
        let key = Array(name.utf8)
        return try withCorruptionNamed { () throws(LMDBError) in
            try env.read { txn throws(LMDBError) in
                try txn.get(topicTable, key).map { value throws(LMDBError) in
                    try Self.decoded("topic record", key) { () throws(StoreError) in try Self.decodeTopic(key, value) }
                }
            }
        }
    }

    public func topics() throws(StoreError) -> [TopicRecord] {
        try withCorruptionNamed { () throws(LMDBError) in
            try env.read { txn throws(LMDBError) in
                try txn.entries(topicTable, prefix: []).map { entry throws(LMDBError) in
                    try Self.decoded("topic record", entry.key) { () throws(StoreError) in try Self.decodeTopic(entry.key, entry.value) }
                }
            }
        }
    }

    public func session(clientID: String) throws(StoreError) -> StoredSession? {
        let key = Array(clientID.utf8)
        return try withCorruptionNamed { () throws(LMDBError) in
            try env.read { txn throws(LMDBError) in
                guard let value = try txn.get(sessionTable, key) else { return nil }
                let record = try Self.decoded("session record", key) { () throws(StoreError) in try Self.decodeSession(key, value) }
                return StoredSession(record: record, subscriptions: try subscriptions(in: txn, prefix: Self.subscriptionPrefix(clientID)))
            }
        }
    }

    public func sessions() throws(StoreError) -> [StoredSession] {
        try withCorruptionNamed { () throws(LMDBError) in
            try env.read { txn throws(LMDBError) in
                var byClient: [String: [SubscriptionRecord]] = [:]
                for subscription in try subscriptions(in: txn, prefix: []) { byClient[subscription.clientID, default: []].append(subscription) }
                return try txn.entries(sessionTable, prefix: []).map { entry throws(LMDBError) in
                    let record = try Self.decoded("session record", entry.key) { () throws(StoreError) in
                        try Self.decodeSession(entry.key, entry.value)
                    }
                    return StoredSession(record: record, subscriptions: byClient[record.clientID] ?? [])
                }
            }
        }
    }

    /// A pass over the subscription keys (client id, then topic), decoding only those of `topic`.
    public func subscriptions(topic: String) throws(StoreError) -> [SubscriptionRecord] {
        let suffix = [0] + Array(topic.utf8)
        return try withCorruptionNamed { () throws(LMDBError) in
            try env.read { txn throws(LMDBError) in
                var found: [SubscriptionRecord] = []
                try txn.forEach(subscriptionTable, from: []) { key, value throws(LMDBError) in
                    guard key.count > suffix.count, key.suffix(suffix.count).elementsEqual(suffix),
                        !key.dropLast(suffix.count).contains(0)
                    else { return true }
                    found.append(
                        try Self.decoded("subscription record", key) { () throws(StoreError) in try Self.decodeSubscription(key, value) })
                    return true
                }
                return found
            }
        }
    }

    func subscriptions(in txn: some LMDBReading, prefix: [UInt8]) throws(LMDBError) -> [SubscriptionRecord] {
        try txn.entries(subscriptionTable, prefix: prefix).map { entry throws(LMDBError) in
            try Self.decoded("subscription record", entry.key) { () throws(StoreError) in try Self.decodeSubscription(entry.key, entry.value) }
        }
    }

    /// Runs `body`, naming the data folder and `ferryctl verify` in a corruption it meets, so
    /// the broker's refusal to start (or a failed read) says what to run.
    func withCorruptionNamed<T>(_ body: () throws(LMDBError) -> T) throws(StoreError) -> T {
        do {
            return try body()
        } catch .corrupted(let what) {
            let path = configuration.path
            throw StoreError.corrupted("\(what) in \(path); `ferryctl verify --data \(path)` lists every fault")
        } catch {
            throw StoreError(error)
        }
    }

    // MARK: - Commit

    public func commit(_ operations: [StoreOperation], now: Timestamp) throws(StoreError) -> CommitResult {
        let hasPublishes = operations.contains { if case .publish = $0 { true } else { false } }
        let configs = try topicConfigs(after: operations)
        let result: CommitResult
        do {
            let acceptPublishes = hasPublishes ? try hasRoomForPublishes() : true
            result = try env.write { txn throws(LMDBError) in
                try apply(operations, in: txn, now: now, acceptPublishes: acceptPublishes, configs: configs)
            }
        } catch let error where error.isOutOfSpace && hasPublishes {
            // Nothing was written. Retry without the publishes so acks and sessions still commit.
            do {
                result = try env.write { txn throws(LMDBError) in
                    try apply(operations, in: txn, now: now, acceptPublishes: false, configs: configs)
                }
            } catch {
                throw StoreError(error)
            }
        } catch {
            throw StoreError(error)
        }
        // Only once committed: a commit that failed changed no configuration.
        if operations.contains(where: \.isTopicConfigChange) { topicConfigCache.withLock { $0 = configs } }
        return result
    }

    /// True while more than the reserve is left both in the map and on the disk, counting the
    /// pages on LMDB's free list (later writes reuse them before growing the file).
    func hasRoomForPublishes() throws(LMDBError) -> Bool {
        let info = env.info()
        let usedEnd = (info.lastPage + 1) * info.pageSize
        let reserve = configuration.reserveBytes
        var headroom = info.mapSize - usedEnd
        let diskHeadroom = diskReserve.withLock { reserve -> Int? in
            guard reserve?.hold(past: usedEnd) == .diskFull, let reserve else { return nil }
            return max(0, reserve.allocatedEnd - usedEnd)
        }
        if let diskHeadroom { headroom = min(headroom, diskHeadroom) }
        if headroom >= reserve { return true }
        return try headroom + env.freePages() * info.pageSize >= reserve
    }

    func apply(
        _ operations: [StoreOperation], in txn: WriteTransaction, now: Timestamp, acceptPublishes: Bool, configs: TopicConfigs
    ) throws(LMDBError) -> CommitResult {
        var state = CommitState(store: self, txn: txn, now: now, configs: configs)
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
            case .renewEpoch(let name, let from, let to):
                try state.renewEpoch(name, from: from, to: to)
                outcomes.append(.done)
            case .deleteTopic(let name):
                try state.deleteTopic(name)
                outcomes.append(.done)
            case .trimTopic(let name, let through):
                try state.dropOldest(name) { _, version, _ in version <= through }
                outcomes.append(.done)
            case .putSession(let session):
                try txn.put(sessionTable, Array(session.clientID.utf8), Self.encodeSession(session))
                outcomes.append(.done)
            case .deleteSession(let clientID):
                try txn.delete(sessionTable, Array(clientID.utf8))
                let prefix = Self.subscriptionPrefix(clientID)
                try txn.deleteWhile(subscriptionTable, from: prefix) { key, _ in key.starts(with: prefix) }
                outcomes.append(.done)
            case .putSubscription(let subscription):
                try txn.put(
                    subscriptionTable, Self.subscriptionKey(subscription.clientID, subscription.topic),
                    Self.encodeSubscription(subscription))
                outcomes.append(.done)
            case .raiseAckFloor(var subscription):
                let key = Self.subscriptionKey(subscription.clientID, subscription.topic)
                if let value = try txn.get(subscriptionTable, key) {
                    let stored = try Self.decoded("subscription record", key) { () throws(StoreError) in try Self.decodeSubscription(key, value) }
                    if stored.epoch == subscription.epoch { subscription.ackFloor = max(stored.ackFloor, subscription.ackFloor) }
                }
                try txn.put(subscriptionTable, key, Self.encodeSubscription(subscription))
                outcomes.append(.done)
            case .deleteSubscription(let clientID, let topic):
                try txn.delete(subscriptionTable, Self.subscriptionKey(clientID, topic))
                outcomes.append(.done)
            case .sweep:
                try state.sweep()
                outcomes.append(.done)
            case .expireSessions(let cutoff):
                outcomes.append(.expired(try expireSessions(lastSeenBefore: cutoff, in: txn)))
            case .putTopicConfig(let pattern, let config):
                try txn.put(try writableConfigTable(), Array(pattern.description.utf8), Self.encodeTopicConfig(config))
                outcomes.append(.done)
            case .deleteTopicConfig(let pattern):
                try txn.delete(try writableConfigTable(), Array(pattern.description.utf8))
                outcomes.append(.done)
            }
        }
        try state.finish()
        return CommitResult(outcomes: outcomes, topics: state.changed)
    }

    /// Deletes the sessions last seen before `cutoff` and their subscriptions; returns their ids.
    func expireSessions(lastSeenBefore cutoff: Timestamp, in txn: WriteTransaction) throws(LMDBError) -> [String] {
        var expired: [String] = []
        for (key, value) in try txn.entries(sessionTable, prefix: []) {
            let session = try Self.decoded("session record", key) { () throws(StoreError) in try Self.decodeSession(key, value) }
            guard session.lastSeen < cutoff else { continue }
            try txn.delete(sessionTable, key)
            let prefix = Self.subscriptionPrefix(session.clientID)
            try txn.deleteWhile(subscriptionTable, from: prefix) { key, _ in key.starts(with: prefix) }
            expired.append(session.clientID)
        }
        return expired
    }

    // MARK: - Reads

    public func messages(topicID: UInt64, after: UInt64, limit: Int) throws(StoreError) -> [StoredMessage] {
        guard limit > 0, after < .max else { return [] }
        do {
            return try env.read { txn throws(LMDBError) in
                var result: [StoredMessage] = []
                result.reserveCapacity(min(limit, 1024))
                try txn.forEach(messageLog, from: Self.messageKey(topicID, after + 1)) { key, value throws(LMDBError) in
                    guard UInt64.bigEndian(key) == topicID, let version = UInt64.bigEndian(key, at: 8) else { return false }
                    result.append(
                        try Self.decoded("message \(version) of topic id \(topicID)") { () throws(StoreError) in
                            try Self.decodeMessage(version: version, value)
                        })
                    return result.count < limit
                }
                return result
            }
        } catch {
            throw StoreError(error)
        }
    }

    public func usage() -> StoreUsage {
        let info = env.info()
        return StoreUsage(mapSize: info.mapSize, usedBytes: (info.lastPage + 1) * info.pageSize, syncOnCommit: configuration.syncOnCommit)
    }

}

extension LMDBMessageStore {
    /// Decodes a record read from LMDB; one that does not decode is corruption, named by `what`
    /// and its key, never skipped (skipping would lose it or reuse its ids).
    static func decoded<T>(_ what: String, _ key: [UInt8]? = nil, _ decode: () throws(StoreError) -> T) throws(LMDBError) -> T {
        do {
            return try decode()
        } catch {
            let name = key.map { " '" + String(decoding: $0, as: UTF8.self).replacingOccurrences(of: "\u{0}", with: "/") + "'" } ?? ""
            throw LMDBError.corrupted("\(what)\(name) does not decode (\(error))")
        }
    }
}

extension StoreError {
    init(_ error: LMDBError) {
        switch error {
        case .mapFull, .diskFull: self = .full
        case .corrupted(let what): self = .corrupted(what)
        default: self = .engine(error.description)
        }
    }
}
