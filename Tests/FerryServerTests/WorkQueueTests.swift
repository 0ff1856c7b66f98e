import FerryTestSupport
import Foundation
import Testing

/// `retention: work_queue` against a real ferryd: members of a queue group share the messages,
/// each goes once (until a member drops or the broker is killed, then again), and the log keeps
/// only what no member acked.
@Suite("Work queues against a real broker")
struct WorkQueueTests {
    /// A member acking every message it gets, until the members together have `count` distinct ones.
    private func drain(_ members: [TestWebSocket], count: Int) throws -> [[Int]] {
        var got = Array(repeating: [Int](), count: members.count)
        let deadline = Deadline(seconds: 20)
        while Set(got.joined()).count < count {
            if deadline.hasPassed { throw TestFailure("the members got \(got)") }
            for (index, member) in members.enumerated() {
                while let frame = try member.nextJSON(timeout: 0.02) {
                    guard frame.string("op") == "msg", let version = frame.int("version") else {
                        throw TestFailure("unexpected \(frame.text)")
                    }
                    got[index].append(version)
                    try member.ack(frame.string("topic") ?? "", version)
                }
            }
        }
        return got
    }

    private func awaitEmptied(_ ferryd: Ferryd, _ topic: String) throws {
        let deadline = Deadline(seconds: 10)
        while try ferryd.topicInfo(topic).int("messages") != 0 {
            if deadline.hasPassed { throw TestFailure("\(topic) kept \(try ferryd.topicInfo(topic).text)") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    private func member(_ ferryd: Ferryd, _ clientID: String) throws -> TestWebSocket {
        let (socket, _) = try ferryd.session(clientID: clientID)
        try socket.sendJSON(["op": "subscribe", "topic": "jobs.email", "group": "senders", "window": 5])
        #expect(try socket.expectOp("subscribed").string("group") == "senders")
        return socket
    }

    @Test func membersShareEachMessageOnceAndNothingIsLostAcrossAKill() throws {
        let ferryd = try Ferryd.withAdmin()
        #expect(try ferryd.admin("PUT", "/config/topics/jobs.%3E", json: #"{"retention":"work_queue"}"#).status == 200)
        let members = [try member(ferryd, "sender-1"), try member(ferryd, "sender-2")]
        try ferryd.publishNumbered("jobs.email", count: 40)
        let got = try drain(members, count: 40)
        #expect(got.allSatisfy { !$0.isEmpty }, "both members work: \(got)")
        #expect(got.joined().sorted() == Array(1...40), "each message once: \(got)")
        try awaitEmptied(ferryd, "jobs.email")

        // Ten more, the first member takes five and never acks them; the broker is killed.
        try ferryd.publishNumbered("jobs.email", count: 10, startingAt: 41)
        #expect(try members[0].collectMessages(count: 5).count == 5)
        try ferryd.kill()
        try ferryd.start()
        let again = [try member(ferryd, "sender-1"), try member(ferryd, "sender-2")]
        #expect(Set(try drain(again, count: 10).joined()) == Set(41...50))
        try awaitEmptied(ferryd, "jobs.email")
        #expect(try ferryd.topicInfo("jobs.email").int("head") == 50)
    }
}
