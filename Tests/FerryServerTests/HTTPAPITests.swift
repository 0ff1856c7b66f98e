import FerryTestSupport
import Foundation
import Testing

/// The HTTP API of PROTOCOL.md, against a real `ferryd` per test.
@Suite("HTTP API")
struct HTTPAPITests {
    // MARK: publish

    @Test func publishJSONOverHTTP() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        try ws.subscribe("orders", from: "latest")
        let payloads = [
            (#"{"z":1,"a":1.50}"#, "application/json"),
            (#"[1.0,"x"]"#, "application/json; charset=utf-8"),
            (#"{"kind":"vendor"}"#, "application/vnd.ferry.order+json"),
            ("{}", "application/json"),
        ]
        for (index, (data, contentType)) in payloads.enumerated() {
            let response = try ferryd.publishHTTP("orders", body: Data(data.utf8), contentType: contentType)
            try #require(response.status == 201, "\(data) as \(contentType): \(response)")
            let reply = try #require(response.json)
            #expect(reply.string("topic") == "orders")
            #expect(reply.int("version") == index + 1)
            #expect(reply.string("epoch")?.isEmpty == false)
            #expect(reply.bool("duplicate") == false)
            let text = try #require(try ws.nextText())
            #expect(parseJSONObject(text)?.int("version") == index + 1)
            #expect(text.contains(data), "\(contentType) payload not verbatim as data: \(text)")
        }
    }

    @Test func publishBytesOverHTTP() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        try ws.subscribe("blobs", from: "latest")
        for contentType in ["application/octet-stream", "text/plain"] {
            let response = try ferryd.publishHTTP("blobs", body: Data([0, 1, 2, 255]), contentType: contentType)
            #expect(response.status == 201, "\(response)")
            let message = try #require(try ws.collectMessages(count: 1).first)
            #expect(message.string("data_b64") == "AAEC/w==", "\(contentType)")
            #expect(message["data"] == nil)
        }
    }

    @Test func idempotencyKeyDeduplicates() throws {
        let ferryd = try Ferryd()
        let first = try ferryd.publishJSON("t", "1", headers: ["Idempotency-Key": "k-1"])
        #expect(first.bool("duplicate") == false)
        let retry = try ferryd.publishJSON("t", "2", headers: ["Idempotency-Key": "k-1"])
        #expect(retry.bool("duplicate") == true)
        #expect(retry.int("version") == first.int("version"))
        #expect(try ferryd.topicInfo("t").int("head") == 1)

        // Idempotency-Key and msg_id share one namespace.
        let (ws, _) = try ferryd.session()
        let viaWebSocket = try ws.publish("t", data: "3", msgID: "k-2")
        let viaHTTP = try ferryd.publishJSON("t", "4", headers: ["Idempotency-Key": "k-2"])
        #expect(viaHTTP.bool("duplicate") == true)
        #expect(viaHTTP.int("version") == viaWebSocket.int("version"))
        let again = try ws.publish("t", data: "5", msgID: "k-1")
        #expect(again.bool("duplicate") == true)
        #expect(again.int("version") == 1)
    }

    @Test func slashInTopicIsOnePathSegment() throws {
        let ferryd = try Ferryd()
        let (ws, _) = try ferryd.session()
        try ws.subscribe("a/b", from: "latest")
        let reply = try ferryd.publishJSON("a/b", "1")
        #expect(reply.string("topic") == "a/b")
        #expect(try ws.collectMessages(count: 1).first?.string("topic") == "a/b")
        #expect(Ferryd.topicPath("a/b") == "/v1/topics/a%2Fb")
        #expect(try ferryd.topicInfo("a/b").string("topic") == "a/b")
        let messages = try ferryd.get("/v1/topics/a%2Fb/messages")
        #expect(messages.json?.objects("messages")?.count == 1)
    }

    @Test func invalidTopicIs400() throws {
        let ferryd = try Ferryd()
        for path in ["%24sys", "has%20space", String(repeating: "a", count: 256), "star*"] {
            let response = try ferryd.request(
                "POST", "/v1/topics/\(path)/messages", headers: ["Content-Type": "application/json"], body: Data("1".utf8))
            #expect(response.status == 400, "\(path): \(response)")
            #expect(response.errorCode == "invalid_topic", "\(path): \(response)")
        }
    }

    @Test func payloadOverLimitIs413() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_MESSAGE_BYTES": "1000"])
        let tooLarge = try ferryd.publishHTTP("t", body: Data(count: 1001), contentType: "application/octet-stream")
        #expect(tooLarge.status == 413)
        #expect(tooLarge.errorCode == "too_large")
        let atLimit = try ferryd.publishHTTP("t", body: Data(count: 1000), contentType: "application/octet-stream")
        #expect(atLimit.status == 201)
    }

    @Test func invalidJSONBodyIs400() throws {
        let ferryd = try Ferryd()
        for body in [#"{"a":"#, "", "nope", #"{"a":1}}"#] {
            let response = try ferryd.publishHTTP("t", body: Data(body.utf8))
            #expect(response.status == 400, "body \(body): \(response)")
            #expect(response.errorCode == "bad_frame", "body \(body): \(response)")
        }
        #expect(try ferryd.get(Ferryd.topicPath("t")).status == 404, "nothing was stored")
    }

    // MARK: batch publish

    @Test func batchPublishIsAllOrNothing() throws {
        let ferryd = try Ferryd()
        let batch = #"""
            {"messages":[
              {"topic":"a","data":{"x":1.50}},
              {"topic":"b","data_b64":"AAEC/w=="},
              {"topic":"a","data":2,"msg_id":"m-1","headers":{"h":"v"}}
            ]}
            """#
        let response = try ferryd.request(
            "POST", "/v1/publish", headers: ["Content-Type": "application/json"], body: Data(batch.utf8))
        #expect(response.status == 201, "\(response)")
        let results = try #require(response.json?.objects("results"))
        #expect(results.map { $0.string("topic") } == ["a", "b", "a"])
        #expect(results.versions == [1, 1, 2])
        #expect(results.map { $0.bool("duplicate") } == [false, false, false])
        let stored = try ferryd.get(Ferryd.topicPath("a") + "/messages")
        #expect(stored.text.contains(#"{"x":1.50}"#), "batch JSON data stored verbatim: \(stored)")

        let invalidBatches = [
            #"{"messages":[{"topic":"a","data":3},{"topic":"$bad","data":4}]}"#,
            #"{"messages":[{"topic":"a","data":3},{"topic":"b","data":4,"data_b64":"AA=="}]}"#,
            #"{"messages":[{"topic":"a","data":3},{"topic":"b"}]}"#,
            #"{"messages":[{"topic":"a","data":3},{"topic":"b","data_b64":"@@@"}]}"#,
            #"{"messages":"no"}"#,
        ]
        forEachCase(invalidBatches) { body in
            let rejected = try ferryd.request(
                "POST", "/v1/publish", headers: ["Content-Type": "application/json"], body: Data(body.utf8))
            #expect(rejected.status == 400, "\(rejected)")
            #expect(rejected.errorCode != nil, "\(rejected)")
        }
        #expect(try ferryd.topicInfo("a").int("head") == 2, "a rejected batch stores nothing")
        #expect(try ferryd.topicInfo("b").int("head") == 1, "a rejected batch stores nothing")
    }

    // MARK: reading

    @Test func readMessagesWithFromAndLimit() throws {
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "none"])
        for chunk in 0..<3 {  // 1,200 messages in three batches
            let messages = (1...400).map { #"{"topic":"t","data":{"n":\#(chunk * 400 + $0)}}"# }
            let body = #"{"messages":[\#(messages.joined(separator: ","))]}"#
            let response = try ferryd.request(
                "POST", "/v1/publish", headers: ["Content-Type": "application/json"], body: Data(body.utf8))
            try #require(response.status == 201, "\(response)")
        }
        func page(_ query: String) throws -> [JSON] {
            let response = try ferryd.get(Ferryd.topicPath("t") + "/messages" + query)
            guard response.status == 200, let json = response.json, let messages = json.objects("messages") else {
                throw TestFailure("GET messages\(query): \(response)")
            }
            #expect(json.string("topic") == "t")
            #expect(json.string("epoch")?.isEmpty == false)
            return messages
        }
        #expect(try page("").versions == Array(1...100))
        #expect(try page("?from=1000").versions == Array(1001...1100))
        #expect(try page("?from=0&limit=5000").versions == Array(1...1000))
        #expect(try page("?from=5&limit=3").versions == [6, 7, 8])
        #expect(try page("?from=1200").isEmpty)
        let sample = try #require(try page("?from=41&limit=1").first)
        #expect(sample.object("data")?.int("n") == 42)
        #expect((sample.int("ts") ?? 0) > 1_600_000_000_000)
        for query in ["?from=abc", "?limit=x", "?from=1.5"] {
            let response = try ferryd.get(Ferryd.topicPath("t") + "/messages" + query)
            #expect(response.status == 400, "\(query): \(response)")
            #expect(response.errorCode == "bad_frame", "\(query): \(response)")
        }
    }

    @Test func topicInfoFields() throws {
        let ferryd = try Ferryd()
        let epoch = try ferryd.publishJSON("t", #""12345""#).string("epoch")  // 7 bytes of JSON text
        #expect(try ferryd.publishHTTP("t", body: Data([1, 2, 3]), contentType: "application/octet-stream").status == 201)
        let (durable, _) = try ferryd.session(clientID: "alice")
        try durable.subscribe("t")
        durable.close()  // a durable subscription counts while its client is away
        let (ephemeral, _) = try ferryd.session()
        try ephemeral.subscribe("t")

        let info = try ferryd.topicInfo("t")
        #expect(info.string("topic") == "t")
        #expect(info.string("epoch") == epoch)
        #expect(info.int("first") == 1)
        #expect(info.int("head") == 2)
        #expect(info.int("messages") == 2)
        #expect(info.int("bytes") == 7 + 3)
        #expect(info.int("subscribers") == 2)
    }

    @Test func topicInfoAfterRetention() throws {
        let ferryd = try Ferryd(environment: ["FERRY_RETENTION_MAX_MESSAGES": "5"])
        try ferryd.publishNumbered("t", count: 8)
        let info = try ferryd.topicInfo("t")
        #expect(info.int("first") == 4)
        #expect(info.int("head") == 8)
        #expect(info.int("messages") == 5)
        #expect(try ferryd.get(Ferryd.topicPath("t") + "/messages").json?.objects("messages")?.versions == [4, 5, 6, 7, 8])
    }

    @Test func unknownTopicIs404() throws {
        let ferryd = try Ferryd()
        for path in [Ferryd.topicPath("nope"), Ferryd.topicPath("nope") + "/messages"] {
            let response = try ferryd.get(path)
            #expect(response.status == 404, "\(path): \(response)")
            #expect(response.errorCode == "not_found", "\(path): \(response)")
        }
    }

    @Test func healthReadinessAndMetrics() throws {
        let ferryd = try Ferryd()
        let health = try ferryd.get("/healthz")
        #expect(health.status == 200)
        #expect(health.json?.string("status") == "ok")
        let ready = try ferryd.get("/readyz")
        #expect(ready.status == 200)
        #expect(ready.json?.string("status") == "ready")
        try ferryd.publishNumbered("t", count: 1)
        let metrics = try ferryd.get("/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.text.contains("ferry_"), "no ferry_ metric in: \(metrics.text.prefix(500))")
    }

    // MARK: admin

    @Test func adminIsOffWithoutToken() throws {
        let ferryd = try Ferryd()
        for token in [nil, "anything"] {
            let response = try ferryd.admin("GET", "/topics", token: token)
            #expect(response.status == 403, "\(response)")
            #expect(response.errorCode == "forbidden", "\(response)")
        }
    }

    @Test func adminNeedsTheRightToken() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
        for token in [nil, "wrong", testAdminToken + "x"] {
            let response = try ferryd.admin("GET", "/topics", token: token)
            #expect(response.status == 401, "token \(token ?? "none"): \(response)")
            #expect(response.errorCode == "unauthorized", "\(response)")
        }
        #expect(try ferryd.admin("GET", "/topics").status == 200)
        // The admin token does not turn on client authentication.
        #expect(try ferryd.session().1.string("op") == "welcome")
    }

    @Test func adminListsTopics() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
        try ferryd.publishNumbered("one", count: 1)
        try ferryd.publishNumbered("two", count: 2)
        let response = try ferryd.admin("GET", "/topics")
        #expect(response.status == 200)
        let topics = try #require(response.json?.objects("topics"))
        #expect(Set(topics.compactMap { $0.string("topic") }) == ["one", "two"])
        #expect(topics.first { $0.string("topic") == "two" }?.int("head") == 2)
    }

    @Test func adminDeletesTopic() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
        try ferryd.publishNumbered("t", count: 3)
        let (ws, _) = try ferryd.session()
        let oldEpoch = try #require(try ws.subscribe("t", from: "earliest").string("epoch"))
        #expect(try ws.collectMessages(count: 3).versions == [1, 2, 3])

        let deleted = try ferryd.admin("DELETE", "/topics/t")
        #expect(deleted.status == 200, "\(deleted)")
        #expect(deleted.json?.string("topic") == "t")
        #expect(deleted.json?.bool("deleted") == true)
        let reply = try ferryd.publishJSON("t", #""new log""#)
        #expect(reply.int("version") == 1)
        let newEpoch = try #require(reply.string("epoch"))
        #expect(newEpoch != oldEpoch)

        let reset = try ws.expectOp("reset")
        #expect(reset.string("topic") == "t")
        #expect(reset.string("old_epoch") == oldEpoch)
        #expect(reset.string("epoch") == newEpoch)
        let message = try #require(try ws.collectMessages(count: 1).first)
        #expect(message.int("version") == 1)
        #expect(message.string("data") == "new log")
        #expect(try ferryd.admin("DELETE", "/topics/never").status == 404)
    }

    @Test func adminShowsAndDeletesClients() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
        let (ws, welcome) = try ferryd.session(clientID: "alice")
        let token = try #require(welcome.string("resume_token"))
        let epoch = try ws.subscribe("t", from: "earliest").string("epoch")
        try ferryd.publishNumbered("t", count: 5)
        #expect(try ws.collectMessages(count: 5).versions == [1, 2, 3, 4, 5])
        try ws.ack("t", 3)
        try ws.pingPong()

        let list = try ferryd.admin("GET", "/clients")
        #expect(list.status == 200)
        let entry = try #require(list.json?.objects("clients")?.first { $0.string("client_id") == "alice" })
        #expect(entry.bool("connected") == true)
        #expect(entry.int("subscriptions") == 1)
        #expect((entry.int("last_seen") ?? 0) > 1_600_000_000_000)

        let shown = try ferryd.admin("GET", "/clients/alice")
        #expect(shown.status == 200)
        let client = try #require(shown.json)
        #expect(client.string("client_id") == "alice")
        #expect(client.bool("connected") == true)
        let subscription = try #require(client.objects("subscriptions")?.first)
        #expect(subscription.string("topic") == "t")
        #expect(subscription.string("epoch") == epoch)
        #expect(subscription.int("ack_floor") == 3)
        #expect(subscription.int("head") == 5)
        #expect(subscription.int("lag") == 2)
        #expect(try ferryd.admin("GET", "/clients/nobody").errorCode == "not_found")

        let deleted = try ferryd.admin("DELETE", "/clients/alice")
        #expect(deleted.status == 200, "\(deleted)")
        #expect(deleted.json?.string("client_id") == "alice")
        #expect(deleted.json?.bool("deleted") == true)
        #expect(ws.waitForClose() == 4010)
        #expect(try ferryd.admin("GET", "/clients/alice").status == 404)
        #expect(try ferryd.admin("DELETE", "/clients/alice").status == 404)

        // The old token names a session that no longer exists: a fresh one starts.
        let (_, fresh) = try ferryd.session(resumeToken: token)
        #expect(fresh.bool("resumed") == false)
        #expect(fresh.objects("subscriptions")?.isEmpty == true)
    }

    @Test func adminStats() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t")
        try ferryd.publishNumbered("t", count: 1)
        let stats = try #require(try ferryd.admin("GET", "/stats").json)
        #expect((stats.int("connections") ?? 0) >= 1)
        #expect(stats.int("topics") == 1)
        #expect(stats.int("sessions") == 1)
        #expect((stats.double("uptime_seconds") ?? -1) >= 0)
    }

    @Test func adminTrimRefusalListsWhatEachClientWouldLose() throws {
        let ferryd = try Ferryd.withAdmin()
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: 3)
        #expect(try ws.collectMessages(count: 3).count == 3)
        try ws.ack("t", 1)
        try ws.pingPong()

        let refused = try ferryd.admin("POST", "/topics/t/trim", json: #"{"to":3}"#)
        #expect(refused.status == 409, "\(refused)")
        #expect(refused.errorCode == "session_conflict")
        let affected = try #require(refused.json?.object("error")?.objects("affected"))
        #expect(affected.map(\.text) == [#"{"ack_floor":1,"client_id":"alice","from":2,"to":3}"#])

        let trimmed = try ferryd.admin("POST", "/topics/t/trim", json: #"{"to":3,"force":true}"#)
        #expect(trimmed.status == 200, "\(trimmed)")
        #expect(trimmed.text == #"{"first":4,"head":3,"messages":0,"removed":3,"topic":"t"}"#)
        #expect(try ferryd.admin("POST", "/topics/t/trim", json: #"{"to":"x"}"#).errorCode == "bad_frame")
        #expect(try ferryd.admin("POST", "/topics/t/trim", token: "wrong", json: #"{"to":1}"#).status == 401)

        let detail = try #require(try ferryd.admin("GET", "/topics/t").json)
        #expect(detail.int("lag") == 2)
        #expect(detail.objects("durable_subscriptions")?.first?.string("client_id") == "alice")
        #expect(try ferryd.get(Ferryd.topicPath("t")).json?["durable_subscriptions"] == nil, "admin fields stay off the public endpoint")
    }

    @Test func adminRewindWaitsForTheClientToBeAway() throws {
        let ferryd = try Ferryd.withAdmin()
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: 2)
        #expect(try ws.collectMessages(count: 2).count == 2)
        let body = #"{"topic":"t","to":0}"#
        #expect(try ferryd.admin("POST", "/clients/alice/rewind", json: body).errorCode == "session_conflict")
        ws.close()
        try ferryd.awaitDisconnected("alice")
        let rewound = try ferryd.admin("POST", "/clients/alice/rewind", json: body)
        #expect(rewound.status == 200, "\(rewound)")
        #expect(rewound.json?.int("ack_floor") == 0)
        #expect(rewound.json?.int("lag") == 2)
        #expect(try ferryd.admin("POST", "/clients/alice/rewind", json: #"{"topic":"t","to":3}"#).errorCode == "bad_frame")
        #expect(try ferryd.admin("POST", "/clients/bob/rewind", json: body).status == 404)
    }

    @Test func adminBackupServesTheSameMessages() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
        try ferryd.publishNumbered("t", count: 4)
        #expect(try ferryd.publishHTTP("t", body: Data([9, 8, 7]), contentType: "application/octet-stream").status == 201)
        let backup = ferryd.directory.appendingPathComponent("backup")
        let response = try ferryd.admin("POST", "/backup", json: jsonText(["path": backup.path]))
        #expect(response.status == 200, "\(response)")
        #expect(response.json?.string("path") == backup.path)
        #expect((response.json?.int("bytes") ?? 0) > 0)

        let restored = try Ferryd(copyingDataFrom: backup)
        let original = try ferryd.get(Ferryd.topicPath("t") + "/messages")
        let copy = try restored.get(Ferryd.topicPath("t") + "/messages")
        #expect(copy.status == 200)
        #expect(copy.json?.objects("messages")?.versions == [1, 2, 3, 4, 5])
        #expect(copy.text == original.text, "same messages, timestamps and epoch")
        #expect(try restored.publishJSON("t", "6").int("version") == 6)
    }
}
