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
    private let node: String
    private let connections: PostgresConnections
    private let pending = PendingNotices()
    private let wake: AsyncStream<Void>.Continuation
    private let tasks = Mutex<[Task<Void, Never>]>([])

    init(connections: PostgresConnections, node: String) {
        self.connections = connections
        self.node = node
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

    /// Queues a notice about a session: asking `owner` to let it go, or telling every broker.
    func tell(_ notice: SessionNotice) {
        queue(sessionLine: PostgresNotice.line(notice))
    }

    func ask(_ owner: String, toRelease clientID: String, generation: UInt64) {
        queue(sessionLine: PostgresNotice.wanted(clientID, generation: generation, of: owner))
    }

    /// Queues a notice that this broker changed the per-topic configuration.
    func topicConfigsChanged() {
        queue(sessionLine: PostgresNotice.topicConfigsChanged)
    }

    private func queue(sessionLine line: String) {
        pending.add(sessionLine: line)
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
        from wakes: AsyncStream<Void>, pending: PendingNotices, node: String, connections: PostgresConnections
    ) async {
        var connection: PostgresConnection?
        for await _ in wakes {
            let (topics, sessions) = pending.take()
            for payload in PostgresNotice.payloads(from: node, topics: topics, sessions: sessions) {
                do {
                    if connection == nil || connection?.isClosed == true { connection = try await connections.connect() }
                    _ = try await connection?.queryIfOpen("SELECT pg_notify(\(channel), \(payload))", logger: connections.logger).get()
                } catch {
                    // Lost: the listeners' poll reads the heads again within `pollInterval`, and a
                    // broker waiting for a session's release stops waiting at its deadline.
                    connections.logger.debug("notify failed", metadata: ["error": "\(error)"])
                    if let broken = connection { try? await broken.close() }
                    connection = nil
                }
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
                        for change in PostgresNotice.changes(in: notice.payload, for: node) { handler(change) }
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

/// Notices not sent yet: the topics changed by commits, coalesced, and session notices in order.
private final class PendingNotices: Sendable {
    private let notices = Mutex<(topics: Set<String>, sessions: [String])>(([], []))

    func add(_ topics: some Collection<String>) {
        notices.withLock { $0.topics.formUnion(topics) }
    }

    func add(sessionLine: String) {
        notices.withLock { $0.sessions.append(sessionLine) }
    }

    func take() -> (topics: Set<String>, sessions: [String]) {
        notices.withLock { notices in
            defer { notices = ([], []) }
            return notices
        }
    }
}
