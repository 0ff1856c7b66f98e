import DequeModule
import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// What a connection does with each kind of client frame.
extension Connection {
    /// Attaches the session the hello names (read from the store when the broker has not seen
    /// it since it started) and restores its subscriptions; later frames wait until it is done.
    func hello(clientID: String?, resumeToken: String?) {
        guard isAwaitingHello else {
            reply(id: nil, ProtocolError(.badFrame, "hello was already accepted"))
            return
        }
        waitForStore()
        broker.attach(self, principal: principal, clientID: clientID, resumeToken: resumeToken) { [self] result in
            switch result {
            case .failure(let error):
                broker.metrics.helloRejected(error, clientID: clientID)
                reply(id: nil, error)
                storeWaitEnded()
            case .success(let session):
                broker.metrics.hello(session)
                broker.addSubscriber(self, to: session.topics.map(\.topic)) { [self] topics in
                    switch topics {
                    case .success(let topics):
                        welcome(session, topics: topics.map(\.topic))
                    case .failure(let error):
                        // The session is this connection's; closing releases it for a later hello.
                        if let id = session.clientID { broker.release(id, from: self) }
                        fail(error, close: .internalError)
                    }
                    storeWaitEnded()
                }
            }
        }
    }

    /// Sends `welcome` and starts delivery on the restored subscriptions.
    private func welcome(_ session: Broker.Attachment, topics: [Topic]) {
        let welcome = ServerFrame.welcome(
            clientID: session.clientID, resumeToken: session.resumeToken, resumed: session.resumed,
            subscriptions: session.topics.map {
                RestoredSubscription(topic: $0.topic, epoch: $0.epoch, ackFloor: $0.ackFloor, pattern: $0.pattern)
            },
            patterns: session.patterns.map(\.topic),
            heartbeatSeconds: broker.configuration.heartbeatSeconds, limits: broker.configuration.limits)
        let wake = state.withLock { state -> Bool? in
            // Closed while the store was read: `closed()` could not release what it did not have yet.
            guard state.phase != .closed else { return nil }
            state.phase = .ready
            state.clientID = session.clientID
            state.queue(welcome)
            for pattern in session.patterns {
                guard let parsed = TopicPattern(subscribing: pattern.topic) else { continue }
                state.generations += 1
                state.patterns[pattern.topic] = PatternSubscription(
                    pattern: parsed, window: pattern.window, durable: true, order: state.generations)
            }
            for (record, topic) in zip(session.topics, topics) {
                state.generations += 1
                // A topic whose pattern is gone is kept as a topic subscription: nothing is lost.
                let pattern = record.pattern.flatMap { state.patterns[$0] == nil ? nil : $0 }
                state.replace(
                    record.topic,
                    with: Subscription(
                        topic: topic, epoch: record.epoch, ackFloor: record.ackFloor, window: record.window,
                        next: record.ackFloor + 1, durable: true, generation: state.generations, pattern: pattern))
                state.ready.insert(record.topic)
            }
            return state.wake()
        }
        guard let wake else {
            broker.removeSubscriber(self, from: topics)
            if let id = session.clientID { broker.release(id, from: self) }
            return
        }
        notify(wake)
        restorePatterns(session.patterns)
    }

    func subscribe(id: Int64?, topic name: String, from: StartPosition, epoch: String?, window: Int) {
        // Before anything is looked up, so a refused subscribe creates nothing.
        guard principal.permissions.maySubscribe(name) else {
            reply(id: id, ProtocolError(.forbidden, "not allowed to subscribe to \(name)"))
            return
        }
        let maxSubscriptions = broker.configuration.limits.maxSubscriptions
        let (clientID, refusal) = state.withLock { state -> (String?, ProtocolError?) in
            let existing = state.subscriptions[name]
            if existing?.group != nil {
                return (state.clientID, ProtocolError(.badFrame, "already subscribed to \(name) through a queue group: unsubscribe it first"))
            }
            // Replacing a topic subscription is no new one; taking a topic from a pattern is.
            guard existing.map({ $0.pattern != nil }) ?? true, state.topicSubscriptionCount >= maxSubscriptions else { return (state.clientID, nil) }
            return (state.clientID, ProtocolError(.tooManySubscriptions, "at most \(maxSubscriptions) subscriptions per connection"))
        }
        // A durable position of its own would hold a work queue's messages for ever; watching is fine.
        if clientID != nil, broker.retention(of: name) == .workQueue {
            reply(id: id, ProtocolError(.badFrame, "\(name) is a work queue: subscribe through a queue group (group), or without a client id to watch it"))
            return
        }
        if let refusal {
            reply(id: id, refusal)
            return
        }
        let stored = clientID.flatMap { broker.durableSubscription(clientID: $0, topic: name) }
        waitForStore()
        broker.addSubscriber(self, to: [name]) { [self] result in
            switch result {
            case .success(let topics):
                if let (topic, position) = topics.first {
                    start(id: id, topic: topic, at: position, from: from, epoch: epoch, window: window, stored: stored, clientID: clientID)
                }
            case .failure(let error):
                reply(id: id, error)
            }
            storeWaitEnded()
        }
    }

    /// Puts a subscription in place once its topic is held: `subscribed`, then `reset` or `gap`
    /// if its start calls for one, then delivery. Every commit after the topic was held notifies
    /// the connection, and the delivery pass queued here reads the position afresh, so nothing
    /// is missed before the subscription is in place.
    private func start(
        id: Int64?, topic: Topic, at position: Topic.Position, from: StartPosition, epoch: String?, window: Int,
        stored: SubscriptionRecord?, clientID: String?
    ) {
        let name = topic.name
        var replaced = false
        let subscribed: SubscriptionRecord? = state.withLock { state in
            // Closed meanwhile: `closed()` has released its topics already.
            guard state.phase != .closed else { return nil }
            replaced = state.subscriptions[name] != nil
            let start = SubscriptionStart(from: from, epoch: epoch, stored: stored, position: position)
            begin(name, of: topic, at: position, start, window: window, durable: clientID != nil, id: id, pattern: nil, in: &state)
            return SubscriptionRecord(
                clientID: clientID ?? "", topic: name, epoch: position.epoch, ackFloor: start.next - 1, window: window)
        }
        // One hold per subscription: the one replaced gives its hold back.
        guard let subscribed else {
            broker.removeSubscriber(self, from: [topic])
            return
        }
        if replaced { broker.removeSubscriber(self, from: [topic]) }
        if clientID != nil { broker.putDurableSubscription(subscribed) }
        notify(state.withLock { $0.wake() })
    }

    /// Puts a topic's subscription in place where `start` says: `subscribed` (the answer to `id`,
    /// or naming the pattern that delivers the topic), then its `reset` or `gap`, then delivery.
    func begin(
        _ name: String, of topic: Topic, at position: Topic.Position, _ start: SubscriptionStart, window: Int, durable: Bool, id: Int64?,
        pattern: String?, in state: inout State
    ) {
        state.generations += 1
        state.replace(
            name,
            with: Subscription(
                topic: topic, epoch: position.epoch, ackFloor: start.next - 1, window: window, next: start.next, durable: durable,
                generation: state.generations, pattern: pattern))
        state.queue(ServerFrame.subscribed(id: id, topic: name, epoch: position.epoch, head: position.head, from: start.next, pattern: pattern))
        if let stale = start.resetFrom {
            state.queue(ServerFrame.reset(topic: name, oldEpoch: stale, epoch: position.epoch))
        }
        if let gap = start.gap {
            state.queue(ServerFrame.gap(topic: name, from: gap.lowerBound, to: gap.upperBound))
            broker.metrics.sentGap()
        }
        state.ready.insert(name)
    }

    /// What an `ack` did, decided under the connection's lock.
    enum AckOutcome {
        /// The floor moved (or stayed): the durable record to keep, if any.
        case floor(SubscriptionRecord?)
        /// A queue group member gave back one message of `epoch`.
        case member(SharedQueueGroup, epoch: String)
        /// A group's message deleted meanwhile: nothing to do.
        case ignored
        case refused(ProtocolError)
    }

    func ack(topic name: String, version: UInt64) {
        let outcome: AckOutcome = state.withLock { state in
            guard var subscription = state.subscriptions[name] else {
                return .refused(ProtocolError(.notSubscribed, "not subscribed to \(name)"))
            }
            if subscription.group != nil { return memberAck(name, version, &subscription, in: &state) }
            guard version < subscription.next else {
                return .refused(ProtocolError(.badAck, "version \(version) of \(name) was not delivered"))
            }
            guard version > subscription.ackFloor else { return .floor(nil) }
            subscription.ackFloor = version
            state.replace(name, with: subscription)
            state.ready.insert(name)
            guard subscription.durable, let clientID = state.clientID else { return .floor(nil) }
            return .floor(record(of: subscription, name, clientID))
        }
        switch outcome {
        case .floor(let record):
            broker.metrics.acked()
            if let record { broker.recordAck(record, from: self) }
        case .member(let group, let epoch):
            broker.metrics.acked()
            if let floor = group.ack(version, epoch: epoch, by: self) { broker.groupFloorRose(group, to: floor, epoch: epoch) }
        case .ignored:
            return
        case .refused(let error):
            reply(id: nil, error)
            return
        }
        notify(state.withLock { $0.wake() })
    }

    /// Ends a topic subscription; a pattern of the connection that matches the topic takes it
    /// over where it stands (announced with `subscribed`). A topic only a pattern delivers is
    /// not subscribed on its own: unsubscribing it is `not_subscribed`.
    func unsubscribe(id: Int64?, topic name: String) {
        if TopicPattern.looksLikePattern(name) {
            unsubscribePattern(id: id, text: name)
            return
        }
        let maxPatternTopics = broker.configuration.limits.maxPatternTopics
        let removed = state.withLock { state -> (subscription: Subscription, kept: SubscriptionRecord?, clientID: String?)? in
            guard let subscription = state.subscriptions[name], subscription.pattern == nil else { return nil }
            state.queue(ServerFrame.unsubscribed(id: id, topic: name))
            if subscription.group != nil {
                state.replace(name, with: nil)
                return (subscription, nil, state.clientID)
            }
            if let text = state.firstPattern(matching: name), let pattern = state.patterns[text], pattern.deferred == nil,
                pattern.topics < maxPatternTopics
            {
                var kept = subscription
                kept.pattern = text
                state.replace(name, with: kept)
                state.ready.insert(name)
                state.queue(
                    ServerFrame.subscribed(
                        id: nil, topic: name, epoch: kept.epoch, head: kept.topic.position.head, from: kept.next, pattern: text))
                return (subscription, record(of: kept, name, state.clientID), state.clientID)
            }
            state.replace(name, with: nil)
            return (subscription, nil, state.clientID)
        }
        guard let removed else {
            reply(id: id, ProtocolError(.notSubscribed, "not subscribed to \(name)"))
            return
        }
        if let group = removed.subscription.group { broker.leave(group, self) }
        if let kept = removed.kept {
            if removed.subscription.durable, removed.clientID != nil { broker.putDurableSubscription(kept) }
        } else {
            broker.removeSubscriber(self, from: [removed.subscription.topic])
            if removed.subscription.durable, let clientID = removed.clientID {
                broker.removeDurableSubscription(clientID: clientID, topic: name)
            }
        }
        notify(state.withLock { $0.wake() })
    }

    func publish(_ publishes: [(id: Int64?, request: PublishRequest)], at now: UInt64) {
        let (admitted, refused, wake) = state.withLock { state in
            guard state.rate != nil else {
                state.pendingPublishes += publishes.count
                return (publishes, 0, false)
            }
            var admitted: [(id: Int64?, request: PublishRequest)] = []
            admitted.reserveCapacity(publishes.count)
            var refused = 0
            for publish in publishes {
                let verdict = state.rate?.admit(at: now) ?? .allowed
                if verdict == .allowed {
                    admitted.append(publish)
                    continue
                }
                // Over the rate: answered `rate_limited` and not stored; once a 4029 close is
                // decided, later ones are dropped unanswered.
                guard state.closing == nil else { continue }
                refused += 1
                state.queue(ServerFrame.error(id: publish.id, .overPublishRate(broker.configuration.limits)))
                // A 4013 the queued error just decided stands.
                if verdict == .exceeded, state.closing == nil { state.closing = (.rateLimited, "publishing over the rate limit") }
            }
            state.pendingPublishes += admitted.count
            return (admitted, refused, refused > 0 && state.wake())
        }
        if refused > 0 { broker.metrics.rejected(by: .publishRate, count: refused) }
        notify(wake)
        guard !admitted.isEmpty else { return }
        broker.publishEach(admitted.map(\.request)) { [self] results in
            var frames: [Frame] = []
            frames.reserveCapacity(results.count)
            for ((id, _), result) in zip(admitted, results) {
                switch result {
                case .success(let outcome):
                    frames.append(ServerFrame.published(id: id, topic: outcome.topic, version: outcome.version, duplicate: outcome.duplicate))
                case .failure(let error):
                    frames.append(ServerFrame.error(id: id, error))
                }
            }
            // The frames wake the transport, which also resumes reading if it had paused.
            notify(
                state.withLock { state in
                    state.pendingPublishes -= admitted.count
                    for frame in frames { state.queue(frame) }
                    return state.wake()
                })
        }
    }
}
