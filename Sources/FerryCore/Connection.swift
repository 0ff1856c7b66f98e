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

    private let broker: Broker
    /// Who the transport authenticated: what this connection may do, and until when.
    private let principal: Principal
    private let state: Mutex<State>
    /// Tells the transport there is output to take, or that it may read again. Called outside
    /// the lock, from any thread, once per batch of work (not again until `takeOutbound`).
    private let onWork: @Sendable () -> Void

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

    private enum Phase {
        case awaitingHello
        case ready
        case closed
    }

    /// The live delivery state of one subscription on this connection.
    private struct Subscription {
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
    }

    /// A store read `takeOutbound` performs outside the lock.
    private struct Read {
        var topic: String
        var generation: UInt64
        var epoch: String
        var storeID: UInt64
        var from: UInt64
        var through: UInt64
    }

    private struct State {
        let maxPendingBytes: Int
        /// Nil when publishes are not rate limited.
        var rate: PublishRateLimiter?
        var phase = Phase.awaitingHello
        var clientID: String?
        var subscriptions: [String: Subscription] = [:]
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
        /// Frames received and not yet handled, with when they arrived: handled in order, by one
        /// thread at a time, and held while a frame waits for the store (a hello's session, a
        /// subscribe's topic).
        var input: Deque<(text: [UInt8], at: UInt64)> = []
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
    private func notify(_ wake: Bool) {
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
        receive(contentsOf: CollectionOfOne(text), at: now)
    }

    /// Handles the text frames of one socket read, in order. Consecutive publishes go to the
    /// committer as one job, so a flooding publisher costs one queue entry and one confirmation
    /// pass per read rather than per message; any other frame first sends the publishes before it.
    public func receive(contentsOf texts: some Sequence<[UInt8]>, at now: UInt64 = monotonicNanoseconds()) {
        let handleNow = state.withLock { state in
            state.input.append(contentsOf: texts.lazy.map { ($0, now) })
            guard !state.handlingInput, !state.waitingForStore else { return false }
            state.handlingInput = true
            return true
        }
        if handleNow { handleInput() }
    }

    /// Handles queued input until it is empty or a frame waits for the store.
    private func handleInput() {
        while true {
            let batch = state.withLock { state -> [(text: [UInt8], at: UInt64)]? in
                guard !state.waitingForStore, !state.input.isEmpty else {
                    state.handlingInput = false
                    return nil
                }
                defer { state.input.removeAll(keepingCapacity: true) }
                return Array(state.input)
            }
            guard let batch else { return }
            let unhandled = handle(batch)
            if !unhandled.isEmpty { state.withLock { $0.input.insert(contentsOf: unhandled, at: 0) } }
        }
    }

    /// Marks that the frame being handled waits for the store; ``storeWaitEnded()`` ends it.
    private func waitForStore() {
        state.withLock { $0.waitingForStore = true }
    }

    /// The store answered: handle what arrived meanwhile (here if no thread is at it: the wait
    /// may end inline, inside ``handle(_:)``, or later on a store thread), and tell the transport
    /// it may read again.
    private func storeWaitEnded() {
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
    private func handle(_ batch: [(text: [UInt8], at: UInt64)]) -> ArraySlice<(text: [UInt8], at: UInt64)> {
        // The transport also closes at expiry; this makes the rule exact: no frame after it.
        if let expiresAt = principal.expiresAt, broker.configuration.now() >= expiresAt {
            expired()
            return []
        }
        var awaitingHello = isAwaitingHello
        var publishes: [(id: Int64?, request: PublishRequest)] = []
        var now = batch.first?.at ?? 0
        for (index, (text, arrival)) in batch.enumerated() {
            now = arrival
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
                if isWaitingForStore { return batch[(index + 1)...] }
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
            case .subscribe(let id, let topic, let from, let epoch, let window):
                subscribe(id: id, topic: topic, from: from, epoch: epoch, window: window ?? ClientFrame.defaultWindow)
                if isWaitingForStore { return batch[(index + 1)...] }
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

    private var isWaitingForStore: Bool {
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

    private var isAwaitingHello: Bool {
        state.withLock { $0.phase == .awaitingHello }
    }

    private func send(_ frame: Frame) {
        notify(state.withLock { $0.send(frame) })
    }

    private func reply(id: Int64?, _ error: ProtocolError) {
        send(ServerFrame.error(id: id, error))
    }

    /// Attaches the session the hello names (read from the store when the broker has not seen
    /// it since it started) and restores its subscriptions; later frames wait until it is done.
    private func hello(clientID: String?, resumeToken: String?) {
        guard isAwaitingHello else {
            reply(id: nil, ProtocolError(.badFrame, "hello was already accepted"))
            return
        }
        waitForStore()
        broker.attach(self, principal: principal, clientID: clientID, resumeToken: resumeToken) { [self] result in
            switch result {
            case .failure(let error):
                broker.metrics.helloRejected(error, clientID: clientID)
                reply(id: nil, error)
                storeWaitEnded()
            case .success(let session):
                broker.metrics.hello(session)
                broker.addSubscriber(self, to: session.subscriptions.map(\.topic)) { [self] topics in
                    switch topics {
                    case .success(let topics):
                        welcome(session, topics: topics.map(\.topic))
                    case .failure(let error):
                        // The session is this connection's; closing releases it for a later hello.
                        if let id = session.clientID { broker.release(id, from: self) }
                        fail(error, close: .internalError)
                    }
                    storeWaitEnded()
                }
            }
        }
    }

    /// Sends `welcome` and starts delivery on the restored subscriptions.
    private func welcome(_ session: Broker.Attachment, topics: [Topic]) {
        let welcome = ServerFrame.welcome(
            clientID: session.clientID, resumeToken: session.resumeToken, resumed: session.resumed,
            subscriptions: session.subscriptions.map {
                RestoredSubscription(topic: $0.topic, epoch: $0.epoch, ackFloor: $0.ackFloor)
            },
            heartbeatSeconds: broker.configuration.heartbeatSeconds, limits: broker.configuration.limits)
        let wake = state.withLock { state -> Bool? in
            // Closed while the store was read: `closed()` could not release what it did not have yet.
            guard state.phase != .closed else { return nil }
            state.phase = .ready
            state.clientID = session.clientID
            state.queue(welcome)
            for (record, topic) in zip(session.subscriptions, topics) {
                state.generations += 1
                state.subscriptions[record.topic] = Subscription(
                    topic: topic, epoch: record.epoch, ackFloor: record.ackFloor, window: record.window,
                    next: record.ackFloor + 1, durable: true, generation: state.generations)
                state.ready.insert(record.topic)
            }
            return state.wake()
        }
        guard let wake else {
            broker.removeSubscriber(self, from: topics)
            if let id = session.clientID { broker.release(id, from: self) }
            return
        }
        notify(wake)
    }

    private func subscribe(id: Int64?, topic name: String, from: StartPosition, epoch: String?, window: Int) {
        // Before anything is looked up, so a refused subscribe creates nothing.
        guard principal.permissions.maySubscribe(name) else {
            reply(id: id, ProtocolError(.forbidden, "not allowed to subscribe to \(name)"))
            return
        }
        let clientID = state.withLock { $0.clientID }
        let stored = clientID.flatMap { broker.durableSubscription(clientID: $0, topic: name) }
        let maxSubscriptions = broker.configuration.limits.maxSubscriptions
        let full = state.withLock { $0.subscriptions[name] == nil && $0.subscriptions.count >= maxSubscriptions }
        guard !full else {
            reply(id: id, ProtocolError(.tooManySubscriptions, "at most \(maxSubscriptions) subscriptions per connection"))
            return
        }
        waitForStore()
        broker.addSubscriber(self, to: [name]) { [self] result in
            switch result {
            case .success(let topics):
                if let (topic, position) = topics.first {
                    start(id: id, topic: topic, at: position, from: from, epoch: epoch, window: window, stored: stored, clientID: clientID)
                }
            case .failure(let error):
                reply(id: id, error)
            }
            storeWaitEnded()
        }
    }

    /// Puts a subscription in place once its topic is held: `subscribed`, then `reset` or `gap`
    /// if its start calls for one, then delivery. Every commit after the topic was held notifies
    /// the connection, and the delivery pass queued here reads the position afresh, so nothing
    /// is missed before the subscription is in place.
    private func start(
        id: Int64?, topic: Topic, at position: Topic.Position, from: StartPosition, epoch: String?, window: Int,
        stored: SubscriptionRecord?, clientID: String?
    ) {
        let name = topic.name
        let subscribed: SubscriptionRecord? = state.withLock { state in
            // Closed meanwhile: `closed()` has released its topics already.
            guard state.phase != .closed else { return nil }
            let start = SubscriptionStart(from: from, epoch: epoch, stored: stored, position: position)
            state.generations += 1
            state.subscriptions[name] = Subscription(
                topic: topic, epoch: position.epoch, ackFloor: start.next - 1, window: window, next: start.next,
                durable: clientID != nil, generation: state.generations)
            state.queue(ServerFrame.subscribed(id: id, topic: name, epoch: position.epoch, head: position.head, from: start.next))
            if let stale = start.resetFrom {
                state.queue(ServerFrame.reset(topic: name, oldEpoch: stale, epoch: position.epoch))
            }
            if let gap = start.gap {
                state.queue(ServerFrame.gap(topic: name, from: gap.lowerBound, to: gap.upperBound))
                broker.metrics.sentGap()
            }
            state.ready.insert(name)
            return SubscriptionRecord(
                clientID: clientID ?? "", topic: name, epoch: position.epoch, ackFloor: start.next - 1, window: window)
        }
        guard let subscribed else {
            broker.removeSubscriber(self, from: [topic])
            return
        }
        if clientID != nil { broker.putDurableSubscription(subscribed) }
        notify(state.withLock { $0.wake() })
    }

    private func ack(topic name: String, version: UInt64) {
        let outcome: Result<SubscriptionRecord?, ProtocolError> = state.withLock { state in
            guard var subscription = state.subscriptions[name] else {
                return .failure(ProtocolError(.notSubscribed, "not subscribed to \(name)"))
            }
            guard version < subscription.next else {
                return .failure(ProtocolError(.badAck, "version \(version) of \(name) was not delivered"))
            }
            guard version > subscription.ackFloor else { return .success(nil) }
            subscription.ackFloor = version
            state.subscriptions[name] = subscription
            state.ready.insert(name)
            guard subscription.durable, let clientID = state.clientID else { return .success(nil) }
            return .success(
                SubscriptionRecord(
                    clientID: clientID, topic: name, epoch: subscription.epoch, ackFloor: version, window: subscription.window))
        }
        switch outcome {
        case .success(let record):
            broker.metrics.acked()
            if let record { broker.recordAck(record, from: self) }
            notify(state.withLock { $0.wake() })
        case .failure(let error):
            reply(id: nil, error)
        }
    }

    private func unsubscribe(id: Int64?, topic name: String) {
        let removed = state.withLock { state in
            state.subscriptions.removeValue(forKey: name).map { ($0, state.clientID) }
        }
        guard let (subscription, clientID) = removed else {
            reply(id: id, ProtocolError(.notSubscribed, "not subscribed to \(name)"))
            return
        }
        broker.removeSubscriber(self, from: [subscription.topic])
        if subscription.durable, let clientID { broker.removeDurableSubscription(clientID: clientID, topic: name) }
        send(ServerFrame.unsubscribed(id: id, topic: name))
    }

    private func publish(_ publishes: [(id: Int64?, request: PublishRequest)], at now: UInt64) {
        let (admitted, refused, wake) = state.withLock { state in
            guard state.rate != nil else {
                state.pendingPublishes += publishes.count
                return (publishes, 0, false)
            }
            var admitted: [(id: Int64?, request: PublishRequest)] = []
            admitted.reserveCapacity(publishes.count)
            var refused = 0
            for publish in publishes {
                let verdict = state.rate?.admit(at: now) ?? .allowed
                if verdict == .allowed {
                    admitted.append(publish)
                    continue
                }
                // Over the rate: answered `rate_limited` and not stored; once a 4029 close is
                // decided, later ones are dropped unanswered.
                guard state.closing == nil else { continue }
                refused += 1
                state.queue(ServerFrame.error(id: publish.id, .overPublishRate(broker.configuration.limits)))
                // A 4013 the queued error just decided stands.
                if verdict == .exceeded, state.closing == nil { state.closing = (.rateLimited, "publishing over the rate limit") }
            }
            state.pendingPublishes += admitted.count
            return (admitted, refused, refused > 0 && state.wake())
        }
        if refused > 0 { broker.metrics.rejected(by: .publishRate, count: refused) }
        notify(wake)
        guard !admitted.isEmpty else { return }
        broker.publishEach(admitted.map(\.request)) { [self] results in
            var frames: [Frame] = []
            frames.reserveCapacity(results.count)
            for ((id, _), result) in zip(admitted, results) {
                switch result {
                case .success(let outcome):
                    frames.append(ServerFrame.published(id: id, topic: outcome.topic, version: outcome.version, duplicate: outcome.duplicate))
                case .failure(let error):
                    frames.append(ServerFrame.error(id: id, error))
                }
            }
            // The frames wake the transport, which also resumes reading if it had paused.
            notify(
                state.withLock { state in
                    state.pendingPublishes -= admitted.count
                    for frame in frames { state.queue(frame) }
                    return state.wake()
                })
        }
    }

    // MARK: - Notifications from the broker

    /// A commit changed `topic`: there may be something to deliver.
    func topicChanged(_ topic: String) {
        notify(
            state.withLock { state in
                guard state.subscriptions[topic] != nil else { return false }
                state.ready.insert(topic)
                return state.wake()
            })
    }

    // MARK: - Outbound

    /// The next frames to write, or nil when there is nothing now (`onWork` will say when there
    /// is). Returns `.close` once, after the last frames; then the transport stops calling.
    public func takeOutbound() -> Outbound? {
        while true {
            let (frames, reads, floors, close, delivered) = state.withLock { state in
                state.workPending = false
                defer { state.deliveredUnreported = 0 }
                defer { state.outboxBytes = 0 }
                if let closing = state.closing {
                    defer { state.outbox.removeAll() }
                    return (state.outbox, [Read](), [SubscriptionRecord](), Optional(closing), 0)
                }
                var reads: [Read] = []
                let floors = collectDeliveries(&state, reads: &reads)
                defer { state.outbox.removeAll(keepingCapacity: true) }
                return (state.outbox, reads, floors, nil, state.deliveredUnreported)
            }
            for record in floors { broker.recordAck(record, from: self) }
            if delivered > 0 { broker.delivered(delivered) }
            if let close {
                if !frames.isEmpty { return .frames(frames) }
                broker.metrics.disconnected(close.code)
                return .close(close.code, reason: close.reason)
            }
            for read in reads { perform(read) }
            if !frames.isEmpty { return .frames(frames) }
            if reads.isEmpty { return nil }
        }
    }

    /// The 4013 close, once decided, for a transport whose socket takes nothing now: the frames
    /// queued before it are dropped (the client is not reading them). Nil otherwise: other closes
    /// wait for the socket, so their last frames go out first.
    public func takeClose() -> Outbound? {
        let closing = state.withLock { state -> (code: CloseCode, reason: String)? in
            guard let closing = state.closing, closing.code == .slowConsumer else { return nil }
            state.workPending = false
            state.outbox.removeAll()
            state.outboxBytes = 0
            return closing
        }
        guard let closing else { return nil }
        broker.metrics.disconnected(closing.code)
        return .close(closing.code, reason: closing.reason)
    }

    /// Moves every ready subscription forward as far as its window allows, from the topic cache,
    /// or queues a store read when the range is older than the cache. Returns the durable floors
    /// that a gap or reset moved, for the caller to record outside the lock.
    private func collectDeliveries(_ state: inout State, reads: inout [Read]) -> [SubscriptionRecord] {
        guard state.phase == .ready else { return [] }
        var floorsChanged: [SubscriptionRecord] = []
        for name in state.ready {
            state.ready.remove(name)
            guard var subscription = state.subscriptions[name], !subscription.reading else { continue }
            let position = subscription.topic.position
            if subscription.epoch != position.epoch {
                state.outbox.append(ServerFrame.reset(topic: name, oldEpoch: subscription.epoch, epoch: position.epoch))
                subscription.epoch = position.epoch
                subscription.next = position.first
                subscription.ackFloor = position.first - 1
                if subscription.durable { floorsChanged.append(record(of: subscription, name, state.clientID)) }
            }
            // A gap is reported when the window has room for what follows it, as a message would be.
            if subscription.next < position.first, subscription.next <= subscription.ackFloor + UInt64(subscription.window) {
                state.outbox.append(ServerFrame.gap(topic: name, from: subscription.next, to: position.first - 1))
                broker.metrics.sentGap()
                subscription.next = position.first
                // The missing versions can never be acked, so they must not hold the window.
                if subscription.ackFloor < position.first - 1 {
                    subscription.ackFloor = position.first - 1
                    if subscription.durable { floorsChanged.append(record(of: subscription, name, state.clientID)) }
                }
            }
            let limit = min(position.head, subscription.ackFloor + UInt64(subscription.window))
            if subscription.next <= limit {
                if let frames = subscription.topic.cachedFrames(from: subscription.next, through: limit, epoch: subscription.epoch) {
                    state.outbox.append(contentsOf: frames)
                    state.deliveredUnreported += frames.count
                    subscription.next = limit + 1
                } else if let storeID = position.storeID {
                    subscription.reading = true
                    reads.append(
                        Read(
                            topic: name, generation: subscription.generation, epoch: subscription.epoch, storeID: storeID,
                            from: subscription.next, through: min(limit, subscription.next + UInt64(Self.readPage) - 1)))
                }
            }
            state.subscriptions[name] = subscription
        }
        return floorsChanged
    }

    private func record(of subscription: Subscription, _ topic: String, _ clientID: String?) -> SubscriptionRecord {
        SubscriptionRecord(
            clientID: clientID ?? "", topic: topic, epoch: subscription.epoch, ackFloor: subscription.ackFloor,
            window: subscription.window)
    }

    /// Reads a page of older messages and queues the contiguous run that starts where the
    /// subscription stands; anything else (replaced subscription, retention) is re-evaluated.
    /// Inline when the store's reads never wait (then the caller's loop takes the result), else
    /// on a read thread that wakes the transport when the page is in.
    private func perform(_ read: Read) {
        let reader = broker.reader
        reader.read({ store throws(StoreError) in
            try store.messages(topicID: read.storeID, after: read.from - 1, limit: Int(read.through - read.from + 1))
        }) { [self] result in
            // Inline, the caller's loop goes on to take what the read queued.
            notify(completeRead(read, result, wake: !reader.isInline))
        }
    }

    /// Queues what a read found; true when the transport must be woken (only if `wake`).
    private func completeRead(_ read: Read, _ result: Result<[StoredMessage], StoreError>, wake: Bool) -> Bool {
        let stored: [StoredMessage]
        switch result {
        case .success(let messages):
            stored = messages
        case .failure(let error):
            // Retrying here would spin. The client is told and closed; it reconnects with
            // backoff and resumes from its ack floor, which nothing moved.
            broker.metrics.storeFailed(
                .read, error, ["ferry.topic": "\(read.topic)", "ferry.from": "\(read.from)", "ferry.through": "\(read.through)"])
            let failure = ProtocolError(.unavailable, "messages \(read.from)...\(read.through) of \(read.topic) cannot be read: \(error)")
            return state.withLock { state in
                state.queue(ServerFrame.error(id: nil, failure))
                if state.closing == nil { state.closing = (.internalError, failure.message) }
                return wake && state.wake()
            }
        }
        return state.withLock { state in
            guard var subscription = state.subscriptions[read.topic], subscription.generation == read.generation else { return false }
            subscription.reading = false
            state.ready.insert(read.topic)
            if subscription.epoch == read.epoch {
                for message in stored where message.version == subscription.next {
                    state.outbox.append(Broker.encode(message, topic: read.topic))
                    state.deliveredUnreported += 1
                    subscription.next += 1
                }
            }
            state.subscriptions[read.topic] = subscription
            return wake && state.wake()
        }
    }

    // MARK: - End

    /// The transport is gone: release the session and the topic subscriptions.
    public func closed() {
        let (subscriptions, clientID) = state.withLock { state in
            state.phase = .closed
            if state.closing == nil { state.closing = (.normal, "closed") }
            defer { state.subscriptions.removeAll() }
            return (Array(state.subscriptions.values), state.clientID)
        }
        broker.removeSubscriber(self, from: subscriptions.map(\.topic))
        let sent = subscriptions.map { ($0.topic.name, SentPosition(epoch: $0.epoch, version: $0.next - 1)) }
        broker.detach(self, clientID: clientID, sentThrough: Dictionary(sent) { $1 })
    }
}
