import ArgumentParser
import FerryProtocol
import Foundation

/// Broker-wide rates, from two samples of `GET /v1/admin/stats` (or one, as averages since start).
struct Rates: Encodable {
    var publishPerSecond: Double
    var deliveryPerSecond: Double
    /// Seconds between the samples; the broker's uptime for averages.
    var intervalSeconds: Double

    /// Averages over the broker's uptime.
    init(since stats: BrokerStats) {
        let seconds = Double(max(1, stats.uptimeSeconds))
        self.init(published: stats.published, delivered: stats.delivered, seconds: seconds)
    }

    init(from earlier: Sample, to later: Sample) {
        self.init(
            published: later.stats.published &- earlier.stats.published, delivered: later.stats.delivered &- earlier.stats.delivered,
            seconds: later.seconds(since: earlier))
    }

    private init(published: UInt64, delivered: UInt64, seconds: Double) {
        publishPerSecond = Double(published) / seconds
        deliveryPerSecond = Double(delivered) / seconds
        intervalSeconds = seconds
    }

    enum CodingKeys: String, CodingKey {
        case publishPerSecond = "publish_per_second", deliveryPerSecond = "delivery_per_second", intervalSeconds = "interval_seconds"
    }
}

/// The broker's stats and topics at one instant.
struct Sample {
    var stats: BrokerStats
    var topics: [TopicInfo]
    var taken: ContinuousClock.Instant

    static func take(_ client: AdminClient, withTopics: Bool) async throws -> Sample {
        let stats = try await client.get("/v1/admin/stats", as: BrokerStats.self).0
        let topics = withTopics ? try await client.get("/v1/admin/topics", as: TopicList.self).0.topics : []
        return Sample(stats: stats, topics: topics, taken: .now)
    }

    func seconds(since earlier: Sample) -> Double {
        let elapsed = taken - earlier.taken
        return max(0.001, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}

/// Waits `seconds` (a fraction is fine) between two samples.
func pause(seconds: Double) async throws {
    try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the broker's version, uptime, storage, connections and message rates.",
        discussion: "Rates come from two samples --interval seconds apart; --interval 0 shows averages since the broker started."
    )

    @OptionGroup var admin: AdminOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Seconds between the two samples the rates come from.") var interval: Double = 1

    private struct Report: Encodable {
        var broker: String
        var stats: BrokerStats
        var rates: Rates
    }

    func validate() throws {
        guard interval >= 0 else { throw ValidationError("--interval must be 0 or more seconds") }
    }

    /// One line per broker of a cluster: its name and id, the one that answered marked.
    static func nodeFields(_ nodes: [NodeStats]) -> [(String, String)] {
        guard !nodes.isEmpty else { return [] }
        return [("nodes", "\(nodes.count) on the database")]
            + nodes.map { node in
                ("  " + (node.name.isEmpty ? node.id : node.name), "id \(node.id)" + (node.isThisBroker ? "  (this broker)" : ""))
            }
    }

    func run() async throws {
        let client = try admin.client()
        let first = try await Sample.take(client, withTopics: false)
        var rates = Rates(since: first.stats)
        var stats = first.stats
        if interval > 0 {
            try await pause(seconds: interval)
            let second = try await Sample.take(client, withTopics: false)
            rates = Rates(from: first, to: second)
            stats = second.stats
        }
        if output.json {
            try output.printJSON(Report(broker: client.base, stats: stats, rates: rates))
            return
        }
        let used = stats.mapSize > 0 ? Double(stats.dataBytes) / Double(stats.mapSize) * 100 : 0
        print(
            fields([
                ("broker", client.base),
                ("version", stats.version),
                ("uptime", Format.duration(milliseconds: stats.uptimeSeconds * 1000)),
                stats.mapSize > 0
                    ? ("data", "\(Format.bytes(stats.dataBytes)) of a \(Format.bytes(stats.mapSize)) map (\(String(format: "%.1f", used))% used)")
                    : ("data", "\(Format.bytes(stats.dataBytes)) in the database"),
                ("sync", stats.sync),
                ("connections", "\(stats.connections)"),
                ("topics", "\(stats.topics)"),
                ("sessions", "\(stats.sessions) durable"),
                ("publish", "\(Format.rate(rates.publishPerSecond))  (\(stats.published) since start)"),
                ("delivery", "\(Format.rate(rates.deliveryPerSecond))  (\(stats.delivered) since start)"),
            ] + Self.nodeFields(stats.nodes ?? [])))
    }
}

struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of message rates, lag and connections per topic.",
        discussion: """
            On a terminal the view is redrawn every --interval seconds until interrupted. With --once or \
            --json, or when standard output is not a terminal, one snapshot is printed (its rates over one interval).
            """
    )

    @OptionGroup var admin: AdminOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Seconds between refreshes.") var interval: Double = 2
    @Flag(help: "Print one snapshot and exit.") var once = false

    private struct TopicRow: Encodable {
        var topic: String
        var head: UInt64
        var publishPerSecond: Double
        var subscribers: Int
        var connected: Int
        var lag: UInt64

        enum CodingKeys: String, CodingKey {
            case topic, head, publishPerSecond = "publish_per_second", subscribers, connected, lag
        }
    }

    private struct Snapshot: Encodable {
        var stats: BrokerStats
        var rates: Rates
        var topics: [TopicRow]
    }

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be more than 0 seconds") }
    }

    func run() async throws {
        let client = try admin.client()
        let live = !once && !output.json && Format.isTerminal()
        var previous = try await Sample.take(client, withTopics: true)
        while true {
            try await pause(seconds: interval)
            let current = try await Sample.take(client, withTopics: true)
            let snapshot = Self.snapshot(from: previous, to: current)
            if output.json {
                try output.printJSON(snapshot)
            } else {
                // Home and clear, then the frame: the whole view is redrawn in place.
                print((live ? "\u{1B}[H\u{1B}[2J" : "") + Self.render(snapshot, broker: client.base))
            }
            guard live else { return }
            previous = current
        }
    }

    private static func snapshot(from earlier: Sample, to later: Sample) -> Snapshot {
        let seconds = later.seconds(since: earlier)
        let before = Dictionary(earlier.topics.map { ($0.topic, $0) }, uniquingKeysWith: { first, _ in first })
        let rows = later.topics.map { topic in
            // Versions count publishes within an epoch; a new epoch started again at 1.
            let previous = before[topic.topic].flatMap { $0.epoch == topic.epoch ? $0.head : nil } ?? 0
            return TopicRow(
                topic: topic.topic, head: topic.head, publishPerSecond: Double(topic.head &- min(previous, topic.head)) / seconds,
                subscribers: topic.subscribers, connected: topic.connected ?? 0, lag: topic.lag ?? 0)
        }
        return Snapshot(stats: later.stats, rates: Rates(from: earlier, to: later), topics: rows)
    }

    private static func render(_ snapshot: Snapshot, broker: String) -> String {
        let stats = snapshot.stats
        let summary =
            "ferry \(stats.version) at \(broker)  up \(Format.duration(milliseconds: stats.uptimeSeconds * 1000))  "
            + "connections \(stats.connections)  sessions \(stats.sessions)  "
            + "publish \(Format.rate(snapshot.rates.publishPerSecond))  deliver \(Format.rate(snapshot.rates.deliveryPerSecond))"
        var table = Table("TOPIC", "HEAD", "PUBLISH", "SUBSCRIBERS", "CONNECTED", "LAG")
        for row in snapshot.topics {
            table.add(row.topic, "\(row.head)", Format.rate(row.publishPerSecond), "\(row.subscribers)", "\(row.connected)", "\(row.lag)")
        }
        return summary + "\n\n" + table.text
    }
}
