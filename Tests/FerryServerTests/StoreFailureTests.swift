import FerryStore
import FerryTestSupport
import Foundation
import Testing

/// A store that fails is never papered over: a record that does not decode stops the start or
/// the read that met it, with a message that names it, a log line and a metric.
@Suite("Store failures")
struct StoreFailureTests {
    /// Overwrites one record of a stopped broker's data, in LMDB database `database`.
    private func corrupt(_ ferryd: Ferryd, database: String, key: [UInt8], value: [UInt8]) throws {
        var options = LMDBOptions()
        options.mapSize = 64 << 20
        let environment = try LMDBEnvironment(path: ferryd.dataDirectory.path, options: options)
        let db = try environment.openDatabase(database)
        try environment.write { txn throws(LMDBError) in try txn.put(db, key, value) }
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    @Test func aTopicRecordThatDoesNotDecodeStopsTheStartAndSaysWhatToRun() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("orders", count: 2)
        try ferryd.terminate()
        try corrupt(ferryd, database: "topics", key: Array("orders".utf8), value: [1, 2, 3])

        #expect(throws: (any Error).self) { try ferryd.start() }
        let log = ferryd.logTail()
        #expect(log.contains("topic record 'orders' does not decode"), "\(log)")
        #expect(log.contains("ferryctl verify --data \(ferryd.dataDirectory.path)"), "\(log)")
        // Nothing was rewritten: the record is still the broken one for verify to report.
        let environment = try LMDBEnvironment(path: ferryd.dataDirectory.path, options: LMDBOptions())
        let topics = try environment.openDatabase("topics")
        #expect(try environment.read { txn throws(LMDBError) in try txn.get(topics, Array("orders".utf8)) } == [1, 2, 3])
    }

    @Test func aMessageThatDoesNotDecodeClosesItsReaderAndFailsTheHTTPRead() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("t", count: 3)
        // Restarted, so delivery reads the store rather than the broker's cache of recent messages.
        try ferryd.terminate()
        // The first topic's id is 1; its message 2 loses all but three bytes.
        try corrupt(ferryd, database: "messages", key: Self.bigEndian(1) + Self.bigEndian(2), value: [0, 0, 1])
        try ferryd.start()

        let (reader, _) = try ferryd.session()
        try reader.subscribe("t", from: "earliest")
        // The page of messages 1-3 cannot be read whole: nothing of it is sent, the reader is
        // closed and will resume from its floor when it reconnects.
        let error = try reader.expectError("unavailable")
        #expect(error.string("message")?.contains("message 2 of topic id 1") == true, "\(error.text)")
        #expect(reader.waitForClose() == 1011)

        let read = try ferryd.get(Ferryd.topicPath("t") + "/messages?after=0")
        #expect(read.status == 503, "\(read)")
        #expect(read.errorCode == "unavailable")
        #expect(try Scrape(ferryd).count(#"ferry_store_errors_total{operation="read",error="corrupted"}"#) == 2)
        #expect(ferryd.logTail().contains("store failure"))

        // Other topics and connections are unharmed.
        let (other, _) = try ferryd.session()
        try other.subscribe("u", from: "latest")
        try ferryd.publishJSON("u", "{}")
        #expect(try other.expectOp("msg").int("version") == 1)
    }
}
