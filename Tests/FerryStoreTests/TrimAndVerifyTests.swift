import FerryStore
import Foundation
import Testing

@Suite("MessageStore, every engine: operator trims")
struct TrimTests {
    @Test("a trim deletes the versions up to `through`, keeps the counts, and never reuses a version", arguments: StoreEngine.allCases)
    func trims(engine: StoreEngine) throws {
        try withStore(engine) { store in
            for n in 1...5 { try store.publish(publishJSON("t", "\(n)")) }
            let result = try store.commit([.trimTopic("t", through: 3)], now: t0)
            #expect(result.outcomes == [.done])
            let record = try #require(result.topics["t"] ?? nil)
            #expect((record.first, record.head, record.messages, record.bytes) == (4, 5, 2, 2))
            #expect(try store.storedVersions("t") == [4, 5])
            #expect(try store.publish(publishJSON("t", "6")) == 6)
            #expect(try store.verify().isEmpty)
        }
    }

    @Test("trimming everything leaves an empty log at head + 1; below first or of no topic changes nothing", arguments: StoreEngine.allCases)
    func edges(engine: StoreEngine) throws {
        try withStore(engine) { store in
            for n in 1...3 { try store.publish(publishJSON("t", "\(n)")) }
            _ = try store.commit([.trimTopic("t", through: 3)], now: t0)
            #expect(try store.topic("t").map { ($0.first, $0.head, $0.messages) } ?? (0, 0, 0) == (4, 3, 0))
            let again = try store.commit([.trimTopic("t", through: 2), .trimTopic("none", through: 9)], now: t0)
            #expect(again.topics.isEmpty)
            #expect(try store.topic("none") == nil)
            #expect(try store.verify().isEmpty)
        }
    }
}

@Suite("MessageStore, every engine: verify")
struct VerifyConformanceTests {
    @Test("a store written only through commits verifies clean, also when opened again", arguments: StoreEngine.allCases)
    func clean(engine: StoreEngine) throws {
        try withFixture(engine) { fixture in
            do {
                let store = try fixture.open()
                try store.publish(publishJSON("t", "1", msgID: "a"))
                try store.publish(publishJSON("t", "2"))
                _ = try store.commit(
                    [
                        .putSession(session("c")), .putSubscription(subscription("c", "t", floor: 2)), .deleteTopic("gone"),
                        publishJSON("r", "1"), .trimTopic("r", through: 1), .sweep,
                    ], now: t0)
                #expect(try store.verify().isEmpty)
            }
            #expect(try fixture.open().verify().isEmpty)
        }
    }
}

@Suite("LMDBMessageStore: verify")
struct VerifyTests {
    @Test("a store opened read-only verifies clean and refuses commits")
    func readOnly() throws {
        try withTemporaryFolder { path in
            do {
                let store = try openStore(at: path)
                try store.publish(publishJSON("t", "1", msgID: "a"))
                _ = try store.commit([.putSession(session("c")), .putSubscription(subscription("c", "t", floor: 1))], now: t0)
            }
            let readOnly = try openStore(at: path) { $0.readOnly = true }
            #expect(try readOnly.verify().isEmpty)
            #expect(throws: StoreError.self) { try readOnly.commit([publishJSON("t", "3")], now: t0) }
        }
    }

    @Test("read-only refuses a folder that is not a Ferry store")
    func notAStore() throws {
        try withTemporaryFolder { path in
            #expect(throws: StoreError.self) { try openStore(at: path) { $0.readOnly = true } }
            #expect(!FileManager.default.fileExists(atPath: path), "a read-only open creates nothing")
        }
    }

    @Test("an orphan subscription and a dedup entry past head are named")
    func faults() throws {
        try withTemporaryFolder { path in
            let epoch: String
            do {
                let store = try openStore(at: path)
                try store.publish(publishJSON("t", "1"))
                epoch = try #require(try store.topic("t")).epoch
                // The subscription of a client whose session was never stored.
                _ = try store.commit([.putSubscription(SubscriptionRecord(clientID: "ghost", topic: "t", epoch: epoch, ackFloor: 0, window: 1))], now: t0)
            }
            do {
                // One environment of a folder per process at a time: the store above is closed.
                var options = LMDBOptions()
                options.mapSize = 64 << 20
                let environment = try LMDBEnvironment(path: path, options: options)
                let dedup = try environment.openDatabase("dedup")
                let byTime = try environment.openDatabase("dedup_by_time")
                try environment.write { txn throws(LMDBError) in
                    // Topic 1 remembers msg_id "m" as version 7 at t0, with its expiry entry.
                    try txn.put(dedup, key(1) + Array("m".utf8), key(7) + key(t0))
                    try txn.put(byTime, key(t0) + key(1) + Array("m".utf8), [])
                }
            }
            let faults = try openStore(at: path) { $0.readOnly = true }.verify()
            #expect(faults.map(\.kind) == [.orphanSubscription, .dedupMismatch], "\(faults)")
            #expect(faults.last?.description == "dedup_mismatch: t: msg_id m names version 7, above head 1")
        }
    }
}
