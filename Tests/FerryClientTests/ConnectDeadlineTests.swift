import FerryClient
import FerryTestSupport
import Foundation
import Testing

extension Serial {
    /// A broker that accepts and never answers the upgrade, or closes before answering (it
    /// crashed or restarted while the client connected): the attempt must end, the client must
    /// retry, and `close()` must return.
    @Suite("FerryClient connection deadlines")
    struct ConnectDeadlineTests {
        /// Under a manual clock: the attempt ends at the handshake deadline, not before; the
        /// next starts after the backoff; `close()` during an unanswered upgrade returns.
        @Test(.timeLimit(.minutes(1)))
        func aSilentListenerEndsTheAttemptAtTheHandshakeDeadline() async throws {
            let listener = try StubListener(.silent)
            defer { listener.close() }
            let clock = ManualClock()
            var configuration = FerryClientConfiguration()
            configuration.clock = clock.clientClock
            configuration.makeRandom = { FixedFraction(value: .max) }  // each wait is its ceiling
            configuration.backoff = Backoff(initial: .seconds(1), factor: 2, cap: .seconds(1))
            configuration.connectTimeout = .seconds(60)
            configuration.handshakeTimeout = .seconds(5)
            let client = FerryClient(url: try #require(URL(string: "ws://127.0.0.1:\(listener.port)/v1/ws")), configuration: configuration)
            var states = client.states.makeAsyncIterator()
            #expect(await states.next() == .disconnected)
            #expect(await states.next() == .connecting)

            // The upgrade request is out and unanswered: the watchdog waits for the handshake deadline.
            await clock.waitForSleeper(until: .seconds(5))
            #expect(try await onThread { listener.waitForAccepted(1, timeout: 5) })
            clock.advance(by: .seconds(5) - .nanoseconds(1))
            #expect(clock.sleeperCount == 1, "the attempt ended before its handshake deadline")
            #expect(await client.state == .connecting)
            clock.advance(by: .nanoseconds(1))
            guard case .reconnecting(1, let delay) = try #require(await states.next()) else {
                Issue.record("the first attempt must end in a backoff wait")
                return
            }
            await clock.waitForSleeper(until: .seconds(5) + delay)
            clock.advance(by: delay)
            #expect(await states.next() == .connecting)
            await clock.waitForSleeper(until: clock.now + .seconds(5))
            #expect(try await onThread { listener.waitForAccepted(2, timeout: 5) })
            try await within(5, "close() while the upgrade is unanswered") { await client.close() }
            #expect(await client.state == .closed)
        }

        /// A listener that reads the upgrade request and closes (FIN): each attempt ends at
        /// once, with a handshake deadline far away, and the client keeps retrying.
        @Test(.timeLimit(.minutes(1)))
        func aListenerThatClosesWithoutAnsweringIsRetried() async throws {
            let listener = try StubListener(.closeAfterRequest)
            defer { listener.close() }
            var configuration = FerryClientConfiguration()
            configuration.backoff = testBackoff
            configuration.handshakeTimeout = .seconds(120)
            let client = FerryClient(url: try #require(URL(string: "ws://127.0.0.1:\(listener.port)/v1/ws")), configuration: configuration)
            let retried = try await onThread { listener.waitForAccepted(4, timeout: 20) }
            #expect(retried, "only \(listener.accepted) attempts: the client hangs on an upgrade closed without an answer")
            try await within(5, "close() while connecting") { await client.close() }
            #expect(await client.state == .closed)
        }

        /// Five clients with their upgrade requests held in a proxy when the broker is SIGKILLed:
        /// the requests then meet a dead broker, every attempt ends, and all five connect to the
        /// restarted broker.
        @Test(.timeLimit(.minutes(2)))
        func clientsConnectingWhenTheBrokerIsKilledConnectAfterItsRestart() async throws {
            try await withRig { rig in
                let proxy = try rig.proxy()
                proxy.stall()
                let clients = (0..<5).map { index in
                    rig.client(port: proxy.port, clientID: "mid-connect-\(index)") { $0.handshakeTimeout = .seconds(120) }
                }
                let held = try await onThread { proxy.wait(timeout: 10) { $0.live == 5 } }
                #expect(held, "\(proxy.counters)")
                for client in clients { #expect(await client.state == .connecting) }
                try await onThread { try rig.ferryd.kill() }
                proxy.unstall()
                try await onThread { try rig.ferryd.start() }
                for client in clients { try await client.waitUntilConnected(within: 30) }
                for client in clients { try await within(5, "close()") { await client.close() } }
            }
        }
    }
}
