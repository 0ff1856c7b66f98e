import ArgumentParser
import FerryProtocol
import FerryTestSupport
import Foundation
import NIOCore
import NIOPosix

/// A durable subscriber away while `--missed` messages are published: how long from its
/// reconnect to the last missed message, delivered and acked.
struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Time for a durable subscriber to catch up after missing N messages.")

    @Option(help: "Messages published while the subscriber is away.") var missed = 10_000
    @Option(help: "Payload bytes.") var size = 100
    @Option(help: "FERRY_SYNC of the broker.") var sync = "full"
    @Option(help: "Subscription window.") var window = 65536
    @Option(help: "Give up after this many seconds.") var timeout = 600.0
    @Option(help: "Two brokers on this PostgreSQL database: the subscriber leaves the first and resumes on the second.") var postgres: String?

    func run() async throws {
        let result = try await measure()
        print("resume: a durable subscriber missed \(missed) × \(size) B (FERRY_SYNC=\(sync), window \(window))")
        print(String(format: "  caught up (connect, hello, all delivered and acked)   %.0f ms  (%.0f msg/s; ferryd CPU %.2f s)", result.milliseconds, result.messagesPerSecond, result.brokerCPU))
        printJSON(result.json)
    }

    struct Result {
        let scenario: String
        let missed: Int
        let size: Int
        let sync: String
        /// From the reconnect to the last missed message delivered and acked.
        let milliseconds: Double
        let brokerCPU: Double

        var messagesPerSecond: Double { Double(missed) / milliseconds * 1000 }
        var json: [String: Any] {
            ["scenario": scenario, "missed": missed, "size": size, "sync": sync, "caught_up_ms": milliseconds.rounded(), "ferryd_cpu_s": brokerCPU]
        }
    }

    /// One run with these options: what `resume` prints, and one point of `scale missed`.
    func measure() async throws -> Result {
        // Everything published is kept, whatever its size: the catch-up is what is measured.
        var environment = ["FERRY_SYNC": sync, "FERRY_RETENTION_MAX_BYTES": "unlimited", "FERRY_MAP_SIZE": largeMap]
        environment["FERRY_POSTGRES_URL"] = postgres
        let ferryd = try Ferryd(environment: environment)
        let resumeOn = postgres == nil ? ferryd : try Ferryd(environment: environment)
        return try await withEventLoopGroup(threads: 1) { group in
            try await measure(publishingTo: ferryd, resumingOn: resumeOn, group: group)
        }
    }

    private func measure(publishingTo ferryd: Ferryd, resumingOn resumeOn: Ferryd, group: MultiThreadedEventLoopGroup) async throws -> Result {
        let latencies = LatencyLog()
        let (missed, window, size) = (missed, window, size)

        // The durable session and its subscription exist; then the subscriber goes away.
        let subscribed = Countdown(1)
        let first = try await BenchConnection.open(port: ferryd.port, group: group) {
            Subscriber(clientID: "away", window: window, expected: .max, subscribed: subscribed, delivered: Countdown(1), latencies: latencies)
        }
        try await subscribed.wait("subscription", within: timeout)
        try await first.close()

        let confirmed = Countdown(1)
        let publisher = try await BenchConnection.open(port: ferryd.port, group: group) {
            Publisher(total: missed, size: size, inFlight: 4096, rate: nil, confirmed: confirmed)
        }
        try await confirmed.wait("\(missed) publishes", within: timeout)
        try await publisher.close()

        let delivered = Countdown(1)
        let started = monotonicNanoseconds()
        let brokerCPU = cpuSeconds(of: resumeOn.processID ?? 0)
        let back = try await BenchConnection.open(port: resumeOn.port, group: group) {
            Subscriber(
                clientID: "away", from: .stored, window: window, expected: missed, subscribed: Countdown(1), delivered: delivered,
                latencies: latencies)
        }
        try await delivered.wait("catch-up of \(missed)", within: timeout)
        let milliseconds = Double(monotonicNanoseconds() - started) / 1e6
        let cpu = cpuSeconds(of: resumeOn.processID ?? 0) - brokerCPU
        try await back.close()
        return Result(
            scenario: postgres == nil ? "resume" : "resume-postgres-other-broker", missed: missed, size: size, sync: sync, milliseconds: milliseconds,
            brokerCPU: cpu)
    }
}

/// `--stored` messages on disk and a publisher mid-stream when the broker is SIGKILLed: how long
/// until it serves again, and is every confirmed message there?
struct Restart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "SIGKILL the broker with N messages stored and a publisher mid-stream; time the restart, count losses.")

    @Option(help: "Messages stored before the kill.") var stored = 1_000_000
    @Option(help: "Payload bytes.") var size = 100
    @Option(help: "Give up after this many seconds.") var timeout = 600.0

    func run() async throws {
        let result = try await measure()
        print("restart: SIGKILL with \(stored) messages stored and a publisher mid-stream (FERRY_SYNC=full)")
        print(String(format: "  serving again (spawn to /healthz and listening)   %.0f ms", result.milliseconds))
        print("  confirmed before the kill \(result.confirmed), stored after the restart \(result.messages) (head \(result.head)): \(result.lost) confirmed lost")
        printJSON(result.json)
        if let problem = result.problem { throw BenchError(problem) }
    }

    struct Result {
        let stored: Int
        /// From the spawn to `/healthz` answering and the log saying it listens.
        let milliseconds: Double
        let confirmed: Int
        let head: Int
        let messages: Int

        var lost: Int { max(0, confirmed - head) }
        /// Nil when every confirmed message is there and the count matches the head.
        var problem: String? {
            lost > 0 || messages != head ? "\(lost) confirmed messages lost; \(messages) stored under head \(head)" : nil
        }
        var json: [String: Any] {
            ["scenario": "restart", "stored": stored, "serving_ms": milliseconds.rounded(), "confirmed": confirmed, "head": head, "lost": lost]
        }
    }

    /// One run with these options: what `restart` prints, and one point of `scale stored`.
    func measure() async throws -> Result {
        // Everything published is kept, whatever its size: a trimmed log would count as lost.
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "full", "FERRY_RETENTION_MAX_BYTES": "unlimited", "FERRY_MAP_SIZE": largeMap])
        return try await withEventLoopGroup(threads: 1) { group in try await measure(ferryd, group: group) }
    }

    private func measure(_ ferryd: Ferryd, group: MultiThreadedEventLoopGroup) async throws -> Result {
        let (stored, size) = (stored, size)
        let confirmed = Countdown(1)
        let publisher = try await BenchConnection.open(port: ferryd.port, group: group) {
            Publisher(total: stored, size: size, inFlight: 4096, rate: nil, confirmed: confirmed)
        }
        try await confirmed.wait("\(stored) publishes", within: timeout)
        try await publisher.close()

        // A second publisher is mid-stream when the kill comes.
        let count = ConfirmationCount()
        let failed = Countdown(1)
        _ = try await BenchConnection.open(port: ferryd.port, group: group) {
            Publisher(total: .max, size: size, inFlight: 4096, rate: nil, confirmed: failed, confirmedSoFar: count)
        }
        // Its confirmations are a counter, not an event: poll it, bounded.
        let deadline = Deadline(seconds: timeout)
        while count.value < 20_000 {
            if deadline.hasPassed { throw BenchError("the second publisher had \(count.value) of 20,000 confirmations after \(timeout) s") }
            try await Task.sleep(for: .milliseconds(5))
        }
        try ferryd.kill()
        let confirmedBeforeKill = stored + count.value

        let started = monotonicNanoseconds()
        try ferryd.start()
        let serving = Double(monotonicNanoseconds() - started) / 1e6
        let info = try ferryd.topicInfo("bench")
        return Result(stored: stored, milliseconds: serving, confirmed: confirmedBeforeKill, head: info.int("head") ?? 0, messages: info.int("messages") ?? 0)
    }
}

/// `--connections` durable WebSocket subscribers doing nothing: what does the broker hold for them?
struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open N idle durable WebSocket subscribers; report the broker's memory.")

    @Option(help: "Connections.") var connections = 10_000
    @Option(help: "Give up after this many seconds.") var timeout = 300.0

    func run() async throws {
        let result = try await measure()
        print("idle: \(connections) durable WebSocket subscribers, connected and subscribed")
        print(String(format: "  ferryd RssAnon %.0f MiB (%.0f MiB before them: %.1f KiB per connection)", result.after, result.before, result.kibPerConnection))
        printJSON(result.json)
    }

    struct Result {
        let connections: Int
        /// ferryd's RssAnon in MiB before the connections and with them all subscribed.
        let before: Double
        let after: Double

        var kibPerConnection: Double { (after - before) * 1024 / Double(max(1, connections)) }
        var json: [String: Any] { ["scenario": "idle", "connections": connections, "rss_anon_mib": after.rounded(), "rss_anon_before_mib": before.rounded()] }
    }

    /// Connections from one source address: the loopback's ephemeral ports (32768–60999 by
    /// default) run out before 30,000 connections to one address and port.
    static let connectionsPerSource = 20_000

    /// One run with these options: what `idle` prints, and one point of `scale connections`.
    func measure() async throws -> Result {
        try raiseOpenFileLimit(toAtLeast: connections + 256)
        // No cap from the broker's default (90 % of its open-file limit): the connections are the load.
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "full", "FERRY_MAX_CONNECTIONS": "0"])
        guard let pid = ferryd.processID else { throw BenchError("ferryd is not running") }
        let before = anonymousMemoryMiB(of: pid)
        return try await withEventLoopGroup(threads: 1) { group in
            let subscribed = Countdown(connections)
            let latencies = LatencyLog()
            var channels: [any Channel] = []
            for index in 0..<connections {
                // 127.0.0.1, then 127.0.0.2, …: every 127/8 address is this host's loopback.
                var endpoint = BenchEndpoint(host: "127.0.0.1", port: ferryd.port)
                endpoint.source = "127.0.0.\(1 + index / Self.connectionsPerSource)"
                channels.append(
                    try await BenchConnection.open(endpoint, group: group) {
                        Subscriber(
                            clientID: "idle-\(index)", window: 1024, expected: .max, subscribed: subscribed, delivered: Countdown(1),
                            latencies: latencies)
                    })
            }
            try await subscribed.wait("\(connections) subscriptions", within: timeout)
            let after = anonymousMemoryMiB(of: pid)
            for channel in channels { try? await channel.close() }
            return Result(connections: connections, before: before, after: after)
        }
    }
}

/// FERRY_MAP_SIZE for scenarios that store millions of messages: the file took about 1.1 KB per
/// 100-byte message, so 10 million would not fit the default 8G (the map is only address space).
let largeMap = "64G"

/// One JSON line of figures, with the date and the machine's cores.
func printJSON(_ object: [String: Any]) {
    var object = object
    object["cores"] = ProcessInfo.processInfo.activeProcessorCount
    object["date"] = ISO8601DateFormatter().string(from: Date())
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    print(String(decoding: data, as: UTF8.self))
}
