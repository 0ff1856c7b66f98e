import FerryProtocol
import FerryStore
import PostgresNIO
import Synchronization

/// The `topic_configs` table: one row per pattern; a NULL column falls back to the global
/// setting, and 0 in `max_messages`, `max_bytes` or `max_age` is unlimited.
enum PostgresTopicConfigs {
    static func read(in session: PostgresSession, defaults: RetentionPolicy, dedupWindow: UInt64) throws(StoreError) -> TopicConfigs {
        let rows = try session.query(
            """
            SELECT pattern, max_messages, max_bytes, max_age, max_message_bytes, dedup_window, retention
            FROM topic_configs ORDER BY pattern
            """)
        var configs = TopicConfigs(defaults: defaults, dedupWindow: dedupWindow)
        for (pattern, config) in try PostgresMessageStore.decodeRows(rows, "topic configuration", entry) {
            configs[pattern] = config
        }
        return configs
    }

    private static func entry(_ row: PostgresRow) throws -> (TopicPattern, TopicConfig) {
        let (text, maxMessages, maxBytes, maxAge, maxMessageBytes, dedupWindow, retention) = try row.decode(
            (String, Int64?, Int64?, Int64?, Int64?, Int64?, String?).self)
        guard let pattern = TopicPattern(text) else { throw StoreError.corrupted("topic configuration pattern '\(text)' does not parse") }
        var kind: RetentionKind?
        if let retention {
            guard let known = RetentionKind(rawValue: retention) else {
                throw StoreError.corrupted("topic configuration \(text) has retention '\(retention)'")
            }
            kind = known
        }
        func limit(_ stored: Int64?) -> TopicLimit? { stored.map { $0 == 0 ? .unlimited : .atMost($0.unsigned) } }
        return (
            pattern,
            TopicConfig(
                maxMessages: limit(maxMessages), maxBytes: limit(maxBytes), maxAge: limit(maxAge),
                maxMessageBytes: maxMessageBytes?.unsigned, dedupWindow: dedupWindow?.unsigned, retention: kind)
        )
    }

    /// Stores each entry of `writes` (nil: deletes it), in pattern order as every write of a commit.
    static func write(_ writes: [TopicPattern: TopicConfig?], in session: PostgresSession) throws(StoreError) {
        let sorted = writes.sorted { $0.key.description.utf8.lexicographicallyPrecedes($1.key.description.utf8) }
        let deleted = sorted.filter { $0.value == nil }.map(\.key.description)
        if !deleted.isEmpty {
            try session.query("DELETE FROM topic_configs WHERE pattern = ANY(\(deleted)::text[])")
        }
        // Configuration changes are rare and small: one statement per entry.
        for case (let pattern, let config?) in sorted {
            func stored(_ limit: TopicLimit?) -> Int64? { limit.map { ($0.bound ?? 0).signed } }
            try session.query(
                """
                INSERT INTO topic_configs (pattern, max_messages, max_bytes, max_age, max_message_bytes, dedup_window, retention)
                VALUES (\(pattern.description), \(stored(config.maxMessages)), \(stored(config.maxBytes)), \(stored(config.maxAge)),
                    \(config.maxMessageBytes?.signed), \(config.dedupWindow?.signed), \(config.retention?.rawValue))
                ON CONFLICT (pattern) DO UPDATE SET max_messages = excluded.max_messages, max_bytes = excluded.max_bytes,
                    max_age = excluded.max_age, max_message_bytes = excluded.max_message_bytes,
                    dedup_window = excluded.dedup_window, retention = excluded.retention
                """)
        }
    }
}

/// The per-topic configuration a broker's commits enforce, kept between commits and read again
/// after anything that may have changed it: a change this broker committed, another broker's
/// notice, or a poll (which follows notices that may have been lost).
final class PostgresTopicConfigCache: Sendable {
    private struct State {
        var configs: TopicConfigs?
        /// Counts what may have changed the stored configuration; `configs` is as of `readAt`.
        var changes: UInt64 = 0
        var readAt: UInt64 = 0
    }

    private let state = Mutex(State())

    /// The stored configuration may have changed.
    func invalidate() {
        state.withLock { $0.changes += 1 }
    }

    /// The cached configuration, or the one `read` returns when it may be stale.
    func current(_ read: () throws(StoreError) -> TopicConfigs) throws(StoreError) -> TopicConfigs {
        let (cached, changes) = state.withLock { state in (state.readAt == state.changes ? state.configs : nil, state.changes) }
        if let cached { return cached }
        let fresh = try read()
        // A change noted during the read leaves the cache stale, for the next commit to read again.
        state.withLock { state in
            if state.changes == changes {
                state.configs = fresh
                state.readAt = changes
            }
        }
        return fresh
    }
}
