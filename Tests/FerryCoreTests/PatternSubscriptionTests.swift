import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import Testing

@Suite("Pattern subscriptions: matching, shared window, overlap, resume")
struct PatternSubscriptionTests {
    /// The `subscribed` frames of topics a pattern delivers, by topic.
    private func announced(_ client: TestClient) -> [String: [String: String]] {
        Dictionary(client.frames.filter { $0["op"] == "subscribed" && $0["pattern"] != nil }.map { ($0["topic"] ?? "", $0) }) { $1 }
    }

    /// Every `msg` frame's (topic, version), in arrival order.
    private func deliveries(_ client: TestClient) -> [String] {
        client.frames.filter { $0["op"] == "msg" }.map { "\($0["topic"] ?? "")#\($0["version"] ?? "")" }
    }

    /// Publishes around the broker, into the store it shares, as another broker would.
    private func publishElsewhere(_ topic: String, _ json: String, on fixture: BrokerFixture) throws {
        let shared = try #require(fixture.shared)
        _ = try shared.store.commit([.publish(NewMessage(topic: topic, kind: .json, payload: Array(json.utf8)))], now: fixture.clock.now)
    }

    /// A ping round trip: everything queued before it was handled.
    private func settle(_ client: TestClient, id: Int) async throws {
        client.send(#"{"op":"ping","id":\#(id)}"#)
        _ = try await client.next(op: "pong")
    }

    @Test("a pattern delivers the matching topics that exist and those created later, each in order; others are not delivered", arguments: [false, true])
    func matchesExistingAndNewTopics(readsOnThreads: Bool) async throws {
        let fixture = try BrokerFixture(readsOnThreads: readsOnThreads)
        try await fixture.publish("orders.eu", count: 2)
        try await fixture.publish("orders.eu.late", count: 1)
        try await fixture.publish("invoices.eu", count: 1)
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","id":7,"topic":"orders.*","from":"earliest"}"#)
        let reply = try await client.next(op: "subscribed")
        #expect(reply["id"] == "7" && reply["topic"] == "orders.*" && reply["matched"] == "1")
        try await client.waitFor { _ in client.versions("orders.eu") == [1, 2] }
        #expect(announced(client)["orders.eu"]?["from"] == "1")
        // Created after the subscribe: delivered from its first version.
        try await fixture.publish("orders.us", count: 3)
        try await fixture.publish("orders.eu", count: 1, start: 3)
        try await client.waitFor { _ in client.versions("orders.us") == [1, 2, 3] && client.versions("orders.eu") == [1, 2, 3] }
        try await fixture.publish("orders.eu.late", count: 1, start: 2)
        try await settle(client, id: 1)
        #expect(announced(client)["orders.us"]?["pattern"] == "orders.*")
        #expect(client.versions("orders.eu.late").isEmpty && client.versions("invoices.eu").isEmpty)
        client.disconnect()
        await fixture.remove()
    }

    @Test("the window bounds unacked messages over all the pattern's topics; acks in any topic open room for the others")
    func sharedWindow() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("w.a", count: 5)
        try await fixture.publish("w.b", count: 5)
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","topic":"w.*","from":"earliest","window":3}"#)
        try await client.waitFor { _ in client.versions("w.a").count + client.versions("w.b").count == 3 }
        try await settle(client, id: 1)
        #expect(client.versions("w.a").count + client.versions("w.b").count == 3)
        // Ack everything delivered until all ten are in: never more than three unacked at once.
        var acked: [String: UInt64] = [:]
        while client.versions("w.a").count + client.versions("w.b").count < 10 {
            for topic in ["w.a", "w.b"] {
                let highest = client.versions(topic).max() ?? 0
                guard highest > acked[topic, default: 0] else { continue }
                acked[topic] = highest
                client.send(#"{"op":"ack","topic":"\#(topic)","version":\#(highest)}"#)
            }
            try await settle(client, id: 2)
            let unacked = ["w.a", "w.b"].map { UInt64(client.versions($0).count) - acked[$0, default: 0] }.reduce(0, +)
            #expect(unacked <= 3)
            try await client.waitFor { _ in client.versions("w.a").count + client.versions("w.b").count > Int(acked.values.reduce(0, +)) || acked.values.reduce(0, +) == 10 }
        }
        #expect(client.versions("w.a") == [1, 2, 3, 4, 5] && client.versions("w.b") == [1, 2, 3, 4, 5])
        client.disconnect()
        await fixture.remove()
    }

    @Test("a topic subscription takes a topic from a pattern and gives it back where it stands: no message twice, none lost")
    func topicSubscriptionOverlap() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("o.x", count: 2)
        try await fixture.publish("o.y", count: 1)
        let client = TestClient(fixture.broker)
        _ = try await client.hello("overlap")
        // o.y is subscribed on its own first: the pattern leaves it alone.
        client.send(#"{"op":"subscribe","topic":"o.y","from":"earliest"}"#)
        _ = try await client.next(op: "subscribed")
        client.send(#"{"op":"subscribe","id":1,"topic":"o.*","from":"earliest"}"#)
        try await client.waitFor { _ in client.versions("o.x") == [1, 2] && client.versions("o.y") == [1] }
        #expect(client.frames.first { $0["op"] == "subscribed" && $0["topic"] == "o.*" }?["matched"] == "1")
        #expect(announced(client)["o.y"] == nil)
        client.send(#"{"op":"ack","topic":"o.x","version":2}"#)
        // Taken over by a topic subscription from the stored floor: nothing is sent again.
        client.send(#"{"op":"subscribe","topic":"o.x"}"#)
        try await fixture.publish("o.x", count: 1, start: 3)
        try await client.waitFor { _ in client.versions("o.x") == [1, 2, 3] }
        // Given back to the pattern where it stands.
        client.send(#"{"op":"unsubscribe","id":2,"topic":"o.x"}"#)
        try await client.waitFor { _ in announced(client)["o.x"]?["from"] == "4" }
        try await fixture.publish("o.x", count: 2, start: 4)
        try await fixture.publish("o.y", count: 1, start: 2)
        try await client.waitFor { _ in client.versions("o.x") == [1, 2, 3, 4, 5] && client.versions("o.y") == [1, 2] }
        // A topic only the pattern delivers is not subscribed on its own.
        client.send(#"{"op":"unsubscribe","id":3,"topic":"o.x"}"#)
        let refused = try await client.next(op: "error")
        #expect(refused["id"] == "3" && refused["code"] == "not_subscribed")
        try await settle(client, id: 4)
        #expect(Set(deliveries(client)).count == deliveries(client).count, "\(deliveries(client))")
        client.disconnect()
        await fixture.remove()
    }

    @Test("of two patterns the first subscribed takes a topic; unsubscribing it hands its topics to the other")
    func twoPatterns() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("a.b", count: 1)
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","topic":"a.*","from":"earliest"}"#)
        client.send(#"{"op":"subscribe","topic":"a.>","from":"earliest"}"#)
        try await client.waitFor { _ in client.versions("a.b") == [1] }
        try await settle(client, id: 1)
        #expect(announced(client)["a.b"]?["pattern"] == "a.*")
        client.send(#"{"op":"unsubscribe","id":2,"topic":"a.*"}"#)
        try await client.waitFor { _ in announced(client)["a.b"]?["pattern"] == "a.>" }
        #expect(try await client.next(op: "unsubscribed")["topic"] == "a.*")
        try await fixture.publish("a.b", count: 1, start: 2)
        try await client.waitFor { _ in client.versions("a.b") == [1, 2] }
        client.send(#"{"op":"unsubscribe","topic":"a.>"}"#)
        try await settle(client, id: 3)
        try await fixture.publish("a.b", count: 1, start: 3)
        try await fixture.publish("a.c", count: 1)
        try await settle(client, id: 4)
        #expect(client.versions("a.b") == [1, 2] && client.versions("a.c").isEmpty)
        client.disconnect()
        await fixture.remove()
    }

    @Test("a durable pattern resumes each topic from its floor after a disconnect and a restart; topics created meanwhile start at 1")
    func durableResume() async throws {
        var fixture = try BrokerFixture()
        try await fixture.publish("r.a", count: 3)
        try await fixture.publish("r.b", count: 3)
        let first = TestClient(fixture.broker)
        let welcome = try await first.hello("resumer")
        first.send(#"{"op":"subscribe","topic":"r.*","from":"earliest"}"#)
        try await first.waitFor { _ in first.versions("r.a") == [1, 2, 3] && first.versions("r.b") == [1, 2, 3] }
        first.send(#"{"op":"ack","topic":"r.a","version":2}"#)
        first.send(#"{"op":"ack","topic":"r.b","version":3}"#)
        try await settle(first, id: 1)
        first.disconnect()
        try await fixture.publish("r.b", count: 1, start: 4)
        try await fixture.publish("r.c", count: 2)
        fixture = try await fixture.reopened()

        let second = TestClient(fixture.broker)
        let resumed = try await second.hello(token: welcome["resume_token"])
        #expect(resumed["resumed"] == "1")
        try await second.waitFor { _ in
            second.versions("r.a") == [3] && second.versions("r.b") == [4] && second.versions("r.c") == [1, 2]
        }
        #expect(announced(second)["r.c"]?["from"] == "1")
        try await settle(second, id: 2)
        #expect(deliveries(second).count == 4)
        // Unsubscribed: the pattern and its positions are gone from the session.
        second.send(#"{"op":"unsubscribe","id":3,"topic":"r.*"}"#)
        _ = try await second.next(op: "unsubscribed")
        let detail = try #require(try await fixture.broker.clientDetail("resumer"))
        #expect(detail.subscriptions.isEmpty && detail.patterns.isEmpty, "\(detail)")
        second.disconnect()
        await fixture.remove()
    }

    @Test("a client without a session subscribes again with its positions: each topic goes on after it, or is reset from a gone epoch")
    func positionsOfAnEphemeralClient() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("q.a", count: 3)
        try await fixture.publish("q.b", count: 2)
        let first = TestClient(fixture.broker)
        _ = try await first.hello()
        first.send(#"{"op":"subscribe","topic":"q.*","from":"earliest"}"#)
        try await first.waitFor { _ in first.versions("q.a") == [1, 2, 3] && first.versions("q.b") == [1, 2] }
        let epochA = try #require(announced(first)["q.a"]?["epoch"])
        first.disconnect()
        try await fixture.publish("q.a", count: 2, start: 4)
        try await fixture.publish("q.b", count: 1, start: 3)
        let second = TestClient(fixture.broker)
        _ = try await second.hello()
        // q.b's epoch is not its log's: it restarts from the log's first version, after a reset.
        second.send(#"{"op":"subscribe","topic":"q.*","from":"latest","positions":{"q.a":{"epoch":"\#(epochA)","version":3},"q.b":{"epoch":"gone","version":2}}}"#)
        try await second.waitFor { _ in second.versions("q.a") == [4, 5] && second.versions("q.b") == [1, 2, 3] }
        #expect(second.frames.first { $0["op"] == "reset" }?["topic"] == "q.b")
        try await settle(second, id: 1)
        #expect(deliveries(second).count == 5)
        second.disconnect()
        await fixture.remove()
    }

    @Test("a topic the principal may not read is skipped, not refused")
    func permissionsPerTopic() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("p.open", count: 1)
        try await fixture.publish("p.secret", count: 1)
        let principal = Principal(identity: .client(nil), permissions: try #require(Permissions(publishing: [], subscribing: ["p.open", "p.later"])))
        let client = TestClient(fixture.broker, principal: principal)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","id":1,"topic":"p.*","from":"earliest"}"#)
        #expect(try await client.next(op: "subscribed")["matched"] == "1")
        try await fixture.publish("p.later", count: 1)
        try await fixture.publish("p.hidden", count: 1)
        try await client.waitFor { _ in client.versions("p.open") == [1] && client.versions("p.later") == [1] }
        try await settle(client, id: 2)
        #expect(client.versions("p.secret").isEmpty && client.versions("p.hidden").isEmpty)
        #expect(!client.frames.contains { $0["op"] == "error" })
        client.disconnect()
        await fixture.remove()
    }

    @Test("limits: patterns per connection, and topics per pattern at subscribe and as topics appear")
    func limits() async throws {
        let fixture = try BrokerFixture(configureBroker: {
            $0.limits.maxPatterns = 1
            $0.limits.maxPatternTopics = 2
        })
        try await fixture.publish("l.a", count: 1)
        try await fixture.publish("l.b", count: 1)
        try await fixture.publish("m.a", count: 1)
        try await fixture.publish("m.b", count: 1)
        try await fixture.publish("m.c", count: 1)
        let client = TestClient(fixture.broker)
        let welcome = try await client.hello()
        // The test client keeps nested objects as their description: `["max_patterns": 1, …]`.
        let limits = (welcome["limits"] ?? "").dropFirst().dropLast().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(limits.contains(#""max_patterns": 1"#) && limits.contains(#""max_pattern_topics": 2"#), "\(welcome)")
        client.send(#"{"op":"subscribe","id":1,"topic":"m.*"}"#)
        let tooMany = try await client.next(op: "error")
        #expect(tooMany["id"] == "1" && tooMany["code"] == "too_many_subscriptions")
        client.send(#"{"op":"subscribe","id":2,"topic":"l.*","from":"earliest"}"#)
        #expect(try await client.next(op: "subscribed")["matched"] == "2")
        client.send(#"{"op":"subscribe","id":3,"topic":"n.*"}"#)
        let second = try await client.next(op: "error")
        #expect(second["id"] == "3" && second["code"] == "too_many_subscriptions")
        try await fixture.publish("l.c", count: 1)
        let overLimit = try await client.next(op: "error")
        #expect(overLimit["code"] == "too_many_subscriptions" && overLimit["message"]?.contains("l.c") == true)
        try await settle(client, id: 4)
        #expect(client.versions("l.c").isEmpty)
        client.disconnect()
        await fixture.remove()
    }

    @Test("a topic another broker creates (announced, or found by the poll) reaches a pattern subscriber here")
    func topicsCreatedElsewhere() async throws {
        let fixture = try BrokerFixture(readsOnThreads: true)
        let shared = try #require(fixture.shared)
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","topic":"e.*"}"#)
        _ = try await client.next(op: "subscribed")
        // Written around this broker, as another broker writes the shared store.
        try publishElsewhere("e.one", "1", on: fixture)
        shared.announce(.topics(["e.one"]))
        try await client.waitFor { _ in client.versions("e.one") == [1] }
        // A lost notice: the periodic poll finds the topic.
        try publishElsewhere("e.two", "2", on: fixture)
        shared.announce(.everything)
        try await client.waitFor { _ in client.versions("e.two") == [1] }
        client.disconnect()
        await fixture.remove()
    }

    @Test("a topic announced twice while its first read waits is held once: the pattern keeps getting it")
    func topicAnnouncedTwiceDuringItsRead() async throws {
        let fixture = try BrokerFixture(readsOnThreads: true)
        let shared = try #require(fixture.shared)
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","topic":"h.*"}"#)
        _ = try await client.next(op: "subscribed")
        let gate = shared.holdNextTopicRead()
        try publishElsewhere("h.x", "1", on: fixture)
        shared.announce(.topics(["h.x"]))
        await gate.hasRead()
        // The same topic again while the first read waits: a second start, which finds it taken.
        shared.announce(.topics(["h.x"]))
        gate.release.signal()
        try await client.waitFor { _ in client.versions("h.x") == [1] }
        try publishElsewhere("h.x", "2", on: fixture)
        shared.announce(.topics(["h.x"]))
        try await client.waitFor { _ in client.versions("h.x") == [1, 2] }
        client.disconnect()
        await fixture.remove()
    }
}
