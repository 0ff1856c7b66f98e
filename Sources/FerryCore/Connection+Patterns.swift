import FerryProtocol
import FerryStore
import Synchronization

/// Pattern subscriptions: one `subscribe` to `orders.*` delivers every matching topic, those
/// created later included, each through a topic subscription of its own (its position, `gap`
/// and `reset`) that shares the pattern's window. A topic has one subscription per connection:
/// a topic subscription takes a topic over from a pattern, and a topic two patterns match goes
/// to the one subscribed first.
extension Connection {
    /// The live state of one pattern subscription.
    struct PatternSubscription {
        let pattern: TopicPattern
        var window: Int
        let durable: Bool
        /// Subscribed earlier is lower: of two patterns matching a topic, the lower takes it.
        let order: UInt64
        /// Messages sent and not acked (and being read) over all its topics.
        var inFlight = 0
        var topics = 0
        /// Its topics that had something to send when the window was full.
        var blocked: Set<String> = []
        /// Topics that appeared while the subscribe's own matching was read; nil once it is done.
        var deferred: [String]? = []
        /// The client was told that a topic was left out for the topic limit.
        var toldOverLimit = false
    }

    /// How a pattern's newly matched topics start.
    enum PatternStart {
        /// Matched by the `subscribe` itself: after the client's position in the topic when it
        /// gave one, else where its `from` says (`stored` without a stored position means `latest`).
        case subscribed(id: Int64?, from: StartPosition, positions: [String: TopicPosition])
        /// Created (or first seen) after the pattern was subscribed: every message is new to it.
        case appeared
    }

    // MARK: - Frames

    func subscribePattern(id: Int64?, text: String, from: StartPosition, window: Int, positions: [String: TopicPosition]) {
        guard let pattern = TopicPattern(subscribing: text) else {
            reply(id: id, ProtocolError(.invalidTopic, "'\(text)' is not a valid pattern"))
            return
        }
        let limits = broker.configuration.limits
        enum Decision { case changeWindow(SubscriptionRecord?), refuse, start(String?) }
        let decision = state.withLock { state -> Decision in
            if var existing = state.patterns[text] {
                // Again: a new window; its topics keep their positions.
                existing.window = window
                state.patterns[text] = existing
                state.wakeBlocked(text)
                state.queue(ServerFrame.subscribed(id: id, pattern: text, matched: existing.topics))
                return .changeWindow(state.clientID.map { SubscriptionRecord.pattern(text, clientID: $0, window: window) })
            }
            guard state.patterns.count < limits.maxPatterns else { return .refuse }
            state.generations += 1
            state.patterns[text] = PatternSubscription(pattern: pattern, window: window, durable: state.clientID != nil, order: state.generations)
            return .start(state.clientID)
        }
        switch decision {
        case .changeWindow(let record):
            if let record { broker.putPattern(record, members: [], from: self) }
            notify(state.withLock { $0.wake() })
        case .refuse:
            reply(id: id, ProtocolError(.tooManySubscriptions, "at most \(limits.maxPatterns) pattern subscriptions per connection"))
        case .start(let clientID):
            waitForStore()
            // Registered before the topics are read, so one created meanwhile is not missed.
            broker.register(text, pattern, for: self)
            broker.topics(matching: [pattern]) { [self] result in
                switch result {
                case .success(let names):
                    match(names, pattern: text, start: .subscribed(id: id, from: from, positions: positions), clientID: clientID)
                case .failure(let error):
                    dropPattern(text)
                    reply(id: id, error)
                    storeWaitEnded()
                }
            }
        }
    }

    /// The topics a new pattern matched: over the topic limit the subscribe is refused; else
    /// they are held and started. Ends the store wait of the `subscribe`.
    private func match(_ names: [String], pattern text: String, start: PatternStart, clientID: String?) {
        let maxTopics = broker.configuration.limits.maxPatternTopics
        let free = state.withLock { state in
            names.filter { state.subscriptions[$0] == nil && principal.permissions.maySubscribe($0) }
        }.filter { broker.retention(of: $0) != .workQueue }
        guard free.count <= maxTopics else {
            dropPattern(text)
            if case .subscribed(let id, _, _) = start {
                reply(id: id, ProtocolError(.tooManySubscriptions, "\(text) matches \(free.count) topics; a pattern delivers at most \(maxTopics)"))
            }
            storeWaitEnded()
            return
        }
        broker.addSubscriber(self, to: free) { [self] result in
            switch result {
            case .success(let topics):
                startTopics(topics, pattern: text, start: start, clientID: clientID)
            case .failure(let error):
                dropPattern(text)
                if case .subscribed(let id, _, _) = start { reply(id: id, error) }
            }
            storeWaitEnded()
        }
    }

    /// Forgets a pattern whose subscribe failed.
    private func dropPattern(_ text: String) {
        state.withLock { _ = $0.patterns.removeValue(forKey: text) }
        broker.unregister([text], of: self)
    }

    /// Topics the broker learnt of (created here or by another broker) that may match patterns
    /// of this connection; each goes to the earliest pattern that matches it, from its first version.
    func topicsAppeared(_ names: [String]) {
        let maxTopics = broker.configuration.limits.maxPatternTopics
        let (fresh, clientID) = state.withLock { state -> ([String: [String]], String?) in
            guard state.phase == .ready else { return ([:], nil) }
            var fresh: [String: [String]] = [:]
            for name in names where state.subscriptions[name] == nil && principal.permissions.maySubscribe(name)
                && broker.retention(of: name) != .workQueue
            {
                guard let text = state.firstPattern(matching: name) else { continue }
                // Full, and the client was told: the poll's rediscoveries need not be held and read again.
                if let pattern = state.patterns[text], pattern.toldOverLimit, pattern.topics >= maxTopics { continue }
                if state.patterns[text]?.deferred != nil {
                    state.patterns[text]?.deferred?.append(name)
                } else {
                    fresh[text, default: []].append(name)
                }
            }
            return (fresh, state.clientID)
        }
        for (text, names) in fresh {
            broker.addSubscriber(self, to: names) { [self] result in
                switch result {
                case .success(let topics):
                    startTopics(topics, pattern: text, start: .appeared, clientID: clientID)
                case .failure(let error):
                    // Not delivering a matched topic would lose it: the client reconnects and
                    // its resume matches the pattern again.
                    fail(error, close: .internalError)
                }
            }
        }
    }

    /// Puts the matched topics in place: for a subscribe, its `subscribed` reply first; then a
    /// `subscribed` per topic naming the pattern, with any `reset` or `gap` its start calls for.
    private func startTopics(
        _ topics: [(topic: Topic, position: Topic.Position)], pattern text: String, start: PatternStart, clientID: String?
    ) {
        let maxTopics = broker.configuration.limits.maxPatternTopics
        let outcome = state.withLock { state -> (unused: [Topic], records: [SubscriptionRecord], window: Int, deferred: [String], wake: Bool)? in
            guard state.phase != .closed, var pattern = state.patterns[text] else { return nil }
            var unused: [Topic] = []
            var started: [(topic: Topic, position: Topic.Position)] = []
            for entry in topics {
                // Taken meanwhile by a topic subscription or another pattern.
                guard state.subscriptions[entry.topic.name] == nil else {
                    unused.append(entry.topic)
                    continue
                }
                guard pattern.topics + started.count < maxTopics else {
                    unused.append(entry.topic)
                    if !pattern.toldOverLimit {
                        pattern.toldOverLimit = true
                        state.queue(
                            ServerFrame.error(
                                id: nil,
                                ProtocolError(
                                    .tooManySubscriptions,
                                    "\(text) delivers at most \(maxTopics) topics: \(entry.topic.name) and later ones are not delivered")))
                    }
                    continue
                }
                started.append(entry)
            }
            var from = StartPosition.earliest
            var positions: [String: TopicPosition] = [:]
            if case .subscribed(let id, let requested, let given) = start {
                from = requested
                positions = given
                state.queue(ServerFrame.subscribed(id: id, pattern: text, matched: started.count))
            }
            let deferred = pattern.deferred ?? []
            pattern.deferred = nil
            state.patterns[text] = pattern
            var records: [SubscriptionRecord] = []
            for (topic, position) in started {
                let name = topic.name
                let given = positions[name]
                let decided = SubscriptionStart(
                    from: given.map { .after($0.version) } ?? from, epoch: given?.epoch, stored: nil, position: position)
                begin(
                    name, of: topic, at: position, decided, window: pattern.window, durable: clientID != nil, id: nil, pattern: text, in: &state)
                if let clientID {
                    records.append(
                        SubscriptionRecord(
                            clientID: clientID, topic: name, epoch: position.epoch, ackFloor: decided.next - 1, window: pattern.window, pattern: text))
                }
            }
            return (unused, records, pattern.window, deferred, state.wake())
        }
        guard let outcome else {
            broker.removeSubscriber(self, from: topics.map(\.topic))
            return
        }
        broker.removeSubscriber(self, from: outcome.unused)
        if let clientID {
            switch start {
            case .subscribed:
                broker.putPattern(.pattern(text, clientID: clientID, window: outcome.window), members: outcome.records, from: self)
            case .appeared:
                // From the first version: a floor lost in a crash means the same start again.
                broker.recordMembers(outcome.records, from: self)
            }
        }
        notify(outcome.wake)
        if !outcome.deferred.isEmpty { topicsAppeared(outcome.deferred) }
    }

    /// Ends a pattern subscription: each of its topics goes to another pattern of the connection
    /// that matches it (announced with `subscribed`), or is unsubscribed.
    func unsubscribePattern(id: Int64?, text: String) {
        let outcome = state.withLock { state -> (removed: [Subscription], moved: [SubscriptionRecord], clientID: String?)? in
            guard state.patterns.removeValue(forKey: text) != nil else { return nil }
            var removed: [Subscription] = []
            var moved: [SubscriptionRecord] = []
            for (name, subscription) in state.subscriptions where subscription.pattern == text {
                if let other = state.firstPattern(matching: name), let pattern = state.patterns[other], pattern.deferred == nil,
                    pattern.topics < broker.configuration.limits.maxPatternTopics
                {
                    var kept = subscription
                    kept.pattern = other
                    state.replace(name, with: kept)
                    state.ready.insert(name)
                    let position = subscription.topic.position
                    state.queue(
                        ServerFrame.subscribed(id: nil, topic: name, epoch: kept.epoch, head: position.head, from: kept.next, pattern: other))
                    moved.append(record(of: kept, name, state.clientID))
                } else {
                    state.replace(name, with: nil)
                    removed.append(subscription)
                }
            }
            state.queue(ServerFrame.unsubscribed(id: id, topic: text))
            return (removed, moved, state.clientID)
        }
        guard let outcome else {
            reply(id: id, ProtocolError(.notSubscribed, "not subscribed to \(text)"))
            return
        }
        broker.unregister([text], of: self)
        broker.removeSubscriber(self, from: outcome.removed.map(\.topic))
        if let clientID = outcome.clientID {
            broker.removePattern(text, clientID: clientID, removing: outcome.removed.map(\.topic.name), moving: outcome.moved)
        }
        notify(state.withLock { $0.wake() })
    }

    /// After `welcome`: the restored patterns are registered, and the topics that match them
    /// and have no position yet (created while the client was away) start from their first version.
    func restorePatterns(_ records: [SubscriptionRecord]) {
        let patterns = records.compactMap { record in TopicPattern(subscribing: record.topic).map { (record.topic, $0) } }
        guard !patterns.isEmpty else { return }
        for (text, pattern) in patterns { broker.register(text, pattern, for: self) }
        broker.topics(matching: patterns.map(\.1)) { [self] result in
            switch result {
            case .success(let names):
                let deferred = state.withLock { state in
                    patterns.flatMap { text, _ in
                        defer { state.patterns[text]?.deferred = nil }
                        return state.patterns[text]?.deferred ?? []
                    }
                }
                topicsAppeared(names + deferred)
            case .failure(let error):
                fail(error, close: .internalError)
            }
        }
    }
}

extension Connection.State {
    /// Sets (or removes, with nil) the subscription of `name`, keeping its pattern's counts; a
    /// pattern whose window has room again wakes the topics it held back.
    mutating func replace(_ name: String, with new: Connection.Subscription?) {
        replace(name, was: subscriptions[name], with: new)
    }

    /// ``replace(_:with:)`` when the caller holds what `name`'s subscription was (the delivery
    /// pass: one hash lookup per topic fewer).
    mutating func replace(_ name: String, was old: Connection.Subscription?, with new: Connection.Subscription?) {
        if let old, let text = old.pattern, patterns[text] != nil {
            patterns[text]?.inFlight -= old.unacked
            patterns[text]?.topics -= 1
            if new?.pattern != text { patterns[text]?.blocked.remove(name) }
        }
        if let new, let text = new.pattern, patterns[text] != nil {
            patterns[text]?.inFlight += new.unacked
            patterns[text]?.topics += 1
        }
        subscriptions[name] = new
        if let text = new?.pattern { wakeBlocked(text) }
    }

    /// Makes the topics a pattern held back ready again when its window has room.
    mutating func wakeBlocked(_ text: String) {
        guard let pattern = patterns[text], pattern.inFlight < pattern.window, !pattern.blocked.isEmpty else { return }
        ready.formUnion(pattern.blocked)
        patterns[text]?.blocked.removeAll()
    }

    /// The last version `subscription` (the new state of `name`'s) may have in flight: its own
    /// window above its floor, or what its pattern's shared window leaves.
    func windowEnd(of subscription: Connection.Subscription, named name: String) -> UInt64 {
        guard let text = subscription.pattern, let pattern = patterns[text] else {
            return subscription.ackFloor + UInt64(subscription.window)
        }
        let others = pattern.inFlight - (subscriptions[name]?.unacked ?? 0)
        return subscription.next - 1 + UInt64(max(0, pattern.window - others - subscription.unacked))
    }

    /// The pattern of this connection that a new topic `name` goes to: the earliest subscribed.
    func firstPattern(matching name: String) -> String? {
        patterns.filter { $0.value.pattern.matches(name) }.min { $0.value.order < $1.value.order }?.key
    }

    /// Topic subscriptions, not counting the topics patterns deliver.
    var topicSubscriptionCount: Int {
        subscriptions.count - patterns.values.reduce(0) { $0 + $1.topics }
    }
}
