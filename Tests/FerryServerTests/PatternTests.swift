import FerryTestSupport
import Foundation
import Testing

/// Pattern subscriptions against a real ferryd on LMDB: new topics, a dropped connection and a
/// `kill -9`, with each topic's position exact and no message given twice.
@Suite("Pattern subscriptions against a real broker")
struct PatternTests {
    @Test func aPatternSeesNewTopicsAndResumesEachExactlyAfterADropAndAKill() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("orders.eu", count: 3)
        let (socket, welcome) = try ferryd.session(clientID: "warehouse")
        let token = try #require(welcome.string("resume_token"))
        try socket.sendJSON(["op": "subscribe", "id": 1, "topic": "orders.*", "from": "earliest"])
        let reply = try socket.expectOp("subscribed")
        #expect(reply.string("topic") == "orders.*" && reply.int("matched") == 1 && reply.int("id") == 1)
        var seen = try socket.frames(untilMessages: ["orders.eu": 3])
        #expect(seen.first?.string("pattern") == "orders.*" && seen.first?.string("topic") == "orders.eu")
        // A topic created now is announced, then delivered from version 1.
        try ferryd.publishNumbered("orders.us", count: 2)
        try ferryd.publishNumbered("invoices.us", count: 1)
        seen = try socket.frames(untilMessages: ["orders.us": 2])
        #expect(seen.first?.string("op") == "subscribed" && seen.first?.int("from") == 1)
        #expect(seen.versions(of: "orders.us") == [1, 2])
        try socket.ack("orders.eu", 2)
        try socket.ack("orders.us", 1)
        // A publish's commit carries the acks before it: they are durable once it is confirmed.
        try socket.publish("marker", data: "1")

        // Dropped without a close frame; meanwhile a new topic and more messages.
        socket.drop()
        try ferryd.awaitDisconnected("warehouse")
        try ferryd.publishNumbered("orders.asia", count: 2)
        try ferryd.publishNumbered("orders.eu", count: 1, startingAt: 4)
        let (again, resumed) = try ferryd.session(resumeToken: token)
        #expect(resumed.bool("resumed") == true)
        #expect(resumed.objects("patterns")?.compactMap { $0.string("pattern") } == ["orders.*"])
        let floors = Dictionary(uniqueKeysWithValues: (resumed.objects("subscriptions") ?? []).map { ($0.string("topic") ?? "", $0.int("ack_floor") ?? -1) })
        #expect(floors == ["orders.eu": 2, "orders.us": 1])
        #expect(resumed.objects("subscriptions")?.allSatisfy { $0.string("pattern") == "orders.*" } == true)
        seen = try again.frames(untilMessages: ["orders.eu": 2, "orders.us": 1, "orders.asia": 2])
        #expect(seen.versions(of: "orders.eu") == [3, 4] && seen.versions(of: "orders.us") == [2] && seen.versions(of: "orders.asia") == [1, 2])
        #expect(try again.framesWithin(0.3).isEmpty, "a message given twice")
        try again.ack("orders.eu", 4)
        try again.ack("orders.us", 2)
        try again.ack("orders.asia", 1)
        try again.publish("marker", data: "2")

        try ferryd.kill()
        try ferryd.start()
        let (third, restored) = try ferryd.session(resumeToken: token)
        let restoredFloors = Dictionary(
            uniqueKeysWithValues: (restored.objects("subscriptions") ?? []).map { ($0.string("topic") ?? "", $0.int("ack_floor") ?? -1) })
        #expect(restoredFloors == ["orders.eu": 4, "orders.us": 2, "orders.asia": 1])
        try ferryd.publishNumbered("orders.new", count: 1)
        seen = try third.frames(untilMessages: ["orders.asia": 1, "orders.new": 1])
        #expect(seen.versions(of: "orders.asia") == [2] && seen.versions(of: "orders.new") == [1])
        #expect(try third.framesWithin(0.3).isEmpty, "a message given twice")
    }

    @Test func patternFramesAndErrorsFollowTheProtocol() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_PATTERNS": "1", "FERRY_MAX_PATTERN_TOPICS": "2"])
        let (socket, welcome) = try ferryd.session()
        #expect(welcome.object("limits")?.int("max_patterns") == 1 && welcome.object("limits")?.int("max_pattern_topics") == 2)
        try socket.sendJSON(["op": "subscribe", "id": 1, "topic": "a.>.b"])
        try socket.expectError("invalid_topic", id: 1)
        try socket.sendJSON(["op": "subscribe", "id": 2, "topic": "a.*", "from": 5])
        try socket.expectError("bad_frame", id: 2)
        try socket.sendJSON(["op": "subscribe", "id": 3, "topic": "a.*", "window": 2])
        #expect(try socket.expectOp("subscribed").int("matched") == 0)
        try socket.sendJSON(["op": "subscribe", "id": 4, "topic": "b.*"])
        try socket.expectError("too_many_subscriptions", id: 4)
        try socket.sendJSON(["op": "unsubscribe", "id": 5, "topic": "a.*"])
        #expect(try socket.expectOp("unsubscribed").string("topic") == "a.*")
        try socket.sendJSON(["op": "unsubscribe", "id": 6, "topic": "a.*"])
        try socket.expectError("not_subscribed", id: 6)
        try socket.pingPong()
    }
}
