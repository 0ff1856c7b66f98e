import FerryProtocol
import FerryStore
import Foundation
import Logging
import Metrics
import Synchronization

/// The broker: topics, durable sessions and the group-committing writer, with no transport.
///
/// Transports create a ``Connection`` per WebSocket and call ``publish(_:)`` for HTTP. State that
/// must survive a restart lives in the store; this class mirrors it in memory. Lock order is
/// broker → connection → topic; a connection never calls into the broker while holding its lock.
///
/// ```swift
/// let store = try LMDBMessageStore(configuration: .init(path: "./ferry-data"))
/// let broker = try Broker(store: store, configuration: BrokerConfiguration())
/// broker.start()
/// let results = try await broker.publish([PublishRequest(topic: "orders", payload: .json(Array("{}".utf8)))]).get()
/// ```
public final class Broker: Sendable {
    /// The version `ferryd` reports.
    public static let version = "0.1.0"

    public let configuration: BrokerConfiguration
    let store: any MessageStore
    /// Runs the store's reads where they may wait.
    let reader: StoreReader
    let committer: Committer
    let tokens: ResumeTokens
    /// The per-topic configuration, as last read from the store.
    let topicConfigs: TopicConfigMemory
    let state: Mutex<State>
    let startedAt: Timestamp
    let logger = Logger(label: "ferry.broker")
    let metrics = BrokerMetrics()

    struct DurableSession {
        var record: SessionRecord
        var subscriptions: [String: SubscriptionRecord]
        var owner: Connection?
        /// In memory only: what the last hello did, for operators.
        var lastResume: ResumeInfo?
        /// In memory only: what the last connection had sent, to count redeliveries on resume.
        var sentThrough: [String: SentPosition] = [:]
        /// The store's count of claims when this broker took the session (``SessionClaim/generation``).
        var generation: UInt64 = 0
    }

    struct State {
        var topics: [String: Topic] = [:]
        var sessions: [String: DurableSession] = [:]
        /// Ack floors and sessions changed since the last flush, persisted lazily (PROTOCOL.md guarantee 3).
        var dirtySubscriptions: [String: SubscriptionRecord] = [:]
        var dirtySessions: [String: SessionRecord] = [:]
        /// Deletes whose commit failed, retried with the next flush of deferred writes.
        var failedDeletes: [StoreOperation] = []
        /// Hellos claiming a session, and those waiting for another broker to let it go.
        var handovers = SessionHandovers()
        var waitingHellos: [UInt64: WaitingHello] = [:]
        var lastFlush: Timestamp = 0
        var lastSweep: Timestamp = 0
        var lastSessionSweep: Timestamp = 0
        /// The last commit refused publishes for want of space (logged when this changes).
        var refusingPublishes = false
        /// The patterns connections here subscribe to, to hand them topics as they appear.
        var patterns = PatternIndex()
        /// Queue groups with a member here, by topic and name, and the trims their floors ask for.
        var groups: [String: SharedQueueGroup] = [:]
        var groupTrims: [String: (epoch: String, through: UInt64)] = [:]
        /// Topics with a read of another broker's change queued and not started (``topicsChanged(_:)``).
        var unreadChanges: Set<ObjectIdentifier> = []
        /// Leases of groups this broker no longer serves that the store did not take back yet.
        var failedReleases: [(topic: String, group: String)] = []
        var connections = 0
        var published: UInt64 = 0
        var delivered: UInt64 = 0
    }

    /// What a `hello` resolved to.
    struct Attachment {
        var clientID: String?
        var resumeToken: String?
        var resumed: Bool
        var subscriptions: [SubscriptionRecord]

        /// The topic subscriptions, those patterns deliver included.
        var topics: [SubscriptionRecord] { subscriptions.filter { !$0.isPattern } }
        /// The pattern subscriptions' own records.
        var patterns: [SubscriptionRecord] { subscriptions.filter(\.isPattern) }
    }

    /// Opens the store. Call ``start()`` before use.
    public init(store: any MessageStore, configuration: BrokerConfiguration) throws(StoreError) {
        self.store = store
        self.configuration = configuration
        reader = StoreReader(store: store)
        // Topics and sessions are read when first named, so a start costs the same whatever is stored.
        tokens = ResumeTokens(secret: try store.open())
        topicConfigs = TopicConfigMemory(try store.topicConfigs())
        var state = State()
        startedAt = configuration.now()
        state.lastSweep = startedAt
        state.lastSessionSweep = startedAt
        self.state = Mutex(state)
        committer = Committer(
            store: store, now: configuration.now, idleWakeupMilliseconds: Int(max(1, configuration.ackFlushInterval)))
    }

    /// Starts the committer thread.
    public func start() {
        committer.start(
            hooks: Committer.Hooks(
                maintenance: { [self] now, busy in maintenance(now: now, busy: busy) },
                committed: { [self] operations, result in committed(operations, result) },
                failed: { [self] operations, error in commitFailed(operations, error) }
            ))
        store.watch { [self] change in changed(change) }
    }

    /// Commits everything queued and pending acks, then stops the writer.
    public func shutdown() async {
        await committer.stop()
        reader.stop()
    }

    /// A new connection, to be fed by a transport.
    /// - Parameters:
    ///   - principal: Who the transport authenticated; the connection enforces its client id,
    ///     topic permissions and expiry.
    ///   - onWork: Called (from any thread) when the connection has output for
    ///     ``Connection/takeOutbound()`` or may accept input again.
    public func makeConnection(principal: Principal = .unrestricted, onWork: @escaping @Sendable () -> Void) -> Connection {
        state.withLock { $0.connections += 1 }
        metrics.connections.increment()
        return Connection(broker: self, principal: principal, onWork: onWork)
    }

    /// Counts `count` requests (or publishes) the transport refused for `limit`
    /// (`ferry_limit_rejections_total`).
    public func rejected(by limit: LimitKind, count: Int = 1) {
        metrics.rejected(by: limit, count: count)
    }

    // MARK: - Topics

    /// The topic `name`, registered now if the broker does not know it. Only the paths that then
    /// hold it (a subscriber, a creating commit) or that mirror a stored log may call this; others
    /// use ``existingTopic(_:)``, so a name nothing holds is never kept.
    func topic(named name: String, in state: inout State) -> Topic {
        if let topic = state.topics[name] { return topic }
        let topic = Topic(name: name, record: nil)
        state.topics[name] = topic
        return topic
    }

    /// The topic `name` if the broker knows it, without registering it (admin input may name anything).
    func existingTopic(_ name: String) -> Topic? {
        state.withLock { $0.topics[name] }
    }

    /// Adds `connection` as a subscriber of each topic in `names` and hands `completion` the
    /// topics with their positions at that instant. A topic the broker holds no log of is read
    /// from the store first (another broker, or an earlier run, may have made it); `completion`
    /// may run inline. The topics are found and held under the broker's lock, so none can be
    /// forgotten in between.
    func addSubscriber(
        _ connection: Connection, to names: [String],
        completion: @escaping @Sendable (Result<[(topic: Topic, position: Topic.Position)], ProtocolError>) -> Void
    ) {
        let unknown = state.withLock { state in names.filter { state.topics[$0]?.record == nil } }
        let hold: @Sendable ([String: TopicRecord]) -> [(topic: Topic, position: Topic.Position)] = { [self] stored in
            state.withLock { state in
                names.map { name in
                    let topic = topic(named: name, in: &state)
                    if let record = stored[name] { topic.adopt(record) }
                    return (topic, topic.addSubscriber(connection))
                }
            }
        }
        guard !unknown.isEmpty else {
            completion(.success(hold([:])))
            return
        }
        reader.read({ store throws(StoreError) in
            Dictionary(try store.topics(named: unknown).map { ($0.name, $0) }) { $1 }
        }) { [self] result in
            switch result {
            case .success(let stored):
                completion(.success(hold(stored)))
            case .failure(let error):
                metrics.storeFailed(.read, error, ["ferry.topics": "\(unknown.prefix(10).joined(separator: ","))"])
                completion(.failure(ProtocolError(.unavailable, "topics cannot be read: \(error)")))
            }
        }
    }

    /// Removes `connection` from `topics` and forgets those that nothing holds any more.
    func removeSubscriber(_ connection: Connection, from topics: [Topic]) {
        guard !topics.isEmpty else { return }
        state.withLock { state in
            for topic in topics {
                topic.removeSubscriber(connection)
                forgetIfUnheld(topic, in: &state)
            }
        }
    }

    /// The topic `name` for a commit that writes to it; when its log does not exist yet, the
    /// commit creating it is counted on the topic (``finishCreation(_:)`` when it is done).
    /// `known` is the log as the broker knew it before the commit.
    func topicForWrite(named name: String) -> TopicWrite {
        state.withLock { topicForWrite(named: name, in: &$0) }
    }

    /// ``topicForWrite(named:)`` for several topics under one lock, each once.
    func topicsForWrite(named names: [String]) -> [String: TopicWrite] {
        state.withLock { state in
            var writes: [String: TopicWrite] = [:]
            for name in names where writes[name] == nil { writes[name] = topicForWrite(named: name, in: &state) }
            return writes
        }
    }

    typealias TopicWrite = (topic: Topic, creating: Bool, known: TopicRecord?)

    private func topicForWrite(named name: String, in state: inout State) -> TopicWrite {
        let topic = topic(named: name, in: &state)
        if let known = topic.record { return (topic, false, known) }
        topic.creation(started: true)
        return (topic, true, nil)
    }

    /// A commit that was to create `topics` is done, stored or not.
    func finishCreation(_ topics: [Topic]) {
        guard !topics.isEmpty else { return }
        state.withLock { state in
            for topic in topics {
                topic.creation(started: false)
                forgetIfUnheld(topic, in: &state)
            }
        }
    }

    func forgetIfUnheld(_ topic: Topic, in state: inout State) {
        if state.topics[topic.name] === topic, topic.isUnheld { state.topics[topic.name] = nil }
    }

    /// The outcome of a publish, per message.
    public typealias PublishCompletion = @Sendable (Result<[PublishResult], ProtocolError>) -> Void

    /// Validates and queues `requests` for one commit; `completion` runs after it. One invalid
    /// request fails them all and stores nothing (an HTTP batch is all or nothing).
    public func publish(_ requests: [PublishRequest], completion: @escaping PublishCompletion) {
        if let error = requests.lazy.compactMap({ self.validate($0) }).first {
            completion(.failure(error))
            return
        }
        commit(requests, completion: completion)
    }

    /// Publishes each request on its own: an invalid one fails alone, the valid ones share one
    /// commit. `completion` gets one result per request, in order (WebSocket publishes that
    /// arrived in one socket read).
    public func publishEach(
        _ requests: [PublishRequest], completion: @escaping @Sendable ([Result<PublishResult, ProtocolError>]) -> Void
    ) {
        let refusals = requests.map { validate($0) }
        if refusals.allSatisfy({ $0 == nil }) {
            commit(requests) { result in
                switch result {
                case .success(let published): completion(published.map { .success($0) })
                case .failure(let error): completion(Array(repeating: .failure(error), count: requests.count))
                }
            }
            return
        }
        let valid = zip(requests, refusals).compactMap { $1 == nil ? $0 : nil }
        let merge: @Sendable (Result<[PublishResult], ProtocolError>) -> Void = { result in
            var published = (try? result.get())?.makeIterator()
            completion(
                refusals.map { refusal in
                    if let refusal { return .failure(refusal) }
                    if case .failure(let error) = result { return .failure(error) }
                    return published?.next().map { .success($0) } ?? .failure(ProtocolError(.unavailable, "not stored"))
                })
        }
        if valid.isEmpty { merge(.success([])) } else { commit(valid, completion: merge) }
    }

    /// Queues already validated `requests` for one commit.
    func commit(_ requests: [PublishRequest], completion: @escaping PublishCompletion) {
        var operations: [StoreOperation] = []
        var publishIndexes: [Int] = []
        var topics: [Topic] = []
        var creating: [Topic] = []
        operations.reserveCapacity(requests.count)
        // A read's publishes usually share a topic (one lookup per run); those of a publisher
        // writing many topics in turn are all looked up under one broker lock.
        var runs: [String] = []
        for request in requests where runs.last != request.topic { runs.append(request.topic) }
        let writes = topicsForWrite(named: runs)
        /// What the broker knew of each topic before this commit, to check the versions it gives.
        var known: [ObjectIdentifier: TopicRecord] = [:]
        for write in writes.values {
            if let record = write.known { known[ObjectIdentifier(write.topic)] = record }
            if write.creating {
                operations.append(.ensureTopic(write.topic.name, epoch: write.topic.position.epoch))
                creating.append(write.topic)
            }
        }
        var previous: Topic?
        for request in requests {
            let topic: Topic
            if let previous, previous.name == request.topic {
                topic = previous
            } else {
                guard let write = writes[request.topic] else { continue }
                topic = write.topic
                previous = topic
            }
            publishIndexes.append(operations.count)
            topics.append(topic)
            operations.append(
                .publish(
                    NewMessage(
                        topic: request.topic, kind: request.payload.isJSON ? .json : .bytes, payload: request.payload.bytes,
                        messageID: request.messageID, headers: request.headers.map { Header($0.0, $0.1) })))
        }
        committer.submit(operations) { [self, publishIndexes, topics, creating, known] result in
            finishCreation(creating)
            switch result {
            case .success(let outcomes):
                var results: [PublishResult] = []
                results.reserveCapacity(publishIndexes.count)
                var unchecked = known
                for (index, topic) in zip(publishIndexes, topics) {
                    guard case .published(let version, _, let duplicate) = outcomes[outcomes.startIndex + index] else {
                        completion(.failure(ProtocolError(.unavailable, "the store is full; nothing was published")))
                        return
                    }
                    let epoch = topic.position.epoch
                    // The first new version of each topic: given again if this broker had seen it.
                    if !duplicate, let seen = unchecked.removeValue(forKey: ObjectIdentifier(topic)) {
                        renewIfTailLost(topic.name, epoch: epoch, seen: seen, firstFound: version)
                    }
                    results.append(PublishResult(topic: topic.name, version: version, epoch: epoch, duplicate: duplicate))
                }
                completion(.success(results))
            case .failure(let error):
                completion(.failure(ProtocolError(.unavailable, "not stored: \(error)")))
            }
        }
    }

    /// Publishes `requests` in one commit and returns after it is durable.
    public func publish(_ requests: [PublishRequest]) async -> Result<[PublishResult], ProtocolError> {
        await withCheckedContinuation { continuation in
            publish(requests) { continuation.resume(returning: $0) }
        }
    }

    func validate(_ request: PublishRequest) -> ProtocolError? {
        if !Names.isValidTopic(request.topic) {
            return ProtocolError(.invalidTopic, "invalid topic name '\(request.topic)'")
        }
        let limit = maxMessageBytes(for: request.topic)
        if request.payload.bytes.count > limit.bytes {
            let source = limit.pattern.map { ", the limit of \(request.topic) (topic configuration \($0))" } ?? ""
            return ProtocolError(.tooLarge, "payload is over \(limit.bytes) bytes\(source)")
        }
        if let messageID = request.messageID, !Names.isValidMessageID(messageID) {
            return ProtocolError(.badFrame, "msg_id must be 1-128 bytes")
        }
        if request.headers.count > PublishRequest.maxHeaders {
            return ProtocolError(.badFrame, "at most \(PublishRequest.maxHeaders) headers")
        }
        return nil
    }

    /// A `msg` frame for a stored message.
    static func encode(_ message: StoredMessage, topic: String) -> Frame {
        messageFrame(topic: topic, version: message.version, timestamp: message.timestamp, kind: message.kind, payload: message.payload, headers: message.headers)
    }

    /// The one way a `msg` frame is built, from a commit or from a store read.
    static func messageFrame(
        topic: String, version: UInt64, timestamp: Timestamp, kind: PayloadKind, payload: [UInt8], headers: [Header]
    ) -> Frame {
        ServerFrame.message(
            topic: topic, version: version, timestamp: timestamp, payload: Payload(kind, payload),
            headers: headers.map { ($0.name, $0.value) })
    }
}

extension Payload {
    /// A stored payload as the wire sees it: JSON text or bytes.
    public init(_ kind: PayloadKind, _ bytes: [UInt8]) {
        self = kind == .json ? .json(bytes) : .bytes(bytes)
    }
}
