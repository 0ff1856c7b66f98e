import FerryTestSupport
import Foundation
import Testing

/// One scrape of `/metrics`: each sample's value by its name and labels as printed, e.g.
/// `ferry_resumes_total{result="new"}`.
struct Scrape {
    let samples: [String: Double]

    init(_ ferryd: Ferryd) throws {
        let response = try ferryd.get("/metrics")
        guard response.status == 200 else { throw TestFailure("GET /metrics: \(response)") }
        var samples: [String: Double] = [:]
        for line in response.text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw TestFailure("not a sample line: \(line)")
            }
            samples[String(line[..<space])] = value
        }
        self.samples = samples
    }

    subscript(_ name: String) -> Double? { samples[name] }

    /// A counter that has not been incremented may be absent: read it as 0.
    func count(_ name: String) -> Double { samples[name] ?? 0 }
}

/// `/metrics` of a real `ferryd` moves with real traffic.
@Suite("Metrics")
struct MetricsTests {
    @Test func countersAndGaugesFollowTraffic() throws {
        let ferryd = try Ferryd(environment: [
            "FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_RETENTION_MAX_MESSAGES": "3", "FERRY_METRICS_TOP_N": "1",
        ])
        let idle = try Scrape(ferryd)
        #expect(idle.count("ferry_messages_published_total") == 0)
        #expect(idle["ferry_durable_sessions"] == 0)
        #expect(idle["ferry_store_map_size_bytes"] == Double(8 << 30))  // the default FERRY_MAP_SIZE

        // A durable subscriber gets three messages and acks the first.
        let (reader, _) = try ferryd.session(clientID: "reader")
        try reader.subscribe("orders", from: "earliest")
        try ferryd.publishNumbered("orders", count: 3)
        #expect(try reader.collectMessages(count: 3).versions == [1, 2, 3])
        try reader.ack("orders", 1)
        try reader.pingPong()
        var scrape = try Scrape(ferryd)
        #expect(scrape.count("ferry_messages_published_total") == 3)
        #expect(scrape.count("ferry_messages_delivered_total") == 3)
        #expect(scrape.count("ferry_acks_total") == 1)
        #expect(scrape.count(#"ferry_resumes_total{result="new"}"#) == 1)
        #expect(scrape["ferry_connections"] == 1)
        #expect(scrape["ferry_durable_sessions"] == 1)
        #expect(scrape[#"ferry_topic_head{topic="orders"}"#] == 3)
        #expect(scrape[#"ferry_client_lag{client_id="reader"}"#] == 2)
        #expect(scrape["ferry_durable_lag_messages"] == 2)
        #expect(scrape.count("ferry_commit_duration_seconds_count") >= 3)
        #expect(scrape.count("ferry_commit_batch_operations_count") >= 3)
        #expect((scrape["ferry_store_used_bytes"] ?? 0) > 0)

        // It leaves and comes back: the two it had not acked are sent again.
        reader.close()
        try ferryd.awaitDisconnected("reader")
        let (resumed, welcome) = try ferryd.session(clientID: "reader")
        #expect(welcome.bool("resumed") == true)
        #expect(try resumed.collectMessages(count: 2).versions == [2, 3])
        scrape = try Scrape(ferryd)
        #expect(scrape.count(#"ferry_resumes_total{result="resumed"}"#) == 1)
        #expect(scrape.count("ferry_messages_redelivered_total") == 2)
        #expect(scrape.count("ferry_messages_delivered_total") == 5)
        #expect(scrape.count(#"ferry_disconnects_total{reason="normal"}"#) == 1)

        // Retention keeps 3 messages: a subscriber from the start of a 5-message topic gets a gap.
        try ferryd.publishNumbered("old", count: 5)
        let (late, _) = try ferryd.session()
        try late.subscribe("old", from: 0)
        #expect(try late.expectOp("gap").int("to") == 2)
        // A forged token is refused; ephemeral hellos (`late`) are not resumes.
        let forger = try ferryd.connect()
        try forger.sendJSON(["op": "hello", "resume_token": "forged"])
        try forger.expectError("bad_resume_token")
        scrape = try Scrape(ferryd)
        #expect(scrape.count("ferry_gaps_total") == 1)
        #expect(scrape.count(#"ferry_resumes_total{result="rejected"}"#) == 1)
        #expect(scrape.count(#"ferry_resumes_total{result="new"}"#) == 1)
        // FERRY_METRICS_TOP_N=1: only the topic with the highest head keeps a series.
        #expect(scrape[#"ferry_topic_head{topic="old"}"#] == 5)
        #expect(scrape[#"ferry_topic_head{topic="orders"}"#] == nil)
        #expect(scrape["ferry_topics"] == 2)
        #expect(scrape["ferry_connections"] == 3)

        // A second connection takes the live session over: a resume, and a close with 4009, but
        // no redeliveries counted (the broker cannot see what the live connection had sent).
        let (takeover, _) = try ferryd.session(clientID: "reader")
        #expect(resumed.waitForClose() == 4009)
        #expect(try takeover.collectMessages(count: 2).versions == [2, 3])
        scrape = try Scrape(ferryd)
        #expect(scrape.count(#"ferry_resumes_total{result="resumed"}"#) == 2)
        #expect(scrape.count(#"ferry_disconnects_total{reason="session_taken_over"}"#) == 1)
        #expect(scrape.count("ferry_messages_redelivered_total") == 2)

        // Caught up: no lag series for the client, and no lag in the sum.
        try takeover.ack("orders", 3)
        try takeover.pingPong()
        scrape = try Scrape(ferryd)
        #expect(scrape[#"ferry_client_lag{client_id="reader"}"#] == nil)
        #expect(scrape["ferry_durable_lag_messages"] == 0)
    }

    /// A client that answers no ping is closed with 4002 and counted by reason.
    @Test func heartbeatTimeoutIsCountedByReason() throws {
        let ferryd = try Ferryd(environment: ["FERRY_HEARTBEAT": "200ms"])
        let silent = try ferryd.connect(answerPings: false)
        try silent.hello()
        #expect(silent.waitForClose() == 4002)
        let scrape = try Scrape(ferryd)
        #expect(scrape.count(#"ferry_disconnects_total{reason="heartbeat_timeout"}"#) == 1)
    }

    /// A consumer that stops reading while the broker has more to send than the socket buffers
    /// hold: the writer waits for room that never comes, so the 4002 close decided after 2.5
    /// heartbeats is never written and the connection stays, holding its window of frames. The
    /// broker should drop the TCP connection when its close cannot go out within the close grace.
    /// The heartbeat (1 s) is long enough for the writer to be blocked before it expires.
    @Test func consumerThatStopsReadingIsDropped() throws {
        let ferryd = try Ferryd(environment: ["FERRY_HEARTBEAT": "1s"])
        let stuck = try ferryd.connect()
        try stuck.hello()
        try stuck.subscribe("bulk", from: "latest")
        let payload = "\"" + String(repeating: "x", count: 1_000_000) + "\""
        for _ in 0..<30 { try ferryd.publishJSON("bulk", payload) }  // 30 MB: far above socket buffers
        // Dropped within 2.5-3 heartbeats (the close frame cannot be written to a full socket);
        // the broker's state is all there is to await, so poll it.
        let deadline = Deadline(seconds: 7)
        while try Scrape(ferryd)["ferry_connections"] != 0, !deadline.hasPassed { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try Scrape(ferryd)["ferry_connections"] == 0, "a consumer that stopped reading is still connected")
    }
}
