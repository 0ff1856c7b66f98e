import FerryTestSupport
import Foundation
import Testing

/// Per-topic configuration against a real ferryd: the admin API, enforcement, restarts, ferryctl.
@Suite struct TopicConfigTests {
    private static let path = "/config/topics/"

    /// `PUT /v1/admin/config/topics/{pattern}` with `body`, the pattern percent-encoded as one segment.
    private func put(_ ferryd: Ferryd, _ pattern: String, _ body: String) throws -> HTTPResponse {
        try ferryd.admin("PUT", Self.path + Self.segment(pattern), json: body)
    }

    private static func segment(_ pattern: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/%?#*>")
        return pattern.addingPercentEncoding(withAllowedCharacters: allowed) ?? pattern
    }

    @Test func adminAPIStoresListsAndDeletesEntriesAndTopicsShowWhatApplies() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_RETENTION_MAX_MESSAGES": "100"])
        let stored = try put(ferryd, "orders.*", #"{"max_messages":3,"max_bytes":null,"dedup_window_ms":60000,"retention":"limits"}"#)
        #expect(stored.status == 200, "\(stored)")
        #expect(stored.json?.string("pattern") == "orders.*")
        #expect(stored.json?.isNull("max_bytes") == true, "null is unlimited: \(stored)")
        #expect(stored.json?["max_age_ms"] == nil, "a field left out is the global setting: \(stored)")
        #expect(try put(ferryd, "a/b.>", #"{"max_age_ms":1000}"#).status == 200)

        let list = try #require(try ferryd.admin("GET", "/config/topics").json?.objects("configs"))
        #expect(list.compactMap { $0.string("pattern") } == ["a/b.>", "orders.*"])
        #expect(list.last?.int("max_messages") == 3)
        #expect(list.last?.int("dedup_window_ms") == 60_000)

        try ferryd.publishNumbered("orders.eu", count: 1)
        let config = try #require(try ferryd.topicInfo("orders.eu").object("config"))
        #expect(config.string("pattern") == "orders.*")
        #expect(config.int("max_messages") == 3)
        #expect(config.isNull("max_bytes"))
        #expect(config.int("max_age_ms") == 7 * 86_400_000)
        #expect(config.int("max_message_bytes") == 1_048_576)
        #expect(config.int("dedup_window_ms") == 60_000)
        #expect(config.string("retention") == "limits")
        let admin = try #require(try ferryd.admin("GET", "/topics/orders.eu").json?.object("config"))
        #expect(admin.string("pattern") == "orders.*")
        try ferryd.publishNumbered("billing", count: 1)
        let global = try #require(try ferryd.topicInfo("billing").object("config"))
        #expect(global.isNull("pattern"))
        #expect(global.int("max_messages") == 100)
        #expect(global.int("max_bytes") == 1 << 30)

        let deleted = try ferryd.admin("DELETE", Self.path + Self.segment("orders.*"))
        #expect(deleted.status == 200, "\(deleted)")
        #expect(deleted.json?.bool("deleted") == true)
        #expect(try ferryd.topicInfo("orders.eu").object("config")?.isNull("pattern") == true)
        #expect(try ferryd.admin("DELETE", Self.path + Self.segment("orders.*")).status == 404)
        #expect(try ferryd.admin("GET", "/config/topics").json?.objects("configs")?.count == 1)
    }

    @Test(arguments: [
        ("a.>.b", "{}", 400, "invalid_topic"),
        ("$sys", "{}", 400, "invalid_topic"),
        ("x", #"{"retention":"work-queue"}"#, 400, "bad_frame"),
        ("x", #"{"retention":"fifo"}"#, 400, "bad_frame"),
        ("x", #"{"max_message_bytes":2000000}"#, 400, "bad_frame"),
        ("x", #"{"max_messages":0}"#, 400, "bad_frame"),
        ("x", #"{"max_mesages":5}"#, 400, "bad_frame"),
        ("x", #"{"max_messages":"5"}"#, 400, "bad_frame"),
        ("x", #"{"dedup_window_ms":null}"#, 400, "bad_frame"),
        ("x", #"{"pattern":"y"}"#, 400, "bad_frame"),
        ("x", "[1]", 400, "bad_frame"),
    ])
    func badEntriesAreRefusedAndStoreNothing(pattern: String, body: String, status: Int, code: String) throws {
        let ferryd = try Ferryd.withAdmin()
        let response = try put(ferryd, pattern, body)
        #expect(response.status == status, "\(response)")
        #expect(response.errorCode == code, "\(response)")
        #expect(try ferryd.admin("GET", "/config/topics").json?.objects("configs")?.isEmpty == true)
        if body.contains("work-queue") { #expect(response.text.contains("limits, interest or work_queue"), "\(response)") }
    }

    @Test func maxMessagesKeepsTheNewestAndASubscriberFromTheStartIsToldTheGap() throws {
        let ferryd = try Ferryd.withAdmin()
        #expect(try put(ferryd, "orders.*", #"{"max_messages":3}"#).status == 200)
        try ferryd.publishNumbered("orders.eu", count: 5)
        try ferryd.publishNumbered("orders", count: 5)
        let read = try ferryd.get(Ferryd.topicPath("orders.eu") + "/messages")
        #expect(read.json?.objects("messages")?.versions == [3, 4, 5])
        #expect(try ferryd.topicInfo("orders").int("messages") == 5, "a topic the pattern does not match keeps the global limit")

        let (ws, _) = try ferryd.session(clientID: "reader")
        try ws.subscribe("orders.eu", from: 0)
        let gap = try ws.expectOp("gap")
        #expect([gap.int("from"), gap.int("to")] == [1, 2])
        #expect(try ws.collectMessages(count: 3).versions == [3, 4, 5])
    }

    @Test func aTopicsPayloadLimitRefusesWith413WhileAnotherTopicTakesThePayload() throws {
        let ferryd = try Ferryd.withAdmin()
        #expect(try put(ferryd, "small", #"{"max_message_bytes":8}"#).status == 200)
        let refused = try ferryd.publishHTTP("small", body: Data(#""123456789""#.utf8))
        #expect(refused.status == 413, "\(refused)")
        #expect(refused.errorCode == "too_large")
        #expect(refused.text.contains("over 8 bytes"), "\(refused)")
        #expect(try ferryd.publishHTTP("other", body: Data(#""123456789""#.utf8)).status == 201)
        #expect(try ferryd.publishHTTP("small", body: Data(#""123456""#.utf8)).status == 201)
        // The same check over WebSocket.
        let (ws, _) = try ferryd.session()
        try ws.sendText(TestWebSocket.publishFrame("small", data: #""123456789""#, id: 7))
        try ws.expectError("too_large", id: 7)
        #expect(try ferryd.topicInfo("small").int("head") == 1)
    }

    @Test func entriesOutliveARestart() throws {
        let ferryd = try Ferryd.withAdmin()
        #expect(try put(ferryd, "t.>", #"{"max_messages":2,"max_message_bytes":8}"#).status == 200)
        try ferryd.restart()
        let list = try #require(try ferryd.admin("GET", "/config/topics").json?.objects("configs"))
        #expect(list.count == 1)
        #expect(list.first?.int("max_messages") == 2)
        try ferryd.publishNumbered("t.a", count: 4)
        #expect(try ferryd.topicInfo("t.a").int("first") == 3)
        #expect(try ferryd.publishHTTP("t.a", body: Data(#""123456789""#.utf8)).status == 413)
    }

    @Test func ferryctlSetsListsShowsAndDeletesEntries() throws {
        let ferryd = try Ferryd.withAdmin()
        let set = try ferryctl(
            ["topics", "config", "set", "sensors.>", "--max-messages", "100", "--max-bytes", "1M", "--max-age", "unlimited",
             "--max-message-bytes", "4K", "--dedup-window", "1h", "--retention", "limits"], broker: ferryd)
        #expect(set.status == 0, "\(set)")
        #expect(set.stdout == "set topic configuration sensors.>\n")
        let entry = try #require(try ferryd.admin("GET", "/config/topics").json?.objects("configs")?.first)
        #expect(entry.int("max_messages") == 100)
        #expect(entry.int("max_bytes") == 1 << 20)
        #expect(entry.isNull("max_age_ms"))
        #expect(entry.int("max_message_bytes") == 4096)
        #expect(entry.int("dedup_window_ms") == 3_600_000)

        let list = try ferryctl(["topics", "config", "list"], broker: ferryd)
        #expect(list.status == 0, "\(list)")
        let rows = list.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        #expect(rows.first == "PATTERN MAX MESSAGES MAX BYTES MAX AGE MAX MESSAGE BYTES DEDUP WINDOW RETENTION")
        #expect(rows.last == "sensors.> 100 1.0 MiB unlimited 4.0 KiB 1h 00m limits", "\(list)")
        #expect(try ferryctl(["topics", "config", "list", "--json"], broker: ferryd).json?.objects("configs")?.count == 1)

        try ferryd.publishNumbered("sensors.7.temp", count: 1)
        let shown = try ferryctl(["topics", "show", "sensors.7.temp"], broker: ferryd)
        #expect(shown.stdout.contains("configuration      entry sensors.>"), "\(shown)")
        #expect(shown.stdout.contains("max messages       100"), "\(shown)")
        #expect(shown.stdout.contains("max age            unlimited"), "\(shown)")

        #expect(try ferryctl(["topics", "config", "set", "x", "--max-bytes", "lots"], broker: ferryd).status == 2)
        let refused = try ferryctl(["topics", "config", "set", "x", "--retention", "fifo"], broker: ferryd)
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("limits, interest or work_queue"), "\(refused)")
        let deleted = try ferryctl(["topics", "config", "delete", "sensors.>"], broker: ferryd)
        #expect(deleted.status == 0, "\(deleted)")
        #expect(try ferryctl(["topics", "config", "delete", "sensors.>"], broker: ferryd).status == 3)
        #expect(try ferryd.admin("GET", "/config/topics").json?.objects("configs")?.isEmpty == true)
    }
}
