import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Testing

extension Serial {
    /// FerryClient against a real `ferryd`, through real sockets, with links and brokers killed under it.
    @Suite("FerryClient integration")
    struct ClientIntegrationTests {
        // MARK: 1. Link kills

        @Test(.timeLimit(.minutes(4)))
        func everyMessageOnceInOrderThroughFiftyLinkKills() async throws {
            try await withRig { rig in
                let total = 10_000
                let drops = 50
                let dropEvery = total / (drops + 1)  // 196: the last drop still has 200 messages after it
                let proxy = try rig.proxy()
                let client = rig.client(port: proxy.port, clientID: "worker-1")
                let subscription = client.subscribe("orders", from: .earliest)
                let publisher = NumberedPublisher(port: rig.ferryd.port, topic: "orders", count: total)
                let killer = LinkKiller(proxy: proxy, client: client)

                let received = await receive(subscription, count: total, within: 200) { _, count in
                    publisher.consumerReached(count)
                    // Triggered by progress, not by time.
                    if count % dropEvery == 0 && count / dropEvery <= drops { try await killer.killNextLink() }
                }
                print("link kills: \(killer.linksKilled) links dropped, \(proxy.acceptedLinks) accepted, publisher \(publisher.value.retries) retries")

                #expect(publisher.join(timeout: 30), "the publisher is stuck")
                #expect(received.stoppedEarly == nil, "\(received.stoppedEarly ?? "")")
                #expect(sequenceProblem(received.versions, expected: 1...UInt64(total)) == nil,
                    "\(sequenceProblem(received.versions, expected: 1...UInt64(total)) ?? "")")
                #expect(received.payloadMismatches.isEmpty, "payload is not {\"n\": version} at \(received.payloadMismatches.prefix(5))")
                #expect(publisher.value.problem == nil, "\(publisher.value.problem ?? "")")
                #expect(publisher.value.versions.elementsEqual(1...UInt64(total)))
                // Each drop hit a live link.
                #expect(killer.linksKilled >= drops, "only \(killer.linksKilled) links dropped")
            }
        }

        // MARK: 2. Broker SIGKILL

        @Test(.timeLimit(.minutes(4)))
        func everyConfirmedMessageOnceInOrderThroughBrokerKills() async throws {
            try await withRig { rig in
                let total = 10_000
                let killsAt: Set<Int> = [total / 3, 2 * total / 3]
                let client = rig.client(clientID: "worker-1")
                let subscription = client.subscribe("orders", from: .earliest)
                let publisher = NumberedPublisher(port: rig.ferryd.port, topic: "orders", count: total)

                let received = await receive(subscription, count: total, within: 200) { _, count in
                    publisher.consumerReached(count)
                    if killsAt.contains(count) { try await rig.killAndRestartBroker() }
                }

                #expect(publisher.join(timeout: 30), "the publisher is stuck")
                let confirmed = publisher.value
                print("broker kills: publisher \(confirmed.retries) retries, \(confirmed.duplicates) duplicates answered")
                #expect(confirmed.problem == nil, "\(confirmed.problem ?? "")")
                #expect(confirmed.versions.elementsEqual(1...UInt64(total)), "confirmed versions are not 1...\(total)")
                #expect(received.stoppedEarly == nil, "\(received.stoppedEarly ?? "")")
                #expect(sequenceProblem(received.versions, expected: 1...UInt64(total)) == nil,
                    "\(sequenceProblem(received.versions, expected: 1...UInt64(total)) ?? "")")
                #expect(received.payloadMismatches.isEmpty, "payload is not {\"n\": version} at \(received.payloadMismatches.prefix(5))")
                let info = try rig.ferryd.topicInfo("orders")
                #expect(info.int("messages") == total, "\(info.text)")
            }
        }

        // MARK: 2b. Publishing through link kills

        /// The outbox under fire: publishes in flight when a link dies are sent again with their
        /// msg_id, so the broker stores each once and every call returns its one version.
        @Test(.timeLimit(.minutes(3)))
        func publishesInFlightThroughLinkKillsAreStoredExactlyOnce() async throws {
            try await withRig { rig in
                let total = 2_000
                let inFlight = 20
                let killEvery = 100
                let proxy = try rig.proxy()
                let client = rig.client(port: proxy.port, clientID: "publisher-1")
                let killer = LinkKiller(proxy: proxy, client: client)

                let versions = try await within(150, "\(total) publishes through link kills") {
                    try await withThrowingTaskGroup(of: (Int, UInt64).self) { group in
                        var versions: [Int: UInt64] = [:]
                        var next = 1
                        func publishNext() {
                            let n = next
                            next += 1
                            group.addTask { (n, try await client.publish("ledger", json: Numbered(n: n))) }
                        }
                        while next <= inFlight { publishNext() }
                        while let (n, version) = try await group.next() {
                            versions[n] = version
                            if versions.count % killEvery == 0 && versions.count < total { try await killer.killNextLink() }
                            if next <= total { publishNext() }
                        }
                        return versions
                    }
                }
                print("publishing through link kills: \(killer.linksKilled) links dropped, \(proxy.acceptedLinks) accepted")

                #expect(versions.count == total)
                #expect(Set(versions.values) == Set(1...UInt64(total)), "\(Set(versions.values).count) distinct versions")
                #expect(killer.linksKilled >= total / killEvery - 1)
                let info = try rig.ferryd.topicInfo("ledger")
                #expect(info.int("messages") == total, "\(info.text)")
                // Version v holds the n whose publish call returned v.
                let stored = try rig.ferryd.storedNumbers("ledger", from: 0) + rig.ferryd.storedNumbers("ledger", from: 1000)
                let returned = versions.sorted { $0.value < $1.value }.map(\.key)
                #expect(stored == returned, "stored payloads differ from what the publish calls returned")
            }
        }

        // MARK: 3. Outbox

        /// With a memory bound of 8, 92 of the 100 wait on disk and are read back as earlier ones
        /// are confirmed.
        @Test(.timeLimit(.minutes(2)), arguments: [1024, 8])
        func publishesMadeWhileTheBrokerIsDownAreStoredExactlyOnce(memoryBound: Int) async throws {
            try await withRig { rig in
                let client = rig.client(clientID: "publisher-1") { $0.outboxMemoryLimit = memoryBound }
                try await client.waitUntilConnected()
                try await onThread { try rig.ferryd.kill() }
                let down = try await client.waitForState("reconnecting after the kill") { $0.reconnectAttempt != nil }

                let brokerBack = Shared(false)
                let returnedWhileDown = Shared(0)
                let publishes = (1...100).map { n in
                    Task {
                        let version = try await client.publish("outbox", json: Numbered(n: n))
                        if !brokerBack.value { returnedWhileDown.update { $0 += 1 } }
                        return version
                    }
                }
                // Two more failed attempts with the publishes waiting: they are in the outbox, not on a wire.
                let firstAttempt = down.reconnectAttempt ?? 0
                try await client.waitForState("two more failed attempts") { ($0.reconnectAttempt ?? 0) >= firstAttempt + 2 }
                #expect(returnedWhileDown.value == 0, "publishes returned while the broker was down")

                brokerBack.update { $0 = true }
                try await onThread { try rig.ferryd.start() }
                client.retryNow()
                let versions = try await within(30, "100 publishes confirmed") {
                    var versions: [UInt64] = []
                    for publish in publishes { versions.append(try await publish.value) }
                    return versions
                }

                #expect(returnedWhileDown.value == 0)
                #expect(versions.sorted().elementsEqual(1...100), "versions \(versions.sorted())")
                let info = try rig.ferryd.topicInfo("outbox")
                #expect(info.int("messages") == 100 && info.int("head") == 100, "\(info.text)")
                #expect(try rig.ferryd.storedNumbers("outbox").sorted() == Array(1...100))
            }
        }

        @Test(.timeLimit(.minutes(2)))
        func unsentPublishesSurviveAClientRestart() async throws {
            try await withRig { rig in
                let count = 20
                let first = rig.client(clientID: "publisher-1")
                try await first.waitUntilConnected()
                try await onThread { try rig.ferryd.kill() }
                let down = try await first.waitForState("reconnecting after the kill") { $0.reconnectAttempt != nil }
                let publishes = (1...count).map { n in
                    Task { try await first.publish("survivors", json: Numbered(n: n)) }
                }
                let firstAttempt = down.reconnectAttempt ?? 0
                try await first.waitForState("two more failed attempts") { ($0.reconnectAttempt ?? 0) >= firstAttempt + 2 }
                await first.close()
                for publish in publishes {
                    let result = await publish.result
                    #expect(throws: FerryClientError.closed, "a publish of a closed client must fail, not return") {
                        try result.get()
                    }
                }

                try await onThread { try rig.ferryd.start() }
                // The same process identity after a restart: same client id, same state folder.
                let second = rig.client(clientID: "publisher-1")
                let received = await receive(second.subscribe("survivors", from: .earliest), count: count, within: 30)
                #expect(received.stoppedEarly == nil, "\(received.stoppedEarly ?? "")")
                #expect(received.versions.elementsEqual(1...UInt64(count)), "versions \(received.versions)")
                let numbers = received.messages.compactMap { try? $0.decode(Numbered.self).n }
                #expect(numbers.sorted() == Array(1...count), "numbers \(numbers)")

                // A publish after the resent outbox gets the next version: nothing was stored twice before it.
                let sentinel = try await within(10, "sentinel publish") { try await second.publish("survivors", json: Numbered(n: count + 1)) }
                #expect(sentinel == UInt64(count + 1))
                #expect(try rig.ferryd.topicInfo("survivors").int("messages") == count + 1)
            }
        }

        // MARK: 4. Order of the application's calls

        /// `subscribe` then `publish`: the subscription is in effect first, so a `.latest`
        /// subscription sees the publish made right after it (the heartbeat watchdog's tests are
        /// in ClientClockTests).
        @Test(.timeLimit(.minutes(2)))
        func aSubscriptionIsInEffectBeforeThePublishThatFollowsIt() async throws {
            try await withRig { rig in
                let client = rig.client(clientID: nil)
                try await client.waitUntilConnected()
                for n in 1...20 {
                    let subscription = client.subscribe("fresh-\(n)", from: .latest)
                    let version = try await client.publish("fresh-\(n)", json: Numbered(n: 1))
                    let received = await receive(subscription, count: 1, within: 10)
                    #expect(received.versions == [version], "topic fresh-\(n): \(received.stoppedEarly ?? "")")
                }
            }
        }

        // MARK: 5. Takeover

        @Test(.timeLimit(.minutes(2)))
        func takeoverFailsTheOlderClientForGood() async throws {
            try await withRig { rig in
                let proxy = try rig.proxy()  // counts the older client's connections
                let older = rig.client(port: proxy.port, clientID: "worker-1", stateName: "older")
                let olderStates = older.states
                let olderSubscription = older.subscribe("jobs", from: .earliest)
                try await older.waitUntilConnected()

                let newer = rig.client(clientID: "worker-1", stateName: "newer")
                try await newer.waitUntilConnected()

                // The older client's states end, and end in .failed with the takeover close code.
                let history = try await within(10, "the older client's states end") {
                    var history: [ConnectionState] = []
                    for await state in olderStates { history.append(state) }
                    return history
                }
                let failure = history.last?.failure
                #expect(failure?.closeCode == 4009, "older client's states: \(history)")
                #expect(await older.state == history.last)
                await #expect(throws: FerryClientError.self, "the older subscription must end with the error") {
                    try await within(10, "the older subscription ends") {
                        for try await _ in olderSubscription {}
                    }
                }
                await #expect(throws: FerryClientError.self) { try await older.publish("jobs", json: Numbered(n: 0)) }

                // The newer client holds the session: a round trip works, and the older never came back.
                let version = try await within(10, "publish by the newer client") { try await newer.publish("jobs", json: Numbered(n: 1)) }
                #expect(version == 1)
                #expect(await newer.state == .connected)
                #expect(proxy.acceptedLinks == 1, "the older client reconnected after 4009")
            }
        }

        // MARK: 6. Gap

        enum Absence: String, CaseIterable, Sendable {
            /// The same client object, cut off by the network while the topic moves on.
            case disconnected
            /// The process restarts: a new client object on the same state folder.
            case restarted
        }

        @Test(.timeLimit(.minutes(2)), arguments: Absence.allCases)
        func clientThatWasAwayIsToldOfTheGap(_ absence: Absence) async throws {
            try await withRig(["FERRY_RETENTION_MAX_MESSAGES": "5"]) { rig in
                let proxy = try rig.proxy()
                let client = rig.client(port: proxy.port, clientID: "away-1", ackMode: .manual)
                let firstEvents = client.events
                let firstSubscription = client.subscribe("feed", from: .earliest)
                try await client.waitUntilConnected()
                try await onThread { _ = try rig.ferryd.publishNumbered("feed", count: 3) }
                let before = await receive(firstSubscription, count: 3, within: 10)
                #expect(before.versions == [1, 2, 3], "\(before.stoppedEarly ?? "")")
                await before.messages.last?.ack()
                // A publish answered on the same connection: the broker has handled the ack before it.
                _ = try await within(10, "round trip after the ack") { try await client.publish("side", json: Numbered(n: 0)) }

                switch absence {
                case .disconnected:
                    proxy.refuseNew(true)
                    proxy.dropAll()
                    try await client.waitForState("reconnecting") { $0.reconnectAttempt != nil }
                case .restarted:
                    await client.close()
                }
                // 20 more; retention keeps 19...23, so 4...18 are gone before the client is back.
                try await onThread { _ = try rig.ferryd.publishNumbered("feed", count: 20, startingAt: 4) }
                let events: AsyncStream<FerryEvent>
                let subscription: FerrySubscription
                switch absence {
                case .disconnected:
                    proxy.refuseNew(false)
                    client.retryNow()
                    (events, subscription) = (firstEvents, firstSubscription)
                case .restarted:
                    let restarted = rig.client(port: proxy.port, clientID: "away-1", ackMode: .manual)
                    (events, subscription) = (restarted.events, restarted.subscribe("feed"))
                }

                let gap = try await within(10, "a gap event") {
                    for await event in events { return event }
                    throw TestFailure("the events ended")
                }
                #expect(gap == .gap(topic: "feed", from: 4, to: 18))
                let after = await receive(subscription, count: 5, within: 10)
                #expect(after.stoppedEarly == nil, "\(after.stoppedEarly ?? "")")
                #expect(after.versions == [19, 20, 21, 22, 23])
                #expect(after.messages.map(\.events) == [[gap], [], [], [], []], "the gap comes with the first message after it")
                #expect(after.payloadMismatches.isEmpty)
            }
        }
    }
}
