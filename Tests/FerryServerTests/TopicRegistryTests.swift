import FerryTestSupport
import Foundation
import Testing

/// The broker keeps a topic in memory while something holds it (a stored log, a connected
/// subscriber) and shows it as long as it keeps it; a name nothing holds is forgotten.
@Suite("Topic registry")
struct TopicRegistryTests {
    @Test func aTopicOnlyAnEphemeralSubscriberHoldsIsVisibleWhileHeld() throws {
        let ferryd = try Ferryd.withAdmin()
        let (ws, _) = try ferryd.session()
        let subscribed = try ws.subscribe("quiet", from: "latest")
        let epoch = try #require(subscribed.string("epoch"))

        let info = try ferryd.topicInfo("quiet")
        #expect(info.string("epoch") == epoch)
        #expect(info.int("head") == 0)
        #expect(info.int("messages") == 0)
        #expect(info.int("subscribers") == 1)
        let read = try ferryd.get(Ferryd.topicPath("quiet") + "/messages")
        #expect(read.status == 200, "\(read)")
        #expect(read.json?.string("epoch") == epoch)
        #expect(read.json?.objects("messages")?.isEmpty == true)
        let listed = try ferryd.admin("GET", "/topics").json?.objects("topics")?.compactMap { $0.string("topic") }
        #expect(listed == ["quiet"])

        // The first publish creates the log in the epoch the subscriber was given: no reset.
        #expect(try ferryd.publishJSON("quiet", "{}").string("epoch") == epoch)
        #expect(try ws.expectOp("msg").int("version") == 1)
        #expect(try ferryd.admin("DELETE", "/topics/quiet").status == 200)
        #expect(try ws.expectOp("reset").string("topic") == "quiet")
        // Deleted, but still held by the subscriber: visible, empty, in its new epoch.
        #expect(try ferryd.topicInfo("quiet").int("head") == 0)

        try ws.sendJSON(["op": "unsubscribe", "topic": "quiet", "id": 1])
        _ = try ws.expectOp("unsubscribed")
        #expect(try ferryd.get(Ferryd.topicPath("quiet")).status == 404)
        #expect(try ferryd.get(Ferryd.topicPath("quiet") + "/messages").status == 404)
    }

    @Test func namesNothingHoldsAreForgotten() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        let (holder, _) = try ferryd.session()
        try holder.subscribe("kept", from: "latest")
        let names = (0..<2000).map { "churn.\($0)" }
        // Pipelined in one write: the broker reads them as fast as it can.
        let frames = names.enumerated().flatMap { index, name in
            [
                TestWebSocket.frame(.text, Array(jsonText(["op": "subscribe", "topic": name, "id": 2 * index]).utf8)),
                TestWebSocket.frame(.text, Array(jsonText(["op": "unsubscribe", "topic": name, "id": 2 * index + 1]).utf8)),
            ]
        }
        try ws.sendRaw(frames.flatMap { $0 })
        var unsubscribed = 0
        while unsubscribed < names.count, let frame = try ws.nextJSON() {
            if frame.string("op") == "unsubscribed" { unsubscribed += 1 }
        }
        #expect(unsubscribed == names.count)
        // `kept` is held by the other connection, which still gets its messages.
        #expect(try Scrape(ferryd)["ferry_topics_in_memory"] == 1)
        // Another connection naming `kept` and leaving does not forget it from under its holder.
        try ws.subscribe("kept", from: "latest")
        try ws.sendJSON(["op": "unsubscribe", "topic": "kept", "id": 9])
        _ = try ws.expectOp("unsubscribed")
        try ferryd.publishJSON("kept", "{}")
        #expect(try holder.expectOp("msg").int("version") == 1)
        holder.close()
        ws.close()
        // Stored now, so kept after its subscribers left; the 2,000 names are gone.
        #expect(try Scrape(ferryd)["ferry_topics_in_memory"] == 1)
        #expect(try ferryd.get(Ferryd.topicPath("churn.0")).status == 404)
    }
}
