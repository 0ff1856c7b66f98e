import Benchmark
import FerryProtocol
import FerryStore
import Foundation

// Each iteration of a benchmark does one unit of work (the name says which), or, for the frame
// benchmarks, 1,000 of them (scalingFactor .kilo): the figures are per unit either way.

let payload = Array(#"{"t":1234567890123,"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.utf8)
let publishFrame = Array(#"{"op":"publish","id":123456,"topic":"orders","data":"#.utf8) + payload + [UInt8(ascii: "}")]
let ackFrame = Array(#"{"op":"ack","topic":"orders","version":123456}"#.utf8)
let batch = (0..<1000).map { _ in StoreOperation.publish(NewMessage(topic: "orders", kind: .json, payload: payload)) }

/// A store in a temp folder of its own, without fsync: the benchmark measures the engine, not the
/// disk. The folder is named by process and benchmark so that the teardown can remove it.
final class StoreFixture {
    let path: String
    let store: LMDBMessageStore
    var now: Timestamp = 1_800_000_000_000
    var topicID: UInt64 = 0

    static func path(_ name: String) -> String {
        FileManager.default.temporaryDirectory
            .appendingPathComponent("ferry-micro-\(ProcessInfo.processInfo.processIdentifier)-\(name)").path
    }

    init(_ name: String) throws {
        path = Self.path(name)
        try? FileManager.default.removeItem(atPath: path)
        var configuration = LMDBStoreConfiguration(path: path)
        configuration.mapSize = 4 << 30
        configuration.syncOnCommit = false
        store = try LMDBMessageStore(configuration: configuration)
    }

    static func remove(_ name: String) {
        try? FileManager.default.removeItem(atPath: path(name))
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        maxDuration: .seconds(2),
        maxIterations: 100_000
    )
    let frames = Benchmark.Configuration(scalingFactor: .kilo)

    Benchmark("store: append 1000 x 100 B messages in one commit") { (benchmark: Benchmark, fixture: StoreFixture) in
        for _ in benchmark.scaledIterations {
            fixture.now += 1
            blackHole(try fixture.store.commit(batch, now: fixture.now))
        }
    } setup: {
        try StoreFixture("append")
    } teardown: {
        StoreFixture.remove("append")
    }

    Benchmark("store: read 512 x 100 B messages (one page of a catch-up)") { (benchmark: Benchmark, fixture: StoreFixture) in
        for _ in benchmark.scaledIterations {
            let after = UInt64.random(in: 0..<99_000)
            blackHole(try fixture.store.messages(topicID: fixture.topicID, after: after, limit: 512))
        }
    } setup: {
        let fixture = try StoreFixture("read")
        for _ in 0..<100 { _ = try fixture.store.commit(batch, now: fixture.now) }
        guard let topic = try fixture.store.load().topics.first(where: { $0.name == "orders" }) else {
            fatalError("no topic")
        }
        fixture.topicID = topic.id
        return fixture
    } teardown: {
        StoreFixture.remove("read")
    }

    Benchmark("decode: publish frame, 100 B JSON payload", configuration: frames) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ClientFrame.decode(publishFrame))
        }
    }

    Benchmark("decode: ack frame", configuration: frames) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try ClientFrame.decode(ackFrame))
        }
    }

    Benchmark("encode: msg frame, 100 B JSON payload", configuration: frames) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(
                ServerFrame.message(
                    topic: "orders", version: 123_456, timestamp: 1_800_000_000_000, payload: .json(payload), headers: []
                )
            )
        }
    }

    Benchmark("encode: published frame", configuration: frames) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(ServerFrame.published(id: 123_456, topic: "orders", version: 123_456, duplicate: false))
        }
    }
}
