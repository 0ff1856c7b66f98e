import FerryStore
import Foundation
import Testing

@Suite("LMDBMessageStore: a full map")
struct MapFullTests {
    /// 2 MiB: small enough to fill in a test, and LMDB accepts it (the map only has to hold a few pages).
    private static func smallMap(_ configuration: inout LMDBStoreConfiguration) {
        configuration.mapSize = 2 << 20
        configuration.retention = RetentionPolicy(maxMessages: nil, maxBytes: nil, maxAge: nil)
    }

    /// A 10 KiB payload whose bytes name its version.
    private static func payload(_ n: Int) -> [UInt8] {
        Array(repeating: UInt8(truncatingIfNeeded: n), count: 10 * 1024)
    }

    @Test("publishing until full: failed(.full), reads and other operations still work, deleteTopic frees space")
    func fillThenRecover() throws {
        try withStore(configure: Self.smallMap) { store in
            var published = 0
            var full = false
            for n in 1...1000 {
                let outcome = try store.apply(publishBytes("big", Self.payload(n)), now: t0)
                if outcome == .failed(.full) {
                    full = true
                    break
                }
                #expect(outcome == .published(version: UInt64(n), timestamp: t0, duplicate: false))
                published = n
            }
            try #require(full, "2 MiB never filled up")
            #expect(published > 50)

            // Still full: a publish fails alone, the rest of its commit commits.
            let operations: [StoreOperation] = [
                publishBytes("big", Self.payload(0)), .putSubscription(subscription("c", "big", floor: 3)),
                publishJSON("small", "1"), .putSession(session("c")),
            ]
            let mixed = try store.commit(operations, now: t0 + 1)
            #expect(mixed.outcomes == [.failed(.full), .done, .failed(.full), .done])
            #expect(mixed.topics["big"] == nil)
            let snapshot = try store.load()
            #expect(snapshot.subscriptions == [subscription("c", "big", floor: 3)])
            #expect(snapshot.sessions == [session("c")])
            #expect(!snapshot.topics.contains { $0.name == "small" })

            // Nothing half-written: head is the last confirmed version and every version reads back whole.
            let record = try #require(snapshot.topics.first { $0.name == "big" })
            #expect(record.head == UInt64(published))
            #expect(record.messages == UInt64(published))
            let messages = try store.storedMessages("big")
            #expect(messages.map(\.version) == (1...published).map(UInt64.init))
            #expect(messages.allSatisfy { $0.payload == Self.payload(Int($0.version)) })

            // The reserve lets an operator delete, and then publishing works again.
            #expect(try store.apply(.deleteTopic("big"), now: t0 + 2) == .done)
            #expect(try store.topic("big") == nil)
            let again = try store.commit([publishBytes("big", Self.payload(1)), publishJSON("small", "1")], now: t0 + 3)
            #expect(again.outcomes == [.published(version: 1, timestamp: t0 + 3, duplicate: false), .published(version: 1, timestamp: t0 + 3, duplicate: false)])
            #expect(try store.storedMessages("big").map(\.payload) == [Self.payload(1)])
            #expect((try store.topic("big"))?.epoch != record.epoch)
        }
    }

    @Test("a single commit larger than the map fails its publishes and still commits its other operations")
    func oversizedCommit() throws {
        try withStore(configure: Self.smallMap) { store in
            try store.publish(publishJSON("t", "1"), now: t0)
            let operations = (1...300).map { publishBytes("t", Self.payload($0)) } + [
                .putSession(session("c")), .putSubscription(subscription("c", "t", floor: 1)),
            ]
            let result = try store.commit(operations, now: t0 + 1)
            #expect(result.outcomes.count == 302)
            #expect(result.outcomes.prefix(300).allSatisfy { $0 == .failed(.full) })
            #expect(result.outcomes.suffix(2) == [.done, .done])
            #expect(try store.load().subscriptions == [subscription("c", "t", floor: 1)])
            #expect(try store.storedVersions("t") == [1])
            #expect(try store.topic("t")?.head == 1)
            // Not stuck: a normal publish still fits.
            #expect(try store.publish(publishJSON("t", "2"), now: t0 + 2) == 2)
        }
    }
}
