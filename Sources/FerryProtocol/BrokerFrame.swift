import Foundation

/// A frame sent by the broker, decoded on the client side.
public enum BrokerFrame: Sendable, Equatable {
    case welcome(Welcome)
    /// A topic's subscription; `pattern` when it came from a pattern subscription.
    case subscribed(id: Int64?, topic: String, epoch: String, head: UInt64, from: UInt64, pattern: String?)
    /// The answer to a pattern subscription, with the count of topics it matched then.
    case patternSubscribed(id: Int64?, pattern: String, matched: Int)
    case message(Message)
    case published(id: Int64?, topic: String, version: UInt64, duplicate: Bool)
    case unsubscribed(id: Int64?, topic: String)
    case gap(topic: String, from: UInt64, to: UInt64)
    case reset(topic: String, oldEpoch: String, epoch: String)
    case error(id: Int64?, ProtocolError)
    case pong(id: Int64?)

    public struct Welcome: Sendable, Equatable {
        public var clientID: String?
        public var resumeToken: String?
        public var resumed: Bool
        public var subscriptions: [RestoredSubscription]
        /// The pattern subscriptions restored.
        public var patterns: [String]
        public var heartbeatSeconds: Double
        public var limits: Limits
    }

    public struct Message: Sendable, Equatable {
        public var topic: String
        public var version: UInt64
        /// Milliseconds since 1970, the commit time.
        public var timestamp: UInt64
        public var payload: Payload
        public var headers: [String: String]
    }

    /// Decodes one text frame from a broker.
    public static func decode(_ text: [UInt8]) throws(ProtocolError) -> BrokerFrame {
        let scanned: [JSONScanner.Member]?
        do {
            scanned = try JSONScanner.members(of: text)
        } catch {
            throw ProtocolError(.badFrame, "\(error)")
        }
        guard let members = scanned else { throw ProtocolError(.badFrame, "a frame must be a JSON object") }
        let fields = Fields(text: text, members: members)
        let id = try fields.integer("id")
        switch try fields.string("op") {
        case "welcome":
            var subscriptions: [RestoredSubscription] = []
            if let list = fields.member("subscriptions"), list.kind == .array {
                for element in try Self.elements(text, list.value) where element.kind == .object {
                    let item = Fields(text: text, members: try Self.members(text, element.value))
                    subscriptions.append(
                        RestoredSubscription(
                            topic: try item.required("topic"), epoch: try item.required("epoch"),
                            ackFloor: try item.version("ack_floor"), pattern: try item.string("pattern")))
                }
            }
            var patterns: [String] = []
            if let list = fields.member("patterns"), list.kind == .array {
                for element in try Self.elements(text, list.value) where element.kind == .object {
                    patterns.append(try Fields(text: text, members: try Self.members(text, element.value)).required("pattern"))
                }
            }
            var limits = Limits()
            if let object = fields.member("limits"), object.kind == .object {
                let item = Fields(text: text, members: try Self.members(text, object.value))
                limits.maxMessageBytes = Int(try item.integer("max_message_bytes") ?? Int64(limits.maxMessageBytes))
                limits.maxSubscriptions = Int(try item.integer("max_subscriptions") ?? Int64(limits.maxSubscriptions))
                limits.publishRate = Int(try item.integer("publish_rate") ?? Int64(limits.publishRate))
                limits.publishBurst = Int(try item.integer("publish_burst") ?? Int64(limits.publishBurst))
                limits.maxPendingBytes = Int(try item.integer("max_pending_bytes") ?? Int64(limits.maxPendingBytes))
                limits.maxPatterns = Int(try item.integer("max_patterns") ?? Int64(limits.maxPatterns))
                limits.maxPatternTopics = Int(try item.integer("max_pattern_topics") ?? Int64(limits.maxPatternTopics))
            }
            return .welcome(
                Welcome(
                    clientID: try fields.string("client_id"), resumeToken: try fields.string("resume_token"),
                    resumed: try fields.bool("resumed") ?? false, subscriptions: subscriptions, patterns: patterns,
                    heartbeatSeconds: try fields.number("heartbeat") ?? 20, limits: limits))
        case "subscribed":
            if let matched = try fields.integer("matched") {
                return .patternSubscribed(id: id, pattern: try fields.required("topic"), matched: Int(clamping: matched))
            }
            return .subscribed(
                id: id, topic: try fields.required("topic"), epoch: try fields.required("epoch"), head: try fields.version("head"),
                from: try fields.version("from"), pattern: try fields.string("pattern"))
        case "msg":
            let payload: Payload
            if let data = fields.member("data") {
                payload = .json(Array(text[data.value]))
            } else if let encoded = try fields.string("data_b64"), let bytes = Data(base64Encoded: encoded) {
                payload = .bytes(Array(bytes))
            } else {
                throw ProtocolError(.badFrame, "msg without data")
            }
            return .message(
                Message(
                    topic: try fields.required("topic"), version: try fields.version("version"), timestamp: try fields.version("ts"),
                    payload: payload, headers: Dictionary(try fields.headers(), uniquingKeysWith: { _, last in last })))
        case "published":
            return .published(
                id: id, topic: try fields.required("topic"), version: try fields.version("version"),
                duplicate: try fields.bool("duplicate") ?? false)
        case "unsubscribed":
            return .unsubscribed(id: id, topic: try fields.required("topic"))
        case "gap":
            return .gap(topic: try fields.required("topic"), from: try fields.version("from"), to: try fields.version("to"))
        case "reset":
            return .reset(topic: try fields.required("topic"), oldEpoch: try fields.required("old_epoch"), epoch: try fields.required("epoch"))
        case "error":
            let code = ErrorCode(rawValue: try fields.string("code") ?? "") ?? .badFrame
            return .error(id: id, ProtocolError(code, try fields.string("message") ?? ""))
        case "pong":
            return .pong(id: id)
        case let op:
            throw ProtocolError(.unknownOp, "unknown op '\(op ?? "")'")
        }
    }

    private static func members(_ text: [UInt8], _ range: Range<Int>) throws(ProtocolError) -> [JSONScanner.Member] {
        do {
            return try JSONScanner.members(of: text, in: range)
        } catch {
            throw ProtocolError(.badFrame, "\(error)")
        }
    }

    private static func elements(_ text: [UInt8], _ range: Range<Int>) throws(ProtocolError) -> [(kind: JSONScanner.Kind, value: Range<Int>)] {
        do {
            return try JSONScanner.elements(of: text, in: range)
        } catch {
            throw ProtocolError(.badFrame, "\(error)")
        }
    }
}

extension Fields {
    func required(_ key: StaticString) throws(ProtocolError) -> String {
        guard let value = try string(key) else { throw ProtocolError(.badFrame, "missing \(key)") }
        return value
    }

    func version(_ key: StaticString) throws(ProtocolError) -> UInt64 {
        guard let value = try integer(key), value >= 0 else { throw ProtocolError(.badFrame, "\(key) must be a version") }
        return UInt64(value)
    }

    func bool(_ key: StaticString) throws(ProtocolError) -> Bool? {
        guard let member = member(key), member.kind != .null else { return nil }
        guard member.kind == .bool else { throw ProtocolError(.badFrame, "\(key) must be a boolean") }
        return text[member.value.lowerBound] == UInt8(ascii: "t")
    }

    func number(_ key: StaticString) throws(ProtocolError) -> Double? {
        guard let member = member(key), member.kind != .null else { return nil }
        guard member.kind == .number, let value = Double(String(decoding: text[member.value], as: UTF8.self)) else {
            throw ProtocolError(.badFrame, "\(key) must be a number")
        }
        return value
    }
}

extension ClientFrame {
    /// The frame as JSON text, as a client sends it.
    public func encode() -> [UInt8] {
        var writer = JSONWriter()
        switch self {
        case .hello(let clientID, let resumeToken):
            writer.field("op", literal: "hello")
            if let clientID { writer.field("client_id", clientID) }
            if let resumeToken { writer.field("resume_token", resumeToken) }
        case .subscribe(let id, let topic, let from, let epoch, let window, let positions, let group):
            writer.field("op", literal: "subscribe")
            if let id { writer.field("id", id) }
            writer.field("topic", topic)
            switch from {
            case .stored: writer.field("from", "stored")
            case .latest: writer.field("from", "latest")
            case .earliest: writer.field("from", "earliest")
            case .after(let version): writer.field("from", version)
            }
            if let epoch { writer.field("epoch", epoch) }
            if let window { writer.field("window", window) }
            if let group { writer.field("group", group) }
            if !positions.isEmpty {
                var object: [UInt8] = [UInt8(ascii: "{")]
                for (index, (topic, position)) in positions.sorted(by: { $0.key < $1.key }).enumerated() {
                    if index > 0 { object.append(UInt8(ascii: ",")) }
                    JSONWriter.appendString(topic, to: &object)
                    object.append(UInt8(ascii: ":"))
                    var item = JSONWriter()
                    item.field("epoch", position.epoch)
                    item.field("version", position.version)
                    object += item.finish()
                }
                object.append(UInt8(ascii: "}"))
                writer.field("positions", rawJSON: object)
            }
        case .ack(let topic, let version):
            writer.field("op", literal: "ack")
            writer.field("topic", topic)
            writer.field("version", version)
        case .publish(let id, let request):
            writer.field("op", literal: "publish")
            if let id { writer.field("id", id) }
            writer.field("topic", request.topic)
            ServerFrame.writePayload(request.payload, to: &writer)
            if let messageID = request.messageID { writer.field("msg_id", messageID) }
            if !request.headers.isEmpty { writer.field("headers", pairs: request.headers) }
        case .unsubscribe(let id, let topic):
            writer.field("op", literal: "unsubscribe")
            if let id { writer.field("id", id) }
            writer.field("topic", topic)
        case .ping(let id):
            writer.field("op", literal: "ping")
            if let id { writer.field("id", id) }
        }
        return writer.finish()
    }
}
