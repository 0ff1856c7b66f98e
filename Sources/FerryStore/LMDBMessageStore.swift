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
/// - `meta`: the token secret and the next topic id
public final class LMDBMessageStore: MessageStore {
    public let configuration: LMDBStoreConfiguration
    private let env: LMDBEnvironment
    private let meta: LMDBDatabase
    private let topicTable: LMDBDatabase
    private let messageLog: LMDBDatabase
    private let dedup: LMDBDatabase
    private let dedupByTime: LMDBDatabase
    private let sessionTable: LMDBDatabase
    private let subscriptionTable: LMDBDatabase
    /// Nil when read-only. Used by the committing thread only; the lock makes that checkable.
    private let diskReserve: Mutex<DiskReserve?>

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

    private func subscriptions(in txn: some LMDBReading, prefix: [UInt8]) throws(LMDBError) -> [SubscriptionRecord] {
        try txn.entries(subscriptionTable, prefix: prefix).map { entry throws(LMDBError) in
            try Self.decoded("subscription record", entry.key) { () throws(StoreError) in try Self.decodeSubscription(entry.key, entry.value) }
        }
    }

    /// Runs `body`, naming the data folder and `ferryctl verify` in a corruption it meets, so
    /// the broker's refusal to start (or a failed read) says what to run.
    private func withCorruptionNamed<T>(_ body: () throws(LMDBError) -> T) throws(StoreError) -> T {
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
        do {
            let acceptPublishes = hasPublishes ? try hasRoomForPublishes() : true
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

    /// True while more than the reserve is left both in the map and on the disk, counting the
    /// pages on LMDB's free list (later writes reuse them before growing the file).
    private func hasRoomForPublishes() throws(LMDBError) -> Bool {
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
            case .deleteSubscription(let clientID, let topic):
                try txn.delete(subscriptionTable, Self.subscriptionKey(clientID, topic))
                outcomes.append(.done)
            case .sweep:
                try state.sweep()
                outcomes.append(.done)
            case .expireSessions(let cutoff):
                outcomes.append(.expired(try expireSessions(lastSeenBefore: cutoff, in: txn)))
            }
        }
        try state.finish()
        return CommitResult(outcomes: outcomes, topics: state.changed)
    }

    /// Deletes the sessions last seen before `cutoff` and their subscriptions; returns their ids.
    private func expireSessions(lastSeenBefore cutoff: Timestamp, in txn: WriteTransaction) throws(LMDBError) -> [String] {
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

        /// The topic, created with `epoch()` when it does not exist and an epoch is given (made only then:
        /// a publish to an existing topic must not pay for random bytes).
        mutating func topic(_ name: String, createWithEpoch epoch: @autoclosure () -> String?) throws(LMDBError) -> TopicRecord? {
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

        mutating func publish(_ message: NewMessage) throws(LMDBError) -> CommitResult.Outcome {
            guard var topic = try topic(message.topic, createWithEpoch: Epoch.random()) else { return .failed(.engine("topic not created")) }
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
                try txn.put(store.dedupByTime, LMDBMessageStore.dedupTimeKey(now, dedupKey), [])
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
            try txn.delete(store.topicTable, Array(name.utf8))
            current[name] = nil
            changed[name] = .some(nil)
        }

        /// Age retention on every topic, and expiry of remembered `msg_id`s.
        mutating func sweep() throws(LMDBError) {
            for (key, value) in try txn.entries(store.topicTable, prefix: []) {
                let topic = try decoded("topic record", key) { () throws(StoreError) in try decodeTopic(key, value) }
                if current[topic.name] == nil { current[topic.name] = topic }
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
            let policy = store.configuration.retention
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
            for (name, record) in changed where record != nil {
                try enforceRetention(name)
            }
            for (name, record) in changed {
                guard let record else { continue }
                try txn.put(store.topicTable, Array(name.utf8), encodeTopic(record))
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

    // MARK: - Encoding

    static let secretKey = Array("secret".utf8)
    static let nextTopicIDKey = Array("next_topic_id".utf8)

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

    /// The expiry index's key of a dedup entry remembered at `stamp`.
    static func dedupTimeKey(_ stamp: Timestamp, _ dedupKey: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + dedupKey.count)
        writer.append(stamp)
        writer.append(dedupKey)
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
        case .corrupted(let what): self = .corrupted(what)
        default: self = .engine(error.description)
        }
    }
}
