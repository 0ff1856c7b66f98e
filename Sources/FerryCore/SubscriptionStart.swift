import FerryProtocol
import FerryStore

/// Where a new subscription starts in a topic's log, and what its client must hear first: a
/// pure decision from the `subscribe` frame, the session's stored position and the log, so
/// every storage engine gets the same answer (PROTOCOL.md, "Subscribing").
struct SubscriptionStart: Equatable {
    /// The first version to send.
    var next: UInt64
    /// The epoch the client named (or its stored position had) that the log no longer has:
    /// the client is sent `reset` from it, and starts at the oldest stored version.
    var resetFrom: String?
    /// Versions the client asked for that retention or a trim deleted: sent as one `gap`.
    var gap: ClosedRange<UInt64>?

    init(next: UInt64, resetFrom: String?, gap: ClosedRange<UInt64>?) {
        self.next = next
        self.resetFrom = resetFrom
        self.gap = gap
    }

    /// - Parameters:
    ///   - from: the frame's `from`.
    ///   - epoch: the frame's `epoch`, which qualifies `.after(version)`.
    ///   - stored: the durable session's position in this topic, if it has one.
    ///   - position: the log as it stands when the subscriber is added.
    init(from: StartPosition, epoch: String?, stored: SubscriptionRecord?, position: Topic.Position) {
        var start: UInt64
        var stale: String?
        switch from {
        case .latest:
            start = position.head + 1
        case .earliest:
            start = position.first
        case .stored:
            if let stored {
                start = stored.ackFloor + 1
                if stored.epoch != position.epoch || stored.ackFloor > position.head { stale = stored.epoch }
            } else {
                start = position.head + 1
            }
        case .after(let version):
            start = version + 1
            if let epoch, epoch != position.epoch {
                stale = epoch
            } else if version > position.head {
                // A version this log never had: the client's log was another one.
                stale = epoch ?? position.epoch
            }
        }
        if stale != nil { start = position.first }
        next = max(start, position.first)
        resetFrom = stale
        gap = start < position.first ? start...(position.first - 1) : nil
    }
}
