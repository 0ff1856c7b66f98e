import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Testing

extension Serial {
    /// The live connection loop under a manual clock: the backoff schedule and the silence
    /// watchdog happen at the instants the rules say, not merely "eventually".
    @Suite("FerryClient timing under an injected clock")
    struct ClientClockTests {
        @Test(.timeLimit(.minutes(1)))
        func reconnectsFollowTheBackoffScheduleAndAHintCutsTheWaitShort() async throws {
            let clock = ManualClock()
            let backoff = Backoff(initial: .milliseconds(100), factor: 2, cap: .seconds(2))
            var configuration = FerryClientConfiguration()
            configuration.backoff = backoff
            configuration.clock = clock.clientClock
            configuration.makeRandom = { SplitMix64(seed: 7) }
            // Nothing listens there: every attempt is refused at once.
            let port = try TCPConnection.freePort()
            let client = FerryClient(url: try #require(URL(string: "ws://127.0.0.1:\(port)/v1/ws")), configuration: configuration)
            defer { Task { await client.close() } }
            var states = client.states.makeAsyncIterator()
            #expect(await states.next() == .disconnected)

            var jitter = SplitMix64(seed: 7)
            for attempt in 0..<7 {
                let delay = backoff.delay(attempt: attempt, using: &jitter)
                #expect(delay <= backoff.ceiling(attempt: attempt))
                #expect(await states.next() == .connecting)
                #expect(await states.next() == .reconnecting(attempt: attempt + 1, delay: delay))
                if delay > .zero {
                    await clock.waitForSleepers()
                    clock.advance(by: delay - .nanoseconds(1))
                    #expect(clock.sleeperCount == 1, "attempt \(attempt + 1) started before its \(delay) wait ended")
                    clock.advance(by: .nanoseconds(1))
                    #expect(clock.sleeperCount == 0)
                }
            }
            // The capped wait, cut short by a network-back hint without moving the clock.
            let capped = backoff.delay(attempt: 7, using: &jitter)
            #expect(await states.next() == .connecting)
            #expect(await states.next() == .reconnecting(attempt: 8, delay: capped))
            await clock.waitForSleepers()
            client.retryNow()
            #expect(await states.next() == .connecting)
            #expect(clock.now == totalAdvanced(backoff, seed: 7, attempts: 7))
        }

        /// The sum of the first `attempts` jittered waits, which is all the test advanced the clock.
        private func totalAdvanced(_ backoff: Backoff, seed: UInt64, attempts: Int) -> Duration {
            var jitter = SplitMix64(seed: seed)
            return (0..<attempts).reduce(.zero) { total, attempt in total + backoff.delay(attempt: attempt, using: &jitter) }
        }

        @Test(.timeLimit(.minutes(2)))
        func aSilentLinkIsDeclaredDeadAtTwoAndAHalfHeartbeatsNotBefore() async throws {
            try await withRig { rig in
                let proxy = try rig.proxy()
                let clock = ManualClock()
                let client = rig.client(port: proxy.port, clientID: "watcher") {
                    $0.clock = clock.clientClock
                    $0.makeRandom = { FixedFraction(value: .max) }  // every wait is its ceiling: never zero
                }
                let subscription = client.subscribe("ticks", from: .earliest)
                try await client.waitUntilConnected()
                try await onThread { _ = try rig.ferryd.publishJSON("ticks", #"{"n":1}"#) }
                let before = await receive(subscription, count: 1, within: 10)
                #expect(before.versions == [1], "\(before.stoppedEarly ?? "")")

                // Everything the client heard, it heard at the clock's current instant.
                proxy.stall()
                let heartbeat = Duration.seconds(20)  // the broker's default, announced in welcome
                await clock.waitForSleepers()
                clock.advance(by: heartbeat)  // one heartbeat of silence: the client pings into the stall
                await clock.waitForSleepers()
                clock.advance(by: heartbeat * 3 / 2 - .nanoseconds(1))
                #expect(clock.sleeperCount == 1, "the watchdog woke before 2.5 heartbeats of silence")
                #expect(await client.state == .connected)
                clock.advance(by: .nanoseconds(1))
                try await client.waitForState("reconnecting at 2.5 heartbeats of silence") { $0.reconnectAttempt != nil }

                try await onThread { _ = try rig.ferryd.publishJSON("ticks", #"{"n":2}"#) }  // stored while the client is away
                proxy.unstall()
                await clock.waitForSleepers()  // the backoff wait
                clock.advance(by: testBackoff.ceiling(attempt: 0))
                try await client.waitUntilConnected(within: 15)
                let after = await receive(subscription, count: 1, within: 15)
                #expect(after.versions == [2], "\(after.stoppedEarly ?? "")")
                #expect(proxy.acceptedLinks == 2)
            }
        }
    }
}
