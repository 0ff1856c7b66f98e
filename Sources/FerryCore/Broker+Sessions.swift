import FerryProtocol
import FerryStore
import Foundation
import Logging
import Metrics
import Synchronization

extension Broker {
    // MARK: - Sessions

    /// Resolves a `hello`: a new or resumed durable session owned by `connection`, or an
    /// ephemeral one. A previous owner of the session is closed with 4009. A durable session,
    /// named by client id or by resume token, is `forbidden` unless `principal` may use its id:
    /// a resume token proves a session exists, not who may take it. A session this broker has
    /// not seen since it started is read from the store first; `completion` may run inline.
    func attach(
        _ connection: Connection, principal: Principal, clientID: String?, resumeToken: String?,
        completion: @escaping @Sendable (Result<Attachment, ProtocolError>) -> Void
    ) {
        let id: String
        do {
            guard let named = try sessionID(principal: principal, clientID: clientID, resumeToken: resumeToken) else {
                completion(.success(Attachment(clientID: nil, resumeToken: nil, resumed: false, subscriptions: [])))
                return
            }
            id = named
        } catch {
            completion(.failure(error))
            return
        }
        if state.withLock({ $0.sessions[id] != nil }) {
            completion(.success(claim(id, for: connection, stored: nil)))
            return
        }
        reader.read({ store throws(StoreError) in try store.session(clientID: id) }) { [self] result in
            switch result {
            case .success(let stored):
                completion(.success(claim(id, for: connection, stored: stored)))
            case .failure(let error):
                metrics.storeFailed(.read, error, ["ferry.client_id": "\(id)"])
                completion(.failure(ProtocolError(.unavailable, "the session of \(id) cannot be read: \(error)")))
            }
        }
    }

    /// The durable session a `hello` names, or nil for an ephemeral one.
    private func sessionID(principal: Principal, clientID: String?, resumeToken: String?) throws(ProtocolError) -> String? {
        if let clientID, !Names.isValidClientID(clientID) {
            throw ProtocolError(.invalidClientID, "client ids are 1-128 bytes of A-Z a-z 0-9 _ - . : @")
        }
        var fromToken: (clientID: String, incarnation: String)?
        if let resumeToken {
            guard let verified = tokens.verify(resumeToken) else {
                throw ProtocolError(.badResumeToken, "the resume token is not valid")
            }
            fromToken = verified
        }
        if let clientID, let fromToken, fromToken.clientID != clientID {
            throw ProtocolError(.sessionConflict, "client_id and resume_token name different sessions")
        }
        guard let id = clientID ?? fromToken?.clientID else { return nil }
        guard principal.mayUse(clientID: id) else {
            throw ProtocolError(.forbidden, "this token may not use client id \(id)")
        }
        return id
    }

    /// Makes `connection` the owner of session `id`: the one in memory, else `stored` (as read
    /// from the store), else a new one; closes a previous owner with 4009.
    private func claim(_ id: String, for connection: Connection, stored: StoredSession?) -> Attachment {
        let now = configuration.now()
        let (attachment, previousOwner, created) = state.withLock { state in
            // Another hello may have brought the session in while this one read it.
            if state.sessions[id] == nil, let stored {
                state.sessions[id] = DurableSession(
                    record: stored.record, subscriptions: Dictionary(stored.subscriptions.map { ($0.topic, $0) }) { $1 }, owner: nil,
                    lastResume: nil)
            }
            if var session = state.sessions[id] {
                let previous = session.owner
                session.owner = connection
                session.record.lastSeen = now
                session.lastResume = ResumeInfo(at: now, resumed: true, subscriptions: session.subscriptions.count)
                metrics.countRedeliveries(session.subscriptions.values, sentThrough: session.sentThrough)
                session.sentThrough = [:]  // counted once; a takeover of a live session knows nothing sent
                state.sessions[id] = session
                state.dirtySessions[id] = session.record
                let attachment = Attachment(
                    clientID: id, resumeToken: tokens.token(clientID: id, incarnation: session.record.incarnation), resumed: true,
                    subscriptions: session.subscriptions.values.sorted { $0.topic < $1.topic })
                return (attachment, previous, SessionRecord?.none)
            }
            let record = SessionRecord(clientID: id, incarnation: Epoch.random(), createdAt: now, lastSeen: now)
            state.sessions[id] = DurableSession(
                record: record, subscriptions: [:], owner: connection, lastResume: ResumeInfo(at: now, resumed: false, subscriptions: 0))
            let attachment = Attachment(
                clientID: id, resumeToken: tokens.token(clientID: id, incarnation: record.incarnation), resumed: false, subscriptions: [])
            return (attachment, nil, record)
        }
        if let created { committer.submit([.putSession(created)], completion: nil) }
        if let previousOwner, previousOwner !== connection {
            previousOwner.close(.sessionTakenOver, reason: "session taken over by a newer connection")
        }
        return attachment
    }

    /// `connection` gives up session `clientID` without closing (its hello could not finish).
    func release(_ clientID: String, from connection: Connection) {
        state.withLock { state in
            guard var session = state.sessions[clientID], session.owner === connection else { return }
            session.owner = nil
            state.sessions[clientID] = session
        }
    }

    /// The transport of `connection` is gone.
    func detach(_ connection: Connection, clientID: String?, sentThrough: [String: SentPosition]) {
        let now = configuration.now()
        state.withLock { state in
            state.connections -= 1
            guard let clientID, var session = state.sessions[clientID], session.owner === connection else { return }
            session.owner = nil
            session.record.lastSeen = now
            session.sentThrough = sentThrough
            state.sessions[clientID] = session
            state.dirtySessions[clientID] = session.record
        }
        metrics.connections.decrement()
    }

    func durableSubscription(clientID: String, topic: String) -> SubscriptionRecord? {
        state.withLock { $0.sessions[clientID]?.subscriptions[topic] }
    }

    /// A durable subscribe: replaces the stored position now, and creates the topic if needed.
    func putDurableSubscription(_ record: SubscriptionRecord) {
        let known = state.withLock { state in
            guard state.sessions[record.clientID] != nil else { return false }
            state.sessions[record.clientID]?.subscriptions[record.topic] = record
            state.dirtySubscriptions[Self.key(record.clientID, record.topic)] = nil
            return true
        }
        guard known else { return }
        var operations: [StoreOperation] = []
        let write = topicForWrite(named: record.topic)
        if write.creating { operations.append(.ensureTopic(record.topic, epoch: record.epoch)) }
        operations.append(.putSubscription(record))
        committer.submit(operations) { [self] _ in
            if write.creating { finishCreation([write.topic]) }
        }
    }

    /// Records a moved ack floor (or a reset) from the connection that owns the session; it is
    /// persisted with the next commit or within `ackFlushInterval`.
    func recordAck(_ record: SubscriptionRecord, from connection: Connection) {
        state.withLock { state in
            guard let session = state.sessions[record.clientID], session.owner === connection,
                let existing = session.subscriptions[record.topic],
                existing.epoch != record.epoch || existing.ackFloor < record.ackFloor
            else { return }
            state.sessions[record.clientID]?.subscriptions[record.topic] = record
            state.dirtySubscriptions[Self.key(record.clientID, record.topic)] = record
        }
    }

    func removeDurableSubscription(clientID: String, topic: String) {
        state.withLock { state in
            state.sessions[clientID]?.subscriptions[topic] = nil
            state.dirtySubscriptions[Self.key(clientID, topic)] = nil
        }
        committer.submit([.deleteSubscription(clientID: clientID, topic: topic)], completion: nil)
    }

    static func key(_ clientID: String, _ topic: String) -> String {
        clientID + "\u{0}" + topic
    }

    /// Counts `count` messages handed to connections.
    func delivered(_ count: Int) {
        state.withLock { $0.delivered += UInt64(count) }
        metrics.delivered.increment(by: Int64(count))
    }
}
