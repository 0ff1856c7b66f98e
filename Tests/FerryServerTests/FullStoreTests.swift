import FerryTestSupport
import Foundation
import Testing

/// A broker whose disk or map fills up: publishes fail with `unavailable`, reads keep working,
/// an operator frees space through the admin API, and publishing comes back, all in one run of
/// the broker (PROTOCOL.md, "Errors"). The disk cases run on a real tmpfs of a few MiB.
@Suite("A full store")
struct FullStoreTests {
    /// 100 KB, so a few hundred publishes fill the small filesystems below.
    private static let bulk = Data(repeating: UInt8(ascii: "x"), count: 100_000)

    /// Publishes `bulk` to `topic` until the broker refuses; returns how many it stored. Fails the
    /// test when it never refuses within `limit` (the store did not fill).
    private func publishUntilRefused(_ ferryd: Ferryd, _ topic: String, limit: Int = 2000) throws -> Int {
        for stored in 0..<limit {
            let response = try ferryd.publishHTTP(topic, body: Self.bulk, contentType: "application/octet-stream")
            if response.status == 201 { continue }
            #expect(response.status == 503, "\(response)")
            #expect(response.errorCode == "unavailable", "\(response)")
            return stored
        }
        throw TestFailure("\(limit) publishes of 100 KB were all stored: the store never filled")
    }

    /// What must hold while the store is full: reads work, every publish is refused (HTTP and
    /// WebSocket, to a new topic too) and counted, and the process is the one that started.
    private func expectFull(_ ferryd: Ferryd, _ topic: String, stored: Int) throws {
        let read = try ferryd.get(Ferryd.topicPath(topic) + "/messages?after=0&limit=3")
        #expect(read.status == 200, "\(read)")
        #expect(read.json?.objects("messages")?.versions == [1, 2, 3])
        #expect(try ferryd.topicInfo(topic).int("head") == stored)
        #expect(try ferryd.publishHTTP("other", body: Data("{}".utf8)).status == 503)
        let (ws, _) = try ferryd.session()
        try ws.sendText(TestWebSocket.publishFrame(topic, data: "{}", id: 7))
        #expect(try ws.expectError("unavailable", id: 7).string("message")?.contains("full") == true)
        #expect(try Scrape(ferryd).count(#"ferry_store_errors_total{operation="publish",error="full"}"#) >= 3)
    }

    @Test(.enabled(if: SmallFilesystem.isAvailable, "needs root to mount a tmpfs (CAP_SYS_ADMIN)"))
    func diskFilledByTheBrokerRecoversByTrimAndDelete() throws {
        // The map (128 MiB) is far larger than the disk (40 MiB): the disk fills first.
        let disk = try SmallFilesystem(megabytes: 40)
        let ferryd = try Ferryd(
            environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_MAP_SIZE": "128M"], data: disk.path.appendingPathComponent("data"))
        let pid = ferryd.processID
        let stored = try publishUntilRefused(ferryd, "big")
        #expect(stored > 10)
        try expectFull(ferryd, "big", stored: stored)

        let trim = try ferryd.admin("POST", "/topics/big/trim", json: #"{"to":5,"force":true}"#)
        #expect(trim.status == 200, "\(trim)")
        #expect(try ferryd.topicInfo("big").int("first") == 6)
        let delete = try ferryd.admin("DELETE", "/topics/big")
        #expect(delete.status == 200, "\(delete)")

        // The deleted log's pages are free again: publishing is back, without a restart.
        let again = try ferryd.publishHTTP("big", body: Self.bulk, contentType: "application/octet-stream")
        #expect(again.status == 201, "\(again)")
        #expect(again.json?.int("version") == 1)
        #expect(ferryd.processID == pid)
        #expect(ferryd.isRunning)
    }

    @Test(.enabled(if: SmallFilesystem.isAvailable, "needs root to mount a tmpfs (CAP_SYS_ADMIN)"))
    func diskFilledByAnotherProgramRecoversWhenItIsFreed() throws {
        let disk = try SmallFilesystem(megabytes: 40)
        let ferryd = try Ferryd(
            environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_MAP_SIZE": "128M"], data: disk.path.appendingPathComponent("data"))
        let (subscriber, _) = try ferryd.session(clientID: "reader")
        try subscriber.subscribe("logs", from: "earliest")
        try ferryd.publishNumbered("logs", count: 3)
        let ballast = try disk.fillWithBallast()
        #expect(disk.freeBytes < 1 << 20)

        // The broker's own reserve is spent on publishes, then they are refused.
        let stored = try publishUntilRefused(ferryd, "bulk")
        try expectFull(ferryd, "bulk", stored: stored)
        // Acks still commit on a full disk: the subscriber's floor moves and is kept.
        for version in 1...3 { #expect(try subscriber.expectOp("msg").int("version") == version) }
        try subscriber.ack("logs", 3)
        try subscriber.pingPong()

        try FileManager.default.removeItem(at: ballast)
        let again = try ferryd.publishHTTP("logs", body: Data("{}".utf8))
        #expect(again.status == 201, "\(again)")
        #expect(again.json?.int("version") == 4)
        subscriber.close()
        try ferryd.admin("GET", "/clients/reader").json.map { client in
            #expect(client.objects("subscriptions")?.first?.int("ack_floor") == 3, "\(client)")
        }
    }

    @Test func fullMapRecoversByDelete() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_MAP_SIZE": "16M"])
        let stored = try publishUntilRefused(ferryd, "big")
        try expectFull(ferryd, "big", stored: stored)
        #expect(try ferryd.admin("DELETE", "/topics/big").status == 200)
        let again = try ferryd.publishHTTP("big", body: Self.bulk, contentType: "application/octet-stream")
        #expect(again.status == 201, "\(again)")
    }
}
