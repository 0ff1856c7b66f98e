import FerryProtocol
import Foundation
import Testing

@Suite("ServerFrame encoders and JSONWriter")
struct ServerFrameTests {
    @Test func welcomeLimitsDecodeOnTheClient() throws {
        let limits = Limits(maxMessageBytes: 1000, maxSubscriptions: 5, publishRate: 50, publishBurst: 7, maxPendingBytes: 65536, maxPatterns: 3, maxPatternTopics: 9)
        let frame = ServerFrame.welcome(
            clientID: nil, resumeToken: nil, resumed: false, subscriptions: [], heartbeatSeconds: 20, limits: limits)
        guard case .welcome(let welcome) = try BrokerFrame.decode(frame) else {
            Issue.record("not a welcome")
            return
        }
        #expect(welcome.limits == limits)
    }

    @Test("welcome has the fields of PROTOCOL.md, null ids when ephemeral")
    func welcome() throws {
        let durable = try parseObject(
            ServerFrame.welcome(
                clientID: "me", resumeToken: "tok", resumed: true,
                subscriptions: [RestoredSubscription(topic: "a/b", epoch: "e1", ackFloor: 7), RestoredSubscription(topic: "c.d", epoch: "e2", ackFloor: 0, pattern: "c.*")],
                patterns: ["c.*"], heartbeatSeconds: 20,
                limits: Limits(maxMessageBytes: 1000, maxSubscriptions: 5, publishRate: 50, publishBurst: 7, maxPendingBytes: 65536)))
        #expect(Set(durable.keys) == ["op", "client_id", "resume_token", "resumed", "subscriptions", "patterns", "heartbeat", "limits"])
        #expect(durable["op"] as? String == "welcome")
        #expect(durable["client_id"] as? String == "me")
        #expect(durable["resume_token"] as? String == "tok")
        #expect(durable["resumed"] as? Bool == true)
        #expect(durable["heartbeat"] as? Int == 20)
        let subscriptions = try #require(durable["subscriptions"] as? [[String: Any]])
        #expect(subscriptions.map { Set($0.keys) } == [["topic", "epoch", "ack_floor"], ["topic", "epoch", "ack_floor", "pattern"]])
        #expect(subscriptions.map { $0["topic"] as? String } == ["a/b", "c.d"])
        #expect(subscriptions.map { $0["pattern"] as? String } == [nil, "c.*"])
        #expect((durable["patterns"] as? [[String: Any]])?.map { $0["pattern"] as? String } == ["c.*"])
        #expect(subscriptions.map { $0["epoch"] as? String } == ["e1", "e2"])
        #expect(subscriptions.map { $0["ack_floor"] as? Int } == [7, 0])
        let limits = try #require(durable["limits"] as? [String: Any])
        #expect(
            Set(limits.keys) == [
                "max_message_bytes", "max_frame_bytes", "max_subscriptions", "publish_rate", "publish_burst", "max_pending_bytes",
                "max_patterns", "max_pattern_topics",
            ])
        #expect(limits["max_message_bytes"] as? Int == 1000)
        #expect(limits["max_frame_bytes"] as? Int == 2 * 1000 + 64 * 1024)
        #expect(limits["max_subscriptions"] as? Int == 5)
        #expect(limits["publish_rate"] as? Int == 50)
        #expect(limits["publish_burst"] as? Int == 7)
        #expect(limits["max_pending_bytes"] as? Int == 65536)

        let ephemeralBytes = ServerFrame.welcome(
            clientID: nil, resumeToken: nil, resumed: false, subscriptions: [], heartbeatSeconds: 0.5, limits: Limits())
        let ephemeral = try parseObject(ephemeralBytes)
        #expect(ephemeral["client_id"] is NSNull)
        #expect(ephemeral["resume_token"] is NSNull)
        #expect(ephemeral["resumed"] as? Bool == false)
        #expect((ephemeral["subscriptions"] as? [Any])?.isEmpty == true)
        #expect(try rawMember("heartbeat", of: ephemeralBytes) == utf8("0.5"))
        #expect(try rawMember("heartbeat", of: ServerFrame.welcome(clientID: nil, resumeToken: nil, resumed: false, subscriptions: [], heartbeatSeconds: 20, limits: Limits())) == utf8("20"))
        let defaults = try #require(ephemeral["limits"] as? [String: Any])
        #expect(defaults["max_message_bytes"] as? Int == 1_048_576)
        #expect(defaults["max_frame_bytes"] as? Int == 2 * 1_048_576 + 65536)
    }

    @Test("subscribed, published, unsubscribed, pong: id only when given")
    func replies() throws {
        let subscribed = try parseObject(ServerFrame.subscribed(id: 3, topic: "t", epoch: "e", head: 10, from: 4))
        #expect(Set(subscribed.keys) == ["op", "id", "topic", "epoch", "head", "from"])
        #expect(subscribed["op"] as? String == "subscribed")
        #expect(subscribed["id"] as? Int == 3)
        #expect(subscribed["head"] as? Int == 10)
        #expect(subscribed["from"] as? Int == 4)
        #expect(Set(try parseObject(ServerFrame.subscribed(id: nil, topic: "t", epoch: "e", head: 0, from: 1)).keys) == ["op", "topic", "epoch", "head", "from"])
        // A pattern's answer, and a topic it delivers, decode on the client as what they are.
        #expect(try BrokerFrame.decode(ServerFrame.subscribed(id: 2, pattern: "o.*", matched: 3)) == .patternSubscribed(id: 2, pattern: "o.*", matched: 3))
        #expect(
            try BrokerFrame.decode(ServerFrame.subscribed(id: nil, topic: "o.x", epoch: "e", head: 5, from: 1, pattern: "o.*"))
                == .subscribed(id: nil, topic: "o.x", epoch: "e", head: 5, from: 1, pattern: "o.*"))

        let published = try parseObject(ServerFrame.published(id: -1, topic: "t", version: UInt64.max, duplicate: true))
        #expect(Set(published.keys) == ["op", "id", "topic", "version", "duplicate"])
        #expect(published["op"] as? String == "published")
        #expect(published["id"] as? Int == -1)
        #expect(published["duplicate"] as? Bool == true)
        #expect(try rawMember("version", of: ServerFrame.published(id: nil, topic: "t", version: UInt64.max, duplicate: false)) == utf8("18446744073709551615"))
        #expect(Set(try parseObject(ServerFrame.published(id: nil, topic: "t", version: 1, duplicate: false)).keys) == ["op", "topic", "version", "duplicate"])

        let unsubscribed = try parseObject(ServerFrame.unsubscribed(id: 8, topic: "t"))
        #expect(Set(unsubscribed.keys) == ["op", "id", "topic"])
        #expect(unsubscribed["op"] as? String == "unsubscribed")
        #expect(Set(try parseObject(ServerFrame.unsubscribed(id: nil, topic: "t")).keys) == ["op", "topic"])

        #expect(ServerFrame.pong(id: nil) == utf8(#"{"op":"pong"}"#))
        #expect(ServerFrame.pong(id: 5) == utf8(#"{"op":"pong","id":5}"#))
    }

    @Test("gap, reset and error")
    func notices() throws {
        let gap = try parseObject(ServerFrame.gap(topic: "t", from: 3, to: 9))
        #expect(Set(gap.keys) == ["op", "topic", "from", "to"])
        #expect((gap["op"] as? String, gap["from"] as? Int, gap["to"] as? Int) == ("gap", 3, 9))

        let reset = try parseObject(ServerFrame.reset(topic: "t", oldEpoch: "old", epoch: "new"))
        #expect(Set(reset.keys) == ["op", "topic", "old_epoch", "epoch"])
        #expect((reset["op"] as? String, reset["old_epoch"] as? String, reset["epoch"] as? String) == ("reset", "old", "new"))

        let error = try parseObject(ServerFrame.error(id: 2, ProtocolError(.badAck, "too \"high\"\n")))
        #expect(Set(error.keys) == ["op", "id", "code", "message"])
        #expect(error["op"] as? String == "error")
        #expect(error["code"] as? String == "bad_ack")
        #expect(error["message"] as? String == "too \"high\"\n")
        #expect(Set(try parseObject(ServerFrame.error(id: nil, ProtocolError(.unknownOp, "x"))).keys) == ["op", "code", "message"])
    }

    @Test("msg embeds a JSON payload verbatim")
    func messageWithJSON() throws {
        let payload = utf8(#"{"b":1.50,"a":[1],"c":"\u00e9"}"#)
        let frame = ServerFrame.message(topic: "t", version: 4, timestamp: 1_700_000_000_123, payload: .json(payload), headers: [])
        let object = try parseObject(frame)
        #expect(Set(object.keys) == ["op", "topic", "version", "ts", "data"])
        #expect(object["op"] as? String == "msg")
        #expect(object["topic"] as? String == "t")
        #expect(object["version"] as? Int == 4)
        #expect(object["ts"] as? Int == 1_700_000_000_123)
        #expect(try rawMember("data", of: frame) == payload)

        for text in ["1.0e0", #""s""#, "null", "[ 1 , 2 ]"] {
            let scalar = ServerFrame.message(topic: "t", version: 1, timestamp: 0, payload: .json(utf8(text)), headers: [])
            #expect(try rawMember("data", of: scalar) == utf8(text), "\(text)")
        }
    }

    @Test("msg carries bytes as standard base64 and headers in order")
    func messageWithBytes() throws {
        let frame = ServerFrame.message(
            topic: "t", version: 1, timestamp: 5, payload: .bytes([0, 1, 2, 0xFF, 0xFE]), headers: [("z", "1"), ("a", "q\"uote"), ("é", "\\")])
        let object = try parseObject(frame)
        #expect(Set(object.keys) == ["op", "topic", "version", "ts", "data_b64", "headers"])
        #expect(object["data_b64"] as? String == "AAEC//4=")
        #expect(Data(base64Encoded: try #require(object["data_b64"] as? String)) == Data([0, 1, 2, 0xFF, 0xFE]))
        #expect(try rawMember("headers", of: frame) == utf8(#"{"z":"1","a":"q\"uote","é":"\\"}"#))
        let headers = try #require(object["headers"] as? [String: String])
        #expect(headers == ["z": "1", "a": "q\"uote", "é": "\\"])

        let empty = try parseObject(ServerFrame.message(topic: "t", version: 1, timestamp: 5, payload: .bytes([]), headers: []))
        #expect(empty["data_b64"] as? String == "")
    }

    @Test("JSONWriter escapes quotes, backslashes and control characters, and nothing else")
    func stringEscaping() throws {
        var exact: [UInt8] = []
        JSONWriter.appendString("a\"b\\c\nd\re\tf\u{0}\u{1}\u{1F}\u{7F}é😀/", to: &exact)
        #expect(String(decoding: exact, as: UTF8.self) == #""a\"b\\c\nd\re\tf\u0000\u0001\u001f"# + "\u{7F}é😀/\"")

        // Every control character, and more, round-trips through both parsers.
        let hard = String(decoding: (0..<0x20).map { UInt8($0) } + utf8(#"\"\\ é😀 \u0041"#), as: UTF8.self)
        var encoded: [UInt8] = []
        JSONWriter.appendString(hard, to: &encoded)
        #expect(try JSONScanner.validate(encoded) == .string)
        #expect(try JSONScanner.string(in: encoded, 0..<encoded.count) == hard)
        let foundation = try JSONSerialization.jsonObject(with: Data(encoded), options: .fragmentsAllowed)
        #expect(foundation as? String == hard)
    }

    @Test("JSONWriter writes fields in order, nested objects, arrays and nulls")
    func writerShapes() throws {
        var writer = JSONWriter()
        writer.field("s", "x")
        writer.field("n", Optional<String>.none)
        writer.field("i", -5)
        writer.field("u", UInt64(7))
        writer.field("b", false)
        writer.field("o") { nested in nested.field("k", "v") }
        writer.field("a", array: [utf8("1"), utf8(#"{"x":[]}"#)])
        writer.field("e", array: [])
        writer.field("p", pairs: [])
        writer.nullField("z")
        writer.field("r", rawJSON: utf8("[true]"))
        let bytes = writer.finish()
        #expect(
            String(decoding: bytes, as: UTF8.self)
                == #"{"s":"x","n":null,"i":-5,"u":7,"b":false,"o":{"k":"v"},"a":[1,{"x":[]}],"e":[],"p":{},"z":null,"r":[true]}"#)
        #expect(try JSONScanner.validate(bytes) == .object)
        #expect(JSONWriter().finish() == utf8("{}"))
    }
}
