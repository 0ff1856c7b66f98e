import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// The broker's side of pattern subscriptions: which connections hold which patterns, the
/// topics a pattern matches now, topics as they appear, and the durable records.
extension Broker {
    /// The patterns connections subscribe to. A new topic is matched against each distinct
    /// pattern once, however many connections share it.
    struct PatternIndex {
        private var entries: [String: (pattern: TopicPattern, connections: [ObjectIdentifier: Connection])] = [:]

        var isEmpty: Bool { entries.isEmpty }

        mutating func add(_ text: String, _ pattern: TopicPattern, _ connection: Connection) {
            entries[text, default: (pattern, [:])].connections[ObjectIdentifier(connection)] = connection
        }

        mutating func remove(_ text: String, _ connection: Connection) {
            entries[text]?.connections[ObjectIdentifier(connection)] = nil
            if entries[text]?.connections.isEmpty == true { entries[text] = nil }
        }

        func matchesAny(_ name: String) -> Bool {
            entries.values.contains { $0.pattern.matches(name) }
        }

        /// The distinct patterns subscribed.
        var patterns: [TopicPattern] { entries.values.map(\.pattern) }

        /// The connections with a pattern matching `name`.
        func connections(matching name: String) -> [ObjectIdentifier: Connection] {
            var found: [ObjectIdentifier: Connection] = [:]
            for entry in entries.values where entry.pattern.matches(name) {
                found.merge(entry.connections) { first, _ in first }
            }
            return found
        }
    }

    func register(_ text: String, _ pattern: TopicPattern, for connection: Connection) {
        state.withLock { $0.patterns.add(text, pattern, connection) }
    }

    func unregister(_ patterns: [String], of connection: Connection) {
        guard !patterns.isEmpty else { return }
        state.withLock { state in
            for text in patterns { state.patterns.remove(text, connection) }
        }
    }

    /// The names of the topics with a log that `pattern` matches, sorted: the store's and those
    /// this broker created since (a creating commit may not be readable yet).
    /// The names of the topics with a log that one of `patterns` matches, sorted: the store's and
    /// those this broker created since (a creating commit may not be readable yet). One read of
    /// the store's topics, however many patterns.
    func topics(matching patterns: [TopicPattern], completion: @escaping @Sendable (Result<[String], ProtocolError>) -> Void) {
        @Sendable func matched(_ name: String) -> Bool { patterns.contains { $0.matches(name) } }
        reader.read({ store throws(StoreError) in
            try store.topics().map(\.name).filter(matched)
        }) { [self] result in
            switch result {
            case .success(let stored):
                let held = state.withLock { state in
                    state.topics.values.filter { $0.record != nil && matched($0.name) }.map(\.name)
                }
                completion(.success(Array(Set(stored).union(held)).sorted()))
            case .failure(let error):
                let described = patterns.map(\.description).joined(separator: " ")
                metrics.storeFailed(.read, error, ["ferry.patterns": "\(described)"])
                completion(.failure(ProtocolError(.unavailable, "the topics matching \(described) cannot be read: \(error)")))
            }
        }
    }

    /// Topics that got a log (created here or by another broker) or that this broker saw for the
    /// first time: the connections whose patterns match them are handed them.
    func topicsAppeared(_ names: [String]) {
        guard !names.isEmpty else { return }
        let targets = state.withLock { state -> [ObjectIdentifier: (connection: Connection, names: [String])] in
            guard !state.patterns.isEmpty else { return [:] }
            var targets: [ObjectIdentifier: (connection: Connection, names: [String])] = [:]
            for name in names {
                for (id, connection) in state.patterns.connections(matching: name) {
                    targets[id, default: (connection, [])].names.append(name)
                }
            }
            return targets
        }
        for target in targets.values { target.connection.topicsAppeared(target.names) }
    }

    /// Topics another broker created that no notice told of (the `.everything` poll): read only
    /// while a connection here has a pattern.
    func discoverTopics() {
        let patterns = state.withLock { $0.patterns.patterns }
        guard !patterns.isEmpty else { return }
        topics(matching: patterns) { [self] result in
            // A failed read is counted and logged; the next poll reads again.
            guard case .success(let names) = result else { return }
            topicsAppeared(state.withLock { state in names.filter { state.topics[$0]?.record == nil } })
        }
    }

    // MARK: - Durable records

    /// A durable pattern subscribe: its record and the positions of the topics it matched now,
    /// stored at once (as a topic subscribe is), so a resume does not take them for new topics.
    func putPattern(_ pattern: SubscriptionRecord, members: [SubscriptionRecord], from connection: Connection) {
        let owned = state.withLock { state in
            guard state.sessions[pattern.clientID]?.owner === connection else { return false }
            for record in [pattern] + members {
                state.sessions[pattern.clientID]?.subscriptions[record.topic] = record
                state.dirtySubscriptions[Self.key(record.clientID, record.topic)] = nil
            }
            return true
        }
        guard owned else { return }
        committer.submit(([pattern] + members).map { .putSubscription($0) }, completion: nil)
    }

    /// Positions of topics a durable pattern matched after it was subscribed, persisted with the
    /// next flush of acks.
    func recordMembers(_ records: [SubscriptionRecord], from connection: Connection) {
        guard let clientID = records.first?.clientID else { return }
        state.withLock { state in
            guard state.sessions[clientID]?.owner === connection else { return }
            for record in records {
                state.sessions[clientID]?.subscriptions[record.topic] = record
                state.dirtySubscriptions[Self.key(clientID, record.topic)] = record
            }
        }
    }

    /// A durable pattern unsubscribe: its record and its topics' go, but those another pattern
    /// of the session took over, which are stored under that one.
    func removePattern(_ text: String, clientID: String, removing topics: [String], moving moved: [SubscriptionRecord]) {
        state.withLock { state in
            for topic in [text] + topics {
                state.sessions[clientID]?.subscriptions[topic] = nil
                state.dirtySubscriptions[Self.key(clientID, topic)] = nil
            }
            for record in moved {
                state.sessions[clientID]?.subscriptions[record.topic] = record
                state.dirtySubscriptions[Self.key(clientID, record.topic)] = nil
            }
        }
        let deletes = ([text] + topics).map { StoreOperation.deleteSubscription(clientID: clientID, topic: $0) }
        committer.submit(deletes + moved.map { .putSubscription($0) }, completion: nil)
    }
}
