import FerryStore
import PostgresNIO

extension PostgresMessageStore {
    /// The checks of `LMDBMessageStore.verify()`, as queries over one consistent snapshot, with the
    /// same fault kinds and messages. (There is no separate dedup expiry index to cross-check: the
    /// stamp is a column of the dedup row itself.)
    public func verify() throws(StoreError) -> [StoreFault] {
        try connections.transaction { session throws(StoreError) in
            try session.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            var faults = try Self.verifyMessages(session)
            faults += try Self.verifySubscriptions(session)
            faults += try Self.verifyDedup(session)
            return faults
        }
    }

    private static func verifyMessages(_ session: PostgresSession) throws(StoreError) -> [StoreFault] {
        var faults: [StoreFault] = []
        // Messages in order, each with the highest version before it (at least first - 1).
        let misplaced = try session.query(
            """
            SELECT t.name, m.version, m.kind, t.first, t.head, GREATEST(coalesce(m.previous, t.first - 1), t.first - 1)
            FROM topics t CROSS JOIN LATERAL (
                SELECT version, kind, max(version) OVER (ORDER BY version ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous
                FROM messages WHERE topic_id = t.id
            ) m
            WHERE m.kind NOT IN (0, 1) OR m.version < t.first OR m.version > t.head
                OR m.version <> GREATEST(coalesce(m.previous, t.first - 1), t.first - 1) + 1
            ORDER BY t.id, m.version
            """)
        for (name, version, kind, first, head, last) in try decodeRows(misplaced, "message check", {
            try $0.decode((String, Int64, Int16, Int64, Int64, Int64).self)
        }) {
            if kind != 0 && kind != 1 {
                faults.append(StoreFault(.unreadableRecord, subject: name, "message \(version)"))
            } else if version < first || version > head {
                faults.append(StoreFault(.versionOutOfRange, subject: name, "message \(version) is outside \(first)...\(head)"))
            } else {
                faults.append(StoreFault(.versionGap, subject: name, "versions \(last + 1)...\(version - 1) are missing"))
            }
        }
        let totals = try session.query(
            """
            SELECT t.name, t.first, t.head, t.messages, t.bytes, count(m.version),
                coalesce(sum(octet_length(m.payload)), 0)::bigint, coalesce(max(m.version), 0)
            FROM topics t LEFT JOIN messages m ON m.topic_id = t.id AND m.kind IN (0, 1)
            GROUP BY t.name ORDER BY t.id
            """)
        for (name, first, head, messages, bytes, count, stored, highest) in try decodeRows(totals, "topic totals", {
            try $0.decode((String, Int64, Int64, Int64, Int64, Int64, Int64, Int64).self)
        }) {
            let last = max(highest, first - 1)
            if last < head {
                faults.append(StoreFault(.versionGap, subject: name, "versions \(last + 1)...\(head) are missing"))
            }
            if count != messages || stored != bytes {
                faults.append(
                    StoreFault(
                        .countMismatch, subject: name,
                        "the record says \(messages) messages of \(bytes) bytes, the log holds \(count) of \(stored)"))
            }
        }
        let orphans = try session.query(
            """
            SELECT topic_id, count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM topics t WHERE t.id = m.topic_id)
            GROUP BY topic_id ORDER BY topic_id
            """)
        for (id, count) in try decodeRows(orphans, "orphan count", { try $0.decode((Int64, Int64).self) }) {
            faults.append(StoreFault(.orphanMessage, "\(count) messages of topic id \(id), which no topic has"))
        }
        return faults
    }

    private static func verifySubscriptions(_ session: PostgresSession) throws(StoreError) -> [StoreFault] {
        var faults: [StoreFault] = []
        let rows = try session.query(
            """
            SELECT s.client_id, s.topic, s.ack_floor, NOT EXISTS (SELECT 1 FROM sessions c WHERE c.client_id = s.client_id),
                (SELECT t.head FROM topics t WHERE t.name = s.topic AND t.epoch = s.epoch)
            FROM subscriptions s ORDER BY s.client_id, s.topic
            """)
        for (clientID, topic, floor, orphan, head) in try decodeRows(rows, "subscription check", {
            try $0.decode((String, String, Int64, Bool, Int64?).self)
        }) {
            let subject = "\(clientID) on \(topic)"
            if orphan {
                faults.append(StoreFault(.orphanSubscription, subject: subject, "no session \(clientID)"))
            }
            // A floor in an older epoch is legitimate: the client gets `reset` when it resumes.
            if let head, floor > head {
                faults.append(StoreFault(.ackFloorBeyondHead, subject: subject, "ack floor \(floor) is above head \(head)"))
            }
        }
        return faults
    }

    private static func verifyDedup(_ session: PostgresSession) throws(StoreError) -> [StoreFault] {
        let rows = try session.query(
            """
            SELECT d.topic_id, d.msg_id, d.version, t.name, t.head FROM dedup d LEFT JOIN topics t ON t.id = d.topic_id
            WHERE t.id IS NULL OR d.version > t.head ORDER BY d.topic_id, d.msg_id
            """)
        return try decodeRows(rows, "dedup check") { row throws in
            let (id, messageIDBytes, version, name, head) = try row.decode((Int64, ByteBuffer, Int64, String?, Int64?).self)
            let messageID = String(decoding: messageIDBytes.readableBytesView, as: UTF8.self)
            guard let name, let head else {
                return StoreFault(.dedupMismatch, "msg_id \(messageID) names topic id \(id), which no topic has")
            }
            return StoreFault(.dedupMismatch, subject: name, "msg_id \(messageID) names version \(version), above head \(head)")
        }
    }
}
