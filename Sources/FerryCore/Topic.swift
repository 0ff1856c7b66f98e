import DequeModule
import FerryProtocol
import FerryStore
import Synchronization

/// An encoded frame, ready to write. Arrays are copy-on-write, so one `msg` frame is shared by
/// every subscriber that receives it.
public typealias Frame = [UInt8]

/// One topic's live state: its log position, its recent messages already encoded, and the
/// connections subscribed to it.
///
/// The store is the source of truth; this mirrors it after each commit so delivery reads
/// positions and recent frames without a store transaction.
final class Topic: Sendable {
    let name: String
    private let state: Mutex<State>

    /// Where the log stands. `first` is the oldest stored version (head + 1 when empty).
    struct Position: Sendable, Equatable {
        var epoch: String
        var first: UInt64
        var head: UInt64
        /// The store key of this incarnation; nil until something is stored.
        var storeID: UInt64?
    }

    private struct State {
        /// The stored log; nil until the first publish (or a durable subscribe) creates it.
        var record: TopicRecord?
        /// The epoch the log has, or will get when it is created.
        var epoch: String
        var cache: Deque<(version: UInt64, frame: Frame)> = []
        /// Connections subscribed, each with how many holds it has: a connection's subscription
        /// starts (a topic subscription, a pattern's, a queue group's) may overlap while one
        /// replaces another, and each releases only its own hold.
        var subscribers: [ObjectIdentifier: (connection: Connection, holds: Int)] = [:]
        /// Commits in flight that create the log with `epoch`; the topic must stay registered
        /// until they finish, so a subscriber arriving meanwhile is told that epoch.
        var pendingCreations = 0
        /// Counts the changes this broker mirrored (commits, deletes), so a read of another
        /// broker's change that started before one of ours is not applied over it.
        var changes: UInt64 = 0

        var position: Position {
            if let record {
                Position(epoch: record.epoch, first: record.first, head: record.head, storeID: record.id)
            } else {
                Position(epoch: epoch, first: 1, head: 0, storeID: nil)
            }
        }
    }

    init(name: String, record: TopicRecord?) {
        self.name = name
        self.state = Mutex(State(record: record, epoch: record?.epoch ?? Epoch.random()))
    }

    var position: Position { state.withLock { $0.position } }

    /// The stored record, or nil when the topic does not exist in the store.
    var record: TopicRecord? { state.withLock { $0.record } }

    /// Connected subscriptions (durable and ephemeral).
    var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// True when nothing holds the topic: no stored log, no connected subscriber, no creation in
    /// flight. The broker forgets such a topic, so memory does not grow with every name ever named.
    var isUnheld: Bool {
        state.withLock { $0.record == nil && $0.subscribers.isEmpty && $0.pendingCreations == 0 }
    }

    /// Takes the stored log read for a topic this broker knew no log of (registered by a
    /// subscriber or a publish in flight): the store is the truth, so its epoch wins.
    func adopt(_ record: TopicRecord) {
        state.withLock { state in
            guard state.record == nil else { return }
            state.record = record
            state.epoch = record.epoch
        }
    }

    /// Marks a commit that will create the log with ``position``'s epoch as queued (`true`) or done.
    func creation(started: Bool) {
        state.withLock { $0.pendingCreations += started ? 1 : -1 }
    }

    /// Adds `connection` and returns the position at that instant: every commit after it notifies
    /// the connection, so a subscriber starting at `head + 1` misses nothing.
    func addSubscriber(_ connection: Connection) -> Position {
        state.withLock { state in
            state.subscribers[ObjectIdentifier(connection), default: (connection, 0)].holds += 1
            return state.position
        }
    }

    func removeSubscriber(_ connection: Connection) {
        state.withLock { state in
            let key = ObjectIdentifier(connection)
            guard let entry = state.subscribers[key] else { return }
            state.subscribers[key] = entry.holds > 1 ? (connection, entry.holds - 1) : nil
        }
    }

    /// Frames `from...through` of `epoch` if all are cached.
    func cachedFrames(from: UInt64, through: UInt64, epoch: String) -> [Frame]? {
        state.withLock { state in
            guard state.position.epoch == epoch, let oldest = state.cache.first?.version, oldest <= from,
                let newest = state.cache.last?.version, newest >= through
            else { return nil }
            let start = Int(from - oldest)
            let end = Int(through - oldest)
            return state.cache[start...end].map(\.frame)
        }
    }

    /// Mirrors a commit: the new record and the frames of the messages it appended.
    /// Returns the connections to notify.
    func committed(record: TopicRecord, appended: [(version: UInt64, frame: Frame)], cacheLimit: Int) -> [Connection] {
        state.withLock { state in
            state.changes += 1
            if state.record?.epoch != record.epoch { state.cache.removeAll() }
            state.record = record
            state.epoch = record.epoch
            for message in appended {
                // Only a contiguous run is useful for range lookups.
                if let last = state.cache.last?.version, last + 1 != message.version { state.cache.removeAll() }
                state.cache.append(message)
            }
            while let oldest = state.cache.first?.version, oldest < record.first || state.cache.count > cacheLimit {
                state.cache.removeFirst()
            }
            return state.subscribers.values.map(\.connection)
        }
    }

    /// The count of changes mirrored so far, taken before reading another broker's change.
    var changeCount: UInt64 { state.withLock { $0.changes } }

    /// Mirrors what another broker did, as read from the store (`record` nil: the log is gone),
    /// unless this broker mirrored a change of its own since `seen` (then that is newer, and the
    /// next notice reads again). Returns the connections to notify.
    func changedElsewhere(
        record: TopicRecord?, appended: [(version: UInt64, frame: Frame)], seen: UInt64, cacheLimit: Int
    ) -> [Connection] {
        let current = state.withLock { state -> (record: TopicRecord?, fresh: Bool) in (state.record, state.changes == seen) }
        guard current.fresh, current.record != record else { return [] }
        if let record { return committed(record: record, appended: appended, cacheLimit: cacheLimit) }
        return current.record == nil ? [] : deleted()
    }

    /// Mirrors a delete: the log is gone and the next one gets a new epoch.
    func deleted() -> [Connection] {
        state.withLock { state in
            state.changes += 1
            state.record = nil
            state.epoch = Epoch.random()
            state.cache.removeAll()
            return state.subscribers.values.map(\.connection)
        }
    }
}
