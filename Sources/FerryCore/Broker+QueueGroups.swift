import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// One queue group of one topic on this broker: its ``QueueGroup`` position, the epoch of the log
/// it counts in, its members, and whether this broker serves it (holds its lease: one broker at
/// a time does, so each message goes to one member), under one lock (taken after a connection's:
/// members call in while holding theirs, and it never calls out).
final class SharedQueueGroup: Sendable {
    let topic: String
    let name: String

    private struct State {
        var group: QueueGroup
        var epoch: String
        var members: [ObjectIdentifier: Connection] = [:]
        /// Until the store grants the lease, members here are given nothing.
        var leased = false
    }

    private let state: Mutex<State>

    init(topic: String, name: String, position: Topic.Position) {
        self.topic = topic
        self.name = name
        state = Mutex(State(group: QueueGroup(first: position.first), epoch: position.epoch))
    }

    /// Whether this broker serves the group, as the store last said: when it starts to, returns
    /// the members, to look for work.
    func setLeased(_ leased: Bool) -> [Connection] {
        state.withLock { state in
            defer { state.leased = leased }
            return leased && !state.leased ? Array(state.members.values) : []
        }
    }

    var isLeased: Bool { state.withLock { $0.leased } }

    /// Registers `member`; returns the first version the group has not finished.
    func join(_ member: Connection) -> UInt64 {
        state.withLock { state in
            state.members[ObjectIdentifier(member)] = member
            return state.group.floor + 1
        }
    }

    /// A run of versions for `member` in the log `position` describes. A log of another epoch
    /// (the topic was deleted and made again) starts the group over on it.
    func take(_ count: Int, for member: Connection, in position: Topic.Position) -> ClosedRange<UInt64>? {
        state.withLock { state in
            guard state.leased else { return nil }
            if state.epoch != position.epoch {
                state.group = QueueGroup(first: position.first)
                state.epoch = position.epoch
            }
            return state.group.take(count, for: ObjectIdentifier(member), head: position.head, first: position.first)
        }
    }

    /// `member` acked `version` of `epoch`; returns the floor when it rose.
    func ack(_ version: UInt64, epoch: String, by member: Connection) -> UInt64? {
        state.withLock { state in
            guard state.epoch == epoch else { return nil }
            return state.group.ack(version, by: ObjectIdentifier(member))
        }
    }

    /// `member` left: returns the members left, and whether it gave anything back (they should
    /// then look for work), and whether the group is now empty.
    func leave(_ member: Connection) -> (others: [Connection], gaveBack: Bool) {
        state.withLock { state in
            state.members[ObjectIdentifier(member)] = nil
            let returned = state.group.leave(ObjectIdentifier(member))
            return (Array(state.members.values), returned > 0)
        }
    }

    var isEmpty: Bool { state.withLock { $0.members.isEmpty } }
}

extension Broker {
    /// The retention policy of `topic`'s configuration.
    func retention(of topic: String) -> RetentionKind {
        let configs = topicConfigs.current
        return configs.entries.isEmpty ? .limits : configs.effective(for: topic).retention
    }

    /// The queue group `name` of `topic` on this broker, made when its first member joins (and
    /// then leased from the store).
    func group(_ name: String, of topic: String, position: Topic.Position) -> SharedQueueGroup {
        let (group, made) = state.withLock { state in
            let key = Self.key(topic, name)
            if let group = state.groups[key] { return (group, false) }
            let group = SharedQueueGroup(topic: topic, name: name, position: position)
            state.groups[key] = group
            return (group, true)
        }
        if made { lease(group) }
        return group
    }

    /// Asks the store to let this broker serve `group`; refused while another live broker does,
    /// and asked again at each poll (``renewQueueGroupLeases()``).
    func lease(_ group: SharedQueueGroup) {
        reader.read({ store throws(StoreError) in try store.leaseQueueGroup(group.name, of: group.topic) }) { [self] result in
            switch result {
            case .success(let granted):
                for member in group.setLeased(granted) { member.topicChanged(group.topic) }
                if !granted {
                    logger.debug("queue group served by another broker", metadata: ["ferry.topic": "\(group.topic)", "ferry.group": "\(group.name)"])
                }
            case .failure(let error):
                metrics.storeFailed(.read, error, ["ferry.topic": "\(group.topic)", "ferry.group": "\(group.name)"])
            }
        }
    }

    /// At each poll, every group here asks for its lease again: one another broker served may be
    /// free now (its server let go, or died), and one this broker served may have passed to
    /// another while the database took this one for gone (an outage); then its members here get
    /// nothing new. Leases whose release failed are given up again.
    func renewQueueGroupLeases() {
        let (groups, releases) = state.withLock { state in
            defer { state.failedReleases.removeAll() }
            return (Array(state.groups.values), state.failedReleases)
        }
        for group in groups { lease(group) }
        for (topic, name) in releases { release(name, of: topic) }
    }

    /// Lets another broker serve the group: its last member here left.
    private func release(_ name: String, of topic: String) {
        reader.read({ store throws(StoreError) in try store.releaseQueueGroup(name, of: topic) }) { [self] result in
            guard case .failure(let error) = result else { return }
            metrics.storeFailed(.read, error, ["ferry.topic": "\(topic)", "ferry.group": "\(name)"])
            state.withLock { $0.failedReleases.append((topic, name)) }
        }
    }

    /// `member` leaves `group`: the others are woken when it gave work back; an empty group is
    /// forgotten (what it had acked above its floor goes out again to the next member: at least once).
    func leave(_ group: SharedQueueGroup, _ member: Connection) {
        let (others, gaveBack) = group.leave(member)
        if others.isEmpty {
            let forgotten = state.withLock { state in
                let key = Self.key(group.topic, group.name)
                guard state.groups[key] === group, group.isEmpty else { return false }
                state.groups[key] = nil
                return true
            }
            if forgotten, group.isLeased { release(group.name, of: group.topic) }
        }
        if gaveBack { for other in others { other.topicChanged(group.topic) } }
    }

    /// A group's floor rose: its topic's messages up to it are deleted with the next flush of acks
    /// (`work_queue`: a message goes once one member acked it).
    func groupFloorRose(_ group: SharedQueueGroup, to floor: UInt64, epoch: String) {
        state.withLock { state in
            if let earlier = state.groupTrims[group.topic], earlier.epoch == epoch, earlier.through >= floor { return }
            state.groupTrims[group.topic] = (epoch, floor)
        }
    }

    /// The trims groups asked for, for the next commit: only in the epoch they were acked in.
    func takeGroupTrims(_ state: inout State) -> [StoreOperation] {
        guard !state.groupTrims.isEmpty else { return [] }
        defer { state.groupTrims.removeAll() }
        return state.groupTrims.compactMap { topic, trim in
            state.topics[topic]?.position.epoch == trim.epoch ? .trimTopic(topic, through: trim.through) : nil
        }
    }
}
