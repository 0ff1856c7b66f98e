import DequeModule
import FerryProtocol
import Foundation
import Logging

/// The frames the client gets from the broker, and those it sends.
extension ClientCore {
    // MARK: - Frames from the broker

    func received(_ text: [UInt8]) {
        heard()
        let frame: BrokerFrame
        do {
            frame = try BrokerFrame.decode(text)
        } catch {
            logger.warning("undecodable frame from the broker", metadata: ["error": "\(error)"])
            return
        }
        switch frame {
        case .welcome(let welcome): welcomed(welcome)
        case .subscribed(_, let name, let epoch, _, let from, let pattern):
            if let pattern { adopt(name, pattern: pattern, epoch: epoch) }
            topics[name]?.epoch = epoch
            topics[name]?.live = true
            topics[name]?.ackSent = from - 1
            rememberEpoch(name)
        case .patternSubscribed(_, let pattern, _):
            patterns[pattern]?.live = true
        case .message(let message): deliver(message)
        case .published(let id, _, let version, _): confirm(requestID: id, with: .success(version))
        case .unsubscribed: break
        case .gap(let name, let from, let to):
            announce(.gap(topic: name, from: from, to: to))
        case .reset(let name, let oldEpoch, let epoch):
            topics[name]?.epoch = epoch
            topics[name]?.delivered = 0
            topics[name]?.acked = 0
            topics[name]?.ackSent = 0
            saved.topics[name] = ClientStore.TopicPosition(epoch: epoch, acked: 0)
            scheduleSave()
            announce(.reset(topic: name, oldEpoch: oldEpoch, epoch: epoch))
        case .error(let id, let error):
            if let id, inFlight[id] != nil {
                confirm(requestID: id, with: .failure(FerryClientError.rejected(error)))
            } else {
                logger.warning("broker error", metadata: ["ferry.code": "\(error.code.rawValue)", "ferry.message": "\(error.message)"])
            }
        case .pong: break
        }
    }

    private func welcomed(_ welcome: BrokerFrame.Welcome) {
        saved.clientID = welcome.clientID ?? saved.clientID
        saved.resumeToken = welcome.resumeToken
        scheduleSave()
        watch.welcomed(heartbeat: .milliseconds(Int64(max(0.1, welcome.heartbeatSeconds) * 1000)), at: clock.now())
        nap?.cancel()
        machine.connected(at: clock.now())
        publishState()
        for pattern in welcome.patterns { patterns[pattern]?.live = true }
        for restored in welcome.subscriptions {
            if let pattern = restored.pattern { adopt(restored.topic, pattern: pattern, epoch: restored.epoch) }
            guard var topic = topics[restored.topic] else { continue }
            topic.live = true
            topic.ackSent = restored.ackFloor
            if topic.epoch == nil { topic.epoch = restored.epoch }
            topics[restored.topic] = topic
        }
        for (name, topic) in topics where !topic.live && topic.continuation != nil {
            sendSubscribe(name)
        }
        for (name, pattern) in patterns where !pattern.live && pattern.continuation != nil {
            sendSubscribe(name)
        }
        for request in outbox.sendable { sendPublish(request) }
    }

    private func deliver(_ message: BrokerFrame.Message) {
        guard var topic = topics[message.topic] else { return }
        topic.received = max(topic.received, message.version)
        // A queue group's messages come in any order, each once per hand-out: no version order to keep.
        if topic.group != nil || message.version > topic.delivered, let continuation = topic.continuation ?? topic.pattern.flatMap({ patterns[$0]?.continuation }) {
            topic.delivered = message.version
            let payload: Data
            let isJSON: Bool
            switch message.payload {
            case .json(let text): payload = Data(text); isJSON = true
            case .bytes(let bytes): payload = Data(bytes); isJSON = false
            }
            continuation.yield(
                FerryMessage(
                    topic: message.topic, version: message.version,
                    timestamp: Date(timeIntervalSince1970: Double(message.timestamp) / 1000), payload: payload, isJSON: isJSON,
                    headers: message.headers, events: topic.announced, epoch: topic.epoch, core: self))
            topic.announced = []
        }
        topics[message.topic] = topic
        flushAck(message.topic)
    }

    private func confirm(requestID: Int64?, with result: Result<UInt64, any Error>) {
        guard let requestID, let id = inFlight.removeValue(forKey: requestID) else { return }
        for waiter in waiters.removeValue(forKey: id) ?? [] { waiter.resume(with: result) }
        for request in outbox.remove(id) { sendPublish(request) }
    }

    // MARK: - Frames to the broker

    func send(_ frame: ClientFrame) {
        sender?.yield(frame.encode())
    }

    /// A topic the broker delivers through `pattern`: its position is kept like a subscribed
    /// topic's (from the session file when this process has seen it before).
    func adopt(_ name: String, pattern: String, epoch: String) {
        guard patterns[pattern] != nil else { return }
        if topics[name] == nil {
            let position = saved.topics[name].flatMap { $0.epoch == epoch ? $0 : nil }
            topics[name] = Topic(start: .stored, window: nil, epoch: epoch, delivered: position?.acked ?? 0, acked: position?.acked ?? 0)
        }
        // A topic subscription of the application keeps its own sequence.
        if topics[name]?.continuation == nil { topics[name]?.pattern = pattern }
    }

    func sendSubscribe(_ name: String) {
        if let pattern = patterns[name] {
            // Where the application stands in the pattern's topics wins, as for a topic.
            var positions: [String: TopicPosition] = [:]
            for (topic, entry) in topics where entry.pattern == name && entry.delivered > 0 {
                positions[topic] = TopicPosition(epoch: entry.epoch, version: entry.delivered)
            }
            send(.subscribe(id: nil, topic: name, from: pattern.start, epoch: nil, window: pattern.window, positions: positions))
            return
        }
        guard let topic = topics[name] else { return }
        if let group = topic.group {
            send(.subscribe(id: nil, topic: name, from: .stored, epoch: nil, window: topic.window, group: group))
            return
        }
        // Where the application stands wins over the broker's memory when this process has one.
        let from: StartPosition = topic.delivered > 0 ? .after(topic.delivered) : topic.start
        send(.subscribe(id: nil, topic: name, from: from, epoch: topic.delivered > 0 ? topic.epoch : nil, window: topic.window))
    }

    func sendPublish(_ request: PublishRequest) {
        guard let id = request.messageID else { return }
        let requestID = nextRequestID
        nextRequestID += 1
        inFlight[requestID] = id
        send(.publish(id: requestID, request))
    }

    /// Sends the highest ack the broker can take: processed, and delivered on this connection.
    func flushAck(_ name: String) {
        guard var topic = topics[name], topic.live, topic.group == nil else { return }
        let target = min(topic.acked, topic.received)
        guard target > topic.ackSent else { return }
        topic.ackSent = target
        topics[name] = topic
        send(.ack(topic: name, version: target))
    }
}
