import FerryProtocol
import FerryStore
import Synchronization

/// Queue group membership (`work_queue` topics): the members of a group share the topic's
/// messages, each going to one member at a time, acked one by one, and deleted once acked.
extension Connection {
    func subscribeGroup(id: Int64?, topic name: String, group: String, window: Int) {
        guard principal.permissions.maySubscribe(name) else {
            reply(id: id, ProtocolError(.forbidden, "not allowed to subscribe to \(name)"))
            return
        }
        guard broker.retention(of: name) == .workQueue else {
            reply(id: id, ProtocolError(.badFrame, "a queue group needs a topic whose retention is work_queue; \(name) has \(broker.retention(of: name).rawValue)"))
            return
        }
        enum Existing { case none, sameGroup, other }
        let existing = state.withLock { state -> Existing in
            guard let subscription = state.subscriptions[name] else { return .none }
            guard subscription.group?.name == group else { return .other }
            // The same group again: a new window.
            state.subscriptions[name]?.window = window
            state.ready.insert(name)
            state.queue(
                ServerFrame.subscribed(id: id, topic: name, epoch: subscription.epoch, head: subscription.topic.position.head, from: 1, group: group))
            return .sameGroup
        }
        switch existing {
        case .other:
            reply(id: id, ProtocolError(.badFrame, "already subscribed to \(name) otherwise: unsubscribe it first"))
            return
        case .sameGroup:
            notify(state.withLock { $0.wake() })
            return
        case .none:
            break
        }
        waitForStore()
        broker.addSubscriber(self, to: [name]) { [self] result in
            switch result {
            case .success(let topics):
                if let (topic, position) = topics.first { join(group, of: topic, at: position, id: id, window: window) }
            case .failure(let error):
                reply(id: id, error)
            }
            storeWaitEnded()
        }
    }

    private func join(_ name: String, of topic: Topic, at position: Topic.Position, id: Int64?, window: Int) {
        let shared = broker.group(name, of: topic.name, position: position)
        let from = shared.join(self)
        let joined = state.withLock { state -> Bool in
            guard state.phase != .closed, state.subscriptions[topic.name] == nil else { return false }
            state.generations += 1
            // `next` and `ackFloor` mean nothing to a member; 1 and 0 keep their arithmetic sound.
            state.subscriptions[topic.name] = Subscription(
                topic: topic, epoch: position.epoch, ackFloor: 0, window: window, next: 1, durable: false, generation: state.generations,
                group: shared)
            state.queue(ServerFrame.subscribed(id: id, topic: topic.name, epoch: position.epoch, head: position.head, from: from, group: name))
            state.ready.insert(topic.name)
            return true
        }
        guard joined else {
            broker.leave(shared, self)
            broker.removeSubscriber(self, from: [topic])
            return
        }
        notify(state.withLock { $0.wake() })
    }

    /// A member's delivery pass: runs of versions the group gives it while it holds fewer than its
    /// window, from the topic's cache or a store read.
    func collectGroupDeliveries(_ name: String, _ subscription: inout Subscription, _ state: inout State, reads: inout [Read]) {
        guard let group = subscription.group else { return }
        let position = subscription.topic.position
        if subscription.epoch != position.epoch {
            state.outbox.append(ServerFrame.reset(topic: name, oldEpoch: subscription.epoch, epoch: position.epoch))
            subscription.epoch = position.epoch
            subscription.held.removeAll()
        }
        while subscription.held.count < subscription.window,
            let run = group.take(subscription.window - subscription.held.count, for: self, in: position)
        {
            subscription.held.formUnion(run)
            if let frames = subscription.topic.cachedFrames(from: run.lowerBound, through: run.upperBound, epoch: position.epoch) {
                state.outbox.append(contentsOf: frames)
                state.deliveredUnreported += frames.count
                continue
            }
            guard let storeID = position.storeID else { break }
            subscription.reading = true
            reads.append(
                Read(topic: name, generation: subscription.generation, epoch: position.epoch, storeID: storeID, from: run.lowerBound, through: run.upperBound))
            break
        }
    }

    /// A member's read came in: every message of the run is its to send; one retention deleted
    /// meanwhile is no longer held.
    func completeGroupRead(_ read: Read, _ stored: [StoredMessage], _ subscription: inout Subscription, _ state: inout State) {
        guard subscription.epoch == read.epoch else { return }
        var found: Set<UInt64> = []
        for message in stored where (read.from...read.through).contains(message.version) && subscription.held.contains(message.version) {
            state.outbox.append(Broker.encode(message, topic: read.topic))
            state.deliveredUnreported += 1
            found.insert(message.version)
        }
        subscription.held.subtract(Set(read.from...read.through).subtracting(found))
    }

    /// A member acks one message (not every one below it: members take messages in any order).
    func memberAck(_ name: String, _ version: UInt64, _ subscription: inout Subscription, in state: inout State) -> AckOutcome {
        guard let group = subscription.group, subscription.held.remove(version) != nil else {
            // Deleted meanwhile (retention, or another member acked it after it went out again): nothing to do.
            return version < subscription.topic.position.first
                ? .ignored : .refused(ProtocolError(.badAck, "version \(version) of \(name) is not one this member holds"))
        }
        state.subscriptions[name] = subscription
        state.ready.insert(name)
        return .member(group, epoch: subscription.epoch)
    }
}
