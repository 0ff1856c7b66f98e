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
        var environment = ["FERRY_SYNC": sync]
        environment["FERRY_POSTGRES_URL"] = postgres
        let ferryd = try Ferryd(environment: environment)
        let resumeOn = postgres == nil ? ferryd : try Ferryd(environment: environment)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
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
        try await group.shutdownGracefully()
        print("resume: a durable subscriber missed \(missed) × \(size) B (FERRY_SYNC=\(sync), window \(window))")
        print(String(format: "  caught up (connect, hello, all delivered and acked)   %.0f ms  (%.0f msg/s; ferryd CPU %.2f s)", milliseconds, Double(missed) / milliseconds * 1000, cpu))
        printJSON(["scenario": postgres == nil ? "resume" : "resume-postgres-other-broker", "missed": missed, "size": size, "sync": sync, "caught_up_ms": milliseconds.rounded(), "ferryd_cpu_s": cpu])
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
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "full"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let (stored, size) = (stored, size)
        let confirmed = Countdown(1)
        let publisher = try await BenchConnection.open(port: ferryd.port, group: group) {
            Publisher(total: stored, size: size, inFlight: 4096, rate: nil, confirmed: confirmed)
        }
        try await confirmed.wait("\(stored) publishes", within: timeout)
        try await publisher.close()

        // A second publisher is mid-stream when the kill comes.
        let count = ConfirmationCount()
        _ = try await BenchConnection.open(port: ferryd.port, group: group) {
            Publisher(total: .max, size: size, inFlight: 4096, rate: nil, confirmed: Countdown(1), confirmedSoFar: count)
        }
        while count.value < 20_000 { try await Task.sleep(for: .milliseconds(5)) }
        try ferryd.kill()
        let confirmedBeforeKill = stored + count.value

        let started = monotonicNanoseconds()
        try ferryd.start()
        let serving = Double(monotonicNanoseconds() - started) / 1e6
        let info = try ferryd.topicInfo("bench")
        let head = info.int("head") ?? 0
        let messages = info.int("messages") ?? 0
        try await group.shutdownGracefully()
        let lost = max(0, confirmedBeforeKill - head)
        print("restart: SIGKILL with \(stored) messages stored and a publisher mid-stream (FERRY_SYNC=full)")
        print(String(format: "  serving again (spawn to /healthz and listening)   %.0f ms", serving))
        print("  confirmed before the kill \(confirmedBeforeKill), stored after the restart \(messages) (head \(head)): \(lost) confirmed lost")
        printJSON(["scenario": "restart", "stored": stored, "serving_ms": serving.rounded(), "confirmed": confirmedBeforeKill, "head": head, "lost": lost])
        if lost > 0 || messages != head { throw ExitCode.failure }
    }
}

/// `--connections` durable WebSocket subscribers doing nothing: what does the broker hold for them?
struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Open N idle durable WebSocket subscribers; report the broker's memory.")

    @Option(help: "Connections.") var connections = 10_000
    @Option(help: "Give up after this many seconds.") var timeout = 300.0

    func run() async throws {
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "full"])
        guard let pid = ferryd.processID else { throw BenchError("ferryd is not running") }
        let before = anonymousMemoryMiB(of: pid)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let subscribed = Countdown(connections)
        var channels: [any Channel] = []
        for index in 0..<connections {
            channels.append(
                try await BenchConnection.open(port: ferryd.port, group: group) {
                    Subscriber(
                        clientID: "idle-\(index)", window: 1024, expected: .max, subscribed: subscribed, delivered: Countdown(1),
                        latencies: LatencyLog())
                })
        }
        try await subscribed.wait("\(connections) subscriptions", within: timeout)
        let after = anonymousMemoryMiB(of: pid)
        for channel in channels { try? await channel.close() }
        try await group.shutdownGracefully()
        print("idle: \(connections) durable WebSocket subscribers, connected and subscribed")
        print(String(format: "  ferryd RssAnon %.0f MiB (%.0f MiB before them: %.1f KiB per connection)", after, before, (after - before) * 1024 / Double(connections)))
        printJSON(["scenario": "idle", "connections": connections, "rss_anon_mib": after.rounded(), "rss_anon_before_mib": before.rounded()])
    }
}

/// One JSON line of figures, with the date and the machine's cores.
func printJSON(_ object: [String: Any]) {
    var object = object
    object["cores"] = ProcessInfo.processInfo.activeProcessorCount
    object["date"] = ISO8601DateFormatter().string(from: Date())
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    print(String(decoding: data, as: UTF8.self))
}
