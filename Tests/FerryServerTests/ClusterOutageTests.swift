import FerryTestSupport
import Foundation
import Testing

/// The PostgreSQL server under two brokers stops as a crash would (`pg_ctl stop -m immediate`),
/// under publish load, and starts again on the same data folder and port. Meanwhile the brokers
/// refuse publishes with `unavailable` and keep running; afterwards they reconnect by themselves
/// (neither is restarted) and nothing they confirmed is lost. The server is this test's own: no
/// other test sees it stop.
@Suite("Cluster: PostgreSQL stopped and restarted under two brokers")
struct ClusterOutageTests {
    private static let topic = "orders"

    @Test func brokersRefuseWhileTheDatabaseIsDownThenReconnectAndLoseNothingConfirmed() throws {
        let postgres = try Self.ownServer()
        defer { postgres.remove() }
        let database = try postgres.server.createDatabase()
        let environment = ["FERRY_POSTGRES_URL": postgres.server.url(database: database), "FERRY_ADMIN_TOKEN": testAdminToken]
        let a = try Ferryd(environment: environment)
        let b = try Ferryd(environment: environment)
        do {
            try outage(postgres, database: database, a, b)
        } catch {
            // Which broker, and what it and the server were doing, when the test broke off.
            print("ClusterOutageTests: \(error)\nA:\n\(a.logTail())\nB:\n\(b.logTail())\nPostgreSQL:\n\(postgres.logTail())")
            throw error
        }
    }

    private func outage(_ postgres: ThrowawayPostgres, database: String, _ a: Ferryd, _ b: Ferryd) throws {
        let processes = (a.processID, b.processID)
        var publishes = Publishes()

        // Before: A makes the topic first, so B's subscriber reads its log (no reset).
        let first = try publishes.http(a)
        try publishes.confirm(first)
        let reader = try DurableReader(b, clientID: "outage-reader", topic: Self.topic)
        let (publisher, _) = try a.session()
        try publishes.mixedBatch(a, b, publisher)
        #expect(try reader.read(through: publishes.head).versions == Array(1...publishes.head))
        let delivered = publishes.head

        // Down, while both brokers publish as fast as they are answered. A publish whose COMMIT
        // was cut off is answered 503 and may be stored: only confirmed ones are owed.
        let load = [a, b].enumerated().map { index, broker in LoadPublisher(broker, numbersFrom: 100_000 * (index + 1)) }
        // Also when the test fails: a publisher left running keeps its broker alive past the test.
        defer { for publisher in load { publisher.halt() } }
        try waitUntil("both brokers confirm publishes under load", timeout: 20) { load.allSatisfy { $0.confirmed.count >= 20 } }
        try postgres.stop(immediate: true)
        try waitUntil("both brokers refuse publishes under load", timeout: 20) { load.allSatisfy { !$0.refused.isEmpty } }
        for publisher in load { try publisher.stop() }

        // Nothing is in flight any more: each publish below fails before a transaction starts.
        let failedReadsAtStop = try Self.failedReads(b)
        try publishes.expectRefused(a, b, publisher)
        // /metrics still answers and counts the failures: it is how an operator sees the outage.
        #expect(try Scrape(a).count(#"ferry_store_errors_total{operation="commit",error="engine"}"#) >= 2)
        // Long enough for the brokers' own work to meet the outage: B's 500 ms poll (a read of its
        // subscriber's topic and one of the sessions it holds) fails four times over, and both
        // LISTEN loops retry (every second) in vain.
        try waitUntil("B's poll fails 4 times", timeout: 20) { try Self.failedReads(b) >= failedReadsAtStop + 8 }
        try publishes.expectRefused(a, b, publisher)
        #expect(a.isRunning && b.isRunning, "a broker died with the database:\n\(a.logTail())\n\(b.logTail())")
        #expect(try a.get("/healthz").status == 200 && b.get("/healthz").status == 200)

        // Back, on the same folder and port. Each broker finds it by itself: no ferryd restart.
        try postgres.start()
        for broker in [a, b] {
            try waitUntil("broker on port \(broker.port) confirms a publish again", timeout: 30) {
                let response = try publishes.http(broker)
                guard response.status == 201 else {
                    #expect(response.status == 503 && response.errorCode == "unavailable", "\(response)")
                    return false
                }
                try publishes.confirm(response)
                return true
            }
        }
        try publishes.mixedBatch(a, b, publisher)
        #expect(a.processID == processes.0 && b.processID == processes.1, "a broker was restarted")

        for loaded in load { publishes.merge(loaded) }
        let head = try #require(publishes.confirmed.keys.max())
        let stored = try Self.checkLog(confirmed: publishes.confirmed, cutOff: publishes.cutOff, on: [a, b])
        // B's durable subscriber gets everything after what it had, in order, each version once
        // (resuming, as a durable client does, if B closed it for a read the store failed).
        let rest = try reader.read(through: head, timeout: 30)
        #expect(rest.versions == Array(delivered + 1...head))
        #expect(rest.allSatisfy { stored[$0.int("version") ?? -1] == $0.object("data")?.int("n") })
        #expect(try reader.nothingMore(), "a duplicate or an extra frame")

        // Each broker LISTENs again (not only polls), and one of them holds the sweep lock again.
        try waitUntil("both brokers LISTEN again", timeout: 15) {
            try postgres.server.run(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '\(database)' AND query LIKE 'LISTEN%'") == "2"
        }
        // PostgresSweepLock's key, as pg_locks shows a bigint advisory key: high and low halves.
        let key: Int64 = 0x6665_7272_7973_7770
        try waitUntil("a broker holds the sweep lock again", timeout: 15) {
            try postgres.server.run(
                """
                SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
                    AND classid::bigint = \(key >> 32) AND objid::bigint = \(key & 0xFFFF_FFFF)
                """) == "1"
        }
        #expect(a.isRunning && b.isRunning)
        print("ClusterOutageTests: \(publishes.confirmed.count) confirmed, \(publishes.cutOff.count) cut off, head \(head), reader resumed \(reader.resumes) times")
    }

    /// Requires the topic to read the same on each broker: one gapless log holding every confirmed
    /// publish with the version it was given, where anything else is a publish refused while its
    /// COMMIT was cut off (none refused while the database was down). Returns version → `n`.
    private static func checkLog(confirmed: [Int: Int], cutOff: Set<Int>, on brokers: [Ferryd]) throws -> [Int: Int] {
        let head = try #require(confirmed.keys.max())
        var stored: [Int: Int] = [:]
        for broker in brokers {
            let read = try broker.get(Ferryd.topicPath(topic) + "/messages?limit=10000")
            let messages = read.json?.objects("messages") ?? []
            #expect(messages.versions == Array(1...head), "on port \(broker.port): \(read)")
            stored = Dictionary(messages.map { ($0.int("version") ?? -1, $0.object("data")?.int("n") ?? -1) }) { first, _ in first }
            #expect(confirmed.allSatisfy { stored[$0.key] == $0.value }, "a confirmed publish is missing or changed")
            let unconfirmed = Set(stored.filter { confirmed[$0.key] == nil }.values)
            #expect(unconfirmed.isSubset(of: cutOff), "stored though refused: \(unconfirmed.subtracting(cutOff).sorted())")
        }
        return stored
    }

    /// Store reads that failed on `broker` (its poll's among them), as `/metrics` counts them.
    private static func failedReads(_ broker: Ferryd) throws -> Double {
        try Scrape(broker).count(#"ferry_store_errors_total{operation="read",error="engine"}"#)
    }

    /// A server for this test alone; when none can be started, the test is skipped, saying why.
    private static func ownServer() throws -> ThrowawayPostgres {
        do {
            return try ThrowawayPostgres()
        } catch {
            let reason = "PostgreSQL could not be started: \(error.reason)"
            print("skipped ClusterOutageTests: \(reason)")
            try Test.cancel(Comment(rawValue: reason))
        }
    }
}

/// The test's publishes, `{"n":1}`, `{"n":2}`, …, and what the brokers confirmed of them.
private struct Publishes {
    private(set) var sent = 0
    /// Confirmed version → the `n` it carried.
    private(set) var confirmed: [Int: Int] = [:]
    /// The `n` of publishes refused while their commit may have been under way.
    private(set) var cutOff: Set<Int> = []

    var head: Int { confirmed.keys.max() ?? 0 }

    /// One HTTP publish of the next number; its answer, whatever it is.
    mutating func http(_ broker: Ferryd) throws -> HTTPResponse {
        sent += 1
        do {
            return try broker.publishHTTP("orders", body: Data("{\"n\":\(sent)}".utf8))
        } catch {
            throw TestFailure("HTTP publish \(sent) to the broker on port \(broker.port): \(error)")
        }
    }

    /// One WebSocket publish of the next number, with that number as its request id; the answer.
    mutating func webSocket(_ ws: TestWebSocket) throws -> JSON {
        sent += 1
        do {
            try ws.sendText(TestWebSocket.publishFrame("orders", data: "{\"n\":\(sent)}", id: sent))
        } catch {
            throw TestFailure("WebSocket publish \(sent): \(error) (close code \(ws.closeCode.map(String.init) ?? "none"))")
        }
        guard let reply = try ws.nextJSON(timeout: 15) else {
            throw TestFailure("no answer to WebSocket publish \(sent) (close code \(ws.closeCode.map(String.init) ?? "none"))")
        }
        return reply
    }

    /// An HTTP publish that must have been confirmed.
    mutating func confirm(_ response: HTTPResponse) throws {
        guard response.status == 201, let version = response.json?.int("version") else {
            throw TestFailure("publish \(sent) not confirmed: \(response)")
        }
        record(version, sent)
    }

    private mutating func record(_ version: Int, _ n: Int) {
        #expect(confirmed[version] == nil, "version \(version) confirmed twice")
        confirmed[version] = n
    }

    /// Ten HTTP publishes on each broker and five WebSocket ones, all of which must be confirmed.
    mutating func mixedBatch(_ a: Ferryd, _ b: Ferryd, _ publisher: TestWebSocket) throws {
        for broker in [a, b] {
            for _ in 0..<10 {
                let response = try http(broker)
                try confirm(response)
            }
        }
        for _ in 0..<5 {
            let reply = try webSocket(publisher)
            guard reply.string("op") == "published", reply.int("id") == sent, let version = reply.int("version") else {
                throw TestFailure("WebSocket publish \(sent) not confirmed: \(reply.text)")
            }
            record(version, sent)
        }
    }

    /// One publish on each broker over HTTP and one over WebSocket: each refused with
    /// `unavailable` (HTTP 503) within a few seconds, not left hanging.
    mutating func expectRefused(_ a: Ferryd, _ b: Ferryd, _ publisher: TestWebSocket) throws {
        for broker in [a, b] {
            let started = ContinuousClock.now
            let response = try http(broker)
            #expect(response.status == 503 && response.errorCode == "unavailable", "\(response)")
            #expect(ContinuousClock.now - started < .seconds(5), "the refusal took \(ContinuousClock.now - started)")
        }
        let reply = try webSocket(publisher)
        #expect(reply.string("op") == "error" && reply.string("code") == "unavailable" && reply.int("id") == sent, "\(reply.text)")
    }

    /// What a load publisher was answered.
    mutating func merge(_ load: LoadPublisher) {
        for (version, n) in load.confirmed { record(version, n) }
        cutOff.formUnion(load.refused)
    }
}

/// Publishes `{"n":…}` over HTTP on a thread of its own, one after the other, until stopped.
private final class LoadPublisher: Sendable {
    private struct Answers {
        var confirmed: [Int: Int] = [:]
        var refused: [Int] = []
        var unexpected: [String] = []
        var stopping = false
    }

    private let answers = Shared(Answers())
    private let thread: BackgroundThread

    init(_ broker: Ferryd, numbersFrom first: Int) {
        let answers = answers
        thread = BackgroundThread {
            var n = first
            while !answers.value.stopping {
                n += 1
                let answer = Result { try broker.publishHTTP("orders", body: Data("{\"n\":\(n)}".utf8)) }
                answers.update { answers in
                    guard case .success(let response) = answer else {
                        answers.unexpected.append("\(answer)")
                        return
                    }
                    if response.status == 201, let version = response.json?.int("version") {
                        answers.confirmed[version] = n
                    } else if response.status == 503, response.errorCode == "unavailable" {
                        answers.refused.append(n)
                    } else {
                        answers.unexpected.append("\(response)")
                    }
                }
            }
        }
    }

    /// Stops publishing; false when the publish under way is not answered within 30 s. Only the
    /// first call waits.
    @discardableResult
    func halt() -> Bool {
        let first = answers.update { answers in
            defer { answers.stopping = true }
            return !answers.stopping
        }
        return !first || thread.join(timeout: 30)
    }

    var confirmed: [Int: Int] { answers.value.confirmed }
    var refused: [Int] { answers.value.refused }

    /// Stops publishing; every answer must have been a confirmation or `unavailable`.
    func stop() throws {
        guard halt() else { throw TestFailure("a load publisher is still waiting for an answer") }
        let unexpected = answers.value.unexpected
        #expect(unexpected.isEmpty, "\(unexpected.prefix(3))")
    }
}

/// A durable subscriber of one topic from the earliest version, as a durable client behaves: it
/// acks what it handled and, when the broker closes it (`unavailable` and 1011 after a read the
/// store failed), resumes with its client id and skips what it had already handled.
private final class DurableReader {
    private let broker: Ferryd
    private let clientID: String
    private let topic: String
    private var ws: TestWebSocket
    private var last = 0
    /// What the last resume may send again (its ack floor may lag behind the acks sent).
    private var resentThrough = 0
    private(set) var resumes = 0

    init(_ broker: Ferryd, clientID: String, topic: String) throws {
        self.broker = broker
        self.clientID = clientID
        self.topic = topic
        (ws, _) = try broker.session(clientID: clientID)
        try ws.subscribe(topic, from: "earliest")
    }

    /// Each version after the last one read through `head`, once, in the order it came.
    func read(through head: Int, timeout: TimeInterval = 10) throws -> [JSON] {
        let deadline = Deadline(seconds: timeout)
        var messages: [JSON] = []
        while last < head {
            guard let frame = try ws.nextJSON(timeout: deadline.remaining) else {
                // Nil before the deadline: the connection ended.
                guard !deadline.hasPassed else {
                    throw TestFailure("read \(messages.versions) of \(last + 1 - messages.count)...\(head) within \(timeout) s")
                }
                resumes += 1
                resentThrough = last
                let welcome: JSON
                (ws, welcome) = try broker.session(clientID: clientID)
                #expect(welcome.bool("resumed") == true)
                continue
            }
            // A read of older messages the store failed (the database going down): the close follows.
            if frame.string("op") == "error", frame.string("code") == "unavailable" { continue }
            guard frame.string("op") == "msg", let version = frame.int("version") else {
                throw TestFailure("expected a message, got \(frame.text)")
            }
            // An ack the closed connection cannot take is lost; the resume sends from the floor.
            _ = Result { try ws.ack(topic, version) }
            if version <= resentThrough { continue }  // sent again after a resume: handled already
            guard version > last else { throw TestFailure("version \(version) again after \(last), on one connection") }
            last = version
            messages.append(frame)
        }
        return messages
    }

    /// Nothing else arrives within half a second.
    func nothingMore() throws -> Bool {
        try ws.framesWithin(0.5).isEmpty
    }
}

/// Polls `condition` until it holds; there is no event to await but the state it reads.
private func waitUntil(_ what: String, timeout: TimeInterval, _ condition: () throws -> Bool) throws {
    let deadline = Deadline(seconds: timeout)
    while try !condition() {
        if deadline.hasPassed { throw TestFailure("\(what): not within \(timeout) s") }
        Thread.sleep(forTimeInterval: 0.05)
    }
}
