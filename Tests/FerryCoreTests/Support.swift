import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import Synchronization
import Testing

/// A clock tests move by hand.
final class TestClock: Sendable {
    private let milliseconds = Atomic<UInt64>(1_800_000_000_000)

    var now: UInt64 { milliseconds.load(ordering: .relaxed) }

    func advance(by delta: UInt64) {
        milliseconds.add(delta, ordering: .relaxed)
    }
}

/// A broker on a real LMDB store in a fresh temp folder.
final class BrokerFixture: Sendable {
    let path: String
    let clock: TestClock
    let storeConfiguration: LMDBStoreConfiguration
    let brokerConfiguration: BrokerConfiguration
    let readsOnThreads: Bool
    /// The store as a shared engine presents it, when `readsOnThreads`.
    let shared: ReadsThatMayBlock?
    let broker: Broker

    /// - Parameter readsOnThreads: read the store on the core's read threads, as for an engine
    ///   whose reads wait for a database (LMDB's are done inline otherwise).
    /// - Parameter clock: the clock of the broker this one restarts, so time goes on.
    init(
        path: String? = nil, clock: TestClock = TestClock(), readsOnThreads: Bool = false, configureStore: (inout LMDBStoreConfiguration) -> Void = { _ in },
        configureBroker: (inout BrokerConfiguration) -> Void = { _ in }
    ) throws {
        let folder = path ?? FileManager.default.temporaryDirectory.appendingPathComponent("ferry-core-\(UUID().uuidString)").path
        self.path = folder
        self.clock = clock
        var store = LMDBStoreConfiguration(path: folder)
        store.mapSize = 256 << 20
        configureStore(&store)
        var configuration = BrokerConfiguration()
        configuration.ackFlushInterval = 5
        configureBroker(&configuration)
        configuration.now = { clock.now }
        storeConfiguration = store
        brokerConfiguration = configuration
        self.readsOnThreads = readsOnThreads
        let lmdb = try LMDBMessageStore(configuration: store)
        shared = readsOnThreads ? ReadsThatMayBlock(lmdb) : nil
        broker = try Broker(store: shared ?? lmdb, configuration: configuration)
        broker.start()
    }

    /// The same folder opened again, as after a restart.
    func reopened() async throws -> BrokerFixture {
        await broker.shutdown()
        let store = storeConfiguration
        let configuration = brokerConfiguration
        return try BrokerFixture(
            path: path, clock: clock, readsOnThreads: readsOnThreads, configureStore: { $0 = store }, configureBroker: { $0 = configuration })
    }

    func remove() async {
        await broker.shutdown()
        try? FileManager.default.removeItem(atPath: path)
    }

    /// True once durable session `clientID` is gone, within 10 s: the committer expires it on its
    /// own schedule, and there is no event to await but the state.
    func expires(_ clientID: String) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while try await broker.clientDetail(clientID) != nil {
            guard ContinuousClock.now < deadline else { return false }
            try await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    /// Publishes JSON payloads `{"n":i}` to `topic` and returns their versions.
    @discardableResult
    func publish(_ topic: String, count: Int, start: Int = 1) async throws -> [UInt64] {
        let requests = (start..<(start + count)).map { PublishRequest(topic: topic, payload: .json(Array("{\"n\":\($0)}".utf8))) }
        return try await broker.publish(requests).get().map(\.version)
    }
}

/// The real LMDB store, presented as an engine several brokers share presents itself: its reads
/// may block, so the broker reads it on its read threads and completes deliveries asynchronously,
/// and it announces changes made around the broker (``announce(_:)``), as such an engine
/// announces other brokers' commits.
final class ReadsThatMayBlock: MessageStore {
    let store: LMDBMessageStore
    private let watcher = Mutex<(@Sendable (StoreChange) -> Void)?>(nil)

    init(_ store: LMDBMessageStore) {
        self.store = store
    }

    var readsMayBlock: Bool { true }
    func watch(_ handler: @escaping @Sendable (StoreChange) -> Void) { watcher.withLock { $0 = handler } }

    /// Tells the broker watching this store about `change`.
    func announce(_ change: StoreChange) {
        watcher.withLock { $0 }?(change)
    }
    func open() throws(StoreError) -> [UInt8] { try store.open() }
    func topicConfigs() throws(StoreError) -> TopicConfigs { try store.topicConfigs() }
    func topic(named name: String) throws(StoreError) -> TopicRecord? {
        let record = try store.topic(named: name)
        if let gate = heldRead.withLock({ held in
            defer { held = nil }
            return held
        }) {
            gate.read.signal()
            gate.release.wait()
        }
        return record
    }

    /// A topic read that finishes late: the next `topic(named:)` reads the store, signals `read`,
    /// then waits for `release` before it returns (on the broker's read thread).
    struct HeldRead: Sendable {
        let read = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)

        /// Until the held read has read the store.
        func hasRead() async {
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    read.wait()
                    continuation.resume()
                }
            }
        }
    }

    private let heldRead = Mutex<HeldRead?>(nil)

    func holdNextTopicRead() -> HeldRead {
        let gate = HeldRead()
        heldRead.withLock { $0 = gate }
        return gate
    }
    func topics() throws(StoreError) -> [TopicRecord] { try store.topics() }
    func session(clientID: String) throws(StoreError) -> StoredSession? { try store.session(clientID: clientID) }
    func sessions() throws(StoreError) -> [StoredSession] { try store.sessions() }
    func subscriptions(topic: String) throws(StoreError) -> [SubscriptionRecord] { try store.subscriptions(topic: topic) }
    func commit(_ operations: [StoreOperation], now: Timestamp) throws(StoreError) -> CommitResult {
        try store.commit(operations, now: now)
    }
    func messages(topicID: UInt64, after: UInt64, limit: Int) throws(StoreError) -> [StoredMessage] {
        try store.messages(topicID: topicID, after: after, limit: limit)
    }
    func backup(to path: String) throws(StoreError) -> Int { try store.backup(to: path) }
    func backup(into descriptor: Int32) throws(StoreError) { try store.backup(into: descriptor) }
    func backupSizeEstimate() throws(StoreError) -> Int { try store.backupSizeEstimate() }
    func usage() -> StoreUsage { store.usage() }
    func verify() throws(StoreError) -> [StoreFault] { try store.verify() }
}

/// Drives a core `Connection` as a client would, reading what it would write to the socket.
final class TestClient: Sendable {
    let connection: Connection
    private let inbox = Inbox()
    private let pump: Task<Void, Never>

    private final class Inbox: Sendable {
        let frames = Mutex<[[String: String]]>([])
        let closeCode = Mutex<CloseCode?>(nil)
    }

    init(_ broker: Broker, principal: Principal = .unrestricted) {
        let (work, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let connection = broker.makeConnection(principal: principal) { signal.yield() }
        self.connection = connection
        let inbox = self.inbox
        pump = Task {
            for await _ in work {
                while let outbound = connection.takeOutbound() {
                    switch outbound {
                    case .frames(let frames):
                        let objects = frames.compactMap { frame in
                            (try? JSONSerialization.jsonObject(with: Data(frame))) as? [String: Any]
                        }
                        inbox.frames.withLock { $0.append(contentsOf: objects.map { $0.mapValues { "\($0)" } }) }
                    case .close(let code, _):
                        inbox.closeCode.withLock { $0 = code }
                        return
                    }
                }
            }
        }
    }

    func send(_ json: String) {
        connection.receive(Array(json.utf8))
    }

    func hello(_ clientID: String? = nil, token: String? = nil) async throws -> [String: String] {
        var fields = [#""op":"hello""#]
        if let clientID { fields.append(#""client_id":"\#(clientID)""#) }
        if let token { fields.append(#""resume_token":"\#(token)""#) }
        send("{\(fields.joined(separator: ","))}")
        return try await next(op: "welcome")
    }

    /// Frames received so far, as string fields.
    var frames: [[String: String]] {
        inbox.frames.withLock { $0 }
    }

    var closedWith: CloseCode? { inbox.closeCode.withLock { $0 } }

    /// Waits until `condition` holds over the received frames (bounded by `seconds`).
    func waitFor(seconds: Double = 10, _ condition: ([[String: String]]) -> Bool) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while !condition(frames) {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out; last frames: \(frames.suffix(5))")
                throw CancellationError()
            }
            await Task.yield()
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// The first frame with `op` not yet taken.
    func next(op: String) async throws -> [String: String] {
        try await waitFor { $0.contains { $0["op"] == op } }
        return inbox.frames.withLock { frames in
            let index = frames.firstIndex { $0["op"] == op } ?? 0
            return frames.remove(at: index)
        }
    }

    /// Versions of the `msg` frames of `topic` received so far.
    func versions(_ topic: String) -> [UInt64] {
        frames.filter { $0["op"] == "msg" && $0["topic"] == topic }.compactMap { $0["version"].flatMap(UInt64.init) }
    }

    func disconnect() {
        connection.closed()
        pump.cancel()
    }
}
