import FerryStore
import PostgresNIO

extension PostgresCommit {
    /// Deletes each topic's oldest messages while a retention limit is exceeded, exactly as LMDB
    /// does: one at a time from the oldest, stopping at the first one no limit drops. Applies to the
    /// topics this commit changed, and to every topic in a sweep.
    ///
    /// It reads only the oldest few messages of each such topic (version, time, payload size; never
    /// a payload), in one statement for all of them, and reads more only while all it read were dropped.
    /// Each topic's limits are those its configuration gives it (``TopicConfigs``).
    mutating func applyRetention() throws(StoreError) {
        var names = Set(changed.compactMap { $0.value == nil ? nil : $0.key })
        if sweep { names.formUnion(current.keys) }
        // Per topic id, how many of its oldest messages to read next.
        var pending: [UInt64: (topic: TopicRecord, limit: UInt64)] = [:]
        var policies: [UInt64: (limits: RetentionPolicy, ageCutoff: Timestamp?)] = [:]
        for name in names {
            guard let topic = current[name], topic.messages > 0 else { continue }
            let policy = config.of(name).retentionLimits
            let ageCutoff = policy.maxAge.map { now > $0 ? now - $0 : 0 }
            let excess = policy.maxMessages.map { topic.messages > $0 ? topic.messages - $0 : 0 } ?? 0
            let overBytes = policy.maxBytes.map { topic.bytes > $0 } ?? false
            guard excess > 0 || overBytes || ageCutoff != nil else { continue }
            pending[topic.id] = (topic, min(excess + (overBytes ? 16 : 1), 10_000))
            policies[topic.id] = (policy, ageCutoff)
        }
        var cuts: [UInt64: UInt64] = [:]
        while !pending.isEmpty {
            let entries = pending.sorted { $0.key < $1.key }.map(\.value)
            let rows = try session.query(
                """
                SELECT c.id, m.version, m.ts, octet_length(m.payload)::bigint
                FROM unnest(\(entries.map(\.topic.id.signed))::bigint[], \(entries.map(\.topic.first.signed))::bigint[],
                    \(entries.map(\.limit.signed))::bigint[]) AS c(id, first, lim)
                CROSS JOIN LATERAL (
                    SELECT version, ts, payload FROM messages WHERE topic_id = c.id AND version >= c.first ORDER BY version LIMIT c.lim
                ) m
                ORDER BY c.id, m.version
                """)
            var oldest: [UInt64: [(version: UInt64, timestamp: Timestamp, size: UInt64)]] = [:]
            for (id, version, timestamp, size) in try PostgresMessageStore.decodeRows(rows, "message", {
                try $0.decode((Int64, Int64, Int64, Int64).self)
            }) {
                oldest[id.unsigned, default: []].append((version.unsigned, timestamp.unsigned, size.unsigned))
            }
            var next: [UInt64: (topic: TopicRecord, limit: UInt64)] = [:]
            for (id, entry) in pending {
                guard let (policy, ageCutoff) = policies[id] else { continue }
                var topic = entry.topic
                let read = oldest[id] ?? []
                var dropped = 0
                for message in read {
                    let overCount = policy.maxMessages.map { topic.messages > $0 } ?? false
                    let overBytes = policy.maxBytes.map { topic.bytes > $0 } ?? false
                    let tooOld = ageCutoff.map { message.timestamp < $0 } ?? false
                    guard topic.messages > 0, overCount || overBytes || tooOld else { break }
                    topic.messages -= 1
                    topic.bytes -= min(topic.bytes, message.size)
                    topic.first = message.version + 1
                    dropped += 1
                }
                guard dropped > 0 else { continue }
                if topic.messages == 0 { topic.first = topic.head + 1 }
                current[topic.name] = topic
                changed[topic.name] = topic
                cuts[id] = topic.first
                // All of what was read went: there may be more to drop.
                if dropped == read.count, UInt64(read.count) == entry.limit, topic.messages > 0 {
                    next[id] = (topic, min(entry.limit * 4, 10_000))
                }
            }
            pending = next
        }
        if !cuts.isEmpty { _ = try deleteBelow(cuts) }
    }

    /// Forgets the `msg_id`s older than their topic's dedup window. The newest stamp of a msg_id is
    /// in its one row, so a msg_id published again since stays. The stamp index is read up to the
    /// shortest window; a row of a topic with a longer window stays, and is looked at again by later
    /// sweeps until it expires. A sweep has every topic in `current`.
    mutating func expireMessageIDs() throws(StoreError) {
        let configs = config.configs
        func cutoff(_ window: UInt64) -> Int64 { now > window ? (now - window).signed : -1 }
        let globalCutoff = cutoff(configs.defaultDedupWindow)
        var ids: [Int64] = []
        var cutoffs: [Int64] = []
        if !configs.entries.isEmpty {
            for topic in current.values {
                let window = config.of(topic.name).dedupWindow
                guard window != configs.defaultDedupWindow else { continue }
                ids.append(topic.id.signed)
                cutoffs.append(cutoff(window))
            }
        }
        guard !ids.isEmpty else {
            if globalCutoff >= 0 { try session.query("DELETE FROM dedup WHERE stamp <= \(globalCutoff)") }
            return
        }
        let latestCutoff = cutoff(configs.shortestDedupWindow)
        guard latestCutoff >= 0 else { return }
        try session.query(
            """
            DELETE FROM dedup d WHERE d.stamp <= \(latestCutoff) AND d.stamp <= coalesce(
                (SELECT c.cut FROM unnest(\(ids)::bigint[], \(cutoffs)::bigint[]) AS c(id, cut) WHERE c.id = d.topic_id), \(globalCutoff))
            """)
    }
}
