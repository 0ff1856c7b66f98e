import FerryStore
import Foundation
import Testing

// Shared helpers of the store tests: temp folders, a store factory and short ways to publish.

/// A commit time far from zero, so age and dedup arithmetic never clamps at 0.
let t0: Timestamp = 1_800_000_000_000

/// Runs `body` with the path of a fresh folder under the temp directory (not created yet),
/// and removes the folder when `body` returns or throws.
func withTemporaryFolder<T>(_ body: (String) throws -> T) throws -> T {
    let path = temporaryPath()
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

func temporaryPath() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("ferry-store-tests-\(UUID().uuidString)").path
}

/// Opens the real LMDB store in `path`, small and unsynced unless `configure` says otherwise.
func openStore(at path: String, configure: (inout LMDBStoreConfiguration) -> Void = { _ in }) throws -> LMDBMessageStore {
    var configuration = LMDBStoreConfiguration(path: path)
    configuration.mapSize = 64 << 20
    // These tests check behaviour, not crash durability; skipping fsync keeps them fast.
    configuration.syncOnCommit = false
    configure(&configuration)
    return try LMDBMessageStore(configuration: configuration)
}

/// A store in a fresh temp folder, removed after `body`.
func withStore<T>(
    configure: (inout LMDBStoreConfiguration) -> Void = { _ in }, _ body: (LMDBMessageStore) throws -> T
) throws -> T {
    try withTemporaryFolder { path in
        try body(try openStore(at: path, configure: configure))
    }
}

/// An LMDB environment in a fresh temp folder with one database `db`, removed after `body`.
func withEnvironment<T>(
    mapSize: Int = 16 << 20, _ body: (LMDBEnvironment, LMDBDatabase) throws -> T
) throws -> T {
    try withTemporaryFolder { path in
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var options = LMDBOptions()
        options.mapSize = mapSize
        options.syncOnCommit = false
        let environment = try LMDBEnvironment(path: path, options: options)
        return try body(environment, try environment.openDatabase("test"))
    }
}

/// A big-endian key, so LMDB's byte order is numeric order.
func key(_ value: UInt64) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

func number(_ key: [UInt8]) -> UInt64 {
    key.reduce(0) { $0 << 8 | UInt64($1) }
}

// MARK: - Operations

func publishJSON(_ topic: String, _ text: String, msgID: String? = nil, headers: [Header] = []) -> StoreOperation {
    .publish(NewMessage(topic: topic, kind: .json, payload: Array(text.utf8), messageID: msgID, headers: headers))
}

func publishBytes(_ topic: String, _ payload: [UInt8], msgID: String? = nil, headers: [Header] = []) -> StoreOperation {
    .publish(NewMessage(topic: topic, kind: .bytes, payload: payload, messageID: msgID, headers: headers))
}

func subscription(_ clientID: String, _ topic: String, floor: UInt64 = 0, window: Int = 1024) -> SubscriptionRecord {
    SubscriptionRecord(clientID: clientID, topic: topic, epoch: "e-\(topic)", ackFloor: floor, window: window)
}

func session(_ clientID: String, at time: Timestamp = t0) -> SessionRecord {
    SessionRecord(clientID: clientID, incarnation: "inc-\(clientID)", createdAt: time, lastSeen: time + 1)
}

extension CommitResult.Outcome {
    /// The version of a publish outcome, nil for any other outcome.
    var version: UInt64? {
        if case .published(let version, _, _) = self { return version }
        return nil
    }

    var isDuplicate: Bool {
        if case .published(_, _, true) = self { return true }
        return false
    }
}

extension MessageStore {
    /// Commits one operation and returns its outcome.
    func apply(_ operation: StoreOperation, now: Timestamp = t0) throws -> CommitResult.Outcome {
        let result = try commit([operation], now: now)
        return try #require(result.outcomes.first)
    }

    /// Commits one publish and returns the version it got.
    @discardableResult
    func publish(_ operation: StoreOperation, now: Timestamp = t0) throws -> UInt64 {
        try #require(try apply(operation, now: now).version)
    }

    /// The topic's record as `load()` reports it.
    func topic(_ name: String) throws -> TopicRecord? {
        try load().topics.first { $0.name == name }
    }

    /// Every stored message of `name`, oldest first.
    func storedMessages(_ name: String) throws -> [StoredMessage] {
        let record = try #require(try topic(name))
        return try messages(topicID: record.id, after: 0, limit: .max)
    }

    func storedVersions(_ name: String) throws -> [UInt64] {
        try storedMessages(name).map(\.version)
    }
}

/// The number of entries in one of a store's internal databases (names from the schema comment of
/// `LMDBMessageStore`), read from a backup so the live environment is never opened twice.
func entryCount(ofDatabase name: String, inBackupOf store: LMDBMessageStore) throws -> Int {
    try withTemporaryFolder { path in
        _ = try store.backup(to: path)
        var options = LMDBOptions()
        options.mapSize = store.configuration.mapSize
        options.syncOnCommit = false
        let environment = try LMDBEnvironment(path: path, options: options)
        let database = try environment.openDatabase(name)
        return try environment.read { txn throws(LMDBError) in try txn.count(database) }
    }
}
