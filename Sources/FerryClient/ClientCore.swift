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
    private var saved: ClientStore.State
    private var saveScheduled = false
    let logger = Logger(label: "ferry.client")

    private var machine: ConnectionStateMachine
    private var random: Jitter
    /// Frames for the current connection's writer; nil while disconnected.
    private var sender: AsyncStream<[UInt8]>.Continuation?
    /// The current attempt's phase and deadlines.
    var watch: AttemptWatch
    /// The current attempt, to be given up by `close()`.
    var attempt: Task<AttemptEnd, Never>?
    /// The watchdog's sleep, cut short when the phase changes.
    var nap: Task<Void, Never>?
    let dialer: Result<WebSocketDialer, any Error>
    private var nextRequestID: Int64 = 1
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

    private struct Topic {
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

    private var topics: [String: Topic] = [:]

    /// A pattern subscription: its topics' positions are entries of `topics`.
    private struct Pattern {
        var continuation: AsyncThrowingStream<FerryMessage, any Error>.Continuation?
        var start: StartPosition
        var window: Int?
        /// Subscribed on the current connection.
        var live = false
    }

    private var patterns: [String: Pattern] = [:]

    private var outbox: Outbox
    /// Callers waiting for their publish's version, by msg_id.
    private var waiters: [String: [CheckedContinuation<UInt64, any Error>]] = [:]
    /// Publish request ids of the current connection → msg_id.
    private var inFlight: [Int64: String] = [:]
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

    // MARK: - Frames from the broker

    func received(_ text: [UInt8]) {
        heard()
        let frame: BrokerFrame
        do {
            frame = try BrokerFrame.decode(text)
        } catch {
            logger.warning("undecodable frame from the broker", metadata: ["error": "\(error)"])
            return
        }
        switch frame {
        case .welcome(let welcome): welcomed(welcome)
        case .subscribed(_, let name, let epoch, _, let from, let pattern):
            if let pattern { adopt(name, pattern: pattern, epoch: epoch) }
            topics[name]?.epoch = epoch
            topics[name]?.live = true
            topics[name]?.ackSent = from - 1
            rememberEpoch(name)
        case .patternSubscribed(_, let pattern, _):
            patterns[pattern]?.live = true
        case .message(let message): deliver(message)
        case .published(let id, _, let version, _): confirm(requestID: id, with: .success(version))
        case .unsubscribed: break
        case .gap(let name, let from, let to):
            announce(.gap(topic: name, from: from, to: to))
        case .reset(let name, let oldEpoch, let epoch):
            topics[name]?.epoch = epoch
            topics[name]?.delivered = 0
            topics[name]?.acked = 0
            topics[name]?.ackSent = 0
            saved.topics[name] = ClientStore.TopicPosition(epoch: epoch, acked: 0)
            scheduleSave()
            announce(.reset(topic: name, oldEpoch: oldEpoch, epoch: epoch))
        case .error(let id, let error):
            if let id, inFlight[id] != nil {
                confirm(requestID: id, with: .failure(FerryClientError.rejected(error)))
            } else {
                logger.warning("broker error", metadata: ["ferry.code": "\(error.code.rawValue)", "ferry.message": "\(error.message)"])
            }
        case .pong: break
        }
    }

    private func welcomed(_ welcome: BrokerFrame.Welcome) {
        saved.clientID = welcome.clientID ?? saved.clientID
        saved.resumeToken = welcome.resumeToken
        scheduleSave()
        watch.welcomed(heartbeat: .milliseconds(Int64(max(0.1, welcome.heartbeatSeconds) * 1000)), at: clock.now())
        nap?.cancel()
        machine.connected(at: clock.now())
        publishState()
        for pattern in welcome.patterns { patterns[pattern]?.live = true }
        for restored in welcome.subscriptions {
            if let pattern = restored.pattern { adopt(restored.topic, pattern: pattern, epoch: restored.epoch) }
            guard var topic = topics[restored.topic] else { continue }
            topic.live = true
            topic.ackSent = restored.ackFloor
            if topic.epoch == nil { topic.epoch = restored.epoch }
            topics[restored.topic] = topic
        }
        for (name, topic) in topics where !topic.live && topic.continuation != nil {
            sendSubscribe(name)
        }
        for (name, pattern) in patterns where !pattern.live && pattern.continuation != nil {
            sendSubscribe(name)
        }
        for request in outbox.sendable { sendPublish(request) }
    }

    private func deliver(_ message: BrokerFrame.Message) {
        guard var topic = topics[message.topic] else { return }
        topic.received = max(topic.received, message.version)
        // A queue group's messages come in any order, each once per hand-out.
        if topic.group != nil { topic.delivered = 0 }
        if message.version > topic.delivered, let continuation = topic.continuation ?? topic.pattern.flatMap({ patterns[$0]?.continuation }) {
            topic.delivered = message.version
            let payload: Data
            let isJSON: Bool
            switch message.payload {
            case .json(let text): payload = Data(text); isJSON = true
            case .bytes(let bytes): payload = Data(bytes); isJSON = false
            }
            continuation.yield(
                FerryMessage(
                    topic: message.topic, version: message.version,
                    timestamp: Date(timeIntervalSince1970: Double(message.timestamp) / 1000), payload: payload, isJSON: isJSON,
                    headers: message.headers, events: topic.announced, epoch: topic.epoch, core: self))
            topic.announced = []
        }
        topics[message.topic] = topic
        flushAck(message.topic)
    }

    private func confirm(requestID: Int64?, with result: Result<UInt64, any Error>) {
        guard let requestID, let id = inFlight.removeValue(forKey: requestID) else { return }
        for waiter in waiters.removeValue(forKey: id) ?? [] { waiter.resume(with: result) }
        for request in outbox.remove(id) { sendPublish(request) }
    }

    // MARK: - Frames to the broker

    func send(_ frame: ClientFrame) {
        sender?.yield(frame.encode())
    }

    /// A topic the broker delivers through `pattern`: its position is kept like a subscribed
    /// topic's (from the session file when this process has seen it before).
    private func adopt(_ name: String, pattern: String, epoch: String) {
        guard patterns[pattern] != nil else { return }
        if topics[name] == nil {
            let position = saved.topics[name].flatMap { $0.epoch == epoch ? $0 : nil }
            topics[name] = Topic(start: .stored, window: nil, epoch: epoch, delivered: position?.acked ?? 0, acked: position?.acked ?? 0)
        }
        // A topic subscription of the application keeps its own sequence.
        if topics[name]?.continuation == nil { topics[name]?.pattern = pattern }
    }

    private func sendSubscribe(_ name: String) {
        if let pattern = patterns[name] {
            // Where the application stands in the pattern's topics wins, as for a topic.
            var positions: [String: TopicPosition] = [:]
            for (topic, entry) in topics where entry.pattern == name && entry.delivered > 0 {
                positions[topic] = TopicPosition(epoch: entry.epoch, version: entry.delivered)
            }
            send(.subscribe(id: nil, topic: name, from: pattern.start, epoch: nil, window: pattern.window, positions: positions))
            return
        }
        guard let topic = topics[name] else { return }
        if let group = topic.group {
            send(.subscribe(id: nil, topic: name, from: .stored, epoch: nil, window: topic.window, group: group))
            return
        }
        // Where the application stands wins over the broker's memory when this process has one.
        let from: StartPosition = topic.delivered > 0 ? .after(topic.delivered) : topic.start
        send(.subscribe(id: nil, topic: name, from: from, epoch: topic.delivered > 0 ? topic.epoch : nil, window: topic.window))
    }

    private func sendPublish(_ request: PublishRequest) {
        guard let id = request.messageID else { return }
        let requestID = nextRequestID
        nextRequestID += 1
        inFlight[requestID] = id
        send(.publish(id: requestID, request))
    }

    /// Sends the highest ack the broker can take: processed, and delivered on this connection.
    private func flushAck(_ name: String) {
        guard var topic = topics[name], topic.live, topic.group == nil else { return }
        let target = min(topic.acked, topic.received)
        guard target > topic.ackSent else { return }
        topic.ackSent = target
        topics[name] = topic
        send(.ack(topic: name, version: target))
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

    private func rememberEpoch(_ name: String) {
        guard let topic = topics[name] else { return }
        saved.topics[name] = ClientStore.TopicPosition(epoch: topic.epoch, acked: topic.acked)
        scheduleSave()
    }

    /// Writes the session file at most every 200 ms: a lost update means redelivery, not loss.
    private func scheduleSave() {
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

    private func publishState() {
        states.yield(machine.state)
    }

    /// A gap or reset: on the events stream now, and with the topic's next message.
    private func announce(_ event: FerryEvent) {
        topics[event.topic]?.announced.append(event)
        events.yield(event)
    }
}
