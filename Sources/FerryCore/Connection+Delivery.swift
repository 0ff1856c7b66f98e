import DequeModule
import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// Delivery: what the transport takes to write, and the store reads behind it.
extension Connection {
    // MARK: - Notifications from the broker

    /// A commit changed `topic`: there may be something to deliver.
    func topicChanged(_ topic: String) {
        notify(
            state.withLock { state in
                guard state.subscriptions[topic] != nil else { return false }
                state.ready.insert(topic)
                return state.wake()
            })
    }

    // MARK: - Outbound

    /// The next frames to write, or nil when there is nothing now (`onWork` will say when there
    /// is). Returns `.close` once, after the last frames; then the transport stops calling.
    public func takeOutbound() -> Outbound? {
        while true {
            let (frames, reads, floors, close, delivered) = state.withLock { state in
                state.workPending = false
                defer { state.deliveredUnreported = 0 }
                defer { state.outboxBytes = 0 }
                if let closing = state.closing {
                    defer { state.outbox.removeAll() }
                    return (state.outbox, [Read](), [SubscriptionRecord](), Optional(closing), 0)
                }
                var reads: [Read] = []
                let floors = collectDeliveries(&state, reads: &reads)
                defer { state.outbox.removeAll(keepingCapacity: true) }
                return (state.outbox, reads, floors, nil, state.deliveredUnreported)
            }
            for record in floors { broker.recordAck(record, from: self) }
            if delivered > 0 { broker.delivered(delivered) }
            if let close {
                if !frames.isEmpty { return .frames(frames) }
                broker.metrics.disconnected(close.code)
                return .close(close.code, reason: close.reason)
            }
            for read in reads { perform(read) }
            if !frames.isEmpty { return .frames(frames) }
            if reads.isEmpty { return nil }
        }
    }

    /// The 4013 close, once decided, for a transport whose socket takes nothing now: the frames
    /// queued before it are dropped (the client is not reading them). Nil otherwise: other closes
    /// wait for the socket, so their last frames go out first.
    public func takeClose() -> Outbound? {
        let closing = state.withLock { state -> (code: CloseCode, reason: String)? in
            guard let closing = state.closing, closing.code == .slowConsumer else { return nil }
            state.workPending = false
            state.outbox.removeAll()
            state.outboxBytes = 0
            return closing
        }
        guard let closing else { return nil }
        broker.metrics.disconnected(closing.code)
        return .close(closing.code, reason: closing.reason)
    }

    /// Moves every ready subscription forward as far as its window allows, from the topic cache,
    /// or queues a store read when the range is older than the cache. Returns the durable floors
    /// that a gap or reset moved, for the caller to record outside the lock.
    func collectDeliveries(_ state: inout State, reads: inout [Read]) -> [SubscriptionRecord] {
        guard state.phase == .ready else { return [] }
        var floorsChanged: [SubscriptionRecord] = []
        for name in state.ready {
            state.ready.remove(name)
            guard let original = state.subscriptions[name], !original.reading else { continue }
            var subscription = original
            if subscription.group != nil {
                collectGroupDeliveries(name, &subscription, &state, reads: &reads)
                state.subscriptions[name] = subscription
                continue
            }
            let position = subscription.topic.position
            if subscription.epoch != position.epoch {
                state.outbox.append(ServerFrame.reset(topic: name, oldEpoch: subscription.epoch, epoch: position.epoch))
                subscription.epoch = position.epoch
                subscription.next = position.first
                subscription.ackFloor = position.first - 1
                if subscription.durable { floorsChanged.append(record(of: subscription, name, state.clientID)) }
            }
            // A gap is reported when the window has room for what follows it, as a message would be.
            if subscription.next < position.first, subscription.next <= state.windowEnd(of: subscription, named: name) {
                state.outbox.append(ServerFrame.gap(topic: name, from: subscription.next, to: position.first - 1))
                broker.metrics.sentGap()
                subscription.next = position.first
                // The missing versions can never be acked, so they must not hold the window.
                if subscription.ackFloor < position.first - 1 {
                    subscription.ackFloor = position.first - 1
                    if subscription.durable { floorsChanged.append(record(of: subscription, name, state.clientID)) }
                }
            }
            let limit = min(position.head, state.windowEnd(of: subscription, named: name))
            if let pattern = subscription.pattern, limit < position.head { state.patterns[pattern]?.blocked.insert(name) }
            if subscription.next <= limit {
                if let frames = subscription.topic.cachedFrames(from: subscription.next, through: limit, epoch: subscription.epoch) {
                    state.outbox.append(contentsOf: frames)
                    state.deliveredUnreported += frames.count
                    subscription.next = limit + 1
                } else if let storeID = position.storeID {
                    let read = Read(
                        topic: name, generation: subscription.generation, epoch: subscription.epoch, storeID: storeID,
                        from: subscription.next, through: min(limit, subscription.next + UInt64(Self.readPage) - 1))
                    subscription.reading = true
                    subscription.reserved = read.through - read.from + 1
                    reads.append(read)
                }
            }
            state.replace(name, was: original, with: subscription)
        }
        return floorsChanged
    }

    func record(of subscription: Subscription, _ topic: String, _ clientID: String?) -> SubscriptionRecord {
        SubscriptionRecord(
            clientID: clientID ?? "", topic: topic, epoch: subscription.epoch, ackFloor: subscription.ackFloor,
            window: subscription.window, pattern: subscription.pattern)
    }

    /// Reads a page of older messages and queues the contiguous run that starts where the
    /// subscription stands; anything else (replaced subscription, retention) is re-evaluated.
    /// Inline when the store's reads never wait (then the caller's loop takes the result), else
    /// on a read thread that wakes the transport when the page is in.
    func perform(_ read: Read) {
        let reader = broker.reader
        reader.read({ store throws(StoreError) in
            try store.messages(topicID: read.storeID, after: read.from - 1, limit: Int(read.through - read.from + 1))
        }) { [self] result in
            // Inline, the caller's loop goes on to take what the read queued.
            notify(completeRead(read, result, wake: !reader.isInline))
        }
    }

    /// Queues what a read found; true when the transport must be woken (only if `wake`).
    func completeRead(_ read: Read, _ result: Result<[StoredMessage], StoreError>, wake: Bool) -> Bool {
        let stored: [StoredMessage]
        switch result {
        case .success(let messages):
            stored = messages
        case .failure(let error):
            // Retrying here would spin. The client is told and closed; it reconnects with
            // backoff and resumes from its ack floor, which nothing moved.
            broker.metrics.storeFailed(
                .read, error, ["ferry.topic": "\(read.topic)", "ferry.from": "\(read.from)", "ferry.through": "\(read.through)"])
            let failure = ProtocolError(.unavailable, "messages \(read.from)...\(read.through) of \(read.topic) cannot be read: \(error)")
            return state.withLock { state in
                state.queue(ServerFrame.error(id: nil, failure))
                if state.closing == nil { state.closing = (.internalError, failure.message) }
                return wake && state.wake()
            }
        }
        return state.withLock { state in
            guard let original = state.subscriptions[read.topic], original.generation == read.generation else { return false }
            var subscription = original
            subscription.reading = false
            subscription.reserved = 0
            state.ready.insert(read.topic)
            if subscription.group != nil {
                completeGroupRead(read, stored, &subscription, &state)
            } else if subscription.epoch == read.epoch {
                for message in stored where message.version == subscription.next {
                    state.outbox.append(Broker.encode(message, topic: read.topic))
                    state.deliveredUnreported += 1
                    subscription.next += 1
                }
            }
            state.replace(read.topic, was: original, with: subscription)
            return wake && state.wake()
        }
    }
}
