@testable import FerryClient
import FerryProtocol
import Testing

/// The rules of a connection attempt without sockets: the deadline of each phase, what a
/// refused upgrade says, and what the state machine does with it.
@Suite("Attempt deadlines and refused upgrades")
struct AttemptRulesTests {
    let timeouts = AttemptWatch.Timeouts(connect: .seconds(3), handshake: .seconds(5), hello: .seconds(7))

    @Test("each phase expires at its own timeout, counted from when it started, not before")
    func phaseDeadlines() {
        var watch = AttemptWatch(timeouts: timeouts, at: .zero)
        let limits: [(AttemptWatch.Phase, Duration)] = [(.token, .seconds(3)), (.connect, .seconds(3)), (.handshake, .seconds(5)), (.hello, .seconds(7))]
        for (index, (phase, limit)) in limits.enumerated() {
            let start = Duration.seconds(100 * index)
            watch.enter(phase, at: start)
            #expect(watch.check(at: start) == .wait(limit))
            #expect(watch.check(at: start + limit - .nanoseconds(1)) == .wait(.nanoseconds(1)), "\(phase)")
            #expect(watch.check(at: start + limit) == .expired(phase, after: limit), "\(phase)")
        }
        // Frames before welcome do not extend the hello's deadline.
        watch.enter(.hello, at: .zero)
        watch.heard(at: .seconds(6))
        #expect(watch.check(at: .seconds(7)) == .expired(.hello, after: .seconds(7)))
    }

    @Test("a welcomed connection pings after one heartbeat of silence and is dead after 2.5")
    func silence() {
        var watch = AttemptWatch(timeouts: timeouts, at: .zero)
        watch.welcomed(heartbeat: .seconds(20), at: .zero)
        #expect(watch.check(at: .seconds(19)) == .wait(.seconds(1)))
        #expect(watch.check(at: .seconds(20)) == .ping(then: .seconds(30)))
        #expect(watch.check(at: .seconds(21)) == .wait(.seconds(29)), "one ping per silence")
        watch.heard(at: .seconds(30))
        #expect(watch.check(at: .seconds(50)) == .ping(then: .seconds(30)))
        #expect(watch.check(at: .seconds(80)) == .expired(.connected, after: .seconds(50)))
    }

    @Test("a refusal's body, status and Retry-After are read; anything else falls back to the status")
    func refusalParsing() {
        let body = Array(#"{"error":{"code":"unauthorized","message":"the token has expired"}}"#.utf8)
        let expired = UpgradeRefusal(status: 401, headers: [("WWW-Authenticate", "Bearer")], body: body)
        #expect(expired == UpgradeRefusal(status: 401, retryAfter: nil, error: ProtocolError(.unauthorized, "the token has expired")))
        #expect(expired.isFinal)

        let full = UpgradeRefusal(status: 503, headers: [("retry-after", " 7 ")], body: [])
        #expect(full.retryAfter == .seconds(7))
        #expect(full.error.code == .unavailable)
        #expect(!full.isFinal)

        let proxyPage = UpgradeRefusal(status: 403, headers: [("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")], body: Array("<html>no</html>".utf8))
        #expect(proxyPage.retryAfter == nil)
        #expect(proxyPage.error.code == .forbidden)
        #expect(proxyPage.isFinal)
    }

    @Test("401 and 403 stop with the broker's error; 503 and 429 wait at least Retry-After", arguments: [401, 403, 429, 503, 500])
    func refusals(status: Int) {
        var machine = ConnectionStateMachine(backoff: Backoff(initial: .milliseconds(100)), stableAfter: .seconds(10))
        var rng = FixedFraction(value: .max)  // the backoff's own wait is its ceiling, 100 ms
        _ = machine.start()
        let error = ProtocolError(.unauthorized, "why")
        let action = machine.attemptEnded(.refused(UpgradeRefusal(status: status, retryAfter: .seconds(2), error: error)), at: .zero, using: &rng)
        if status == 401 || status == 403 {
            #expect(action == .stop)
            #expect(machine.state == .failed(.unauthorized(status: status, error)))
            #expect(machine.state.failure?.httpStatus == status)
            #expect(machine.state.failure?.protocolError == error)
        } else {
            #expect(action == .wait(.seconds(2)))
            #expect(machine.state == .reconnecting(attempt: 1, delay: .seconds(2)))
        }
    }

    @Test("with a token provider a close 4001 (token expired) reconnects; without one it stops")
    func expiredTokenClose() {
        for renews in [false, true] {
            var machine = ConnectionStateMachine(backoff: Backoff(), stableAfter: .seconds(10), renewsTokens: renews)
            var rng = FixedFraction(value: 0)
            _ = machine.start()
            machine.connected(at: .zero)
            let action = machine.attemptEnded(.lost(closeCode: 4001, reason: "expired"), at: .seconds(1), using: &rng)
            #expect(action == (renews ? .wait(.zero) : .stop))
        }
    }
}
