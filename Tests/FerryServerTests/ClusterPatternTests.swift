import FerryTestSupport
import Foundation
import Testing

/// A pattern subscription across two real brokers on one real PostgreSQL.
@Suite(
    "Cluster: pattern subscriptions across brokers", .serialized,
    .enabled(if: PostgresTestServer.isAvailable, Comment(rawValue: PostgresTestServer.unavailableReason)))
struct ClusterPatternTests {
    @Test func aPatternSessionTakenOverByTheOtherBrokerKeepsEachTopicsLastAckAndSeesTopicsCreatedOnEither() throws {
        // Acks wait 10 s to be committed, so only the handover can have committed the last ones.
        try withCluster(environment: ["FERRY_ACK_FLUSH": "10s"]) { a, b in
            try a.publishNumbered("fleet.1", count: 5)
            let (first, _) = try a.session(clientID: "dispatch")
            try first.sendJSON(["op": "subscribe", "topic": "fleet.*", "from": "earliest"])
            #expect(try first.expectOp("subscribed").int("matched") == 1)
            _ = try first.frames(untilMessages: ["fleet.1": 5])
            // Created through the other broker: its notice brings the topic to the pattern here.
            try b.publishNumbered("fleet.2", count: 3)
            let created = try first.frames(untilMessages: ["fleet.2": 3])
            #expect(created.first?.string("op") == "subscribed" && created.first?.string("pattern") == "fleet.*")
            try first.ack("fleet.1", 4)
            try first.ack("fleet.2", 2)
            try first.pingPong()

            let (second, welcome) = try b.session(clientID: "dispatch")
            #expect(first.waitForClose(timeout: 10) == 4009)
            #expect(welcome.objects("patterns")?.compactMap { $0.string("pattern") } == ["fleet.*"])
            let floors = Dictionary(uniqueKeysWithValues: (welcome.objects("subscriptions") ?? []).map { ($0.string("topic") ?? "", $0.int("ack_floor") ?? -1) })
            #expect(floors == ["fleet.1": 4, "fleet.2": 2])
            let resumed = try second.frames(untilMessages: ["fleet.1": 1, "fleet.2": 1])
            #expect(resumed.versions(of: "fleet.1") == [5] && resumed.versions(of: "fleet.2") == [3])
            try a.publishNumbered("fleet.3", count: 2)
            #expect(try second.frames(untilMessages: ["fleet.3": 2]).versions(of: "fleet.3") == [1, 2])
            #expect(try second.framesWithin(0.5).isEmpty, "a message delivered twice")
        }
    }
}

/// A queue group with members on two brokers of one database.
@Suite(
    "Cluster: queue groups across brokers", .serialized,
    .enabled(if: PostgresTestServer.isAvailable, Comment(rawValue: PostgresTestServer.unavailableReason)))
struct ClusterQueueGroupTests {
    @Test func oneBrokerServesAGroupAtATimeSoEachJobGoesToOneMemberEvenWhenThatBrokerDies() throws {
        try withCluster { a, b in
            #expect(try a.admin("PUT", "/config/topics/jobs", json: #"{"retention":"work_queue"}"#).status == 200)
            let onA = try a.queueMember("worker-a", of: "jobs", group: "workers", window: 5)
            // B learns the configuration with its notice; its member waits while A serves the group.
            var onB: TestWebSocket?
            let deadline = Deadline(seconds: 10)
            while onB == nil {
                do {
                    onB = try b.queueMember("worker-b", of: "jobs", group: "workers", window: 5)
                } catch where !deadline.hasPassed {
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
            let memberOnB = try #require(onB)
            try a.publishNumbered("jobs", count: 30)
            let got = try drainWorkQueue([onA, memberOnB], count: 30)
            #expect(got.joined().sorted() == Array(1...30), "each job once: \(got)")
            try a.awaitEmptied("jobs")
            // A takes five and dies without acking them: B serves the group and gets every job left.
            try b.publishNumbered("jobs", count: 10, startingAt: 31)
            let taken = try onA.collectMessages(count: 5, timeout: 10).versions
            #expect(taken.count == 5)
            try a.kill()
            let after = try drainWorkQueue([memberOnB], count: 10)
            #expect(Set(after.joined()) == Set(31...40), "\(after)")
            try b.awaitEmptied("jobs")
        }
    }
}
