import FerryTestSupport
import Foundation
import Testing

/// Members of queue groups acking what they get, as the work queue tests drive them.
extension Ferryd {
    /// A durable session subscribed to `topic` in queue group `group`.
    func queueMember(_ clientID: String, of topic: String, group: String, window: Int) throws -> TestWebSocket {
        let (socket, _) = try session(clientID: clientID)
        try socket.sendJSON(["op": "subscribe", "topic": topic, "group": group, "window": window])
        let subscribed = try socket.expectOp("subscribed")
        guard subscribed.string("group") == group else { throw TestFailure("not a member: \(subscribed.text)") }
        return socket
    }

    /// Waits until `topic` stores no message: deletion follows acks on the broker's schedule.
    func awaitEmptied(_ topic: String) throws {
        let deadline = Deadline(seconds: 10)
        while try topicInfo(topic).int("messages") != 0 {
            if deadline.hasPassed { throw TestFailure("\(topic) kept \(try topicInfo(topic).text)") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}

/// Each member acks every message it gets, until the members together have had `count` distinct
/// ones; returns what each got, in order. Any frame but `msg` (and a `reset` to the log's epoch) fails.
func drainWorkQueue(_ members: [TestWebSocket], count: Int, timeout: TimeInterval = 20) throws -> [[Int]] {
    var got = Array(repeating: [Int](), count: members.count)
    let deadline = Deadline(seconds: timeout)
    while Set(got.joined()).count < count {
        if deadline.hasPassed { throw TestFailure("the members got \(got)") }
        for (index, member) in members.enumerated() {
            while let frame = try member.nextJSON(timeout: 0.02) {
                // A member of a topic with no log yet learns the log's epoch when it is made (cluster mode).
                if frame.string("op") == "reset" { continue }
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
