import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import Testing

@Suite("Broker administration")
struct AdminTests {
    @Test("a backup holds the acks the broker has not flushed yet")
    func backupFlushesAcks() async throws {
        // The test clock stands still, so after the publish no flush is ever due on its own.
        let fixture = try BrokerFixture()
        let client = TestClient(fixture.broker)
        _ = try await client.hello("acker")
        client.send(#"{"op":"subscribe","topic":"t","from":"earliest"}"#)
        try await fixture.publish("t", count: 3)
        try await client.waitFor { _ in client.versions("t") == [1, 2, 3] }
        client.send(#"{"op":"ack","topic":"t","version":2}"#)

        let backup = fixture.path + "-backup"
        defer { try? FileManager.default.removeItem(atPath: backup) }
        _ = try await fixture.broker.backup(to: backup)
        let copy = try LMDBMessageStore(configuration: LMDBStoreConfiguration(path: backup))
        #expect(try copy.load().subscriptions.first { $0.clientID == "acker" }?.ackFloor == 2)
        client.disconnect()
        await fixture.remove()
    }

    @Test("a trim names each durable subscriber it would cut, and with force gives a connected one a gap")
    func trim() async throws {
        let fixture = try BrokerFixture()
        try await fixture.publish("t", count: 6)
        let behind = TestClient(fixture.broker)
        _ = try await behind.hello("behind")
        behind.send(#"{"op":"subscribe","topic":"t","from":0,"window":1}"#)
        try await behind.waitFor { _ in behind.versions("t") == [1] }

        guard case .refused(let losses) = try await fixture.broker.trimTopic("t", through: 4, force: false) else {
            Issue.record("an unforced trim over unacked messages must be refused")
            return
        }
        #expect(losses == [TrimLoss(clientID: "behind", ackFloor: 0, from: 1, to: 4)])
        #expect(try await fixture.broker.topicInfo("t")?.first == 1)

        guard case .trimmed(let result) = try await fixture.broker.trimTopic("t", through: 4, force: true) else {
            Issue.record("a forced trim must trim")
            return
        }
        #expect(result == TrimResult(topic: "t", first: 5, head: 6, messages: 2, removed: 4))
        // Version 1 is in flight; acking it frees the window, and 2...4 are gone.
        behind.send(#"{"op":"ack","topic":"t","version":1}"#)
        let gap = try await behind.next(op: "gap")
        #expect(gap["from"] == "2" && gap["to"] == "4")
        try await behind.waitFor { _ in behind.versions("t") == [1, 5] }
        await #expect(throws: ProtocolError.self) { try await fixture.broker.trimTopic("t", through: 7, force: true) }
        behind.disconnect()
        await fixture.remove()
    }

    @Test("the client listing keeps the ids containing a search in any case, in id order, a page after a cursor")
    func clientListSearchAndPages() async throws {
        let fixture = try BrokerFixture()
        // Upper case sorts first: the order is the ids' bytes.
        let ids = ["tablet", "sensor-2", "Sensor-1", "xsensor", "sensor-3"]
        var clients: [TestClient] = []
        for id in ids {
            let client = TestClient(fixture.broker)
            _ = try await client.hello(id)
            clients.append(client)
        }
        let everyone = try await fixture.broker.clientList()
        #expect(everyone.clients.map(\.clientID) == ["Sensor-1", "sensor-2", "sensor-3", "tablet", "xsensor"])
        #expect(everyone.total == 5 && everyone.next == nil)

        let first = try await fixture.broker.clientList(search: "SENSOR", limit: 2)
        #expect(first.clients.map(\.clientID) == ["Sensor-1", "sensor-2"])
        #expect(first.total == 4 && first.next == "sensor-2")
        // The last page, exactly full, has no next.
        let last = try await fixture.broker.clientList(search: "SENSOR", after: first.next, limit: 2)
        #expect(last.clients.map(\.clientID) == ["sensor-3", "xsensor"])
        #expect(last.total == 4 && last.next == nil)

        // A cursor whose session is gone still marks the place.
        #expect(try await fixture.broker.deleteClient("sensor-2"))
        let resumed = try await fixture.broker.clientList(search: "sensor", after: "sensor-2", limit: 1)
        #expect(resumed.clients.map(\.clientID) == ["sensor-3"])
        #expect(resumed.total == 3 && resumed.next == "sensor-3")
        #expect(try await fixture.broker.clientList(search: "nobody").clients.isEmpty)
        for client in clients { client.disconnect() }
        await fixture.remove()
    }
}
