import FerryCore
import FerryProtocol
import Prometheus
import Synchronization

/// The gauges that describe the broker's state rather than count events: durable sessions,
/// topics, store use, per-topic heads and per-client lag. They are set when `/metrics` is
/// scraped, so they cost nothing between scrapes and are never stale when read, unless the store
/// cannot be read then (PostgreSQL down): they keep the last values, and the scrape still serves
/// the counters, `ferry_store_errors_total` among them, which say what is going on.
///
/// Per-topic and per-client series are bounded: only the `limit` topics with the highest heads
/// and the `limit` clients with the largest lag (none that has caught up) get a series, so a
/// broker with a million topics or clients still exports a few dozen series. A series is removed when its topic or client
/// drops out of the top. `ferry_durable_lag_messages` sums every client's lag, so the lag of
/// those without a series is the sum minus the series.
final class StateGauges: Sendable {
    private let broker: Broker
    private let registry: PrometheusCollectorRegistry
    private let limit: Int
    private let sessions: Gauge
    private let topics: Gauge
    private let topicsInMemory: Gauge
    private let usedBytes: Gauge
    private let mapSize: Gauge
    private let lagSum: Gauge
    /// The labelled series currently exported, by topic and by client id.
    private let series = Mutex(Series())

    private struct Series {
        var heads: [String: Gauge] = [:]
        var lags: [String: Gauge] = [:]
    }

    // Computed: the descriptor type is not Sendable, so it cannot be a stored static.
    private static var head: MetricNameDescriptor {
        descriptor("topic_head", "Latest version of the topic, for the topics with the highest heads.")
    }
    private static var lag: MetricNameDescriptor {
        descriptor("client_lag", "Messages a durable client has not acked, over its subscriptions, for the clients with the largest lag (above 0).")
    }

    init(broker: Broker, registry: PrometheusCollectorRegistry, limit: Int) {
        self.broker = broker
        self.registry = registry
        self.limit = limit
        sessions = registry.makeGauge(descriptor: Self.descriptor("durable_sessions", "Durable sessions, connected or not."))
        topics = registry.makeGauge(descriptor: Self.descriptor("topics", "Stored topics."))
        topicsInMemory = registry.makeGauge(
            descriptor: Self.descriptor(
                "topics_in_memory", "Topics the broker keeps in memory: the stored ones and those only connected subscribers hold."))
        usedBytes = registry.makeGauge(descriptor: Self.descriptor("store_used_bytes", "LMDB pages in use, in bytes."))
        mapSize = registry.makeGauge(
            descriptor: Self.descriptor("store_map_size_bytes", "LMDB map size: publishes fail with unavailable when use reaches it."))
        lagSum = registry.makeGauge(
            descriptor: Self.descriptor("durable_lag_messages", "Messages not acked, summed over every durable subscription."))
    }

    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "ferry", metricName: name, unitName: "", helpText: help)
    }

    /// Reads the broker's state and sets every gauge; serialised, so two scrapes never race on
    /// the labelled series.
    func update() async {
        let snapshot: MetricsSnapshot
        do {
            snapshot = try await broker.metricsSnapshot()
        } catch {
            return  // the broker logged and counted the failed read
        }
        series.withLock { series in
            sessions.set(Int64(snapshot.sessions))
            topics.set(Int64(snapshot.topicHeads.count))
            topicsInMemory.set(Int64(snapshot.topicsInMemory))
            usedBytes.set(Int64(snapshot.usedBytes))
            mapSize.set(Int64(snapshot.mapSize))
            lagSum.set(Int64(clamping: snapshot.clientLags.reduce(UInt64(0)) { $0 + $1.lag }))
            series.heads = publish(top(snapshot.topicHeads.map { ($0.topic, $0.head) }), as: Self.head, label: "topic", replacing: series.heads)
            series.lags = publish(
                top(snapshot.clientLags.filter { $0.lag > 0 }.map { ($0.clientID, $0.lag) }), as: Self.lag, label: "client_id",
                replacing: series.lags)
        }
    }

    /// The `limit` largest values, ties broken by name so the chosen set is stable between scrapes.
    private func top(_ values: [(String, UInt64)]) -> [(String, UInt64)] {
        Array(values.sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(limit))
    }

    /// Sets one series per entry and unregisters the series of names no longer in `values`.
    private func publish(
        _ values: [(String, UInt64)], as descriptor: MetricNameDescriptor, label: String, replacing current: [String: Gauge]
    ) -> [String: Gauge] {
        var next: [String: Gauge] = [:]
        for (name, value) in values {
            let gauge = current[name] ?? registry.makeGauge(descriptor: descriptor, labels: [(label, name)])
            gauge.set(Int64(clamping: value))
            next[name] = gauge
        }
        for (name, gauge) in current where next[name] == nil { registry.unregisterGauge(gauge) }
        return next
    }
}
