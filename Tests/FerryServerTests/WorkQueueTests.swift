import FerryTestSupport
import Foundation
import Testing

/// `retention: work_queue` against a real ferryd: members of a queue group share the messages,
/// each goes once (until a member drops or the broker is killed, then again), and the log keeps
/// only what no member acked.
@Suite("Work queues against a real broker")
struct WorkQueueTests {
    private func member(_ ferryd: Ferryd, _ clientID: String) throws -> TestWebSocket {
        try ferryd.queueMember(clientID, of: "jobs.email", group: "senders", window: 5)
    }

    @Test func membersShareEachMessageOnceAndNothingIsLostAcrossAKill() throws {
        let ferryd = try Ferryd.withAdmin()
        #expect(try ferryd.admin("PUT", "/config/topics/jobs.%3E", json: #"{"retention":"work_queue"}"#).status == 200)
        let members = [try member(ferryd, "sender-1"), try member(ferryd, "sender-2")]
        try ferryd.publishNumbered("jobs.email", count: 40)
        let got = try drainWorkQueue(members, count: 40)
        #expect(got.allSatisfy { !$0.isEmpty }, "both members work: \(got)")
        #expect(got.joined().sorted() == Array(1...40), "each message once: \(got)")
        try ferryd.awaitEmptied("jobs.email")

        // Ten more, the first member takes five and never acks them; the broker is killed.
        try ferryd.publishNumbered("jobs.email", count: 10, startingAt: 41)
        #expect(try members[0].collectMessages(count: 5).count == 5)
        try ferryd.kill()
        try ferryd.start()
        let again = [try member(ferryd, "sender-1"), try member(ferryd, "sender-2")]
        #expect(Set(try drainWorkQueue(again, count: 10).joined()) == Set(41...50))
        try ferryd.awaitEmptied("jobs.email")
        #expect(try ferryd.topicInfo("jobs.email").int("head") == 50)
    }
}
