import Foundation
import Histogram

/// What one pub/sub run measured, as a table for people and a JSON line for machines.
struct PubSubResult {
    /// What the broker's processes used: known only for brokers the run started.
    struct BrokerCost {
        let cpu: Double
        let memoryMiB: Double
    }

    let scenario: String
    let subscribers: Int
    let messages: Int
    let size: Int
    /// FERRY_SYNC of a broker the run started; nil for a remote broker.
    let sync: String?
    let rate: Int?
    let publishPerSecond: Double
    let deliveriesPerSecond: Double
    let seconds: Double
    let broker: BrokerCost?
    let benchCPU: Double
    let latency: Histogram<UInt64>
    /// Seconds after the first publish at which messages later than 10 ms arrived.
    let slowArrivals: [Double]

    func micros(_ percentile: Double) -> Double { Double(latency.valueAtPercentile(percentile)) / 1000 }

    var table: String {
        let title =
            "\(scenario): 1 publisher → \(subscribers) durable subscriber\(subscribers == 1 ? "" : "s"), \(messages) × \(size) B"
            + (sync.map { ", FERRY_SYNC=\($0)" } ?? "")
            + (rate.map { ", \($0) msg/s offered" } ?? "")
        var lines = [
            title,
            String(format: "  published (confirmed)   %12.0f msg/s", publishPerSecond),
            String(format: "  delivered and acked     %12.0f msg/s  (%d deliveries in %.2f s)", deliveriesPerSecond, messages * subscribers, seconds),
            String(
                format: "  end-to-end latency      p50 %.0f µs  p99 %.0f µs  p99.9 %.0f µs  max %.0f µs", micros(50), micros(99), micros(99.9),
                Double(latency.max) / 1000),
            broker.map { broker in
                String(
                    format: "  CPU                     ferryd %.2f s (%.1f µs per delivery), ferry-bench %.2f s; ferryd RssAnon %.0f MiB", broker.cpu,
                    broker.cpu * 1e6 / Double(messages * subscribers), benchCPU, broker.memoryMiB)
            } ?? String(format: "  CPU                     ferry-bench %.2f s (the broker's is not seen from here)", benchCPU),
        ]
        if rate != nil && !slowArrivals.isEmpty {
            lines.append(
                "  later than 10 ms        \(slowArrivals.count) messages, in bursts starting at "
                    + bursts.map { String(format: "%.2f s", $0) }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    /// Where runs of late messages begin (a gap of more than 100 ms starts a new one).
    private var bursts: [Double] {
        var starts: [Double] = []
        var previous = -1.0
        for time in slowArrivals {
            if time - previous > 0.1 { starts.append(time) }
            previous = time
        }
        return starts
    }

    var jsonLine: String {
        let data = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// The figures as a JSON object: the line `pubsub` prints, and a point's `result` in `scale`.
    var json: [String: Any] {
        var object: [String: Any] = [
            "scenario": scenario, "subscribers": subscribers, "messages": messages, "size": size,
            "publish_per_s": publishPerSecond.rounded(), "deliveries_per_s": deliveriesPerSecond.rounded(), "seconds": seconds,
            "latency_us": ["p50": micros(50), "p99": micros(99), "p99.9": micros(99.9), "max": Double(latency.max) / 1000],
            "bench_cpu_s": benchCPU,
            "cores": ProcessInfo.processInfo.activeProcessorCount, "date": ISO8601DateFormatter().string(from: Date()),
        ]
        if let rate { object["rate"] = rate }
        if let sync { object["sync"] = sync }
        if let broker {
            object["ferryd_cpu_s"] = broker.cpu
            object["ferryd_rss_anon_mib"] = broker.memoryMiB.rounded()
        }
        return object
    }
}
