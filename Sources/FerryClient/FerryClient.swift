import FerryProtocol
import Foundation

/// How a ``FerryClient`` behaves. Every field has a default.
public struct FerryClientConfiguration: Sendable {
    /// When messages are acknowledged.
    public enum AckMode: Sendable {
        /// The subscription acks a message when the application asks for the next one, that is,
        /// after the loop body that processed it finished.
        case afterProcessing
        /// The application calls ``FerryMessage/ack()``.
        case manual
    }

    public var ackMode = AckMode.afterProcessing
    /// Waits between reconnect attempts.
    public var backoff = Backoff()
    /// A connection that lasted this long resets the backoff to its first step.
    public var stableConnection: Duration = .seconds(10)
    /// Where the session (resume token, last processed versions) and the outbox are kept, so a
    /// process restart resumes. Nil keeps them in memory only.
    public var stateDirectory: URL?
    /// Unconfirmed publishes kept at most; one more fails with ``FerryClientError/outboxFull(limit:)``.
    public var outboxLimit = 100_000
    /// Unconfirmed publishes held in memory (and in flight to the broker); with a
    /// ``stateDirectory`` the rest wait on disk only. Without one, all of them stay in memory.
    public var outboxMemoryLimit = 1024
    /// How long the token provider and the TCP connection may each take; past it the attempt
    /// is abandoned and retried with backoff.
    public var connectTimeout: Duration = .seconds(10)
    /// How long TLS and the WebSocket upgrade may take to be answered (a broker that accepts
    /// and never answers, or dies while the client connects); past it the attempt is retried.
    public var handshakeTimeout: Duration = .seconds(10)
    /// How long a connection may take to be welcomed after the upgrade before it counts as dead.
    public var helloTimeout: Duration = .seconds(10)
    /// Gives the token for each connection attempt, sent as `Authorization: Bearer`; called
    /// before every attempt, so it can return a fresh one when the last has expired (the common
    /// case after an app was in the background). An error it throws fails that attempt, which
    /// is retried with backoff. With a provider, a connection the broker closes with 4001 (token
    /// expired) reconnects with the next token instead of stopping; a token the broker refuses
    /// (HTTP 401 or 403) stops the client with ``FerryClientError/unauthorized(status:_:)``.
    ///
    /// ```swift
    /// configuration.tokenProvider = { try await session.freshFerryToken() }
    /// ```
    public var tokenProvider: (@Sendable () async throws -> String)?
    /// Time for the backoff waits and the heartbeat watchdog.
    package var clock = ClientClock.continuous
    /// The jitter's random numbers.
    package var makeRandom: @Sendable () -> any RandomNumberGenerator = { SystemRandomNumberGenerator() }

    public init() {}
}

/// A Ferry client that never loses a message: it reconnects with backoff and jitter, resumes its
/// durable session, removes duplicates, and keeps publishes made while offline until the broker
/// confirms them.
///
/// ```swift
/// var configuration = FerryClientConfiguration()
/// configuration.stateDirectory = URL(fileURLWithPath: "./ferry-client")
/// let client = FerryClient(url: URL(string: "ws://127.0.0.1:8080/v1/ws")!, clientID: "kitchen-1", configuration: configuration)
///
/// Task {
///     for try await message in client.subscribe("orders") {
///         let order = try message.decode(Order.self)
///         try await cook(order)          // acked when the loop asks for the next message
///     }
/// }
/// let version = try await client.publish("orders", json: Order(item: "tea"))
/// ```
public final class FerryClient: Sendable {
    private let core: ClientCore
    private let configuration: FerryClientConfiguration
    private let loop: Task<Void, Never>
    private let stateBroadcast = Broadcast(replaying: ConnectionState.disconnected)
    private let eventBroadcast = Broadcast<FerryEvent>()

    /// Starts connecting at once.
    /// - Parameters:
    ///   - url: The broker's WebSocket endpoint, `ws://host:port/v1/ws`.
    ///   - clientID: The durable session's id; nil for an ephemeral client (no resume after restart).
    public init(url: URL, clientID: String? = nil, configuration: FerryClientConfiguration = FerryClientConfiguration()) {
        let core = ClientCore(
            url: url.absoluteString, clientID: clientID, configuration: configuration, states: stateBroadcast, events: eventBroadcast)
        self.core = core
        self.configuration = configuration
        loop = Task { await core.run() }
    }

    /// The messages of `topic`, each once, in version order. Subscribing to the same topic again
    /// ends the previous sequence. `topic` may be a pattern (`orders.*`, `chat.>`): the sequence
    /// then has every matching topic's messages, each topic in order.
    /// - Parameters:
    ///   - from: Where a new subscription starts; a resumed one continues where it was.
    ///   - window: Unacknowledged messages in flight (the broker's default is 1024).
    public func subscribe(_ topic: String, from: StartPosition = .stored, window: Int? = nil) -> FerrySubscription {
        subscribe(ClientCore.NewSubscription.Target(topic: topic, start: from, group: nil), window: window)
    }

    /// This client's share of a work queue (a topic with `work_queue` retention): the members of
    /// `group` get each message once between them, and each message is deleted once its member
    /// acks it. Messages come in any order (another member's go out again when it drops), and a
    /// message may come again after a reconnect if its ack was not sent: process idempotently.
    /// - Parameter window: Messages this member holds unacked at most (1 hands out one at a time).
    public func subscribe(_ topic: String, group: String, window: Int? = nil) -> FerrySubscription {
        subscribe(ClientCore.NewSubscription.Target(topic: topic, start: .stored, group: group), window: window)
    }

    private func subscribe(_ target: ClientCore.NewSubscription.Target, window: Int?) -> FerrySubscription {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: FerryMessage.self)
        core.enqueue(ClientCore.NewSubscription(target: target, window: window, continuation: continuation))
        let core = self.core
        Task { await core.takeNewSubscriptions() }
        return FerrySubscription(stream: stream, acksAfterProcessing: configuration.ackMode == .afterProcessing)
    }

    /// Publishes bytes; returns the version once the broker has stored the message. While
    /// disconnected the publish waits in the outbox and is sent on reconnect, with a `msg_id`
    /// so a resend is never stored twice.
    @discardableResult
    public func publish(_ topic: String, data: Data, headers: [String: String] = [:], messageID: String? = nil) async throws -> UInt64 {
        try await core.publish(
            PublishRequest(topic: topic, payload: .bytes(Array(data)), messageID: messageID, headers: headers.sorted { $0.key < $1.key }))
    }

    /// Publishes a value as JSON; returns the version once the broker has stored the message.
    @discardableResult
    public func publish(
        _ topic: String, json value: some Encodable, encoder: JSONEncoder = JSONEncoder(), headers: [String: String] = [:],
        messageID: String? = nil
    ) async throws -> UInt64 {
        let data: Data
        do {
            data = try encoder.encode(value)
        } catch {
            throw FerryClientError.encoding("\(error)")
        }
        return try await core.publish(
            PublishRequest(topic: topic, payload: .json(Array(data)), messageID: messageID, headers: headers.sorted { $0.key < $1.key }))
    }

    /// Publishes JSON text exactly as given (key order and number text kept); returns the version
    /// once the broker has stored the message.
    @discardableResult
    public func publish(_ topic: String, jsonText: Data, headers: [String: String] = [:], messageID: String? = nil) async throws -> UInt64 {
        do {
            _ = try JSONScanner.validate(Array(jsonText))
        } catch {
            throw FerryClientError.encoding("\(error)")
        }
        return try await core.publish(
            PublishRequest(topic: topic, payload: .json(Array(jsonText)), messageID: messageID, headers: headers.sorted { $0.key < $1.key }))
    }

    /// Every state change, starting with the current state. A stream made before a change
    /// sees it.
    public var states: AsyncStream<ConnectionState> { stateBroadcast.stream() }

    /// Gaps and resets from the moment the stream is made. Each also comes with the next
    /// message of its topic (``FerryMessage/events``).
    public var events: AsyncStream<FerryEvent> { eventBroadcast.stream() }

    /// The current connection state.
    public var state: ConnectionState {
        get async { await core.state }
    }

    /// Reconnects now instead of waiting out the backoff: call it when the network comes back or
    /// the app returns to the foreground.
    public func retryNow() {
        let core = self.core
        Task { await core.retryNow() }
    }

    /// Closes the connection and ends every sequence. Unconfirmed publishes stay in the outbox
    /// (on disk with a ``FerryClientConfiguration/stateDirectory``) for the next client.
    /// Returns promptly whatever the connection is doing: an attempt still opening is given up
    /// at once, an open WebSocket has at most a second to send what is queued and its close frame.
    public func close() async {
        await core.close()
        await loop.value
    }
}
