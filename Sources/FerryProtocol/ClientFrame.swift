import Foundation

/// A message payload: JSON text kept verbatim, or opaque bytes.
public enum Payload: Sendable, Equatable {
    /// Valid JSON text, delivered as `data` exactly as published.
    case json([UInt8])
    /// Bytes, delivered as `data_b64`.
    case bytes([UInt8])

    /// The stored bytes; `max_message_bytes` counts these.
    public var bytes: [UInt8] {
        switch self {
        case .json(let text): text
        case .bytes(let bytes): bytes
        }
    }

    public var isJSON: Bool {
        if case .json = self { return true }
        return false
    }
}

/// Where a subscription starts.
public enum StartPosition: Sendable, Equatable {
    /// The durable session's ack floor, else `latest`.
    case stored
    /// Only messages published after the subscribe.
    case latest
    /// The oldest retained message.
    case earliest
    /// Messages after this version.
    case after(UInt64)
}

/// Where a client stands in one topic of a pattern subscription (`subscribe`'s `positions`):
/// delivery goes on after `version` of the log `epoch` names.
public struct TopicPosition: Sendable, Equatable {
    public var epoch: String?
    public var version: UInt64

    public init(epoch: String?, version: UInt64) {
        self.epoch = epoch
        self.version = version
    }
}

/// A message to publish, as it arrives on either transport.
public struct PublishRequest: Sendable, Equatable {
    public var topic: String
    public var payload: Payload
    public var messageID: String?
    public var headers: [(String, String)]

    public init(topic: String, payload: Payload, messageID: String? = nil, headers: [(String, String)] = []) {
        self.topic = topic
        self.payload = payload
        self.messageID = messageID
        self.headers = headers
    }

    public static func == (lhs: PublishRequest, rhs: PublishRequest) -> Bool {
        lhs.topic == rhs.topic && lhs.payload == rhs.payload && lhs.messageID == rhs.messageID
            && lhs.headers.elementsEqual(rhs.headers, by: ==)
    }

    /// At most this many headers per message.
    public static let maxHeaders = 16
}

/// A frame sent by a client, decoded and validated against PROTOCOL.md.
public enum ClientFrame: Sendable, Equatable {
    case hello(clientID: String?, resumeToken: String?)
    /// `topic` is a topic name or a pattern (``TopicPattern/looksLikePattern(_:)``); `positions`,
    /// for a pattern only, are where the client stands in topics it already had (a client
    /// without a durable session, subscribing again after a reconnect).
    /// `group` makes the subscription a member of a queue group (a `work_queue` topic).
    case subscribe(
        id: Int64?, topic: String, from: StartPosition, epoch: String?, window: Int?, positions: [String: TopicPosition] = [:], group: String? = nil)
    case ack(topic: String, version: UInt64)
    case publish(id: Int64?, PublishRequest)
    /// `topic` is a topic name or a pattern.
    case unsubscribe(id: Int64?, topic: String)
    case ping(id: Int64?)

    /// The window range a subscription may ask for.
    public static let windowRange = 1...65536
    public static let defaultWindow = 1024

    /// A decoding failure, with the request `id` when it could be read so the reply can echo it.
    public struct DecodingError: Error, Sendable, Equatable {
        public let error: ProtocolError
        public let id: Int64?
        public let op: String?
    }

    /// Decodes one text frame.
    public static func decode(_ text: [UInt8]) throws(DecodingError) -> ClientFrame {
        let scanned: [JSONScanner.Member]?
        do {
            scanned = try JSONScanner.members(of: text)
        } catch {
            throw DecodingError(error: ProtocolError(.badFrame, "\(error)"), id: nil, op: nil)
        }
        guard let members = scanned else {
            throw DecodingError(error: ProtocolError(.badFrame, "a frame must be a JSON object"), id: nil, op: nil)
        }
        let fields = Fields(text: text, members: members)
        // Read `op` and `id` first so every later error can name them.
        let op: String
        let id: Int64?
        do throws(ProtocolError) {
            guard let name = try fields.string("op") else { throw ProtocolError(.badFrame, "missing op") }
            op = name
        } catch {
            throw DecodingError(error: error, id: try? fields.integer("id"), op: nil)
        }
        do {
            id = try fields.integer("id")
        } catch {
            throw DecodingError(error: error, id: nil, op: op)
        }
        do {
            return try decode(op: op, id: id, fields: fields)
        } catch {
            throw DecodingError(error: error, id: id, op: op)
        }
    }

    private static func decode(op: String, id: Int64?, fields: Fields) throws(ProtocolError) -> ClientFrame {
        switch op {
        case "hello":
            return .hello(clientID: try fields.string("client_id"), resumeToken: try fields.string("resume_token"))
        case "subscribe":
            let topic = try fields.topicOrPattern()
            let window = try fields.integer("window")
            if let window, !windowRange.contains(Int(clamping: window)) {
                throw ProtocolError(.badFrame, "window must be between 1 and 65536")
            }
            let from = try fields.startPosition()
            let epoch = try fields.string("epoch")
            let positions = try fields.positions()
            if TopicPattern.looksLikePattern(topic) {
                // One version or epoch cannot name a position in many topics: `positions` does.
                if case .after = from { throw ProtocolError(.badFrame, "from must be stored, latest or earliest for a pattern") }
                if epoch != nil { throw ProtocolError(.badFrame, "a pattern subscription takes no epoch") }
            } else if !positions.isEmpty {
                throw ProtocolError(.badFrame, "positions are for a pattern subscription")
            }
            let group = try fields.string("group")
            if let group {
                guard Names.isValidClientID(group) else { throw ProtocolError(.badFrame, "group names are 1-128 bytes of A-Z a-z 0-9 _ - . : @") }
                guard !TopicPattern.looksLikePattern(topic) else { throw ProtocolError(.badFrame, "a queue group subscribes to one topic, not a pattern") }
            }
            return .subscribe(
                id: id, topic: topic, from: from, epoch: epoch, window: window.map { Int($0) }, positions: positions, group: group)
        case "ack":
            let topic = try fields.topic()
            guard let version = try fields.integer("version") else {
                throw ProtocolError(.badFrame, "ack needs a version")
            }
            guard version >= 0 else { throw ProtocolError(.badFrame, "version must not be negative") }
            return .ack(topic: topic, version: UInt64(version))
        case "publish":
            return .publish(id: id, try fields.publishRequest())
        case "unsubscribe":
            return .unsubscribe(id: id, topic: try fields.topicOrPattern())
        case "ping":
            return .ping(id: id)
        default:
            throw ProtocolError(.unknownOp, "unknown op '\(op)'")
        }
    }
}

/// Typed access to the members of a scanned JSON object.
struct Fields {
    let text: [UInt8]
    let members: [JSONScanner.Member]

    func member(_ key: StaticString) -> JSONScanner.Member? {
        // Frames have a handful of members: a linear search beats hashing them. The last of a
        // repeated key counts; a key of another length (and no escapes) is not compared.
        let length = key.utf8CodeUnitCount + 2
        for member in members.reversed() where member.keyEscaped || member.keyRange.count == length {
            if member.hasKey(key, in: text) { return member }
        }
        return nil
    }

    /// A string field; null and absent are both nil.
    func string(_ key: StaticString) throws(ProtocolError) -> String? {
        guard let member = member(key), member.kind != .null else { return nil }
        guard member.kind == .string else { throw ProtocolError(.badFrame, "\(key) must be a string") }
        // The scan validated the text: a string without escapes is its bytes between the quotes.
        if !member.valueEscaped { return String(decoding: text[(member.value.lowerBound + 1)..<(member.value.upperBound - 1)], as: UTF8.self) }
        do {
            return try JSONScanner.string(in: text, member.value)
        } catch {
            throw ProtocolError(.badFrame, "\(key): \(error)")
        }
    }

    /// An integer field: JSON numbers without fraction or exponent that fit in 64 bits.
    func integer(_ key: StaticString) throws(ProtocolError) -> Int64? {
        guard let member = member(key), member.kind != .null else { return nil }
        guard member.kind == .number, let value = Self.integer(text[member.value]) else {
            throw ProtocolError(.badFrame, "\(key) must be an integer")
        }
        return value
    }

    /// A JSON number's text as an Int64, read without making a String (every publish has an
    /// `id`); nil for a fraction, an exponent or a value out of range.
    static func integer(_ number: ArraySlice<UInt8>) -> Int64? {
        let negative = number.first == UInt8(ascii: "-")
        let digits = negative ? number.dropFirst() : number
        guard !digits.isEmpty else { return nil }
        var magnitude: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            let (tens, overflowed) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, carried) = tens.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflowed && !carried else { return nil }
            magnitude = sum
        }
        if negative { return magnitude <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- magnitude) : nil }
        return magnitude <= UInt64(Int64.max) ? Int64(magnitude) : nil
    }

    func topic() throws(ProtocolError) -> String {
        guard let topic = try string("topic") else { throw ProtocolError(.badFrame, "missing topic") }
        guard Names.isValidTopic(topic) else {
            throw ProtocolError(.invalidTopic, "topic names are 1-255 bytes of A-Z a-z 0-9 _ - . : / and cannot start with $")
        }
        return topic
    }

    /// A topic name, or a pattern (`subscribe` and `unsubscribe` take either).
    func topicOrPattern() throws(ProtocolError) -> String {
        guard let text = try string("topic") else { throw ProtocolError(.badFrame, "missing topic") }
        guard TopicPattern.looksLikePattern(text) else { return try topic() }
        guard TopicPattern(subscribing: text) != nil else {
            throw ProtocolError(
                .invalidTopic, "a pattern is topic-name tokens, '*' for one token, '>' (last) for the rest; '\(text)' is not one")
        }
        return text
    }

    func startPosition() throws(ProtocolError) -> StartPosition {
        guard let member = member("from"), member.kind != .null else { return .stored }
        switch member.kind {
        case .string:
            switch try string("from") {
            case "stored": return .stored
            case "latest": return .latest
            case "earliest": return .earliest
            default: throw ProtocolError(.badFrame, "from must be stored, latest, earliest or a version")
            }
        case .number:
            guard let version = try integer("from"), version >= 0 else {
                throw ProtocolError(.badFrame, "from must be a version >= 0")
            }
            return .after(UInt64(version))
        default:
            throw ProtocolError(.badFrame, "from must be stored, latest, earliest or a version")
        }
    }

    func publishRequest() throws(ProtocolError) -> PublishRequest {
        let topic = try topic()
        let payload: Payload
        switch (member("data"), try string("data_b64")) {
        case (let data?, nil):
            payload = .json(Array(text[data.value]))
        case (nil, let encoded?):
            guard let bytes = Data(base64Encoded: encoded) else {
                throw ProtocolError(.badFrame, "data_b64 is not valid base64")
            }
            payload = .bytes(Array(bytes))
        default:
            throw ProtocolError(.badFrame, "a publish needs exactly one of data or data_b64")
        }
        let messageID = try string("msg_id")
        if let messageID, !Names.isValidMessageID(messageID) {
            throw ProtocolError(.badFrame, "msg_id must be 1-128 bytes")
        }
        return PublishRequest(topic: topic, payload: payload, messageID: messageID, headers: try headers())
    }

    /// `{"topic":{"epoch":"…","version":V}, …}`.
    func positions() throws(ProtocolError) -> [String: TopicPosition] {
        guard let member = member("positions"), member.kind != .null else { return [:] }
        guard member.kind == .object else { throw ProtocolError(.badFrame, "positions must be an object of {epoch, version}") }
        var positions: [String: TopicPosition] = [:]
        do {
            for entry in try JSONScanner.members(of: text, in: member.value) {
                let topic = entry.key(in: text)
                guard Names.isValidTopic(topic) else { throw ProtocolError(.invalidTopic, "positions: '\(topic)' is not a topic name") }
                guard entry.kind == .object else { throw ProtocolError(.badFrame, "positions: \(topic) must be {epoch, version}") }
                let position = Fields(text: text, members: try JSONScanner.members(of: text, in: entry.value))
                guard let version = try position.integer("version"), version >= 0 else {
                    throw ProtocolError(.badFrame, "positions: \(topic) needs a version >= 0")
                }
                positions[topic] = TopicPosition(epoch: try position.string("epoch"), version: UInt64(version))
            }
        } catch let error as ProtocolError {
            throw error
        } catch {
            throw ProtocolError(.badFrame, "positions: \(error)")
        }
        return positions
    }

    func headers() throws(ProtocolError) -> [(String, String)] {
        guard let member = member("headers"), member.kind != .null else { return [] }
        guard member.kind == .object else { throw ProtocolError(.badFrame, "headers must be an object of strings") }
        let pairs: [JSONScanner.Member]
        do {
            pairs = try JSONScanner.members(of: text, in: member.value)
        } catch {
            throw ProtocolError(.badFrame, "headers: \(error)")
        }
        guard pairs.count <= PublishRequest.maxHeaders else {
            throw ProtocolError(.badFrame, "at most \(PublishRequest.maxHeaders) headers")
        }
        var headers: [(String, String)] = []
        for pair in pairs {
            guard pair.kind == .string else { throw ProtocolError(.badFrame, "header values must be strings") }
            do {
                headers.append((pair.key(in: text), try JSONScanner.string(in: text, pair.value)))
            } catch {
                throw ProtocolError(.badFrame, "headers: \(error)")
            }
        }
        return headers
    }
}

/// The body of `POST /v1/publish`: `{"messages":[{"topic","data" or "data_b64","msg_id?","headers?"}]}`.
public enum BatchPublishBody {
    /// Decodes and validates every message; one invalid message fails the whole body.
    public static func decode(_ body: [UInt8]) throws(ProtocolError) -> [PublishRequest] {
        let object: [JSONScanner.Member]?
        do {
            object = try JSONScanner.members(of: body)
        } catch {
            throw ProtocolError(.badFrame, "\(error)")
        }
        guard let object, let list = Fields(text: body, members: object).member("messages"), list.kind == .array else {
            throw ProtocolError(.badFrame, #"the body must be {"messages": [...]}"#)
        }
        let elements: [(kind: JSONScanner.Kind, value: Range<Int>)]
        do {
            elements = try JSONScanner.elements(of: body, in: list.value)
        } catch {
            throw ProtocolError(.badFrame, "\(error)")
        }
        guard !elements.isEmpty else { throw ProtocolError(.badFrame, "messages is empty") }
        var requests: [PublishRequest] = []
        requests.reserveCapacity(elements.count)
        for (index, element) in elements.enumerated() {
            guard element.kind == .object else { throw ProtocolError(.badFrame, "messages[\(index)] must be an object") }
            do {
                let members = try JSONScanner.members(of: body, in: element.value)
                requests.append(try Fields(text: body, members: members).publishRequest())
            } catch let error as ProtocolError {
                throw ProtocolError(error.code, "messages[\(index)]: \(error.message)")
            } catch {
                throw ProtocolError(.badFrame, "messages[\(index)]: \(error)")
            }
        }
        return requests
    }
}
