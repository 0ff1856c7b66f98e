import ArgumentParser
import FerryClient
import FerryTestSupport
import Foundation

/// Many durable subscribers dropped at once by a broker crash (SIGKILL and restart): when do
/// they come back, and does any lose or repeat a message?
struct Storm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kill the broker under many durable subscribers; measure how their reconnects spread and check every message arrives once.",
        discussion: "The clients run in --workers child processes of this tool with FerryClient's default backoff (100 ms, x2, 30 s cap, full jitter)."
    )

    @Option(help: "Durable subscribers in all.") var clients = 1000
    @Option(help: "Processes the subscribers are spread over.") var workers = 2
    @Option(help: "Messages published before the kill, and again after the restart.") var messages = 10
    @Option(help: "FERRY_SYNC of the broker: full or none.") var sync = "full"
    @Option(help: "Workers report what they have after this many seconds.") var timeout = 120.0
    @Flag(help: "Wait each backoff's full ceiling instead of a random part of it, to see the herd that jitter prevents.")
    var noJitter = false

    func run() async throws {
        let started = Date()
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": sync])
        let pool = try WorkerPool(
            clients: clients, workers: workers,
            arguments: ["--port", "\(ferryd.port)", "--messages", "\(messages * 2)", "--timeout", "\(timeout)"] + (noJitter ? ["--no-jitter"] : []))
        try await pool.ready()
        try ferryd.publishNumbered("storm", count: messages)

        let clientsCPUBefore = pool.cpu
        let killedAt = Date()
        try ferryd.kill()
        try ferryd.start()
        let backAt = Date()
        let restartedPID = ferryd.processID ?? 0
        try ferryd.publishNumbered("storm", count: messages, startingAt: messages + 1)

        let workerReport = try await pool.report()
        let brokerCPU = cpuSeconds(of: restartedPID)
        let acks = String(decoding: try ferryd.get("/metrics").body, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("ferry_acks_total ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? .nan
        let report = StormReport(
            clients: clients, workers: pool.children.count, jitter: !noJitter, messages: messages * 2, killedAt: killedAt, backAt: backAt,
            logs: workerReport.clients, logged: workerReport.logged, seconds: Date().timeIntervalSince(started), brokerCPU: brokerCPU,
            clientsCPU: workerReport.cpuSeconds - clientsCPUBefore, acks: acks)
        print(report.table)
        print(report.jsonLine)
        if !report.passed { throw ExitCode.failure }
    }
}

/// What the storm measured, from the workers' per-client logs.
struct StormReport {
    let clients: Int
    let workers: Int
    let jitter: Bool
    let messages: Int
    let killedAt: Date
    let backAt: Date
    let logs: [StormWorker.ClientLog]
    /// The clients' log lines by error code.
    let logged: [String: Int]
    let seconds: Double
    /// CPU seconds of the restarted broker: start-up plus taking every client back.
    let brokerCPU: Double
    /// CPU seconds of the client processes from the kill until each has every message: the
    /// two cores are shared, so this is time the broker could not have.
    let clientsCPU: Double
    /// Ack frames the restarted broker took.
    let acks: Double

    /// Milliseconds from the kill to each client's first welcome after it, of those that came back.
    var resumed: [Double] { logs.compactMap { $0.reconnect(after: killedAt) }.sorted() }
    /// Clients that saw versions 1…messages once each, in order (the storm's FerryClient removes
    /// duplicates itself, so one here is a client bug).
    var exactLogs: [Bool] { logs.map { $0.problem == nil && $0.duplicates == 0 && $0.highest == UInt64(messages) } }
    var exact: Int { exactLogs.filter { $0 }.count }
    var downMilliseconds: Double { backAt.timeIntervalSince(killedAt) * 1000 }
    var passed: Bool { resumed.count == clients && exact == clients }

    /// Reconnects per 100 ms after the kill.
    var buckets: [Int] { histogram(resumed, width: 100) }

    /// The most connect attempts the broker saw in one 10 ms: the herd, if there is one.
    var attemptPeak: Int {
        let kill = killedAt.timeIntervalSince1970
        return histogram(logs.flatMap(\.attemptsAt).map { ($0 - kill) * 1000 }, width: 10).max() ?? 0
    }

    func percentile(_ p: Double) -> Double { Spread(resumed).percentile(p) }

    var table: String {
        let attempts = logs.map(\.attemptsAt.count).sorted()
        let peak = buckets.max() ?? 0
        let firstBack = resumed.first ?? .nan
        var lines = [
            "storm: \(clients) durable subscribers in \(workers) processes, backoff \(jitter ? "with full jitter" : "without jitter"); broker SIGKILLed and restarted",
            String(format: "broker down (kill to listening again) %8.0f ms", downMilliseconds),
            "resumed                               \(resumed.count) of \(clients)",
            "saw all \(messages) messages once, in order \(exact) of \(clients)",
            String(
                format: "reconnect after the kill, ms         min %.0f  p50 %.0f  p90 %.0f  p99 %.0f  max %.0f", firstBack, percentile(0.5),
                percentile(0.9), percentile(0.99), resumed.last ?? .nan),
            String(format: "spread, first to last reconnect      %.0f ms", (resumed.last ?? .nan) - firstBack),
            String(format: "peak                                 %d reconnects in one 100 ms (%.1f%% of clients)", peak, Double(peak) * 100 / Double(max(1, clients))),
            "peak connect attempts in one 10 ms   \(attemptPeak)",
            "attempts per client after the drop   min \(attempts.first ?? 0)  p50 \(attempts.isEmpty ? 0 : attempts[attempts.count / 2])  max \(attempts.last ?? 0)",
            String(format: "restarted ferryd CPU                 %.2f s (%.0f µs per client)", brokerCPU, brokerCPU * 1e6 / Double(max(1, clients))),
            String(format: "clients' CPU after the kill          %.2f s (%.0f µs per client)", clientsCPU, clientsCPU * 1e6 / Double(max(1, clients))),
            String(format: "ack frames the restarted broker took %.0f (%.1f per client)", acks, acks / Double(max(1, clients))),
            "reconnects per 100 ms after the kill: " + buckets.map(String.init).joined(separator: " "),
        ]
        if let line = loggedLine(logged) { lines.append(line) }
        for (log, exact) in zip(logs, exactLogs) where !exact {
            lines.append("problem: \(log.problem ?? "highest version \(log.highest), \(log.duplicates) duplicates")")
            if lines.count > 16 { break }
        }
        return lines.joined(separator: "\n")
    }

    var jsonLine: String {
        let object: [String: Any] = [
            "scenario": "storm", "clients": clients, "workers": workers, "jitter": jitter, "messages": messages, "down_ms": downMilliseconds.rounded(),
            "resumed": resumed.count, "exactly_once_in_order": exact,
            "reconnect_ms": Spread(resumed).json,
            "per_100ms": buckets, "attempt_peak_10ms": attemptPeak, "cores": ProcessInfo.processInfo.activeProcessorCount, "seconds": seconds.rounded(), "ferryd_cpu_s": brokerCPU,
            "clients_cpu_s": clientsCPU, "acks": acks,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// Values (milliseconds, say) in order, and their percentiles.
struct Spread {
    let sorted: [Double]

    init(_ values: [Double]) { sorted = values.sorted() }

    /// NaN when there are no values.
    func percentile(_ p: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    /// min, p50, p90, p99 and max, rounded, for a JSON line (-1 when there are no values).
    var json: [String: Double] {
        let values = ["min": percentile(0), "p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99), "max": sorted.last ?? .nan]
        return values.mapValues { $0.isNaN ? -1 : $0.rounded() }
    }
}

/// The clients' log lines counted by error code, most frequent first; nil when there were none.
func loggedLine(_ logged: [String: Int]) -> String? {
    guard !logged.isEmpty else { return nil }
    return "client log lines (the first 3 of each written to stderr): "
        + logged.sorted { $0.value > $1.value }.prefix(6).map { "\($0.key.prefix(60)) ×\($0.value)" }.joined(separator: ", ")
}

/// How many values fall in each `width` from 0 on (negative ones are left out).
func histogram(_ values: [Double], width: Double) -> [Int] {
    var counts: [Int] = []
    for value in values where value >= 0 {
        let bucket = Int(value / width)
        if counts.count <= bucket { counts += Array(repeating: 0, count: bucket - counts.count + 1) }
        counts[bucket] += 1
    }
    return counts
}

extension StormWorker.ClientLog {
    /// Milliseconds from `kill` to this client's first welcome after it; nil if it never came back.
    func reconnect(after kill: Date) -> Double? {
        connectedAt.first { $0 > kill.timeIntervalSince1970 }.map { ($0 - kill.timeIntervalSince1970) * 1000 }
    }
}
