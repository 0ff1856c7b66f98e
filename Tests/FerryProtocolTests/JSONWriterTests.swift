import FerryProtocol
import Testing

@Suite("JSONWriter")
struct JSONWriterTests {
    private func text(_ build: (inout JSONWriter) -> Void) -> String {
        var writer = JSONWriter()
        build(&writer)
        return String(decoding: writer.finish(), as: UTF8.self)
    }

    @Test func integersAtTheEdgesOfTheirTypes() {
        #expect(text { $0.field("a", 0) } == #"{"a":0}"#)
        #expect(text { $0.field("a", -1) } == #"{"a":-1}"#)
        #expect(text { $0.field("a", Int64.min) } == #"{"a":-9223372036854775808}"#)
        #expect(text { $0.field("a", UInt64.max) } == #"{"a":18446744073709551615}"#)
        #expect(text { $0.field("a", Int64.max) } == #"{"a":9223372036854775807}"#)
    }

    @Test func literalsBooleansNullAndStrings() {
        #expect(text { $0.field("op", literal: "msg"); $0.field("ok", true); $0.field("no", false); $0.nullField("n") }
            == #"{"op":"msg","ok":true,"no":false,"n":null}"#)
        #expect(text { $0.field("s", "plain/topic.name") } == #"{"s":"plain/topic.name"}"#)
        #expect(text { $0.field("s", "q\"b\\n\n\u{1}é") } == #"{"s":"q\"b\\n\n\u0001é"}"#)
    }
}
