import FerryStore
import PostgresNIO
import Synchronization

/// Retention sweeps and session expiry run on one broker of a cluster at a time: the one whose
/// connection holds a session-level advisory lock. Every broker asks for it (without waiting) at
/// each sweep on a connection it keeps for that; PostgreSQL releases it when that connection
/// dies, and the next broker to ask takes it over.
final class PostgresSweepLock: Sendable {
    /// Any fixed key: the lock's name in `pg_locks`.
    private static let key: Int64 = 0x6665_7272_7973_7770  // "ferryswp"
    private let connections: PostgresConnections
    private let connection = Mutex<PostgresConnection?>(nil)

    init(connections: PostgresConnections) {
        self.connections = connections
    }

    deinit {
        // Closing the connection is what gives the lock to another broker.
        if let held = connection.withLock({ $0 }) { held.close().whenComplete { _ in withExtendedLifetime(held) {} } }
    }

    /// True when this broker holds the lock (taking it if it is free). A failure to ask is "no":
    /// another broker sweeps, or this one at its next sweep.
    func isHeld() -> Bool {
        connection.withLock { held in
            do {
                if held == nil || held?.isClosed == true { held = try connections.connectWaiting() }
                guard let held else { return false }
                // Asked again each time: a lock already held is granted again (and counted twice,
                // which costs nothing while the connection lives).
                let rows = try held.queryIfOpen("SELECT pg_try_advisory_lock(\(Self.key))", logger: connections.logger).wait()
                return try rows.first?.decode(Bool.self) ?? false
            } catch {
                connections.logger.debug("sweep lock not asked", metadata: ["error": "\(error)"])
                // A new connection asks next time; this one is closed first, as a connection must be.
                if let broken = held { broken.close().whenComplete { _ in withExtendedLifetime(broken) {} } }
                held = nil
                return false
            }
        }
    }
}
