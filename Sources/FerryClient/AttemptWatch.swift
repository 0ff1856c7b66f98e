/// The deadlines of a connection attempt as a pure type: which phase it is in, since when, and
/// whether it has been at it too long. Every phase has one, so a broker that accepts and never
/// answers, or dies half-way, ends the attempt instead of leaving the client `connecting`.
/// Once welcomed, the limit is silence: a ping after one heartbeat, dead after 2.5.
struct AttemptWatch: Sendable, Equatable {
    enum Phase: String, Sendable, Equatable {
        /// Waiting for the application's token provider.
        case token
        /// Opening the TCP connection.
        case connect
        /// TLS and the HTTP upgrade: waiting for the broker's `101`.
        case handshake
        /// WebSocket open, `hello` sent, waiting for `welcome`.
        case hello
        /// Welcomed: judged by silence against the broker's heartbeat.
        case connected
    }

    struct Timeouts: Sendable, Equatable {
        /// The token provider's answer, and the TCP connection.
        var connect: Duration
        /// TLS and the upgrade's answer.
        var handshake: Duration
        /// `welcome` after the WebSocket opened.
        var hello: Duration
    }

    enum Verdict: Sendable, Equatable {
        /// Look again after this long.
        case wait(Duration)
        /// One heartbeat of silence: ask the broker for a pong, then look again after this long.
        case ping(then: Duration)
        /// The phase overran its deadline (or a connection its silence limit): abandon the attempt.
        case expired(Phase, after: Duration)
    }

    let timeouts: Timeouts
    private(set) var phase = Phase.token
    private var since: Duration
    private var lastHeard: Duration
    private var heartbeat: Duration = .seconds(20)
    private var pinged = false

    init(timeouts: Timeouts, at now: Duration) {
        self.timeouts = timeouts
        since = now
        lastHeard = now
    }

    /// Starts a phase; its deadline counts from `now`.
    mutating func enter(_ phase: Phase, at now: Duration) {
        self.phase = phase
        since = now
        lastHeard = now
        pinged = false
    }

    /// `welcome` arrived: from now on silence is measured against the broker's heartbeat.
    mutating func welcomed(heartbeat: Duration, at now: Duration) {
        enter(.connected, at: now)
        self.heartbeat = heartbeat
    }

    /// A frame (or a ping or pong) arrived.
    mutating func heard(at now: Duration) {
        lastHeard = now
        pinged = false
    }

    mutating func check(at now: Duration) -> Verdict {
        let limit: Duration
        switch phase {
        case .token, .connect: limit = timeouts.connect
        case .handshake: limit = timeouts.handshake
        case .hello: limit = timeouts.hello
        case .connected:
            let silence = now - lastHeard
            let dead = heartbeat * 5 / 2
            if silence >= dead { return .expired(.connected, after: silence) }
            guard silence >= heartbeat else { return .wait(heartbeat - silence) }
            if pinged { return .wait(dead - silence) }
            pinged = true
            return .ping(then: dead - silence)
        }
        let elapsed = now - since
        return elapsed >= limit ? .expired(phase, after: elapsed) : .wait(limit - elapsed)
    }
}
