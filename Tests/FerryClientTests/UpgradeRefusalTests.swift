import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Testing

extension Serial {
    /// A broker that refuses the upgrade: 401 stops the client with the broker's error, 503
    /// is retried no sooner than `Retry-After`, and a token provider is asked before each attempt.
    @Suite("FerryClient refused upgrades and token provider")
    struct UpgradeRefusalTests {
        static let secret = ["FERRY_JWT_SECRET": "ferry-client-test-secret-0123456789", "FERRY_ADMIN_TOKEN": testAdminToken]

        @Test(.timeLimit(.minutes(1)))
        func aRefusedTokenStopsTheClientWithTheBrokersError() async throws {
            try await withRig(Self.secret) { rig in
                let proxy = try rig.proxy()  // counts the attempts
                let url = try #require(URL(string: "ws://127.0.0.1:\(proxy.port)/v1/ws?token=not-a-jwt"))
                var configuration = FerryClientConfiguration()
                configuration.backoff = testBackoff
                let client = FerryClient(url: url, configuration: configuration)
                let failed = try await client.waitForState("failed") { $0.failure != nil }
                await client.close()
                let error = try #require(failed.failure)
                #expect(error.httpStatus == 401, "\(error)")
                #expect(error.protocolError == ProtocolError(.unauthorized, "the token is not a JWT with an exp claim"))
                #expect(proxy.acceptedLinks == 1, "a refused token must not be retried")
            }
        }

        @Test(.timeLimit(.minutes(1)))
        func theTokenProviderIsAskedBeforeEachAttempt() async throws {
            try await withRig(Self.secret) { rig in
                let proxy = try rig.proxy()
                let calls = Shared(0)
                let client = rig.client(port: proxy.port, clientID: "provided") {
                    $0.tokenProvider = {
                        calls.update { $0 += 1 }
                        return testAdminToken
                    }
                }
                try await client.waitUntilConnected()
                #expect(calls.value == 1)
                proxy.dropAll()
                try await client.waitForState("reconnecting") { $0.reconnectAttempt != nil }
                try await client.waitUntilConnected()
                #expect(calls.value == 2)
            }
        }

        /// With the broker at its one connection, a second client is refused with 503 and
        /// `Retry-After: 1`: its next attempt waits a full second even though its own backoff
        /// says zero, and it connects once the slot is free.
        @Test(.timeLimit(.minutes(1)))
        func aFullBrokerIsRetriedNoSoonerThanRetryAfter() async throws {
            try await withRig(["FERRY_MAX_CONNECTIONS": "1", "FERRY_ADMIN_TOKEN": testAdminToken]) { rig in
                let first = rig.client(clientID: "holder")
                try await first.waitUntilConnected()
                let clock = ManualClock()
                let second = rig.client(clientID: "waiter") {
                    $0.clock = clock.clientClock
                    $0.makeRandom = { FixedFraction(value: 0) }  // the backoff alone would not wait at all
                }
                let refused = try await second.waitForState("refused") { $0.reconnectAttempt != nil }
                #expect(refused == .reconnecting(attempt: 1, delay: .seconds(1)))
                await clock.waitForSleeper(until: clock.now + .seconds(1))
                clock.advance(by: .seconds(1) - .nanoseconds(1))
                #expect(clock.sleeperCount == 1, "the next attempt started before Retry-After")
                await first.close()
                try await onThread {
                    let deadline = Deadline(seconds: 10)
                    // Nothing tells the test when the broker has seen the close: ask it.
                    while try rig.ferryd.admin("GET", "/stats").json?.int("connections") != 0 {
                        if deadline.hasPassed { throw TestFailure("the broker kept the first connection") }
                        Thread.sleep(forTimeInterval: 0.02)
                    }
                }
                clock.advance(by: .nanoseconds(1))
                try await second.waitUntilConnected()
            }
        }
    }
}
