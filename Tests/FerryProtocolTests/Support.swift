import FerryProtocol
import Foundation
import Testing

// Shared helpers of the protocol tests.

func utf8(_ text: String) -> [UInt8] {
    Array(text.utf8)
}

/// Whether `JSONScanner` accepts `bytes` as one JSON document.
func scannerAccepts(_ bytes: [UInt8]) -> Bool {
    (try? JSONScanner.validate(bytes)) != nil
}

/// The error `ClientFrame.decode` throws for `text`, recording an issue when it decodes instead.
func decodingError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ClientFrame.DecodingError? {
    #expect(throws: ClientFrame.DecodingError.self, sourceLocation: sourceLocation) { try ClientFrame.decode(utf8(text)) }
}

/// Checks that `text` fails to decode with `code`, and returns the error for further checks.
@discardableResult
func expectDecodingError(
    _ text: String, _ code: ErrorCode, id: Int64? = nil, sourceLocation: SourceLocation = #_sourceLocation
) -> ClientFrame.DecodingError? {
    let error = decodingError(text, sourceLocation: sourceLocation)
    #expect(error?.error.code == code, "\(text)", sourceLocation: sourceLocation)
    #expect(error?.id == id, "\(text)", sourceLocation: sourceLocation)
    return error
}

/// Parses a frame the broker wrote, after checking it with the strict scanner, as a Foundation
/// object (an independent parser).
func parseObject(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    #expect(try JSONScanner.validate(bytes) == .object, sourceLocation: sourceLocation)
    let object = try JSONSerialization.jsonObject(with: Data(bytes))
    return try #require(object as? [String: Any], sourceLocation: sourceLocation)
}

/// The exact bytes of member `key` of a top-level object.
func rawMember(_ key: String, of bytes: [UInt8]) throws -> [UInt8]? {
    guard let member = try JSONScanner.members(of: bytes)?.first(where: { $0.key(in: bytes) == key }) else { return nil }
    return Array(bytes[member.value])
}
