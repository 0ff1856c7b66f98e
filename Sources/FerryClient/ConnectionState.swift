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
    /// Stopped for good: the broker said reconnecting cannot succeed.
    case failed(FerryClientError)
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

    init(backoff: Backoff, stableAfter: Duration) {
        self.backoff = backoff
        self.stableAfter = stableAfter
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
        if let closeCode, CloseCode(rawValue: closeCode)?.shouldReconnect == false {
            state = .failed(.closedByBroker(code: closeCode, reason: reason))
            return .stop
        }
        if let connectedAt, now - connectedAt >= stableAfter { failures = 0 }
        connectedAt = nil
        let delay = backoff.delay(attempt: failures, using: &generator)
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
