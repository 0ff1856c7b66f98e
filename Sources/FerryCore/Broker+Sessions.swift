import FerryProtocol
import FerryStore
import Foundation
import Logging
import Metrics
import Synchronization

extension Broker {
    // MARK: - Sessions

    /// Resolves a `hello`: a new or resumed durable session owned by `connection`, or an
    /// ephemeral one. A durable session, named by client id or by resume token, is `forbidden`
    /// unless `principal` may use its id: a resume token proves a session exists, not who may take
    /// it. The session is claimed in the store (``claimSession(_:for:completion:)``): a previous
    /// owner here is closed with 4009, one on another broker is asked to let go first. `completion`
    /// may run inline.
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
        claimSession(id, for: connection, completion: completion)
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
            // No copy of the session is held across the write: it would copy all its subscriptions.
            guard state.sessions[record.clientID]?.owner === connection,
                let existing = state.sessions[record.clientID]?.subscriptions[record.topic],
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
