import FerryProtocol
import Foundation

/// How Ferry's records are laid out in LMDB (keys big-endian, so byte order is numeric order).
extension LMDBMessageStore {
    // MARK: - Encoding

    static let secretKey = Array("secret".utf8)
    static let nextTopicIDKey = Array("next_topic_id".utf8)

    static func messageKey(_ topicID: UInt64, _ version: UInt64) -> [UInt8] {
        var writer = ByteWriter(capacity: 16)
        writer.append(topicID)
        writer.append(version)
        return writer.bytes
    }

    static func dedupKey(_ topicID: UInt64, _ messageID: String) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + messageID.utf8.count)
        writer.append(topicID)
        writer.append(messageID.utf8)
        return writer.bytes
    }

    /// The expiry index's key of a dedup entry remembered at `stamp`.
    static func dedupTimeKey(_ stamp: Timestamp, _ dedupKey: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 + dedupKey.count)
        writer.append(stamp)
        writer.append(dedupKey)
        return writer.bytes
    }

    static func subscriptionPrefix(_ clientID: String) -> [UInt8] {
        Array(clientID.utf8) + [0]
    }

    static func subscriptionKey(_ clientID: String, _ topic: String) -> [UInt8] {
        subscriptionPrefix(clientID) + Array(topic.utf8)
    }

    static func encodeMessage(_ message: NewMessage, timestamp: Timestamp) -> [UInt8] {
        var writer = ByteWriter(capacity: message.payload.count + 16)
        writer.append(timestamp)
        writer.append(message.kind.rawValue)
        writer.append(UInt8(clamping: message.headers.count))
        for header in message.headers.prefix(Int(UInt8.max)) {
            writer.appendShortString(header.name)
            writer.appendShortString(header.value)
        }
        writer.append(message.payload)
        return writer.bytes
    }

    static func decodeMessage(version: UInt64, _ value: [UInt8]) throws(StoreError) -> StoredMessage {
        var reader = ByteReader(value)
        let timestamp = try reader.uint64()
        guard let kind = PayloadKind(rawValue: try reader.uint8()) else { throw StoreError.corrupted("payload kind") }
        let headerCount = Int(try reader.uint8())
        var headers: [Header] = []
        for _ in 0..<headerCount {
            headers.append(Header(try reader.shortString(), try reader.shortString()))
        }
        return StoredMessage(version: version, timestamp: timestamp, kind: kind, payload: reader.rest(), headers: headers)
    }

    /// Payload size of an encoded message without copying it.
    static func payloadSize(_ value: UnsafeRawBufferPointer) -> Int {
        guard value.count >= 10 else { return 0 }
        var offset = 10
        for _ in 0..<Int(value[9]) {
            for _ in 0..<2 {
                guard offset + 2 <= value.count else { return 0 }
                offset += 2 + (Int(value[offset]) << 8 | Int(value[offset + 1]))
            }
        }
        return max(0, value.count - offset)
    }

    static func encodeTopic(_ topic: TopicRecord) -> [UInt8] {
        var writer = ByteWriter(capacity: 56)
        writer.append(topic.id)
        writer.append(topic.first)
        writer.append(topic.head)
        writer.append(topic.messages)
        writer.append(topic.bytes)
        writer.append(topic.epoch.utf8)
        return writer.bytes
    }

    static func decodeTopic(_ key: [UInt8], _ value: [UInt8]) throws(StoreError) -> TopicRecord {
        var reader = ByteReader(value)
        return TopicRecord(
            name: String(decoding: key, as: UTF8.self), id: try reader.uint64(), epoch: "",
            first: try reader.uint64(), head: try reader.uint64(), messages: try reader.uint64(), bytes: try reader.uint64()
        ).withEpoch(reader.restString())
    }

    static func encodeSession(_ session: SessionRecord) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.append(session.createdAt)
        writer.append(session.lastSeen)
        writer.append(session.incarnation.utf8)
        return writer.bytes
    }

    static func decodeSession(_ key: [UInt8], _ value: [UInt8]) throws(StoreError) -> SessionRecord {
        var reader = ByteReader(value)
        let created = try reader.uint64()
        let lastSeen = try reader.uint64()
        return SessionRecord(
            clientID: String(decoding: key, as: UTF8.self), incarnation: reader.restString(), createdAt: created, lastSeen: lastSeen)
    }

    /// Set in the stored window (at most 65,536) when the pattern that delivers the topic follows
    /// it: records written before patterns existed read unchanged.
    private static let viaPatternFlag: UInt32 = 1 << 31

    static func encodeSubscription(_ subscription: SubscriptionRecord) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.append(subscription.ackFloor)
        let window = UInt32(clamping: min(subscription.window, Int(Int32.max)))
        if let pattern = subscription.pattern {
            writer.append(window | viaPatternFlag)
            writer.appendShortString(pattern)
        } else {
            writer.append(window)
        }
        writer.append(subscription.epoch.utf8)
        return writer.bytes
    }

    static func decodeSubscription(_ key: [UInt8], _ value: [UInt8]) throws(StoreError) -> SubscriptionRecord {
        guard let separator = key.firstIndex(of: 0) else { throw StoreError.corrupted("subscription key") }
        var reader = ByteReader(value)
        let floor = try reader.uint64()
        let window = try reader.uint32()
        let pattern = window & viaPatternFlag != 0 ? try reader.shortString() : nil
        return SubscriptionRecord(
            clientID: String(decoding: key[..<separator], as: UTF8.self),
            topic: String(decoding: key[(separator + 1)...], as: UTF8.self),
            epoch: reader.restString(), ackFloor: floor, window: Int(window & ~viaPatternFlag), pattern: pattern)
    }
}

extension LMDBMessageStore {
    /// A configuration entry: per numeric field (max messages, max bytes, max age, max message
    /// bytes, dedup window) a presence byte and, when 1, the value (an unlimited bound as 0);
    /// then a presence byte and the retention kind's name.
    static func encodeTopicConfig(_ config: TopicConfig) -> [UInt8] {
        var writer = ByteWriter(capacity: 64)
        let limits = [config.maxMessages, config.maxBytes, config.maxAge].map { $0.map { $0.bound ?? 0 } }
        for field in limits + [config.maxMessageBytes, config.dedupWindow] {
            writer.append(UInt8(field == nil ? 0 : 1))
            if let field { writer.append(field) }
        }
        writer.append(UInt8(config.retention == nil ? 0 : 1))
        if let retention = config.retention { writer.appendShortString(retention.rawValue) }
        return writer.bytes
    }

    static func decodeTopicConfig(_ key: [UInt8], _ value: [UInt8]) throws(StoreError) -> (TopicPattern, TopicConfig) {
        guard let pattern = TopicPattern(String(decoding: key, as: UTF8.self)) else { throw StoreError.corrupted("configuration pattern") }
        var reader = ByteReader(value)
        var fields: [UInt64?] = []
        for _ in 0..<5 {
            fields.append(try reader.uint8() == 0 ? nil : try reader.uint64())
        }
        var retention: RetentionKind?
        if try reader.uint8() != 0 {
            guard let kind = RetentionKind(rawValue: try reader.shortString()) else { throw StoreError.corrupted("retention kind") }
            retention = kind
        }
        func limit(_ stored: UInt64?) -> TopicLimit? { stored.map { $0 == 0 ? .unlimited : .atMost($0) } }
        return (
            pattern,
            TopicConfig(
                maxMessages: limit(fields[0]), maxBytes: limit(fields[1]), maxAge: limit(fields[2]), maxMessageBytes: fields[3],
                dedupWindow: fields[4], retention: retention)
        )
    }
}

extension TopicRecord {
    fileprivate func withEpoch(_ epoch: String) -> TopicRecord {
        var copy = self
        copy.epoch = epoch
        return copy
    }
}
