import FerryProtocol
import Foundation
import Testing

@Suite("JSONScanner")
struct JSONScannerTests {
    @Test(
        "valid documents of every kind are accepted with their kind",
        arguments: [
            ("{}", JSONScanner.Kind.object), (#"{"a":1}"#, .object), (#" { "a" : [ 1 , { } ] , "b" : null } "#, .object),
            (#"{"":"","a":{"b":{"c":[]}}}"#, .object), ("[]", .array), ("[ ]", .array), (#"[1,"x",true,false,null,{},[]]"#, .array),
            ("[[[[[]]]]]", .array), (#""""#, .string), (#""abc""#, .string), (#""\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00""#, .string),
            ("\"é😀\u{7F}\"", .string), ("0", .number), ("-0", .number), ("12", .number), ("-12.5", .number), ("0.0", .number),
            ("1e5", .number), ("1E+5", .number), ("-1.5e-3", .number), ("123456789012345678901234567890", .number),
            ("true", .bool), ("false", .bool), ("null", .null), ("\t\r\n 1 \n", .number),
        ])
    func valid(text: String, kind: JSONScanner.Kind) throws {
        #expect(try JSONScanner.validate(utf8(text)) == kind)
        // The independent parser agrees that it is JSON.
        #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: .fragmentsAllowed)) != nil)
    }

    @Test(
        "invalid documents are rejected",
        arguments: [
            "", " ", "[1,]", #"{"a":1,}"#, "[,1]", "[1,,2]", "{,}", #"{"a":}"#, #"{"a" 1}"#, "{a:1}", #"{"a":1 "b":2}"#,
            "{'a':1}", "['a']", "01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1.5.2", "Infinity", "NaN", "--1",
            "tru", "nul", "True", "nulll", #""abc"#, "[1,2", #"{"a":1"#, #"{"a"#, "[", "]", "}", #"["a"]]"#, "{} {}", "1 2",
            #""a" x"#, "[1]]", #""\x""#, #""\u12G4""#, #""\u12""#, #""\"#, #""\'""#, "\"a\tb\"", "\"a\nb\"", "\"\u{1F}\"",
            "\"\u{0}\"", "/* c */ 1", "[1] // c",
        ])
    func invalid(text: String) {
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.validate(utf8(text)) }
    }

    @Test(
        "invalid UTF-8 is rejected, in strings and outside them",
        arguments: [
            [0xC0, 0x80],  // overlong NUL
            [0xC1, 0xBF],  // overlong 0x7F
            [0xE0, 0x80, 0xAF],  // overlong '/'
            [0xE0, 0x9F, 0xBF],  // overlong U+07FF
            [0xF0, 0x8F, 0xBF, 0xBF],  // overlong U+FFFF
            [0xED, 0xA0, 0x80],  // U+D800, a surrogate
            [0xED, 0xBF, 0xBF],  // U+DFFF, a surrogate
            [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
            [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xFE],
            [0x80],  // a lone continuation byte
            [0xC3],  // truncated
            [0xE2, 0x82],  // truncated
            [0xE2, 0x28, 0xA1],  // bad continuation
            [0xF0, 0x9F, 0x98],  // truncated 4-byte
        ] as [[UInt8]])
    func invalidUTF8(sequence: [UInt8]) {
        let quote = UInt8(ascii: "\"")
        #expect(!scannerAccepts([quote] + sequence + [quote]))
        #expect(!scannerAccepts(utf8(#"{"a":""#) + sequence + utf8(#""}"#)))
        #expect(!scannerAccepts(utf8(#"{""#) + sequence + utf8(#"":1}"#)))
        // After an escape, the slow path of string decoding validates too.
        #expect(!scannerAccepts(utf8(#""\n"#) + sequence + [quote]))
        #expect(!scannerAccepts(sequence))
    }

    @Test("the boundaries of valid UTF-8 are accepted")
    func validUTF8Boundaries() throws {
        let sequences: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],
            [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        for sequence in sequences {
            let document = [UInt8(ascii: "\"")] + sequence + [UInt8(ascii: "\"")]
            #expect(scannerAccepts(document), "\(sequence)")
            #expect(try JSONScanner.string(in: document, 0..<document.count) == String(decoding: sequence, as: UTF8.self))
        }
    }

    @Test("deep nesting is refused without crashing; nesting up to the limit is fine")
    func deepNesting() throws {
        let deep = utf8(String(repeating: "[", count: 100_000))
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.validate(deep) }
        let closed = utf8(String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.validate(closed) }
        let objects = utf8(String(repeating: #"{"a":"#, count: 100_000))
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.members(of: objects) }
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.members(of: utf8(#"{"a":"#) + closed + utf8("}")) }

        let depth = JSONScanner.maxDepth
        let limit = utf8(String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
        #expect(try JSONScanner.validate(limit) == .array)
        let over = utf8(String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1))
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.validate(over) }

        // Objects inside arrays inside objects, past the 64 levels the scanner tracks without
        // allocating: each closes with its own bracket, and a crossed pair deep inside is refused.
        let mixed = String(repeating: #"{"a":["#, count: 100) + "1" + String(repeating: "]}", count: 100)
        #expect(try JSONScanner.validate(utf8(mixed)) == .object)
        let crossed = String(repeating: #"{"a":["#, count: 100) + "1" + "}]" + String(repeating: "]}", count: 99)
        #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.validate(utf8(crossed)) }
    }

    @Test("members(of:) returns every member in order with its kind and the exact bytes of its value")
    func members() throws {
        let text = utf8(#" { "a" : 1.50 , "b":[1, {"x":2}] ,"c":{"d":"x"},"e":"s\"q","a":null,"f":true, "g" :-0e1 }  "#)
        let members = try #require(try JSONScanner.members(of: text))
        #expect(members.map { $0.key(in: text) } == ["a", "b", "c", "e", "a", "f", "g"])
        #expect(members[1].hasKey("b", in: text) && !members[1].hasKey("a", in: text))
        #expect(members.map(\.kind) == [.number, .array, .object, .string, .null, .bool, .number])
        #expect(
            members.map { String(decoding: text[$0.value], as: UTF8.self) } == [
                "1.50", #"[1, {"x":2}]"#, #"{"d":"x"}"#, #""s\"q""#, "null", "true", "-0e1",
            ])
        // The string range decodes with its escapes.
        #expect(try JSONScanner.string(in: text, members[3].value) == "s\"q")

        #expect(try JSONScanner.members(of: utf8("{}"))?.isEmpty == true)
        let escaped = utf8(#"{"k\u00e9y\n":0,"\u006fp":1}"#)
        let escapedMembers = try #require(try JSONScanner.members(of: escaped))
        #expect(escapedMembers.map { $0.key(in: escaped) } == ["k\u{e9}y\n", "op"])
        #expect(escapedMembers[1].hasKey("op", in: escaped))
    }

    @Test("members(of:) is nil for valid JSON that is not an object and throws for invalid JSON")
    func membersOfNonObjects() throws {
        for text in ["[1]", "1", #""{}""#, "null", " [ ] "] {
            #expect(try JSONScanner.members(of: utf8(text)) == nil, "\(text)")
        }
        for text in ["", "{", #"{"a":1} x"#, #"{"a":1,}"#, #"{"a":1}}"#, "[1", #"{"a":01}"#] {
            #expect(throws: JSONScanner.SyntaxError.self, "\(text)") { try JSONScanner.members(of: utf8(text)) }
        }
    }

    @Test("members(of:in:) and elements(of:in:) read nested containers by range")
    func nestedRanges() throws {
        let text = utf8(#"{"h":{"x":"1", "y" : [2]},"l":[ 1 ,"two", {"t":3},[] ],"e":[ ]}"#)
        let top = try #require(try JSONScanner.members(of: text))
        let nested = try JSONScanner.members(of: text, in: top[0].value)
        #expect(nested.map { $0.key(in: text) } == ["x", "y"])
        #expect(nested.map { String(decoding: text[$0.value], as: UTF8.self) } == [#""1""#, "[2]"])
        let elements = try JSONScanner.elements(of: text, in: top[1].value)
        #expect(elements.map(\.kind) == [.number, .string, .object, .array])
        #expect(elements.map { String(decoding: text[$0.value], as: UTF8.self) } == ["1", #""two""#, #"{"t":3}"#, "[]"])
        #expect(try JSONScanner.elements(of: text, in: top[2].value).isEmpty)
    }

    @Test(
        "strings decode their escapes, \\u escapes and surrogate pairs",
        arguments: [
            (#""plain""#, "plain"), (#""a\"b\\c\/d""#, "a\"b\\c/d"), (#""\b\f\n\r\t""#, "\u{8}\u{C}\n\r\t"),
            (#""caf\u00e9""#, "café"), (#""caf\u00E9""#, "café"), (#""\u0000x""#, "\u{0}x"), (#""\u20AC""#, "€"),
            (#""\ud83d\ude00!""#, "😀!"), (#""\uD834\uDD1E""#, "𝄞"), ("\"é😀\"", "é😀"), (#""é\n😀""#, "é\n😀"),
            // A lone surrogate becomes U+FFFD, and what follows it is kept.
            (#""\ud800""#, "\u{FFFD}"), (#""\udc00x""#, "\u{FFFD}x"), (#""\ud800\u0041""#, "\u{FFFD}A"),
        ])
    func stringDecoding(json: String, expected: String) throws {
        let bytes = utf8(json)
        #expect(try JSONScanner.string(in: bytes, 0..<bytes.count) == expected)
    }

    @Test("a syntax error names the byte where scanning stopped")
    func errorOffset() {
        let error = #expect(throws: JSONScanner.SyntaxError.self) { try JSONScanner.validate(utf8("[1,2,x]")) }
        #expect(error?.offset == 5)
        #expect(error?.description.contains("byte 5") == true)
    }
}
