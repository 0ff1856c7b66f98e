import FerryProtocol

/// Interest retention (``RetentionKind/interest``): a topic keeps a message only while a durable
/// subscription of the topic has not acked it, and keeps nothing when it has none. A pure rule,
/// so every engine deletes the same versions; the engines apply it at each `.sweep`.
public enum InterestRetention {
    /// For each of `topics`, the version through which its messages may be deleted, when some
    /// may: the lowest ack floor of its durable subscriptions. A subscription in another epoch
    /// holds the whole log (it is reset to the first version), and so does a pattern subscription
    /// that matches the topic but has no position in it yet (it will be delivered from the first
    /// version). A topic nobody subscribes to may lose everything.
    ///
    /// - Parameter subscriptions: every durable subscription record, pattern records included.
    public static func deletableThrough(_ topics: [TopicRecord], subscriptions: [SubscriptionRecord]) -> [String: UInt64] {
        guard !topics.isEmpty else { return [:] }
        var byTopic: [String: [SubscriptionRecord]] = [:]
        var patterns: [(pattern: TopicPattern, clientID: String)] = []
        for record in subscriptions {
            if record.isPattern {
                if let pattern = TopicPattern(record.topic) { patterns.append((pattern, record.clientID)) }
            } else {
                byTopic[record.topic, default: []].append(record)
            }
        }
        var cuts: [String: UInt64] = [:]
        for topic in topics where topic.messages > 0 {
            let records = byTopic[topic.name] ?? []
            let positioned = Set(records.map(\.clientID))
            if patterns.contains(where: { !positioned.contains($0.clientID) && $0.pattern.matches(topic.name) }) { continue }
            let floor = records.map { $0.epoch == topic.epoch ? min($0.ackFloor, topic.head) : 0 }.min() ?? topic.head
            if floor >= topic.first { cuts[topic.name] = floor }
        }
        return cuts
    }
}
