import FerryTestSupport
import Foundation
import Testing

/// The WebSocket protocol of PROTOCOL.md, against a real `ferryd` per test.
@Suite("WebSocket protocol")
struct WebSocketProtocolTests {
    // MARK: hello / welcome

    @Test func ephemeralWelcome() throws {
        let ferryd = try Ferryd()
        let (_, welcome) = try ferryd.session()
        #expect(welcome.isNull("client_id"))
        #expect(welcome.isNull("resume_token"))
        #expect(welcome.bool("resumed") == false)
        #expect(welcome.objects("subscriptions")?.isEmpty == true)
        #expect(welcome.double("heartbeat") == 20)
        let limits = try #require(welcome.object("limits"))
        #expect(limits.int("max_message_bytes") == 1_048_576)
        #expect(limits.int("max_frame_bytes") == 2 * 1_048_576 + 65_536)
        #expect(limits.int("max_subscriptions") == 1000)
    }

    /// A proxy's pooled keep-alive connection serves plain HTTP first and then carries an upgrade.
    @Test func upgradeOnAConnectionThatServedHTTPFirst() throws {
        let ferryd = try Ferryd()
        let ws = try TestWebSocket(port: ferryd.port, plainRequests: ["/healthz", "/readyz"])
        try ws.sendText(#"{"op":"hello","client_id":"pooled-1"}"#)
        let welcome = try #require(try ws.nextJSON())
        #expect(welcome.string("op") == "welcome" && welcome.string("client_id") == "pooled-1", "\(welcome.text)")
        try ws.sendText(#"{"op":"ping","id":7}"#)
        #expect(try ws.nextJSON()?.string("op") == "pong")
    }

    /// `GET /v1/ws` without the upgrade headers is an ordinary request: 426, naming the upgrade.
    @Test func plainGetOfTheWebSocketPathIsUpgradeRequired() throws {
        let ferryd = try Ferryd()
        let plain = try ferryd.get("/v1/ws")
        #expect(plain.status == 426 && plain.headers["upgrade"] == "websocket", "\(plain)")
        #expect(plain.json?.object("error")?.string("code") == "bad_frame")
    }

    @Test func durableWelcomeHasResumeToken() throws {
        let ferryd = try Ferryd()
        let (_, welcome) = try ferryd.session(clientID: "alice")
        #expect(welcome.string("client_id") == "alice")
        #expect(welcome.string("resume_token")?.isEmpty == false)
        #expect(welcome.bool("resumed") == false)
        #expect(welcome.objects("subscriptions")?.isEmpty == true)
    }

    @Test func welcomeReportsConfiguredLimits() throws {
        let ferryd = try Ferryd(environment: [
            "FERRY_HEARTBEAT": "7", "FERRY_MAX_MESSAGE_BYTES": "1000", "FERRY_MAX_SUBSCRIPTIONS": "3",
            "FERRY_PUBLISH_RATE": "50", "FERRY_PUBLISH_BURST": "20", "FERRY_MAX_PENDING_BYTES": "1M",
        ])
        let (_, welcome) = try ferryd.session()
        #expect(welcome.double("heartbeat") == 7)
        let limits = try #require(welcome.object("limits"))
        #expect(limits.int("max_message_bytes") == 1000)
        #expect(limits.int("max_frame_bytes") == 2 * 1000 + 65_536)
        #expect(limits.int("max_subscriptions") == 3)
        #expect(limits.int("publish_rate") == 50)
        #expect(limits.int("publish_burst") == 20)
        #expect(limits.int("max_pending_bytes") == 1_048_576)
    }

    @Test func firstFrameMustBeHello() throws {
        let ferryd = try Ferryd()
        let firstFrames = [#"{"op":"subscribe","topic":"t"}"#, #"{"op":"ping"}"#, #"{"client_id":"x"}"#, "not json"]
        forEachCase(firstFrames) { frame in
            let ws = try ferryd.connect()
            try ws.sendText(frame)
            try ws.expectError("hello_required")
            #expect(ws.waitForClose() == 4000, "after \(frame)")
        }
    }

    @Test func secondHelloIsBadFrame() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        try ws.sendJSON(["op": "hello"])
        try ws.expectError("bad_frame")
        try ws.pingPong()
    }

    @Test func invalidClientIDLeavesConnectionOpen() throws {
        let ferryd = try Ferryd()
        let badIDs = ["", "has space", "slash/no", "star*", "é", String(repeating: "a", count: 129)]
        forEachCase(badIDs) { clientID in
            let ws = try ferryd.connect()
            try ws.sendJSON(["op": "hello", "client_id": clientID])
            try ws.expectError("invalid_client_id")
            let welcome = try ws.hello(clientID: "next-try")
            #expect(welcome.string("client_id") == "next-try")
            ws.close()
        }
    }

    @Test func clientIDEdgesAreAccepted() throws {
        let ferryd = try Ferryd()
        forEachCase([String(repeating: "b", count: 128), "a", "Az09_-.:@x"]) { clientID in
            let (ws, welcome) = try ferryd.session(clientID: clientID)
            #expect(welcome.string("client_id") == clientID)
            ws.close()
        }
    }

    @Test func forgedResumeTokenIsRejected() throws {
        let ferryd = try Ferryd()
        let (first, welcome) = try ferryd.session(clientID: "alice")
        let token = try #require(welcome.string("resume_token"))
        first.close()
        forEachCase([flipMiddleCharacter(of: token), "garbage", "alice"]) { forged in
            let ws = try ferryd.connect()
            try ws.sendJSON(["op": "hello", "resume_token": forged])
            try ws.expectError("bad_resume_token")
            try ws.hello()  // the connection stays open for another hello
            ws.close()
        }
    }

    @Test func clientIDAndTokenOfDifferentSessionsConflict() throws {
        let ferryd = try Ferryd()
        let (alice, _) = try ferryd.session(clientID: "alice")
        let (bob, bobWelcome) = try ferryd.session(clientID: "bob")
        let bobToken = try #require(bobWelcome.string("resume_token"))
        alice.close()
        bob.close()

        let ws = try ferryd.connect()
        try ws.sendJSON(["op": "hello", "client_id": "alice", "resume_token": bobToken])
        try ws.expectError("session_conflict")
        let welcome = try ws.hello(resumeToken: bobToken)
        #expect(welcome.string("client_id") == "bob")
        #expect(welcome.bool("resumed") == true)
    }

    // MARK: subscribe

    @Test func subscribeStartingPoints() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("t", count: 3)
        let epoch = try ferryd.topicInfo("t").string("epoch")
        #expect(epoch?.isEmpty == false)
        // (from, first version sent, versions delivered before the next publish)
        let cases: [(from: Any?, first: Int, backlog: [Int])] = [
            ("latest", 4, []), (nil, 4, []), ("earliest", 1, [1, 2, 3]), (0, 1, [1, 2, 3]), (1, 2, [2, 3]), (3, 4, []),
        ]
        var subscribers: [TestWebSocket] = []
        forEachCase(cases) { start in
            let (ws, _) = try ferryd.session()
            let subscribed = try ws.subscribe("t", from: start.from, id: 42)
            #expect(subscribed.int("id") == 42)
            #expect(subscribed.string("epoch") == epoch)
            #expect(subscribed.int("head") == 3)
            #expect(subscribed.int("from") == start.first)
            #expect(try ws.collectMessages(count: start.backlog.count).versions == start.backlog)
            subscribers.append(ws)
        }
        try ferryd.publishNumbered("t", count: 1, startingAt: 4)
        for ws in subscribers {
            let live = try ws.collectMessages(count: 1)
            #expect(live.versions == [4])
            #expect(live.first?.object("data")?.int("n") == 4)
        }
    }

    @Test func subscribeToNewTopicThenFirstPublish() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        let subscribed = try ws.subscribe("fresh", from: "earliest")
        #expect(subscribed.int("head") == 0)
        #expect(subscribed.int("from") == 1)
        try ferryd.publishNumbered("fresh", count: 2)
        #expect(try ws.collectMessages(count: 2).versions == [1, 2])
    }

    @Test func durableDefaultAndStoredStartingPoints() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("t", count: 3)
        try ferryd.publishNumbered("u", count: 3)
        let (ws, _) = try ferryd.session(clientID: "alice")
        // A new durable subscription has no ack floor yet: the default "stored" means "latest".
        #expect(try ws.subscribe("u").int("from") == 4)
        #expect(try ws.subscribe("t", from: "earliest").int("from") == 1)
        #expect(try ws.collectMessages(count: 3).versions == [1, 2, 3])
        try ws.ack("t", 2)
        try ws.pingPong()
        // Subscribing again replaces the position: "stored" restarts right after the ack floor.
        #expect(try ws.subscribe("t", from: "stored").int("from") == 3)
        #expect(try ws.collectMessages(count: 1).versions == [3])
        #expect(try ws.framesWithin(0.3).isEmpty)
    }

    // MARK: publish

    @Test func jsonDataIsDeliveredVerbatim() throws {
        let ferryd = try Ferryd()
        let (subscriber, _) = try ferryd.session()
        try subscriber.subscribe("t", from: "latest")
        let (publisher, _) = try ferryd.session()
        let payloads = [
            #"{"z":1,"a":1.50,"m":[1e3,-0.0,"\u00e9\n"],"n":null,"t":true}"#, "1.50", #""caf\u00e9""#,
            "[1,2.0,false]", "-0", "1E+2", "{}", "[]", #"{"e":{},"f":[]}"#,
        ]
        for (index, data) in payloads.enumerated() {
            let published = try publisher.publish("t", data: data, id: index + 100)
            #expect(published.int("id") == index + 100)
            #expect(published.string("topic") == "t")
            #expect(published.int("version") == index + 1)
            #expect(published.bool("duplicate") == false)
            let text = try #require(try subscriber.nextText())
            let message = try #require(parseJSONObject(text))
            #expect(message.string("op") == "msg")
            #expect(message.int("version") == index + 1)
            #expect((message.int("ts") ?? 0) > 1_600_000_000_000)
            #expect(message["data_b64"] == nil)
            #expect(text.contains(data), "payload \(data) not verbatim in \(text)")
        }
        let stored = try ferryd.get(Ferryd.topicPath("t") + "/messages")
        #expect(stored.status == 200)
        for data in payloads { #expect(stored.text.contains(data), "payload \(data) not verbatim in GET") }
    }

    @Test func base64DataRoundTrips() throws {
        let ferryd = try Ferryd()
        let (subscriber, _) = try ferryd.session()
        try subscriber.subscribe("bin", from: "latest")
        let (publisher, _) = try ferryd.session()
        try publisher.sendJSON(["op": "publish", "topic": "bin", "data_b64": "AAEC/w==", "id": 1])
        let published = try publisher.expectOp("published")
        #expect(published.int("version") == 1)
        let message = try #require(try subscriber.collectMessages(count: 1).first)
        #expect(message.string("data_b64") == "AAEC/w==")
        #expect(message["data"] == nil)
    }

    @Test func msgIDDeduplicatesPerTopic() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        let first = try ws.publish("t", data: #""first""#, msgID: "m-1")
        #expect(first.int("version") == 1)
        #expect(first.bool("duplicate") == false)
        #expect(try ws.publish("t", data: #""second""#).int("version") == 2)
        let retry = try ws.publish("t", data: #""retry""#, msgID: "m-1", id: 3)
        #expect(retry.int("id") == 3)
        #expect(retry.bool("duplicate") == true)
        #expect(retry.int("version") == 1)
        #expect(try ferryd.topicInfo("t").int("head") == 2)
        // The dedup window is per topic.
        let elsewhere = try ws.publish("u", data: "1", msgID: "m-1")
        #expect(elsewhere.bool("duplicate") == false)
        #expect(elsewhere.int("version") == 1)

        try ws.subscribe("t", from: "earliest")
        let messages = try ws.collectMessages(count: 2)
        #expect(messages.versions == [1, 2])
        #expect(messages.first?.string("data") == "first")
        #expect(try ws.framesWithin(0.3).isEmpty)
    }

    @Test func headersRoundTrip() throws {
        let ferryd = try Ferryd()
        let (subscriber, _) = try ferryd.session()
        try subscriber.subscribe("t", from: "latest")
        let (publisher, _) = try ferryd.session()
        let headers = ["trace": "abc-123", "Content-Kind": "test", "empty": ""]
        try publisher.publish("t", data: "1", headers: headers)
        try publisher.publish("t", data: "2")
        let messages = try subscriber.collectMessages(count: 2)
        #expect(messages.first?["headers"] as? [String: String] == headers)
        #expect((messages.last?["headers"] as? [String: String])?.isEmpty ?? true)
    }

    @Test func publishesFromOneConnectionKeepTheirOrder() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        for id in 1...50 { try ws.sendText(TestWebSocket.publishFrame("t", data: "\(id)", id: id)) }
        var versionByID: [Int: Int] = [:]
        for _ in 1...50 {
            let published = try ws.expectOp("published")
            versionByID[published.int("id") ?? -1] = published.int("version")
        }
        #expect(versionByID == Dictionary(uniqueKeysWithValues: (1...50).map { ($0, $0) }))
    }

    @Test func fragmentedTextMessageIsReassembled() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        let text = Array(TestWebSocket.publishFrame("t", data: #"{"a":1}"#, id: 5).utf8)
        let thirds = [text[..<10], text[10..<20], text[20...]].map(Array.init)
        // A control frame may come between fragments (RFC 6455, 5.4).
        try ws.sendRaw(
            TestWebSocket.frame(.text, thirds[0], fin: false) + TestWebSocket.frame(.continuation, thirds[1], fin: false)
                + TestWebSocket.frame(.ping, [7]) + TestWebSocket.frame(.continuation, thirds[2]))
        let published = try ws.expectOp("published")
        #expect(published.int("id") == 5)
        #expect(published.int("version") == 1)
    }

    // MARK: unsubscribe, ping

    @Test func unsubscribeStopsDeliveryAndForgetsDurableState() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: 1)
        #expect(try ws.collectMessages(count: 1).versions == [1])
        try ws.sendJSON(["op": "unsubscribe", "topic": "t", "id": 9])
        let unsubscribed = try ws.expectOp("unsubscribed")
        #expect(unsubscribed.int("id") == 9)
        #expect(unsubscribed.string("topic") == "t")
        try ferryd.publishNumbered("t", count: 1, startingAt: 2)
        #expect(try ws.framesWithin(0.3).isEmpty)
        ws.close()

        let (again, welcome) = try ferryd.session(clientID: "alice")
        #expect(welcome.objects("subscriptions")?.isEmpty == true)
        #expect(try again.framesWithin(0.3).isEmpty)
    }

    @Test func pingOpAndControlPing() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        try ws.pingPong()
        try ws.sendPing([1, 2, 3])
        #expect(ws.receive() == .pong([1, 2, 3]))
    }

    // MARK: acks and windows

    @Test func acksAreCumulativeAndChecked() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("t", count: 5)
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest", window: 2)
        #expect(try ws.collectMessages(count: 2).versions == [1, 2])
        try ws.ack("t", 4)  // above what was delivered
        try ws.expectError("bad_ack")
        try ws.ack("elsewhere", 1)
        try ws.expectError("not_subscribed")
        // The bad ack changed nothing: acking 2 opens exactly two slots.
        try ws.ack("t", 2)
        #expect(try ws.collectMessages(count: 2).versions == [3, 4])
        try ws.ack("t", 1)  // at or below the floor: a no-op, no error
        try ws.pingPong()
        try ws.ack("t", 3)
        #expect(try ws.collectMessages(count: 1).versions == [5])
        try ws.pingPong()
        ws.close()

        // After a clean disconnect the restored floor is exactly the last ack.
        let (again, welcome) = try ferryd.session(clientID: "alice")
        let restored = try #require(welcome.objects("subscriptions")?.first)
        #expect(restored.int("ack_floor") == 3)
        #expect(try again.collectMessages(count: 2).versions == [4, 5])
    }

    @Test func windowLimitsUnackedMessagesInFlight() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        try ws.subscribe("t", from: "earliest", window: 3)
        try ferryd.publishNumbered("t", count: 10)
        #expect(try ws.collectMessages(count: 3).versions == [1, 2, 3])
        #expect(try ws.framesWithin(0.5).isEmpty, "a window of 3 allows only 3 unacked messages")
        try ws.ack("t", 1)
        #expect(try ws.collectMessages(count: 1).versions == [4])
        #expect(try ws.framesWithin(0.3).isEmpty)
        try ws.ack("t", 4)
        #expect(try ws.collectMessages(count: 3).versions == [5, 6, 7])
        try ws.ack("t", 7)
        #expect(try ws.collectMessages(count: 3).versions == [8, 9, 10])
    }

    // MARK: resume and takeover

    @Test(arguments: ["client_id", "resume_token"])
    func resumeGetsExactlyTheUnackedMessages(by key: String) throws {
        let ferryd = try Ferryd()
        let (ws, welcome) = try ferryd.session(clientID: "alice")
        let token = try #require(welcome.string("resume_token"))
        let epoch = try ws.subscribe("t", from: "earliest").string("epoch")
        try ferryd.publishNumbered("t", count: 5)
        #expect(try ws.collectMessages(count: 5).versions == [1, 2, 3, 4, 5])
        try ws.ack("t", 2)
        try ws.pingPong()
        ws.close()
        try ferryd.publishNumbered("t", count: 1, startingAt: 6)

        let again = try ferryd.connect()
        let resumed = try key == "client_id" ? again.hello(clientID: "alice") : again.hello(resumeToken: token)
        #expect(resumed.string("client_id") == "alice")
        #expect(resumed.bool("resumed") == true)
        let newToken = try #require(resumed.string("resume_token"))
        let restored = try #require(resumed.objects("subscriptions"))
        #expect(restored.count == 1)
        #expect(restored.first?.string("topic") == "t")
        #expect(restored.first?.string("epoch") == epoch)
        #expect(restored.first?.int("ack_floor") == 2)
        // No `subscribed` frame: collectMessages fails on anything but `msg`.
        let redelivered = try again.collectMessages(count: 4)
        #expect(redelivered.versions == [3, 4, 5, 6])
        #expect(redelivered.map { $0.object("data")?.int("n") } == [3, 4, 5, 6])
        #expect(try again.framesWithin(0.3).isEmpty)
        again.close()

        // The newest token works too.
        let third = try ferryd.connect()
        #expect(try third.hello(resumeToken: newToken).bool("resumed") == true)
    }

    @Test func secondConnectionTakesOverTheSession() throws {
        let ferryd = try Ferryd()
        let (first, _) = try ferryd.session(clientID: "alice")
        try first.subscribe("t", from: "earliest")
        let (second, welcome) = try ferryd.session(clientID: "alice")
        #expect(welcome.bool("resumed") == true)
        #expect(first.waitForClose() == 4009)
        try ferryd.publishNumbered("t", count: 1)
        #expect(try second.collectMessages(count: 1).versions == [1])
    }

    // MARK: reset and gap

    @Test func unknownEpochGetsReset() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("t", count: 3)
        let epoch = try #require(try ferryd.topicInfo("t").string("epoch"))
        let (ws, _) = try ferryd.session()
        let subscribed = try ws.subscribe("t", from: 2, epoch: "not-an-epoch")
        #expect(subscribed.int("from") == 1)
        let reset = try ws.expectOp("reset")
        #expect(reset.string("topic") == "t")
        #expect(reset.string("old_epoch") == "not-an-epoch")
        #expect(reset.string("epoch") == epoch)
        #expect(try ws.collectMessages(count: 3).versions == [1, 2, 3])
    }

    @Test func versionAboveHeadGetsReset() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("t", count: 3)
        let epoch = try #require(try ferryd.topicInfo("t").string("epoch"))
        let (ws, _) = try ferryd.session()
        #expect(try ws.subscribe("t", from: 10, epoch: epoch).int("from") == 1)
        #expect(try ws.expectOp("reset").string("epoch") == epoch)
        #expect(try ws.collectMessages(count: 3).versions == [1, 2, 3])

        // The right epoch and a version within the log: no reset.
        let (other, _) = try ferryd.session()
        #expect(try other.subscribe("t", from: 1, epoch: epoch).int("from") == 2)
        #expect(try other.collectMessages(count: 2).versions == [2, 3])
    }

    @Test func resumedSubscriberIsToldAboutRetentionGap() throws {
        let ferryd = try Ferryd(environment: ["FERRY_RETENTION_MAX_MESSAGES": "5"])
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: 1)
        #expect(try ws.collectMessages(count: 1).versions == [1])
        try ws.ack("t", 1)
        try ws.pingPong()
        ws.close()
        try ferryd.publishNumbered("t", count: 9, startingAt: 2)
        let info = try ferryd.topicInfo("t")
        #expect(info.int("first") == 6)
        #expect(info.int("head") == 10)
        #expect(info.int("messages") == 5)

        let (again, welcome) = try ferryd.session(clientID: "alice")
        #expect(welcome.objects("subscriptions")?.first?.int("ack_floor") == 1)
        let gap = try again.expectOp("gap")
        #expect(gap.string("topic") == "t")
        #expect(gap.int("from") == 2)
        #expect(gap.int("to") == 5)
        #expect(try again.collectMessages(count: 5).versions == [6, 7, 8, 9, 10])
    }

    @Test func subscribingBelowRetainedMessagesGetsGap() throws {
        let ferryd = try Ferryd(environment: ["FERRY_RETENTION_MAX_MESSAGES": "5"])
        try ferryd.publishNumbered("t", count: 10)
        let (ws, _) = try ferryd.session()
        #expect(try ws.subscribe("t", from: 1).int("from") == 6)
        let gap = try ws.expectOp("gap")
        #expect(gap.int("from") == 2)
        #expect(gap.int("to") == 5)
        #expect(try ws.collectMessages(count: 5).versions == [6, 7, 8, 9, 10])

        // "earliest" means the oldest retained message: no gap.
        let (other, _) = try ferryd.session()
        #expect(try other.subscribe("t", from: "earliest").int("from") == 6)
        #expect(try other.collectMessages(count: 5).versions == [6, 7, 8, 9, 10])
    }

    @Test func slowConnectedSubscriberGetsGap() throws {
        let ferryd = try Ferryd(environment: ["FERRY_RETENTION_MAX_MESSAGES": "5"])
        let (ws, _) = try ferryd.session()
        try ws.subscribe("t", from: "earliest", window: 1)
        try ferryd.publishNumbered("t", count: 1)
        #expect(try ws.collectMessages(count: 1).versions == [1])
        try ferryd.publishNumbered("t", count: 9, startingAt: 2)  // retention drops 1...5
        try ws.ack("t", 1)
        let gap = try ws.expectOp("gap")
        #expect(gap.int("from") == 2)
        #expect(gap.int("to") == 5)
        #expect(try ws.collectMessages(count: 1).versions == [6])
    }

    // MARK: heartbeat

    @Test func silentClientIsClosedAfterHeartbeatTimeout() throws {
        let ferryd = try Ferryd(environment: ["FERRY_HEARTBEAT": "1"])
        let ws = try ferryd.connect(answerPings: false)
        #expect(try ws.hello().double("heartbeat") == 1)
        let start = ContinuousClock.now
        let code = ws.waitForClose(timeout: 6)
        let elapsed = ContinuousClock.now - start
        #expect(code == 4002)
        #expect(ws.pingsReceived >= 1)
        #expect(elapsed >= .seconds(2), "closed after \(elapsed), before 2.5 × heartbeat")
    }

    @Test func clientAnsweringPingsStaysOpen() throws {
        let ferryd = try Ferryd(environment: ["FERRY_HEARTBEAT": "1"])
        let (ws, _) = try ferryd.session()
        #expect(try ws.framesWithin(4).isEmpty)  // answers pings while it waits
        #expect(ws.pingsReceived >= 2)
        #expect(ws.closeCode == nil)
        try ws.pingPong()
    }
}

/// `token` with its middle character replaced by another one of the same kind.
private func flipMiddleCharacter(of token: String) -> String {
    var characters = Array(token)
    let middle = characters.count / 2
    characters[middle] = characters[middle] == "A" ? "B" : (characters[middle].isNumber ? "x" : "A")
    return String(characters)
}
