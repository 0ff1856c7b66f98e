import FerryTestSupport
import Foundation
import Testing

/// `retention: interest` against a real ferryd: what every durable subscriber (a topic
/// subscription or a pattern) acked goes, what any of them has not acked stays.
@Suite("Interest retention against a real broker")
struct InterestRetentionServerTests {
    /// Waits until `topic`'s info satisfies `condition`: the sweep deletes on its own schedule,
    /// and there is no event to await but the stored state.
    private func awaitTopic(_ ferryd: Ferryd, _ topic: String, _ what: String, _ condition: (JSON) -> Bool) throws {
        let deadline = Deadline(seconds: 10)
        while true {
            let info = try ferryd.topicInfo(topic)
            if condition(info) { return }
            if deadline.hasPassed { throw TestFailure("\(topic) never \(what): \(info.text)") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    @Test func aMessageGoesOnceEveryDurableSubscriberAckedItAndOnlyThen() throws {
        let ferryd = try Ferryd.withAdmin()
        #expect(try ferryd.admin("PUT", "/config/topics/work.%3E", json: #"{"retention":"interest"}"#).status == 200)
        let (direct, _) = try ferryd.session(clientID: "direct")
        try direct.subscribe("work.a", from: "earliest")
        let (viaPattern, welcome) = try ferryd.session(clientID: "via-pattern")
        let token = try #require(welcome.string("resume_token"))
        try viaPattern.sendJSON(["op": "subscribe", "topic": "work.*", "from": "earliest"])
        _ = try viaPattern.expectOp("subscribed")
        try ferryd.publishNumbered("work.a", count: 10)
        try ferryd.publishNumbered("unwatched", count: 3)
        #expect(try direct.collectMessages(count: 10).versions == Array(1...10))
        #expect(try viaPattern.frames(untilMessages: ["work.a": 10]).versions(of: "work.a") == Array(1...10))
        #expect(try ferryd.topicInfo("work.a").object("config")?.string("retention") == "interest")

        try direct.ack("work.a", 6)
        try viaPattern.ack("work.a", 4)
        viaPattern.close()  // a clean disconnect commits its last ack
        try awaitTopic(ferryd, "work.a", "trimmed to the lowest floor") { $0.int("first") == 5 }
        // A topic nobody subscribes to durably keeps nothing; its emptying proves a later sweep ran.
        try ferryd.publishNumbered("work.nobody.x", count: 3)
        try awaitTopic(ferryd, "work.nobody.x", "emptied") { $0.int("messages") == 0 }
        let info = try ferryd.topicInfo("work.a")
        #expect(info.int("first") == 5 && info.int("messages") == 6, "\(info.text)")
        // A topic with the global limits keeps what nobody subscribes to.
        #expect(try ferryd.topicInfo("unwatched").int("messages") == 3)

        // The pattern subscriber was away: it gets exactly what it had not acked, with no gap.
        let (back, _) = try ferryd.session(resumeToken: token)
        let resumed = try back.frames(untilMessages: ["work.a": 6])
        #expect(resumed.versions(of: "work.a") == Array(5...10))
        #expect(!resumed.contains { $0.string("op") == "gap" }, "\(resumed.map(\.text))")
        try back.ack("work.a", 10)
        try direct.ack("work.a", 10)
        try awaitTopic(ferryd, "work.a", "emptied") { $0.int("messages") == 0 }
        #expect(try ferryd.topicInfo("work.a").int("head") == 10)
    }
}
