import FerryProtocol
import FerryStore
import Logging
import Synchronization

/// One owner per durable session, across the brokers sharing a store.
///
/// A `hello` claims its session in the store. When another live broker held it, that broker is
/// asked to close its connection (4009), commit its acks and announce the release; this broker
/// reads the session after the release, so the resumed floors include every ack the other
/// broker had. A deadline bounds the wait (a broker that died without a word). On a store only
/// one broker uses, every claim is uncontested and takes the session at once.
extension Broker {
    /// A hello waiting for another broker to let its session go.
    struct WaitingHello {
        var connection: Connection
        var proposed: SessionRecord
        /// The claim's generation, as the store gave it.
        var generation: UInt64
        var completion: @Sendable (Result<Attachment, ProtocolError>) -> Void
    }

    private enum Settled {
        case attached(Attachment, previousOwner: Connection?, created: SessionRecord?)
        case waiting
        case superseded
    }

    /// Claims session `id` for `connection` and hands the attachment to `completion`.
    func claimSession(_ id: String, for connection: Connection, completion: @escaping @Sendable (Result<Attachment, ProtocolError>) -> Void) {
        let now = configuration.now()
        let proposed = SessionRecord(clientID: id, incarnation: Epoch.random(), createdAt: now, lastSeen: now)
        let ticket = state.withLock { $0.handovers.begin(id) }
        reader.read({ store throws(StoreError) in try store.claimSession(proposed) }) { [self] result in
            switch result {
            case .success(let claim):
                let settled = state.withLock { state -> Settled in
                    switch state.handovers.claimed(ticket, generation: claim.generation, ownerAsked: claim.handover == .ownerAsked) {
                    case .superseded:
                        return .superseded
                    case .wait:
                        state.waitingHellos[ticket] = WaitingHello(
                            connection: connection, proposed: proposed, generation: claim.generation, completion: completion)
                        return .waiting
                    case .own:
                        return own(ticket, connection, proposed, stored: claim.stored, generation: claim.generation,
                            memoryIsNewest: claim.handover == .memoryIsNewest, in: &state)
                    }
                }
                if case .waiting = settled { startHandoverDeadline(ticket, clientID: id) }
                finish(settled, id: id, connection: connection, completion: completion)
            case .failure(let error):
                _ = state.withLock { $0.handovers.finish(ticket) }
                metrics.storeFailed(.read, error, ["ferry.client_id": "\(id)"])
                completion(.failure(ProtocolError(.unavailable, "the session of \(id) cannot be claimed: \(error)")))
            }
        }
    }

    private func startHandoverDeadline(_ ticket: UInt64, clientID: String) {
        let timeout = configuration.handoverTimeout
        Task { [self] in
            // Never cancelled: the sleep ends at the deadline.
            do { try await Task.sleep(for: .milliseconds(timeout)) } catch { return }
            guard state.withLock({ $0.handovers.timedOut(ticket) }) else { return }
            logger.notice(
                "the broker that held a session did not let it go in time: resuming it from the stored floors",
                metadata: ["ferry.client_id": "\(clientID)", "ferry.timeout_ms": "\(timeout)"])
            readAfterHandover(ticket)
        }
    }

    /// The previous owner let the session go (or the deadline passed): read it and take it.
    private func readAfterHandover(_ ticket: UInt64) {
        guard let waiting = state.withLock({ $0.waitingHellos.removeValue(forKey: ticket) }) else { return }
        let id = waiting.proposed.clientID
        reader.read({ store throws(StoreError) in try store.session(clientID: id) }) { [self] result in
            switch result {
            case .success(let stored):
                let settled = state.withLock { state in
                    own(ticket, waiting.connection, waiting.proposed, stored: stored, generation: waiting.generation, memoryIsNewest: false, in: &state)
                }
                finish(settled, id: id, connection: waiting.connection, completion: waiting.completion)
            case .failure(let error):
                _ = state.withLock { $0.handovers.finish(ticket) }
                metrics.storeFailed(.read, error, ["ferry.client_id": "\(id)"])
                waiting.completion(.failure(ProtocolError(.unavailable, "the session of \(id) cannot be read: \(error)")))
            }
        }
    }

    private func finish(
        _ settled: Settled, id: String, connection: Connection, completion: @Sendable (Result<Attachment, ProtocolError>) -> Void
    ) {
        switch settled {
        case .waiting:
            return
        case .superseded:
            connection.close(.sessionTakenOver, reason: "session taken over by a newer connection to another broker")
            completion(.failure(ProtocolError(.sessionConflict, "session \(id) was taken over by a newer connection")))
        case .attached(let attachment, let previousOwner, let created):
            if let created { committer.submit([.putSession(created)], completion: nil) }
            if let previousOwner, previousOwner !== connection {
                previousOwner.close(.sessionTakenOver, reason: "session taken over by a newer connection")
            }
            completion(.success(attachment))
        }
    }

    /// Makes `connection` the owner of session `id`, unless a newer claim elsewhere superseded
    /// claim `ticket`. The session is the one in memory when it is the newest, else `stored`,
    /// else `proposed` (new).
    private func own(
        _ ticket: UInt64, _ connection: Connection, _ proposed: SessionRecord, stored: StoredSession?, generation: UInt64,
        memoryIsNewest: Bool, in state: inout State
    ) -> Settled {
        guard state.handovers.finish(ticket) else { return .superseded }
        let id = proposed.clientID
        let held = state.sessions[id]
        var session: DurableSession
        var created: SessionRecord?
        if memoryIsNewest, let held {
            session = held
        } else if let stored {
            session = DurableSession(
                record: stored.record, subscriptions: Dictionary(stored.subscriptions.map { ($0.topic, $0) }) { $1 }, owner: held?.owner,
                lastResume: held?.lastResume)
            // What this broker held of it is older than the store: nothing of it is written.
            if !memoryIsNewest { dropDeferredWrites(of: id, in: &state) }
        } else {
            session = DurableSession(record: proposed, subscriptions: [:], owner: held?.owner, lastResume: nil)
            created = proposed
        }
        let resumed = session.record.incarnation != proposed.incarnation
        let previousOwner = session.owner
        let now = configuration.now()
        session.owner = connection
        session.generation = generation
        session.record.lastSeen = now
        session.lastResume = ResumeInfo(at: now, resumed: resumed, subscriptions: session.subscriptions.count)
        if memoryIsNewest { metrics.countRedeliveries(session.subscriptions.values, sentThrough: session.sentThrough) }
        session.sentThrough = [:]  // counted once; a takeover of a live session knows nothing sent
        state.sessions[id] = session
        state.dirtySessions[id] = session.record
        let attachment = Attachment(
            clientID: id, resumeToken: tokens.token(clientID: id, incarnation: session.record.incarnation), resumed: resumed,
            subscriptions: resumed ? session.subscriptions.values.sorted { $0.topic < $1.topic } : [])
        return .attached(attachment, previousOwner: previousOwner, created: created)
    }

    /// Forgets the acks and session changes of `clientID` not committed yet.
    func dropDeferredWrites(of clientID: String, in state: inout State) {
        state.dirtySessions[clientID] = nil
        state.dirtySubscriptions = state.dirtySubscriptions.filter { $0.value.clientID != clientID }
    }

    // MARK: - Notices from other brokers

    /// Another broker claimed `clientID` (claim `generation`): a hello here waiting for it ends
    /// with 4009; a session held here is let go: its connection is closed with 4009, its acks are
    /// committed, then the release is announced. A notice about an older claim than the one that
    /// gave this broker the session is stale and ignored.
    func sessionWanted(_ clientID: String, generation: UInt64) {
        let (superseded, letGo) = state.withLock { state in
            let superseded = state.handovers.wanted(clientID, generation: generation).compactMap { state.waitingHellos.removeValue(forKey: $0) }
            let held = state.sessions[clientID]
            if let held, held.generation >= generation { return (superseded, (owner: Connection?, operations: [StoreOperation])?.none) }
            state.sessions[clientID] = nil
            var operations: [StoreOperation] = state.dirtySessions[clientID].map { [.putSession($0)] } ?? []
            operations += state.dirtySubscriptions.values.filter { $0.clientID == clientID }.map { .raiseAckFloor($0) }
            dropDeferredWrites(of: clientID, in: &state)
            return (superseded, (owner: held?.owner, operations: operations))
        }
        for waiting in superseded {
            finish(.superseded, id: clientID, connection: waiting.connection, completion: waiting.completion)
        }
        guard let letGo else { return }
        letGo.owner?.close(.sessionTakenOver, reason: "session taken over by a connection to another broker")
        let store = self.store
        committer.submit(letGo.operations) { _ in
            // After the commit, whether it failed (logged and counted) or not: the claimer would only wait longer.
            store.announce(.released(clientID, generation: generation))
        }
    }

    /// Notices can be lost (a `LISTEN` connection that dropped): the connected sessions this
    /// broker holds are checked against the store, and one claimed since by another broker is let
    /// go, one deleted meanwhile closed, as their notices would have done.
    func checkHeldSessions() {
        // Not those with a write still to commit: the store may not have them yet.
        let held = state.withLock { state in
            state.sessions.filter { $0.value.owner != nil && state.dirtySessions[$0.key] == nil }.map { ($0.key, $0.value.generation) }
        }
        guard !held.isEmpty else { return }
        reader.read({ store throws(StoreError) in try store.sessionGenerations(held.map(\.0)) }) { [self] result in
            let stored: [String: UInt64]
            switch result {
            case .success(let generations):
                stored = generations
            case .failure(let error):
                // The next check (at the next poll) reads again.
                metrics.storeFailed(.read, error, ["ferry.read": "held sessions"])
                return
            }
            for (clientID, generation) in held {
                guard let current = stored[clientID] else {
                    sessionDeletedElsewhere(clientID)
                    continue
                }
                if current > generation { sessionWanted(clientID, generation: current) }
            }
        }
    }

    /// The broker asked for `clientID` let it go for claim `generation`.
    func sessionReleased(_ clientID: String, generation: UInt64) {
        guard let ticket = state.withLock({ $0.handovers.released(clientID, generation: generation) }) else { return }
        readAfterHandover(ticket)
    }

    /// An operator deleted `clientID` through another broker: a connection here is closed with
    /// 4010. A write of this broker's may have put the session back after that delete (acks in
    /// its commit): it is deleted again, in order after them, before the connection is closed.
    func sessionDeletedElsewhere(_ clientID: String) {
        let held = state.withLock { state in
            dropDeferredWrites(of: clientID, in: &state)
            return state.sessions.removeValue(forKey: clientID)
        }
        guard let held else { return }
        committer.submit([.deleteSession(clientID)]) { _ in
            held.owner?.close(.sessionDeleted, reason: "session deleted by an operator")
        }
    }
}
