import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Testing

extension Serial {
    /// A topic's log replaced under a client (deleted and made again, or renewed after a database
    /// failover): what the application acks afterwards must name the new log, never the old one.
    @Suite("FerryClient after a reset")
    struct ClientResetTests {
        @Test(.timeLimit(.minutes(2)))
        func anAckOfAMessageHandedOutBeforeAResetAcksNothingInTheNewLog() async throws {
            try await withRig(["FERRY_ADMIN_TOKEN": testAdminToken]) { rig in
                let client = rig.client(clientID: "keeper", ackMode: .manual)
                let events = client.events
                let subscription = client.subscribe("ledger", from: .earliest)
                try await client.waitUntilConnected()
                try await onThread { _ = try rig.ferryd.publishNumbered("ledger", count: 3) }
                let old = await receive(subscription, count: 3, within: 10)
                #expect(old.versions == [1, 2, 3], "\(old.stoppedEarly ?? "")")

                // The log is replaced while the application still holds version 3 of the old one.
                let deleted = try await onThread {
                    let status = try rig.ferryd.admin("DELETE", "/topics/ledger").status
                    _ = try rig.ferryd.publishNumbered("ledger", count: 5)
                    return status
                }
                #expect(deleted == 200)
                let reset = try await within(10, "a reset event") {
                    for await event in events { return event }
                    throw TestFailure("the events ended")
                }
                guard case .reset(topic: "ledger", _, _) = reset else { throw TestFailure("expected a reset, got \(reset)") }
                let new = await receive(subscription, count: 5, within: 10)
                #expect(new.versions == [1, 2, 3, 4, 5], "\(new.stoppedEarly ?? "")")

                // Acking the old version 3 must not ack version 3 of the new log.
                await old.messages.last?.ack()
                await new.messages[1].ack()
                // A publish answered on the same connection: the broker has handled the acks before it.
                _ = try await within(10, "round trip after the acks") { try await client.publish("side", json: Numbered(n: 0)) }
                let floor = try await onThread {
                    try rig.ferryd.admin("GET", "/clients/keeper").json?.objects("subscriptions")?.first { $0.string("topic") == "ledger" }?
                        .int("ack_floor")
                }
                #expect(floor == 2)
            }
        }
    }
}
