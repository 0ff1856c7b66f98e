import ArgumentParser
import BenchPlot
import Foundation

/// One curve of `ferry-bench scale`: the parameter it sweeps, the scenario that measures each
/// point (run in this process, with the options a person would give it), and what is plotted.
enum ScaleCurve: String, CaseIterable, ExpressibleByArgument {
    case subscribers, connections, topics, missed, stored

    /// What one point measured: the plotted figures, the scenario's own JSON object, and a
    /// problem that makes the point a failure although it ran to the end (messages lost, say).
    struct Measurement {
        var figures: [String: Double]
        var result: [String: Any]
        var problem: String?
    }

    /// A plotted figure: its key in a point's `y`, its legend, and its axis.
    struct Figure {
        let key: String
        let name: String
        var side: Plot.Side = .left
        var logarithmic = false
    }

    /// Geometric, so the x axis is logarithmic; sized so `scale all` stays well under an hour on 2 cores.
    var defaultPoints: [Int] {
        switch self {
        case .subscribers: [1, 3, 10, 30, 100, 300, 1000, 3000, 10_000]
        case .connections: [1000, 2000, 5000, 10_000, 20_000, 50_000]
        case .topics: [1, 10, 100, 1000, 3000, 10_000, 30_000, 100_000]
        case .missed: [1000, 10_000, 100_000, 1_000_000, 3_000_000, 10_000_000]
        case .stored: [10_000, 100_000, 1_000_000, 3_000_000, 10_000_000]
        }
    }

    var title: String {
        switch self {
        case .subscribers: "Fan-out: 1 publisher → N durable subscribers on one topic"
        case .connections: "Memory: N idle durable WebSocket subscribers"
        case .topics: "Confirmed publishes written round-robin over N topics (no subscriber)"
        case .missed: "Resume: a durable subscriber catches up N missed messages"
        case .stored: "Restart: kill -9 with N messages stored, until serving again"
        }
    }

    var xLabel: String {
        switch self {
        case .subscribers: "durable subscribers"
        case .connections: "idle durable connections"
        case .topics: "topics"
        case .missed: "missed messages"
        case .stored: "stored messages"
        }
    }

    var figures: [Figure] {
        switch self {
        case .subscribers:
            [Figure(key: "deliveries_per_s", name: "deliveries/s"), Figure(key: "p99_ms", name: "p99 latency (ms)", side: .right, logarithmic: true)]
        case .connections:
            [Figure(key: "rss_anon_mib", name: "ferryd RssAnon (MiB)"), Figure(key: "kib_per_connection", name: "KiB per connection", side: .right)]
        case .topics:
            [Figure(key: "publish_per_s", name: "confirmed publishes/s"), Figure(key: "ferryd_cpu_us_per_message", name: "ferryd CPU µs per message", side: .right)]
        case .missed:
            [Figure(key: "caught_up_ms", name: "caught up (ms)", logarithmic: true), Figure(key: "catch_up_per_s", name: "catch-up msg/s", side: .right)]
        case .stored:
            [Figure(key: "serving_ms", name: "serving again (ms)")]
        }
    }

    /// The scenario's command line for the point `x` (after `ferry-bench`): what runs it alone.
    func arguments(x: Int, options: Scale) -> [String] {
        let timeout = ["--timeout", String(options.timeout)]
        switch self {
        case .subscribers:
            // The same deliveries at every point (within 100…200,000 messages), so a point lasts seconds.
            let messages = min(200_000, max(100, options.deliveries / x))
            return ["pubsub", "--subscribers", "\(x)", "--messages", "\(messages)"] + timeout
        case .connections:
            return ["idle", "--connections", "\(x)"] + timeout
        case .topics:
            // Every topic written at least 10 times, so creating them is not all that is measured.
            return ["pubsub", "--subscribers", "0", "--topics", "\(x)", "--messages", "\(max(options.messages, 10 * x))"] + timeout
        case .missed:
            return ["resume", "--missed", "\(x)"] + timeout
        case .stored:
            return ["restart", "--stored", "\(x)"] + timeout
        }
    }

    /// Runs the point's scenario in this process.
    func measure(_ arguments: [String]) async throws -> Measurement {
        let options = Array(arguments.dropFirst())
        switch self {
        case .subscribers, .topics:
            let result = try await PubSub.parse(options).measure()
            var figures = ["deliveries_per_s": result.deliveriesPerSecond, "publish_per_s": result.publishPerSecond, "p99_ms": result.micros(99) / 1000]
            if let broker = result.broker { figures["ferryd_cpu_us_per_message"] = broker.cpu * 1e6 / Double(result.messages) }
            return Measurement(figures: figures, result: result.json)
        case .connections:
            let result = try await Idle.parse(options).measure()
            return Measurement(figures: ["rss_anon_mib": result.after, "kib_per_connection": result.kibPerConnection], result: result.json)
        case .missed:
            let result = try await Resume.parse(options).measure()
            return Measurement(figures: ["caught_up_ms": result.milliseconds, "catch_up_per_s": result.messagesPerSecond], result: result.json)
        case .stored:
            let result = try await Restart.parse(options).measure()
            return Measurement(figures: ["serving_ms": result.milliseconds], result: result.json, problem: result.problem)
        }
    }

    /// The point's line in the sweep's output.
    func summary(_ figures: [String: Double]) -> String {
        self.figures.map { figure in "\(figure.name) \(figures[figure.key].map(compactLabel) ?? "–")" }.joined(separator: ", ")
    }
}
