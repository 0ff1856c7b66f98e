import FerryProtocol
import Foundation

/// A WebSocket upgrade the server answered with an HTTP error instead of `101`: what the
/// client needs to decide between stopping, waiting and retrying (PROTOCOL.md, "Transport").
struct UpgradeRefusal: Sendable, Equatable {
    /// The HTTP status.
    let status: Int
    /// The `Retry-After` header, when the server sent one in seconds.
    let retryAfter: Duration?
    /// The broker's `{"error":{"code","message"}}` body, or an error made from the status when
    /// the body is not one (a proxy's own page, say).
    let error: ProtocolError

    init(status: Int, retryAfter: Duration?, error: ProtocolError) {
        self.status = status
        self.retryAfter = retryAfter
        self.error = error
    }

    /// Reads a refused upgrade's status, headers and (bounded) body.
    init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        let retryHeader = headers.first { $0.name.lowercased() == "retry-after" }?.value
        // Delay-seconds only; an HTTP-date (which ferryd never sends) counts as no hint.
        let retryAfter = retryHeader.flatMap { UInt32($0.trimmingCharacters(in: .whitespaces)) }.map { Duration.seconds(Int64($0)) }
        let error = Self.decodeError(body) ?? ProtocolError(Self.code(forStatus: status), "the server answered the upgrade with HTTP \(status)")
        self.init(status: status, retryAfter: retryAfter, error: error)
    }

    /// 401 and 403: the same credentials cannot succeed on another attempt.
    var isFinal: Bool { status == 401 || status == 403 }

    private static func decodeError(_ body: [UInt8]) -> ProtocolError? {
        guard !body.isEmpty else { return nil }
        do {
            let detail = try JSONDecoder().decode(ErrorBody.self, from: Data(body)).error
            guard let code = ErrorCode(rawValue: detail.code) else { return nil }
            return ProtocolError(code, detail.message)
        } catch {
            return nil  // not the broker's error body: the status speaks for it
        }
    }

    private static func code(forStatus status: Int) -> ErrorCode {
        switch status {
        case 401: .unauthorized
        case 403: .forbidden
        case 404: .notFound
        case 413: .tooLarge
        case 429: .rateLimited
        default: status >= 500 ? .unavailable : .badFrame
        }
    }
}
