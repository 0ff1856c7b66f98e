import FerryStore
import PostgresNIO

/// The brokers sharing a database, and which one owns each durable session.
///
/// A broker is alive while it has a connection to the database: every connection of a broker
/// carries `ferry <id> <name>` as its `application_name`, so `pg_stat_activity` lists the live
/// brokers (a killed broker's backends end with its sockets) and no heartbeat table can go stale.
/// All brokers should connect as one role (or roles with `pg_read_all_stats`), so each sees the
/// others' connections.
///
/// A `hello` claims its session in one statement: the row is created if it does not exist, its
/// owner becomes this broker, the owner before is kept as `previous_owner`, and `claims` counts
/// up. Row locks order concurrent claims, so the last claim wins and each knows whom it replaced.
enum PostgresNodes {
    static func applicationName(_ node: String, name: String = "") -> String {
        // PostgreSQL keeps 63 bytes of ASCII; the id comes first, so it always survives.
        String("ferry \(node) \(name)".unicodeScalars.filter(\.isASCII).prefix(63))
    }

    /// True (in SQL) when the broker whose id is in `column` has a connection to this database.
    private static func isLive(_ column: String) -> String {
        """
        EXISTS (SELECT 1 FROM pg_stat_activity a
            WHERE a.datname = current_database() AND a.application_name LIKE 'ferry ' || \(column) || ' %')
        """
    }

    /// Claims `proposed.clientID` for `node`, creating the session as `proposed` if there is none.
    static func claim(_ proposed: SessionRecord, node: String, in session: PostgresSession) throws(StoreError) -> (
        claim: SessionClaim, previousOwner: String?
    ) {
        let rows = try session.query(
            """
            INSERT INTO sessions (client_id, incarnation, created_at, last_seen, owner, claims)
            VALUES (\(proposed.clientID), \(proposed.incarnation), \(proposed.createdAt.signed), \(proposed.lastSeen.signed), \(node), 1)
            ON CONFLICT (client_id) DO UPDATE SET owner = excluded.owner, previous_owner = sessions.owner, claims = sessions.claims + 1
            RETURNING incarnation, created_at, last_seen, claims, previous_owner,
                previous_owner IS NOT NULL AND previous_owner <> \(node) AND \(unescaped: isLive("previous_owner"))
            """)
        guard
            let claimed = try PostgresMessageStore.decodeRows(rows, "session record", { row throws in
                try row.decode((String, Int64, Int64, Int64, String?, Bool).self)
            }).first
        else { throw StoreError.engine("claiming session \(proposed.clientID) returned no row") }
        let (incarnation, created, lastSeen, claims, previousOwner, ownerIsLive) = claimed
        let record = SessionRecord(clientID: proposed.clientID, incarnation: incarnation, createdAt: created.unsigned, lastSeen: lastSeen.unsigned)
        // A session this claim created, or one whose owner is gone, is as stored.
        let handover: SessionClaim.Handover =
            if previousOwner == node { .memoryIsNewest } else if ownerIsLive { .ownerAsked } else { .storeIsNewest }
        guard handover != .ownerAsked else {
            // Read after the owner lets go.
            return (SessionClaim(stored: nil, generation: claims.unsigned, handover: handover), previousOwner)
        }
        let subscriptions = try PostgresMessageStore.decodeRows(
            try session.query(
                "SELECT client_id, topic, epoch, ack_floor, window_size, pattern FROM subscriptions WHERE client_id = \(proposed.clientID) ORDER BY topic"),
            "subscription record", PostgresMessageStore.subscription)
        let stored = StoredSession(record: record, subscriptions: subscriptions)
        return (SessionClaim(stored: stored, generation: claims.unsigned, handover: handover), previousOwner)
    }

    /// Takes the lease of a queue group for `node` when nobody holds it or its holder is gone
    /// (no connection to the database: it died); true when `node` holds it after.
    static func lease(_ group: String, of topic: String, node: String, in session: PostgresSession) throws(StoreError) -> Bool {
        let rows = try session.query(
            """
            INSERT INTO queue_groups (topic, grp, owner) VALUES (\(topic), \(group), \(node))
            ON CONFLICT (topic, grp) DO UPDATE SET owner = excluded.owner
            WHERE queue_groups.owner = excluded.owner OR NOT \(unescaped: isLive("queue_groups.owner"))
            RETURNING owner
            """)
        return try !PostgresMessageStore.decodeRows(rows, "queue group lease") { try $0.decode(String.self) }.isEmpty
    }

    /// The brokers with a connection to this database now, oldest first.
    static func live(thisNode: String, in session: PostgresSession) throws(StoreError) -> [NodeInfo] {
        let rows = try session.query(
            """
            SELECT application_name, (extract(epoch FROM min(backend_start)) * 1000)::bigint FROM pg_stat_activity
            WHERE datname = current_database() AND application_name LIKE 'ferry % %'
            GROUP BY application_name ORDER BY 2, 1
            """)
        return try PostgresMessageStore.decodeRows(rows, "node") { row throws in
            let (application, since) = try row.decode((String, Int64).self)
            let parts = application.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            let id = parts.count > 1 ? String(parts[1]) : ""
            return NodeInfo(
                id: id, name: parts.count > 2 ? String(parts[2]) : "", startedAt: since.unsigned, isThisBroker: id == thisNode)
        }
    }
}
