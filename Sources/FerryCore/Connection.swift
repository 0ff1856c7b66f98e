import DequeModule
import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// One client connection: the protocol rules for its frames, and its delivery.
///
/// The transport feeds inbound text frames to ``receive(_:)`` and, whenever the connection calls
/// its `onWork`, writes what ``takeOutbound()`` returns until it returns nil. Delivery is
/// pull-based: each subscription is a cursor (`next`) over the topic's log, advanced only here,
/// under one lock, so catch-up from the store and live delivery from the cache are the same path
/// and cannot gap or duplicate.
public final class Connection: Sendable {
    /// What the transport should do next.
    public enum Outbound: Sendable {
        /// Write these frames, in order.
        case frames([Frame])
        /// Write nothing more; close with this code.
        case close(CloseCode, reason: String)
    }

    let broker: Broker
    /// Who the transport authenticated: what this connection may do, and until when.
    let principal: Principal
    let state: Mutex<State>
    /// Tells the transport there is output to take, or that it may read again. Called outside
    /// the lock, from any thread, once per batch of work (not again until `takeOutbound`).
    let onWork: @Sendable () -> Void

    /// Store reads per subscription are paged so one catch-up cannot hold a reader for long.
    static let readPage = 512

    init(broker: Broker, principal: Principal, onWork: @escaping @Sendable () -> Void) {
        self.broker = broker
        self.principal = principal
        self.onWork = onWork
        let limits = broker.configuration.limits
        self.state = Mutex(
            State(
                maxPendingBytes: limits.maxPendingBytes,
                rate: PublishRateLimiter(
                    rate: limits.publishRate, burst: limits.publishBurst,
                    rejectionsBeforeClose: broker.configuration.publishRejectionsBeforeClose)))
    }

    enum Phase {
        case awaitingHello
        case ready
        case closed
    }

    /// The live delivery state of one subscription on this connection.
    struct Subscription {
        let topic: Topic
        var epoch: String
        var ackFloor: UInt64
        var window: Int
        /// The next version to send; everything below it was sent.
        var next: UInt64
        var durable: Bool
        /// Changes when the subscription is replaced, so a store read for an old one is dropped.
        var generation: UInt64
        var reading = false
        /// The pattern subscription this topic is delivered through (it then shares the
        /// pattern's window); nil for a topic subscription.
        var pattern: String?
        /// Versions a store read in flight will deliver, counted in the pattern's window.
        var reserved: UInt64 = 0
        /// The queue group this subscription is a member of: it is handed single versions, which it
        /// holds until it acks each (``held``); `next` and `ackFloor` are unused.
        var group: SharedQueueGroup?
        var held: Set<UInt64> = []

        /// Messages sent and not acked, and those a read in flight will send.
        var unacked: Int { Int(clamping: next - 1 - min(ackFloor, next - 1) + reserved) }
    }

    /// A store read `takeOutbound` performs outside the lock.
    struct Read {
        var topic: String
        var generation: UInt64
        var epoch: String
        var storeID: UInt64
        var from: UInt64
        var through: UInt64
    }

    struct State {
        let maxPendingBytes: Int
        /// Nil when publishes are not rate limited.
        var rate: PublishRateLimiter?
        var phase = Phase.awaitingHello
        var clientID: String?
        /// By topic name; change them through ``replace(_:with:)``, which keeps the pattern
        /// windows' counts.
        var subscriptions: [String: Subscription] = [:]
        var patterns: [String: PatternSubscription] = [:]
        /// Subscriptions that may have something to send.
        var ready: Set<String> = []
        var outbox: [Frame] = []
        /// Bytes of the frames in `outbox` queued by ``queue(_:)``; delivered messages are not
        /// counted: they are pulled only while the socket takes them.
        var outboxBytes = 0
        var closing: (code: CloseCode, reason: String)?
        /// `onWork` was called and `takeOutbound` has not run since.
        var workPending = false
        var generations: UInt64 = 0
        var pendingPublishes = 0
        /// Socket reads received and not yet handled (their frames, and when they arrived):
        /// handled in order, by one thread at a time, and held while a frame waits for the store
        /// (a hello's session, a subscribe's topic).
        var input: Deque<(texts: ArraySlice<[UInt8]>, at: UInt64)> = []
        /// A thread is handling `input`.
        var handlingInput = false
        /// A frame waits for the store: nothing after it is handled until it is done.
        var waitingForStore = false
        /// `msg` frames queued since the last report to the broker's delivery counter.
        var deliveredUnreported = 0

        /// Marks work for the transport; true when `onWork` must be called (outside the lock).
        mutating func wake() -> Bool {
            defer { workPending = true }
            return !workPending
        }

        /// Queues a frame. Frames pile up only while the transport's socket takes nothing (the
        /// client stopped reading but still sends); past `maxPendingBytes` the queue is dropped
        /// and the connection is closed with 4013. Its durable state is untouched: it resumes.
        mutating func queue(_ frame: Frame) {
            outbox.append(frame)
            outboxBytes += frame.count
            guard outboxBytes > maxPendingBytes else { return }
            outbox.removeAll()
            outboxBytes = 0
            if closing == nil { closing = (.slowConsumer, "more than \(maxPendingBytes) bytes waited for the client to read") }
            // The transport was told of work and has not taken it: tell it again, so it sees the close.
            workPending = false
        }

        mutating func send(_ frame: Frame) -> Bool {
            queue(frame)
            return wake()
        }
    }

    // MARK: - Inbound

    /// Calls `onWork` when `wake` said so.
    func notify(_ wake: Bool) {
        if wake { onWork() }
    }

    /// False while too many publishes of this connection await their commit: the transport
    /// should stop reading until `onWork` comes and this is true again (back-pressure on a
    /// flooding publisher).
    public var acceptsInput: Bool {
        state.withLock { !$0.waitingForStore && $0.pendingPublishes < broker.configuration.maxPendingPublishesPerConnection }
    }

    /// Handles one inbound text frame. A publish is handed to the committer and confirmed later,
    /// so publishes pipeline.
    /// - Parameter now: when the frame arrived, in monotonic nanoseconds (the publish rate limit's clock).
    public func receive(_ text: [UInt8], at now: UInt64 = monotonicNanoseconds()) {
        receive(contentsOf: [text], at: now)
    }

    /// Handles the text frames of one socket read, in order. Consecutive publishes go to the
    /// committer as one job, so a flooding publisher costs one queue entry and one confirmation
    /// pass per read rather than per message; any other frame first sends the publishes before it.
    /// A read that finds no other input is handled here without being queued.
    public func receive(contentsOf texts: [[UInt8]], at now: UInt64 = monotonicNanoseconds()) {
        // nil: queued for the thread at it, or for after the store wait.
        let direct = state.withLock { state -> Bool? in
            guard !state.handlingInput, !state.waitingForStore else {
                state.input.append((texts[...], now))
                return nil
            }
            state.handlingInput = true
            if state.input.isEmpty { return true }
            state.input.append((texts[...], now))
            return false
        }
        guard let direct else { return }
        if direct { keep(handle(texts[...], at: now), at: now) }
        handleInput()
    }

    /// Handles queued reads until there are none or a frame waits for the store.
    func handleInput() {
        while true {
            let read = state.withLock { state -> (texts: ArraySlice<[UInt8]>, at: UInt64)? in
                guard !state.waitingForStore, let read = state.input.popFirst() else {
                    state.handlingInput = false
                    return nil
                }
                return read
            }
            guard let read else { return }
            keep(handle(read.texts, at: read.at), at: read.at)
        }
    }

    /// Puts the frames a store wait held back first in line.
    private func keep(_ unhandled: ArraySlice<[UInt8]>, at now: UInt64) {
        if !unhandled.isEmpty { state.withLock { $0.input.prepend((unhandled, now)) } }
    }

    /// Marks that the frame being handled waits for the store; ``storeWaitEnded()`` ends it.
    func waitForStore() {
        state.withLock { $0.waitingForStore = true }
    }

    /// The store answered: handle what arrived meanwhile (here if no thread is at it: the wait
    /// may end inline, inside ``handle(_:at:)``, or later on a store thread), and tell the transport
    /// it may read again.
    func storeWaitEnded() {
        let (handleHere, wake) = state.withLock { state in
            state.waitingForStore = false
            let handleHere = !state.handlingInput && !state.input.isEmpty
            if handleHere { state.handlingInput = true }
            return (handleHere, state.wake())
        }
        notify(wake)
        if handleHere { handleInput() }
    }

    /// Handles frames in order; returns those left when one of them waits for the store.
    func handle(_ texts: ArraySlice<[UInt8]>, at now: UInt64) -> ArraySlice<[UInt8]> {
        // The transport also closes at expiry; this makes the rule exact: no frame after it.
        if let expiresAt = principal.expiresAt, broker.configuration.now() >= expiresAt {
            expired()
            return []
        }
        var awaitingHello = isAwaitingHello
        var publishes: [(id: Int64?, request: PublishRequest)] = []
        for (index, text) in zip(texts.indices, texts) {
            let frame: ClientFrame
            do {
                frame = try ClientFrame.decode(text)
            } catch {
                if awaitingHello, error.op != "hello" {
                    fail(ProtocolError(.helloRequired, "the first frame must be a hello"), close: .protocolViolation)
                } else {
                    reply(id: error.id, error.error)
                }
                continue
            }
            if case .publish(let id, let request) = frame, !awaitingHello {
                if principal.permissions.mayPublish(request.topic) {
                    publishes.append((id, request))
                } else {
                    reply(id: id, ProtocolError(.forbidden, "not allowed to publish to \(request.topic)"))
                }
                continue
            }
            if !publishes.isEmpty {
                publish(publishes, at: now)
                publishes.removeAll()
            }
            if case .hello(let clientID, let token) = frame {
                hello(clientID: clientID, resumeToken: token)
                if isWaitingForStore { return texts[(index + 1)...] }
                awaitingHello = isAwaitingHello
                continue
            }
            if awaitingHello {
                fail(ProtocolError(.helloRequired, "the first frame must be a hello"), close: .protocolViolation)
                continue
            }
            switch frame {
            case .hello, .publish:
                break
            case .subscribe(let id, let topic, let from, let epoch, let window, let positions, let group):
                let window = window ?? ClientFrame.defaultWindow
                if let group {
                    subscribeGroup(id: id, topic: topic, group: group, window: window)
                } else if TopicPattern.looksLikePattern(topic) {
                    subscribePattern(id: id, text: topic, from: from, window: window, positions: positions)
                } else {
                    subscribe(id: id, topic: topic, from: from, epoch: epoch, window: window)
                }
                if isWaitingForStore { return texts[(index + 1)...] }
            case .ack(let topic, let version):
                ack(topic: topic, version: version)
            case .unsubscribe(let id, let topic):
                unsubscribe(id: id, topic: topic)
            case .ping(let id):
                send(ServerFrame.pong(id: id))
            }
        }
        if !publishes.isEmpty { publish(publishes, at: now) }
        return []
    }

    var isWaitingForStore: Bool {
        state.withLock { $0.waitingForStore }
    }

    /// Reports a frame the transport refused (binary, oversize) and closes if `close` is given.
    public func fail(_ error: ProtocolError, close code: CloseCode? = nil) {
        notify(
            state.withLock { state in
                state.queue(ServerFrame.error(id: nil, error))
                if let code, state.closing == nil { state.closing = (code, error.message) }
                return state.wake()
            })
    }

    /// Closes the connection with `code` once the frames already queued are written.
    public func close(_ code: CloseCode, reason: String) {
        notify(
            state.withLock { state in
                if state.closing == nil { state.closing = (code, reason) }
                return state.wake()
            })
    }

    /// The credential the connection was opened with has expired: close with 4001.
    public func expired() {
        fail(ProtocolError(.unauthorized, "the token has expired"), close: .unauthorized)
    }

    var isAwaitingHello: Bool {
        state.withLock { $0.phase == .awaitingHello }
    }

    func send(_ frame: Frame) {
        notify(state.withLock { $0.send(frame) })
    }

    func reply(id: Int64?, _ error: ProtocolError) {
        send(ServerFrame.error(id: id, error))
    }

    // MARK: - End

    /// The transport is gone: release the session and the topic subscriptions.
    public func closed() {
        let (subscriptions, patterns, clientID) = state.withLock { state in
            state.phase = .closed
            if state.closing == nil { state.closing = (.normal, "closed") }
            defer {
                state.subscriptions.removeAll()
                state.patterns.removeAll()
            }
            return (Array(state.subscriptions.values), Array(state.patterns.keys), state.clientID)
        }
        broker.unregister(patterns, of: self)
        for subscription in subscriptions { if let group = subscription.group { broker.leave(group, self) } }
        broker.removeSubscriber(self, from: subscriptions.map(\.topic))
        let sent = subscriptions.map { ($0.topic.name, SentPosition(epoch: $0.epoch, version: $0.next - 1)) }
        broker.detach(self, clientID: clientID, sentThrough: Dictionary(sent) { $1 })
    }
}
