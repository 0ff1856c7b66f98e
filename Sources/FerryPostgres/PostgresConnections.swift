import FerryStore
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// A few PostgreSQL connections on a private event loop, used by blocking callers.
///
/// The store's methods are synchronous and called from the core's own threads (its committer and
/// readers), so each query waits for its future on the calling thread. That cannot deadlock: the
/// event loop thread that completes the future belongs to this group alone and never waits itself
/// (NIO's `wait()` traps if called on an event loop).
final class PostgresConnections: Sendable {
    private let group: MultiThreadedEventLoopGroup
    private let configuration: PostgresConnection.Configuration
    private let idleLimit: Int
    private let idle = Mutex<[PostgresConnection]>([])
    private let nextID = Atomic<Int>(1)
    let logger: Logger

    /// - Parameter node: This broker's id: every connection carries it as its `application_name`,
    ///   so other brokers see whether this one is alive (``PostgresNodes``).
    init(_ configuration: PostgresStoreConfiguration, node: String) {
        // One thread: the database, not the socket, is the bottleneck.
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var connection = PostgresConnection.Configuration(
            host: configuration.host, port: configuration.port, username: configuration.username,
            password: configuration.password, database: configuration.database, tls: .disable)
        // A commit is confirmed only once durable, whatever the database or role default says.
        connection.options.additionalStartupParameters = [
            ("synchronous_commit", "on"), ("application_name", PostgresNodes.applicationName(node, name: configuration.nodeName)),
        ]
        // A server that is down refuses at once; one that cannot be reached, or does not finish
        // the startup handshake, fails the connect (and the commit or read that needed it) after this.
        connection.options.connectTimeout = .seconds(10)
        self.configuration = connection
        idleLimit = max(1, configuration.idleConnections)
        var logger = Logger(label: "ferry.postgres")
        logger.logLevel = .critical
        self.logger = logger
    }

    deinit {
        let connections = idle.withLock { connections in
            defer { connections.removeAll() }
            return connections
        }
        // A connection must be closed before it is released. The last reference to the store is
        // never dropped on this group's own thread (nothing there holds one), so waiting is safe.
        for connection in connections { _ = try? connection.close().wait() }
        group.shutdownGracefully { _ in }
    }

    /// Runs `body` with a connection of its own: an idle one, or a new one when none is idle.
    ///
    /// An idle connection may have been closed by the server since it was last used (a restart, a
    /// failover, an idle timeout). When it breaks, `body` runs once more on a new connection: every
    /// caller's `body` is a read, or a transaction the server rolled back when the connection
    /// dropped, unless its COMMIT was sent (`outcomeUnknown`), which is never run again.
    func withSession<T>(_ body: (PostgresSession) throws(StoreError) -> T) throws(StoreError) -> T {
        let (connection, reused) = try checkOut()
        let session = PostgresSession(connection: connection, logger: logger)
        do {
            let value = try body(session)
            checkIn(session)
            return value
        } catch {
            checkIn(session)
            guard reused, session.broken, !session.outcomeUnknown else { throw error }
        }
        let fresh = PostgresSession(connection: try connect(), logger: logger)
        defer { checkIn(fresh) }
        return try body(fresh)
    }

    /// Runs `body` in one transaction: BEGIN, `body`, COMMIT; ROLLBACK when `body` throws.
    ///
    /// A conflict with another node's commit rolled everything back, so `body` runs again (a few
    /// times). A COMMIT that fails leaves the outcome unknown when the connection dropped (it may
    /// have committed): the error says so, and the caller must not report success or failure.
    func transaction<T>(_ body: (PostgresSession) throws(StoreError) -> T) throws(StoreError) -> T {
        try withSession { session throws(StoreError) in
            var attempt = 1
            var value: T
            while true {
                try session.execute("BEGIN")
                session.lastSQLState = nil
                do throws(StoreError) {
                    value = try body(session)
                    break
                } catch {
                    let retryable = session.lastSQLState.map(Self.retryableStates.contains) ?? false
                    session.rollback()
                    guard retryable, attempt < 3, !session.broken else { throw error }
                    attempt += 1
                }
            }
            do {
                _ = try session.connection.queryIfOpen("COMMIT", logger: logger).wait()
            } catch {
                session.broken = true
                session.outcomeUnknown = true
                throw StoreError.engine("PostgreSQL COMMIT did not complete, its outcome is unknown: \(PostgresSession.describe(error))")
            }
            return value
        }
    }

    /// Deadlock, serialization failure, and a unique violation: a topic created by another node
    /// after this commit looked for it (the retry finds it).
    private static let retryableStates: Set<String> = ["40P01", "40001", "23505"]

    /// An idle connection (`reused`), or a new one.
    private func checkOut() throws(StoreError) -> (PostgresConnection, reused: Bool) {
        while let connection = idle.withLock({ $0.popLast() }) {
            if !connection.isClosed { return (connection, true) }
            Self.close(connection)
        }
        return (try connect(), false)
    }

    /// A new connection of its own, for a task (the watcher's LISTEN and NOTIFY).
    func connect() async throws -> PostgresConnection {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        return try await PostgresConnection.connect(on: group.next(), configuration: configuration, id: id, logger: logger).get()
    }

    /// A new connection of its own, waited for on the calling thread.
    func connectWaiting() throws(StoreError) -> PostgresConnection {
        try connect()
    }

    private func connect() throws(StoreError) -> PostgresConnection {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        do {
            return try PostgresConnection.connect(on: group.next(), configuration: configuration, id: id, logger: logger).wait()
        } catch {
            throw StoreError.engine(
                "cannot connect to PostgreSQL at \(configuration.host ?? "?"):\(configuration.port ?? 0): \(PostgresSession.describe(error))")
        }
    }

    private func checkIn(_ session: PostgresSession) {
        let connection = session.connection
        if session.broken || connection.isClosed {
            Self.close(connection)
            return
        }
        let kept = idle.withLock { connections in
            guard connections.count < idleLimit else { return false }
            connections.append(connection)
            return true
        }
        if !kept { Self.close(connection) }
    }

    /// Closes without waiting; the callback keeps the connection alive until it is closed.
    private static func close(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }
}

/// One checked-out connection; lives only inside `withSession`, on the calling thread.
final class PostgresSession {
    let connection: PostgresConnection
    let logger: Logger
    /// Set when the connection is in an unknown state and must not be reused.
    var broken = false
    /// Set when COMMIT was sent and no answer came: the transaction may have committed.
    var outcomeUnknown = false
    /// The SQLSTATE of the last server error, e.g. `40P01` for a deadlock.
    var lastSQLState: String?

    init(connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Runs `query` and returns all its rows.
    @discardableResult
    func query(_ query: PostgresQuery) throws(StoreError) -> PostgresQueryResult {
        do {
            return try connection.queryIfOpen(query, logger: logger).wait()
        } catch {
            lastSQLState = Self.sqlState(error)
            // No server answer, or the server ending the connection (57P01 when an operator
            // terminates it, 57P02/57P03 around a restart, class 08): it cannot be used again.
            if lastSQLState.map({ $0.hasPrefix("57P") || $0.hasPrefix("08") }) ?? true { broken = true }
            throw Self.storeError(error)
        }
    }

    func execute(_ sql: String) throws(StoreError) {
        try query(PostgresQuery(unsafeSQL: sql))
    }

    /// Ends a failed transaction; a connection that cannot is dropped instead.
    func rollback() {
        do {
            _ = try connection.queryIfOpen("ROLLBACK", logger: logger).wait()
        } catch {
            broken = true
        }
    }

    /// The SQLSTATE of a server error, e.g. `40P01` for a deadlock.
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    static func storeError(_ error: any Error) -> StoreError {
        // 53100 disk_full, 53200 out_of_memory... only a full disk means "no room for publishes".
        if sqlState(error) == "53100" { return .full }
        return .engine("PostgreSQL: \(describe(error))")
    }

    /// PSQLError's own description hides the server's message; name it and the SQLSTATE.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo {
            return "\(info[.message] ?? "server error") (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}

extension PostgresConnection {
    /// `query(_:logger:)`, written from the connection's event loop and only while it is open.
    ///
    /// PostgresNIO (1.33.2) drops a query written after its channel closed without completing it,
    /// and whoever waits for it waits forever: the committer did, on the ROLLBACK after a statement
    /// the server's immediate shutdown failed. On the event loop nothing comes between the check and
    /// the write, and a query written to an open channel is always answered or failed.
    func queryIfOpen(_ query: PostgresQuery, logger: Logger) -> EventLoopFuture<PostgresQueryResult> {
        eventLoop.flatSubmit { [self] in
            guard !isClosed else { return eventLoop.makeFailedFuture(PostgresConnectionClosed()) }
            return self.query(query, logger: logger)
        }
    }
}

/// A query was not sent: its connection had closed (the server went away).
struct PostgresConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection to PostgreSQL is closed" }
}
