import FerryProtocol
import Foundation
import Testing

@Suite("BatchPublishBody.decode")
struct BatchPublishBodyTests {
    private func error(_ body: String, sourceLocation: SourceLocation = #_sourceLocation) -> ProtocolError? {
        #expect(throws: ProtocolError.self, sourceLocation: sourceLocation) { try BatchPublishBody.decode(utf8(body)) }
    }

    @Test("decodes every message in order, with JSON kept verbatim, bytes, msg_id and headers")
    func happyPath() throws {
        let requests = try BatchPublishBody.decode(
            utf8(
                #"""
                { "messages" : [
                    {"topic":"a","data": {"b":1.50,"a":[1]} },
                    {"topic":"b/c","data_b64":"AAEC/w==","msg_id":"k1","headers":{"x":"1","y":"2"}},
                    {"topic":"a","data":"s"}
                ], "ignored": true }
                """#))
        #expect(
            requests == [
                PublishRequest(topic: "a", payload: .json(utf8(#"{"b":1.50,"a":[1]}"#))),
                PublishRequest(topic: "b/c", payload: .bytes([0, 1, 2, 0xFF]), messageID: "k1", headers: [("x", "1"), ("y", "2")]),
                PublishRequest(topic: "a", payload: .json(utf8(#""s""#))),
            ])
    }

    @Test(
        "a body that is not {\"messages\": [...]} is bad_frame",
        arguments: ["", "not json", "[1]", #""messages""#, "{}", #"{"messages":null}"#, #"{"messages":{}}"#, #"{"messages":"x"}"#, #"{"messages":[}"#])
    func badShape(body: String) {
        #expect(error(body)?.code == .badFrame)
    }

    @Test("an empty list is bad_frame")
    func empty() {
        #expect(error(#"{"messages":[]}"#)?.code == .badFrame)
        #expect(error(#"{"messages":[ ]}"#)?.code == .badFrame)
    }

    @Test("an element that is not an object names its index")
    func nonObjectElement() {
        let failure = error(#"{"messages":[{"topic":"a","data":1},[1]]}"#)
        #expect(failure?.code == .badFrame)
        #expect(failure?.message.contains("messages[1]") == true)
        #expect(error(#"{"messages":[1]}"#)?.message.contains("messages[0]") == true)
    }

    @Test("an invalid element fails the whole body with its own code and its index")
    func invalidElement() {
        let topic = error(#"{"messages":[{"topic":"a","data":1},{"topic":"b","data":2},{"topic":"$bad","data":3}]}"#)
        #expect(topic?.code == .invalidTopic)
        #expect(topic?.message.hasPrefix("messages[2]") == true)

        let payload = error(#"{"messages":[{"topic":"a","data":1,"data_b64":"AA=="}]}"#)
        #expect(payload?.code == .badFrame)
        #expect(payload?.message.hasPrefix("messages[0]") == true)

        for element in [#"{"data":1}"#, #"{"topic":"a"}"#, #"{"topic":"a","data_b64":"%%"}"#, #"{"topic":"a","data":1,"msg_id":""}"#,
                        #"{"topic":"a","data":1,"headers":{"h":1}}"#] {
            let failure = error(#"{"messages":[{"topic":"ok","data":0},"# + element + "]}")
            #expect(failure?.code == .badFrame, "\(element)")
            #expect(failure?.message.hasPrefix("messages[1]") == true, "\(element)")
        }
    }
}
