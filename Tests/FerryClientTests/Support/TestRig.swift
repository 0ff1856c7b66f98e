import FerryClient
import FerryTestSupport
import Foundation
import Synchronization

/// Reconnect waits short enough for tests; the rules (exponential, full jitter, cap) are the same.
let testBackoff = Backoff(initial: .milliseconds(20), factor: 2, cap: .milliseconds(500))

/// The JSON payload the tests publish: `{"n":1}`, `{"n":2}`, …
struct Numbered: Codable, Sendable, Equatable {
    let n: Int
}

/// A broker with the clients and proxies a test made against it.
///
/// `withRig` closes every client and proxy when the test body ends, however it ends, and only then
/// lets the broker go: no client keeps reconnecting to a dead port after its test.
final class TestRig: Sendable {
    let ferryd: Ferryd
    private let made = Mutex<(clients: [FerryClient], proxies: [FaultProxy])>(([], []))

    init(environment: [String: String]) throws {
        // Durability against power loss is the server suite's business: skip the fsyncs here.
        ferryd = try Ferryd(environment: ["FERRY_SYNC": "none"].merging(environment) { $1 })
    }

    /// A client of the broker, or of whatever listens on `port` (a proxy).
    /// - Parameter stateName: its state folder inside the broker's temp folder; defaults to the
    ///   client id, so a second client with the same id is the first one after a process restart.
    func client(
        port: Int? = nil, clientID: String?, stateName: String? = nil,
        ackMode: FerryClientConfiguration.AckMode = .afterProcessing, configure: (inout FerryClientConfiguration) -> Void = { _ in }
    ) -> FerryClient {
        var configuration = FerryClientConfiguration()
        configuration.stateDirectory = ferryd.directory.appendingPathComponent("client-\(stateName ?? clientID ?? UUID().uuidString)")
        configuration.backoff = testBackoff
        configuration.ackMode = ackMode
        configure(&configuration)
        let url = URL(string: "ws://127.0.0.1:\(port ?? ferryd.port)/v1/ws")!
        let client = FerryClient(url: url, clientID: clientID, configuration: configuration)
        made.withLock { $0.clients.append(client) }
        return client
    }

    /// A fault proxy in front of the broker.
    func proxy() throws -> FaultProxy {
        let proxy = try FaultProxy(targetPort: ferryd.port)
        made.withLock { $0.proxies.append(proxy) }
        return proxy
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port and data, off the cooperative pool.
    func killAndRestartBroker() async throws {
        let ferryd = ferryd
        try await onThread {
            try ferryd.kill()
            try ferryd.start()
        }
    }

    fileprivate func tearDown() async {
        let (clients, proxies) = made.withLock { made in
            defer { made = ([], []) }
            return made
        }
        for client in clients { await client.close() }
        for proxy in proxies { proxy.close() }
    }
}

/// Runs `body` with a fresh broker (`FERRY_SYNC=none` plus `environment`), then closes what it made.
func withRig<T>(_ environment: [String: String] = [:], _ body: (TestRig) async throws -> T) async throws -> T {
    let rig = try TestRig(environment: environment)
    do {
        let result = try await body(rig)
        await rig.tearDown()
        return result
    } catch {
        await rig.tearDown()
        print("ferryd log tail after a failure:\n\(rig.ferryd.logTail(bytes: 2000))")
        throw error
    }
}

// MARK: - Bounded waits

/// `body`'s result, or a `TestFailure` naming `what` when it takes longer than `seconds`
/// (`body` is then cancelled). A deadline, never a synchronisation: the wait ends when `body` does.
func within<T: Sendable>(
    _ seconds: Double, _ what: @autoclosure () -> String, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let result = try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            return nil
        }
        defer { group.cancelAll() }
        return try await group.next() ?? nil
    }
    guard let result else { throw TestFailure("\(what()): not within \(seconds) s") }
    return result
}

/// Runs blocking work (a broker kill, HTTP on raw sockets) on a thread of its own, so it never
/// holds one of the few threads of the cooperative pool that the client needs.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        _ = BackgroundThread { continuation.resume(with: Result { try body() }) }
    }
}

extension ConnectionState {
    /// The attempt number while reconnecting.
    var reconnectAttempt: Int? {
        if case .reconnecting(let attempt, _) = self { return attempt }
        return nil
    }

    var failure: FerryClientError? {
        if case .failed(let error) = self { return error }
        return nil
    }
}

extension FerryClient {
    /// The first state, current or coming, that `matches`; fails after `seconds` or when the
    /// states end without one.
    @discardableResult
    func waitForState(
        _ what: String, within seconds: Double = 10, where matches: @escaping @Sendable (ConnectionState) -> Bool
    ) async throws -> ConnectionState {
        let states = states
        return try await FerryClientTests.within(seconds, "state \(what)") {
            for await state in states where matches(state) { return state }
            throw TestFailure("the states ended before \(what)")
        }
    }

    func waitUntilConnected(within seconds: Double = 10) async throws {
        try await waitForState("connected", within: seconds) { $0 == .connected }
    }
}

// MARK: - Receiving

/// What a subscriber saw, and why it stopped early if it did.
struct Received: Sendable {
    var messages: [FerryMessage] = []
    /// Nil when the wanted count arrived; else the end of the subscription or the timeout.
    var stoppedEarly: String?

    var versions: [UInt64] { messages.map(\.version) }

    /// Messages whose payload is not `{"n": version}`: the stream carried the wrong bytes.
    var payloadMismatches: [UInt64] {
        messages.filter { (try? $0.decode(Numbered.self))?.n != Int($0.version) }.map(\.version)
    }
}

/// Reads `subscription` until `count` messages arrived, it ends, or `seconds` pass; never throws,
/// so a test can say how far it got. `onMessage` runs before the next message is asked for (so
/// before an `.afterProcessing` ack of this one), with the 1-based count received so far.
func receive(
    _ subscription: FerrySubscription, count: Int, within seconds: Double,
    onMessage: @escaping @Sendable (FerryMessage, Int) async throws -> Void = { _, _ in }
) async -> Received {
    let log = Shared(Received())
    do {
        try await within(seconds, "\(count) messages") {
            guard count > 0 else { return }
            for try await message in subscription {
                let received = log.update {
                    $0.messages.append(message)
                    return $0.messages.count
                }
                try await onMessage(message, received)
                if received >= count { return }
            }
            throw TestFailure("the subscription ended")
        }
    } catch {
        log.update { $0.stoppedEarly = "\(error) after \($0.messages.count) of \(count)" }
    }
    return log.value
}

/// Nil when `versions` is exactly `expected` in order; else what differs: the first difference,
/// duplicates, missing versions.
func sequenceProblem(_ versions: [UInt64], expected: ClosedRange<UInt64>) -> String? {
    if versions.elementsEqual(expected) { return nil }
    var words: [String] = ["\(versions.count) versions, expected \(expected.count)"]
    if let index = zip(versions, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset
        ?? (versions.count < expected.count ? versions.count : nil)
    {
        let around = versions[max(0, index - 3)..<min(versions.count, index + 4)]
        words.append("first difference at position \(index): \(Array(around))")
    }
    var counts: [UInt64: Int] = [:]
    for version in versions { counts[version, default: 0] += 1 }
    let duplicated = counts.filter { $0.value > 1 }.keys.sorted()
    if !duplicated.isEmpty { words.append("\(duplicated.count) duplicated, first \(duplicated.prefix(10))") }
    let missing = expected.filter { counts[$0] == nil }
    if !missing.isEmpty { words.append("\(missing.count) missing, first \(missing.prefix(10))") }
    let foreign = counts.keys.filter { !expected.contains($0) }.sorted()
    if !foreign.isEmpty { words.append("\(foreign.count) outside \(expected), first \(foreign.prefix(10))") }
    return words.joined(separator: "; ")
}

extension Ferryd {
    /// The `n` of each message stored in `topic` after version `from` (up to 1000), in version order.
    func storedNumbers(_ topic: String, from: Int = 0) throws -> [Int] {
        let response = try get(Self.topicPath(topic) + "/messages?from=\(from)&limit=1000")
        guard response.status == 200, let messages = response.json?.objects("messages") else {
            throw TestFailure("messages of \(topic): \(response)")
        }
        return messages.map { $0.object("data")?.int("n") ?? -1 }
    }
}

// MARK: - Killing links

/// Kills a client's links through a proxy, one at a time. Each kill first waits for the client's
/// next link and its welcome, so it hits a live, welcomed connection: frames that arrived before the
/// last kill keep the client busy (and `.connected` to a dead link) for a while after it.
final class LinkKiller: Sendable {
    let proxy: FaultProxy
    let client: FerryClient
    private let acceptedAtLastKill = Shared(0)
    private let killed = Shared(0)

    init(proxy: FaultProxy, client: FerryClient) {
        self.proxy = proxy
        self.client = client
    }

    /// Links killed so far.
    var linksKilled: Int { killed.value }

    func killNextLink(within seconds: Double = 10) async throws {
        let since = acceptedAtLastKill.value
        let proxy = proxy
        let linked = try await onThread { proxy.wait(timeout: seconds) { $0.accepted > since && $0.live > 0 } }
        guard linked else { throw TestFailure("no new link within \(seconds) s of the last kill (\(proxy.counters))") }
        try await client.waitUntilConnected(within: seconds)
        let dropped = proxy.dropAll()
        killed.update { $0 += dropped }
        acceptedAtLastKill.update { $0 = proxy.acceptedLinks }
    }
}
