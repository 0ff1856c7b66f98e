import DequeModule
import FerryProtocol
import Foundation
import Logging
import NIOWebSocket
import WSClient

/// The client's state and its connection loop. One actor, so every rule (dedup, acks, outbox,
/// resume) reads and writes one consistent state; frames leave through one ordered stream per
/// connection.
actor ClientCore {
    private let url: String
    private let configuration: FerryClientConfiguration
    private let store: ClientStore
    private var saved: ClientStore.State
    private var saveScheduled = false
    private let logger = Logger(label: "ferry.client")

    private var machine: ConnectionStateMachine
    private var random = SystemRandomNumberGenerator()
    /// Frames for the current connection's writer; nil while disconnected.
    private var sender: AsyncStream<[UInt8]>.Continuation?
    private var lastHeard = ContinuousClock.now
    /// The broker's heartbeat once `welcome` says it; before that, how long a hello may take.
    private var heartbeat: Duration
    private var nextRequestID: Int64 = 1
    private var backoffWaiter: CheckedContinuation<Void, Never>?

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
    }

    private var topics: [String: Topic] = [:]

    private struct Pending {
        var request: PublishRequest
        var waiters: [CheckedContinuation<UInt64, any Error>]
    }

    /// Unconfirmed publishes by msg_id, and their order.
    private var outbox: [String: Pending] = [:]
    private var outboxOrder: Deque<String> = []
    /// Publish request ids of the current connection → msg_id.
    private var inFlight: [Int64: String] = [:]
    private var doneSinceCompaction = 0

    private var stateObservers: [UUID: AsyncStream<ConnectionState>.Continuation] = [:]
    private var eventObservers: [UUID: AsyncStream<FerryEvent>.Continuation] = [:]

    init(url: String, clientID: String?, configuration: FerryClientConfiguration) {
        self.url = url
        self.configuration = configuration
        store = ClientStore(directory: configuration.stateDirectory)
        saved = store.loadState()
        if let clientID, saved.clientID != clientID {
            // A different identity: positions and token of another session do not apply.
            saved = ClientStore.State(clientID: clientID)
        }
        machine = ConnectionStateMachine(backoff: configuration.backoff, stableAfter: configuration.stableConnection)
        heartbeat = Self.heartbeat(before: configuration.helloTimeout)
        for request in store.loadOutbox() {
            guard let id = request.messageID else { continue }
            outbox[id] = Pending(request: request, waiters: [])
            outboxOrder.append(id)
        }
    }

    // MARK: - Application side

    var state: ConnectionState { machine.state }

    func observeStates() -> AsyncStream<ConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: ConnectionState.self)
        let id = UUID()
        stateObservers[id] = continuation
        continuation.yield(machine.state)
        continuation.onTermination = { [weak self] _ in Task { await self?.removeStateObserver(id) } }
        return stream
    }

    func observeEvents() -> AsyncStream<FerryEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: FerryEvent.self)
        let id = UUID()
        eventObservers[id] = continuation
        continuation.onTermination = { [weak self] _ in Task { await self?.removeEventObserver(id) } }
        return stream
    }

    private func removeStateObserver(_ id: UUID) { stateObservers[id] = nil }
    private func removeEventObserver(_ id: UUID) { eventObservers[id] = nil }

    func subscribe(
        _ name: String, from start: StartPosition, window: Int?, continuation: AsyncThrowingStream<FerryMessage, any Error>.Continuation
    ) {
        if isFinished {
            continuation.finish(throwing: finishedError)
            return
        }
        let position = saved.topics[name]
        var topic = topics[name] ?? Topic(start: start, window: window, epoch: position?.epoch, delivered: position?.acked ?? 0, acked: position?.acked ?? 0)
        topics[name]?.continuation?.finish()
        topic.continuation = continuation
        topic.start = start
        topic.window = window
        topics[name] = topic
        if case .connected = machine.state { sendSubscribe(name) }
    }

    func publish(_ request: PublishRequest) async throws -> UInt64 {
        if isFinished { throw finishedError }
        guard outbox.count < configuration.outboxLimit else { throw FerryClientError.outboxFull(limit: configuration.outboxLimit) }
        var request = request
        let id = request.messageID ?? UUID().uuidString
        request.messageID = id
        return try await withCheckedThrowingContinuation { continuation in
            if var pending = outbox[id] {
                // The same msg_id again: it is one message; both callers get its version.
                pending.waiters.append(continuation)
                outbox[id] = pending
                return
            }
            store.appendToOutbox(request)
            outbox[id] = Pending(request: request, waiters: [continuation])
            outboxOrder.append(id)
            if case .connected = machine.state { sendPublish(id) }
        }
    }

    func ack(topic name: String, version: UInt64) {
        guard var topic = topics[name], version > topic.acked else { return }
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
        guard !isFinished else { return }
        machine.close()
        finish(with: .closed)
    }

    // MARK: - Connection loop

    func run() async {
        var action = machine.start()
        publishState()
        while true {
            switch action {
            case .connect:
                publishState()
                let (code, reason) = await connectOnce()
                connectionEnded()
                guard !isFinished else { return }
                action = machine.connectionLost(closeCode: code, reason: reason, at: .now, using: &random)
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

    /// One WebSocket, from connect to close. Returns the broker's close code and reason, if any.
    private func connectOnce() async -> (UInt16?, String) {
        var webSocket = WebSocketClientConfiguration()
        webSocket.maxFrameSize = 1 << 26
        webSocket.closeTimeout = .seconds(1)
        webSocket.autoPing = .disabled
        do {
            let closeFrame = try await WebSocketClient.connect(url: url, configuration: webSocket, logger: logger) { inbound, outbound, _ in
                try await self.serve(inbound: inbound, outbound: outbound)
            }
            guard let closeFrame else { return (nil, "") }
            return (UInt16(webSocketErrorCode: closeFrame.closeCode), closeFrame.reason ?? "")
        } catch {
            logger.debug("connection ended", metadata: ["error": "\(error)"])
            return (nil, "\(error)")
        }
    }

    private struct Silent: Error {}

    /// Runs a connection: an ordered writer, the reader, and the silence watchdog.
    private nonisolated func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
        let (frames, sender) = AsyncStream.makeStream(of: [UInt8].self)
        await opened(sender)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await frame in frames {
                    try await outbound.write(.text(String(decoding: frame, as: UTF8.self)))
                }
            }
            group.addTask {
                for try await message in inbound.messages(maxSize: .max) {
                    if case .text(let text) = message { await self.received(Array(text.utf8)) }
                }
            }
            group.addTask {
                while true {
                    let interval = await self.heartbeat
                    try await Task.sleep(for: interval / 2)
                    guard await self.checkSilence() else { throw Silent() }
                }
            }
            _ = try await group.next()
            group.cancelAll()
        }
    }

    private func opened(_ sender: AsyncStream<[UInt8]>.Continuation) {
        self.sender = sender
        lastHeard = .now
        heartbeat = Self.heartbeat(before: configuration.helloTimeout)
        if isFinished {
            sender.finish()
            return
        }
        send(.hello(clientID: saved.clientID, resumeToken: saved.resumeToken))
    }

    /// Until `welcome` gives the broker's heartbeat, silence is judged so that a hello
    /// unanswered for `helloTimeout` counts as a dead connection.
    private static func heartbeat(before helloTimeout: Duration) -> Duration {
        helloTimeout * 2 / 5
    }

    /// False after 2.5 heartbeats of silence; after one heartbeat of silence, asks for a pong.
    private func checkSilence() -> Bool {
        let silence = ContinuousClock.now - lastHeard
        if silence >= heartbeat * 5 / 2 {
            logger.info("connection silent; reconnecting", metadata: ["ferry.silence": "\(silence)"])
            return false
        }
        if silence >= heartbeat, case .connected = machine.state { send(.ping(id: nil)) }
        return true
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
    }

    private func waitForRetry(_ delay: Duration) async {
        let timer = Task { [weak self] in
            try? await Task.sleep(for: delay)
            await self?.retryNow()
        }
        await withCheckedContinuation { backoffWaiter = $0 }
        timer.cancel()
    }

    // MARK: - Frames from the broker

    private func received(_ text: [UInt8]) {
        lastHeard = .now
        let frame: BrokerFrame
        do {
            frame = try BrokerFrame.decode(text)
        } catch {
            logger.warning("undecodable frame from the broker", metadata: ["error": "\(error)"])
            return
        }
        switch frame {
        case .welcome(let welcome): welcomed(welcome)
        case .subscribed(_, let name, let epoch, _, let from):
            topics[name]?.epoch = epoch
            topics[name]?.live = true
            topics[name]?.ackSent = from - 1
            rememberEpoch(name)
        case .message(let message): deliver(message)
        case .published(let id, _, let version, _): confirm(requestID: id, with: .success(version))
        case .unsubscribed: break
        case .gap(let name, let from, let to):
            emit(.gap(topic: name, from: from, to: to))
        case .reset(let name, let oldEpoch, let epoch):
            topics[name]?.epoch = epoch
            topics[name]?.delivered = 0
            topics[name]?.acked = 0
            topics[name]?.ackSent = 0
            saved.topics[name] = ClientStore.TopicPosition(epoch: epoch, acked: 0)
            scheduleSave()
            emit(.reset(topic: name, oldEpoch: oldEpoch, epoch: epoch))
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
        heartbeat = .milliseconds(Int64(max(0.1, welcome.heartbeatSeconds) * 1000))
        machine.connected(at: .now)
        publishState()
        for restored in welcome.subscriptions {
            guard var topic = topics[restored.topic] else { continue }
            topic.live = true
            topic.ackSent = restored.ackFloor
            if topic.epoch == nil { topic.epoch = restored.epoch }
            topics[restored.topic] = topic
        }
        for (name, topic) in topics where !topic.live && topic.continuation != nil {
            sendSubscribe(name)
        }
        for id in outboxOrder where outbox[id] != nil {
            sendPublish(id)
        }
    }

    private func deliver(_ message: BrokerFrame.Message) {
        guard var topic = topics[message.topic] else { return }
        topic.received = max(topic.received, message.version)
        if message.version > topic.delivered, let continuation = topic.continuation {
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
                    headers: message.headers, core: self))
        }
        topics[message.topic] = topic
        flushAck(message.topic)
    }

    private func confirm(requestID: Int64?, with result: Result<UInt64, any Error>) {
        guard let requestID, let id = inFlight.removeValue(forKey: requestID), let pending = outbox.removeValue(forKey: id) else { return }
        for waiter in pending.waiters { waiter.resume(with: result) }
        store.markDone(id)
        doneSinceCompaction += 1
        while let first = outboxOrder.first, outbox[first] == nil { outboxOrder.removeFirst() }
        if doneSinceCompaction >= 1024 {
            doneSinceCompaction = 0
            store.rewriteOutbox(outboxOrder.compactMap { outbox[$0]?.request })
        }
    }

    // MARK: - Frames to the broker

    private func send(_ frame: ClientFrame) {
        sender?.yield(frame.encode())
    }

    private func sendSubscribe(_ name: String) {
        guard let topic = topics[name] else { return }
        // Where the application stands wins over the broker's memory when this process has one.
        let from: StartPosition = topic.delivered > 0 ? .after(topic.delivered) : topic.start
        send(.subscribe(id: nil, topic: name, from: from, epoch: topic.delivered > 0 ? topic.epoch : nil, window: topic.window))
    }

    private func sendPublish(_ id: String) {
        guard let pending = outbox[id] else { return }
        let requestID = nextRequestID
        nextRequestID += 1
        inFlight[requestID] = id
        send(.publish(id: requestID, pending.request))
    }

    /// Sends the highest ack the broker can take: processed, and delivered on this connection.
    private func flushAck(_ name: String) {
        guard var topic = topics[name], topic.live else { return }
        let target = min(topic.acked, topic.received)
        guard target > topic.ackSent else { return }
        topic.ackSent = target
        topics[name] = topic
        send(.ack(topic: name, version: target))
    }

    // MARK: - Housekeeping

    private var isFinished: Bool {
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
        for pending in outbox.values {
            for waiter in pending.waiters { waiter.resume(throwing: error) }
        }
        for id in outbox.keys { outbox[id]?.waiters = [] }
        for topic in topics.values {
            if case .closed = machine.state { topic.continuation?.finish() } else { topic.continuation?.finish(throwing: error) }
        }
        for observer in stateObservers.values { observer.finish() }
        for observer in eventObservers.values { observer.finish() }
        stateObservers.removeAll()
        eventObservers.removeAll()
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
        for observer in stateObservers.values { observer.yield(machine.state) }
    }

    private func emit(_ event: FerryEvent) {
        for observer in eventObservers.values { observer.yield(event) }
    }
}
