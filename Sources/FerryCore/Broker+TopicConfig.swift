import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// The per-topic configuration as this broker last read it from the store: loaded at start, read
/// again after this broker's own change and whenever the store says another broker may have made
/// one. The engines enforce retention and the dedup window themselves; the core needs it for the
/// payload limit at publish and for the views.
final class TopicConfigMemory: Sendable {
    private struct State {
        var configs: TopicConfigs
        /// Reads are numbered when they start; one that finishes after a later one is dropped.
        var readsStarted: UInt64 = 0
        var newestApplied: UInt64 = 0
    }

    private let state: Mutex<State>

    init(_ configs: TopicConfigs) {
        state = Mutex(State(configs: configs))
    }

    var current: TopicConfigs { state.withLock { $0.configs } }

    /// Numbers a read about to start.
    func startRead() -> UInt64 {
        state.withLock { state in
            state.readsStarted += 1
            return state.readsStarted
        }
    }

    /// Keeps what read `number` found, unless a later read is already kept.
    func finishRead(_ number: UInt64, found configs: TopicConfigs) {
        state.withLock { state in
            guard number > state.newestApplied else { return }
            state.newestApplied = number
            state.configs = configs
        }
    }
}

extension Broker {
    // MARK: - Per-topic configuration

    /// The payload limit of `topic`: its configuration's, at most the global one (the WebSocket
    /// frame limit derives from that), and the pattern that set it, nil for the global one.
    func maxMessageBytes(for topic: String) -> (bytes: Int, pattern: TopicPattern?) {
        let global = configuration.limits.maxMessageBytes
        let configs = topicConfigs.current
        guard !configs.entries.isEmpty, let entry = configs.entry(for: topic), let bytes = entry.config.maxMessageBytes,
            bytes < UInt64(global)
        else { return (global, nil) }
        return (Int(bytes), entry.pattern)
    }

    /// The configuration that applies to `topic`, as the views show it.
    func configInfo(for topic: String) -> TopicConfigInfo {
        let effective = topicConfigs.current.effective(for: topic)
        let global = UInt64(configuration.limits.maxMessageBytes)
        return TopicConfigInfo(
            pattern: effective.pattern?.description, maxMessages: effective.retentionLimits.maxMessages,
            maxBytes: effective.retentionLimits.maxBytes, maxAgeMs: effective.retentionLimits.maxAge,
            maxMessageBytes: min(effective.maxMessageBytes ?? global, global), dedupWindowMs: effective.dedupWindow,
            retention: effective.retention.rawValue)
    }

    /// Reads the configuration from the store again (another broker may have changed it).
    func refreshTopicConfigs() {
        let number = topicConfigs.startRead()
        reader.read({ store throws(StoreError) in try store.topicConfigs() }) { [self] result in
            switch result {
            case .success(let configs):
                topicConfigs.finishRead(number, found: configs)
            case .failure(let error):
                // The store says `.everything` again at its next poll: nothing waits on this read alone.
                metrics.storeFailed(.read, error, ["ferry.read": "topic configuration"])
            }
        }
    }

    /// Reads the configuration from the store and keeps it: after this broker changed it, so that
    /// its next publish check sees the change.
    private func rereadTopicConfigs() async throws(ProtocolError) -> TopicConfigs {
        let number = topicConfigs.startRead()
        let configs = try await readForView("topic configuration") { store throws(StoreError) in try store.topicConfigs() }
        topicConfigs.finishRead(number, found: configs)
        return configs
    }

    /// `GET /v1/admin/config/topics`: every entry, by pattern, as stored.
    public func topicConfigEntries() async throws(ProtocolError) -> [TopicConfigEntry] {
        try await rereadTopicConfigs().byPattern.map { Self.entry($0.pattern, $0.config) }
    }

    /// Creates or replaces the entry of `patternText`, after checking every field (`invalid_topic`
    /// for the pattern, `bad_frame` for the rest); answers it as stored. Retention of the topics it
    /// matches follows from their next commit, or the next sweep (within `sweepInterval`).
    public func putTopicConfig(_ patternText: String, _ entry: TopicConfigEntry) async throws(ProtocolError) -> TopicConfigEntry {
        let pattern = try Self.pattern(patternText)
        if let named = entry.pattern, named != patternText {
            throw ProtocolError(.badFrame, "the body names pattern \(named), the path \(patternText)")
        }
        let config = try config(from: entry)
        if case .failure(let error) = await commit([.putTopicConfig(pattern, config)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        _ = try await rereadTopicConfigs()
        logger.notice("topic configuration set", metadata: ["ferry.pattern": "\(pattern)", "ferry.config": "\(config)"])
        return Self.entry(pattern, config)
    }

    /// Deletes the entry of `patternText`; the topics it matched fall back to a less specific
    /// entry or the global settings. False when there is none.
    public func deleteTopicConfig(_ patternText: String) async throws(ProtocolError) -> Bool {
        let pattern = try Self.pattern(patternText)
        guard try await rereadTopicConfigs()[pattern] != nil else { return false }
        if case .failure(let error) = await commit([.deleteTopicConfig(pattern)]) {
            throw ProtocolError(.unavailable, "\(error)")
        }
        _ = try await rereadTopicConfigs()
        logger.notice("topic configuration deleted", metadata: ["ferry.pattern": "\(pattern)"])
        return true
    }

    private static func pattern(_ text: String) throws(ProtocolError) -> TopicPattern {
        guard Names.isValidTopicPattern(text), let pattern = TopicPattern(text) else {
            throw ProtocolError(
                .invalidTopic,
                "'\(text)' is not a topic pattern: 1-255 bytes of A-Z a-z 0-9 _ - . : / in .-separated tokens, where a token may be * (one token) or, last, > (the rest)"
            )
        }
        return pattern
    }

    /// The entry's fields checked and converted; each refusal names the field and what it takes.
    private func config(from entry: TopicConfigEntry) throws(ProtocolError) -> TopicConfig {
        func limit(_ setting: LimitSetting?, _ field: String) throws(ProtocolError) -> TopicLimit? {
            switch setting {
            case nil: return nil
            case .unlimited: return .unlimited
            case .atMost(0): throw ProtocolError(.badFrame, "\(field) must be at least 1, or null for unlimited")
            case .atMost(let bound): return .atMost(bound)
            }
        }
        let global = UInt64(configuration.limits.maxMessageBytes)
        if let bytes = entry.maxMessageBytes, !(1...global).contains(bytes) {
            throw ProtocolError(
                .badFrame, "max_message_bytes must be 1 to \(global), the broker's max_message_bytes (the WebSocket frame limit derives from it)")
        }
        var retention: RetentionKind?
        if let name = entry.retention {
            switch RetentionKind(rawValue: name) {
            case .limits: retention = .limits
            case .interest: retention = .interest
            case .workQueue: retention = .workQueue
            case nil:
                throw ProtocolError(.badFrame, "retention must be limits, interest or work_queue")
            }
        }
        return TopicConfig(
            maxMessages: try limit(entry.maxMessages, "max_messages"), maxBytes: try limit(entry.maxBytes, "max_bytes"),
            maxAge: try limit(entry.maxAgeMs, "max_age_ms"), maxMessageBytes: entry.maxMessageBytes, dedupWindow: entry.dedupWindowMs,
            retention: retention)
    }

    private static func entry(_ pattern: TopicPattern, _ config: TopicConfig) -> TopicConfigEntry {
        func setting(_ limit: TopicLimit?) -> LimitSetting? {
            limit.map { $0.bound.map(LimitSetting.atMost) ?? .unlimited }
        }
        return TopicConfigEntry(
            pattern: pattern.description, maxMessages: setting(config.maxMessages), maxBytes: setting(config.maxBytes),
            maxAgeMs: setting(config.maxAge), maxMessageBytes: config.maxMessageBytes, dedupWindowMs: config.dedupWindow,
            retention: config.retention?.rawValue)
    }
}
