/// The error codes of the wire protocol, each with the HTTP status it maps to.
///
/// One registry for both transports, so a WebSocket `error` frame and an HTTP error body can
/// never disagree on what a failure is called.
public enum ErrorCode: String, Sendable, CaseIterable, Codable {
    case badFrame = "bad_frame"
    case unknownOp = "unknown_op"
    case helloRequired = "hello_required"
    case notFound = "not_found"
    case invalidTopic = "invalid_topic"
    case invalidClientID = "invalid_client_id"
    case badResumeToken = "bad_resume_token"
    case sessionConflict = "session_conflict"
    case notSubscribed = "not_subscribed"
    case badAck = "bad_ack"
    case tooLarge = "too_large"
    case tooManySubscriptions = "too_many_subscriptions"
    case unauthorized
    case forbidden
    case rateLimited = "rate_limited"
    case unavailable
    /// The broker's store engine does not do this (a PostgreSQL-backed broker takes no backups:
    /// PostgreSQL's tools do). Retrying cannot succeed.
    case notSupported = "not_supported"

    /// The HTTP status of this code.
    public var httpStatus: Int {
        switch self {
        case .badFrame, .unknownOp, .helloRequired, .invalidTopic, .invalidClientID, .badResumeToken,
            .notSubscribed, .badAck, .tooManySubscriptions:
            400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .sessionConflict: 409
        case .tooLarge: 413
        case .rateLimited: 429
        case .notSupported: 501
        case .unavailable: 503
        }
    }
}

/// A protocol error: a code from the registry and words for a human.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: ErrorCode
    public let message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// WebSocket close codes and whether a client should reconnect after each.
public enum CloseCode: UInt16, Sendable, CaseIterable {
    case normal = 1000
    case goingAway = 1001
    case protocolViolation = 4000
    case unauthorized = 4001
    case heartbeatTimeout = 4002
    case frameTooLarge = 4008
    /// The client did not read: more than `max_pending_bytes` of frames waited for its socket.
    case slowConsumer = 4013
    case sessionTakenOver = 4009
    case sessionDeleted = 4010
    case rateLimited = 4029
    /// The broker could not do what the connection needs (a stored message cannot be read); reconnecting resumes.
    case internalError = 1011

    /// False for the codes after which retrying cannot succeed (4001, 4009, 4010).
    public var shouldReconnect: Bool {
        switch self {
        case .unauthorized, .sessionTakenOver, .sessionDeleted: false
        default: true
        }
    }
}
