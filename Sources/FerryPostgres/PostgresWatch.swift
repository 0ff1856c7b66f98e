import FerryStore
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// How brokers on one database hear of each other's commits, without depending on it.
///
/// After a commit, the committing store queues the names of the topics it changed; one task
/// sends them, coalesced, as one `NOTIFY` on a connection of its own: never inside the publish
/// transaction, where NOTIFY would hold a database-wide lock through the commit's flush, and a
/// full notification queue would fail the commit. Every store LISTENs on another connection and
/// hands the names to its broker. Notifications sent while a listener is disconnected are lost,
/// so a listener that (re)connects says `.everything`, and so does a poll every `pollInterval`.
final class PostgresWatch: Sendable {
    static let channel = "ferry_topics"
    /// PostgreSQL's limit is 8,000 bytes; past this, the notice says "everything".
    static let payloadLimit = 7900
    static let pollInterval = Duration.milliseconds(500)

    /// This store's id in its notices, so it skips its own.
    private let node = Epoch.random()
    private let connections: PostgresConnections
    private let pending = PendingTopics()
    private let wake: AsyncStream<Void>.Continuation
    private let tasks = Mutex<[Task<Void, Never>]>([])

    init(connections: PostgresConnections) {
        self.connections = connections
        let (stream, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.wake = wake
        let notifier = Task { [connections, pending, node] in
            await Self.notify(from: stream, pending: pending, node: node, connections: connections)
        }
        tasks.withLock { $0.append(notifier) }
    }

    deinit {
        wake.finish()
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }

    /// Queues a notice that `topics` changed, sent after the commit that changed them.
    func changed(_ topics: some Collection<String>) {
        guard !topics.isEmpty else { return }
        pending.add(topics)
        wake.yield()
    }

    /// Starts listening for other stores' notices and polling; `handler` gets both.
    func watch(_ handler: @escaping @Sendable (StoreChange) -> Void) {
        let node = self.node
        let connections = self.connections
        let listener = Task { await Self.listen(node: node, connections: connections, handler: handler) }
        let poller = Task {
            while !Task.isCancelled {
                do { try await Task.sleep(for: Self.pollInterval) } catch { return }
                handler(.everything)
            }
        }
        tasks.withLock { $0 += [listener, poller] }
    }

    /// Sends what is pending, one NOTIFY per wake, on a connection of its own.
    private static func notify(
        from wakes: AsyncStream<Void>, pending: PendingTopics, node: String, connections: PostgresConnections
    ) async {
        var connection: PostgresConnection?
        for await _ in wakes {
            let topics = pending.take()
            guard !topics.isEmpty else { continue }
            var payload = ([node] + topics.sorted()).joined(separator: "\n")
            if payload.utf8.count > payloadLimit { payload = node + "\n*" }
            do {
                if connection == nil || connection?.isClosed == true { connection = try await connections.connect() }
                _ = try await connection?.query("SELECT pg_notify(\(channel), \(payload))", logger: connections.logger).get()
            } catch {
                // Lost: the listeners' poll reads the heads again within `pollInterval`.
                connections.logger.debug("notify failed", metadata: ["error": "\(error)"])
                if let broken = connection { try? await broken.close() }
                connection = nil
            }
        }
        if let connection { try? await connection.close() }
    }

    private static func listen(node: String, connections: PostgresConnections, handler: @escaping @Sendable (StoreChange) -> Void) async {
        while !Task.isCancelled {
            var connection: PostgresConnection?
            do {
                let listening = try await connections.connect()
                connection = listening
                try await listening.listen(on: channel) { notices in
                    // Whatever was sent while no connection listened is lost: read everything again.
                    handler(.everything)
                    for try await notice in notices {
                        let lines = notice.payload.split(separator: "\n").map(String.init)
                        guard lines.first != node else { continue }
                        handler(lines.dropFirst() == ["*"] ? .everything : .topics(Array(lines.dropFirst())))
                    }
                }
            } catch {
                connections.logger.debug("listen failed", metadata: ["error": "\(error)"])
            }
            if let connection { try? await connection.close() }
            handler(.everything)
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
        }
    }
}

/// Topics changed by commits whose notice is not sent yet.
private final class PendingTopics: Sendable {
    private let topics = Mutex<Set<String>>([])

    func add(_ names: some Collection<String>) {
        topics.withLock { $0.formUnion(names) }
    }

    func take() -> Set<String> {
        topics.withLock { topics in
            defer { topics.removeAll() }
            return topics
        }
    }
}
