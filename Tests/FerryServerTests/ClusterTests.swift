import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// Two real ferryd processes on one real PostgreSQL database: what one is given, the other
/// serves, with the guarantees a single broker gives.
@Suite(
    "Cluster: two brokers on one PostgreSQL", .serialized,
    .enabled(if: PostgresTestServer.isAvailable, Comment(rawValue: PostgresTestServer.unavailableReason)))
struct ClusterTests {
    @Test func aSubscriberOnOneBrokerGetsWhatIsPublishedOnTheOtherInOrder() throws {
        try withCluster { a, b in
            let (subscriber, _) = try b.session(clientID: "reader")
            try subscriber.subscribe("orders", from: "earliest")
            // Both brokers publish, one after the other: one sequence, read whole on B.
            try a.publishNumbered("orders", count: 100)
            try b.publishNumbered("orders", count: 50, startingAt: 101)
            try a.publishNumbered("orders", count: 50, startingAt: 151)
            // B told its subscriber the epoch a log of its own would have had; A made the log, so
            // the subscriber hears that with a reset (nothing was delivered before it) unless B
            // saw A's log before the subscribe.
            let first = try #require(try subscriber.nextJSON(timeout: 20))
            var messages: [JSON] = []
            if first.string("op") == "reset" {
                #expect(first.string("epoch") == (try b.topicInfo("orders").string("epoch")))
            } else {
                messages.append(first)
            }
            messages += try subscriber.collectMessages(count: 200 - messages.count, timeout: 20)
            #expect(messages.versions == Array(1...200))
            #expect(messages.map { $0.object("data")?.int("n") ?? -1 } == Array(1...200))
            #expect(try subscriber.framesWithin(0.5).isEmpty, "a duplicate or an extra frame")
        }
    }

    @Test func twoBrokersPublishingToOneTopicAtOnceMakeOneGaplessSequence() throws {
        try withCluster { a, b in
            let confirmed = Mutex<[Int]>([])
            DispatchQueue.concurrentPerform(iterations: 2) { index in
                let broker = index == 0 ? a : b
                for n in 0..<150 {
                    if let version = try? broker.publishJSON("shared", "{\"node\":\(index),\"n\":\(n)}").int("version") {
                        confirmed.withLock { $0.append(version) }
                    }
                }
            }
            let versions = confirmed.withLock { $0 }.sorted()
            #expect(versions == Array(1...300), "every publish confirmed once, with its own version")
            for broker in [a, b] {
                #expect(try broker.topicInfo("shared").int("head") == 300)
                let read = try broker.get(Ferryd.topicPath("shared") + "/messages?limit=1000")
                #expect(read.json?.objects("messages")?.versions == Array(1...300))
            }
        }
    }

    @Test func aDurableClientResumesOnTheOtherBrokerFromItsFloor() throws {
        try withCluster { a, b in
            let (first, _) = try a.session(clientID: "mobile")
            try first.subscribe("feed", from: "earliest")
            try a.publishNumbered("feed", count: 10)
            #expect(try first.collectMessages(count: 10).versions == Array(1...10))
            try first.ack("feed", 6)
            first.close()
            // A writes the floor within its flush interval: wait for the store to say so.
            let deadline = Deadline(seconds: 10)
            while try b.admin("GET", "/clients/mobile").json?.objects("subscriptions")?.first?.int("ack_floor") != 6 {
                if deadline.hasPassed { throw TestFailure("the ack floor never reached the store") }
                Thread.sleep(forTimeInterval: 0.02)
            }
            try a.publishNumbered("feed", count: 2, startingAt: 11)
            let (second, welcome) = try b.session(clientID: "mobile")
            #expect(welcome.bool("resumed") == true)
            #expect(try second.collectMessages(count: 6, timeout: 10).versions == Array(7...12))
        }
    }

    @Test func aBrokerWhoseListenConnectionIsKilledStillDelivers() throws {
        let server = try PostgresTestServer.shared.get()
        try withCluster { a, b in
            // The topic exists before B's subscriber names it, so B reads its log (no reset).
            try a.publishNumbered("alerts", count: 5)
            let (subscriber, _) = try b.session()
            try subscriber.subscribe("alerts", from: "earliest")
            #expect(try subscriber.collectMessages(count: 5, timeout: 10).versions == Array(1...5))
            // Every LISTEN of the database's brokers is cut, as a failover or a network cut would.
            let database = try clusterDatabase(of: b)
            let killed = try server.run(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '\(database)' AND query LIKE 'LISTEN%'")
            #expect(Int(killed) ?? 0 >= 1, "no LISTEN connection found to kill")
            try a.publishNumbered("alerts", count: 5, startingAt: 6)
            #expect(try subscriber.collectMessages(count: 5, timeout: 10).versions == Array(6...10))
        }
    }

    /// A failover to a replica that had not received the tail: the database's log is shorter than
    /// a broker saw. Versions must not be handed out again under the epoch clients know.
    @Test func aLogFoundShorterThanSeenGetsANewEpochAndSubscribersAreReset() throws {
        let server = try PostgresTestServer.shared.get()
        try withCluster { a, b in
            try a.publishNumbered("ledger", count: 10)
            let (subscriber, _) = try b.session()
            let subscribed = try subscriber.subscribe("ledger", from: "earliest")
            let epoch = try #require(subscribed.string("epoch"))
            #expect(try subscriber.collectMessages(count: 10, timeout: 10).versions == Array(1...10))
            // What the failover does: versions 8-10 are gone, and the head is 7.
            let database = try clusterDatabase(of: b)
            try server.run(
                """
                DELETE FROM messages WHERE version > 7 AND topic_id = (SELECT id FROM topics WHERE name = 'ledger');
                UPDATE topics SET head = 7, messages = 7, bytes = (SELECT sum(length(payload)) FROM messages
                    WHERE topic_id = topics.id) WHERE name = 'ledger';
                """, database: database)
            let reset = try subscriber.expectOp("reset", timeout: 10)
            #expect(reset.string("old_epoch") == epoch)
            let renewed = try #require(reset.string("epoch"))
            #expect(renewed != epoch)
            // From the first version of the renewed epoch, then the next publish at 8, not a silent 8.
            #expect(try subscriber.collectMessages(count: 7, timeout: 10).versions == Array(1...7))
            #expect(try a.publishJSON("ledger", "{}").string("epoch") == renewed)
            #expect(try subscriber.collectMessages(count: 1, timeout: 10).versions == [8])
        }
    }

    /// Hundreds of commits on one broker, each a notice and a read on the other: every version
    /// once, in order, in one epoch (the core test of a read that finishes late pins the order).
    @Test func aSubscriberOfATopicPublishedAtFullSpeedOnTheOtherBrokerStaysInOneEpoch() throws {
        try withCluster { a, b in
            try a.publishNumbered("stream", count: 1)
            let (subscriber, _) = try b.session()
            try subscriber.subscribe("stream", from: "earliest", window: 8192)
            let (publisher, _) = try a.session()
            for batch in 0..<400 {
                // A few publishes in flight at a time: a commit, and a notice to B, per batch or so.
                for n in 0..<10 { try publisher.sendText(TestWebSocket.publishFrame("stream", data: "\(batch * 10 + n)")) }
                for _ in 0..<10 { try publisher.expectOp("published", timeout: 20) }
            }
            let messages = try subscriber.collectMessages(count: 4001, timeout: 30)
            #expect(messages.versions == Array(1...4001))
            #expect(try b.topicInfo("stream").string("epoch") == (try a.topicInfo("stream").string("epoch")))
        }
    }

    @Test func aTopicDeletedThroughOneBrokerIsResetForSubscribersOnTheOther() throws {
        try withCluster { a, b in
            try a.publishNumbered("prices", count: 3)
            let (subscriber, _) = try b.session()
            let oldEpoch = try #require(try subscriber.subscribe("prices", from: "earliest").string("epoch"))
            #expect(try subscriber.collectMessages(count: 3, timeout: 10).versions == [1, 2, 3])
            #expect(try a.admin("DELETE", "/topics/prices").status == 200)
            let reply = try a.publishJSON("prices", #""new log""#)
            #expect(reply.int("version") == 1)
            let newEpoch = try #require(reply.string("epoch"))
            #expect(newEpoch != oldEpoch)
            // B may see the delete and the new log in one read or two: either way one reset to the new log.
            var reset = try subscriber.expectOp("reset", timeout: 10)
            #expect(reset.string("old_epoch") == oldEpoch)
            if reset.string("epoch") != newEpoch { reset = try subscriber.expectOp("reset", timeout: 10) }
            #expect(reset.string("epoch") == newEpoch)
            let message = try #require(try subscriber.collectMessages(count: 1, timeout: 10).first)
            #expect(message.int("version") == 1)
            #expect(message.string("data") == "new log")
            #expect(try b.topicInfo("prices").string("epoch") == newEpoch)
        }
    }

    @Test func aTopicConfigurationSetThroughOneBrokerIsEnforcedByTheOther() throws {
        try withCluster { a, b in
            try b.publishNumbered("orders.eu", count: 1)
            let set = try a.admin("PUT", "/config/topics/orders.%2A", json: #"{"max_messages":2,"max_message_bytes":8}"#)
            #expect(set.status == 200, "\(set)")
            // B hears of it by a notice (or its next poll): its view of the topic says when.
            let deadline = Deadline(seconds: 10)
            while try b.topicInfo("orders.eu").object("config")?.string("pattern") != "orders.*" {
                if deadline.hasPassed { throw TestFailure("broker B never applied the configuration set through A") }
                Thread.sleep(forTimeInterval: 0.02)
            }
            try b.publishNumbered("orders.eu", count: 3, startingAt: 2)
            #expect(try b.get(Ferryd.topicPath("orders.eu") + "/messages").json?.objects("messages")?.versions == [3, 4])
            #expect(try b.publishHTTP("orders.eu", body: Data(#""123456789""#.utf8)).status == 413)
            #expect(try b.admin("GET", "/config/topics").json?.objects("configs")?.first?.int("max_messages") == 2)
        }
    }

    @Test func aBrokerKilledUnderPublishLoadLosesNothingConfirmed() throws {
        try withCluster { a, b in
            let confirmed = Mutex<[Int]>([])
            let stop = Atomic<Bool>(false)
            let publisher = Thread {
                var n = 0
                while !stop.load(ordering: .relaxed) {
                    n += 1
                    guard let version = try? a.publishJSON("load", "{\"n\":\(n)}").int("version") else { continue }
                    confirmed.withLock { $0.append(version) }
                }
            }
            publisher.start()
            let deadline = Deadline(seconds: 20)
            while confirmed.withLock({ $0.count }) < 200, !deadline.hasPassed { Thread.sleep(forTimeInterval: 0.01) }
            try a.kill()
            stop.store(true, ordering: .relaxed)
            let versions = Set(confirmed.withLock { $0 })
            #expect(versions.count >= 200)
            let read = try b.get(Ferryd.topicPath("load") + "/messages?limit=1000")
            let stored = Set(read.json?.objects("messages")?.versions ?? [])
            #expect(versions.isSubset(of: stored), "confirmed but not stored: \(versions.subtracting(stored).sorted().prefix(10))")
            // B goes on serving and publishing after its peer died.
            let next = try b.publishJSON("load", "{}").int("version") ?? 0
            #expect(next == (stored.max() ?? 0) + 1)
        }
    }
}
