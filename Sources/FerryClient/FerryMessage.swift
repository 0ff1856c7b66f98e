import FerryProtocol
import Foundation

/// Where a subscription starts (`.stored`, `.latest`, `.earliest`, `.after(version)`), re-exported
/// so applications need only `import FerryClient`.
public typealias StartPosition = FerryProtocol.StartPosition

/// A message delivered to the application.
public struct FerryMessage: Sendable {
    public let topic: String
    /// The topic's version of this message: 1, 2, 3 … in commit order.
    public let version: UInt64
    /// When the broker committed it.
    public let timestamp: Date
    /// The payload: JSON text as published, or the published bytes.
    public let payload: Data
    /// True when the payload was published as JSON.
    public let isJSON: Bool
    public let headers: [String: String]
    /// What the broker announced on this topic just before this message: a ``FerryEvent/gap(topic:from:to:)``
    /// (versions deleted before this client received them) or a ``FerryEvent/reset(topic:oldEpoch:epoch:)``.
    /// Usually empty; the same events are also on ``FerryClient/events``.
    public let events: [FerryEvent]
    /// The topic's epoch when it was delivered: after a `reset`, an ack of it acks nothing.
    let epoch: String?
    let core: ClientCore

    /// Decodes a JSON payload.
    public func decode<T: Decodable>(_ type: T.Type = T.self, using decoder: JSONDecoder = JSONDecoder()) throws -> T {
        try decoder.decode(type, from: payload)
    }

    /// Acknowledges this message and every earlier one of its topic (acks are cumulative).
    /// In ``FerryClientConfiguration/AckMode/afterProcessing`` mode the subscription does this for you.
    public func ack() async {
        await core.ack(topic: topic, version: version, epoch: epoch)
    }
}

/// Something the application should know about a topic's log.
public enum FerryEvent: Sendable, Equatable {
    /// Versions `from...to` were deleted by retention before this client received them.
    case gap(topic: String, from: UInt64, to: UInt64)
    /// The topic was deleted and created again; delivery restarts from the new log's first version.
    case reset(topic: String, oldEpoch: String, epoch: String)

    /// The topic the event is about.
    public var topic: String {
        switch self {
        case .gap(let topic, _, _), .reset(let topic, _, _): topic
        }
    }
}

/// The messages of one topic, in version order, each once.
///
/// In ``FerryClientConfiguration/AckMode/afterProcessing`` mode, asking for the next message
/// acknowledges the previous one: a message is acked only after the loop body that processed it
/// finished, so a crash mid-processing redelivers it.
public struct FerrySubscription: AsyncSequence, Sendable {
    public typealias Element = FerryMessage

    let stream: AsyncThrowingStream<FerryMessage, any Error>
    let acksAfterProcessing: Bool

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<FerryMessage, any Error>.AsyncIterator
        let acksAfterProcessing: Bool
        var previous: FerryMessage?

        public mutating func next() async throws -> FerryMessage? {
            if acksAfterProcessing, let previous { await previous.ack() }
            previous = try await base.next()
            return previous
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), acksAfterProcessing: acksAfterProcessing)
    }
}
