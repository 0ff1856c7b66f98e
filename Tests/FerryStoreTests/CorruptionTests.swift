import FerryStore
import Foundation
import Testing

/// A record that does not decode is an error that names it, wherever it is met: never skipped,
/// never treated as absent (which would create the topic again under a reused id), never rewritten.
@Suite("LMDBMessageStore: corrupted records")
struct CorruptionTests {
    /// Overwrites one record in database `database` of the closed store at `path`.
    private func corrupt(_ path: String, database: String, key: [UInt8], value: [UInt8]) throws {
        var options = LMDBOptions()
        options.mapSize = 64 << 20
        let environment = try LMDBEnvironment(path: path, options: options)
        let db = try environment.openDatabase(database)
        try environment.write { txn throws(LMDBError) in try txn.put(db, key, value) }
    }

    /// A store at `path` with topic `t` (versions 1-2) and client `c` subscribed to it, closed again.
    private func seed(_ path: String) throws {
        let store = try openStore(at: path)
        try store.publish(publishJSON("t", "1"))
        try store.publish(publishJSON("t", "2"))
        _ = try store.commit([.putSession(session("c")), .putSubscription(subscription("c", "t"))], now: t0)
    }

    private func expectCorrupted(_ mention: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("no error; expected one naming \(mention)")
        } catch let error as StoreError {
            guard case .corrupted(let what) = error else {
                Issue.record("expected corrupted, got \(error)")
                return
            }
            #expect(what.contains(mention), "\(what)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("load names the record that does not decode and where verify runs", arguments: [
        ("topics", Array("t".utf8), "topic record 't'"),
        ("sessions", Array("c".utf8), "session record 'c'"),
        ("subscriptions", Array("c".utf8) + [0] + Array("t".utf8), "subscription record 'c/t'"),
    ])
    func loadRefuses(database: String, key: [UInt8], mention: String) throws {
        try withTemporaryFolder { path in
            try seed(path)
            try corrupt(path, database: database, key: key, value: [9])
            let store = try openStore(at: path)
            expectCorrupted(mention) { _ = try store.load() }
            expectCorrupted("ferryctl verify --data \(path)") { _ = try store.load() }
        }
    }

    @Test func aPublishToATopicWhoseRecordDoesNotDecodeFailsTheCommit() throws {
        try withTemporaryFolder { path in
            try seed(path)
            try corrupt(path, database: "topics", key: Array("t".utf8), value: [9])
            let store = try openStore(at: path)
            expectCorrupted("topic record 't'") { _ = try store.commit([publishJSON("t", "3")], now: t0) }
            expectCorrupted("topic record 't'") { _ = try store.commit([.sweep], now: t0) }
        }
    }

    @Test func aTopicIDCounterThatDoesNotDecodeIsNotReadAsOne() throws {
        try withTemporaryFolder { path in
            try seed(path)
            try corrupt(path, database: "meta", key: Array("next_topic_id".utf8), value: [1])
            let store = try openStore(at: path)
            expectCorrupted("topic id counter") { _ = try store.commit([publishJSON("new", "1")], now: t0) }
            // The existing topic still takes publishes.
            #expect(try store.publish(publishJSON("t", "3")) == 3)
        }
    }

    @Test func aRangeReadStopsAtAMessageThatDoesNotDecode() throws {
        try withTemporaryFolder { path in
            try seed(path)
            let id = try #require(try openStore(at: path).topic("t")?.id)
            let key = withUnsafeBytes(of: id.bigEndian) { Array($0) } + withUnsafeBytes(of: UInt64(2).bigEndian) { Array($0) }
            try corrupt(path, database: "messages", key: key, value: [0, 1])
            let store = try openStore(at: path)
            expectCorrupted("message 2 of topic id \(id)") { _ = try store.messages(topicID: id, after: 0, limit: 10) }
            #expect(try store.messages(topicID: id, after: 0, limit: 1).map(\.version) == [1])
        }
    }
}
