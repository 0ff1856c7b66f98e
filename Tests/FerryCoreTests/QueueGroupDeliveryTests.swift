import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import Testing

@Suite("Queue groups on work_queue topics: one member per message, deleted once acked")
struct QueueGroupDeliveryTests {
    private func workQueue(_ fixture: BrokerFixture, _ pattern: String) async throws {
        _ = try await fixture.broker.putTopicConfig(pattern, TopicConfigEntry(retention: "work_queue"))
    }

    private func settle(_ client: TestClient, id: Int) async throws {
        client.send(#"{"op":"ping","id":\#(id)}"#)
        _ = try await client.next(op: "pong")
    }

    @Test("members share the messages, each once; acks in any order delete the acked run; a member that leaves gives its messages to the others")
    func shareAckAndLeave() async throws {
        let fixture = try BrokerFixture()
        try await workQueue(fixture, "jobs")
        let first = TestClient(fixture.broker)
        let second = TestClient(fixture.broker)
        _ = try await first.hello("worker-1")
        _ = try await second.hello("worker-2")
        first.send(#"{"op":"subscribe","id":1,"topic":"jobs","group":"workers","window":3}"#)
        #expect(try await first.next(op: "subscribed")["group"] == "workers")
        second.send(#"{"op":"subscribe","topic":"jobs","group":"workers","window":3}"#)
        _ = try await second.next(op: "subscribed")
        try await fixture.publish("jobs", count: 10)
        try await first.waitFor { _ in first.versions("jobs").count == 3 }
        try await second.waitFor { _ in second.versions("jobs").count == 3 }
        try await settle(first, id: 1)
        try await settle(second, id: 2)
        let taken = first.versions("jobs") + second.versions("jobs")
        #expect(Set(taken).count == 6, "\(taken)")
        // Acks name single messages, in any order.
        for version in first.versions("jobs").reversed() { first.send(#"{"op":"ack","topic":"jobs","version":\#(version)}"#) }
        first.send(#"{"op":"ack","topic":"jobs","version":9}"#)
        #expect(try await first.next(op: "error")["code"] == "bad_ack")
        try await first.waitFor { _ in first.versions("jobs").count == 6 }
        // The second leaves holding three: the first gets them and the rest.
        let held = second.versions("jobs")
        second.disconnect()
        // Acks everything the first member gets, until it has had all ten.
        var acked = Set(first.versions("jobs").prefix(3))
        while acked.count < 10 {
            try await first.waitFor { _ in Set(first.versions("jobs")).count > acked.count }
            for version in first.versions("jobs") where !acked.contains(version) {
                first.send(#"{"op":"ack","topic":"jobs","version":\#(version)}"#)
                acked.insert(version)
            }
        }
        #expect(Set(held).isSubset(of: Set(first.versions("jobs"))))
        #expect(Set(first.versions("jobs")) == Set(1...10), "\(first.versions("jobs"))")
        // Everything acked: the log is empty at the next flush of acks.
        try await fixture.publish("other", count: 1)
        let deadline = ContinuousClock.now + .seconds(10)
        while try await fixture.broker.topicInfo("jobs")?.messages != 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        let info = try #require(try await fixture.broker.topicInfo("jobs"))
        #expect(info.messages == 0 && info.head == 10, "\(info)")
        first.disconnect()
        await fixture.remove()
    }

    @Test("a group on a topic that is no work queue, a durable subscription without a group to one, and a pattern over one are refused or skipped")
    func rules() async throws {
        let fixture = try BrokerFixture()
        try await workQueue(fixture, "wq.>")
        try await fixture.publish("wq.jobs", count: 2)
        try await fixture.publish("plain.jobs", count: 1)
        let durable = TestClient(fixture.broker)
        _ = try await durable.hello("d")
        durable.send(#"{"op":"subscribe","id":1,"topic":"plain.jobs","group":"g"}"#)
        #expect(try await durable.next(op: "error")["code"] == "bad_frame")
        durable.send(#"{"op":"subscribe","id":2,"topic":"wq.jobs"}"#)
        #expect(try await durable.next(op: "error")["code"] == "bad_frame")
        durable.send(#"{"op":"subscribe","id":3,"topic":"wq.*","from":"earliest"}"#)
        #expect(try await durable.next(op: "subscribed")["matched"] == "0")
        // Without a session, watching is allowed: it holds nothing.
        let watcher = TestClient(fixture.broker)
        _ = try await watcher.hello()
        watcher.send(#"{"op":"subscribe","id":4,"topic":"wq.jobs","from":"earliest"}"#)
        try await watcher.waitFor { _ in watcher.versions("wq.jobs") == [1, 2] }
        try await settle(durable, id: 5)
        #expect(durable.versions("wq.jobs").isEmpty)
        durable.disconnect()
        watcher.disconnect()
        await fixture.remove()
    }
}
