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

        /// A token that expires on an open connection: the broker closes it with 4001, and a
        /// client with a provider reconnects with the provider's next token instead of stopping.
        @Test(.timeLimit(.minutes(1)))
        func aTokenThatExpiresOnTheConnectionIsReplacedByTheProvider() async throws {
            try await withRig(Self.secret) { rig in
                let secret = Self.secret["FERRY_JWT_SECRET"] ?? ""
                let shortLived = try await onThread { try mintToken(secret: secret, ttl: 2) }
                let calls = Shared(0)
                let client = rig.client(clientID: nil) {
                    $0.tokenProvider = { calls.update { $0 += 1; return $0 } == 1 ? shortLived : testAdminToken }
                }
                try await client.waitUntilConnected()
                let cut = try await client.waitForState("cut off at the token's expiry") { $0 != .connected }
                #expect(cut.reconnectAttempt != nil, "a provider's client must not stop at 4001: \(cut)")
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

/// An HS256 client token (no `sub`) from the built `ferryctl token`, expiring in `ttl` seconds.
private func mintToken(secret: String, ttl: Int) throws -> String {
    let process = Process()
    process.executableURL = try locateExecutable(named: "ferryctl", override: "FERRYCTL_PATH")
    process.arguments = ["token", "--secret", secret, "--ttl", String(ttl)]
    let output = Pipe()
    process.standardOutput = output
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try runWithNoSignalsBlocked(process)
    let token = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    _ = exited.wait(timeout: .now() + 10)
    guard process.terminationStatus == 0, !token.isEmpty else { throw TestFailure("ferryctl token failed: \(process.terminationStatus)") }
    return token
}
