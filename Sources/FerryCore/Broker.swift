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
    private let store: any MessageStore
    /// Runs the store's reads where they may wait.
    let reader: StoreReader
    private let committer: Committer
    private let tokens: ResumeTokens
    private let state: Mutex<State>
    private let startedAt: Timestamp
    private let logger = Logger(label: "ferry.broker")
    let metrics = BrokerMetrics()

    private struct DurableSession {
        var record: SessionRecord
        var subscriptions: [String: SubscriptionRecord]
        var owner: Connection?
        /// In memory only: what the last hello did, for operators.
        var lastResume: ResumeInfo?
        /// In memory only: what the last connection had sent, to count redeliveries on resume.
        var sentThrough: [String: SentPosition] = [:]
    }

    private struct State {
        var topics: [String: Topic] = [:]
        var sessions: [String: DurableSession] = [:]
        /// Ack floors and sessions changed since the last flush, persisted lazily (PROTOCOL.md guarantee 3).
        var dirtySubscriptions: [String: SubscriptionRecord] = [:]
        var dirtySessions: [String: SessionRecord] = [:]
        /// Deletes whose commit failed, retried with the next flush of deferred writes.
        var failedDeletes: [StoreOperation] = []
        var lastFlush: Timestamp = 0
        var lastSweep: Timestamp = 0
        /// The last commit refused publishes for want of space (logged when this changes).
        var refusingPublishes = false
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
    }

    /// Loads the store's state. Call ``start()`` before use.
    public init(store: any MessageStore, configuration: BrokerConfiguration) throws(StoreError) {
        self.store = store
        self.configuration = configuration
        reader = StoreReader(store: store)
        let snapshot = try store.load()
        tokens = ResumeTokens(secret: snapshot.secret)
        var state = State()
        for record in snapshot.topics {
            state.topics[record.name] = Topic(name: record.name, record: record)
        }
        for session in snapshot.sessions {
            state.sessions[session.clientID] = DurableSession(record: session, subscriptions: [:], owner: nil, lastResume: nil)
        }
        for subscription in snapshot.subscriptions {
            state.sessions[subscription.clientID]?.subscriptions[subscription.topic] = subscription
        }
        startedAt = configuration.now()
        state.lastSweep = startedAt
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
    private func topic(named name: String, in state: inout State) -> Topic {
        if let topic = state.topics[name] { return topic }
        let topic = Topic(name: name, record: nil)
        state.topics[name] = topic
        return topic
    }

    /// The topic `name` if the broker knows it, without registering it (admin input may name anything).
    func existingTopic(_ name: String) -> Topic? {
        state.withLock { $0.topics[name] }
    }

    /// Adds `connection` as a subscriber of each topic in `names` and returns the topics with
    /// their positions at that instant. Under the broker's lock, so a topic cannot be forgotten
    /// between being found and being held.
    func addSubscriber(_ connection: Connection, to names: [String]) -> [(topic: Topic, position: Topic.Position)] {
        state.withLock { state in
            names.map { name in
                let topic = topic(named: name, in: &state)
                return (topic, topic.addSubscriber(connection))
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
    private func topicForWrite(named name: String) -> (topic: Topic, creating: Bool) {
        state.withLock { state in
            let topic = topic(named: name, in: &state)
            guard topic.record == nil else { return (topic, false) }
            topic.creation(started: true)
            return (topic, true)
        }
    }

    /// A commit that was to create `topics` is done, stored or not.
    private func finishCreation(_ topics: [Topic]) {
        guard !topics.isEmpty else { return }
        state.withLock { state in
            for topic in topics {
                topic.creation(started: false)
                forgetIfUnheld(topic, in: &state)
            }
        }
    }

    private func forgetIfUnheld(_ topic: Topic, in state: inout State) {
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
    private func commit(_ requests: [PublishRequest], completion: @escaping PublishCompletion) {
        var operations: [StoreOperation] = []
        var publishIndexes: [Int] = []
        var topics: [Topic] = []
        var creating: [Topic] = []
        operations.reserveCapacity(requests.count)
        // A read's publishes usually share a topic: look it up (broker lock, hash) once per run.
        var previous: Topic?
        for request in requests {
            let topic: Topic
            if let previous, previous.name == request.topic {
                topic = previous
            } else {
                let write = topicForWrite(named: request.topic)
                topic = write.topic
                if write.creating {
                    operations.append(.ensureTopic(request.topic, epoch: topic.position.epoch))
                    creating.append(topic)
                }
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
        committer.submit(operations) { [self, publishIndexes, topics, creating] result in
            finishCreation(creating)
            switch result {
            case .success(let outcomes):
                var results: [PublishResult] = []
                results.reserveCapacity(publishIndexes.count)
                for (index, topic) in zip(publishIndexes, topics) {
                    guard case .published(let version, _, let duplicate) = outcomes[outcomes.startIndex + index] else {
                        completion(.failure(ProtocolError(.unavailable, "the store is full; nothing was published")))
                        return
                    }
                    results.append(PublishResult(topic: topic.name, version: version, epoch: topic.position.epoch, duplicate: duplicate))
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

    private func validate(_ request: PublishRequest) -> ProtocolError? {
        if !Names.isValidTopic(request.topic) {
            return ProtocolError(.invalidTopic, "invalid topic name '\(request.topic)'")
        }
        if request.payload.bytes.count > configuration.limits.maxMessageBytes {
            return ProtocolError(.tooLarge, "payload is over \(configuration.limits.maxMessageBytes) bytes")
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
    private static func messageFrame(
        topic: String, version: UInt64, timestamp: Timestamp, kind: PayloadKind, payload: [UInt8], headers: [Header]
    ) -> Frame {
        ServerFrame.message(
            topic: topic, version: version, timestamp: timestamp, payload: Payload(kind, payload),
            headers: headers.map { ($0.name, $0.value) })
    }

    /// Mirrors a commit into the topics and wakes their subscribers.
    private func committed(_ operations: [StoreOperation], _ result: CommitResult) {
        var appended: [String: [(version: UInt64, frame: Frame)]] = [:]
        // Runs of one topic are collected before touching the dictionary (one hash per run).
        var run: (topic: String, messages: [(version: UInt64, frame: Frame)])?
        var published: UInt64 = 0
        var refused = 0
        for (operation, outcome) in zip(operations, result.outcomes) {
            guard case .publish(let message) = operation else { continue }
            if case .failed = outcome { refused += 1 }
            guard case .published(let version, let timestamp, false) = outcome else { continue }
            let frame = Self.messageFrame(
                topic: message.topic, version: version, timestamp: timestamp, kind: message.kind, payload: message.payload,
                headers: message.headers)
            if run?.topic != message.topic {
                if let run { appended[run.topic, default: []] += run.messages }
                run = (message.topic, [])
            }
            run?.messages.append((version, frame))
            published += 1
        }
        if let run { appended[run.topic, default: []] += run.messages }
        for (name, record) in result.topics {
            let subscribers: [Connection]
            if let record {
                // Under the broker's lock, so the topic is not forgotten before it holds its record.
                subscribers = state.withLock { state in
                    topic(named: name, in: &state).committed(
                        record: record, appended: appended[name] ?? [], cacheLimit: configuration.cachedMessagesPerTopic)
                }
            } else {
                subscribers = state.withLock { state -> [Connection] in
                    guard let topic = state.topics[name] else { return [] }
                    defer { forgetIfUnheld(topic, in: &state) }
                    return topic.deleted()
                }
            }
            for connection in subscribers { connection.topicChanged(name) }
        }
        if published > 0 {
            state.withLock { $0.published += published }
            metrics.published.increment(by: Int64(published))
        }
        if refused > 0 { metrics.refusedForSpace(refused) }
        if refused > 0 || published > 0 { noteSpace(refusing: refused > 0) }
        metrics.commits.increment()
    }

    /// Logs when publishes start and stop being refused for want of space.
    private func noteSpace(refusing: Bool) {
        let changed = state.withLock { state in
            defer { state.refusingPublishes = refusing }
            return state.refusingPublishes != refusing
        }
        guard changed else { return }
        if refusing {
            logger.warning("the store is full: publishes are refused with unavailable until space is freed (delete or trim topics)")
        } else {
            logger.notice("the store has room again: publishes are accepted")
        }
    }

    /// A whole commit failed: nothing of it is stored. Its jobs were answered `unavailable`; the
    /// deferred acks and sessions it carried are marked for the next commit again, and deletes of
    /// sessions and subscriptions are retried with the next flush, so a passing failure loses none
    /// of them (and a lasting one does not spin the committer).
    private func commitFailed(_ operations: [StoreOperation], _ error: StoreError) {
        metrics.storeFailed(.commit, error, ["ferry.operations": "\(operations.count)"])
        state.withLock { state in
            for operation in operations {
                switch operation {
                case .putSession(let record):
                    if state.dirtySessions[record.clientID] == nil, let session = state.sessions[record.clientID] {
                        state.dirtySessions[record.clientID] = session.record
                    }
                case .putSubscription(let record):
                    let key = Self.key(record.clientID, record.topic)
                    if state.dirtySubscriptions[key] == nil, let current = state.sessions[record.clientID]?.subscriptions[record.topic] {
                        state.dirtySubscriptions[key] = current
                    }
                case .deleteSession, .deleteSubscription:
                    state.failedDeletes.append(operation)
                case .publish, .ensureTopic, .deleteTopic, .trimTopic, .sweep:
                    // Answered to their requester, or redone by the next sweep.
                    break
                }
            }
        }
    }

    /// Deferred writes for the next commit: lazy acks, sweeps, expired sessions.
    private func maintenance(now: Timestamp, busy: Bool) -> [StoreOperation] {
        state.withLock { state in
            var operations: [StoreOperation] = []
            let flushDue = now >= state.lastFlush + configuration.ackFlushInterval
            if busy || flushDue {
                operations += state.dirtySessions.values.map { .putSession($0) }
                operations += state.dirtySubscriptions.values.map { .putSubscription($0) }
                // Only those memory still agrees with: a session or subscription made since stays.
                operations += state.failedDeletes.filter { operation in
                    switch operation {
                    case .deleteSession(let clientID): state.sessions[clientID] == nil
                    case .deleteSubscription(let clientID, let topic): state.sessions[clientID]?.subscriptions[topic] == nil
                    default: false
                    }
                }
                state.failedDeletes.removeAll()
                state.dirtySessions.removeAll()
                state.dirtySubscriptions.removeAll()
                state.lastFlush = now
            }
            if now >= state.lastSweep + configuration.sweepInterval {
                state.lastSweep = now
                operations.append(.sweep)
                let expired = state.sessions.filter { $0.value.owner == nil && $0.value.record.lastSeen + configuration.sessionTTL < now }
                for clientID in expired.keys {
                    state.sessions[clientID] = nil
                    operations.append(.deleteSession(clientID))
                    logger.info("durable session expired", metadata: ["ferry.client_id": "\(clientID)"])
                }
            }
            return operations
        }
    }

    // MARK: - Sessions

    /// Resolves a `hello`: a new or resumed durable session owned by `connection`, or an
    /// ephemeral one. A previous owner of the session is closed with 4009. A durable session,
    /// named by client id or by resume token, is `forbidden` unless `principal` may use its id:
    /// a resume token proves a session exists, not who may take it.
    func attach(_ connection: Connection, principal: Principal, clientID: String?, resumeToken: String?) throws(ProtocolError)
        -> Attachment
    {
        if let clientID, !Names.isValidClientID(clientID) {
            throw ProtocolError(.invalidClientID, "client ids are 1-128 bytes of A-Z a-z 0-9 _ - . : @")
        }
        var fromToken: (clientID: String, incarnation: String)?
        if let resumeToken {
            guard let verified = tokens.verify(resumeToken) else {
                throw ProtocolError(.badResumeToken, "the resume token is not valid")
            }
            fromToken = verified
        }
        if let clientID, let fromToken, fromToken.clientID != clientID {
            throw ProtocolError(.sessionConflict, "client_id and resume_token name different sessions")
        }
        guard let id = clientID ?? fromToken?.clientID else {
            return Attachment(clientID: nil, resumeToken: nil, resumed: false, subscriptions: [])
        }
        guard principal.mayUse(clientID: id) else {
            throw ProtocolError(.forbidden, "this token may not use client id \(id)")
        }
        let now = configuration.now()
        let (attachment, previousOwner, created) = state.withLock { state in
            if var session = state.sessions[id] {
                let previous = session.owner
                session.owner = connection
                session.record.lastSeen = now
                session.lastResume = ResumeInfo(at: now, resumed: true, subscriptions: session.subscriptions.count)
                metrics.countRedeliveries(session.subscriptions.values, sentThrough: session.sentThrough)
                session.sentThrough = [:]  // counted once; a takeover of a live session knows nothing sent
                state.sessions[id] = session
                state.dirtySessions[id] = session.record
                let attachment = Attachment(
                    clientID: id, resumeToken: tokens.token(clientID: id, incarnation: session.record.incarnation), resumed: true,
                    subscriptions: session.subscriptions.values.sorted { $0.topic < $1.topic })
                return (attachment, previous, SessionRecord?.none)
            }
            let record = SessionRecord(clientID: id, incarnation: Epoch.random(), createdAt: now, lastSeen: now)
            state.sessions[id] = DurableSession(
                record: record, subscriptions: [:], owner: connection, lastResume: ResumeInfo(at: now, resumed: false, subscriptions: 0))
            let attachment = Attachment(
                clientID: id, resumeToken: tokens.token(clientID: id, incarnation: record.incarnation), resumed: false, subscriptions: [])
            return (attachment, nil, record)
        }
        if let created { committer.submit([.putSession(created)], completion: nil) }
        if let previousOwner, previousOwner !== connection {
            previousOwner.close(.sessionTakenOver, reason: "session taken over by a newer connection")
        }
        return attachment
    }

    /// The transport of `connection` is gone.
    func detach(_ connection: Connection, clientID: String?, sentThrough: [String: SentPosition]) {
        let now = configuration.now()
        state.withLock { state in
            state.connections -= 1
            guard let clientID, var session = state.sessions[clientID], session.owner === connection else { return }
            session.owner = nil
            session.record.lastSeen = now
            session.sentThrough = sentThrough
            state.sessions[clientID] = session
            state.dirtySessions[clientID] = session.record
        }
        metrics.connections.decrement()
    }

    func durableSubscription(clientID: String, topic: String) -> SubscriptionRecord? {
        state.withLock { $0.sessions[clientID]?.subscriptions[topic] }
    }

    /// A durable subscribe: replaces the stored position now, and creates the topic if needed.
    func putDurableSubscription(_ record: SubscriptionRecord) {
        let known = state.withLock { state in
            guard state.sessions[record.clientID] != nil else { return false }
            state.sessions[record.clientID]?.subscriptions[record.topic] = record
            state.dirtySubscriptions[Self.key(record.clientID, record.topic)] = nil
            return true
        }
        guard known else { return }
        var operations: [StoreOperation] = []
        let write = topicForWrite(named: record.topic)
        if write.creating { operations.append(.ensureTopic(record.topic, epoch: record.epoch)) }
        operations.append(.putSubscription(record))
        committer.submit(operations) { [self] _ in
            if write.creating { finishCreation([write.topic]) }
        }
    }

    /// Records a moved ack floor (or a reset) from the connection that owns the session; it is
    /// persisted with the next commit or within `ackFlushInterval`.
    func recordAck(_ record: SubscriptionRecord, from connection: Connection) {
        state.withLock { state in
            guard let session = state.sessions[record.clientID], session.owner === connection,
                let existing = session.subscriptions[record.topic],
                existing.epoch != record.epoch || existing.ackFloor < record.ackFloor
            else { return }
            state.sessions[record.clientID]?.subscriptions[record.topic] = record
            state.dirtySubscriptions[Self.key(record.clientID, record.topic)] = record
        }
    }

    func removeDurableSubscription(clientID: String, topic: String) {
        state.withLock { state in
            state.sessions[clientID]?.subscriptions[topic] = nil
            state.dirtySubscriptions[Self.key(clientID, topic)] = nil
        }
        committer.submit([.deleteSubscription(clientID: clientID, topic: topic)], completion: nil)
    }

    private static func key(_ clientID: String, _ topic: String) -> String {
        clientID + "\u{0}" + topic
    }

    /// Counts `count` messages handed to connections.
    func delivered(_ count: Int) {
        state.withLock { $0.delivered += UInt64(count) }
        metrics.delivered.increment(by: Int64(count))
    }

    // MARK: - Reads and administration

    /// `GET /v1/topics/{topic}`; nil when the topic does not exist.
    /// A topic exists while it has a stored log or a connected subscriber: a name only an ephemeral
    /// subscriber holds shows as empty (head 0) with the epoch its `subscribed` frame gave.
    public func topicInfo(_ name: String) -> TopicInfo? {
        let (topic, durable) = state.withLock { state in
            (state.topics[name], state.sessions.values.filter { $0.subscriptions[name] != nil })
        }
        guard let topic, let log = Self.visibleLog(of: topic) else { return nil }
        let connectedDurable = durable.filter { $0.owner != nil }.count
        let ephemeral = max(0, topic.subscriberCount - connectedDurable)
        return TopicInfo(
            topic: name, epoch: log.epoch, first: log.first, head: log.head, messages: log.messages,
            bytes: log.bytes, subscribers: durable.count + ephemeral)
    }

    /// The stored record of `topic`, or an empty one for a topic held only by subscribers; nil for
    /// a topic registered only while a commit creates it.
    private static func visibleLog(of topic: Topic) -> TopicRecord? {
        if let record = topic.record { return record }
        guard topic.subscriberCount > 0 else { return nil }
        return TopicRecord(name: topic.name, id: 0, epoch: topic.position.epoch)
    }

    /// Every existing topic, by name, as the admin API lists them.
    public func topicInfos() async -> [TopicInfo] {
        let names = state.withLock { Array($0.topics.keys) }
        var infos: [TopicInfo] = []
        for name in names.sorted() {
            if let info = await adminTopicInfo(name, listingSubscriptions: false) { infos.append(info) }
        }
        return infos
    }

    /// Stored messages of `topic` after version `after`; nil when the topic does not exist.
    public func messages(topic name: String, after: UInt64, limit: Int) async throws(ProtocolError)
        -> (epoch: String, messages: [StoredMessage])?
    {
        guard let topic = existingTopic(name) else { return nil }
        guard let record = topic.record else { return Self.visibleLog(of: topic).map { ($0.epoch, []) } }
        switch await reader.read({ store throws(StoreError) in try store.messages(topicID: record.id, after: after, limit: limit) }) {
        case .success(let messages):
            return (record.epoch, messages)
        case .failure(let error):
            metrics.storeFailed(.read, error, ["ferry.topic": "\(name)", "ferry.after": "\(after)"])
            throw ProtocolError(.unavailable, "\(error)")
        }
    }

    /// Deletes a topic's log; subscribers get `reset` and a later publish starts at version 1
    /// with a new epoch. Returns false when the topic does not exist.
    public func deleteTopic(_ name: String) async throws(ProtocolError) -> Bool {
        guard state.withLock({ $0.topics[name] })?.record != nil else { return false }
        let result = await commit([.deleteTopic(name)])
        if case .failure(let error) = result { throw ProtocolError(.unavailable, "\(error)") }
        return true
    }

    private func commit(_ operations: [StoreOperation]) async -> Result<ArraySlice<CommitResult.Outcome>, StoreError> {
        await withCheckedContinuation { continuation in
            committer.submit(operations) { continuation.resume(returning: $0) }
        }
    }

    public func clientSummaries() -> [ClientSummary] {
        state.withLock { state in
            state.sessions.values.map {
                ClientSummary(
                    clientID: $0.record.clientID, connected: $0.owner != nil, subscriptions: $0.subscriptions.count,
                    lastSeen: $0.record.lastSeen)
            }
        }.sorted { $0.clientID < $1.clientID }
    }

    public func clientDetail(_ clientID: String) async -> ClientDetail? {
        guard let session = state.withLock({ $0.sessions[clientID] }) else { return nil }
        let now = configuration.now()
        var subscriptions: [SubscriptionInfo] = []
        for record in session.subscriptions.values.sorted(by: { $0.topic < $1.topic }) {
            subscriptions.append(await subscriptionInfo(record, now: now))
        }
        return ClientDetail(
            clientID: clientID, connected: session.owner != nil, createdAt: session.record.createdAt, lastSeen: session.record.lastSeen,
            subscriptions: subscriptions, lastResume: session.lastResume)
    }

    private func subscriptionInfo(_ record: SubscriptionRecord, now: Timestamp) async -> SubscriptionInfo {
        let standing = await standing(of: record, now: now, withAge: true)
        return SubscriptionInfo(
            topic: record.topic, epoch: record.epoch, ackFloor: record.ackFloor, head: standing.head, lag: standing.lag,
            window: record.window, oldestUnackedAgeMs: standing.oldestUnackedAge)
    }

    /// Where a durable subscription stands in its topic's current log: the head (0 when its epoch
    /// is gone), the lag, and `withAge`, the age of the oldest stored message it has not acked
    /// (a store read).
    private func standing(of record: SubscriptionRecord, now: Timestamp, withAge: Bool) async
        -> (head: UInt64, lag: UInt64, oldestUnackedAge: UInt64?)
    {
        guard let position = existingTopic(record.topic)?.position, position.epoch == record.epoch else { return (0, 0, nil) }
        guard position.head > record.ackFloor else { return (position.head, 0, nil) }
        let oldest = max(record.ackFloor + 1, position.first)
        var stamp: Timestamp?
        if withAge, let id = position.storeID, oldest <= position.head {
            switch await reader.read({ store throws(StoreError) in try store.messages(topicID: id, after: oldest - 1, limit: 1) }) {
            case .success(let messages):
                stamp = messages.first?.timestamp
            case .failure(let error):
                // Only an age for operators depends on it: shown as unknown, logged and counted.
                metrics.storeFailed(.read, error, ["ferry.topic": "\(record.topic)", "ferry.version": "\(oldest)"])
            }
        }
        return (position.head, position.head - record.ackFloor, stamp.map { now > $0 ? now - $0 : 0 })
    }

    /// The durable subscriptions of topic `name`, with whether their client is connected.
    private func durableSubscriptions(of name: String) -> [(record: SubscriptionRecord, connected: Bool)] {
        state.withLock { state in
            state.sessions.values.compactMap { session in session.subscriptions[name].map { ($0, session.owner != nil) } }
        }.sorted { $0.record.clientID < $1.record.clientID }
    }

    /// A topic as the admin API shows it: with connected subscriptions and the largest lag, and
    /// with `listingSubscriptions`, each durable subscription. Nil when the topic does not exist.
    public func adminTopicInfo(_ name: String, listingSubscriptions: Bool) async -> TopicInfo? {
        guard var info = topicInfo(name) else { return nil }
        let now = configuration.now()
        var subscriptions: [TopicSubscription] = []
        for entry in durableSubscriptions(of: name) {
            let standing = await standing(of: entry.record, now: now, withAge: listingSubscriptions)
            subscriptions.append(
                TopicSubscription(
                    clientID: entry.record.clientID, connected: entry.connected, ackFloor: entry.record.ackFloor, lag: standing.lag,
                    oldestUnackedAgeMs: standing.oldestUnackedAge))
        }
        info.connected = existingTopic(name)?.subscriberCount ?? 0
        info.lag = subscriptions.map(\.lag).max() ?? 0
        if listingSubscriptions { info.durableSubscriptions = subscriptions }
        return info
    }

    /// What a trim did, or the durable subscribers it would cut when not forced.
    public enum TrimOutcome: Sendable {
        case trimmed(TrimResult)
        case refused([TrimLoss])
    }

    /// Deletes the messages of topic `name` with versions ≤ `through`. Unless `force`, refuses
    /// when a durable subscriber has not acked some of them. Subscribers behind the new first
    /// version get `gap`, as after retention.
    public func trimTopic(_ name: String, through: UInt64, force: Bool) async throws(ProtocolError) -> TrimOutcome {
        guard let before = existingTopic(name)?.record else { throw ProtocolError(.notFound, "no topic \(name)") }
        guard through <= before.head else {
            throw ProtocolError(.badFrame, "to (\(through)) is above the head of \(name) (\(before.head))")
        }
        if !force {
            let losses = durableSubscriptions(of: name).compactMap { entry -> TrimLoss? in
                let from = max(entry.record.ackFloor + 1, before.first)
                guard entry.record.epoch == before.epoch, from <= through else { return nil }
                return TrimLoss(clientID: entry.record.clientID, ackFloor: entry.record.ackFloor, from: from, to: through)
            }
            if !losses.isEmpty { return .refused(losses) }
        }
        if case .failure(let error) = await commit([.trimTopic(name, through: through)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        let after = existingTopic(name)?.record ?? before
        logger.notice(
            "topic trimmed", metadata: ["ferry.topic": "\(name)", "ferry.through": "\(through)", "ferry.forced": "\(force)"])
        return .trimmed(
            TrimResult(
                topic: name, first: after.first, head: after.head, messages: after.messages,
                removed: through >= before.first ? through - before.first + 1 : 0))
    }

    /// Sets the ack floor of `clientID`'s subscription to `topic` to `version`, in the topic's
    /// current epoch, so the client is sent everything after it when it resumes. A connected
    /// client is refused (`session_conflict`): its connection holds the position in flight.
    public func rewindClient(_ clientID: String, topic name: String, to version: UInt64) async throws(ProtocolError) -> SubscriptionInfo {
        let position = existingTopic(name)?.position
        let outcome: Result<SubscriptionRecord, ProtocolError> = state.withLock { state in
            guard let session = state.sessions[clientID] else { return .failure(ProtocolError(.notFound, "no client \(clientID)")) }
            // A durable subscription always has its topic in memory.
            guard var record = session.subscriptions[name], let position else {
                return .failure(ProtocolError(.notFound, "client \(clientID) has no subscription to \(name)"))
            }
            guard version <= position.head else {
                return .failure(ProtocolError(.badFrame, "to (\(version)) is above the head of \(name) (\(position.head))"))
            }
            guard session.owner == nil else {
                return .failure(ProtocolError(.sessionConflict, "client \(clientID) is connected: rewind it while it is away"))
            }
            record.epoch = position.epoch
            record.ackFloor = version
            state.sessions[clientID]?.subscriptions[name] = record
            state.dirtySubscriptions[Self.key(clientID, name)] = nil
            return .success(record)
        }
        let record = try outcome.get()
        if case .failure(let error) = await commit([.putSubscription(record)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        logger.notice(
            "subscription rewound", metadata: ["ferry.client_id": "\(clientID)", "ferry.topic": "\(name)", "ferry.to": "\(version)"])
        return await subscriptionInfo(record, now: configuration.now())
    }

    /// Deletes a durable session; its connection is closed with 4010. False when unknown.
    public func deleteClient(_ clientID: String) async throws(ProtocolError) -> Bool {
        guard let removed = state.withLock({ state -> DurableSession? in
            defer {
                state.sessions[clientID] = nil
                state.dirtySessions[clientID] = nil
                state.dirtySubscriptions = state.dirtySubscriptions.filter { $0.value.clientID != clientID }
            }
            return state.sessions[clientID]
        }) else { return false }
        removed.owner?.close(.sessionDeleted, reason: "session deleted by an operator")
        if case .failure(let error) = await commit([.deleteSession(clientID)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        return true
    }

    public func stats() -> BrokerStats {
        let usage = store.usage()
        return state.withLock { state in
            BrokerStats(
                version: Self.version, uptimeSeconds: (configuration.now() - startedAt) / 1000, connections: state.connections,
                topics: state.topics.values.filter { $0.record != nil }.count, sessions: state.sessions.count,
                published: state.published, delivered: state.delivered, dataBytes: usage.usedBytes, mapSize: usage.mapSize,
                sync: usage.syncOnCommit ? "full" : "none")
        }
    }

    /// The broker's state for `/metrics`, from memory only (no store reads), so a scrape costs one
    /// pass over topics and sessions and nothing on the publish or delivery path.
    public func metricsSnapshot() -> MetricsSnapshot {
        let (topics, sessions) = state.withLock { state in
            (Array(state.topics.values), state.sessions.values.map { ($0.record.clientID, Array($0.subscriptions.values)) })
        }
        return MetricsSnapshot(topics: topics, sessions: sessions, usage: store.usage())
    }

    /// A compacted hot copy of the store in the empty folder `path`; returns its size in bytes.
    /// Deferred acks and sessions are committed first, so the copy holds every ack seen so far.
    public func backup(to path: String) async throws(ProtocolError) -> Int {
        // An empty job makes the committer flush what maintenance holds back.
        if case .failure(let error) = await commit([]) { throw ProtocolError(.unavailable, "\(error)") }
        let store = self.store
        let result: Result<Int, StoreError> = await withCheckedContinuation { continuation in
            // The copy blocks for as long as it takes: keep it off the cooperative pool.
            Thread {
                continuation.resume(returning: Result { () throws(StoreError) -> Int in try store.backup(to: path) })
            }.start()
        }
        switch result {
        case .success(let bytes): return bytes
        case .failure(let error): throw ProtocolError(.unavailable, "\(error)")
        }
    }
}

extension Payload {
    /// A stored payload as the wire sees it: JSON text or bytes.
    public init(_ kind: PayloadKind, _ bytes: [UInt8]) {
        self = kind == .json ? .json(bytes) : .bytes(bytes)
    }
}
