import FerryStore
import Foundation
import Testing

@Suite("MessageStore, every engine: msg_id deduplication")
struct DedupTests {
    @Test("the same msg_id in one batch and in a later batch is a duplicate with the original version and time", arguments: StoreEngine.allCases)
    func duplicates(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let batch = try store.commit(
                [publishJSON("t", "first", msgID: "m"), publishJSON("t", "other"), publishJSON("t", "second", msgID: "m")], now: t0)
            #expect(
                batch.outcomes == [
                    .published(version: 1, timestamp: t0, duplicate: false),
                    .published(version: 2, timestamp: t0, duplicate: false),
                    .published(version: 1, timestamp: t0, duplicate: true),
                ])
            let later = try store.commit([publishBytes("t", [9], msgID: "m")], now: t0 + 500)
            #expect(later.outcomes == [.published(version: 1, timestamp: t0, duplicate: true)])
            // A duplicate stores nothing.
            #expect(later.topics.isEmpty)
            #expect(try store.storedMessages("t").map(\.payload) == [Array("first".utf8), Array("other".utf8)])
            #expect(try store.topic("t")?.head == 2)
        }
    }

    @Test("msg_ids are per topic", arguments: StoreEngine.allCases)
    func perTopic(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let result = try store.commit([publishJSON("a", "1", msgID: "m"), publishJSON("b", "1", msgID: "m")], now: t0)
            #expect(result.outcomes.map(\.isDuplicate) == [false, false])
            #expect(try store.storedVersions("a") == [1])
            #expect(try store.storedVersions("b") == [1])
        }
    }

    @Test("after the dedup window and a sweep the msg_id is forgotten: a new version", arguments: StoreEngine.allCases)
    func windowExpires(engine: StoreEngine) throws {
        try withFixture(engine, configure: { $0.dedupWindow = 1000 }) { fixture throws in
            let store = try fixture.open()
            #expect(try store.publish(publishJSON("t", "1", msgID: "m"), now: t0) == 1)
            #expect(try store.apply(publishJSON("t", "1", msgID: "m"), now: t0 + 999) == .published(version: 1, timestamp: t0, duplicate: true))
            #expect(try fixture.rememberedMessageIDs(store) == 1)
            #expect(try store.apply(.sweep, now: t0 + 999) == .done)
            #expect(try fixture.rememberedMessageIDs(store) == 1)

            #expect(try store.apply(.sweep, now: t0 + 2000) == .done)
            #expect(try fixture.rememberedMessageIDs(store) == 0)
            if let lmdb = store as? LMDBMessageStore {
                // LMDB keeps a separate expiry index; PostgreSQL's stamp is a column of the dedup row.
                #expect(try entryCount(ofDatabase: "dedup_by_time", inBackupOf: lmdb) == 0)
            }
            #expect(try store.apply(publishJSON("t", "again", msgID: "m"), now: t0 + 2000) == .published(version: 2, timestamp: t0 + 2000, duplicate: false))
            // And the new publish is remembered in its turn.
            #expect(try store.apply(publishJSON("t", "x", msgID: "m"), now: t0 + 2500) == .published(version: 2, timestamp: t0 + 2000, duplicate: true))
        }
    }

    @Test("a sweep does not forget a msg_id that was published again after it expired", arguments: StoreEngine.allCases)
    func sweepKeepsRepublished(engine: StoreEngine) throws {
        try withStore(engine, configure: { $0.dedupWindow = 1000 }) { store throws in
            #expect(try store.publish(publishJSON("t", "1", msgID: "m"), now: t0) == 1)
            // Expired (no sweep yet): published again as a new message.
            #expect(try store.apply(publishJSON("t", "2", msgID: "m"), now: t0 + 1500) == .published(version: 2, timestamp: t0 + 1500, duplicate: false))
            // This sweep expires the first publish's entry, not the second's.
            _ = try store.apply(.sweep, now: t0 + 2100)
            #expect(try store.apply(publishJSON("t", "3", msgID: "m"), now: t0 + 2200) == .published(version: 2, timestamp: t0 + 1500, duplicate: true))
            #expect(try store.storedVersions("t") == [1, 2])
        }
    }

    @Test("publishes without msg_id remember nothing", arguments: StoreEngine.allCases)
    func noMessageID(engine: StoreEngine) throws {
        try withFixture(engine) { fixture in
            let store = try fixture.open()
            _ = try store.commit([publishJSON("t", "1"), publishJSON("t", "1")], now: t0)
            #expect(try store.storedVersions("t") == [1, 2])
            #expect(try fixture.rememberedMessageIDs(store) == 0)
        }
    }
}

@Suite("MessageStore, every engine: retention")
struct RetentionTests {
    private static func only(
        maxMessages: UInt64? = nil, maxBytes: UInt64? = nil, maxAge: UInt64? = nil
    ) -> (inout StoreSettings) -> Void {
        { $0.retention = RetentionPolicy(maxMessages: maxMessages, maxBytes: maxBytes, maxAge: maxAge) }
    }

    private func shape(_ record: TopicRecord?) -> [UInt64]? {
        record.map { [$0.first, $0.head, $0.messages, $0.bytes] }
    }

    @Test("maxMessages keeps the newest messages: first advances, count and bytes follow", arguments: StoreEngine.allCases)
    func maxMessages(engine: StoreEngine) throws {
        try withStore(engine, configure: Self.only(maxMessages: 3)) { store in
            for size in 1...5 {
                let result = try store.commit([publishBytes("t", Array(repeating: 1, count: size))], now: t0)
                // The reported state is the trimmed one.
                #expect(shape(result.topics["t"] ?? nil) == shape(try store.topic("t")))
            }
            // [first, head, messages, bytes]
            #expect(shape(try store.topic("t")) == [3, 5, 3, 3 + 4 + 5])
            #expect(try store.storedVersions("t") == [3, 4, 5])
            #expect(try store.storedMessages("t").map(\.payload.count) == [3, 4, 5])

            // One batch larger than the limit keeps the last three of it.
            let batch = try store.commit((1...7).map { publishBytes("b", Array(repeating: 2, count: $0)) }, now: t0)
            #expect(batch.outcomes.map(\.version) == Array(1...7))
            #expect(shape(try store.topic("b")) == [5, 7, 3, 5 + 6 + 7])
            #expect(try store.storedVersions("b") == [5, 6, 7])
        }
    }

    @Test("maxBytes counts payload bytes only (not headers) and trims the oldest", arguments: StoreEngine.allCases)
    func maxBytes(engine: StoreEngine) throws {
        try withStore(engine, configure: Self.only(maxBytes: 10)) { store in
            let headers = [Header("a-long-header-name", "and a long value"), Header("x", "y")]
            for n in 1...4 {
                try store.publish(publishBytes("t", Array(repeating: UInt8(n), count: 4), headers: headers), now: t0)
            }
            #expect(shape(try store.topic("t")) == [3, 4, 2, 8])
            #expect(try store.storedMessages("t").map(\.payload) == [[3, 3, 3, 3], [4, 4, 4, 4]])
            #expect(try store.storedMessages("t").allSatisfy { $0.headers == headers })
            // Exactly at the limit is allowed.
            try store.publish(publishBytes("t", [5, 5]), now: t0)
            #expect(shape(try store.topic("t")) == [3, 5, 3, 10])
        }
    }

    @Test("a message larger than maxBytes is trimmed itself, leaving an empty log that goes on counting", arguments: StoreEngine.allCases)
    func messageOverMaxBytes(engine: StoreEngine) throws {
        try withStore(engine, configure: Self.only(maxBytes: 10)) { store in
            try store.publish(publishBytes("t", [1, 2, 3]), now: t0)
            #expect(try store.publish(publishBytes("t", Array(repeating: 0, count: 20)), now: t0) == 2)
            #expect(shape(try store.topic("t")) == [3, 2, 0, 0])
            #expect(try store.storedVersions("t").isEmpty)
            #expect(try store.publish(publishBytes("t", [7]), now: t0) == 3)
            #expect(shape(try store.topic("t")) == [3, 3, 1, 1])
        }
    }

    @Test("maxAge trims old messages of untouched topics on .sweep, and of a topic at its next commit", arguments: StoreEngine.allCases)
    func maxAge(engine: StoreEngine) throws {
        try withStore(engine, configure: Self.only(maxAge: 1000)) { store in
            try store.publish(publishJSON("t", "1"), now: t0)
            try store.publish(publishJSON("t", "2"), now: t0 + 500)
            try store.publish(publishJSON("quiet", "1"), now: t0 + 500)
            // Age is only enforced for topics a commit touches (or by a sweep).
            _ = try store.commit([publishJSON("other", "1")], now: t0 + 1200)
            #expect(try store.storedVersions("t") == [1, 2])

            let sweep = try store.commit([.sweep], now: t0 + 1200)
            #expect(sweep.outcomes == [.done])
            #expect(try store.storedVersions("t") == [2])
            #expect(shape(try store.topic("t")) == [2, 2, 1, 1])
            #expect(Set(sweep.topics.keys) == ["t"])
            #expect(shape(sweep.topics["t"] ?? nil) == [2, 2, 1, 1])

            // A message exactly maxAge old is kept; older goes.
            _ = try store.commit([.sweep], now: t0 + 1500)
            #expect(try store.storedVersions("t") == [2])
            #expect(try store.storedVersions("quiet") == [1])
            _ = try store.commit([.sweep], now: t0 + 1501)
            #expect(try store.storedVersions("t").isEmpty)
            #expect(shape(try store.topic("t")) == [3, 2, 0, 0])
            #expect(try store.storedVersions("quiet").isEmpty)
            #expect(try store.storedVersions("other") == [1])

            // A publish long after applies age retention to its own topic at commit.
            try store.publish(publishJSON("other", "2"), now: t0 + 5000)
            #expect(try store.storedVersions("other") == [2])
            #expect(shape(try store.topic("other")) == [2, 2, 1, 1])
        }
    }
}
