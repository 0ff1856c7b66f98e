import Benchmark
import FerryProtocol
import FerryStore
import Foundation

// Each benchmark does one unit of work per iteration; the names say the unit.

let payload = Array(#"{"t":1234567890123,"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#.utf8)
let publishFrame = Array(#"{"op":"publish","id":123456,"topic":"orders","data":"#.utf8) + payload + [UInt8(ascii: "}")]
let ackFrame = Array(#"{"op":"ack","topic":"orders","version":123456}"#.utf8)

/// A store in a fresh temp folder without fsync: the benchmark measures the engine, not the disk.
func makeStore() -> LMDBMessageStore {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-micro-\(UUID().uuidString)").path
    var configuration = LMDBStoreConfiguration(path: path)
    configuration.mapSize = 4 << 30
    configuration.syncOnCommit = false
    do {
        return try LMDBMessageStore(configuration: configuration)
    } catch {
        fatalError("cannot open a store in \(path): \(error)")
    }
}

let appendStore = makeStore()
var now: Timestamp = 1_800_000_000_000
let batch = (0..<1000).map { _ in StoreOperation.publish(NewMessage(topic: "orders", kind: .json, payload: payload)) }

benchmark("store: append 1,000 × 100 B messages in one commit") {
    now += 1
    _ = try appendStore.commit(batch, now: now)
}

let readStore = makeStore()
let readTopicID: UInt64 = {
    do {
        for _ in 0..<100 { _ = try readStore.commit(batch, now: 1_800_000_000_000) }
        guard let topic = try readStore.load().topics.first(where: { $0.name == "orders" }) else { fatalError("no topic") }
        return topic.id
    } catch {
        fatalError("\(error)")
    }
}()

benchmark("store: read 512 × 100 B messages (one page of a catch-up)") {
    _ = try readStore.messages(topicID: readTopicID, after: UInt64.random(in: 0..<99_000), limit: 512)
}

benchmark("decode: publish frame, 100 B JSON payload") {
    _ = try ClientFrame.decode(publishFrame)
}

benchmark("decode: ack frame") {
    _ = try ClientFrame.decode(ackFrame)
}

benchmark("encode: msg frame, 100 B JSON payload") {
    _ = ServerFrame.message(topic: "orders", version: 123_456, timestamp: 1_800_000_000_000, payload: .json(payload), headers: [])
}

benchmark("encode: published frame") {
    _ = ServerFrame.published(id: 123_456, topic: "orders", version: 123_456, duplicate: false)
}

Benchmark.main()
