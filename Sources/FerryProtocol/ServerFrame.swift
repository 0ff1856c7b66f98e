import Foundation

/// The limits a broker announces in `welcome`: what one connection may do before it gets an
/// error or is closed. 0 in `publishRate` means no rate limit.
public struct Limits: Sendable, Equatable {
    public var maxMessageBytes: Int
    public var maxSubscriptions: Int
    /// Publishes per second one connection may sustain (0: unlimited); over it, `rate_limited`.
    public var publishRate: Int
    /// Publishes one connection may send at once above `publishRate`.
    public var publishBurst: Int
    /// Bytes of frames the broker queues for a connection whose socket does not take them;
    /// past it the connection is closed with 4013.
    public var maxPendingBytes: Int
    /// Pattern subscriptions one connection may hold.
    public var maxPatterns: Int
    /// Topics one pattern subscription delivers at most.
    public var maxPatternTopics: Int

    /// The WebSocket frame limit: room for a base64 payload plus the frame's other fields.
    public var maxFrameBytes: Int { 2 * maxMessageBytes + 64 * 1024 }

    public init(
        maxMessageBytes: Int = 1_048_576, maxSubscriptions: Int = 1000, publishRate: Int = 0, publishBurst: Int = 1000,
        maxPendingBytes: Int = 16 << 20, maxPatterns: Int = 100, maxPatternTopics: Int = 10_000
    ) {
        self.maxPatterns = maxPatterns
        self.maxPatternTopics = maxPatternTopics
        self.maxMessageBytes = maxMessageBytes
        self.maxSubscriptions = maxSubscriptions
        self.publishRate = publishRate
        self.publishBurst = publishBurst
        self.maxPendingBytes = maxPendingBytes
    }
}

/// A topic subscription restored by `welcome`.
public struct RestoredSubscription: Sendable, Equatable {
    public var topic: String
    public var epoch: String
    public var ackFloor: UInt64
    /// The pattern subscription the topic is delivered through; nil for a topic subscription.
    public var pattern: String?

    public init(topic: String, epoch: String, ackFloor: UInt64, pattern: String? = nil) {
        self.topic = topic
        self.epoch = epoch
        self.ackFloor = ackFloor
        self.pattern = pattern
    }
}

/// Encoders for the frames a broker sends, one JSON object each.
public enum ServerFrame {
    public static func welcome(
        clientID: String?, resumeToken: String?, resumed: Bool, subscriptions: [RestoredSubscription], patterns: [String] = [],
        heartbeatSeconds: Double, limits: Limits
    ) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "welcome")
        writer.field("client_id", clientID)
        writer.field("resume_token", resumeToken)
        writer.field("resumed", resumed)
        writer.field(
            "subscriptions",
            array: subscriptions.map { subscription in
                var item = JSONWriter()
                item.field("topic", subscription.topic)
                item.field("epoch", subscription.epoch)
                item.field("ack_floor", subscription.ackFloor)
                if let pattern = subscription.pattern { item.field("pattern", pattern) }
                return item.finish()
            })
        writer.field("patterns", array: patterns.map { pattern in
            var item = JSONWriter()
            item.field("pattern", pattern)
            return item.finish()
        })
        writer.field("heartbeat", seconds: heartbeatSeconds)
        writer.field("limits") { nested in
            nested.field("max_message_bytes", limits.maxMessageBytes)
            nested.field("max_frame_bytes", limits.maxFrameBytes)
            nested.field("max_subscriptions", limits.maxSubscriptions)
            nested.field("publish_rate", limits.publishRate)
            nested.field("publish_burst", limits.publishBurst)
            nested.field("max_pending_bytes", limits.maxPendingBytes)
            nested.field("max_patterns", limits.maxPatterns)
            nested.field("max_pattern_topics", limits.maxPatternTopics)
        }
        return writer.finish()
    }

    /// A topic's subscription is in place; `pattern` names the pattern subscription it came
    /// from (then `id` is nil: a pattern's topics are announced as they are matched).
    public static func subscribed(
        id: Int64?, topic: String, epoch: String, head: UInt64, from: UInt64, pattern: String? = nil, group: String? = nil
    ) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "subscribed")
        if let id { writer.field("id", id) }
        writer.field("topic", topic)
        writer.field("epoch", epoch)
        writer.field("head", head)
        writer.field("from", from)
        if let pattern { writer.field("pattern", pattern) }
        if let group { writer.field("group", group) }
        return writer.finish()
    }

    /// The answer to a pattern `subscribe`: `matched` topics were matched now (each announced by
    /// its own `subscribed` frame).
    public static func subscribed(id: Int64?, pattern: String, matched: Int) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "subscribed")
        if let id { writer.field("id", id) }
        writer.field("topic", pattern)
        writer.field("matched", matched)
        return writer.finish()
    }

    /// A `msg` frame. Encoded once per message and shared by every subscriber, in one pass into
    /// an array of the size worked out first.
    public static func message(
        topic: String, version: UInt64, timestamp: UInt64, payload: Payload, headers: [(String, String)]
    ) -> [UInt8] {
        let base64 = payload.isJSON ? nil : Data(payload.bytes).base64EncodedString()
        let data = base64.map(JSONOutput.stringBytes) ?? payload.bytes.count
        var maxBytes = 2 + JSONOutput.keyBytes("op") + 5 + JSONOutput.keyBytes("topic") + JSONOutput.stringBytes(topic)
            + JSONOutput.keyBytes("version") + JSONOutput.maxIntegerBytes + JSONOutput.keyBytes("ts") + JSONOutput.maxIntegerBytes
            + JSONOutput.keyBytes("data_b64") + data
        if !headers.isEmpty { maxBytes += JSONOutput.keyBytes("headers") + JSONOutput.pairsBytes(headers) }
        return JSONOutput.object(maxBytes: maxBytes) { output in
            output.key("op")
            output.quoted("msg")
            output.key("topic")
            output.string(topic)
            output.key("version")
            output.decimal(version)
            output.key("ts")
            output.decimal(timestamp)
            if let base64 {
                output.key("data_b64")
                output.string(base64)
            } else {
                output.key("data")
                output.raw(payload.bytes)
            }
            if !headers.isEmpty {
                output.key("headers")
                output.pairs(headers)
            }
        }
    }

    /// Writes `data` (JSON verbatim) or `data_b64`.
    public static func writePayload(_ payload: Payload, to writer: inout JSONWriter) {
        switch payload {
        case .json(let text): writer.field("data", rawJSON: text)
        case .bytes(let bytes): writer.field("data_b64", Data(bytes).base64EncodedString())
        }
    }

    /// A `published` frame, once per message: written in one pass like `msg`.
    public static func published(id: Int64?, topic: String, version: UInt64, duplicate: Bool) -> [UInt8] {
        let maxBytes = 2 + JSONOutput.keyBytes("op") + 11 + JSONOutput.keyBytes("id") + JSONOutput.maxIntegerBytes
            + JSONOutput.keyBytes("topic") + JSONOutput.stringBytes(topic) + JSONOutput.keyBytes("version")
            + JSONOutput.maxIntegerBytes + JSONOutput.keyBytes("duplicate") + 5
        return JSONOutput.object(maxBytes: maxBytes) { output in
            output.key("op")
            output.quoted("published")
            if let id {
                output.key("id")
                output.decimal(id)
            }
            output.key("topic")
            output.string(topic)
            output.key("version")
            output.decimal(version)
            output.key("duplicate")
            output.raw(duplicate ? "true" : "false")
        }
    }

    public static func unsubscribed(id: Int64?, topic: String) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "unsubscribed")
        if let id { writer.field("id", id) }
        writer.field("topic", topic)
        return writer.finish()
    }

    public static func gap(topic: String, from: UInt64, to: UInt64) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "gap")
        writer.field("topic", topic)
        writer.field("from", from)
        writer.field("to", to)
        return writer.finish()
    }

    public static func reset(topic: String, oldEpoch: String, epoch: String) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "reset")
        writer.field("topic", topic)
        writer.field("old_epoch", oldEpoch)
        writer.field("epoch", epoch)
        return writer.finish()
    }

    public static func error(id: Int64?, _ error: ProtocolError) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "error")
        if let id { writer.field("id", id) }
        writer.field("code", error.code.rawValue)
        writer.field("message", error.message)
        return writer.finish()
    }

    public static func pong(id: Int64?) -> [UInt8] {
        var writer = JSONWriter()
        writer.field("op", literal: "pong")
        if let id { writer.field("id", id) }
        return writer.finish()
    }
}
