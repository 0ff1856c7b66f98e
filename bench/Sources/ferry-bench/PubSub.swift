import ArgumentParser
import FerryProtocol
import FerryTestSupport
import Foundation
import Histogram
import NIOCore
import NIOPosix
import Synchronization

/// One publisher and N durable subscribers on one topic (or on `--topics` topics, each
/// subscribed or all through one pattern): publish rate (confirmed), delivery rate (delivered
/// and acked), end-to-end latency, and the CPU both processes used.
struct PubSub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubsub",
        abstract: "1 publisher → N durable subscribers: throughput, or latency at a fixed rate.",
        discussion: """
            Without --rate the publisher keeps --in-flight unconfirmed publishes outstanding (closed loop: throughput). \
            With --rate it publishes on a fixed schedule (every 200 µs what is due) whatever the replies do (open loop), and latency is measured from \
            each message's scheduled send time, so a stall shows up instead of hiding (no coordinated omission).
            """
    )

    @Option(help: "Durable subscribers.") var subscribers = 1
    @Option(help: "Messages published.") var messages = 200_000
    @Option(help: "Payload bytes (JSON text).") var size = 100
    @Option(help: "FERRY_SYNC of the broker: full (the default) or none.") var sync: String?
    @Option(help: "Unconfirmed publishes kept outstanding (closed loop).") var inFlight = 4096
    @Option(help: "Subscription window (unacked messages in flight, 1–65536).") var window = 65536
    @Option(help: "Publish at this many messages per second (open loop) instead of as fast as confirmed.") var rate: Int?
    @Option(help: "Event-loop threads of this tool.") var threads = 1
    @Option(help: "Give up after this many seconds.") var timeout = 300.0
    @Option(help: "Run the brokers on this PostgreSQL database (postgres://user@host:port/database) instead of LMDB.") var postgres: String?
    @Option(help: "Brokers on that database (with --postgres): the publisher uses the first, the subscribers the last.") var brokers = 1
    @Option(help: "Topics the publisher writes round-robin (bench.0, bench.1, …; 1: the topic bench).") var topics = 1
    @Flag(help: "Subscribe to the topics through one pattern (bench.*) instead of one subscription each.") var pattern = false
    @Option(help: "Measure the running broker at this URL (http://, https://, ws://, wss://) instead of starting one; its CPU and memory are then not measured.")
    var url: String?
    @Option(help: "With --url: the token the connections present (the admin token, or none when authentication is off).") var token: String?
    @Option(help: "Names of the run's topics (<prefix>, or <prefix>.N) and durable clients (<prefix>-sub-N).") var prefix = "bench"

    func run() async throws {
        let result = try await measure()
        print(result.table)
        print(result.jsonLine)
    }

    /// One run with these options: what `pubsub` prints, and one point of `scale subscribers` or `scale topics`.
    func measure() async throws -> PubSubResult {
        guard brokers == 1 || (brokers == 2 && postgres != nil) else { throw BenchError("--brokers 2 needs --postgres") }
        guard topics >= 1, !pattern || topics > 1 else { throw BenchError("--pattern needs --topics of 2 or more") }
        guard url == nil || (postgres == nil && sync == nil) else { throw BenchError("--url measures a running broker: --postgres and --sync are its own settings") }
        guard Names.isValidTopic(prefix), !prefix.contains(where: { "./".contains($0) }) else { throw BenchError("--prefix must be a topic name without . or /") }
        let names = topics == 1 ? [prefix] : (0..<topics).map { "\(prefix).\($0)" }
        // A socket per subscriber here, and in a broker started here (it inherits the limit).
        try raiseOpenFileLimit(toAtLeast: subscribers + 256)
        let brokers = try startBrokers()
        return try await withEventLoopGroup(threads: threads) { group in
            try await measure(brokers: brokers, topics: names, group: group)
        }
    }

    private func measure(brokers: BenchBrokers, topics names: [String], group: MultiThreadedEventLoopGroup) async throws -> PubSubResult {
        let subscribed = Countdown(subscribers)
        let delivered = Countdown(subscribers)
        let latencies = LatencyLog()
        var channels: [any Channel] = []
        for index in 0..<subscribers {
            let (messages, window, subscriptions) = (messages, window, pattern ? ["\(prefix).*"] : names)
            channels.append(
                try await BenchConnection.open(brokers.subscribing, group: group) { [prefix] in
                    Subscriber(
                        clientID: "\(prefix)-sub-\(index)", topics: subscriptions, window: window, expected: messages, subscribed: subscribed,
                        delivered: delivered, latencies: latencies)
                })
        }
        try await subscribed.wait("\(subscribers) subscriptions", within: timeout)

        let confirmed = Countdown(1)
        let brokerCPU = brokers.cpuSecondsUsed()
        let ownCPU = cpuSeconds(of: getpid())
        let started = monotonicNanoseconds()
        let (messages, size, inFlight, rate) = (messages, size, inFlight, rate)
        channels.append(
            try await BenchConnection.open(brokers.publishing, group: group) {
                Publisher(total: messages, size: size, inFlight: inFlight, rate: rate, topics: names, confirmed: confirmed)
            })
        try await confirmed.wait("\(messages) confirmed publishes", within: timeout)
        let publishSeconds = Double(monotonicNanoseconds() - started) / 1e9
        try await delivered.wait("\(messages) messages at each of \(subscribers) subscribers", within: timeout)
        let seconds = Double(monotonicNanoseconds() - started) / 1e9
        let result = PubSubResult(
            scenario: (rate == nil ? "pubsub" : "pubsub-rate") + (url == nil ? "" : "-remote") + (postgres == nil ? "" : "-postgres-\(self.brokers)")
                + (topics == 1 ? "" : "-\(topics)-topics") + (pattern ? "-pattern" : ""),
            subscribers: subscribers, messages: messages, size: size, sync: url == nil ? sync ?? "full" : nil,
            rate: rate, publishPerSecond: Double(messages) / publishSeconds,
            deliveriesPerSecond: Double(messages * subscribers) / seconds, seconds: seconds,
            broker: brokerCPU.map { before in
                PubSubResult.BrokerCost(cpu: (brokers.cpuSecondsUsed() ?? before) - before, memoryMiB: brokers.memoryMiB() ?? 0)
            },
            benchCPU: cpuSeconds(of: getpid()) - ownCPU, latency: latencies.merged,
            slowArrivals: latencies.slowArrivals.map { Double($0 &- started) / 1e9 })
        for channel in channels { try? await channel.close() }
        return result
    }

    /// The brokers of the run: started here on a temporary data folder, or the one at `url`.
    private func startBrokers() throws -> BenchBrokers {
        if let url {
            let endpoint = try BenchEndpoint(url: url, token: token ?? ProcessInfo.processInfo.environment["FERRY_TOKEN"])
            return BenchBrokers(publishing: endpoint, subscribing: endpoint, processes: [])
        }
        var environment = [
            "FERRY_SYNC": sync ?? "full", "FERRY_MAX_SUBSCRIPTIONS": String(max(1000, topics)),
            "FERRY_MAX_PATTERN_TOPICS": String(max(10_000, topics)),
        ]
        environment["FERRY_POSTGRES_URL"] = postgres
        let running = try (0..<brokers).map { _ in try Ferryd(environment: environment) }
        guard let subscribing = running.last, let publishing = running.first, running.allSatisfy({ $0.processID != nil }) else {
            throw BenchError("ferryd is not running")
        }
        return BenchBrokers(
            publishing: BenchEndpoint(host: "127.0.0.1", port: publishing.port),
            subscribing: BenchEndpoint(host: "127.0.0.1", port: subscribing.port), processes: running)
    }
}

/// Where the publisher and the subscribers connect, and the broker processes this run started
/// (none for a remote broker, whose CPU and memory it cannot see).
struct BenchBrokers {
    let publishing: BenchEndpoint
    let subscribing: BenchEndpoint
    let processes: [Ferryd]

    /// CPU seconds the started brokers used so far; nil for a remote broker.
    func cpuSecondsUsed() -> Double? {
        processes.isEmpty ? nil : processes.compactMap(\.processID).map(cpuSeconds(of:)).reduce(0, +)
    }

    /// RssAnon of the subscribers' broker; nil for a remote broker.
    func memoryMiB() -> Double? {
        processes.last?.processID.map(anonymousMemoryMiB(of:))
    }
}

/// A publisher's confirmation count, readable from another thread.
final class ConfirmationCount: Sendable {
    private let count = Atomic(0)

    func set(_ value: Int) { count.store(value, ordering: .relaxed) }

    var value: Int { count.load(ordering: .relaxed) }
}

/// Subscribers' latency histograms, merged as each finishes.
final class LatencyLog: Sendable {
    private let histogram = Mutex(Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three))
    private let slow = Mutex<[UInt64]>([])

    func add(_ other: Histogram<UInt64>, slowArrivals: [UInt64]) {
        histogram.withLock { $0.add(other) }
        slow.withLock { $0 += slowArrivals }
    }

    var merged: Histogram<UInt64> { histogram.withLock { $0 } }

    /// Arrival times of messages over ``Subscriber/slow``, sorted.
    var slowArrivals: [UInt64] { slow.withLock { $0.sorted() } }
}

/// A durable subscriber: hello, subscribe from the latest version to its topics (or a pattern),
/// check each topic's order, ack each topic at the end of each read.
final class Subscriber: FrameSink {
    private let clientID: String
    /// What it subscribes to: topic names, or one pattern.
    private let topics: [String]
    private let from: StartPosition
    private let window: Int
    private let expected: Int
    private let subscribed: Countdown
    private let delivered: Countdown
    private let latencies: LatencyLog
    /// Made at the first message: a histogram is 220 KiB, too much for each of 50,000 idle subscribers.
    /// An optional, not a `lazy var`: a lazy one is read and written back whole, so each record
    /// would copy the 220 KiB (the tool then cost 6.6 µs per message instead of 2.8).
    private var histogram: Histogram<UInt64>?
    private var received = 0
    /// One topic subscribed (not a pattern): its name is not read from each frame, so the
    /// single-topic figures cost the tool what they did before topics were counted.
    private let singleTopic: Bool
    /// Where the subscriber stands in one topic. A class, so a message updates it in place
    /// (no exclusive access to an array of them per message).
    private final class TopicState {
        let name: String
        var last: UInt64 = 0
        var acked: UInt64 = 0

        init(name: String) { self.name = name }
    }

    private var states: [String: TopicState] = [:]
    /// The one topic's state when `singleTopic`.
    private var only: TopicState?
    /// Topics received since the last ack.
    private var unacked: [TopicState] = []
    private var subscribedFrames = 0
    /// When messages later than `slow` arrived (monotonic ns), to see whether stalls recur.
    private var slowArrivals: [UInt64] = []
    static let slow: UInt64 = 10_000_000

    init(
        clientID: String, topics: [String] = ["bench"], from: StartPosition = .latest, window: Int, expected: Int, subscribed: Countdown,
        delivered: Countdown, latencies: LatencyLog
    ) {
        self.clientID = clientID
        self.topics = topics
        singleTopic = topics.count == 1 && !TopicPattern.looksLikePattern(topics[0])
        self.from = from
        self.window = window
        self.expected = expected
        self.subscribed = subscribed
        self.delivered = delivered
        self.latencies = latencies
    }

    func start(_ connection: BenchConnection) {
        connection.send(String(decoding: ClientFrame.hello(clientID: clientID, resumeToken: nil).encode(), as: UTF8.self))
        for topic in topics {
            connection.send(
                String(decoding: ClientFrame.subscribe(id: nil, topic: topic, from: from, epoch: nil, window: window).encode(), as: UTF8.self))
        }
        connection.flush()
    }

    /// The state of the topic a `msg` frame is of.
    private func topicState(of text: ByteBuffer) -> TopicState? {
        if singleTopic, let only { return only }
        guard let name = singleTopic ? topics[0] : string(after: #""topic":""#, in: text) else { return nil }
        if let known = states[name] { return known }
        let state = TopicState(name: name)
        states[name] = state
        if singleTopic { only = state }
        return state
    }

    func received(_ text: ByteBuffer, on connection: BenchConnection) {
        if frame(text, is: "msg") {
            guard let topic = topicState(of: text) else {
                delivered.fail("\(clientID): a msg without a topic: \(String(buffer: text).prefix(120))")
                return
            }
            let previous = topic.last
            guard let version = integer(after: #""version":"#, in: text), version == previous + 1 || previous == 0 else {
                delivered.fail("\(clientID): \(topic.name) out of order after \(previous): \(String(buffer: text).prefix(120))")
                return
            }
            if let sent = integer(after: #""t":"#, in: text) {
                let now = monotonicNanoseconds()
                if histogram == nil { histogram = Histogram(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three) }
                histogram?.record(now &- sent)
                if now &- sent > Self.slow { slowArrivals.append(now) }
            }
            if topic.last == topic.acked { unacked.append(topic) }
            topic.last = version
            received += 1
            if received == expected {
                if let histogram { latencies.add(histogram, slowArrivals: slowArrivals) }
                delivered.arrive()
            }
        } else if frame(text, is: "subscribed") {
            // A pattern's own answer, or one per topic subscribed (a pattern's topics announced later do not count).
            subscribedFrames += 1
            if subscribedFrames == topics.count { subscribed.arrive() }
        } else if frame(text, is: "error") {
            subscribed.fail("\(clientID): \(String(buffer: text))")
            delivered.fail("\(clientID): \(String(buffer: text))")
        }
    }

    func readComplete(on connection: BenchConnection) {
        guard !unacked.isEmpty else { return }
        for topic in unacked where topic.last > topic.acked {
            topic.acked = topic.last
            connection.send(String(decoding: ClientFrame.ack(topic: topic.name, version: topic.last).encode(), as: UTF8.self))
        }
        unacked.removeAll(keepingCapacity: true)
        connection.flush()
    }
}

/// The publisher: `inFlight` unconfirmed publishes outstanding, or a fixed rate; message n goes
/// to `topics[n % topics.count]`.
final class Publisher: FrameSink {
    private let total: Int
    private let topics: [String]
    private let inFlight: Int
    private let rate: Int?
    private let confirmed: Countdown
    private let padding: [UInt8]
    private var sent = 0
    private var confirmations = 0
    /// Confirmations so far, for a coordinator that kills the broker mid-stream.
    let confirmedSoFar: ConfirmationCount?
    private var started: UInt64 = 0
    private weak var connection: BenchConnection?

    init(
        total: Int, size: Int, inFlight: Int, rate: Int?, topics: [String] = ["bench"], confirmed: Countdown,
        confirmedSoFar: ConfirmationCount? = nil
    ) {
        self.confirmedSoFar = confirmedSoFar
        self.total = total
        self.topics = topics.isEmpty ? ["bench"] : topics
        self.inFlight = inFlight
        self.rate = rate
        self.confirmed = confirmed
        // {"t":<digits>,"p":"<padding>"} is `size` bytes: 13 bytes of syntax, the stamp, and padding
        // for what a 20-digit stamp leaves.
        padding = Array(repeating: UInt8(ascii: "x"), count: max(0, size - 33))
    }

    func start(_ connection: BenchConnection) {
        self.connection = connection
        connection.send(String(decoding: ClientFrame.hello(clientID: nil, resumeToken: nil).encode(), as: UTF8.self))
        started = monotonicNanoseconds()
        if let rate, let loop = connection.eventLoop {
            // Every 200 µs, whatever was due by now, stamped with its scheduled send time (the
            // tick adds at most 200 µs to a message's latency, 100 µs on average).
            let bound = NIOLoopBound(self, eventLoop: loop)
            loop.scheduleRepeatedTask(initialDelay: .zero, delay: .microseconds(200)) { task in
                bound.value.publishDue(rate: rate, task: task)
            }
        } else {
            fill()
        }
    }

    /// Publishes what the schedule says is due by now, each stamped with its scheduled time.
    private func publishDue(rate: Int, task: RepeatedTask) {
        // Closed before the schedule ran out (a scenario that stops the stream itself).
        guard let connection else {
            task.cancel()
            return
        }
        let due = min(total, Int(Double(monotonicNanoseconds() - started) * Double(rate) / 1e9) + 1)
        while sent < due {
            publish(at: started + UInt64(Double(sent) * 1e9 / Double(rate)), on: connection)
        }
        connection.flush()
        if sent == total { task.cancel() }
    }

    private func fill() {
        guard let connection else { return }
        while sent < total && sent - confirmations < inFlight { publish(at: monotonicNanoseconds(), on: connection) }
        connection.flush()
    }

    private func publish(at time: UInt64, on connection: BenchConnection) {
        var buffer = connection.allocate(padding.count + 96)
        buffer.writeString(#"{"op":"publish","id":"#)
        buffer.writeString(String(sent))
        buffer.writeString(#","topic":""#)
        buffer.writeString(topics[sent % topics.count])
        buffer.writeString(#"","data":{"t":"#)
        let stamp = String(time)
        buffer.writeString(stamp)
        buffer.writeString(#","p":""#)
        buffer.writeBytes(padding.prefix(max(0, padding.count + 20 - stamp.count)))
        buffer.writeString(#""}}"#)
        connection.send(buffer)
        sent += 1
    }

    func received(_ text: ByteBuffer, on connection: BenchConnection) {
        if frame(text, is: "published") {
            confirmations += 1
            confirmedSoFar?.set(confirmations)
            if confirmations == total { confirmed.arrive() }
        } else if frame(text, is: "error") {
            confirmed.fail("publisher: \(String(buffer: text))")
        }
    }

    func readComplete(on connection: BenchConnection) {
        if rate == nil { fill() }
    }
}
