import FerryPostgres
import FerryStore
import FerryTestSupport
import Foundation
import Testing

// One test body for every engine, as NATS runs store_test.go against every store: conformance
// tests take a `StoreEngine` argument and get a fresh, empty store of it from `withStore(_:)`.

/// The engines behind `MessageStore`.
enum StoreEngine: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case lmdb
    case postgres

    var testDescription: String { rawValue }
}

/// What a conformance test may set, whatever the engine.
struct StoreSettings {
    var retention = RetentionPolicy()
    /// Milliseconds.
    var dedupWindow: UInt64 = 24 * 3600 * 1000
}

/// Fresh, empty storage of one engine (an LMDB folder, or a PostgreSQL database of its own), that
/// may be opened more than once (a restart, or a second node), and is removed by ``remove()``.
final class StoreFixture {
    let engine: StoreEngine
    let settings: StoreSettings
    private let location: String
    private let server: PostgresTestServer?

    init(_ engine: StoreEngine, settings: StoreSettings) throws {
        self.engine = engine
        self.settings = settings
        switch engine {
        case .lmdb:
            location = temporaryPath()
            server = nil
        case .postgres:
            let server = try PostgresTestServer.running()
            location = try server.createDatabase()
            self.server = server
        }
    }

    /// Opens a store on this storage: a restart of the one before, or another node beside it.
    func open() throws -> any MessageStore {
        switch engine {
        case .lmdb:
            return try openStore(at: location) {
                $0.retention = settings.retention
                $0.dedupWindow = settings.dedupWindow
            }
        case .postgres:
            return try PostgresMessageStore(configuration: postgresConfiguration())
        }
    }

    func postgresConfiguration() throws -> PostgresStoreConfiguration {
        let server = try #require(server, "not a PostgreSQL fixture")
        var configuration = try PostgresStoreConfiguration(url: server.url(database: location))
        configuration.retention = settings.retention
        configuration.dedupWindow = settings.dedupWindow
        return configuration
    }

    /// Runs SQL on this fixture's database (PostgreSQL only).
    @discardableResult
    func sql(_ statement: String) throws -> String {
        try #require(server, "not a PostgreSQL fixture").run(statement, database: location)
    }

    func remove() {
        switch engine {
        case .lmdb: try? FileManager.default.removeItem(atPath: location)
        case .postgres: try? server?.dropDatabase(location)
        }
    }

    /// How many msg_ids the store remembers, across all topics.
    func rememberedMessageIDs(_ store: any MessageStore) throws -> Int {
        try count("dedup", store)
    }

    /// How many messages the store holds, across all topics.
    func storedMessageCount(_ store: any MessageStore) throws -> Int {
        try count("messages", store)
    }

    /// Entries of an LMDB database, or rows of the PostgreSQL table, of the same name.
    private func count(_ name: String, _ store: any MessageStore) throws -> Int {
        if let lmdb = store as? LMDBMessageStore {
            return try entryCount(ofDatabase: name, inBackupOf: lmdb)
        }
        return try #require(Int(try sql("SELECT count(*) FROM \(name)")))
    }
}

/// Runs `body` with a fixture of `engine`, removed afterwards.
func withFixture<T>(
    _ engine: StoreEngine, configure: (inout StoreSettings) -> Void = { _ in }, _ body: (StoreFixture) throws -> T
) throws -> T {
    var settings = StoreSettings()
    configure(&settings)
    let fixture = try StoreFixture(engine, settings: settings)
    defer { fixture.remove() }
    return try body(fixture)
}

/// Runs `body` with a fresh, empty store of `engine`, removed afterwards.
func withStore<T>(
    _ engine: StoreEngine, configure: (inout StoreSettings) -> Void = { _ in }, _ body: (any MessageStore) throws -> T
) throws -> T {
    try withFixture(engine, configure: configure) { fixture in try body(try fixture.open()) }
}
