import ArgumentParser
import FerryClient
import FerryProtocol
import FerryTestSupport
import Foundation
import Logging

/// One process's share of the subscribers of `storm` and `failover`. Prints `ready` once every
/// client is connected, then, once every client has all its messages (or at the timeout), one
/// JSON line: each client's connect times and what it saw.
struct StormWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "storm-worker", shouldDisplay: false)

    @Option var port: Int
    @Option var clients: Int
    @Option var prefix: String
    @Option(help: "A client is complete once it has version 1…this of its topic; 0: once it has the marker message.")
    var messages: Int
    @Option var timeout: Double
    @Option(help: "Client i subscribes to <topic>-<i mod topics> (to <topic> when there is one).") var topic = "storm"
    @Option var topics = 1
    @Option(help: "When the first connection is lost, the client goes on with a new FerryClient on this port, as one given a second URL.")
    var failoverPort: Int?
    @Option(help: "Every reconnect waits a random 0…this many ms (the move to the failover port too); FerryClient's default backoff when absent.")
    var backoffMs: Int?
    @Flag var noJitter = false

    /// What the payload of the message that ends a failover run is, exactly.
    static let marker = Data(#"{"marker":true}"#.utf8)

    static func topicName(_ base: String, client index: Int, of topics: Int) -> String {
        topics <= 1 ? base : "\(base)-\(index % topics)"
    }

    struct ClientLog: Codable {
        var clientID = ""
        var topic = ""
        /// Seconds since 1970 of each `connected` state.
        var connectedAt: [Double] = []
        /// Seconds since 1970 of each connect attempt after the first connection was lost.
        var attemptsAt: [Double] = []
        /// The highest version received.
        var highest: UInt64 = 0
        /// Versions received again: at-least-once after a crash. One FerryClient drops them
        /// itself; the failover's second FerryClient does not know what the first received.
        var duplicates = 0
        /// Versions skipped: a later one arrived first, and they never came before it.
        var missing: UInt64 = 0
        /// `reset` frames: the topic's log got a new epoch and delivery started over.
        var resets = 0
        /// `highest` and `resets` when the first connection was lost.
        var highestAtLoss: UInt64?
        var resetsAtLoss = 0
        /// Seconds since 1970 when the client had every version up to its target, and when its
        /// last message came.
        var completeAt: Double?
        var lastMessageAt: Double?
        /// The longest time between two messages after the client's last welcome: with a steady
        /// stream, a stall rather than a backlog.
        var longestSilence = 0.0
        /// How the current FerryClient's subscription stands: nil while it delivers.
        var subscription: String?
        var problem: String?
    }

    /// A worker's last line.
    struct Report: Codable {
        var clients: [ClientLog]
        /// The clients' log lines by error code (or message), all of them counted.
        var logged: [String: Int]
        /// CPU seconds the worker used, start to report.
        var cpuSeconds: Double
    }

    func run() async throws {
        LoggingSystem.bootstrap { CountingLogHandler(label: $0) }
        let url = try Self.url(port)
        let failoverURL = try failoverPort.map(Self.url)
        let board = Board(
            logs: (0..<clients).map { ClientLog(clientID: "\(prefix)\($0)", topic: Self.topicName(topic, client: $0, of: topics)) })
        var configuration = FerryClientConfiguration()
        if let backoffMs {
            // Factor 1: every wait is a random part of the same bound.
            configuration.backoff = Backoff(initial: .milliseconds(backoffMs), factor: 1, cap: .milliseconds(backoffMs))
        }
        if noJitter { configuration.makeRandom = { Ceiling() } }
        let drivers = (0..<clients).map { index in
            let driver = ClientDriver(
                index: index, clientID: "\(prefix)\(index)", topic: Self.topicName(topic, client: index, of: topics), url: url,
                failoverURL: failoverURL, target: UInt64(max(0, messages)),
                moveWithin: .milliseconds(backoffMs ?? 0), jitter: !noJitter, configuration: configuration, board: board)
            return Task { await driver.drive() }
        }

        let deadline = Date().addingTimeInterval(timeout)
        let timer = Task {
            try await Task.sleep(for: .seconds(timeout))
            board.changed.yield()
        }
        var saidReady = false
        for await _ in board.changes {
            let counts = board.counts.value
            if counts.connected == clients && !saidReady {
                saidReady = true
                say("ready")
            }
            if counts.complete == clients || Date() >= deadline { break }
        }
        timer.cancel()
        var final = board.logs.value
        let now = Date().timeIntervalSince1970
        for index in final.indices {
            let log = final[index]
            guard log.completeAt == nil || log.missing > 0 else { continue }
            var problem = "\(log.clientID) on \(log.topic): highest version \(log.highest), \(log.missing) missing, \(log.duplicates) duplicates"
            if log.completeAt == nil {
                let state = await board.client(index)?.state
                problem += String(format: ", incomplete: last message %.1f s ago", now - (log.lastMessageAt ?? now))
                    + ", client \(state.map { "\($0)" } ?? "closed"), subscription \(log.subscription ?? "open")"
            }
            final[index].problem = problem
        }
        let report = Report(clients: final, logged: CountingLogHandler.counts.value, cpuSeconds: cpuSeconds(of: getpid()))
        say(String(decoding: try JSONEncoder().encode(report), as: UTF8.self))
        for driver in drivers { driver.cancel() }
        for client in board.closeAll() { await client.close() }
        for driver in drivers { await driver.value }
    }

    private static func url(_ port: Int) throws -> URL {
        guard let url = URL(string: "ws://127.0.0.1:\(port)/v1/ws") else { throw ValidationError("bad port \(port)") }
        return url
    }

    /// One line to the coordinator, unbuffered.
    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// Writes a log line the first few times its error code (or message) comes, and counts every
/// one: a broker that answers each ack with an error would otherwise fill the disk.
private struct CountingLogHandler: LogHandler {
    static let counts = Shared([String: Int]())
    private var base: StreamLogHandler

    init(label: String) {
        base = StreamLogHandler.standardError(label: label)
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        let key = event.metadata?["ferry.code"].map { "\($0)" } ?? "\(event.message)"
        let seen = Self.counts.update { counts in
            counts[key, default: 0] += 1
            return counts[key] ?? 0
        }
        if seen <= 3 { base.log(event: event) }
    }
}

/// Always the top of the range: every wait is its backoff ceiling.
private struct Ceiling: RandomNumberGenerator {
    mutating func next() -> UInt64 { .max }
}

/// What a worker's clients share: their logs, how many are connected and complete, and the
/// FerryClients open now (to close them at the end).
private final class Board: Sendable {
    let logs: Shared<[StormWorker.ClientLog]>
    struct Counts {
        var connected = 0
        var complete = 0
    }

    struct Open {
        var clients: [Int: FerryClient] = [:]
        var closing = false
    }

    /// Clients connected at least once, clients complete: changed only on those transitions,
    /// so the worker's loop does not wake per message.
    let counts = Shared(Counts())
    let changes: AsyncStream<Void>
    let changed: AsyncStream<Void>.Continuation
    private let open = Shared(Open())

    init(logs: [StormWorker.ClientLog]) {
        self.logs = Shared(logs)
        (changes, changed) = AsyncStream.makeStream(of: Void.self)
    }

    /// Makes client `index`'s FerryClient unless the worker is closing them all.
    func open(_ index: Int, _ make: () -> FerryClient) -> FerryClient? {
        open.update { open in
            guard !open.closing else { return nil }
            let client = make()
            open.clients[index] = client
            return client
        }
    }

    func client(_ index: Int) -> FerryClient? {
        open.update { $0.clients[index] }
    }

    func forget(_ index: Int) {
        open.update { _ = $0.clients.removeValue(forKey: index) }
    }

    /// Every open client; none opens after this.
    func closeAll() -> [FerryClient] {
        open.update { open in
            open.closing = true
            return Array(open.clients.values)
        }
    }
}

/// One subscriber: a FerryClient on the first port and, with a failover port, a second one there
/// once the first connection is lost.
private struct ClientDriver: Sendable {
    let index: Int
    let clientID: String
    let topic: String
    let url: URL
    let failoverURL: URL?
    let target: UInt64
    let moveWithin: Duration
    let jitter: Bool
    let configuration: FerryClientConfiguration
    let board: Board

    func drive() async {
        guard let first = board.open(index, { FerryClient(url: url, clientID: clientID, configuration: configuration) }) else { return }
        guard await follow(first, untilLoss: failoverURL != nil), let failoverURL else { return }
        board.forget(index)
        await first.close()
        // A real client's first wait before its next attempt (here, at the other URL).
        let fraction = jitter ? Double.random(in: 0..<1) : 1
        do {
            try await Task.sleep(for: moveWithin * fraction)
        } catch {
            return
        }
        guard let second = board.open(index, { FerryClient(url: failoverURL, clientID: clientID, configuration: configuration) }) else { return }
        board.logs.update { $0[index].subscription = nil }
        _ = await follow(second, untilLoss: false)
    }

    /// Logs `client`'s states and messages until it is closed or, with `untilLoss`, until its
    /// first connection is lost (then closes it); true when it was lost.
    private func follow(_ client: FerryClient, untilLoss: Bool) async -> Bool {
        let states = client.states
        // Earliest: a subscription made before any publish misses nothing; a restored one
        // (the second client's) continues from the session's ack floor, whatever it says.
        let subscription = client.subscribe(topic, from: .earliest)
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                var ending = "ended"
                do {
                    for try await message in subscription { received(message) }
                } catch {
                    ending = "failed: \(error)"
                }
                // Expected once its client is closed; said when a client is stuck.
                board.logs.update { $0[index].subscription = ending }
                return false
            }
            group.addTask { await watch(states, untilLoss: untilLoss) }
            var lost = false
            for await ended in group where ended {
                lost = true
                await client.close()
            }
            return lost
        }
    }

    private func watch(_ states: AsyncStream<ConnectionState>, untilLoss: Bool) async -> Bool {
        for await state in states {
            let now = Date().timeIntervalSince1970
            switch state {
            case .connected:
                let first = board.logs.update { logs in
                    logs[index].connectedAt.append(now)
                    return logs[index].connectedAt.count == 1
                }
                if first {
                    board.counts.update { $0.connected += 1 }
                    board.changed.yield()
                }
            case .connecting:
                board.logs.update { logs in
                    if !logs[index].connectedAt.isEmpty { logs[index].attemptsAt.append(now) }
                }
            case .reconnecting where untilLoss:
                board.logs.update { logs in
                    logs[index].highestAtLoss = logs[index].highest
                    logs[index].resetsAtLoss = logs[index].resets
                }
                return true
            default:
                break
            }
        }
        return false
    }

    private func received(_ message: FerryMessage) {
        let isMarker = target == 0 && message.payload == StormWorker.marker
        let resets = message.events.filter { if case .reset = $0 { true } else { false } }.count
        let completed = board.logs.update { logs in
            var log = logs[index]
            log.resets += resets
            if message.version <= log.highest {
                log.duplicates += 1
            } else {
                log.missing += message.version - log.highest - 1
                log.highest = message.version
            }
            let now = Date().timeIntervalSince1970
            let complete = log.completeAt == nil && (isMarker || (target > 0 && log.highest >= target))
            if complete { log.completeAt = now }
            if let last = log.lastMessageAt, let welcome = log.connectedAt.last, last > welcome {
                log.longestSilence = max(log.longestSilence, now - last)
            }
            log.lastMessageAt = now
            logs[index] = log
            return complete
        }
        if completed {
            board.counts.update { $0.complete += 1 }
            board.changed.yield()
        }
    }
}
