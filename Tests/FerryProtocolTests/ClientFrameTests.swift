import FerryProtocol
import Foundation
import Testing

@Suite("ClientFrame.decode: valid frames")
struct ClientFrameDecodeTests {
    private func decode(_ text: String) throws -> ClientFrame {
        try ClientFrame.decode(utf8(text))
    }

    @Test("hello, with and without client_id and resume_token")
    func hello() throws {
        #expect(try decode(#"{"op":"hello"}"#) == .hello(clientID: nil, resumeToken: nil))
        #expect(try decode(#"{"op":"hello","client_id":"me@x","resume_token":"tok.en"}"#) == .hello(clientID: "me@x", resumeToken: "tok.en"))
        #expect(try decode(#" {"client_id":null, "op" : "hello"} "#) == .hello(clientID: nil, resumeToken: nil))
    }

    @Test(
        "subscribe with every from, window and epoch",
        arguments: [
            (#"{"op":"subscribe","topic":"t"}"#, ClientFrame.subscribe(id: nil, topic: "t", from: .stored, epoch: nil, window: nil)),
            (#"{"op":"subscribe","topic":"t","from":null}"#, .subscribe(id: nil, topic: "t", from: .stored, epoch: nil, window: nil)),
            (#"{"op":"subscribe","id":1,"topic":"t","from":"stored"}"#, .subscribe(id: 1, topic: "t", from: .stored, epoch: nil, window: nil)),
            (#"{"op":"subscribe","topic":"a/b.c:d-e_f","from":"latest"}"#, .subscribe(id: nil, topic: "a/b.c:d-e_f", from: .latest, epoch: nil, window: nil)),
            (#"{"op":"subscribe","topic":"t","from":"earliest","window":1}"#, .subscribe(id: nil, topic: "t", from: .earliest, epoch: nil, window: 1)),
            (#"{"op":"subscribe","topic":"t","from":0}"#, .subscribe(id: nil, topic: "t", from: .after(0), epoch: nil, window: nil)),
            (#"{"op":"subscribe","id":-3,"topic":"t","from":42,"epoch":"ab12","window":65536}"#,
             .subscribe(id: -3, topic: "t", from: .after(42), epoch: "ab12", window: 65536)),
            (#"{"op":"subscribe","topic":"t","from":9223372036854775807}"#,
             .subscribe(id: nil, topic: "t", from: .after(9_223_372_036_854_775_807), epoch: nil, window: nil)),
        ])
    func subscribe(text: String, frame: ClientFrame) throws {
        #expect(try decode(text) == frame)
    }

    @Test("a pattern subscribe and unsubscribe: the topic field holds the pattern")
    func patterns() throws {
        #expect(try decode(#"{"op":"subscribe","id":1,"topic":"orders.*","window":9}"#) == .subscribe(id: 1, topic: "orders.*", from: .stored, epoch: nil, window: 9))
        #expect(try decode(#"{"op":"subscribe","topic":"chat.>","from":"earliest"}"#) == .subscribe(id: nil, topic: "chat.>", from: .earliest, epoch: nil, window: nil))
        #expect(try decode(#"{"op":"subscribe","topic":"*.eu.>","from":"latest"}"#) == .subscribe(id: nil, topic: "*.eu.>", from: .latest, epoch: nil, window: nil))
        #expect(try decode(#"{"op":"unsubscribe","id":2,"topic":">"}"#) == .unsubscribe(id: 2, topic: ">"))
        let positions = [
            "a.x": TopicPosition(epoch: "e1", version: 4), "a.y": TopicPosition(epoch: nil, version: 0),
        ]
        let frame = ClientFrame.subscribe(id: 3, topic: "a.*", from: .latest, epoch: nil, window: nil, positions: positions)
        #expect(try decode(#"{"op":"subscribe","id":3,"topic":"a.*","from":"latest","positions":{"a.x":{"epoch":"e1","version":4},"a.y":{"version":0}}}"#) == frame)
        // What the client library sends decodes to the same frame.
        #expect(try ClientFrame.decode(frame.encode()) == frame)
        let member = ClientFrame.subscribe(id: 5, topic: "jobs", from: .stored, epoch: nil, window: 1, group: "workers")
        #expect(try decode(#"{"op":"subscribe","id":5,"topic":"jobs","window":1,"group":"workers"}"#) == member)
        #expect(try ClientFrame.decode(member.encode()) == member)
    }

    @Test("ack, unsubscribe and ping")
    func ackUnsubscribePing() throws {
        #expect(try decode(#"{"op":"ack","topic":"t","version":0}"#) == .ack(topic: "t", version: 0))
        #expect(try decode(#"{"op":"ack","topic":"t","version":17}"#) == .ack(topic: "t", version: 17))
        #expect(try decode(#"{"op":"unsubscribe","id":5,"topic":"t"}"#) == .unsubscribe(id: 5, topic: "t"))
        #expect(try decode(#"{"op":"unsubscribe","topic":"t"}"#) == .unsubscribe(id: nil, topic: "t"))
        #expect(try decode(#"{"op":"ping"}"#) == .ping(id: nil))
        #expect(try decode(#"{"op":"ping","id":9223372036854775807}"#) == .ping(id: .max))
        #expect(try decode(#"{"op":"ping","id":-9223372036854775808}"#) == .ping(id: .min))
        #expect(try decode(#"{"op":"ping","id":-0}"#) == .ping(id: 0))
    }

    @Test("publish keeps a JSON payload byte-exact, without surrounding whitespace")
    func publishJSON() throws {
        let frame = try decode(#"{"op":"publish","id":7,"topic":"t","data" :  {"b":1.50,"a":[1]} ,"msg_id":"m-1"}"#)
        #expect(frame == .publish(id: 7, PublishRequest(topic: "t", payload: .json(utf8(#"{"b":1.50,"a":[1]}"#)), messageID: "m-1")))
        for data in [#""text""#, "1e3", "-0.0", "null", "false", "[]", #"{"\u00e9":"\ud83d\ude00"}"#, "\"é\""] {
            let decoded = try decode(#"{"op":"publish","topic":"t","data":"# + data + "}")
            #expect(decoded == .publish(id: nil, PublishRequest(topic: "t", payload: .json(utf8(data)))), "\(data)")
        }
    }

    @Test("publish with data_b64 decodes the bytes; headers keep their order and escapes")
    func publishBytesAndHeaders() throws {
        let frame = try decode(
            #"{"op":"publish","topic":"t","data_b64":"AAEC/w==","headers":{"z":"1","a":"x\"y","é":"\u00e9"},"msg_id":null}"#)
        #expect(
            frame == .publish(id: nil, PublishRequest(topic: "t", payload: .bytes([0, 1, 2, 0xFF]), headers: [("z", "1"), ("a", "x\"y"), ("é", "é")])))
        #expect(try decode(#"{"op":"publish","topic":"t","data_b64":""}"#) == .publish(id: nil, PublishRequest(topic: "t", payload: .bytes([]))))
        #expect(try decode(#"{"op":"publish","topic":"t","data":1,"headers":{}}"#) == .publish(id: nil, PublishRequest(topic: "t", payload: .json(utf8("1")))))
        #expect(try decode(#"{"op":"publish","topic":"t","data":1,"headers":null}"#) == .publish(id: nil, PublishRequest(topic: "t", payload: .json(utf8("1")))))
        // Data containing headers-like keys does not confuse the top-level fields.
        #expect(
            try decode(#"{"op":"publish","topic":"t","data":{"op":"ack","topic":"$x","headers":1}}"#)
                == .publish(id: nil, PublishRequest(topic: "t", payload: .json(utf8(#"{"op":"ack","topic":"$x","headers":1}"#)))))
    }

    @Test("publish limits: 16 headers and a 128-byte msg_id are allowed")
    func publishAtLimits() throws {
        let headers = (1...16).map { #""h\#($0)":"v""# }.joined(separator: ",")
        let frame = try decode(#"{"op":"publish","topic":"t","data":1,"headers":{"# + headers + #"},"msg_id":""# + String(repeating: "m", count: 128) + #""}"#)
        guard case .publish(_, let request) = frame else {
            Issue.record("not a publish: \(frame)")
            return
        }
        #expect(request.headers.count == 16)
        #expect(request.messageID == String(repeating: "m", count: 128))
        // msg_id counts bytes: 64 two-byte characters fit.
        let twoByte = try decode(#"{"op":"publish","topic":"t","data":1,"msg_id":""# + String(repeating: "é", count: 64) + #""}"#)
        #expect(twoByte == .publish(id: nil, PublishRequest(topic: "t", payload: .json(utf8("1")), messageID: String(repeating: "é", count: 64))))
    }

    @Test("a topic of 255 bytes is accepted")
    func longestTopic() throws {
        let topic = String(repeating: "t", count: 255)
        #expect(try decode(#"{"op":"unsubscribe","topic":""# + topic + #""}"#) == .unsubscribe(id: nil, topic: topic))
    }
}

@Suite("ClientFrame.decode: errors")
struct ClientFrameErrorTests {
    @Test("what is not a JSON object is bad_frame", arguments: ["", "not json", "{", #"{"op":"ping",}"#, "[]", "1", #""ping""#, "null", #"{"op":"ping"} x"#])
    func notAnObject(text: String) {
        let error = expectDecodingError(text, .badFrame)
        #expect(error?.op == nil)
    }

    @Test("a missing or non-string op is bad_frame")
    func missingOp() {
        expectDecodingError("{}", .badFrame)
        expectDecodingError(#"{"op":null}"#, .badFrame)
        expectDecodingError(#"{"op":1}"#, .badFrame)
        expectDecodingError(#"{"op":["ping"]}"#, .badFrame)
    }

    @Test("an unknown op is unknown_op, naming the op")
    func unknownOp() {
        let error = expectDecodingError(#"{"op":"PING","id":4}"#, .unknownOp, id: 4)
        #expect(error?.op == "PING")
        #expect(error?.error.message.contains("PING") == true)
        let empty = expectDecodingError(#"{"op":""}"#, .unknownOp)
        #expect(empty?.op == "")
    }

    @Test(
        "fields of the wrong type are bad_frame",
        arguments: [
            #"{"op":"hello","client_id":5}"#, #"{"op":"hello","resume_token":{}}"#, #"{"op":"subscribe","topic":1}"#,
            #"{"op":"subscribe","topic":["t"]}"#, #"{"op":"subscribe","topic":"t","from":true}"#, #"{"op":"subscribe","topic":"t","from":[1]}"#,
            #"{"op":"subscribe","topic":"t","from":"newest"}"#, #"{"op":"subscribe","topic":"t","from":1.5}"#,
            #"{"op":"subscribe","topic":"t","from":"1"}"#, #"{"op":"subscribe","topic":"t","window":"5"}"#,
            #"{"op":"subscribe","topic":"t","window":2.0}"#, #"{"op":"subscribe","topic":"t","epoch":1}"#, #"{"op":"ack","topic":"t"}"#,
            #"{"op":"ack","topic":"t","version":"3"}"#, #"{"op":"ack","topic":"t","version":1e2}"#, #"{"op":"ack","version":1}"#,
            #"{"op":"publish","topic":"t","data":1,"msg_id":5}"#, #"{"op":"publish","topic":"t","data_b64":5}"#,
            #"{"op":"publish","topic":"t","data":1,"headers":[]}"#, #"{"op":"publish","topic":"t","data":1,"headers":"a"}"#,
            #"{"op":"publish","topic":"t","data":1,"headers":{"a":1}}"#, #"{"op":"publish","topic":"t","data":1,"headers":{"a":null}}"#,
            #"{"op":"publish","data":1}"#, #"{"op":"unsubscribe"}"#, #"{"op":"unsubscribe","topic":null}"#,
        ])
    func wrongTypes(text: String) {
        expectDecodingError(text, .badFrame)
    }

    @Test(
        "an invalid topic is invalid_topic",
        arguments: [
            "", "$sys", "a b", "a#", "a+", "a*", "é", "a@b", "a%2Fb", String(repeating: "t", count: 256), "tab\\t",
        ])
    func invalidTopic(topic: String) throws {
        var escaped: [UInt8] = []
        JSONWriter.appendString(topic, to: &escaped)
        let quoted = String(decoding: escaped, as: UTF8.self)
        for op in [#""op":"subscribe""#, #""op":"ack","version":1"#, #""op":"publish","data":1"#, #""op":"unsubscribe""#] {
            expectDecodingError(#"{"# + op + #","id":3,"topic":"# + quoted + "}", .invalidTopic, id: 3)
        }
    }

    @Test("an invalid pattern is invalid_topic; a version or epoch with a pattern, and an ack of a pattern, are refused")
    func invalidPatterns() {
        for pattern in ["a.>.b", "a.*b", "a.>>", "$sys.*", "a b.*", "a.**"] {
            expectDecodingError(#"{"op":"subscribe","id":4,"topic":"\#(pattern)"}"#, .invalidTopic, id: 4)
            expectDecodingError(#"{"op":"unsubscribe","id":4,"topic":"\#(pattern)"}"#, .invalidTopic, id: 4)
        }
        expectDecodingError(#"{"op":"subscribe","id":5,"topic":"a.*","from":3}"#, .badFrame, id: 5)
        expectDecodingError(#"{"op":"subscribe","id":5,"topic":"a.*","epoch":"e"}"#, .badFrame, id: 5)
        expectDecodingError(#"{"op":"ack","topic":"a.*","version":1}"#, .invalidTopic)
        expectDecodingError(#"{"op":"subscribe","id":6,"topic":"a.x","positions":{"a.x":{"version":1}}}"#, .badFrame, id: 6)
        expectDecodingError(#"{"op":"subscribe","id":6,"topic":"a.*","positions":{"a.x":{"version":-1}}}"#, .badFrame, id: 6)
        expectDecodingError(#"{"op":"subscribe","id":6,"topic":"a.*","positions":{"a.x":3}}"#, .badFrame, id: 6)
        expectDecodingError(#"{"op":"subscribe","id":6,"topic":"a.*","positions":{"a x":{"version":1}}}"#, .invalidTopic, id: 6)
        expectDecodingError(#"{"op":"subscribe","id":7,"topic":"a.*","group":"g"}"#, .badFrame, id: 7)
        expectDecodingError(#"{"op":"subscribe","id":7,"topic":"a","group":"g h"}"#, .badFrame, id: 7)
        expectDecodingError(#"{"op":"subscribe","id":7,"topic":"a","group":""}"#, .badFrame, id: 7)
        expectDecodingError(#"{"op":"publish","topic":"a.>","data":1}"#, .invalidTopic)
    }

    @Test("window outside 1…65536 and negative versions are bad_frame")
    func outOfRange() {
        for window in ["0", "65537", "-1", "9223372036854775807", "99999999999999999999"] {
            expectDecodingError(#"{"op":"subscribe","id":2,"topic":"t","window":"# + window + "}", .badFrame, id: 2)
        }
        expectDecodingError(#"{"op":"subscribe","id":2,"topic":"t","from":-1}"#, .badFrame, id: 2)
        expectDecodingError(#"{"op":"ack","id":2,"topic":"t","version":-1}"#, .badFrame, id: 2)
        expectDecodingError(#"{"op":"ack","topic":"t","version":18446744073709551615}"#, .badFrame)
    }

    @Test(
        "a publish needs exactly one valid payload, at most 16 headers and a 1–128 byte msg_id",
        arguments: [
            #""topic":"t""#, #""topic":"t","data":1,"data_b64":"AA==""#, #""topic":"t","data_b64":"not base64!""#,
            #""topic":"t","data_b64":"AAEC/w""#, #""topic":"t","data_b64":"AAE-_w==""#, #""topic":"t","data_b64":"AA==\n""#,
            #""topic":"t","data":1,"msg_id":"""#,
            #""topic":"t","data":1,"msg_id":""# + String(repeating: "m", count: 129) + #"""#,
            #""topic":"t","data":1,"msg_id":""# + String(repeating: "é", count: 65) + #"""#,
            #""topic":"t","data":1,"headers":{"# + (1...17).map { #""h\#($0)":"v""# }.joined(separator: ",") + "}",
        ])
    func badPublish(fields: String) {
        expectDecodingError(#"{"op":"publish","id":11,"# + fields + "}", .badFrame, id: 11)
    }

    @Test("an id that is not an integer is bad_frame", arguments: ["1.5", #""1""#, "1e3", "true", "[1]", "{}", "9223372036854775808", "-9223372036854775809", "99999999999999999999", "-1.0"])
    func badID(id: String) {
        let error = expectDecodingError(#"{"op":"ping","id":"# + id + "}", .badFrame)
        #expect(error?.op == "ping")
    }

    @Test("the error carries the id when it was readable")
    func errorCarriesID() {
        expectDecodingError(#"{"op":"subscribe","id":12,"topic":"t","window":0}"#, .badFrame, id: 12)
        expectDecodingError(#"{"id":-4,"op":"nope"}"#, .unknownOp, id: -4)
        expectDecodingError(#"{"op":"publish","topic":"t","id":0}"#, .badFrame, id: 0)
        // Unreadable: the frame is not JSON at all.
        expectDecodingError(#"{"op":"ping","id":1"#, .badFrame, id: nil)
    }

    @Test("a frame without a valid op still echoes its readable id")
    func missingOpCarriesID() {
        expectDecodingError(#"{"id":7}"#, .badFrame, id: 7)
        expectDecodingError(#"{"id":8,"op":5}"#, .badFrame, id: 8)
    }
}
