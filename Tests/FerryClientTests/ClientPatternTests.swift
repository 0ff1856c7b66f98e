import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Testing

extension Serial {
    @Suite("FerryClient: a pattern subscription through broker kills")
    struct ClientPatternTests {
        /// Three topics published in turns, a fourth created after the broker was killed: the
        /// application sees every version of each once, in order, through one subscription, with
        /// a durable session and without one (then the client subscribes again with its positions).
        @Test(.timeLimit(.minutes(2)), arguments: ["pattern-worker", nil] as [String?])
        func everyTopicOnceInOrderThroughBrokerKills(clientID: String?) async throws {
            try await withRig { rig in
                let perTopic = 300
                let client = rig.client(clientID: clientID, stateName: clientID ?? "ephemeral")
                let subscription = client.subscribe("jobs.*", from: .earliest)
                try await client.waitUntilConnected()
                let ferryd = rig.ferryd
                let publisher = BackgroundThread {
                    for n in 1...perTopic {
                        for topic in ["jobs.a", "jobs.b", "jobs.c"] {
                            // A broker being killed refuses a few: published again until stored once.
                            while (try? ferryd.publishJSON(topic, "{\"n\":\(n)}", headers: ["Idempotency-Key": "\(topic)-\(n)"])) == nil {
                                Thread.sleep(forTimeInterval: 0.01)
                            }
                        }
                    }
                }
                let total = 3 * perTopic + 10
                let received = await receive(subscription, count: total, within: 90) { _, count in
                    if count == perTopic {
                        try await rig.killAndRestartBroker()
                        try await onThread { _ = try ferryd.publishNumbered("jobs.d", count: 10) }
                    }
                    if count == 2 * perTopic { try await rig.killAndRestartBroker() }
                }
                #expect(publisher.join(timeout: 30), "the publisher is stuck")
                #expect(received.stoppedEarly == nil, "\(received.stoppedEarly ?? "")")
                for (topic, count) in [("jobs.a", perTopic), ("jobs.b", perTopic), ("jobs.c", perTopic), ("jobs.d", 10)] {
                    let versions = received.messages.filter { $0.topic == topic }.map(\.version)
                    #expect(sequenceProblem(versions, expected: 1...UInt64(count)) == nil, "\(topic): \(sequenceProblem(versions, expected: 1...UInt64(count)) ?? "")")
                }
                #expect(Set(received.messages.map(\.topic)) == ["jobs.a", "jobs.b", "jobs.c", "jobs.d"])
            }
        }
    }
}
