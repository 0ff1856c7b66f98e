import FerryProtocol

/// Per-topic configuration set by pattern: kept in the store (so it outlives restarts and is the
/// same on every broker of a cluster), enforced by the engines at commit and in `.sweep`, and read
/// by the core for its publish checks and views.

/// What decides when a topic's messages are deleted.
public enum RetentionKind: String, Sendable, CaseIterable {
    /// The topic's limits (messages, bytes, age), and an operator's trim.
    case limits
    /// Also once every durable subscription of the topic has acked a message (``InterestRetention``).
    case interest
    /// Consumed by queue groups: a message goes once a member has acked it (and those before it).
    case workQueue = "work_queue"
}

/// A bound a configuration entry sets: a number, or none (overriding a global bound).
public enum TopicLimit: Sendable, Hashable {
    case unlimited
    /// At least 1: the admin API refuses 0, and the engines store `.unlimited` as 0.
    case atMost(UInt64)

    /// The bound, nil when unlimited.
    public var bound: UInt64? {
        switch self {
        case .unlimited: nil
        case .atMost(let bound): bound
        }
    }
}

/// The settings one entry gives the topics its pattern matches; nil fields fall back to the
/// global setting (`FERRY_RETENTION_*`, `FERRY_DEDUP_WINDOW`, `FERRY_MAX_MESSAGE_BYTES`).
public struct TopicConfig: Sendable, Hashable {
    public var maxMessages: TopicLimit?
    /// Payload bytes.
    public var maxBytes: TopicLimit?
    /// Milliseconds.
    public var maxAge: TopicLimit?
    /// At most the global payload limit (the WebSocket frame limit derives from that one).
    public var maxMessageBytes: UInt64?
    /// Milliseconds; 0 remembers no `msg_id`.
    public var dedupWindow: UInt64?
    public var retention: RetentionKind?

    public init(
        maxMessages: TopicLimit? = nil, maxBytes: TopicLimit? = nil, maxAge: TopicLimit? = nil, maxMessageBytes: UInt64? = nil,
        dedupWindow: UInt64? = nil, retention: RetentionKind? = nil
    ) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAge = maxAge
        self.maxMessageBytes = maxMessageBytes
        self.dedupWindow = dedupWindow
        self.retention = retention
    }
}

/// What applies to one topic: its most specific entry's fields over the global settings.
public struct EffectiveTopicConfig: Sendable, Equatable {
    /// The entry that applied; nil when none matches (the global settings).
    public var pattern: TopicPattern?
    public var retentionLimits: RetentionPolicy
    /// Milliseconds.
    public var dedupWindow: UInt64
    /// Nil: the broker's global payload limit, which the store does not know.
    public var maxMessageBytes: UInt64?
    public var retention: RetentionKind
}

/// The global settings, and the entries by pattern: a pure value, so the rule of which entry
/// applies is the same in the core and in every engine, and is tested without I/O.
///
/// ```swift
/// var configs = TopicConfigs(defaults: RetentionPolicy(), dedupWindow: 86_400_000)
/// configs[TopicPattern("orders.*")!] = TopicConfig(maxMessages: .atMost(1000))
/// configs.effective(for: "orders.eu").retentionLimits.maxMessages   // 1000
/// ```
public struct TopicConfigs: Sendable, Equatable {
    /// `FERRY_RETENTION_*`.
    public var defaultLimits: RetentionPolicy
    /// `FERRY_DEDUP_WINDOW`, milliseconds.
    public var defaultDedupWindow: UInt64
    public private(set) var entries: [TopicPattern: TopicConfig] = [:]

    public init(defaults: RetentionPolicy, dedupWindow: UInt64, entries: [TopicPattern: TopicConfig] = [:]) {
        defaultLimits = defaults
        defaultDedupWindow = dedupWindow
        self.entries = entries
    }

    public subscript(pattern: TopicPattern) -> TopicConfig? {
        get { entries[pattern] }
        set { entries[pattern] = newValue }
    }

    /// The entries sorted by pattern text, for listings.
    public var byPattern: [(pattern: TopicPattern, config: TopicConfig)] {
        entries.map { ($0.key, $0.value) }.sorted { $0.pattern.description < $1.pattern.description }
    }

    /// The most specific entry whose pattern matches `topic` (``TopicPattern/isMoreSpecific(than:)``).
    public func entry(for topic: String) -> (pattern: TopicPattern, config: TopicConfig)? {
        var best: (pattern: TopicPattern, config: TopicConfig)?
        for (pattern, config) in entries where pattern.matches(topic) {
            if let current = best, !pattern.isMoreSpecific(than: current.pattern) { continue }
            best = (pattern, config)
        }
        return best
    }

    /// What applies to `topic`: each field of its most specific entry, else the global setting.
    /// Fields do not mix across entries: a field the winning entry leaves unset is the global one.
    public func effective(for topic: String) -> EffectiveTopicConfig {
        let entry = entries.isEmpty ? nil : entry(for: topic)
        let config = entry?.config ?? TopicConfig()
        func limit(_ set: TopicLimit?, _ global: UInt64?) -> UInt64? { set.map(\.bound) ?? global }
        return EffectiveTopicConfig(
            pattern: entry?.pattern,
            retentionLimits: RetentionPolicy(
                maxMessages: limit(config.maxMessages, defaultLimits.maxMessages), maxBytes: limit(config.maxBytes, defaultLimits.maxBytes),
                maxAge: limit(config.maxAge, defaultLimits.maxAge)),
            dedupWindow: config.dedupWindow ?? defaultDedupWindow, maxMessageBytes: config.maxMessageBytes,
            retention: config.retention ?? .limits)
    }

    /// The shortest dedup window any topic may have: a sweep need not look at `msg_id`s newer than that.
    public var shortestDedupWindow: UInt64 {
        entries.values.compactMap(\.dedupWindow).reduce(defaultDedupWindow, min)
    }

    /// The configuration after `operation`, when it is a configuration operation.
    public mutating func apply(_ operation: StoreOperation) {
        switch operation {
        case .putTopicConfig(let pattern, let config): entries[pattern] = config
        case .deleteTopicConfig(let pattern): entries[pattern] = nil
        default: break
        }
    }
}

/// ``TopicConfigs/effective(for:)`` remembered per topic, for a commit that meets a topic many times.
public struct EffectiveConfigMemo: Sendable {
    public let configs: TopicConfigs
    private var known: [String: EffectiveTopicConfig] = [:]

    public init(_ configs: TopicConfigs) {
        self.configs = configs
    }

    public mutating func of(_ topic: String) -> EffectiveTopicConfig {
        if let config = known[topic] { return config }
        let config = configs.effective(for: topic)
        known[topic] = config
        return config
    }

    /// Those of `topics` whose retention is `kind`; none at once when no entry sets it.
    public mutating func topics(_ topics: some Sequence<TopicRecord>, retainedBy kind: RetentionKind) -> [TopicRecord] {
        guard configs.entries.values.contains(where: { $0.retention == kind }) else { return [] }
        return topics.filter { of($0.name).retention == kind }
    }
}

extension StoreOperation {
    /// True for the operations that change per-topic configuration.
    public var isTopicConfigChange: Bool {
        switch self {
        case .putTopicConfig, .deleteTopicConfig: true
        default: false
        }
    }
}
