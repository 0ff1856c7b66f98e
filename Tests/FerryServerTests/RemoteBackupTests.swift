import Crypto
import FerryStore
import FerryTestSupport
import Foundation
import Testing

/// `GET /v1/admin/backup` and `ferryctl backup FILE`, `restore` and `verify FILE`, against real
/// brokers: the backup is taken over HTTP into a file, unpacked into a new data folder, and a
/// broker started on that folder.
@Suite struct RemoteBackupTests {
    @Test func backupUnderLoadRestoresIntoABrokerThatResumesAClientExactly() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_SYNC": "none"])
        // Enough data that the copy takes a while, and a client whose floor is 20 before the backup.
        try fill(ferryd, topic: "bulk", megabytes: 24)
        let (alice, _) = try ferryd.session(clientID: "alice")
        try alice.subscribe("t", from: "earliest", window: 65536)
        try ferryd.publishNumbered("t", count: 40)
        #expect(try alice.collectMessages(count: 40).count == 40)
        try alice.ack("t", 20)
        try alice.pingPong()
        alice.close()
        try ferryd.awaitDisconnected("alice")

        let confirmed = Shared<[Int]>([])
        let stop = Shared(false)
        let port = ferryd.port
        let publisher = BackgroundThread {
            var n = 41
            while !stop.value {
                let body = Data(#"{"n":\#(n)}"#.utf8)
                guard let response = try? HTTP.request(port: port, method: "POST", path: "/v1/topics/t/messages", headers: ["Content-Type": "application/json"], body: body),
                    response.status == 201, let version = response.json?.int("version")
                else { return }
                confirmed.update { $0.append(version) }
                n += 1
            }
        }
        defer {
            stop.update { $0 = true }
            _ = publisher.join(timeout: 10)
        }
        try awaitCount(confirmed, atLeast: 20)

        let file = ferryd.directory.appendingPathComponent("ferry.backup").path
        let before = confirmed.value.count
        let backup = try ferryctl(["backup", file, "--output", "json"], broker: ferryd)
        let during = confirmed.value.count - before
        stop.update { $0 = true }
        #expect(publisher.join(timeout: 10))
        #expect(backup.status == 0, "\(backup)")
        #expect(during > 0, "publishes were confirmed while the backup ran")
        let result = try #require(backup.json, "\(backup)")
        let bytes = try #require(FileManager.default.contents(atPath: file))
        #expect(result.string("file") == file)
        #expect(result.int("bytes") == bytes.count)
        #expect(result.string("sha256") == SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined(), "what sha256sum prints")
        #expect(!FileManager.default.fileExists(atPath: file + ".partial"))

        let folder = ferryd.directory.appendingPathComponent("restored").path
        let restore = try ferryctl(["restore", file, folder])
        #expect(restore.status == 0, "\(restore)")
        #expect(restore.stdout.contains("ok: \(folder) is consistent"), "\(restore)")
        let verifiedFile = try ferryctl(["verify", file])
        #expect(verifiedFile.status == 0, "\(verifiedFile)")
        #expect(verifiedFile.stdout.hasPrefix("ok: \(file) is an intact backup (sha256 \(result.string("sha256") ?? ""))"), "\(verifiedFile)")
        #expect(try ferryctl(["verify", "--data", folder]).status == 0)

        // A broker on the restored folder itself has every version up to the backup's head, as the
        // original stored them, and alice resumes from 20 and gets 21...head, in order, no gap.
        let restored = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken], data: URL(fileURLWithPath: folder))
        let head = try #require(try restored.topicInfo("t").int("head"))
        #expect(head >= 40 + before, "the backup holds what was confirmed before it started")
        #expect(head <= 40 + confirmed.value.count)
        let copy = try restored.get(Ferryd.topicPath("t") + "/messages?limit=1000")
        let original = try ferryd.get(Ferryd.topicPath("t") + "/messages?limit=\(head)")
        #expect(copy.json?.objects("messages")?.versions == Array(1...head))
        #expect(copy.text == original.text, "the same messages, timestamps and epoch")
        let (resumed, welcome) = try restored.session(clientID: "alice")
        #expect(welcome.bool("resumed") == true)
        #expect(welcome.objects("subscriptions")?.first?.int("ack_floor") == 20, "\(welcome.text)")
        let delivered = try resumed.collectMessages(count: head - 20, timeout: 20)
        #expect(delivered.versions == Array(21...head))
        #expect(delivered.map { $0.object("data")?.int("n") } == (21...head).map { Optional($0) })
        #expect(try resumed.framesWithin(0.3).isEmpty, "nothing after the backup's head")
    }

    @Test func truncatedAndDamagedFilesAreRefusedByRestoreAndVerify() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("t", count: 50)
        let file = ferryd.directory.appendingPathComponent("good.backup")
        let backup = try ferryctl(["backup", file.path], broker: ferryd)
        #expect(backup.status == 0, "\(backup)")
        #expect(backup.stdout.hasPrefix("backup written to \(file.path) ("), "\(backup)")
        #expect(backup.stdout.contains("\nsha256 "), "\(backup)")
        #expect(backup.stderr.isEmpty, "no progress bar off a terminal: \(backup)")
        let bytes = try Data(contentsOf: file)

        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x10
        let cases: [(name: String, bytes: Data, says: String)] = [
            ("truncated", bytes.prefix(bytes.count - 1000), "truncated"),
            ("cut-in-trailer", bytes.prefix(bytes.count - 5), "truncated"),
            ("flipped", flipped, "corrupted"),
            ("data-file", try Data(contentsOf: ferryd.dataDirectory.appendingPathComponent("data.mdb")), "not a Ferry backup file"),
        ]
        for (name, damaged, says) in cases {
            let path = ferryd.directory.appendingPathComponent(name).path
            try damaged.write(to: URL(fileURLWithPath: path))
            let folder = ferryd.directory.appendingPathComponent("restore-\(name)").path
            for arguments in [["restore", path, folder], ["verify", path], ["verify", path, "--json"]] {
                let run = try ferryctl(arguments)
                #expect(run.status == 1, "\(arguments): \(run)")
                #expect(run.stderr.hasPrefix("ferryctl: \(path): ") && run.stderr.contains(says), "\(arguments): \(run)")
                #expect(run.stdout.isEmpty, "\(run)")
            }
            #expect(!FileManager.default.fileExists(atPath: folder), "a refused restore leaves nothing")
        }

        // Refusals that protect what is there.
        let occupied = ferryd.directory.appendingPathComponent("occupied")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: occupied.appendingPathComponent("note"))
        let intoOccupied = try ferryctl(["restore", file.path, occupied.path])
        #expect(intoOccupied.status == 1 && intoOccupied.stderr.contains("is not empty"), "\(intoOccupied)")
        let overExisting = try ferryctl(["backup", file.path], broker: ferryd)
        #expect(overExisting.status == 1 && overExisting.stderr.contains("exists"), "\(overExisting)")
        let intoFolder = try ferryctl(["backup", occupied.path], broker: ferryd)
        #expect(intoFolder.status == 2 && intoFolder.stderr.contains("--on-broker"), "\(intoFolder)")
        #expect(try Data(contentsOf: file) == bytes)
        let both = try ferryctl(["verify", file.path, "--data", occupied.path])
        #expect(both.status == 2, "\(both)")
    }

    @Test func theRouteNeedsTheAdminTokenAndNamesItsFormat() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("t", count: 3)
        for token in [nil, "wrong"] {
            let response = try ferryd.admin("GET", "/backup", token: token)
            #expect(response.status == 401 && response.errorCode == "unauthorized", "\(response)")
        }
        let file = ferryd.directory.appendingPathComponent("x.backup").path
        let refused = try ferryctl(["backup", file], broker: ferryd, token: "wrong")
        #expect(refused.status == 4, "\(refused)")
        #expect(!FileManager.default.fileExists(atPath: file) && !FileManager.default.fileExists(atPath: file + ".partial"))
        let off = try Ferryd()
        #expect(try off.admin("GET", "/backup").status == 403)

        let response = try ferryd.admin("GET", "/backup")
        #expect(response.status == 200, "\(response)")
        #expect(response.headers["content-type"] == "application/vnd.ferry.backup")
        let estimate = try #require(response.headers["ferry-backup-estimate"].flatMap { Int($0) }, "\(response.headers)")
        var reader = BackupFileReader()
        let data = try reader.consume(response.body)
        let summary = try reader.finish()
        #expect(summary.dataBytes == UInt64(data.count))
        #expect(abs(data.count - estimate) <= 4 * 4096, "estimate \(estimate) for a copy of \(data.count)")
    }

    @Test func aClientThatStopsReadingOrGoesAwayLeavesTheBrokerServing() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_SYNC": "none"])
        let pid = try #require(ferryd.processID)
        try fill(ferryd, topic: "bulk", megabytes: 48)
        // A whole backup first: the thread pool that reads the pipe starts its threads once.
        let warm = try ferryctl(["backup", ferryd.directory.appendingPathComponent("warm.backup").path], broker: ferryd)
        #expect(warm.status == 0, "\(warm)")
        let baseline = try (threads: count(pid, "task"), descriptors: count(pid, "fd"))
        let written = try writtenBytes(pid)

        let connection = try TCPConnection(port: ferryd.port)
        try connection.write(Array("GET /v1/admin/backup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(testAdminToken)\r\n\r\n".utf8))
        guard case .bytes(let first) = connection.read(until: Deadline(seconds: 10)) else { throw TestFailure("no answer") }
        #expect(String(decoding: first.prefix(12), as: UTF8.self) == "HTTP/1.1 200")
        // The client reads no more: the copy must stall on the full pipe and socket, not run on
        // into the broker's memory. Wait until the broker stops writing, then see how far it got.
        var last = try writtenBytes(pid)
        var stable = 0
        let deadline = Deadline(seconds: 20)
        while stable < 3, !deadline.hasPassed {
            Thread.sleep(forTimeInterval: 0.2)
            let now = try writtenBytes(pid)
            stable = now == last ? stable + 1 : 0
            last = now
        }
        #expect(stable == 3, "the broker kept writing to a client that reads nothing")
        #expect(last - written < 24 << 20, "\((last - written) >> 20) MiB written of a 48 MiB store")
        #expect(try count(pid, "task") > baseline.threads, "the copy's threads are running")

        connection.close()
        try awaitTrue("the copy's threads and pipe end", timeout: 10) {
            try count(pid, "task") <= baseline.threads && count(pid, "fd") <= baseline.descriptors
        }
        #expect(try ferryd.publishJSON("t", #"{"after":"abort"}"#).int("version") == 1)
        let again = try ferryctl(["backup", ferryd.directory.appendingPathComponent("after.backup").path], broker: ferryd)
        #expect(again.status == 0, "\(again)")
        #expect(ferryd.isRunning)
    }

    // MARK: helpers

    /// Publishes about `megabytes` MiB to `topic`, in 512 KiB messages.
    private func fill(_ ferryd: Ferryd, topic: String, megabytes: Int) throws {
        let payload = Data((0..<(512 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        for _ in 0..<(megabytes * 2) {
            let response = try ferryd.publishHTTP(topic, body: payload, contentType: "application/octet-stream")
            guard response.status == 201 else { throw TestFailure("fill: \(response)") }
        }
    }

    private func awaitCount(_ values: Shared<[Int]>, atLeast count: Int) throws {
        try awaitTrue("\(count) confirmed publishes", timeout: 20) { values.value.count >= count }
    }

    /// Polls `condition` until it holds (external state: a process's threads, its descriptors).
    private func awaitTrue(_ what: String, timeout: TimeInterval, _ condition: () throws -> Bool) throws {
        let deadline = Deadline(seconds: timeout)
        while try !condition() {
            if deadline.hasPassed { throw TestFailure("not within \(timeout) s: \(what)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Entries of `/proc/<pid>/<folder>`: the process's threads (`task`) or descriptors (`fd`).
    private func count(_ pid: Int32, _ folder: String) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/\(folder)").count
    }

    /// Bytes the process has written with write-family calls (`wchar`): pipe and socket writes.
    private func writtenBytes(_ pid: Int32) throws -> Int {
        let io = try String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8)
        guard let line = io.split(separator: "\n").first(where: { $0.hasPrefix("wchar:") }),
            let value = Int(line.dropFirst("wchar:".count).trimmingCharacters(in: .whitespaces))
        else { throw TestFailure("no wchar in /proc/\(pid)/io") }
        return value
    }
}

/// On PostgreSQL, backups are PostgreSQL's: both forms answer 501 `not_supported`.
@Suite(.enabled(if: PostgresTestServer.isAvailable, Comment(rawValue: PostgresTestServer.unavailableReason)))
struct PostgresBackupRefusalTests {
    @Test func bothBackupFormsAnswerNotSupported() throws {
        try withCluster { a, _ in
            let streamed = try a.admin("GET", "/backup")
            #expect(streamed.status == 501 && streamed.errorCode == "not_supported", "\(streamed)")
            #expect(streamed.json?.object("error")?.string("message")?.contains("pg_dump") == true, "\(streamed)")
            let folder = try a.admin("POST", "/backup", json: jsonText(["path": a.directory.appendingPathComponent("b").path]))
            #expect(folder.status == 501 && folder.errorCode == "not_supported", "\(folder)")
            let file = a.directory.appendingPathComponent("pg.backup").path
            let run = try ferryctl(["backup", file], broker: a)
            #expect(run.status == 1 && run.stderr.contains("pg_basebackup"), "\(run)")
            #expect(!FileManager.default.fileExists(atPath: file) && !FileManager.default.fileExists(atPath: file + ".partial"))
        }
    }
}
