@testable import FerryClient
import Testing

/// A generator that returns the same fraction of the range every time, so jitter is predictable.
struct FixedFraction: RandomNumberGenerator {
    /// 0 gives the lowest value of a range, UInt64.max the highest.
    let value: UInt64

    mutating func next() -> UInt64 { value }
}

@Suite("Connection state machine and backoff")
struct ConnectionStateMachineTests {
    let backoff = Backoff(initial: .milliseconds(100), factor: 2, cap: .seconds(30))

    @Test("ceilings double from 100 ms and stop at the 30 s cap")
    func schedule() {
        let ceilings = (0..<12).map { backoff.ceiling(attempt: $0) }
        #expect(
            ceilings == [
                .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600),
                .milliseconds(3200), .milliseconds(6400), .milliseconds(12800), .milliseconds(25600), .seconds(30),
                .seconds(30), .seconds(30),
            ])
    }

    @Test("full jitter spans zero to the ceiling")
    func jitter() {
        var low = FixedFraction(value: 0)
        var high = FixedFraction(value: .max)
        #expect(backoff.delay(attempt: 3, using: &low) == .zero)
        let top = backoff.delay(attempt: 3, using: &high)
        #expect(top > .milliseconds(799) && top <= .milliseconds(800))
        var system = SystemRandomNumberGenerator()
        let delays = (0..<1000).map { _ in backoff.delay(attempt: 4, using: &system) }
        #expect(delays.allSatisfy { $0 >= .zero && $0 <= .milliseconds(1600) })
        // Spread, not waves: the delays cover the range.
        #expect(delays.min() ?? .zero < .milliseconds(200) && delays.max() ?? .zero > .milliseconds(1400))
    }

    @Test("connect, lose, back off with growing ceilings, reconnect")
    func reconnectCycle() {
        var machine = ConnectionStateMachine(backoff: backoff, stableAfter: .seconds(10))
        var rng = FixedFraction(value: .max)
        let start = Duration.zero
        #expect(machine.start() == .connect)
        #expect(machine.state == .connecting)
        machine.connected(at: start)
        #expect(machine.state == .connected)
        var waits: [Duration] = []
        for second in 1...4 {
            let action = machine.connectionLost(closeCode: 1006, reason: "", at: start + .seconds(second), using: &rng)
            guard case .wait(let delay) = action else {
                Issue.record("expected a wait, got \(action)")
                return
            }
            waits.append(delay)
            #expect(machine.state == .reconnecting(attempt: second, delay: delay))
            #expect(machine.retry() == .connect)
        }
        #expect(waits.map { $0 <= backoff.ceiling(attempt: 0) } == [true, false, false, false])
        #expect(zip(waits, waits.dropFirst()).allSatisfy { $0 < $1 })
    }

    @Test("a stable connection resets the backoff")
    func stableResets() {
        var machine = ConnectionStateMachine(backoff: backoff, stableAfter: .seconds(10))
        var rng = FixedFraction(value: .max)
        let start = Duration.zero
        _ = machine.start()
        for _ in 0..<5 {
            _ = machine.connectionLost(closeCode: nil, reason: "", at: start, using: &rng)
            _ = machine.retry()
        }
        #expect(machine.failures == 5)
        machine.connected(at: start)
        _ = machine.connectionLost(closeCode: 1001, reason: "", at: start + .seconds(11), using: &rng)
        #expect(machine.failures == 1)
        #expect(machine.state == .reconnecting(attempt: 1, delay: backoff.delay(attempt: 0, using: &rng)))
    }

    @Test("4001, 4009 and 4010 stop for good; 1001, 4000, 4002 and 4029 retry", arguments: [
        (UInt16(4001), false), (4009, false), (4010, false), (1001, true), (4000, true), (4002, true), (4029, true), (1006, true),
    ])
    func closeCodes(code: UInt16, retries: Bool) {
        var machine = ConnectionStateMachine(backoff: backoff, stableAfter: .seconds(10))
        var rng = FixedFraction(value: 0)
        _ = machine.start()
        machine.connected(at: .zero)
        let action = machine.connectionLost(closeCode: code, reason: "why", at: .zero, using: &rng)
        if retries {
            #expect(action == .wait(.zero))
        } else {
            #expect(action == .stop)
            #expect(machine.state == .failed(.closedByBroker(code: code, reason: "why")))
            #expect(machine.retry() == .stop)
        }
    }

    @Test("close is final")
    func close() {
        var machine = ConnectionStateMachine(backoff: backoff, stableAfter: .seconds(10))
        var rng = FixedFraction(value: 0)
        _ = machine.start()
        machine.close()
        #expect(machine.state == .closed)
        #expect(machine.connectionLost(closeCode: nil, reason: "", at: .zero, using: &rng) == .stop)
        #expect(machine.start() == .stop)
    }
}
