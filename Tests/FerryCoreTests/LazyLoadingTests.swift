import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import Testing

/// The broker reads a session when its hello arrives and a topic when it is first named, not
/// everything at start; what an operator lists still comes from the store.
@Suite("Lazy loading")
struct LazyLoadingTests {
    /// A broker with durable client `c` on topic `t` (versions 1-3, acked to 1) and topic `u`,
    /// reopened: nothing of them is in memory yet.
    private func reopenedWithState(readsOnThreads: Bool) async throws -> BrokerFixture {
        let fixture = try BrokerFixture(readsOnThreads: readsOnThreads, configureBroker: { $0.sessionTTL = 60_000 })
        let client = TestClient(fixture.broker)
        _ = try await client.hello("c")
        client.send(#"{"op":"subscribe","topic":"t","from":"latest"}"#)
        _ = try await client.next(op: "subscribed")
        try await fixture.publish("t", count: 3)
        try await fixture.publish("u", count: 1)
        try await client.waitFor { _ in client.versions("t").count == 3 }
        client.send(#"{"op":"ack","topic":"t","version":1}"#)
        client.disconnect()
        return try await fixture.reopened()
    }

    @Test("after a restart, listings come from the store while nothing is in memory", arguments: [false, true])
    func listingsAfterRestart(readsOnThreads: Bool) async throws {
        let fixture = try await reopenedWithState(readsOnThreads: readsOnThreads)
        #expect(try await fixture.broker.metricsSnapshot().topicsInMemory == 0)
        #expect(try await fixture.broker.topicInfos().map(\.topic) == ["t", "u"])
        #expect(try await fixture.broker.topicInfo("t")?.head == 3)
        #expect(try await fixture.broker.topicInfo("t")?.subscribers == 1)
        #expect(try await fixture.broker.clientList().clients.map(\.clientID) == ["c"])
        #expect(try await fixture.broker.clientDetail("c")?.subscriptions.first?.lag == 2)
        let stats = try await fixture.broker.stats()
        #expect(stats.topics == 2)
        #expect(stats.sessions == 1)
        #expect(try await fixture.broker.messages(topic: "u", after: 0, limit: 10)?.messages.count == 1)
        // Reading did not keep them.
        #expect(try await fixture.broker.metricsSnapshot().topicsInMemory == 0)
        await fixture.remove()
    }

    @Test("a hello and the frames behind it in one read are handled in order, the session read from the store", arguments: [false, true])
    func pipelinedHelloAfterRestart(readsOnThreads: Bool) async throws {
        let fixture = try await reopenedWithState(readsOnThreads: readsOnThreads)
        let client = TestClient(fixture.broker)
        client.connection.receive(contentsOf: [
            #"{"op":"hello","client_id":"c"}"#, #"{"op":"subscribe","topic":"u","from":"earliest","id":1}"#,
            #"{"op":"publish","topic":"t","data":{"n":4},"id":2}"#, #"{"op":"ping","id":3}"#,
        ].map { Array($0.utf8) })
        // A publish is answered after its commit, so `published` may follow the pong.
        try await client.waitFor { frames in frames.contains { $0["op"] == "pong" } && frames.contains { $0["op"] == "published" } }
        let replies = client.frames.filter { ["welcome", "subscribed", "pong"].contains($0["op"] ?? "") }.map { $0["op"] ?? "" }
        #expect(replies == ["welcome", "subscribed", "pong"])
        #expect(client.frames.first { $0["op"] == "published" }?["version"] == "4")
        #expect(client.frames.first?["resumed"] == "1")
        // The restored subscription resumes after its floor; the new one starts at the oldest.
        try await client.waitFor { _ in client.versions("t") == [2, 3, 4] && client.versions("u") == [1] }
        client.disconnect()
        await fixture.remove()
    }

    @Test("a client's last resume stays shown after it left and its state was flushed (PROTOCOL: last_resume)")
    func lastResumeAfterFlush() async throws {
        let fixture = try BrokerFixture()
        let client = TestClient(fixture.broker)
        _ = try await client.hello("c")
        client.disconnect()
        // A commit carries the deferred session write with it: the store's copy is current now.
        try await fixture.publish("t", count: 1)
        #expect(try await fixture.broker.clientDetail("c")?.lastResume?.resumed == false)
        #expect(try await fixture.broker.clientList().clients.map(\.clientID) == ["c"])
        await fixture.remove()
    }

    @Test("a session nobody named since the restart still expires")
    func expiryOfASessionNotInMemory() async throws {
        let fixture = try await reopenedWithState(readsOnThreads: false)
        #expect(try await fixture.broker.clientDetail("c") != nil)
        fixture.clock.advance(by: 61_000 + fixture.brokerConfiguration.sessionSweepInterval)
        #expect(try await fixture.expires("c"))
        await fixture.remove()
    }
}

/// What another broker on a shared store does reaches this broker's subscribers through the
/// engine's notices: one read per topic, then delivery as for its own commits.
@Suite("Changes made elsewhere")
struct ChangesElsewhereTests {
    /// A client subscribed to `t`, which this broker published versions 1 and 2 to.
    private func subscriber(of fixture: BrokerFixture) async throws -> TestClient {
        let client = TestClient(fixture.broker)
        _ = try await client.hello("c")
        client.send(#"{"op":"subscribe","topic":"t","from":"latest"}"#)
        _ = try await client.next(op: "subscribed")
        try await fixture.publish("t", count: 2)
        try await client.waitFor { _ in client.versions("t") == [1, 2] }
        return client
    }

    /// "Another broker" publishes `numbers` to `t`: straight to the store, so this broker learns
    /// of it only by a notice.
    private func publishElsewhere(_ numbers: ClosedRange<Int>, in fixture: BrokerFixture, _ shared: ReadsThatMayBlock) throws {
        let operations = numbers.map { StoreOperation.publish(NewMessage(topic: "t", kind: .json, payload: Array("{\"n\":\($0)}".utf8))) }
        _ = try shared.store.commit(operations, now: fixture.clock.now)
    }

    @Test func appendsTrimsAndDeletesMadeElsewhereReachSubscribers() async throws {
        let fixture = try BrokerFixture(readsOnThreads: true)
        let shared = try #require(fixture.shared)
        let client = try await subscriber(of: fixture)
        try publishElsewhere(3...5, in: fixture, shared)
        try await Task.sleep(for: .milliseconds(50))
        #expect(client.versions("t") == [1, 2], "delivered without a notice")
        shared.announce(.topics(["t"]))
        try await client.waitFor { _ in client.versions("t") == [1, 2, 3, 4, 5] }
        // Its own commits go on from there, with no gap and no duplicate.
        try await fixture.publish("t", count: 1, start: 6)
        try await client.waitFor { _ in client.versions("t") == [1, 2, 3, 4, 5, 6] }

        // A delete elsewhere is a reset here, after any notice (a periodic one too).
        _ = try shared.store.commit([.deleteTopic("t")], now: fixture.clock.now)
        shared.announce(.everything)
        let reset = try await client.next(op: "reset")
        #expect(reset["topic"] == "t")
        client.disconnect()
        await fixture.remove()
    }

    /// Reads of other brokers' changes overlap and may finish in any order: one that finishes
    /// after a newer one found less than the broker now knows, which is no lost tail.
    @Test func aReadThatFinishesLateIsNoLostTail() async throws {
        let fixture = try BrokerFixture(readsOnThreads: true)
        let shared = try #require(fixture.shared)
        let client = try await subscriber(of: fixture)
        let epoch = try #require(try shared.store.topic(named: "t")).epoch

        // The read of the first change finds head 5, and is held; a second read finds head 8.
        try publishElsewhere(3...5, in: fixture, shared)
        let late = shared.holdNextTopicRead()
        shared.announce(.topics(["t"]))
        await late.hasRead()
        try publishElsewhere(6...8, in: fixture, shared)
        shared.announce(.topics(["t"]))
        try await client.waitFor { _ in client.versions("t") == Array(1...8) }
        late.release.signal()

        // No new epoch, no reset: delivery goes on in the same log. (Nothing marks the late read
        // as done when it changes nothing, so the check for a reset waits a bounded while.)
        let deadline = ContinuousClock.now + .milliseconds(500)
        while ContinuousClock.now < deadline, !client.frames.contains(where: { $0["op"] == "reset" }) {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(!client.frames.contains { $0["op"] == "reset" }, "the late read reset the subscriber")
        try await fixture.publish("t", count: 1, start: 9)
        try await client.waitFor { _ in client.versions("t") == Array(1...9) }
        #expect(!client.frames.contains { $0["op"] == "reset" })
        #expect(try shared.store.topic(named: "t")?.epoch == epoch)
        client.disconnect()
        await fixture.remove()
    }
}
