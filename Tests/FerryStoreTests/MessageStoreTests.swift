import FerryStore
import Foundation
import Testing

@Suite("MessageStore, every engine: publishing, reading, sessions and reopening")
struct MessageStoreTests {
    @Test("a published message reads back with its kind, payload, headers and commit time", arguments: StoreEngine.allCases)
    func publishRoundTrip(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let headers = [Header("content-type", "text/x"), Header("a", ""), Header("é", "ü\"")]
            let result = try store.commit(
                [
                    publishJSON("t", #"{"b":1.50,"a":[1]}"#),
                    publishBytes("t", [0, 1, 0xFF, 0x80], headers: headers),
                    publishBytes("t", []),
                ], now: t0 + 5)
            #expect(
                result.outcomes == [
                    .published(version: 1, timestamp: t0 + 5, duplicate: false),
                    .published(version: 2, timestamp: t0 + 5, duplicate: false),
                    .published(version: 3, timestamp: t0 + 5, duplicate: false),
                ])
            let messages = try store.storedMessages("t")
            #expect(
                messages == [
                    StoredMessage(version: 1, timestamp: t0 + 5, kind: .json, payload: Array(#"{"b":1.50,"a":[1]}"#.utf8), headers: []),
                    StoredMessage(version: 2, timestamp: t0 + 5, kind: .bytes, payload: [0, 1, 0xFF, 0x80], headers: headers),
                    StoredMessage(version: 3, timestamp: t0 + 5, kind: .bytes, payload: [], headers: []),
                ])
            let record = try #require(try store.topic("t"))
            #expect(record.first == 1)
            #expect(record.head == 3)
            #expect(record.messages == 3)
            #expect(record.bytes == UInt64(#"{"b":1.50,"a":[1]}"#.utf8.count + 4))
            #expect(record.epoch.count == 12)
        }
    }

    @Test("versions are 1, 2, 3… per topic with no gaps, within and across commits; topics are independent", arguments: StoreEngine.allCases)
    func versionsPerTopic(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let first = try store.commit((1...5).map { publishJSON("a", "\($0)") }, now: t0)
            #expect(first.outcomes.map(\.version) == [1, 2, 3, 4, 5])
            let mixed = try store.commit(
                [publishJSON("b", "1"), publishJSON("a", "6"), publishJSON("b", "2"), publishJSON("c", "1")], now: t0 + 1)
            #expect(mixed.outcomes.map(\.version) == [1, 6, 2, 1])
            for n in 7...20 {
                #expect(try store.publish(publishJSON("a", "\(n)"), now: t0 + UInt64(n)) == UInt64(n))
            }
            #expect(try store.storedVersions("a") == Array(1...20))
            #expect(try store.storedVersions("b") == [1, 2])
            #expect(try store.storedVersions("c") == [1])
            // Each version holds the payload published for it.
            #expect(try store.storedMessages("a").map { String(decoding: $0.payload, as: UTF8.self) } == (1...20).map { "\($0)" })
            let records = try store.load().topics
            #expect(records.map(\.name) == ["a", "b", "c"])
            #expect(Set(records.map(\.id)).count == 3)
            #expect(Set(records.map(\.epoch)).count == 3)
            #expect(records.map(\.head) == [20, 2, 1])
        }
    }

    @Test("renewEpoch gives a new epoch only from the one named, keeping messages and versions", arguments: StoreEngine.allCases)
    func renewEpoch(engine: StoreEngine) throws {
        try withStore(engine) { store in
            try store.publish(publishJSON("t", "1"))
            try store.publish(publishJSON("t", "2"))
            let before = try #require(try store.topic("t"))
            let stale = try store.commit([.renewEpoch("t", from: "not-its-epoch", to: "x1")], now: t0)
            #expect(stale.outcomes == [.done])
            #expect(try store.topic("t") == before)
            let renewed = try store.commit([.renewEpoch("t", from: before.epoch, to: "e-renewed")], now: t0)
            #expect((renewed.topics["t"] ?? nil)?.epoch == "e-renewed")
            let after = try #require(try store.topic("t"))
            #expect([after.id, after.first, after.head, after.messages, after.bytes] == [before.id, before.first, before.head, before.messages, before.bytes])
            #expect(after.epoch == "e-renewed")
            #expect(try store.storedVersions("t") == [1, 2])
            #expect(try store.publish(publishJSON("t", "3")) == 3)
            // A name with no topic stays without one.
            _ = try store.commit([.renewEpoch("nothing", from: "a", to: "b")], now: t0)
            #expect(try store.topic("nothing") == nil)
        }
    }

    @Test("messages(topicID:after:limit:) returns versions after `after`, oldest first, at most `limit`", arguments: StoreEngine.allCases)
    func messageRanges(engine: StoreEngine) throws {
        try withStore(engine) { store in
            _ = try store.commit((1...10).map { publishJSON("r", "\($0)") } + [publishJSON("s", "1")], now: t0)
            let id = try #require(try store.topic("r")).id
            #expect(try store.messages(topicID: id, after: 0, limit: 100).map(\.version) == Array(1...10))
            #expect(try store.messages(topicID: id, after: 3, limit: 4).map(\.version) == [4, 5, 6, 7])
            #expect(try store.messages(topicID: id, after: 8, limit: 100).map(\.version) == [9, 10])
            #expect(try store.messages(topicID: id, after: 9, limit: 1).map(\.version) == [10])
            // Never runs into the next topic's messages.
            #expect(try store.messages(topicID: id, after: 10, limit: 100).isEmpty)
            #expect(try store.messages(topicID: id, after: 1000, limit: 100).isEmpty)
            #expect(try store.messages(topicID: id, after: 0, limit: 0).isEmpty)
            #expect(try store.messages(topicID: id + 1000, after: 0, limit: 100).isEmpty)
        }
    }

    @Test("a reopened store has its topics, messages, sessions, subscriptions and the same 32-byte secret", arguments: StoreEngine.allCases)
    func reopen(engine: StoreEngine) throws {
        try withFixture(engine) { fixture in
            let before: StoreSnapshot
            do {
                let store = try fixture.open()
                before = try store.load()
                #expect(before.secret.count == 32)
                #expect(try store.load().secret == before.secret)
                _ = try store.commit(
                    [
                        publishJSON("t", #"{"x":1}"#, msgID: "m1"), publishBytes("u", [1, 2, 3], headers: [Header("h", "v")]),
                        .putSession(session("alice")), .putSubscription(subscription("alice", "t", floor: 1, window: 7)),
                        .putSubscription(subscription("alice", "u")), .putSession(session("bob")),
                    ], now: t0)
                _ = try store.commit([publishJSON("t", "2")], now: t0 + 10)
            }
            let store = try fixture.open()
            let after = try store.load()
            #expect(after.secret == before.secret)
            #expect(after.topics.map(\.name) == ["t", "u"])
            #expect(after.topics.map(\.head) == [2, 1])
            #expect(after.sessions == [session("alice"), session("bob")])
            #expect(after.subscriptions == [subscription("alice", "t", floor: 1, window: 7), subscription("alice", "u")])
            #expect(
                try store.storedMessages("t") == [
                    StoredMessage(version: 1, timestamp: t0, kind: .json, payload: Array(#"{"x":1}"#.utf8), headers: []),
                    StoredMessage(version: 2, timestamp: t0 + 10, kind: .json, payload: Array("2".utf8), headers: []),
                ])
            #expect(
                try store.storedMessages("u") == [
                    StoredMessage(version: 1, timestamp: t0, kind: .bytes, payload: [1, 2, 3], headers: [Header("h", "v")])
                ])
            // The msg_id survived too, and versions continue without reuse.
            #expect(try store.apply(publishJSON("t", "again", msgID: "m1"), now: t0 + 20) == .published(version: 1, timestamp: t0, duplicate: true))
            #expect(try store.publish(publishJSON("t", "3"), now: t0 + 20) == 3)
        }
    }

    @Test("two fresh stores get different secrets", arguments: StoreEngine.allCases)
    func secretsDiffer(engine: StoreEngine) throws {
        let first = try withStore(engine) { try $0.load().secret }
        let second = try withStore(engine) { try $0.load().secret }
        #expect(first.count == 32)
        #expect(first != second)
    }

    @Test("sessions and subscriptions are put, replaced and deleted; deleteSession removes only its subscriptions", arguments: StoreEngine.allCases)
    func sessionsAndSubscriptions(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let result = try store.commit(
                [
                    .putSession(session("a")), .putSession(session("ab")), .putSession(session("a.b")),
                    .putSubscription(subscription("a", "t1")), .putSubscription(subscription("a", "t2")),
                    .putSubscription(subscription("ab", "t1")), .putSubscription(subscription("a.b", "t1")),
                ], now: t0)
            #expect(result.outcomes == Array(repeating: .done, count: 7))
            // Putting again replaces.
            _ = try store.commit([.putSession(session("a", at: t0 + 99)), .putSubscription(subscription("a", "t1", floor: 5, window: 3))], now: t0)
            var snapshot = try store.load()
            #expect(snapshot.sessions == [session("a", at: t0 + 99), session("a.b"), session("ab")])
            #expect(snapshot.subscriptions.contains(subscription("a", "t1", floor: 5, window: 3)))
            #expect(snapshot.subscriptions.count == 4)

            _ = try store.commit([.deleteSubscription(clientID: "a", topic: "t2"), .deleteSubscription(clientID: "zz", topic: "t2")], now: t0)
            snapshot = try store.load()
            #expect(snapshot.subscriptions.map { "\($0.clientID)/\($0.topic)" } == ["a/t1", "a.b/t1", "ab/t1"])

            _ = try store.commit([.putSubscription(subscription("a", "t3")), .deleteSession("a")], now: t0)
            snapshot = try store.load()
            #expect(snapshot.sessions == [session("a.b"), session("ab")])
            #expect(snapshot.subscriptions.map { "\($0.clientID)/\($0.topic)" } == ["a.b/t1", "ab/t1"])
        }
    }

    @Test("acks only raise a floor within its epoch, another epoch replaces it; putSubscription stores as given", arguments: StoreEngine.allCases)
    func ackFloors(engine: StoreEngine) throws {
        try withStore(engine) { store in
            func floor() throws -> UInt64? { try store.load().subscriptions.first?.ackFloor }
            let record = SubscriptionRecord(clientID: "c", topic: "t", epoch: "e1", ackFloor: 5, window: 4)
            _ = try store.commit([.putSession(session("c")), .raiseAckFloor(record)], now: t0)
            var lower = record
            lower.ackFloor = 3
            // Two brokers may commit one client's acks out of order during a takeover.
            _ = try store.commit([.raiseAckFloor(lower)], now: t0)
            #expect(try floor() == 5)
            _ = try store.commit([.raiseAckFloor(lower), .raiseAckFloor(record), .raiseAckFloor(lower)], now: t0)
            #expect(try floor() == 5)
            // A rewind, or a subscribe from an earlier version, is stored as given, and acks rise from it.
            _ = try store.commit([.putSubscription(lower)], now: t0)
            #expect(try floor() == 3)
            var four = lower
            four.ackFloor = 4
            _ = try store.commit([.putSubscription(SubscriptionRecord(clientID: "c", topic: "t", epoch: "e1", ackFloor: 1, window: 4)), .raiseAckFloor(four)], now: t0)
            #expect(try floor() == 4)
            lower.epoch = "e2"
            _ = try store.commit([.raiseAckFloor(lower)], now: t0)
            #expect(try store.load().subscriptions == [lower])
            // Deleted then acked again in one commit: the new record, not the greater floor.
            _ = try store.commit([.deleteSubscription(clientID: "c", topic: "t"), .raiseAckFloor(SubscriptionRecord(clientID: "c", topic: "t", epoch: "e2", ackFloor: 1, window: 4))], now: t0)
            #expect(try floor() == 1)
        }
    }

    @Test("a pattern subscription and its topics' records (the version vector) are stored, raised, taken over and deleted", arguments: StoreEngine.allCases)
    func patternSubscriptions(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let pattern = SubscriptionRecord.pattern("orders.*", clientID: "c", window: 300)
            let eu = SubscriptionRecord(clientID: "c", topic: "orders.eu", epoch: "e1", ackFloor: 2, window: 300, pattern: "orders.*")
            let us = SubscriptionRecord(clientID: "c", topic: "orders.us", epoch: "e2", ackFloor: 0, window: 300, pattern: "orders.*")
            let plain = SubscriptionRecord(clientID: "c", topic: "orders.asia", epoch: "e3", ackFloor: 1, window: 8)
            _ = try store.commit([.putSession(session("c")), .putSubscription(pattern), .putSubscription(eu), .raiseAckFloor(us), .putSubscription(plain)], now: t0)
            var raised = us
            raised.ackFloor = 7
            _ = try store.commit([.raiseAckFloor(raised)], now: t0)
            func stored() throws -> [SubscriptionRecord] { try #require(try store.session(clientID: "c")).subscriptions.sorted { $0.topic < $1.topic } }
            #expect(try stored() == [pattern, plain, eu, raised])
            #expect(try stored().filter(\.isPattern) == [pattern])
            // An explicit subscribe takes a topic over from its pattern: the record no longer names it.
            var taken = eu
            taken.pattern = nil
            _ = try store.commit([.putSubscription(taken)], now: t0)
            #expect(try stored() == [pattern, plain, taken, raised])
            #expect(try store.subscriptions(topic: "orders.us") == [raised])
            #expect(try store.verify().isEmpty)
            _ = try store.commit([.deleteSubscription(clientID: "c", topic: "orders.*"), .deleteSubscription(clientID: "c", topic: "orders.us")], now: t0)
            #expect(try stored() == [plain, taken])
        }
    }

    @Test("a store one broker uses grants every claim of a session as stored, with nothing to hand over", arguments: [StoreEngine.lmdb])
    func uncontestedClaims(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let proposed = session("c")
            #expect(try store.claimSession(proposed) == SessionClaim(stored: nil, generation: 0, handover: .memoryIsNewest))
            _ = try store.commit([.putSession(proposed), .putSubscription(subscription("c", "t", floor: 2))], now: t0)
            let claim = try store.claimSession(session("c", at: t0 + 9))
            #expect(claim.stored == StoredSession(record: proposed, subscriptions: [subscription("c", "t", floor: 2)]))
            #expect(claim.handover == .memoryIsNewest)
            #expect(try store.nodes().isEmpty)
        }
    }

    @Test("subscriptions(topic:) finds every client's subscription to that topic and no other", arguments: StoreEngine.allCases)
    func subscriptionsOfATopic(engine: StoreEngine) throws {
        try withStore(engine) { store in
            _ = try store.commit(
                [
                    .putSession(session("a")), .putSession(session("ab")),
                    .putSubscription(subscription("a", "t1")), .putSubscription(subscription("a", "t10")),
                    .putSubscription(subscription("ab", "t1", floor: 4)), .putSubscription(subscription("ab", "t")),
                ], now: t0)
            let found = try store.subscriptions(topic: "t1").sorted { $0.clientID < $1.clientID }
            #expect(found == [subscription("a", "t1"), subscription("ab", "t1", floor: 4)])
            #expect(try store.subscriptions(topic: "t").map(\.clientID) == ["ab"])
            #expect(try store.subscriptions(topic: "nothing").isEmpty)
        }
    }

    @Test("ensureTopic creates the topic with the given epoch, once", arguments: StoreEngine.allCases)
    func ensureTopic(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let created = try store.commit([.ensureTopic("t", epoch: "epoch-1")], now: t0)
            #expect(created.outcomes == [.done])
            let record = try #require(created.topics["t"] ?? nil)
            #expect(record.epoch == "epoch-1")
            #expect(record.head == 0)
            #expect(record.first == 1)
            #expect(record.messages == 0)
            #expect(try store.topic("t") == record)

            // Idempotent: a second ensure (even with another epoch) changes nothing.
            let again = try store.commit([.ensureTopic("t", epoch: "epoch-2")], now: t0)
            #expect(again.outcomes == [.done])
            #expect(again.topics.isEmpty)
            #expect(try store.topic("t") == record)

            // A publish goes into the ensured log.
            #expect(try store.publish(publishJSON("t", "1")) == 1)
            #expect(try store.topic("t")?.epoch == "epoch-1")
            #expect(try store.topic("t")?.id == record.id)

            // Ensure then publish in one commit: the publish uses the new topic's epoch.
            let both = try store.commit([.ensureTopic("n", epoch: "epoch-n"), publishJSON("n", "1")], now: t0)
            #expect(both.outcomes == [.done, .published(version: 1, timestamp: t0, duplicate: false)])
            #expect(try store.topic("n")?.epoch == "epoch-n")
        }
    }

    @Test("CommitResult.topics reports the state after commit of exactly the changed topics, nil for deleted ones", arguments: StoreEngine.allCases)
    func commitReportsChangedTopics(engine: StoreEngine) throws {
        try withStore(engine) { store in
            _ = try store.commit([publishJSON("a", "1"), publishJSON("gone", "1"), publishJSON("quiet", "1")], now: t0)
            let operations: [StoreOperation] = [
                publishJSON("a", "2"), publishJSON("a", "3"), publishJSON("b", "1"),
                .deleteTopic("gone"), .deleteTopic("never-existed"), .putSession(session("s")),
            ]
            let result = try store.commit(operations, now: t0 + 1)
            #expect(Set(result.topics.keys) == ["a", "b", "gone"])
            let a = try #require(result.topics["a"] ?? nil)
            #expect((a.first, a.head, a.messages) == (1, 3, 3))
            #expect(a == (try store.topic("a")))
            #expect((try #require(result.topics["b"] ?? nil)).head == 1)
            #expect(result.topics["gone"] == .some(nil))
            #expect(try store.topic("gone") == nil)
            #expect(result.outcomes.suffix(3) == [.done, .done, .done])
        }
    }

    @Test("deleteTopic removes messages and msg_ids; a later publish starts a new log at version 1 with a new epoch", arguments: StoreEngine.allCases)
    func deleteTopic(engine: StoreEngine) throws {
        try withFixture(engine) { fixture in
            let store = try fixture.open()
            _ = try store.commit((1...5).map { publishJSON("t", "\($0)", msgID: "m\($0)") } + [publishJSON("keep", "1", msgID: "k")], now: t0)
            let old = try #require(try store.topic("t"))
            #expect(try fixture.storedMessageCount(store) == 6)
            #expect(try fixture.rememberedMessageIDs(store) == 6)

            #expect(try store.apply(.deleteTopic("t"), now: t0 + 1) == .done)
            #expect(try store.topic("t") == nil)
            #expect(try store.messages(topicID: old.id, after: 0, limit: 100).isEmpty)
            #expect(try fixture.storedMessageCount(store) == 1)
            #expect(try fixture.rememberedMessageIDs(store) == 1)
            #expect(try store.storedVersions("keep") == [1])

            // Same msg_id again: a new message in the new log, not a duplicate of the old one.
            #expect(try store.apply(publishJSON("t", "new", msgID: "m3"), now: t0 + 2) == .published(version: 1, timestamp: t0 + 2, duplicate: false))
            let new = try #require(try store.topic("t"))
            #expect(new.epoch != old.epoch)
            #expect(new.id != old.id)
            #expect((new.first, new.head, new.messages) == (1, 1, 1))
            #expect(try store.storedMessages("t").map(\.payload) == [Array("new".utf8)])
        }
    }

    @Test("deleting and republishing a topic in one commit gives a fresh log", arguments: StoreEngine.allCases)
    func deleteAndRepublishInOneCommit(engine: StoreEngine) throws {
        try withStore(engine) { store in
            _ = try store.commit([publishJSON("t", "1"), publishJSON("t", "2")], now: t0)
            let old = try #require(try store.topic("t"))
            let result = try store.commit([.deleteTopic("t"), publishJSON("t", "fresh")], now: t0 + 1)
            #expect(result.outcomes == [.done, .published(version: 1, timestamp: t0 + 1, duplicate: false)])
            let new = try #require(result.topics["t"] ?? nil)
            #expect(new.epoch != old.epoch)
            #expect(try store.storedMessages("t").map(\.payload) == [Array("fresh".utf8)])
        }
    }

    @Test("operations of one commit apply in order: trim between publishes, create then delete, delete then create", arguments: StoreEngine.allCases)
    func operationsApplyInOrder(engine: StoreEngine) throws {
        try withStore(engine) { store in
            let trimmed = try store.commit(
                [publishJSON("t", "1"), publishJSON("t", "22"), publishJSON("t", "333"), .trimTopic("t", through: 2), publishJSON("t", "4444")],
                now: t0)
            #expect(trimmed.outcomes.map(\.version) == [1, 2, 3, nil, 4])
            #expect(try store.storedVersions("t") == [3, 4])
            let t = try #require(trimmed.topics["t"] ?? nil)
            #expect([t.first, t.head, t.messages, t.bytes] == [3, 4, 2, 7])
            #expect(try store.topic("t") == t)

            let shortLived = try store.commit([publishJSON("u", "1", msgID: "m"), .deleteTopic("u"), publishJSON("w", "1", msgID: "m"),
                .deleteTopic("w"), publishJSON("w", "2", msgID: "m")], now: t0)
            #expect(shortLived.outcomes[4] == .published(version: 1, timestamp: t0, duplicate: false))
            #expect(shortLived.topics["u"] == .some(nil))
            #expect(try store.topic("u") == nil)
            #expect(try store.storedMessages("w").map(\.payload) == [Array("2".utf8)])

            _ = try store.commit([.ensureTopic("v", epoch: "e1"), .deleteTopic("v"), .ensureTopic("v", epoch: "e2")], now: t0)
            #expect(try store.topic("v")?.epoch == "e2")

            let all = try store.commit([.trimTopic("t", through: 100)], now: t0)
            #expect((all.topics["t"] ?? nil).map { [$0.first, $0.head, $0.messages, $0.bytes] } == [5, 4, 0, 0])
            #expect(try store.verify().isEmpty)

            _ = try store.commit(
                [.putSession(session("s")), .putSubscription(subscription("s", "a")), .deleteSession("s"), .putSubscription(subscription("s", "b"))],
                now: t0)
            // The put after the delete is stored, without a session: sessions (and so load())
            // do not show it, verify reports it.
            let snapshot = try store.load()
            #expect(snapshot.sessions.isEmpty)
            #expect(snapshot.subscriptions.isEmpty)
            #expect(try store.verify().map(\.kind) == [.orphanSubscription])
        }
    }
}

@Suite("LMDBMessageStore: what only LMDB does (a trap-proof read, backups)")
struct LMDBOnlyStoreTests {
    @Test("reading after the highest possible version returns nothing instead of trapping")
    func readAfterMaxVersion() async throws {
        // `after + 1` would overflow; a trap would kill the broker (GET ?from=18446744073709551615).
        // The child process may die before cleaning up, so the folder is made and removed here.
        let path = temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: path) }
        await #expect(processExitsWith: .success) { [path = path as String] in
            let store = try openStore(at: path)
            _ = try store.commit([publishJSON("t", "1")], now: t0)
            let id = try #require(try store.topic("t")).id
            #expect(try store.messages(topicID: id, after: .max, limit: 10).isEmpty)
        }
    }

    @Test("backup copies the store into an empty folder; a new store opened there has the same data")
    func backup() throws {
        try withStore { store in
            _ = try store.commit(
                (1...20).map { publishJSON("t", "\($0)", msgID: "id\($0)") } + [.putSession(session("c")), .putSubscription(subscription("c", "t"))],
                now: t0)
            let original = try store.load()
            try withTemporaryFolder { path in
                let size = try store.backup(to: path)
                #expect(size > 0)
                let copy = try openStore(at: path)
                let snapshot = try copy.load()
                #expect(snapshot.topics == original.topics)
                #expect(snapshot.sessions == original.sessions)
                #expect(snapshot.subscriptions == original.subscriptions)
                #expect(snapshot.secret == original.secret)
                #expect(try copy.storedMessages("t") == store.storedMessages("t"))
                #expect(try copy.apply(publishJSON("t", "x", msgID: "id4"), now: t0 + 1) == .published(version: 4, timestamp: t0, duplicate: true))
            }
        }
    }

    @Test("backup refuses a folder that is not empty")
    func backupRefusesNonEmptyFolder() throws {
        try withStore { store in
            _ = try store.commit([publishJSON("t", "1")], now: t0)
            try withTemporaryFolder { path in
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                let marker = path + "/keep.txt"
                #expect(FileManager.default.createFile(atPath: marker, contents: Data("mine".utf8)))
                let error = #expect(throws: StoreError.self) { _ = try store.backup(to: path) }
                if case .engine? = error {} else { Issue.record("expected StoreError.engine, got \(String(describing: error))") }
                #expect(try FileManager.default.contentsOfDirectory(atPath: path) == ["keep.txt"])
                #expect(FileManager.default.contents(atPath: marker) == Data("mine".utf8))
            }
        }
    }
}
