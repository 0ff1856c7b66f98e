import ArgumentParser
import FerryTestSupport
import Foundation
import NIOCore
import NIOPosix

/// Two brokers on one PostgreSQL, every durable subscriber on the first, a steady stream
/// published through the second; the first is SIGKILLed. How long until every subscriber has
/// resumed on the second and has every message of its topic up to a marker published after the
/// kill, and was any lost or repeated?
struct Failover: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "SIGKILL the broker N durable subscribers are on; time their move to the other broker on the same PostgreSQL, count losses and duplicates.",
        discussion: """
            The clients are FerryClients in --workers child processes (as in storm). When its connection to broker A drops, each waits a random \
            0…--backoff-ms and opens a new FerryClient with its client id on broker B, as a client given a second URL would; failed attempts \
            there wait a random 0…--backoff-ms too. The new FerryClient has no memory of what the first received, so the broker's redeliveries \
            (at-least-once) reach the tool and are counted. Give each run a fresh database.
            """
    )

    @Option(help: "The PostgreSQL database both brokers use (postgres://user@host:port/database); a fresh one per run.") var postgres: String
    @Option(help: "Durable subscribers, all on broker A before the kill.") var clients = 1000
    @Option(help: "Processes the subscribers are spread over.") var workers = 2
    @Option(help: "Topics the subscribers are spread over (client i of a worker on topic i mod topics).") var topics = 10
    @Option(help: "Messages per second published through broker B, over all topics, from start to end.") var rate = 1000
    @Option(help: "Seconds of publishing before the kill.") var warmup = 3.0
    @Option(help: "Each reconnect waits a random 0…this many ms.") var backoffMs = 500
    @Option(help: "Workers report what they have after this many seconds.") var timeout = 120.0
    @Flag(help: "Wait the whole --backoff-ms instead of a random part of it.") var noJitter = false

    func validate() throws {
        guard clients > 0, workers > 0, topics > 0, rate > 0, backoffMs >= 0, warmup >= 0 else {
            throw ValidationError("--clients, --workers, --topics and --rate must be positive; --backoff-ms and --warmup not negative")
        }
    }

    func run() async throws {
        let started = Date()
        // The admin API shows where broker B stands with a client that did not get back.
        let environment = ["FERRY_POSTGRES_URL": postgres, "FERRY_ADMIN_TOKEN": testAdminToken]
        let doomed = try Ferryd(environment: environment)
        let survivor = try Ferryd(environment: environment)
        guard let survivorPID = survivor.processID else { throw BenchError("broker B is not running") }
        let topicNames = (0..<topics).map { StormWorker.topicName("failover", client: $0, of: topics) }
        // Each topic's log exists before its subscribers come: a subscriber of a topic with no log
        // yet is reset to the epoch of the broker that creates it (PROTOCOL.md), noise here.
        for topic in topicNames { try survivor.publishJSON(topic, #"{"n":0}"#) }
        let pool = try WorkerPool(
            clients: clients, workers: workers,
            arguments: [
                "--port", "\(doomed.port)", "--failover-port", "\(survivor.port)", "--topic", "failover", "--topics", "\(topics)",
                "--messages", "0", "--timeout", "\(timeout)", "--backoff-ms", "\(backoffMs)",
            ] + (noJitter ? ["--no-jitter"] : []))
        try await pool.ready()

        // The stream runs through B from before the kill to the end; bounded in count all the same.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let published = ConfirmationCount()
        let (rate, total) = (rate, rate * Int(warmup + timeout + 30))
        let publisher = try await BenchConnection.open(port: survivor.port, group: group) {
            Publisher(total: total, size: 100, inFlight: 0, rate: rate, topics: topicNames, confirmed: Countdown(1), confirmedSoFar: published)
        }
        try await Task.sleep(for: .seconds(warmup))

        let postgresPort = URLComponents(string: postgres)?.port ?? 5432
        let atKill = CPUUse(
            machine: machineCPUSeconds(), survivor: cpuSeconds(of: survivorPID), clients: pool.cpu, tool: cpuSeconds(of: getpid()),
            postgres: postgresCPUSeconds(port: postgresPort))
        let killedAt = Date()
        try doomed.kill()
        // Published after the kill: a client is back once it has this and every version before it.
        var markers: [String: UInt64] = [:]
        for topic in topicNames {
            let reply = try survivor.publishJSON(topic, String(decoding: StormWorker.marker, as: UTF8.self))
            guard let version = reply.int("version") else { throw BenchError("no version for the marker of \(topic)") }
            markers[topic] = UInt64(version)
        }

        let workerReport = try await pool.report()
        // Read while the workers close their clients: the floors and heads stay as they were.
        let views = workerReport.clients.filter { $0.completeAt == nil }.prefix(5).map { log in
            let view = try? survivor.admin("GET", "/clients/\(log.clientID)")
            return "\(log.clientID) on broker B: " + (view.map { $0.json?.text ?? "HTTP \($0.status)" } ?? "no answer")
        }
        let report = FailoverReport(
            clients: clients, workers: pool.children.count, topics: topics, rate: rate, backoffMs: backoffMs, jitter: !noJitter, killedAt: killedAt,
            markers: markers, logs: workerReport.clients, logged: workerReport.logged, published: published.value,
            cpu: CPUUse(
                machine: machineCPUSeconds(), survivor: cpuSeconds(of: survivorPID), clients: workerReport.cpuSeconds, tool: cpuSeconds(of: getpid()),
                postgres: postgresCPUSeconds(port: postgresPort)) - atKill,
            seconds: Date().timeIntervalSince(started),
            brokerWarnings: ["A": warnings(in: doomed.logURL), "B": warnings(in: survivor.logURL)], incompleteOnB: views)
        print(report.table)
        print(report.jsonLine)
        try? await publisher.close()
        try await group.shutdownGracefully()
        if !report.passed { throw ExitCode.failure }
    }
}

/// What the failover measured, from the workers' per-client logs.
struct FailoverReport {
    let clients: Int
    let workers: Int
    let topics: Int
    let rate: Int
    let backoffMs: Int
    let jitter: Bool
    let killedAt: Date
    /// Each topic's marker version.
    let markers: [String: UInt64]
    let logs: [StormWorker.ClientLog]
    /// The clients' log lines by error code.
    let logged: [String: Int]
    /// Publishes B confirmed, start to end.
    let published: Int
    /// CPU from the kill to the end.
    let cpu: CPUUse
    let seconds: Double
    /// Each broker's notices, warnings and errors, counted by their text.
    let brokerWarnings: [String: [String: Int]]
    /// Broker B's admin view of some clients that did not get back.
    let incompleteOnB: [String]

    private var kill: Double { killedAt.timeIntervalSince1970 }

    /// Milliseconds from the kill to each client's welcome on B.
    var reconnect: [Double] { logs.compactMap { $0.reconnect(after: killedAt) } }

    /// Milliseconds from the kill to the start of the attempt that was welcomed: the backoff.
    var waited: [Double] {
        logs.compactMap { log in log.welcomedAttempt(after: kill).map { ($0.attempt - kill) * 1000 } }
    }

    /// Milliseconds from that attempt's start to its welcome: TCP, upgrade, hello and the
    /// session's restore.
    var hello: [Double] {
        logs.compactMap { log in log.welcomedAttempt(after: kill).map { ($0.welcome - $0.attempt) * 1000 } }
    }

    /// Milliseconds from the kill to each client's marker, with everything before it.
    var back: [Double] { logs.compactMap { log in log.completeAt.map { ($0 - kill) * 1000 } } }

    /// Milliseconds from each client's welcome on B to its marker: the resume's reads and delivery.
    var catchUp: [Double] {
        logs.compactMap { log in
            guard let complete = log.completeAt, let welcome = log.welcomedAttempt(after: kill)?.welcome else { return nil }
            return (complete - welcome) * 1000
        }
    }

    /// Versions skipped (a later one came, they never did), over all clients.
    var lost: UInt64 { logs.reduce(0) { $0 + $1.missing } }

    /// Versions up to the marker that clients still waited for when their worker gave up.
    var undelivered: UInt64 {
        logs.reduce(0) { sum, log in
            let marker = markers[log.topic] ?? 0
            return sum + (log.completeAt == nil && marker > log.highest ? marker - log.highest : 0)
        }
    }

    var duplicates: Int { logs.reduce(0) { $0 + $1.duplicates } }
    /// `reset`s the clients were sent after the kill: each makes delivery start over from the
    /// log's first version.
    var resets: [Int] { logs.map { $0.resets - $0.resetsAtLoss } }
    var passed: Bool { reconnect.count == clients && back.count == clients && lost == 0 }
    /// Seconds from the kill until the last client was back; nil while one is not.
    var allBack: Double? { back.count == clients ? (back.max() ?? 0) / 1000 : nil }

    var table: String {
        let attempts = logs.map { $0.attemptsAt.filter { $0 > kill }.count }.sorted()
        let duplicated = logs.map(\.duplicates).filter { $0 > 0 }
        let before = logs.map { $0.highestAtLoss ?? 0 }.min() ?? 0
        func row(_ title: String, _ values: [Double]) -> String {
            let spread = Spread(values)
            return title.padding(toLength: 48, withPad: " ", startingAt: 0)
                + String(
                    format: "min %.0f  p50 %.0f  p90 %.0f  p99 %.0f  max %.0f", spread.percentile(0), spread.percentile(0.5), spread.percentile(0.9),
                    spread.percentile(0.99), spread.sorted.last ?? .nan)
        }
        var lines = [
            "failover: \(clients) durable subscribers (\(workers) processes) on broker A over \(topics) topics, \(rate) msg/s published through broker B;"
                + " A SIGKILLed, each client moves to B after a \(jitter ? "random 0-" : "")\(backoffMs) ms wait",
            "resumed on B                                    \(reconnect.count) of \(clients)",
            "back (resumed, every message to the marker)     \(back.count) of \(clients), the last "
                + (allBack.map { String(format: "%.2f s", $0) } ?? "never") + " after the kill",
            row("reconnect (kill to welcome on B), ms", reconnect),
            row("  waiting (kill to the welcomed attempt), ms", waited),
            row("  attempt to welcome, ms", hello),
            row("back (kill to marker), ms", back),
            row("  catch-up (welcome to marker), ms", catchUp),
            row("longest silence on B (stream is steady), ms", logs.map { $0.longestSilence * 1000 }),
            "lost (skipped: a later version came first)      \(lost)",
            "not delivered when the workers gave up          \(undelivered) versions",
            "duplicates                                      \(duplicates) (\(duplicated.count) clients, at most \(duplicated.max() ?? 0) each)",
            "resets after the kill                           \(resets.reduce(0, +)) (\(resets.filter { $0 > 0 }.count) clients)",
            "attempts per client after the kill              min \(attempts.first ?? 0)  p50 \(attempts.isEmpty ? 0 : attempts[attempts.count / 2])"
                + "  max \(attempts.last ?? 0)",
            "received on A before the kill, per client       at least \(before) messages",
            "markers                                         " + markers.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
            String(
                format: "CPU from the kill to the end                    machine %.0f %% busy (%.1f of %.1f core-s): ferryd B %.1f s, clients %.1f s, "
                    + "PostgreSQL %.1f s, this tool %.1f s, the rest (other processes) %.1f s",
                cpu.machine.busy * 100 / cpu.machine.total, cpu.machine.busy, cpu.machine.total, cpu.survivor, cpu.clients, cpu.postgres, cpu.tool,
                cpu.rest),
            "published through B                             \(published) in all",
        ]
        if let line = loggedLine(logged) { lines.append(line) }
        for (broker, counts) in brokerWarnings.sorted(by: { $0.key < $1.key }) where !counts.isEmpty {
            let kinds = counts.sorted { $0.value > $1.value }.prefix(4).map { "\($0.key.prefix(70)) ×\($0.value)" }
            lines.append("broker \(broker) logged: " + kinds.joined(separator: ", "))
        }
        for problem in logs.compactMap(\.problem).prefix(5) { lines.append("problem: \(problem)") }
        lines += incompleteOnB
        return lines.joined(separator: "\n")
    }

    var jsonLine: String {
        let cpuSeconds = [
            "machine_busy": cpu.machine.busy, "machine_total": cpu.machine.total, "ferryd_b": cpu.survivor, "clients": cpu.clients, "tool": cpu.tool,
            "postgres": cpu.postgres,
        ].mapValues { $0.isNaN ? -1 : ($0 * 100).rounded() / 100 }
        let object: [String: Any] = [
            "scenario": "failover-postgres", "clients": clients, "workers": workers, "topics": topics, "rate": rate, "backoff_ms": backoffMs,
            "jitter": jitter, "resumed": reconnect.count, "back": back.count, "all_back_s": allBack ?? -1, "reconnect_ms": Spread(reconnect).json,
            "waiting_ms": Spread(waited).json, "hello_ms": Spread(hello).json, "back_ms": Spread(back).json, "catch_up_ms": Spread(catchUp).json,
            "silence_ms": Spread(logs.map { $0.longestSilence * 1000 }).json, "lost": Int(lost), "undelivered": Int(undelivered),
            "duplicates": duplicates, "resets": resets.reduce(0, +), "client_log_lines": logged, "broker_warnings": brokerWarnings,
            "published": published, "cpu_after_kill_s": cpuSeconds, "seconds": seconds.rounded(),
            "cores": ProcessInfo.processInfo.activeProcessorCount, "date": ISO8601DateFormatter().string(from: Date()),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// CPU seconds used so far: the machine's (busy and in all), broker B's, the client workers',
/// this tool's and PostgreSQL's; the difference of two samples is what each used between them.
struct CPUUse {
    var machine: (busy: Double, total: Double)
    var survivor: Double
    var clients: Double
    var tool: Double
    var postgres: Double

    /// What the machine was busy with besides those (other processes; the kernel's own work).
    var rest: Double { machine.busy - survivor - clients - tool - postgres }

    static func - (end: CPUUse, start: CPUUse) -> CPUUse {
        CPUUse(
            machine: (end.machine.busy - start.machine.busy, end.machine.total - start.machine.total), survivor: end.survivor - start.survivor,
            clients: end.clients - start.clients, tool: end.tool - start.tool, postgres: end.postgres - start.postgres)
    }
}

/// A broker log's notices, warnings and errors by level and text (metadata left out, so one kind
/// is one key): a handover that timed out is a notice.
private func warnings(in log: URL) -> [String: Int] {
    guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [:] }
    let levels = [" notice ", " warning ", " error ", " critical "]
    var counts: [String: Int] = [:]
    for line in text.split(separator: "\n") where levels.contains(where: { line.contains($0) }) {
        let level = line.split(separator: " ", maxSplits: 2).dropFirst().first ?? ""
        let words = line.range(of: "] ").map { line[$0.upperBound...] } ?? line
        counts["\(level): \(words)", default: 0] += 1
    }
    return counts
}

extension StormWorker.ClientLog {
    /// The start of the attempt welcomed first after `kill`, and that welcome (seconds since 1970).
    func welcomedAttempt(after kill: Double) -> (attempt: Double, welcome: Double)? {
        guard let welcome = connectedAt.first(where: { $0 > kill }), let attempt = attemptsAt.last(where: { $0 > kill && $0 <= welcome })
        else { return nil }
        return (attempt, welcome)
    }
}
