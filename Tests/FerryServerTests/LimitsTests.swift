import FerryTestSupport
import Foundation
import Testing

/// Each limit of PROTOCOL.md hit on a real broker and answered with its code, while another
/// connection (a `Canary`) keeps publishing and receiving.
@Suite("Limits")
struct LimitsTests {
    /// Publishes `count` frames with ids `first…` in one write, so the broker reads them together
    /// and no token comes back between them.
    private func publishAtOnce(_ ws: TestWebSocket, topic: String, ids: ClosedRange<Int>) throws {
        let frames = ids.map { TestWebSocket.frame(.text, Array(TestWebSocket.publishFrame(topic, data: "{\"n\":\($0)}", id: $0).utf8)) }
        try ws.sendRaw(frames.flatMap { $0 })
    }

    /// The `published` ids and `rate_limited` error ids among `frames`; any other frame fails.
    private func sortReplies(_ frames: [JSON]) throws -> (published: Set<Int>, limited: Set<Int>) {
        var published: Set<Int> = []
        var limited: Set<Int> = []
        for frame in frames {
            switch (frame.string("op"), frame.string("code")) {
            case ("published", _): published.insert(frame.int("id") ?? -1)
            case ("error", "rate_limited"): limited.insert(frame.int("id") ?? -1)
            default: throw TestFailure("unexpected frame \(frame.text)")
            }
        }
        return (published, limited)
    }

    @Test func publishOverTheRateIsRejectedAndNotStored() throws {
        // One token a second: none comes back while the broker reads one write.
        let ferryd = try Ferryd(environment: ["FERRY_PUBLISH_RATE": "1", "FERRY_PUBLISH_BURST": "3"])
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        try publishAtOnce(ws, topic: "limited", ids: 1...5)
        var replies: [JSON] = []
        while replies.count < 5, let frame = try ws.nextJSON() { replies.append(frame) }
        let (published, limited) = try sortReplies(replies)
        #expect(published == [1, 2, 3])
        #expect(limited == [4, 5])
        try ws.pingPong()  // a rejection leaves the connection open
        #expect(try ferryd.topicInfo("limited").int("head") == 3, "a rate-limited publish was stored")
        try canary.check()
    }

    @Test func publishingOnOverTheRateIsClosedWith4029() throws {
        let ferryd = try Ferryd(environment: [
            "FERRY_PUBLISH_RATE": "1", "FERRY_PUBLISH_BURST": "2", "FERRY_PUBLISH_REJECTIONS_BEFORE_CLOSE": "4",
        ])
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        // 2 pass, the next 4 are refused (the 4th refusal closes), the last 3 are dropped.
        try publishAtOnce(ws, topic: "flood", ids: 1...9)
        var replies: [JSON] = []
        while let frame = try ws.nextJSON() { replies.append(frame) }
        #expect(ws.waitForClose() == 4029)
        let (published, limited) = try sortReplies(replies)
        #expect(published.isSubset(of: [1, 2]))
        #expect(limited == [3, 4, 5, 6])
        // Queued behind the connection's accepted publishes, so its version says how many were stored.
        #expect(try ferryd.publishJSON("flood", "0").int("version") == 3, "a rate-limited publish was stored")
        #expect(try Scrape(ferryd).count(#"ferry_limit_rejections_total{limit="publish_rate"}"#) == 4)
        try canary.check()
    }

    /// A client that stops reading but keeps sending: its replies wait in the broker until
    /// `max_pending_bytes`, then it is cut with 4013 (the close frame is behind what it did not
    /// read, so the metric tells the reason). Its durable session resumes with every message.
    @Test func clientThatStopsReadingIsCutAndResumesWithEverything() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_PENDING_BYTES": "64K"])
        let canary = try Canary(ferryd)
        let stuck = try ferryd.connect()
        try stuck.hello(clientID: "stuck")
        try stuck.subscribe("bulk", from: "latest")
        // 30 MB it does not read: far above the socket buffers, so the broker's writes stall.
        let payload = "\"" + String(repeating: "x", count: 1_000_000) + "\""
        for _ in 0..<30 { try ferryd.publishJSON("bulk", payload) }
        let reason = #"ferry_disconnects_total{reason="slow_consumer"}"#
        let pings = (0..<500).flatMap { _ in TestWebSocket.frame(.text, Array(#"{"op":"ping"}"#.utf8)) }
        // Each pong waits in the broker; the cut is the broker's state to poll.
        let deadline = Deadline(seconds: 30)
        while try Scrape(ferryd).count(reason) == 0, !deadline.hasPassed {
            do { try stuck.sendRaw(pings) } catch { break }  // the broker closed the socket
        }
        #expect(try Scrape(ferryd).count(reason) == 1, "a client that stopped reading was not cut")
        try canary.check()

        stuck.close()
        let (resumed, welcome) = try ferryd.session(clientID: "stuck")
        #expect(welcome.bool("resumed") == true)
        let messages = try resumed.collectMessages(count: 30, timeout: 60)
        #expect(messages.versions == Array(1...30))
        try canary.check()
    }

    /// HTTP publishes take tokens from a bucket per token subject: over the rate a publish (a
    /// batch counts its messages, all or none) is 429 `rate_limited` with `Retry-After` and
    /// stores nothing, another subject goes on publishing, and after `Retry-After` it passes.
    @Test func httpPublishesOverTheRateAre429PerTokenSubject() throws {
        // One token a second: none comes back between two requests.
        let ferryd = try Ferryd(environment: [
            "FERRY_PUBLISH_RATE": "1", "FERRY_PUBLISH_BURST": "3", "FERRY_JWT_SECRET": Token.secret, "FERRY_ADMIN_TOKEN": testAdminToken,
        ])
        let alice = AuthTests.bearer(Token.client("alice"))
        let bob = AuthTests.bearer(Token.client("bob"))
        #expect(try publishBatch(ferryd, topic: "alice", count: 3, headers: alice).status == 201)
        let refused = try publishBatch(ferryd, topic: "alice", count: 2, headers: alice)
        #expect(refused.status == 429 && refused.errorCode == "rate_limited", "\(refused)")
        let retryAfter = try #require(refused.headers["retry-after"].flatMap { Int($0) }, "\(refused.headers)")
        #expect(retryAfter >= 1)
        let single = try ferryd.publishHTTP("alice", body: Data("1".utf8), headers: alice)
        #expect(single.status == 429 && single.errorCode == "rate_limited" && single.headers["retry-after"] != nil, "\(single)")
        let head = { try ferryd.request("GET", Ferryd.topicPath("alice"), headers: AuthTests.bearer(testAdminToken)).json?.int("head") }
        #expect(try head() == 3, "a rate-limited publish was stored")
        // Another subject from the same address has a bucket of its own.
        #expect(try ferryd.publishJSON("bob", "1", headers: bob).int("version") == 1)
        #expect(try Scrape(ferryd).count(#"ferry_limit_rejections_total{limit="publish_rate"}"#) == 3)

        // Retry-After is the time the refused batch needs: honour it and the batch passes.
        Thread.sleep(forTimeInterval: TimeInterval(retryAfter))
        #expect(try publishBatch(ferryd, topic: "alice", count: 2, headers: alice).status == 201)
        #expect(try head() == 5)
    }

    /// Without authentication the bucket is the client address's; a batch larger than the burst
    /// could never pass and is 413 `too_large`.
    @Test func httpPublishesOverTheRateAre429PerAddressWithoutAuth() throws {
        let ferryd = try Ferryd(environment: ["FERRY_PUBLISH_RATE": "1", "FERRY_PUBLISH_BURST": "2"])
        let tooLarge = try publishBatch(ferryd, topic: "t", count: 3)
        #expect(tooLarge.status == 413 && tooLarge.errorCode == "too_large", "\(tooLarge)")
        #expect(try publishBatch(ferryd, topic: "t", count: 2).status == 201)
        let refused = try ferryd.publishHTTP("t", body: Data("1".utf8))
        #expect(refused.status == 429 && refused.errorCode == "rate_limited", "\(refused)")
        #expect(refused.headers["retry-after"].flatMap { Int($0) }.map { $0 >= 1 } == true, "\(refused.headers)")
        #expect(try ferryd.topicInfo("t").int("head") == 2, "a rate-limited publish was stored")
    }

    /// `POST /v1/publish` of `count` small JSON messages to `topic`.
    private func publishBatch(_ ferryd: Ferryd, topic: String, count: Int, headers: [String: String] = [:]) throws -> HTTPResponse {
        let messages = (1...count).map { #"{"topic":"\#(topic)","data":\#($0)}"# }.joined(separator: ",")
        return try ferryd.request(
            "POST", "/v1/publish", headers: headers.merging(["Content-Type": "application/json"]) { $1 },
            body: Data(#"{"messages":[\#(messages)]}"#.utf8))
    }

    @Test func connectionsOverTheCapAreRefusedWith503UntilOneCloses() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_CONNECTIONS": "2"])
        let (first, _) = try ferryd.session()
        let (second, _) = try ferryd.session()
        try first.subscribe("t", from: "latest")
        #expect(throws: TestWebSocket.UpgradeRefused.self) { try ferryd.connect() }
        let refused = try upgradeAnswer(ferryd)
        #expect(refused.status == 503 && refused.errorCode == "unavailable", "\(refused)")
        // The open ones are untouched.
        try second.publish("t", data: "1")
        #expect(try first.collectMessages(count: 1).versions == [1])
        #expect(try Scrape(ferryd).count(#"ferry_limit_rejections_total{limit="max_connections"}"#) == 2)

        second.close()
        let third = try awaitAccepted(ferryd)
        try third.hello()
        try third.publish("t", data: "2")
        #expect(try first.collectMessages(count: 1).versions == [2])
    }

    @Test func connectionsOverThePerAddressCapAreRefusedWith429UntilOneCloses() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_CONNECTIONS_PER_IP": "1"])
        let (first, _) = try ferryd.session()
        let refused = try upgradeAnswer(ferryd)
        #expect(refused.status == 429 && refused.errorCode == "rate_limited", "\(refused)")
        try first.pingPong()
        // Plain HTTP is not a WebSocket and is not counted.
        try ferryd.publishJSON("t", "1")
        first.close()
        let second = try awaitAccepted(ferryd)
        try second.hello()
        try second.pingPong()
    }

    /// Header blocks are bounded (by NIO's HTTP parser, 80 KiB): a larger one is refused and the
    /// broker goes on serving.
    @Test func oversizedHeadersAreRefused() throws {
        let ferryd = try Ferryd()
        let canary = try Canary(ferryd)
        let answer = try? ferryd.request("GET", "/healthz", headers: ["X-Padding": String(repeating: "a", count: 200_000)])
        #expect(answer.map { $0.status >= 400 } ?? true, "a 200 KB header was accepted: \(answer.map(\.description) ?? "")")
        try canary.check()
    }

    /// The HTTP answer to an upgrade request (a refused one: a 101 would fail here).
    private func upgradeAnswer(_ ferryd: Ferryd) throws -> HTTPResponse {
        try ferryd.request(
            "GET", "/v1/ws",
            headers: [
                "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": Data(count: 16).base64EncodedString(),
            ])
    }

    /// A WebSocket, once the broker has counted a closed one out: it notices the close on its own
    /// schedule, so retry the upgrade (bounded).
    private func awaitAccepted(_ ferryd: Ferryd) throws -> TestWebSocket {
        let deadline = Deadline(seconds: 10)
        while true {
            do {
                return try ferryd.connect()
            } catch let refused as TestWebSocket.UpgradeRefused where !deadline.hasPassed && refused.status != 101 {
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
    }
}
