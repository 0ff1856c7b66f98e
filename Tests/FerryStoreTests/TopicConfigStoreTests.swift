import FerryProtocol
import FerryStore
import Foundation
import Testing

/// Per-topic configuration as every engine stores and enforces it.
@Suite("MessageStore, every engine: per-topic configuration")
struct TopicConfigStoreTests {
    private func pattern(_ text: String) throws -> TopicPattern {
        try #require(TopicPattern(text))
    }

    private func put(_ text: String, _ config: TopicConfig) throws -> StoreOperation {
        .putTopicConfig(try pattern(text), config)
    }

    @Test("entries are stored as given, replaced, deleted, and outlive a reopen; the global settings come with them", arguments: StoreEngine.allCases)
    func storedAndReadBack(engine: StoreEngine) throws {
        try withFixture(engine, configure: { $0.retention = RetentionPolicy(maxMessages: 50); $0.dedupWindow = 9000 }) { fixture in
            let everything = TopicConfig(
                maxMessages: .atMost(10), maxBytes: .unlimited, maxAge: .atMost(60_000), maxMessageBytes: 512, dedupWindow: 0,
                retention: .limits)
            do {
                let store = try fixture.open()
                #expect(try store.topicConfigs().entries.isEmpty)
                let result = try store.commit(
                    [try put("orders.*", everything), try put("sensors.>", TopicConfig(maxAge: .unlimited)), try put("gone", TopicConfig())],
                    now: t0)
                #expect(result.outcomes == [.done, .done, .done])
                _ = try store.commit([try put("sensors.>", TopicConfig(maxBytes: .atMost(1 << 20))), .deleteTopicConfig(try pattern("gone"))], now: t0)
                // Deleting what does not exist changes nothing.
                #expect(try store.apply(.deleteTopicConfig(try pattern("never"))) == .done)
            }
            let store = try fixture.open()
            _ = try store.open()
            let configs = try store.topicConfigs()
            #expect(
                configs.entries == [try pattern("orders.*"): everything, try pattern("sensors.>"): TopicConfig(maxBytes: .atMost(1 << 20))])
            #expect(configs.defaultLimits == RetentionPolicy(maxMessages: 50))
            #expect(configs.defaultDedupWindow == 9000)
        }
    }

    @Test("max_messages and max_bytes of the most specific entry apply at commit; other topics keep the global limits", arguments: StoreEngine.allCases)
    func countAndBytesAtCommit(engine: StoreEngine) throws {
        try withStore(engine, configure: { $0.retention = RetentionPolicy(maxMessages: 5, maxBytes: nil, maxAge: nil) }) { store in
            _ = try store.commit(
                [
                    try put("orders.>", TopicConfig(maxMessages: .atMost(3))),
                    try put("orders.*", TopicConfig(maxMessages: .atMost(2))),
                    try put("orders.big", TopicConfig(maxMessages: .unlimited, maxBytes: .atMost(10))),
                ], now: t0)
            _ = try store.commit(
                (1...6).flatMap { n in
                    ["orders.eu", "orders.eu.1", "orders.big", "billing"].map { publishBytes($0, Array(repeating: UInt8(n), count: 4)) }
                }, now: t0)
            #expect(try store.storedVersions("orders.eu") == [5, 6])
            #expect(try store.storedVersions("orders.eu.1") == [4, 5, 6])
            // Unlimited count, but 10 payload bytes: two messages of 4.
            #expect(try store.storedVersions("orders.big") == [5, 6])
            #expect(try store.storedVersions("billing") == [2, 3, 4, 5, 6])
        }
    }

    @Test("deleting an entry falls back to a less specific one, then to the global settings", arguments: StoreEngine.allCases)
    func deleteFallsBack(engine: StoreEngine) throws {
        try withStore(engine, configure: { $0.retention = RetentionPolicy(maxMessages: 4, maxBytes: nil, maxAge: nil) }) { store in
            _ = try store.commit([try put("t.*", TopicConfig(maxMessages: .atMost(2))), try put("t.a", TopicConfig(maxMessages: .atMost(1)))], now: t0)
            _ = try store.commit((1...3).map { publishJSON("t.a", "\($0)") }, now: t0)
            #expect(try store.storedVersions("t.a") == [3])
            _ = try store.apply(.deleteTopicConfig(try pattern("t.a")))
            _ = try store.commit((4...6).map { publishJSON("t.a", "\($0)") }, now: t0)
            #expect(try store.storedVersions("t.a") == [5, 6])
            _ = try store.apply(.deleteTopicConfig(try pattern("t.*")))
            _ = try store.commit((7...12).map { publishJSON("t.a", "\($0)") }, now: t0)
            #expect(try store.storedVersions("t.a") == [9, 10, 11, 12])
        }
    }

    @Test("a lowered limit reaches the stored messages of untouched topics at the next sweep; max_age per topic too", arguments: StoreEngine.allCases)
    func sweepAppliesEachTopicsLimits(engine: StoreEngine) throws {
        try withStore(engine, configure: { $0.retention = RetentionPolicy(maxMessages: nil, maxBytes: nil, maxAge: 10_000) }) { store in
            _ = try store.commit((1...5).flatMap { n in ["a", "b", "c"].map { publishJSON($0, "\(n)") } }, now: t0)
            _ = try store.commit(
                [try put("a", TopicConfig(maxMessages: .atMost(2))), try put("b", TopicConfig(maxAge: .atMost(1000))),
                 try put("c", TopicConfig(maxAge: .unlimited))], now: t0 + 10)
            // Nothing trims before the sweep: the change itself touches no topic.
            #expect(try store.storedVersions("a") == Array(1...5))
            let sweep = try store.commit([.sweep], now: t0 + 500)
            #expect(Set(sweep.topics.keys) == ["a"])
            #expect(try store.storedVersions("a") == [4, 5])
            #expect(try store.storedVersions("b") == Array(1...5))
            _ = try store.commit([.sweep], now: t0 + 1001)
            #expect(try store.storedVersions("b").isEmpty)
            // Past the global age, only the unlimited topic keeps its messages.
            _ = try store.commit([.sweep], now: t0 + 20_000)
            #expect(try store.storedVersions("a").isEmpty)
            #expect(try store.storedVersions("c") == Array(1...5))
        }
    }

    @Test("each topic's dedup window decides duplicates at commit and expiry at the sweep, shorter or longer than the global one", arguments: StoreEngine.allCases)
    func dedupWindowPerTopic(engine: StoreEngine) throws {
        try withFixture(engine, configure: { $0.dedupWindow = 1000 }) { fixture in
            let store = try fixture.open()
            _ = try store.commit(
                [try put("short", TopicConfig(dedupWindow: 100)), try put("long", TopicConfig(dedupWindow: 5000))], now: t0)
            _ = try store.commit(["short", "long", "plain"].map { publishJSON($0, "1", msgID: "m") }, now: t0)
            #expect(try fixture.rememberedMessageIDs(store) == 3)
            // At +500: still a duplicate where the window is 1000 or 5000, not where it is 100.
            let again = try store.commit(["short", "long", "plain"].map { publishJSON($0, "2", msgID: "m") }, now: t0 + 500)
            #expect(again.outcomes.map(\.isDuplicate) == [false, true, true])
            // The short topic's new entry (stamped +500) is inside its window; its first one is forgotten.
            _ = try store.commit([.sweep], now: t0 + 550)
            #expect(try fixture.rememberedMessageIDs(store) == 3)
            _ = try store.commit([.sweep], now: t0 + 1001)
            #expect(try fixture.rememberedMessageIDs(store) == 1, "plain's (1000) and short's (100) entries expire, long's (5000) stays")
            #expect(try store.apply(publishJSON("long", "3", msgID: "m"), now: t0 + 4999).isDuplicate)
            #expect(try !store.apply(publishJSON("plain", "3", msgID: "m"), now: t0 + 4999).isDuplicate)
            _ = try store.commit([.sweep], now: t0 + 5001)
            // long's expired; plain's new one (stamped +4999) stays.
            #expect(try fixture.rememberedMessageIDs(store) == 1)
            #expect(try !store.apply(publishJSON("long", "4", msgID: "m"), now: t0 + 5002).isDuplicate)
        }
    }
}
