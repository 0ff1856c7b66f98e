import DequeModule
import FerryProtocol
import Foundation
import Logging
import Synchronization

/// The client's state and its connection loop. One actor, so every rule (dedup, acks, outbox,
/// resume) reads and writes one consistent state; frames leave through one ordered stream per
/// connection.
actor ClientCore {
    private let url: String
    let configuration: FerryClientConfiguration
    let clock: ClientClock
    private let store: ClientStore
    var saved: ClientStore.State
    private var saveScheduled = false
    let logger = Logger(label: "ferry.client")

    var machine: ConnectionStateMachine
    private var random: Jitter
    /// Frames for the current connection's writer; nil while disconnected.
    var sender: AsyncStream<[UInt8]>.Continuation?
    /// The current attempt's phase and deadlines.
    var watch: AttemptWatch
    /// The current attempt, to be given up by `close()`.
    var attempt: Task<AttemptEnd, Never>?
    /// The watchdog's sleep, cut short when the phase changes.
    var nap: Task<Void, Never>?
    let dialer: Result<WebSocketDialer, any Error>
    var nextRequestID: Int64 = 1
    private var backoffWaiter: CheckedContinuation<Void, Never>?

    private let states: Broadcast<ConnectionState>
    private let events: Broadcast<FerryEvent>

    struct NewSubscription {
        /// What to subscribe to and how.
        struct Target {
            let topic: String
            let start: StartPosition
            /// A queue group: the subscription is a share of a work queue.
            let group: String?
        }

        let target: Target
        let window: Int?
        let continuation: AsyncThrowingStream<FerryMessage, any Error>.Continuation

        var topic: String { target.topic }
        var start: StartPosition { target.start }
    }

    /// Subscriptions the application made that the actor has not taken yet. `FerryClient`
    /// queues them synchronously and the actor takes them before any other request, so a
    /// subscription is in effect before anything the application does after making it.
    private let newSubscriptions = Mutex<[NewSubscription]>([])

    struct Topic {
        var continuation: AsyncThrowingStream<FerryMessage, any Error>.Continuation?
        var start: StartPosition
        var window: Int?
        var epoch: String?
        /// Highest version handed to the application: later copies are duplicates.
        var delivered: UInt64
        /// Highest version the application processed.
        var acked: UInt64
        /// On the current connection: subscribed, highest version received, highest ack sent.
        var live = false
        var received: UInt64 = 0
        var ackSent: UInt64 = 0
        /// Gaps and resets announced since the last delivered message; they go with the next.
        var announced: [FerryEvent] = []
        /// The pattern subscription that delivers this topic (the broker says which).
        var pattern: String?
        /// The queue group this client is a member of in this topic: messages come in any order,
        /// each is acked on its own, and nothing is kept across reconnects (the broker keeps the work).
        var group: String?
    }

    var topics: [String: Topic] = [:]

    /// A pattern subscription: its topics' positions are entries of `topics`.
    struct Pattern {
        var continuation: AsyncThrowingStream<FerryMessage, any Error>.Continuation?
        var start: StartPosition
        var window: Int?
        /// Subscribed on the current connection.
        var live = false
    }

    var patterns: [String: Pattern] = [:]

    var outbox: Outbox
    /// Callers waiting for their publish's version, by msg_id.
    var waiters: [String: [CheckedContinuation<UInt64, any Error>]] = [:]
    /// Publish request ids of the current connection → msg_id.
    var inFlight: [Int64: String] = [:]
    /// Why the client cannot start (its outbox cannot be opened).
    private var startupError: FerryClientError?

    /// The configured generator as a concrete type, to pass `inout`.
    private struct Jitter: RandomNumberGenerator {
        var source: any RandomNumberGenerator
        mutating func next() -> UInt64 { source.next() }
    }

    init(
        url: String, clientID: String?, configuration: FerryClientConfiguration, states: Broadcast<ConnectionState>,
        events: Broadcast<FerryEvent>
    ) {
        self.url = url
        self.configuration = configuration
        self.states = states
        self.events = events
        clock = configuration.clock
        watch = AttemptWatch(
            timeouts: .init(connect: configuration.connectTimeout, handshake: configuration.handshakeTimeout, hello: configuration.helloTimeout),
            at: clock.now())
        dialer = Result { try WebSocketDialer(url: url, maxFrameSize: 1 << 26, connectTimeout: configuration.connectTimeout) }
        random = Jitter(source: configuration.makeRandom())
        store = ClientStore(directory: configuration.stateDirectory)
        saved = store.loadState()
        if let clientID, saved.clientID != clientID {
            // A different identity: positions and token of another session do not apply.
            saved = ClientStore.State(clientID: clientID)
        }
        machine = ConnectionStateMachine(
            backoff: configuration.backoff, stableAfter: configuration.stableConnection, renewsTokens: configuration.tokenProvider != nil)
        outbox = Outbox(limit: configuration.outboxLimit)
        if let directory = configuration.stateDirectory {
            do {
                outbox = try Outbox(directory: directory, limit: configuration.outboxLimit, residentLimit: configuration.outboxMemoryLimit)
            } catch {
                startupError = error
            }
        }
    }

    // MARK: - Application side

    var state: ConnectionState { machine.state }

    nonisolated func enqueue(_ subscription: NewSubscription) {
        newSubscriptions.withLock { $0.append(subscription) }
    }

    /// Registers the subscriptions queued by `enqueue`, in order.
    func takeNewSubscriptions() {
        let queued = newSubscriptions.withLock { queue in
            defer { queue = [] }
            return queue
        }
        for subscription in queued { subscribe(subscription) }
    }

    private func subscribe(_ subscription: NewSubscription) {
        if isFinished {
            subscription.continuation.finish(throwing: finishedError)
            return
        }
        let name = subscription.topic
        if TopicPattern.looksLikePattern(name) {
            patterns[name]?.continuation?.finish()
            let live = patterns[name]?.live ?? false
            patterns[name] = Pattern(continuation: subscription.continuation, start: subscription.start, window: subscription.window, live: live)
            if case .connected = machine.state { sendSubscribe(name) }
            return
        }
        let position = saved.topics[name]
        var topic =
            topics[name]
            ?? Topic(start: subscription.start, window: subscription.window, epoch: position?.epoch, delivered: position?.acked ?? 0, acked: position?.acked ?? 0)
        topics[name]?.continuation?.finish()
        topic.continuation = subscription.continuation
        topic.start = subscription.start
        topic.window = subscription.window
        topic.group = subscription.target.group
        topics[name] = topic
        if case .connected = machine.state { sendSubscribe(name) }
    }

    func publish(_ request: PublishRequest) async throws -> UInt64 {
        takeNewSubscriptions()
        if isFinished { throw finishedError }
        var request = request
        let id = request.messageID ?? UUID().uuidString
        request.messageID = id
        // The same msg_id again is the same message: one entry, every caller gets its version.
        if !outbox.contains(id), let resident = try outbox.append(request), case .connected = machine.state {
            sendPublish(resident)
        }
        return try await withCheckedThrowingContinuation { waiters[id, default: []].append($0) }
    }

    /// Acks `version` of `name` if it is of the topic's current `epoch`: a message handed out
    /// before a `reset` names a version of the old log, which the new one may reuse.
    func ack(topic name: String, version: UInt64, epoch: String?) {
        if let topic = topics[name], topic.group != nil {
            // One message, now: a member's acks are not cumulative. Unsent, it comes again later.
            if topic.live, topic.epoch == epoch { send(.ack(topic: name, version: version)) }
            return
        }
        guard var topic = topics[name], topic.epoch == epoch, version > topic.acked else { return }
        topic.acked = version
        topics[name] = topic
        saved.topics[name] = ClientStore.TopicPosition(epoch: topic.epoch, acked: version)
        scheduleSave()
        flushAck(name)
    }

    /// Cuts the backoff wait short (network back, app in foreground).
    func retryNow() {
        backoffWaiter?.resume()
        backoffWaiter = nil
    }

    func close() {
        takeNewSubscriptions()
        guard !isFinished else { return }
        machine.close()
        finish(with: .closed)
        // An open WebSocket gets a moment to send what is queued and its close frame; an attempt
        // still opening one is given up at once.
        guard let attempt else { return }
        if watch.phase == .hello || watch.phase == .connected {
            Task {
                try? await Task.sleep(for: .seconds(1))
                attempt.cancel()
            }
        } else {
            attempt.cancel()
        }
    }

    // MARK: - Connection loop

    func run() async {
        if let startupError {
            machine.fail(startupError)
            finish(with: startupError)
            return
        }
        var action = machine.start()
        while true {
            switch action {
            case .connect:
                publishState()
                let end = await connectOnce()
                connectionEnded()
                guard !isFinished else { return }
                if case .refused(let refusal) = end {
                    logger.info("upgrade refused", metadata: ["ferry.status": "\(refusal.status)", "ferry.code": "\(refusal.error.code.rawValue)"])
                }
                action = machine.attemptEnded(end, at: clock.now(), using: &random)
                publishState()
                if case .failed(let error) = machine.state {
                    finish(with: error)
                    return
                }
            case .wait(let delay):
                await waitForRetry(delay)
                guard !isFinished else { return }
                action = machine.retry()
            case .stop:
                return
            }
        }
    }

    func opened(_ sender: AsyncStream<[UInt8]>.Continuation) {
        self.sender = sender
        enter(.hello)
        if isFinished {
            sender.finish()
            return
        }
        send(.hello(clientID: saved.clientID, resumeToken: saved.resumeToken))
    }

    func heard() {
        watch.heard(at: clock.now())
    }

    private func connectionEnded() {
        sender?.finish()
        sender = nil
        inFlight.removeAll()
        for name in topics.keys {
            topics[name]?.live = false
            topics[name]?.received = 0
            topics[name]?.ackSent = 0
        }
        for name in patterns.keys { patterns[name]?.live = false }
    }

    private func waitForRetry(_ delay: Duration) async {
        let timer = Task { [weak self, clock] in
            try? await clock.sleep(delay)
            await self?.retryNow()
        }
        await withCheckedContinuation { backoffWaiter = $0 }
        timer.cancel()
    }

    // MARK: - Housekeeping

    var isFinished: Bool {
        switch machine.state {
        case .closed, .failed: true
        default: false
        }
    }

    private var finishedError: FerryClientError {
        if case .failed(let error) = machine.state { return error }
        return .closed
    }

    /// Ends everything the application waits on; unconfirmed publishes stay in the outbox on disk.
    private func finish(with error: FerryClientError) {
        publishState()
        sender?.finish()
        for waiter in waiters.values.joined() { waiter.resume(throwing: error) }
        waiters.removeAll()
        let continuations = topics.values.compactMap(\.continuation) + patterns.values.compactMap(\.continuation)
        for continuation in continuations {
            if case .closed = machine.state { continuation.finish() } else { continuation.finish(throwing: error) }
        }
        states.finish()
        events.finish()
        retryNow()
        store.save(saved)
    }

    func rememberEpoch(_ name: String) {
        guard let topic = topics[name] else { return }
        saved.topics[name] = ClientStore.TopicPosition(epoch: topic.epoch, acked: topic.acked)
        scheduleSave()
    }

    /// Writes the session file at most every 200 ms: a lost update means redelivery, not loss.
    func scheduleSave() {
        guard !saveScheduled, store.directory != nil else { return }
        saveScheduled = true
        Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(200))
            await self?.saveNow()
        }
    }

    private func saveNow() {
        saveScheduled = false
        store.save(saved)
    }

    func publishState() {
        states.yield(machine.state)
    }

    /// A gap or reset: on the events stream now, and with the topic's next message.
    func announce(_ event: FerryEvent) {
        topics[event.topic]?.announced.append(event)
        events.yield(event)
    }
}
