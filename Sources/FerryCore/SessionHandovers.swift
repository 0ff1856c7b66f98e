/// The hellos of this broker whose claim of a durable session is in flight, and what other
/// brokers' notices mean for them. A pure type: the broker keeps it under its lock and does what
/// it answers.
///
/// Claims are ordered by the generation the store gives them; the newest claim owns the session.
/// A claim whose previous owner is another live broker waits until that broker releases the
/// session (or a deadline passes), then reads it. A notice that another broker claimed the
/// session with a newer generation supersedes a claim here, whether its generation is known yet
/// or not: its hello ends with 4009, as a connection taken over does.
struct SessionHandovers {
    enum Phase: Equatable {
        /// The store has not answered the claim yet.
        case claiming
        /// Waiting for the previous owner's release.
        case waiting
        /// Released (or timed out): the session is being read.
        case reading
    }

    struct Claim: Equatable {
        var clientID: String
        var generation: UInt64?
        var phase: Phase
        /// The newest generation another broker announced for this session while this claim was in flight.
        var supersededBy: UInt64 = 0

        var isSuperseded: Bool { generation.map { supersededBy > $0 } ?? false }
    }

    /// What to do once the store answered a claim.
    enum Next: Equatable {
        /// Take the session now, as the claim found it.
        case own
        /// Wait for the previous owner.
        case wait
        /// A newer claim elsewhere won: end the hello with 4009.
        case superseded
    }

    private(set) var claims: [UInt64: Claim] = [:]
    private var lastTicket: UInt64 = 0

    /// A hello starts claiming `clientID`; the ticket names its claim.
    mutating func begin(_ clientID: String) -> UInt64 {
        lastTicket += 1
        claims[lastTicket] = Claim(clientID: clientID, generation: nil, phase: .claiming)
        return lastTicket
    }

    /// The store answered claim `ticket` with `generation`. An `own` claim stays in flight until
    /// ``finish(_:)``, a `superseded` one ends here.
    mutating func claimed(_ ticket: UInt64, generation: UInt64, ownerAsked: Bool) -> Next {
        guard var claim = claims[ticket] else { return .superseded }
        claim.generation = generation
        if claim.isSuperseded {
            claims[ticket] = nil
            return .superseded
        }
        claim.phase = ownerAsked ? .waiting : .reading
        claims[ticket] = claim
        return ownerAsked ? .wait : .own
    }

    /// Another broker claimed `clientID` with `generation`. Returns the waiting claims that ends:
    /// superseded, they must end their hellos; the others learn it when the store answers.
    mutating func wanted(_ clientID: String, generation: UInt64) -> [UInt64] {
        var ended: [UInt64] = []
        for (ticket, var claim) in claims where claim.clientID == clientID {
            claim.supersededBy = max(claim.supersededBy, generation)
            if claim.phase == .waiting, claim.isSuperseded {
                claims[ticket] = nil
                ended.append(ticket)
            } else {
                claims[ticket] = claim
            }
        }
        return ended.sorted()
    }

    /// The owner let `clientID` go for claim `generation`: the claim that waited for it, now reading.
    mutating func released(_ clientID: String, generation: UInt64) -> UInt64? {
        guard
            let (ticket, _) = claims.first(where: {
                $0.value.clientID == clientID && $0.value.generation == generation && $0.value.phase == .waiting
            })
        else { return nil }
        claims[ticket]?.phase = .reading
        return ticket
    }

    /// Claim `ticket`'s deadline passed: true when it was still waiting (it reads now).
    mutating func timedOut(_ ticket: UInt64) -> Bool {
        guard claims[ticket]?.phase == .waiting else { return false }
        claims[ticket]?.phase = .reading
        return true
    }

    /// Claim `ticket` ends: true when it may take the session (no newer claim was announced).
    mutating func finish(_ ticket: UInt64) -> Bool {
        guard let claim = claims.removeValue(forKey: ticket) else { return false }
        return !claim.isSuperseded
    }
}
