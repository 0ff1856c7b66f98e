import FerryTestSupport
import Foundation
import Testing

/// Durable sessions across two real brokers on one real PostgreSQL: one owner at a time, the
/// last acks carried over, and operators' deletes acting on whichever broker holds a client.
@Suite(
    "Cluster: sessions across brokers", .serialized,
    .enabled(if: PostgresTestServer.isAvailable, Comment(rawValue: PostgresTestServer.unavailableReason)))
struct ClusterSessionTests {
    @Test func aSessionStillConnectedToOneBrokerIsTakenOverByTheOtherWithItsLastAcks() throws {
        // Acks wait 10 s to be committed, so only the handover can have committed the last one.
        try withCluster(environment: ["FERRY_ACK_FLUSH": "10s"]) { a, b in
            let (first, _) = try a.session(clientID: "phone")
            try first.subscribe("feed", from: "earliest")
            try a.publishNumbered("feed", count: 10)
            #expect(try first.collectMessages(count: 10, timeout: 10).versions == Array(1...10))
            try first.ack("feed", 6)
            try first.pingPong()
            // The phone reconnects through the other broker while the first connection is still open.
            let (second, welcome) = try b.session(clientID: "phone")
            #expect(welcome.bool("resumed") == true)
            #expect(welcome.objects("subscriptions")?.first?.int("ack_floor") == 6)
            #expect(first.waitForClose(timeout: 10) == 4009)
            #expect(try second.collectMessages(count: 4, timeout: 10).versions == Array(7...10))
            #expect(try second.framesWithin(0.5).isEmpty, "a message delivered twice")
            // The session has one owner: B's acks are the ones that count from now on.
            try second.ack("feed", 9)
            try second.pingPong()
            let (third, again) = try a.session(clientID: "phone")
            #expect(again.objects("subscriptions")?.first?.int("ack_floor") == 9)
            #expect(second.waitForClose(timeout: 10) == 4009)
            #expect(try third.collectMessages(count: 1, timeout: 10).versions == [10])
        }
    }

    @Test func aClientBackOnTheFirstBrokerGetsWhatItDidOnTheOther() throws {
        try withCluster { a, b in
            /// Waits until the store (read through B's admin API) has what `check` wants.
            func waitStored(_ check: ([JSON]) -> Bool) throws {
                let deadline = Deadline(seconds: 10)
                while !check(try b.admin("GET", "/clients/m").json?.objects("subscriptions") ?? []) {
                    if deadline.hasPassed { throw TestFailure("the session never reached the store") }
                    Thread.sleep(forTimeInterval: 0.02)
                }
            }
            let (first, _) = try a.session(clientID: "m")
            try first.subscribe("feed", from: "earliest")
            try a.publishNumbered("feed", count: 10)
            #expect(try first.collectMessages(count: 10, timeout: 10).versions == Array(1...10))
            try first.ack("feed", 4)
            first.close()
            try waitStored { $0.first?.int("ack_floor") == 4 }
            let (second, _) = try b.session(clientID: "m")
            #expect(try second.collectMessages(count: 6, timeout: 10).versions == Array(5...10))
            try second.ack("feed", 10)
            try second.subscribe("other", from: "earliest")
            second.close()
            try waitStored { $0.count == 2 && $0.contains { $0.string("topic") == "feed" && $0.int("ack_floor") == 10 } }
            // A still holds what it knew of the session: the store's newer state wins.
            let (_, welcome) = try a.session(clientID: "m")
            let restored = welcome.objects("subscriptions") ?? []
            #expect(restored.map { $0.string("topic") } == ["feed", "other"])
            #expect(restored.first?.int("ack_floor") == 10)
        }
    }

    @Test func theClientsOfAKilledBrokerResumeOnTheOtherFromTheirFloors() throws {
        try withCluster { a, b in
            let (client, _) = try a.session(clientID: "sensor")
            try client.subscribe("readings", from: "earliest")
            try a.publishNumbered("readings", count: 5)
            #expect(try client.collectMessages(count: 5, timeout: 10).versions == Array(1...5))
            try client.ack("readings", 5)
            // Committed within the flush interval: wait for the store to say so.
            let deadline = Deadline(seconds: 10)
            while try b.admin("GET", "/clients/sensor").json?.objects("subscriptions")?.first?.int("ack_floor") != 5 {
                if deadline.hasPassed { throw TestFailure("the ack floor never reached the store") }
                Thread.sleep(forTimeInterval: 0.02)
            }
            try a.kill()
            try b.publishNumbered("readings", count: 3, startingAt: 6)
            let (resumed, welcome) = try b.session(clientID: "sensor")
            #expect(welcome.bool("resumed") == true)
            #expect(try resumed.collectMessages(count: 3, timeout: 10).versions == Array(6...8))
        }
    }

    @Test func anOperatorDeletingAClientThroughOneBrokerClosesItsConnectionOnTheOther() throws {
        try withCluster { a, b in
            let (client, _) = try b.session(clientID: "tablet")
            try client.subscribe("news", from: "earliest")
            let deleted = try a.admin("DELETE", "/clients/tablet")
            #expect(deleted.status == 200)
            #expect(client.waitForClose(timeout: 10) == 4010)
            for broker in [a, b] { #expect(try broker.admin("GET", "/clients/tablet").status == 404) }
            // The client id starts a new session, on either broker.
            let (_, welcome) = try b.session(clientID: "tablet")
            #expect(welcome.bool("resumed") == false)
        }
    }

    /// Notices sent while a broker's LISTEN connection is down are lost: the broker's poll checks
    /// the sessions it holds, so a delete still closes the client there.
    @Test func aDeleteWhoseNoticeIsLostStillClosesTheClient() throws {
        let server = try PostgresTestServer.shared.get()
        try withCluster { a, b in
            let (client, _) = try b.session(clientID: "watch")
            try client.subscribe("time", from: "earliest")
            let id = try #require(try b.admin("GET", "/stats").json?.objects("nodes")?.first { $0.bool("this") == true }?.string("id"))
            let killed = try server.run(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'ferry \(id) %' AND query LIKE 'LISTEN%'",
                database: clusterDatabase(of: b))
            #expect(killed == "1")
            // B listens again a second later: the notice of this delete is lost on the way.
            #expect(try a.admin("DELETE", "/clients/watch").status == 200)
            #expect(client.waitForClose(timeout: 10) == 4010)
        }
    }

    @Test func eachBrokerListsTheBrokersOfTheCluster() throws {
        try withCluster { a, b in
            for broker in [a, b] {
                let nodes = try #require(try broker.admin("GET", "/stats").json?.objects("nodes"))
                #expect(nodes.count == 2)
                #expect(nodes.filter { $0.bool("this") == true }.count == 1)
                #expect(Set(nodes.compactMap { $0.string("id") }).count == 2)
            }
            let status = try ferryctl(["status", "--interval", "0"], broker: a)
            #expect(status.status == 0, "\(status)")
            let lines = status.stdout.split(separator: "\n")
            #expect(lines.contains { $0.hasPrefix("nodes ") && $0.hasSuffix(" 2 on the database") }, "\(status)")
            #expect(status.stdout.components(separatedBy: "(this broker)").count == 2, "\(status)")
            #expect(status.stdout.contains("in the database"), "\(status)")
            try a.kill()
            // A broker that is gone leaves the list once the database has seen its connections close.
            let deadline = Deadline(seconds: 10)
            while try b.admin("GET", "/stats").json?.objects("nodes")?.count != 1 {
                if deadline.hasPassed { throw TestFailure("the killed broker is still listed") }
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }
}
