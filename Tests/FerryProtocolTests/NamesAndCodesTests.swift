import FerryProtocol
import Foundation
import Testing

@Suite("Names")
struct NamesTests {
    private static let alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

    @Test("topics are 1–255 bytes")
    func topicLength() {
        #expect(!Names.isValidTopic(""))
        #expect(Names.isValidTopic("a"))
        #expect(Names.isValidTopic(String(repeating: "a", count: 255)))
        #expect(!Names.isValidTopic(String(repeating: "a", count: 256)))
    }

    @Test("topics allow A-Z a-z 0-9 _ - . : / and nothing else; $ names are reserved")
    func topicCharacters() {
        for character in Self.alphanumerics + "_-.:/" {
            #expect(Names.isValidTopic("x\(character)y"), "\(character)")
            #expect(Names.isValidTopic(String(character)), "\(character)")
        }
        #expect(Names.isValidTopic("orders/eu-west.1:new_"))
        for bad in ["$", "$sys", "$sys/x", "a$", " ", "a b", "#", "+", "*", "?", "@", "%", "\\", "\"", "\0", "\n", "é", "ü/x", "a,b", "😀"] {
            #expect(!Names.isValidTopic(bad), "\(bad)")
        }
    }

    @Test("client ids are 1–128 bytes of A-Z a-z 0-9 _ - . : @")
    func clientIDs() {
        #expect(!Names.isValidClientID(""))
        #expect(Names.isValidClientID("a"))
        #expect(Names.isValidClientID(String(repeating: "c", count: 128)))
        #expect(!Names.isValidClientID(String(repeating: "c", count: 129)))
        for character in Self.alphanumerics + "_-.:@" {
            #expect(Names.isValidClientID("x\(character)"), "\(character)")
        }
        #expect(Names.isValidClientID("worker-7@eu.west:2"))
        for bad in ["/", "a/b", "$x", " ", "a b", "é", "#", "\0", "a\n"] {
            #expect(!Names.isValidClientID(bad), "\(bad)")
        }
    }

    @Test("msg ids are 1–128 bytes of anything")
    func messageIDs() {
        #expect(!Names.isValidMessageID(""))
        #expect(Names.isValidMessageID("x"))
        #expect(Names.isValidMessageID(" $/é \"😀"))
        #expect(Names.isValidMessageID(String(repeating: "m", count: 128)))
        #expect(!Names.isValidMessageID(String(repeating: "m", count: 129)))
        // Bytes, not characters.
        #expect(Names.isValidMessageID(String(repeating: "é", count: 64)))
        #expect(!Names.isValidMessageID(String(repeating: "é", count: 65)))
        #expect(Names.isValidMessageID(String(repeating: "😀", count: 32)))
        #expect(!Names.isValidMessageID(String(repeating: "😀", count: 32) + "x"))
    }
}

@Suite("Error and close codes")
struct CodesTests {
    @Test("error codes are exactly those of PROTOCOL.md")
    func errorCodeNames() {
        #expect(
            Set(ErrorCode.allCases.map(\.rawValue)) == [
                "bad_frame", "unknown_op", "hello_required", "not_found", "invalid_topic", "invalid_client_id", "bad_resume_token",
                "session_conflict", "not_subscribed", "bad_ack", "too_large", "too_many_subscriptions", "unauthorized", "forbidden",
                "rate_limited", "unavailable", "not_supported",
            ])
    }

    @Test(
        "error codes map to their HTTP status",
        arguments: [
            (ErrorCode.badFrame, 400), (.unknownOp, 400), (.helloRequired, 400), (.invalidTopic, 400), (.invalidClientID, 400),
            (.notSubscribed, 400), (.badAck, 400), (.unauthorized, 401), (.forbidden, 403), (.notFound, 404),
            (.sessionConflict, 409), (.tooLarge, 413), (.rateLimited, 429), (.notSupported, 501), (.unavailable, 503),
        ])
    func httpStatus(code: ErrorCode, status: Int) {
        #expect(code.httpStatus == status)
    }

    @Test("every error code maps to one of the statuses PROTOCOL.md names")
    func everyStatusIsListed() {
        for code in ErrorCode.allCases {
            #expect([400, 401, 403, 404, 409, 413, 429, 501, 503].contains(code.httpStatus), "\(code)")
        }
        #expect(Set(ErrorCode.allCases.map(\.httpStatus)) == [400, 401, 403, 404, 409, 413, 429, 501, 503])
    }

    @Test("close codes: reconnect after 1001, 1011, 4000, 4002, 4013, 4029; stop after 4001, 4009, 4010")
    func closeCodes() {
        let reconnect: [UInt16: Bool] = [1001: true, 1011: true, 4000: true, 4002: true, 4013: true, 4029: true, 4001: false, 4009: false, 4010: false]
        for (raw, expected) in reconnect {
            let code = CloseCode(rawValue: raw)
            #expect(code != nil, "\(raw)")
            #expect(code?.shouldReconnect == expected, "\(raw)")
        }
        #expect(CloseCode(rawValue: 4008) == .frameTooLarge)
        #expect(CloseCode(rawValue: 4013) == .slowConsumer)
        #expect(Set(CloseCode.allCases.map(\.rawValue)) == [1000, 1001, 1011, 4000, 4001, 4002, 4008, 4009, 4010, 4013, 4029])
    }

    @Test("a protocol error describes itself by code and message")
    func protocolErrorDescription() {
        #expect(ProtocolError(.badAck, "above delivered").description == "bad_ack: above delivered")
    }
}
