import FerryProtocol
import FerryStore
import Foundation
import Testing

@Suite("Interest retention: the rule, and every engine at the sweep")
struct InterestRetentionTests {
    private let topic = TopicRecord(name: "i.a", id: 1, epoch: "e", first: 3, head: 9, messages: 7, bytes: 7)

    private func record(_ client: String, floor: UInt64, epoch: String = "e", pattern: String? = nil) -> SubscriptionRecord {
        SubscriptionRecord(clientID: client, topic: "i.a", epoch: epoch, ackFloor: floor, window: 8, pattern: pattern)
    }

    @Test("the lowest floor of the topic's durable subscriptions; everything with none; nothing past a stale epoch or a pattern without a position")
    func rule() {
        func cut(_ subscriptions: [SubscriptionRecord]) -> UInt64? {
            InterestRetention.deletableThrough([topic], subscriptions: subscriptions)["i.a"]
        }
        #expect(cut([]) == 9)
        #expect(cut([record("a", floor: 7), record("b", floor: 5)]) == 5)
        // Below the oldest stored version: nothing to delete.
        #expect(cut([record("a", floor: 7), record("b", floor: 2)]) == nil)
        #expect(cut([record("a", floor: 7), record("b", floor: 8, epoch: "old")]) == nil)
        let pattern = SubscriptionRecord.pattern("i.*", clientID: "p", window: 8)
        #expect(cut([record("a", floor: 7), pattern]) == nil)
        #expect(cut([record("a", floor: 7), pattern, record("p", floor: 6, pattern: "i.*")]) == 6)
        // A pattern that does not match, and other topics' records, hold nothing here.
        #expect(cut([record("a", floor: 7), .pattern("j.*", clientID: "q", window: 8), subscription("a", "i.b", floor: 0)]) == 7)
        #expect(InterestRetention.deletableThrough([TopicRecord(name: "i.a", id: 1, epoch: "e", first: 10, head: 9)], subscriptions: []).isEmpty)
    }

    @Test("an interest topic loses at the sweep what every durable subscription acked, a topic with none everything, a limits topic nothing", arguments: StoreEngine.allCases)
    func sweep(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let interest = TopicConfig(retention: .interest)
            _ = try store.commit([.putTopicConfig(try #require(TopicPattern("i.>")), interest), .putTopicConfig(try #require(TopicPattern("none")), interest)], now: t0)
            let epochs = try store.commit((1...6).flatMap { _ in ["i.a", "none", "i.pattern", "kept"].map { publishBytes($0, [1]) } }, now: t0).topics
            func epoch(_ name: String) throws -> String { try #require(epochs[name]??.epoch) }
            func floor(_ client: String, _ name: String, _ version: UInt64, pattern: String? = nil) throws -> StoreOperation {
                .raiseAckFloor(SubscriptionRecord(clientID: client, topic: name, epoch: try epoch(name), ackFloor: version, window: 8, pattern: pattern))
            }
            _ = try store.commit(
                [
                    .putSession(session("a")), .putSession(session("b")), .putSession(session("p")),
                    try floor("a", "i.a", 4), try floor("b", "i.a", 2),
                    // p's pattern matches i.pattern, where it has no position yet: it holds everything there.
                    .putSubscription(.pattern("i.*", clientID: "p", window: 8)), try floor("p", "i.a", 6, pattern: "i.*"),
                    try floor("a", "kept", 6),
                ], now: t0)
            // Nothing goes before a sweep.
            #expect(try store.storedVersions("none") == Array(1...6))
            _ = try store.commit([.sweep], now: t0)
            #expect(try store.storedVersions("i.a") == [3, 4, 5, 6])
            #expect(try store.storedVersions("none").isEmpty)
            #expect(try store.storedVersions("i.pattern") == Array(1...6))
            #expect(try store.storedVersions("kept") == Array(1...6))
            // Acks and the sweep in one commit: the acks count.
            _ = try store.commit([try floor("b", "i.a", 5), try floor("p", "i.pattern", 3, pattern: "i.*"), .sweep], now: t0)
            #expect(try store.storedVersions("i.a") == [5, 6])
            #expect(try store.storedVersions("i.pattern") == [4, 5, 6])
            #expect(try store.verify().isEmpty)
        }
    }
}
