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
