/// Bodies of the per-topic configuration (PROTOCOL.md, "Admin API" and "Retention").

/// A bound in a configuration entry: a number, or `null` on the wire for unlimited.
public enum LimitSetting: Sendable, Equatable {
    case unlimited
    case atMost(UInt64)
}

/// A configuration entry: `GET /v1/admin/config/topics` lists them, `PUT
/// /v1/admin/config/topics/{pattern}` takes one (the pattern in the path) and answers it as stored.
///
/// A field left out falls back to the broker's global setting; `null` in `max_messages`,
/// `max_bytes` or `max_age_ms` is unlimited. Any other key, or a value of the wrong type, is refused.
public struct TopicConfigEntry: Codable, Sendable, Equatable {
    /// The topic pattern (NATS syntax; an exact topic name is one too). Nil in a request body,
    /// whose path names it.
    public var pattern: String?
    public var maxMessages: LimitSetting?
    public var maxBytes: LimitSetting?
    public var maxAgeMs: LimitSetting?
    public var maxMessageBytes: UInt64?
    public var dedupWindowMs: UInt64?
    /// `limits`, `interest` or `work_queue`.
    public var retention: String?

    public init(
        pattern: String? = nil, maxMessages: LimitSetting? = nil, maxBytes: LimitSetting? = nil, maxAgeMs: LimitSetting? = nil,
        maxMessageBytes: UInt64? = nil, dedupWindowMs: UInt64? = nil, retention: String? = nil
    ) {
        self.pattern = pattern
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAgeMs = maxAgeMs
        self.maxMessageBytes = maxMessageBytes
        self.dedupWindowMs = dedupWindowMs
        self.retention = retention
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case pattern, maxMessages = "max_messages", maxBytes = "max_bytes", maxAgeMs = "max_age_ms"
        case maxMessageBytes = "max_message_bytes", dedupWindowMs = "dedup_window_ms", retention
    }

    /// Strict: unknown keys are refused (a misspelt field would otherwise be silently unset).
    public init(from decoder: any Decoder) throws {
        let any = try decoder.container(keyedBy: AnyKey.self)
        if let unknown = any.allKeys.first(where: { CodingKeys(stringValue: $0.stringValue) == nil }) {
            throw DecodingError.dataCorruptedError(
                forKey: unknown, in: any,
                debugDescription: "unknown field \(unknown.stringValue); the fields are "
                    + CodingKeys.allCases.map(\.stringValue).joined(separator: ", "))
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func limit(_ key: CodingKeys) throws -> LimitSetting? {
            guard container.contains(key) else { return nil }
            return try container.decodeNil(forKey: key) ? .unlimited : .atMost(try container.decode(UInt64.self, forKey: key))
        }
        func required<T: Decodable>(_ type: T.Type, _ key: CodingKeys, _ what: String) throws -> T? {
            guard container.contains(key) else { return nil }
            if try container.decodeNil(forKey: key) {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: container, debugDescription: "\(key.stringValue) must be \(what) (leave it out for the global setting)")
            }
            return try container.decode(type, forKey: key)
        }
        pattern = try required(String.self, .pattern, "a pattern")
        maxMessages = try limit(.maxMessages)
        maxBytes = try limit(.maxBytes)
        maxAgeMs = try limit(.maxAgeMs)
        maxMessageBytes = try required(UInt64.self, .maxMessageBytes, "a number of bytes")
        dedupWindowMs = try required(UInt64.self, .dedupWindowMs, "a number of milliseconds")
        retention = try required(String.self, .retention, "limits")
    }

    /// Fields not set are left out; an unlimited bound is `null`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(pattern, forKey: .pattern)
        for (key, limit) in [(CodingKeys.maxMessages, maxMessages), (.maxBytes, maxBytes), (.maxAgeMs, maxAgeMs)] {
            switch limit {
            case nil: continue
            case .unlimited: try container.encodeNil(forKey: key)
            case .atMost(let bound): try container.encode(bound, forKey: key)
            }
        }
        try container.encodeIfPresent(maxMessageBytes, forKey: .maxMessageBytes)
        try container.encodeIfPresent(dedupWindowMs, forKey: .dedupWindowMs)
        try container.encodeIfPresent(retention, forKey: .retention)
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

/// `GET /v1/admin/config/topics`.
public struct TopicConfigList: Codable, Sendable {
    public var configs: [TopicConfigEntry]

    public init(configs: [TopicConfigEntry]) {
        self.configs = configs
    }
}

/// The configuration that applies to one topic (`config` in `GET /v1/topics/{topic}`): its most
/// specific entry's fields over the global settings. Every field is present; `null` is
/// unlimited, and `pattern` is null when no entry matches.
public struct TopicConfigInfo: Codable, Sendable, Equatable {
    public var pattern: String?
    public var maxMessages: UInt64?
    public var maxBytes: UInt64?
    public var maxAgeMs: UInt64?
    public var maxMessageBytes: UInt64
    public var dedupWindowMs: UInt64
    public var retention: String

    public init(
        pattern: String?, maxMessages: UInt64?, maxBytes: UInt64?, maxAgeMs: UInt64?, maxMessageBytes: UInt64, dedupWindowMs: UInt64,
        retention: String
    ) {
        self.pattern = pattern
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxAgeMs = maxAgeMs
        self.maxMessageBytes = maxMessageBytes
        self.dedupWindowMs = dedupWindowMs
        self.retention = retention
    }

    typealias CodingKeys = TopicConfigEntry.CodingKeys

    /// Nil as `null`, not left out: a missing field would read as "not known".
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(pattern, forKey: .pattern)
        try container.encode(maxMessages, forKey: .maxMessages)
        try container.encode(maxBytes, forKey: .maxBytes)
        try container.encode(maxAgeMs, forKey: .maxAgeMs)
        try container.encode(maxMessageBytes, forKey: .maxMessageBytes)
        try container.encode(dedupWindowMs, forKey: .dedupWindowMs)
        try container.encode(retention, forKey: .retention)
    }
}
