import ArgumentParser
import FerryProtocol
import FerryTestSupport
import Foundation
import NIOCore
import NIOPosix

/// One ephemeral connection subscribes to and unsubscribes from N distinct topic names that are
/// never published to; the broker's anonymous memory before and after says whether it keeps
/// anything per name it no longer holds.
struct TopicChurn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic-churn", abstract: "Subscribe to and leave N distinct topic names on one connection; report the broker's memory.")

    @Option(help: "Distinct names.") var names = 1_000_000
    @Option(help: "Names subscribed first, before the memory baseline, so allocator pools exist.") var warmup = 10_000
    @Option(help: "Give up after this many seconds.") var timeout = 600.0

    func run() async throws {
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "full"])
        guard let pid = ferryd.processID else { throw BenchError("ferryd is not running") }
        let atStart = anonymousMemoryMiB(of: pid)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let warmed = Countdown(1)
        let done = Countdown(1)
        let (total, warmup) = (warmup + names, warmup)
        let channel = try await BenchConnection.open(port: ferryd.port, group: group) {
            Churner(total: total, warmup: warmup, warmed: warmed, done: done)
        }
        try await warmed.wait("\(warmup) warm-up names", within: timeout)
        let before = anonymousMemoryMiB(of: pid)
        let started = monotonicNanoseconds()
        try await done.wait("\(names) names", within: timeout)
        let seconds = Double(monotonicNanoseconds() - started) / 1e9
        let after = anonymousMemoryMiB(of: pid)
        let inMemory = try HTTP.request(port: ferryd.port, method: "GET", path: "/metrics").text
            .split(separator: "\n").first { $0.hasPrefix("ferry_topics_in_memory ") }?.split(separator: " ").last.map(String.init) ?? "?"
        try await channel.close()
        try await group.shutdownGracefully()
        print("topic-churn: \(names) distinct names subscribed and unsubscribed on one ephemeral connection")
        print(String(format: "  %.0f names/s; ferryd RssAnon %.1f MiB at start, %.1f MiB after %d warm-up names, %.1f MiB after (%+.1f MiB)", Double(names) / seconds, atStart, before, warmup, after, after - before))
        print("  ferry_topics_in_memory \(inMemory)")
        printJSON([
            "scenario": "topic-churn", "names": names, "names_per_second": (Double(names) / seconds).rounded(),
            "rss_anon_start_mib": atStart, "rss_anon_before_mib": before, "rss_anon_after_mib": after,
            "topics_in_memory": inMemory,
        ])
    }
}

/// Keeps `inFlight` subscribe/unsubscribe pairs outstanding until `total` names were left.
private final class Churner: FrameSink {
    private let total: Int
    private let warmup: Int
    private let warmed: Countdown
    private let done: Countdown
    private let inFlight = 256
    private var sent = 0
    private var left = 0

    init(total: Int, warmup: Int, warmed: Countdown, done: Countdown) {
        self.total = total
        self.warmup = warmup
        self.warmed = warmed
        self.done = done
    }

    func start(_ connection: BenchConnection) {
        connection.send(String(decoding: ClientFrame.hello(clientID: nil, resumeToken: nil).encode(), as: UTF8.self))
        refill(connection)
    }

    func received(_ text: ByteBuffer, on connection: BenchConnection) {
        if frame(text, is: "unsubscribed") {
            left += 1
            if left == warmup { warmed.arrive() }
            if left == total { done.arrive() }
        } else if frame(text, is: "error") {
            done.fail(String(buffer: text))
            warmed.fail(String(buffer: text))
        }
    }

    func readComplete(on connection: BenchConnection) {
        refill(connection)
    }

    /// Sends pairs until `inFlight` are outstanding; holds back past the warm-up until it is measured.
    private func refill(_ connection: BenchConnection) {
        let limit = left < warmup ? warmup : total
        while sent < limit, sent - left < inFlight {
            let name = "churn.\(sent)"
            connection.send(String(decoding: ClientFrame.subscribe(id: nil, topic: name, from: .latest, epoch: nil, window: 1).encode(), as: UTF8.self))
            connection.send(String(decoding: ClientFrame.unsubscribe(id: nil, topic: name).encode(), as: UTF8.self))
            sent += 1
        }
        connection.flush()
    }
}
