import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Testing

extension Serial {
    @Suite("FerryClient: a queue group's members through a broker kill")
    struct ClientWorkQueueTests {
        /// Two FerryClients share a work queue; the broker is killed halfway. Every message is
        /// processed, none is lost, and the log ends empty.
        @Test(.timeLimit(.minutes(2)))
        func everyJobProcessedAndDeletedThroughABrokerKill() async throws {
            try await withRig(["FERRY_ADMIN_TOKEN": testAdminToken]) { rig in
                let ferryd = rig.ferryd
                let configured = try await onThread { try ferryd.admin("PUT", "/config/topics/jobs", json: #"{"retention":"work_queue"}"#).status }
                #expect(configured == 200)
                let total = 400
                // Every member's messages, in one stream: (member, version).
                let (processed, report) = AsyncStream.makeStream(of: (String, UInt64).self)
                let work = ["worker-a", "worker-b"].map { id in
                    let subscription = rig.client(clientID: id).subscribe("jobs", group: "workers", window: 8)
                    return Task {
                        for try await message in subscription { report.yield((id, message.version)) }
                    }
                }
                try await onThread { _ = try ferryd.publishNumbered("jobs", count: total / 2) }
                var seen: [(String, UInt64)] = []
                let done = try await within(90, "every job") { [seen] in
                    var seen = seen
                    var killed = false
                    for await entry in processed {
                        seen.append(entry)
                        let distinct = Set(seen.map(\.1)).count
                        if !killed, distinct >= total / 4 {
                            killed = true
                            try await rig.killAndRestartBroker()
                            try await onThread { _ = try ferryd.publishNumbered("jobs", count: total / 2, startingAt: total / 2 + 1) }
                        }
                        if distinct == total { break }
                    }
                    return seen
                }
                seen = done
                for task in work { task.cancel() }
                #expect(Set(seen.map(\.1)) == Set(1...UInt64(total)))
                #expect(Set(seen.map(\.0)).count == 2, "both members worked")
                print("work queue through a kill: \(seen.count - total) repeats of \(total) jobs")
                // What they acked is gone from the log (deleted with the broker's next flush of acks).
                let deadline = Deadline(seconds: 10)
                var left = -1
                while left != 0, !deadline.hasPassed {
                    left = try await onThread { try ferryd.topicInfo("jobs").int("messages") ?? -1 }
                    if left != 0 { try await Task.sleep(for: .milliseconds(20)) }
                }
                #expect(left == 0)
            }
        }
    }
}
