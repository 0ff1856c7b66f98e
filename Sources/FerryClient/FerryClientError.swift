import FerryProtocol

/// Why a client operation failed.
public struct FerryClientError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Kind: Sendable, Equatable {
        case closed
        case outboxFull(limit: Int)
        case rejected(ProtocolError)
        case closedByBroker(code: UInt16, reason: String)
        case unauthorized(status: Int, ProtocolError)
        case encoding(String)
        case storage(String)
    }

    private let kind: Kind

    /// The client was closed; nothing more will be sent or received.
    public static let closed = FerryClientError(kind: .closed)

    /// The offline outbox holds `limit` unconfirmed publishes already; this one was not queued.
    public static func outboxFull(limit: Int) -> FerryClientError { FerryClientError(kind: .outboxFull(limit: limit)) }

    /// The broker refused the request (e.g. `too_large`, `invalid_topic`); retrying will not help.
    public static func rejected(_ error: ProtocolError) -> FerryClientError { FerryClientError(kind: .rejected(error)) }

    /// The broker closed the connection with a code after which reconnecting cannot succeed
    /// (4001 unauthorized, 4009 session taken over, 4010 session deleted).
    public static func closedByBroker(code: UInt16, reason: String) -> FerryClientError {
        FerryClientError(kind: .closedByBroker(code: code, reason: reason))
    }

    /// The broker refused the WebSocket upgrade with HTTP 401 (a missing, malformed or expired
    /// token) or 403: another attempt with the same credentials cannot succeed. `error` is the
    /// broker's code and message from the refusal's body.
    public static func unauthorized(status: Int, _ error: ProtocolError) -> FerryClientError {
        FerryClientError(kind: .unauthorized(status: status, error))
    }

    /// A value could not be encoded as JSON.
    public static func encoding(_ what: String) -> FerryClientError { FerryClientError(kind: .encoding(what)) }

    /// The client's files (outbox, session) could not be read or written.
    public static func storage(_ what: String) -> FerryClientError { FerryClientError(kind: .storage(what)) }

    /// The broker's error, when it rejected a request or refused the upgrade.
    public var protocolError: ProtocolError? {
        switch kind {
        case .rejected(let error), .unauthorized(_, let error): error
        default: nil
        }
    }

    /// The HTTP status, when the broker refused the upgrade (401 or 403).
    public var httpStatus: Int? {
        if case .unauthorized(let status, _) = kind { return status }
        return nil
    }

    /// The close code, when the broker ended the session for good.
    public var closeCode: UInt16? {
        if case .closedByBroker(let code, _) = kind { return code }
        return nil
    }

    public var description: String {
        switch kind {
        case .closed: "the client is closed"
        case .outboxFull(let limit): "the outbox is full (\(limit) unconfirmed publishes)"
        case .rejected(let error): "rejected by the broker: \(error)"
        case .closedByBroker(let code, let reason): "closed by the broker with \(code): \(reason)"
        case .unauthorized(let status, let error): "the broker refused the connection with HTTP \(status): \(error)"
        case .encoding(let what): "cannot encode the message: \(what)"
        case .storage(let what): what
        }
    }
}
