import FerryTestSupport
import Foundation
import Testing

/// Bad frames get an `error` (or a close where the contract says so), never corrupt state, never
/// affect other connections: a `Canary` on its own connection checks that after every case.
@Suite("Bad input")
struct BadInputTests {
    /// Frames that each get exactly one `error` with `code`, and leave the connection open.
    static let badFrames: [(frame: String, code: String)] = [
        ("not json", "bad_frame"),
        (#"{"op":"#, "bad_frame"),
        ("[1,2,3]", "bad_frame"),
        (#""ping""#, "bad_frame"),
        ("42", "bad_frame"),
        ("null", "bad_frame"),
        ("{}", "bad_frame"),
        (#"{"op":5}"#, "bad_frame"),
        (#"{"op":null}"#, "bad_frame"),
        (#"{"op":"frobnicate"}"#, "unknown_op"),
        (#"{"op":"Subscribe","topic":"t"}"#, "unknown_op"),
        (#"{"op":"subscribe"}"#, "bad_frame"),
        (#"{"op":"subscribe","topic":5}"#, "bad_frame"),
        (#"{"op":"subscribe","topic":"t","window":"3"}"#, "bad_frame"),
        (#"{"op":"subscribe","topic":"t","from":true}"#, "bad_frame"),
        (#"{"op":"subscribe","topic":"t","from":"newest"}"#, "bad_frame"),
        (#"{"op":"subscribe","topic":"t","from":-1}"#, "bad_frame"),
        (#"{"op":"subscribe","topic":"t","from":1.5}"#, "bad_frame"),
        (#"{"op":"subscribe","topic":"t","epoch":7}"#, "bad_frame"),
        (#"{"op":"publish","topic":["t"],"data":1}"#, "bad_frame"),
        (#"{"op":"publish","topic":"t","data":1,"headers":{"a":1}}"#, "bad_frame"),
        (#"{"op":"publish","topic":"t","data":1,"headers":["a"]}"#, "bad_frame"),
        (#"{"op":"publish","topic":"t","data":1,"msg_id":5}"#, "bad_frame"),
        (#"{"op":"publish","topic":"t","data_b64":5}"#, "bad_frame"),
        (#"{"op":"ack","topic":"t"}"#, "bad_frame"),
        (#"{"op":"ack","topic":"t","version":"3"}"#, "bad_frame"),
        (#"{"op":"unsubscribe"}"#, "bad_frame"),
        (#"{"op":"unsubscribe","topic":true}"#, "bad_frame"),
    ]

    /// Sends `frame`, requires the error `code` (and `id`), then checks the connection and the canary.
    private func expectRejected(
        _ frame: String, _ code: String, id: Int? = nil, on ws: TestWebSocket, canary: Canary
    ) throws {
        try ws.sendText(frame)
        try ws.expectError(code, id: id)
        try ws.pingPong()
        try canary.check()
    }

    @Test func malformedFramesGetErrors() throws {
        let ferryd = try Ferryd()
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        forEachCase(Self.badFrames) { try expectRejected($0.frame, $0.code, on: ws, canary: canary) }
        forEachCase([#"{"op":"frobnicate","id":5}"#]) { try expectRejected($0, "unknown_op", id: 5, on: ws, canary: canary) }
    }

    @Test func helloWithWrongTypesIsBadFrame() throws {
        let ferryd = try Ferryd()
        let ws = try ferryd.connect()
        for frame in [#"{"op":"hello","client_id":5}"#, #"{"op":"hello","resume_token":[]}"#] {
            try ws.sendText(frame)
            try ws.expectError("bad_frame")
        }
        #expect(try ws.hello(clientID: "alice").string("client_id") == "alice")
    }

    @Test func invalidTopicsAreRejected() throws {
        let ferryd = try Ferryd()
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        let badTopics = [
            "", String(repeating: "a", count: 256), "has space", "$sys", "$", "a$b", "star*", "é", "tab\t", "new\nline",
        ]
        forEachCase(badTopics) { topic in
            try expectRejected(
                jsonText(["op": "subscribe", "topic": topic, "id": 11]), "invalid_topic", id: 11, on: ws, canary: canary)
            try expectRejected(
                TestWebSocket.publishFrame(topic, data: "1", id: 12), "invalid_topic", id: 12, on: ws, canary: canary)
        }
        let (subscriber, _) = try ferryd.session()
        forEachCase([String(repeating: "a", count: 255), "Az09_-.:/x"]) { topic in
            try subscriber.subscribe(topic, from: "latest")
            #expect(try ws.publish(topic, data: "1").int("version") == 1)
            #expect(try subscriber.collectMessages(count: 1).versions == [1])
        }
    }

    @Test func outOfRangeValuesAreBadFrame() throws {
        let ferryd = try Ferryd()
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        let seventeenHeaders = jsonText(Dictionary(uniqueKeysWithValues: (1...17).map { ("h\($0)", "v") }))
        let longMsgID = String(repeating: "m", count: 129)
        let frames = [
            #"{"op":"subscribe","topic":"t","window":0}"#,
            #"{"op":"subscribe","topic":"t","window":65537}"#,
            #"{"op":"subscribe","topic":"t","window":-1}"#,
            #"{"op":"publish","topic":"t","data":1,"data_b64":"AA=="}"#,
            #"{"op":"publish","topic":"t"}"#,
            #"{"op":"publish","topic":"t","data_b64":"@@@@"}"#,
            #"{"op":"publish","topic":"t","data_b64":"AAE"}"#,
            #"{"op":"publish","topic":"t","data":1,"id":"7"}"#,
            #"{"op":"publish","topic":"t","data":1,"id":1.5}"#,
            #"{"op":"ping","id":true}"#,
            #"{"op":"publish","topic":"t","data":1,"headers":\#(seventeenHeaders)}"#,
            #"{"op":"publish","topic":"t","data":1,"msg_id":"\#(longMsgID)"}"#,
            #"{"op":"publish","topic":"t","data":1,"msg_id":""}"#,
        ]
        forEachCase(frames) { try expectRejected($0, "bad_frame", on: ws, canary: canary) }
        #expect(try ferryd.get(Ferryd.topicPath("t")).status == 404, "no rejected publish may create the topic")

        // The edges of each range are accepted.
        let (subscriber, _) = try ferryd.session()
        try subscriber.subscribe("t", from: "latest", window: 1)
        try subscriber.subscribe("t", from: "latest", window: 65536)
        let sixteenHeaders = Dictionary(uniqueKeysWithValues: (1...16).map { ("h\($0)", "v") })
        #expect(try ws.publish("t", data: "1", msgID: String(repeating: "m", count: 128), headers: sixteenHeaders)
            .int("version") == 1)
        let message = try #require(try subscriber.collectMessages(count: 1).first)
        #expect(message["headers"] as? [String: String] == sixteenHeaders)
    }

    @Test func tooManySubscriptions() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_SUBSCRIPTIONS": "2"])
        let (ws, _) = try ferryd.session()
        try ws.subscribe("a")
        try ws.subscribe("b")
        try ws.sendJSON(["op": "subscribe", "topic": "c", "id": 3])
        try ws.expectError("too_many_subscriptions", id: 3)
        try ws.subscribe("a", from: "earliest")  // replacing one is not a new one
        try ws.sendJSON(["op": "unsubscribe", "topic": "b"])
        try ws.expectOp("unsubscribed")
        try ws.subscribe("c")
    }

    @Test func payloadOverMaxMessageBytesIsTooLarge() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_MESSAGE_BYTES": "1000"])
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        let bytes1001 = Data(repeating: 7, count: 1001).base64EncodedString()
        let text1001 = "\"" + String(repeating: "x", count: 999) + "\""
        try expectRejected(
            jsonText(["op": "publish", "topic": "t", "data_b64": bytes1001, "id": 1]), "too_large", id: 1, on: ws,
            canary: canary)
        try expectRejected(
            TestWebSocket.publishFrame("t", data: text1001, id: 2), "too_large", id: 2, on: ws, canary: canary)
        // Exactly max_message_bytes of payload (decoded bytes, or JSON text) is fine.
        let bytes1000 = Data(repeating: 7, count: 1000).base64EncodedString()
        try ws.sendJSON(["op": "publish", "topic": "t", "data_b64": bytes1000])
        #expect(try ws.expectOp("published").int("version") == 1)
        let text1000 = "\"" + String(repeating: "x", count: 998) + "\""
        #expect(try ws.publish("t", data: text1000).int("version") == 2)
    }

    @Test func binaryFrameIsBadFrame() throws {
        let ferryd = try Ferryd()
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        try ws.sendBinary(Array(#"{"op":"ping"}"#.utf8))
        try ws.expectError("bad_frame")
        try ws.pingPong()
        try canary.check()
    }

    /// RFC 6455 §5: a server closes a connection whose client sends unmasked frames, sets
    /// reserved bits without an extension, or sends a fragmented or long control frame.
    @Test(arguments: [
        ("unmasked text frame", [0x81, 0x0F] + Array(#"{"op":"ping"}  "#.utf8)),
        ("reserved bit set", Array(TestWebSocket.frame(.text, Array(#"{"op":"ping"}"#.utf8)).enumerated().map { $0.offset == 0 ? $0.element | 0x40 : $0.element })),
        ("ping of 126 bytes", TestWebSocket.frame(.ping, Array(repeating: 0x61, count: 126))),
        ("fragmented ping", TestWebSocket.frame(.ping, [1, 2], fin: false)),
    ] as [(String, [UInt8])])
    func framingViolationIsClosedWith4000(_ violation: String, _ bytes: [UInt8]) throws {
        let ferryd = try Ferryd()
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        try ws.sendRaw(bytes)
        let error = try ws.expectError("bad_frame")
        #expect(ws.waitForClose() == 4000, "\(violation): \(error.text)")
        try canary.check()
    }

    @Test func frameOverMaxFrameBytesIsClosedWith4008() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_MESSAGE_BYTES": "1000"])
        let canary = try Canary(ferryd)
        let maxFrame = 2 * 1000 + 65_536
        let (ws, _) = try ferryd.session()

        // A frame of exactly the limit is still accepted.
        let prefix = #"{"op":"ping""#
        try ws.sendText(prefix + String(repeating: " ", count: maxFrame - prefix.utf8.count - 1) + "}")
        try ws.expectOp("pong")

        // One byte more is not. The broker may stop reading mid-frame, so a failed send is fine.
        try? ws.sendText(prefix + String(repeating: " ", count: maxFrame - prefix.utf8.count) + "}")
        if let frame = try? ws.nextJSON() {
            #expect(frame.string("op") == "error" && frame.string("code") == "too_large", "got \(frame.text)")
        }
        #expect(ws.waitForClose() == 4008)
        try canary.check()
    }

    @Test func floodOfGarbageIsAnsweredFrameByFrame() throws {
        let ferryd = try Ferryd()
        let canary = try Canary(ferryd)
        let (ws, _) = try ferryd.session()
        let total = 5000
        let batch = 100  // send a batch, then read its answers, so neither side's buffers fill up
        for start in stride(from: 0, to: total, by: batch) {
            let cases = (start..<start + batch).map { Self.badFrames[$0 % Self.badFrames.count] }
            for item in cases { try ws.sendText(item.frame) }
            for (offset, item) in cases.enumerated() {
                let error = try ws.expectOp("error")
                guard error.string("code") == item.code else {
                    throw TestFailure("garbage frame #\(start + offset) \(item.frame): got \(error.text)")
                }
            }
            try canary.check()
        }
        try ws.pingPong()
        #expect(canary.published == total / batch)
    }
}
