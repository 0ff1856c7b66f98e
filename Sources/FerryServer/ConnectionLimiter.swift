import FerryCore
import FerryProtocol
import Synchronization

/// Counts open WebSockets, in total and per remote address, so an upgrade over a cap is refused
/// before it becomes a connection. A slot is taken when the upgrade is accepted and given back
/// when its channel closes, however it closes.
final class ConnectionLimiter: Sendable {
    private let maxConnections: Int?
    private let maxPerAddress: Int?
    private let state = Mutex(State())

    private struct State {
        var total = 0
        var perAddress: [String: Int] = [:]
    }

    /// - Parameters:
    ///   - maxConnections: WebSockets open at once; nil for no cap.
    ///   - maxPerAddress: WebSockets open at once from one remote IP; nil for no cap.
    init(maxConnections: Int?, maxPerAddress: Int?) {
        self.maxConnections = maxConnections
        self.maxPerAddress = maxPerAddress
    }

    /// Takes a slot for a WebSocket from `address`, or names the limit that refuses it. A taken
    /// slot must be given back with ``release(_:)``.
    func acquire(_ address: String) -> LimitKind? {
        state.withLock { state in
            if let limit = limit(refusing: address, in: state) { return limit }
            state.total += 1
            state.perAddress[address, default: 0] += 1
            return nil
        }
    }

    /// The limit that would refuse a WebSocket from `address` now; takes no slot.
    func limit(refusing address: String) -> LimitKind? {
        state.withLock { limit(refusing: address, in: $0) }
    }

    private func limit(refusing address: String, in state: State) -> LimitKind? {
        if let maxConnections, state.total >= maxConnections { return .connections }
        if let maxPerAddress, state.perAddress[address, default: 0] >= maxPerAddress { return .connectionsPerIP }
        return nil
    }

    func release(_ address: String) {
        state.withLock { state in
            state.total -= 1
            // Removed at zero, so addresses seen once do not accumulate.
            if let count = state.perAddress[address], count > 1 {
                state.perAddress[address] = count - 1
            } else {
                state.perAddress[address] = nil
            }
        }
    }
}

extension LimitKind {
    /// How an upgrade over this limit is answered: the whole broker full is the server's
    /// condition (503 `unavailable`); one address over its share is the client's (429 `rate_limited`).
    var refusal: ProtocolError {
        switch self {
        case .connections: ProtocolError(.unavailable, "the broker has its maximum of WebSocket connections; retry later")
        case .connectionsPerIP: ProtocolError(.rateLimited, "too many WebSocket connections from this address; retry later")
        case .publishRate: ProtocolError(.rateLimited, "over the publish rate")
        }
    }
}
