import FerryProtocol

/// Where a client's connection stands. Every change is published on ``FerryClient/states``.
public enum ConnectionState: Sendable, Equatable {
    /// Not started yet.
    case disconnected
    /// Opening a WebSocket and saying hello.
    case connecting
    /// `welcome` received: subscriptions restored, the outbox is being sent.
    case connected
    /// The connection was lost; the next attempt starts after `delay`.
    case reconnecting(attempt: Int, delay: Duration)
    /// Closed by the application.
    case closed
    /// Stopped for good: the broker said reconnecting cannot succeed (a close code such as
    /// 4009, or an upgrade refused with HTTP 401 or 403: see ``FerryClientError/httpStatus``).
    case failed(FerryClientError)
}

/// How a connection attempt ended.
enum AttemptEnd: Sendable, Equatable {
    /// The link failed, went silent, overran a phase's deadline or was closed; `closeCode` is
    /// the broker's, if it sent one.
    case lost(closeCode: UInt16?, reason: String)
    /// The broker answered the upgrade with an HTTP error instead of a WebSocket.
    case refused(UpgradeRefusal)
}

/// The connection rules as a pure state machine: each event returns what to do next, so the
/// rules are tested without sockets or clocks. Instants are a ``ClientClock``'s readings (as swift-websocket's `WebSocketStateMachine`).
struct ConnectionStateMachine: Sendable {
    enum Action: Equatable {
        case connect
        case wait(Duration)
        case stop
    }

    private(set) var state = ConnectionState.disconnected
    /// Failed attempts since the last stable connection.
    private(set) var failures = 0
    private var connectedAt: Duration?
    let backoff: Backoff
    /// A connection that lasted this long resets the backoff.
    let stableAfter: Duration
    /// The application gives a fresh token before each attempt, so a connection closed because
    /// its token expired (4001) is worth another attempt.
    let renewsTokens: Bool

    init(backoff: Backoff, stableAfter: Duration, renewsTokens: Bool = false) {
        self.backoff = backoff
        self.stableAfter = stableAfter
        self.renewsTokens = renewsTokens
    }

    mutating func start() -> Action {
        guard state == .disconnected else { return .stop }
        state = .connecting
        return .connect
    }

    /// The broker's `welcome` arrived.
    mutating func connected(at now: Duration) {
        guard state == .connecting else { return }
        state = .connected
        connectedAt = now
    }

    /// An attempt ended, however it ended.
    mutating func attemptEnded(_ end: AttemptEnd, at now: Duration, using generator: inout some RandomNumberGenerator) -> Action {
        switch end {
        case .lost(let closeCode, let reason): connectionLost(closeCode: closeCode, reason: reason, at: now, using: &generator)
        case .refused(let refusal): refused(refusal, using: &generator)
        }
    }

    /// The connection ended (or never opened); `closeCode` is the broker's, if it sent one.
    mutating func connectionLost(
        closeCode: UInt16?, reason: String, at now: Duration, using generator: inout some RandomNumberGenerator
    ) -> Action {
        switch state {
        case .connecting, .connected:
            break
        default:
            return .stop
        }
        if let closeCode, let code = CloseCode(rawValue: closeCode), !code.shouldReconnect, !(code == .unauthorized && renewsTokens) {
            state = .failed(.closedByBroker(code: closeCode, reason: reason))
            return .stop
        }
        if let connectedAt, now - connectedAt >= stableAfter { failures = 0 }
        connectedAt = nil
        return backOff(atLeast: .zero, using: &generator)
    }

    /// The upgrade was answered with an HTTP error: 401 and 403 stop (the same credentials
    /// cannot succeed), anything else is retried, not before `Retry-After`.
    mutating func refused(_ refusal: UpgradeRefusal, using generator: inout some RandomNumberGenerator) -> Action {
        guard state == .connecting else { return .stop }
        if refusal.isFinal {
            state = .failed(.unauthorized(status: refusal.status, refusal.error))
            return .stop
        }
        return backOff(atLeast: refusal.retryAfter ?? .zero, using: &generator)
    }

    private mutating func backOff(atLeast floor: Duration, using generator: inout some RandomNumberGenerator) -> Action {
        let delay = max(floor, backoff.delay(attempt: failures, using: &generator))
        failures += 1
        state = .reconnecting(attempt: failures, delay: delay)
        return .wait(delay)
    }

    /// The backoff wait ended, or a hint (network back, app in foreground) cut it short.
    mutating func retry() -> Action {
        guard case .reconnecting = state else { return .stop }
        state = .connecting
        return .connect
    }

    mutating func close() {
        switch state {
        case .closed, .failed: return
        default: state = .closed
        }
    }

    /// The client cannot work at all (e.g. its outbox file cannot be opened).
    mutating func fail(_ error: FerryClientError) {
        switch state {
        case .closed, .failed: return
        default: state = .failed(error)
        }
    }
}
