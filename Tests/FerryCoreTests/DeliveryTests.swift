import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import Testing

@Suite("Delivery and catch-up")
struct DeliveryTests {
    @Test(
        "a resuming subscriber catches up from the store, then goes live, with no gap and no duplicate (store read inline, on read threads)",
        arguments: [false, true])
    func catchUpThenLive(readsOnThreads: Bool) async throws {
        let fixture = try BrokerFixture(readsOnThreads: readsOnThreads, configureBroker: { $0.cachedMessagesPerTopic = 256 })
        let first = TestClient(fixture.broker)
        _ = try await first.hello("reader")
        first.send(#"{"op":"subscribe","topic":"t","from":"latest","window":500}"#)
        _ = try await first.next(op: "subscribed")
        first.disconnect()

        // 5,000 missed while away: far more than the cache, so catch-up pages from the store.
        try await fixture.publish("t", count: 5000)
        let client = TestClient(fixture.broker)
        let welcome = try await client.hello("reader")
        #expect(welcome["resumed"] == "1")
        // Publishes keep arriving during catch-up; the reader acks as it goes.
        async let more = fixture.publish("t", count: 5000, start: 5001)
        var acked: UInt64 = 0
        while acked < 10_000 {
            let seen = acked
            try await client.waitFor { _ in (client.versions("t").last ?? 0) > seen }
            let highest = client.versions("t").max() ?? 0
            client.send(#"{"op":"ack","topic":"t","version":\#(highest)}"#)
            acked = highest
        }
        _ = try await more
        #expect(client.versions("t") == Array(1...10_000))
        #expect(!client.frames.contains { $0["op"] == "gap" || $0["op"] == "reset" })
        client.disconnect()
        await fixture.remove()
    }

    @Test("the window bounds unacked messages in flight; an ack opens room")
    func window() async throws {
        let fixture = try BrokerFixture()
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","topic":"w","from":"earliest","window":3}"#)
        _ = try await client.next(op: "subscribed")
        try await fixture.publish("w", count: 10)
        try await client.waitFor { _ in client.versions("w").count == 3 }
        // A ping round trip proves the connection processed everything queued before it.
        client.send(#"{"op":"ping","id":1}"#)
        _ = try await client.next(op: "pong")
        #expect(client.versions("w") == [1, 2, 3])
        client.send(#"{"op":"ack","topic":"w","version":2}"#)
        try await client.waitFor { _ in client.versions("w").count == 5 }
        #expect(client.versions("w") == [1, 2, 3, 4, 5])
        client.disconnect()
        await fixture.remove()
    }

    @Test("acks above what was delivered are refused and change nothing")
    func badAck() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("a", count: 2)
        let client = TestClient(fixture.broker)
        _ = try await client.hello("acker")
        client.send(#"{"op":"subscribe","topic":"a","from":0,"window":1}"#)
        try await client.waitFor { _ in client.versions("a") == [1] }
        client.send(#"{"op":"ack","topic":"a","version":2}"#)
        #expect(try await client.next(op: "error")["code"] == "bad_ack")
        client.send(#"{"op":"ack","topic":"b","version":1}"#)
        #expect(try await client.next(op: "error")["code"] == "not_subscribed")
        #expect(try await fixture.broker.clientDetail("acker")?.subscriptions.first?.ackFloor == 0)
        client.disconnect()
        await fixture.remove()
    }

    @Test("retention past an offline subscriber's floor gives a gap, then the rest")
    func gapOnResume() async throws {
        let fixture = try BrokerFixture(configureStore: { $0.retention.maxMessages = 5 })
        let client = TestClient(fixture.broker)
        _ = try await client.hello("slow")
        client.send(#"{"op":"subscribe","topic":"g","from":"latest"}"#)
        _ = try await client.next(op: "subscribed")
        client.disconnect()
        try await fixture.publish("g", count: 12)

        let resumed = TestClient(fixture.broker)
        _ = try await resumed.hello("slow")
        try await resumed.waitFor { _ in resumed.versions("g").count == 5 }
        #expect(resumed.versions("g") == [8, 9, 10, 11, 12])
        let gapIndex = try #require(resumed.frames.firstIndex { $0["op"] == "gap" })
        #expect(resumed.frames[gapIndex]["from"] == "1" && resumed.frames[gapIndex]["to"] == "7")
        #expect(gapIndex < resumed.frames.firstIndex { $0["op"] == "msg" } ?? 0)
        resumed.disconnect()
        await fixture.remove()
    }

    @Test("deleting a topic resets its subscribers to the new log")
    func resetAfterDelete() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("d", count: 3)
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","topic":"d","from":"earliest"}"#)
        let subscribed = try await client.next(op: "subscribed")
        try await client.waitFor { _ in client.versions("d").count == 3 }
        #expect(try await fixture.broker.deleteTopic("d"))
        let reset = try await client.next(op: "reset")
        #expect(reset["old_epoch"] == subscribed["epoch"])
        let versions = try await fixture.publish("d", count: 1)
        #expect(versions == [1])
        try await client.waitFor { _ in client.versions("d").count == 4 }
        #expect(try await fixture.broker.topicInfo("d")?.epoch == reset["epoch"])
        client.disconnect()
        await fixture.remove()
    }

    @Test("subscribing with a stale epoch or a version above head resets to the first version")
    func resetOnStalePosition() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("r", count: 2)
        let client = TestClient(fixture.broker)
        _ = try await client.hello()
        client.send(#"{"op":"subscribe","topic":"r","from":1,"epoch":"not-this-one"}"#)
        let subscribed = try await client.next(op: "subscribed")
        #expect(subscribed["from"] == "1")
        #expect(try await client.next(op: "reset")["old_epoch"] == "not-this-one")
        client.send(#"{"op":"subscribe","topic":"r","from":99}"#)
        _ = try await client.next(op: "subscribed")
        #expect(try await client.next(op: "reset")["epoch"] == subscribed["epoch"])
        client.disconnect()
        await fixture.remove()
    }
}

@Suite("Sessions")
struct SessionTests {
    @Test("a newer connection with the same client id takes the session over; the old one is closed with 4009")
    func takeover() async throws {
        let fixture = try BrokerFixture()
        let old = TestClient(fixture.broker)
        _ = try await old.hello("phone")
        let new = TestClient(fixture.broker)
        let welcome = try await new.hello("phone")
        #expect(welcome["resumed"] == "1")
        try await old.waitFor { _ in old.closedWith != nil }
        #expect(old.closedWith == .sessionTakenOver)
        old.disconnect()
        new.disconnect()
        await fixture.remove()
    }

    @Test("resume tokens resume; forged ones are refused; id and token must agree")
    func tokens() async throws {
        let fixture = try BrokerFixture()
        let first = TestClient(fixture.broker)
        let token = try #require(try await first.hello("tok")["resume_token"])
        first.disconnect()

        let byToken = TestClient(fixture.broker)
        let welcome = try await byToken.hello(token: token)
        #expect(welcome["client_id"] == "tok" && welcome["resumed"] == "1")
        byToken.disconnect()

        let forged = TestClient(fixture.broker)
        forged.send(#"{"op":"hello","resume_token":"\#(token.dropLast(2))xx"}"#)
        #expect(try await forged.next(op: "error")["code"] == "bad_resume_token")
        forged.send(#"{"op":"hello","client_id":"other","resume_token":"\#(token)"}"#)
        #expect(try await forged.next(op: "error")["code"] == "session_conflict")
        // A failed hello leaves the connection open for another.
        #expect(try await forged.hello("other")["resumed"] == "0")
        forged.disconnect()
        await fixture.remove()
    }

    @Test("an unused durable session expires after the TTL")
    func sessionTTL() async throws {
        let fixture = try BrokerFixture(configureBroker: { configuration in
            configuration.sessionTTL = 60_000
            configuration.sweepInterval = 10
        })
        let client = TestClient(fixture.broker)
        _ = try await client.hello("ttl")
        client.disconnect()
        #expect(try await fixture.broker.clientDetail("ttl") != nil)
        fixture.clock.advance(by: 61_000)
        #expect(try await fixture.expires("ttl"))
        await fixture.remove()
    }

    @Test("ack floors and subscriptions survive a restart; msg_ids stay deduplicated")
    func restart() async throws {
        let fixture = try BrokerFixture()
        let client = TestClient(fixture.broker)
        _ = try await client.hello("durable")
        client.send(#"{"op":"subscribe","topic":"s","from":"latest"}"#)
        _ = try await client.next(op: "subscribed")
        let first = try await fixture.broker.publish([PublishRequest(topic: "s", payload: .bytes([1]), messageID: "m-1")]).get()
        try await fixture.publish("s", count: 4, start: 2)
        try await client.waitFor { _ in client.versions("s").count == 5 }
        client.send(#"{"op":"ack","topic":"s","version":3}"#)
        client.disconnect()

        let restarted = try await fixture.reopened()
        #expect(try await restarted.broker.clientDetail("durable")?.subscriptions.first?.ackFloor == 3)
        let again = try await restarted.broker.publish([PublishRequest(topic: "s", payload: .bytes([1]), messageID: "m-1")]).get()
        #expect(again[0].duplicate && again[0].version == first[0].version)
        let resumed = TestClient(restarted.broker)
        _ = try await resumed.hello("durable")
        try await resumed.waitFor { _ in resumed.versions("s").count == 2 }
        #expect(resumed.versions("s") == [4, 5])
        #expect(try await restarted.publish("s", count: 1, start: 6) == [6])
        resumed.disconnect()
        await restarted.remove()
    }

    @Test("age retention runs on the sweep with the injected clock")
    func ageRetention() async throws {
        let fixture = try BrokerFixture(
            configureStore: { $0.retention.maxAge = 60_000 }, configureBroker: { $0.sweepInterval = 10 })
        try await fixture.publish("old", count: 3)
        fixture.clock.advance(by: 61_000)
        let deadline = ContinuousClock.now + .seconds(10)
        while try await fixture.broker.topicInfo("old")?.messages != 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let info = try #require(try await fixture.broker.topicInfo("old"))
        #expect(info.messages == 0 && info.first == 4 && info.head == 3)
        await fixture.remove()
    }
}
