import FerryStore
import PostgresNIO

/// Ferry's tables on PostgreSQL, created and migrated by the store itself when it opens.
///
/// - `topics`: name → id (from `ferry_topic_ids`, never reused), epoch, first, head, message
///   count, payload bytes. Every commit updates its topics' rows, so the table leaves room on each
///   page (fillfactor 70) for those updates to stay HOT.
/// - `messages`: (topic id, version) → commit time, kind, payload, headers (encoded as
///   ``PostgresHeaders`` describes).
/// - `dedup`: (topic id, msg_id) → version, stamp; indexed by stamp for the sweep's expiry.
/// - `sessions`, `subscriptions`: as `SessionRecord` and `SubscriptionRecord`; a session also
///   names the node that claimed it last and the one before (``PostgresNodes``).
/// - `meta`: the resume-token secret, created once for all nodes.
/// - `topic_configs`: pattern → the fields of a per-topic configuration entry; NULL falls back
///   to the global setting, and 0 in the three retention bounds is unlimited (``PostgresTopicConfigs``).
/// - `ferry_schema`: the migrations applied.
///
/// Names and client ids use the "C" collation so that ordering is by bytes, as in LMDB's keys.
/// msg_ids are bytea: the protocol allows any bytes there, and text cannot hold a NUL.
enum PostgresSchema {
    /// Migrations in order; the version of the last one is the schema version. Never edit one that shipped.
    static let migrations: [[String]] = [
        [
            "CREATE SEQUENCE ferry_topic_ids",
            """
            CREATE TABLE topics (
                name text COLLATE "C" PRIMARY KEY,
                id bigint NOT NULL UNIQUE,
                epoch text NOT NULL,
                first bigint NOT NULL,
                head bigint NOT NULL,
                messages bigint NOT NULL,
                bytes bigint NOT NULL
            ) WITH (fillfactor = 70)
            """,
            """
            CREATE TABLE messages (
                topic_id bigint NOT NULL,
                version bigint NOT NULL,
                ts bigint NOT NULL,
                kind smallint NOT NULL,
                payload bytea NOT NULL,
                headers bytea NOT NULL,
                PRIMARY KEY (topic_id, version)
            )
            """,
            """
            CREATE TABLE dedup (
                topic_id bigint NOT NULL,
                msg_id bytea NOT NULL,
                version bigint NOT NULL,
                stamp bigint NOT NULL,
                PRIMARY KEY (topic_id, msg_id)
            )
            """,
            "CREATE INDEX dedup_by_stamp ON dedup (stamp)",
            """
            CREATE TABLE sessions (
                client_id text COLLATE "C" PRIMARY KEY,
                incarnation text NOT NULL,
                created_at bigint NOT NULL,
                last_seen bigint NOT NULL
            )
            """,
            """
            CREATE TABLE subscriptions (
                client_id text COLLATE "C" NOT NULL,
                topic text COLLATE "C" NOT NULL,
                epoch text NOT NULL,
                ack_floor bigint NOT NULL,
                window_size integer NOT NULL,
                PRIMARY KEY (client_id, topic)
            )
            """,
            // A topic's subscribers are looked up by topic (its info, a trim's check).
            "CREATE INDEX subscriptions_by_topic ON subscriptions (topic)",
            "CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL)",
        ],
        [
            // A session's owner is the node that claimed it last (``PostgresNodes``); `claims`
            // counts claims, so a notice about an older one is known to be stale.
            "ALTER TABLE sessions ADD COLUMN owner text, ADD COLUMN previous_owner text, ADD COLUMN claims bigint NOT NULL DEFAULT 0"
        ],
        [
            // The pattern subscription a topic's record belongs to (``SubscriptionRecord/pattern``).
            "ALTER TABLE subscriptions ADD COLUMN pattern text COLLATE \"C\""
        ],
        [
            // Per-topic configuration by pattern (``TopicConfigs``).
            """
            CREATE TABLE topic_configs (
                pattern text COLLATE "C" PRIMARY KEY,
                max_messages bigint,
                max_bytes bigint,
                max_age bigint,
                max_message_bytes bigint,
                dedup_window bigint,
                retention text
            )
            """
        ],
        [
            // Which broker serves each queue group (``PostgresNodes/lease(_:of:node:in:)``).
            """
            CREATE TABLE queue_groups (
                topic text COLLATE "C" NOT NULL,
                grp text COLLATE "C" NOT NULL,
                owner text NOT NULL,
                PRIMARY KEY (topic, grp)
            )
            """
        ],
    ]

    /// Any constant shared by every node: the key of the advisory lock that serializes migrations.
    static let migrationLock: Int64 = 0x6665_7272_795f_7367  // "ferry_sg"

    /// Brings the database to the newest schema, in one transaction under a transaction-level
    /// advisory lock, so nodes starting together migrate once and the others wait, then see it done.
    static func migrate(_ connections: PostgresConnections) throws(StoreError) {
        try connections.transaction { session throws(StoreError) in
            try session.query("SELECT pg_advisory_xact_lock(\(migrationLock))")
            try session.execute(
                "CREATE TABLE IF NOT EXISTS ferry_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            let rows = try session.query("SELECT coalesce(max(version), 0) FROM ferry_schema")
            let current = try decodeFirst(rows, as: Int32.self, "the schema version") ?? 0
            guard current <= migrations.count else {
                throw StoreError.engine(
                    "the database's Ferry schema is version \(current), newer than this ferryd knows (\(migrations.count)): upgrade ferryd")
            }
            for version in Int(current) + 1 ..< migrations.count + 1 {
                for statement in migrations[version - 1] {
                    try session.execute(statement)
                }
                try session.query("INSERT INTO ferry_schema (version) VALUES (\(Int32(version)))")
            }
        }
    }

    /// The first column of the first row, nil when there is no row.
    static func decodeFirst<T: PostgresDecodable>(_ rows: PostgresQueryResult, as type: T.Type, _ what: String) throws(StoreError) -> T? {
        guard let row = rows.first else { return nil }
        do {
            return try row.decode(T.self)
        } catch {
            throw StoreError.corrupted("\(what) does not decode: \(error)")
        }
    }
}
