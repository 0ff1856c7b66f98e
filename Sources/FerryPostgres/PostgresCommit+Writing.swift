import FerryProtocol
import FerryStore
import NIOCore
import PostgresNIO

extension PostgresCommit {
    // MARK: - Writing

    mutating func writeTopicsAndMessages() throws(StoreError) {
        if !deletedIDs.isEmpty {
            let ids = deletedIDs.map(\.signed)
            try session.query(
                """
                WITH m AS (DELETE FROM messages WHERE topic_id = ANY(\(ids)::bigint[])),
                d AS (DELETE FROM dedup WHERE topic_id = ANY(\(ids)::bigint[]))
                DELETE FROM topics WHERE id = ANY(\(ids)::bigint[])
                """)
            newMessages.removeAll { deletedIDs.contains($0.topicID) }
            newDedup = newDedup.filter { !deletedIDs.contains($0.key.topicID) }
        }
        if sweep { try applyInterest() }
        try applyTrims()
        try insertMessages()
        try applyRetention()
        try writeDedup()
        try upsertTopics()
    }

    /// Deletes trimmed versions, then takes what was deleted off the topics' counts.
    private mutating func applyTrims() throws(StoreError) {
        let cuts = trimCuts.filter { !deletedIDs.contains($0.key) }
        guard !cuts.isEmpty else { return }
        var removed = try deleteBelow(cuts)
        // Messages of this commit that a later trim in it covers are never inserted.
        newMessages.removeAll { pending in
            guard let cut = cuts[pending.topicID], pending.version < cut else { return false }
            removed[pending.topicID, default: (0, 0)].count += 1
            removed[pending.topicID, default: (0, 0)].bytes += UInt64(pending.message.payload.count)
            return true
        }
        for (name, var topic) in current {
            guard let gone = removed[topic.id] else { continue }
            topic.messages -= min(topic.messages, gone.count)
            topic.bytes -= min(topic.bytes, gone.bytes)
            if topic.messages == 0 { topic.first = topic.head + 1 }
            current[name] = topic
            changed[name] = topic
        }
    }

    /// Deletes, per topic id, the stored versions below its cut; returns what each lost.
    func deleteBelow(_ cuts: [UInt64: UInt64]) throws(StoreError) -> [UInt64: (count: UInt64, bytes: UInt64)] {
        let ids = cuts.keys.sorted()
        let rows = try session.query(
            """
            WITH c AS (SELECT * FROM unnest(\(ids.map(\.signed))::bigint[], \(ids.map { cuts[$0, default: 0].signed })::bigint[]) AS c(id, cut)),
            gone AS (DELETE FROM messages m USING c WHERE m.topic_id = c.id AND m.version < c.cut
                     RETURNING m.topic_id, octet_length(m.payload) AS size)
            SELECT topic_id, count(*)::bigint, coalesce(sum(size), 0)::bigint FROM gone GROUP BY topic_id
            """)
        var removed: [UInt64: (count: UInt64, bytes: UInt64)] = [:]
        for (id, count, bytes) in try PostgresMessageStore.decodeRows(rows, "deleted message count", { try $0.decode((Int64, Int64, Int64).self) }) {
            removed[id.unsigned] = (count.unsigned, bytes.unsigned)
        }
        return removed
    }

    /// All of the commit's messages in one statement.
    private func insertMessages() throws(StoreError) {
        guard !newMessages.isEmpty else { return }
        try session.query(
            """
            INSERT INTO messages (topic_id, version, ts, kind, payload, headers)
            SELECT * FROM unnest(\(newMessages.map(\.topicID.signed))::bigint[], \(newMessages.map(\.version.signed))::bigint[],
                \(Array(repeating: now.signed, count: newMessages.count))::bigint[],
                \(newMessages.map { Int16($0.message.kind.rawValue) })::smallint[],
                \(newMessages.map { ByteBuffer(bytes: $0.message.payload) })::bytea[],
                \(newMessages.map { PostgresHeaders.encode($0.message.headers) })::bytea[])
            """)
    }

    private mutating func writeDedup() throws(StoreError) {
        if !newDedup.isEmpty {
            let entries = newDedup.sorted { $0.key < $1.key }
            try session.query(
                """
                INSERT INTO dedup (topic_id, msg_id, version, stamp)
                SELECT * FROM unnest(\(entries.map(\.key.topicID.signed))::bigint[], \(entries.map { ByteBuffer(bytes: $0.key.messageID) })::bytea[],
                    \(entries.map(\.value.version.signed))::bigint[], \(entries.map(\.value.stamp.signed))::bigint[])
                ON CONFLICT (topic_id, msg_id) DO UPDATE SET version = excluded.version, stamp = excluded.stamp
                """)
        }
        if sweep { try expireMessageIDs() }
    }

    private func upsertTopics() throws(StoreError) {
        let topics = changed.values.compactMap { $0 }.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        guard !topics.isEmpty else { return }
        try session.query(
            """
            INSERT INTO topics (name, id, epoch, first, head, messages, bytes)
            SELECT * FROM unnest(\(topics.map(\.name))::text[], \(topics.map(\.id.signed))::bigint[], \(topics.map(\.epoch))::text[],
                \(topics.map(\.first.signed))::bigint[], \(topics.map(\.head.signed))::bigint[],
                \(topics.map(\.messages.signed))::bigint[], \(topics.map(\.bytes.signed))::bigint[])
            ON CONFLICT (name) DO UPDATE SET id = excluded.id, epoch = excluded.epoch, first = excluded.first,
                head = excluded.head, messages = excluded.messages, bytes = excluded.bytes
            """)
    }

    /// Deletes the sessions last seen before `cutoff` with their subscriptions; returns their ids.
    func expireSessions(lastSeenBefore cutoff: Timestamp) throws(StoreError) -> [String] {
        let rows = try session.query(
            """
            WITH expired AS (DELETE FROM sessions WHERE last_seen < \(cutoff.signed) RETURNING client_id),
                 gone AS (DELETE FROM subscriptions WHERE client_id IN (SELECT client_id FROM expired))
            SELECT client_id FROM expired ORDER BY client_id
            """)
        return try PostgresMessageStore.decodeRows(rows, "expired session") { row throws in try row.decode(String.self) }
    }

    mutating func writeSessionsAndSubscriptions() throws(StoreError) {
        if !clearedClients.isEmpty {
            try session.query("DELETE FROM subscriptions WHERE client_id = ANY(\(clearedClients.sorted())::text[])")
        }
        if !deletedSubscriptions.isEmpty {
            let keys = deletedSubscriptions.sorted()
            try session.query(
                """
                DELETE FROM subscriptions s USING unnest(\(keys.map(\.clientID))::text[], \(keys.map(\.topic))::text[]) AS k(client_id, topic)
                WHERE s.client_id = k.client_id AND s.topic = k.topic
                """)
        }
        let sorted = subscriptions.sorted { $0.key < $1.key }.map(\.value)
        for exact in [true, false] {
            let records = sorted.filter { $0.exact == exact }.map(\.record)
            guard !records.isEmpty else { continue }
            let floor = exact
                ? "excluded.ack_floor"
                : """
                CASE WHEN subscriptions.epoch = excluded.epoch
                    THEN GREATEST(subscriptions.ack_floor, excluded.ack_floor) ELSE excluded.ack_floor END
                """
            try session.query(
                """
                INSERT INTO subscriptions (client_id, topic, epoch, ack_floor, window_size, pattern)
                SELECT client_id, topic, epoch, ack_floor, window_size, NULLIF(pattern, '') FROM unnest(
                    \(records.map(\.clientID))::text[], \(records.map(\.topic))::text[], \(records.map(\.epoch))::text[],
                    \(records.map(\.ackFloor.signed))::bigint[], \(records.map { Int32(clamping: $0.window) })::integer[],
                    \(records.map { $0.pattern ?? "" })::text[]) AS r(client_id, topic, epoch, ack_floor, window_size, pattern)
                ON CONFLICT (client_id, topic) DO UPDATE SET
                    ack_floor = \(unescaped: floor), epoch = excluded.epoch, window_size = excluded.window_size,
                    pattern = excluded.pattern
                """)
        }
        let deletedSessions = sessions.filter { $0.value == nil }.keys.sorted()
        if !deletedSessions.isEmpty {
            try session.query("DELETE FROM sessions WHERE client_id = ANY(\(deletedSessions)::text[])")
        }
        let records = sessions.values.compactMap { $0 }.sorted { $0.clientID.utf8.lexicographicallyPrecedes($1.clientID.utf8) }
        if !records.isEmpty {
            try session.query(
                """
                INSERT INTO sessions (client_id, incarnation, created_at, last_seen)
                SELECT * FROM unnest(\(records.map(\.clientID))::text[], \(records.map(\.incarnation))::text[],
                    \(records.map(\.createdAt.signed))::bigint[], \(records.map(\.lastSeen.signed))::bigint[])
                ON CONFLICT (client_id) DO UPDATE SET incarnation = excluded.incarnation, created_at = excluded.created_at,
                    last_seen = excluded.last_seen
                """)
        }
    }
}
