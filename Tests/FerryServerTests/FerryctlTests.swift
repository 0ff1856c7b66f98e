import FerryStore
import FerryTestSupport
import Foundation
import Testing

/// `ferryctl` as operators run it: the built binary against a real `ferryd`.
@Suite struct FerryctlTests {
    // MARK: status and errors

    @Test func statusPrintsATableAndJSON() throws {
        let ferryd = try Ferryd.withAdmin()
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: 3)

        let table = try ferryctl(["status", "--interval", "0"], broker: ferryd)
        #expect(table.status == 0, "\(table)")
        for line in ["version      0.1.0", "sync         full", "connections  1", "topics       1", "sessions     1 durable", "(3 since start)"] {
            #expect(table.stdout.contains(line), "no '\(line)' in \(table)")
        }

        let json = try ferryctl(["status", "--json", "--interval", "0.1"], broker: ferryd)
        #expect(json.status == 0, "\(json)")
        let stats = try #require(json.json?.object("stats"), "\(json)")
        #expect(stats.int("published") == 3)
        #expect(stats.int("topics") == 1)
        #expect(stats.string("sync") == "full")
        #expect((stats.int("map_size") ?? 0) > 0)
        #expect(json.json?.object("rates")?["publish_per_second"] is NSNumber, "\(json)")
    }

    @Test func wrongTokenIsExitFourAndAdminOffToo() throws {
        let ferryd = try Ferryd.withAdmin()
        for token in ["wrong", nil] {
            let run = try ferryctl(["topics", "list"], broker: ferryd, token: token)
            #expect(run.status == 4, "\(run)")
            #expect(run.stderr.hasPrefix("ferryctl: unauthorized"), "\(run)")
            #expect(run.stdout.isEmpty)
        }
        let off = try Ferryd()
        let run = try ferryctl(["status"], broker: off)
        #expect(run.status == 4, "\(run)")
        #expect(run.stderr.hasPrefix("ferryctl: forbidden"), "\(run)")
    }

    @Test func brokerDownIsOneLineAndExitOne() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.kill()
        for arguments in [["status"], ["topics", "list", "--json"], ["clients", "show", "x"], ["pub", "t", "1"], ["tail", "t"]] {
            let run = try ferryctl(arguments, broker: ferryd)
            #expect(run.status == 1, "\(run)")
            #expect(run.stderr == "ferryctl: cannot reach the broker at http://127.0.0.1:\(ferryd.port): connection refused\n", "\(run)")
        }
    }

    @Test func usageErrorsAreExitTwo() throws {
        let ferryd = try Ferryd.withAdmin()
        for arguments in [["topics", "trim", "t"], ["clients", "rewind", "c", "--topic", "t"], ["no-such-command"], ["status", "--url", "ftp://x"]] {
            let run = try ferryctl(arguments, broker: ferryd)
            #expect(run.status == 2, "\(arguments): \(run)")
            #expect(!run.stderr.isEmpty)
        }
    }

    @Test func unknownNamesAreExitThree() throws {
        let ferryd = try Ferryd.withAdmin()
        for arguments in [
            ["topics", "show", "nope"], ["topics", "delete", "nope", "--yes"], ["topics", "trim", "nope", "--to", "1"],
            ["clients", "show", "nobody"], ["clients", "delete", "nobody"], ["clients", "rewind", "nobody", "--topic", "t", "--to", "0"],
        ] {
            let run = try ferryctl(arguments, broker: ferryd)
            #expect(run.status == 3, "\(arguments): \(run)")
            #expect(run.stderr.split(separator: "\n").count == 1, "\(run)")
        }
    }

    @Test func helpListsEveryCommand() throws {
        let run = try ferryctl(["--help"])
        #expect(run.status == 0, "\(run)")
        for command in ["status", "topics", "clients", "top", "pub", "tail", "backup", "restore", "verify"] {
            #expect(run.stdout.contains("  \(command) "), "no \(command) in \(run.stdout)")
        }
    }

    @Test func outputIsTableJSONOrOneObjectALineForEveryReadCommand() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("a", count: 1)
        try ferryd.publishNumbered("b", count: 2)
        // A listing: one line per item in jsonl; the API's body in json (as --json).
        let lines = try ferryctl(["topics", "list", "--output", "jsonl"], broker: ferryd)
        #expect(lines.status == 0, "\(lines)")
        let items = lines.stdout.split(separator: "\n").map { parseJSONObject(String($0)) }
        #expect(items.compactMap { $0?.string("topic") }.sorted() == ["a", "b"], "\(lines)")
        let json = try ferryctl(["topics", "list", "--output", "json"], broker: ferryd)
        #expect(json.json?.objects("topics")?.count == 2, "\(json)")
        #expect(json.stdout == (try ferryctl(["topics", "list", "--json"], broker: ferryd)).stdout)
        // One object: one line.
        let one = try ferryctl(["topics", "show", "b", "--output", "jsonl"], broker: ferryd)
        #expect(one.stdout.split(separator: "\n").count == 1 && parseJSONObject(one.stdout)?.int("head") == 2, "\(one)")
        let status = try ferryctl(["status", "--output", "jsonl"], broker: ferryd)
        #expect(status.stdout.split(separator: "\n").count == 1 && parseJSONObject(status.stdout) != nil, "\(status)")
        #expect(try ferryctl(["topics", "list", "--output", "yaml"], broker: ferryd).status == 2)
        #expect(try ferryctl(["topics", "list"], broker: ferryd).stdout.hasPrefix("TOPIC"))
    }

    @Test(arguments: ["bash", "zsh", "fish"])
    func completionScriptsNameTheCommandsAndTheirSubcommands(shell: String) throws {
        let run = try ferryctl(["--generate-completion-script", shell])
        #expect(run.status == 0, "\(run)")
        for word in ["topics", "clients", "tail", "config", "rewind"] {
            #expect(run.stdout.contains(word), "no \(word) in the \(shell) script")
        }
    }

    // MARK: topics

    @Test func topicsListShowAndDelete() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("a", count: 2)
        try ferryd.publishNumbered("b/c", count: 1)
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("a", from: "earliest")
        #expect(try ws.collectMessages(count: 2).versions == [1, 2])
        try ws.ack("a", 1)
        try ws.pingPong()

        let list = try ferryctl(["topics", "list"], broker: ferryd)
        #expect(list.status == 0, "\(list)")
        let lines = list.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines.first == ["TOPIC", "EPOCH", "FIRST", "HEAD", "MESSAGES", "BYTES", "SUBSCRIBERS", "CONNECTED", "LAG"])
        let rowA = try #require(lines.first { $0.first == "a" })
        #expect(rowA[2...4] == ["1", "2", "2"], "\(rowA)")
        #expect(rowA.suffix(3) == ["1", "1", "1"], "subscribers, connected, lag: \(rowA)")
        #expect(lines.contains { $0.first == "b/c" })

        let json = try ferryctl(["topics", "list", "--json"], broker: ferryd)
        let topics = try #require(json.json?.objects("topics"), "\(json)")
        #expect(topics.compactMap { $0.string("topic") } == ["a", "b/c"])
        #expect(topics.first?.int("lag") == 1)

        let shown = try ferryctl(["topics", "show", "a"], broker: ferryd)
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.stdout.contains("versions     1...2"), "\(shown)")
        #expect(shown.stdout.split(separator: "\n").contains { $0.split(separator: " ").prefix(4) == ["alice", "yes", "1", "1"] }, "\(shown)")
        let shownJSON = try #require(try ferryctl(["topics", "show", "b/c", "--json"], broker: ferryd).json)
        #expect(shownJSON.string("topic") == "b/c")
        #expect(shownJSON.objects("durable_subscriptions")?.isEmpty == true)

        let unconfirmed = try ferryctl(["topics", "delete", "a"], broker: ferryd)
        #expect(unconfirmed.status == 2, "no terminal to confirm on: \(unconfirmed)")
        #expect(try ferryd.topicInfo("a").int("head") == 2)
        let deleted = try ferryctl(["topics", "delete", "a", "--yes"], broker: ferryd)
        #expect(deleted.status == 0, "\(deleted)")
        #expect(deleted.stdout == "deleted topic a\n")
        #expect(try ws.expectOp("reset").string("topic") == "a")
        // Shown (empty) while its subscriber holds it, unknown once nothing does.
        try ws.sendJSON(["op": "unsubscribe", "topic": "a"])
        _ = try ws.expectOp("unsubscribed")
        #expect(try ferryctl(["topics", "show", "a"], broker: ferryd).status == 3)
    }

    @Test func trimRefusesToCutUnackedMessagesUnlessForced() throws {
        let ferryd = try Ferryd.withAdmin()
        let (alice, _) = try ferryd.session(clientID: "alice")
        let (bob, _) = try ferryd.session(clientID: "bob")
        for ws in [alice, bob] { try ws.subscribe("t", from: "earliest") }
        try ferryd.publishNumbered("t", count: 5)
        for ws in [alice, bob] { #expect(try ws.collectMessages(count: 5).versions == [1, 2, 3, 4, 5]) }
        try alice.ack("t", 2)
        try bob.ack("t", 5)
        for ws in [alice, bob] { try ws.pingPong() }

        let refused = try ferryctl(["topics", "trim", "t", "--to", "4"], broker: ferryd)
        #expect(refused.status == 1, "\(refused)")
        let loss = refused.stderr.split(separator: "\n").first { $0.hasPrefix("alice ") }?.split(separator: " ")
        #expect(loss == ["alice", "2", "versions", "3...4", "(2", "messages)"], "\(refused)")
        #expect(!refused.stderr.contains("bob"), "bob acked everything: \(refused)")
        #expect(refused.stderr.contains("--force"), "\(refused)")
        #expect(try ferryd.topicInfo("t").int("first") == 1, "a refused trim deletes nothing")

        let safe = try ferryctl(["topics", "trim", "t", "--to", "2"], broker: ferryd)
        #expect(safe.status == 0, "\(safe)")
        #expect(safe.stdout == "trimmed t: removed 2 messages, 3 left (first 3, head 5)\n", "\(safe)")

        let forced = try ferryctl(["topics", "trim", "t", "--to", "4", "--force", "--json"], broker: ferryd)
        #expect(forced.status == 0, "\(forced)")
        #expect(forced.json?.int("removed") == 2, "\(forced)")
        let info = try ferryd.topicInfo("t")
        #expect(info.int("first") == 5)
        #expect(info.int("messages") == 1)
        let read = try #require(try ferryd.get(Ferryd.topicPath("t") + "/messages").json?.objects("messages"))
        #expect(read.versions == [5])

        let aboveHead = try ferryctl(["topics", "trim", "t", "--to", "9"], broker: ferryd)
        #expect(aboveHead.status == 1, "\(aboveHead)")
        #expect(aboveHead.stderr.contains("above the head"), "\(aboveHead)")
    }

    @Test func trimmedVersionsReachADisconnectedSubscriberAsAGap() throws {
        let ferryd = try Ferryd.withAdmin()
        let ws = try alice(on: ferryd, published: 4, acked: 1)
        ws.close()
        try ferryd.awaitDisconnected("alice")
        #expect(try ferryctl(["topics", "trim", "t", "--to", "3", "--force"], broker: ferryd).status == 0)

        let (again, welcome) = try ferryd.session(clientID: "alice")
        #expect(welcome.bool("resumed") == true)
        let gap = try again.expectOp("gap")
        #expect(gap.int("from") == 2)
        #expect(gap.int("to") == 3)
        #expect(try again.collectMessages(count: 1).versions == [4])
    }

    // MARK: clients

    @Test func clientsListSearchesAndPages() throws {
        let ferryd = try Ferryd.withAdmin()
        let sockets = try ["sensor-1", "sensor-2", "sensor-3", "tablet"].map { try ferryd.session(clientID: $0).0 }
        defer { for socket in sockets { socket.close() } }
        let first = try ferryctl(["clients", "list", "--search", "SENSOR", "--limit", "2"], broker: ferryd)
        #expect(first.status == 0, "\(first)")
        let lines = first.stdout.split(separator: "\n")
        #expect(lines.dropFirst().map { $0.split(separator: " ").first } == ["sensor-1", "sensor-2", "2"], "\(first)")
        #expect(lines.last == "2 of 3; the next page: --after sensor-2", "\(first)")
        let last = try #require(
            try ferryctl(["clients", "list", "--search", "sensor", "--limit", "2", "--after", "sensor-2", "--json"], broker: ferryd).json)
        #expect(last.objects("clients")?.compactMap { $0.string("client_id") } == ["sensor-3"])
        #expect(last.int("total") == 3 && last["next"] == nil)
        let refused = try ferryctl(["clients", "list", "--limit", "0"], broker: ferryd)
        #expect(refused.status != 0 && refused.stderr.contains("limit must be"), "\(refused)")
    }

    @Test func clientsListShowRewindAndDelete() throws {
        let ferryd = try Ferryd.withAdmin()
        let ws = try alice(on: ferryd, published: 4, acked: 2)

        let list = try ferryctl(["clients", "list"], broker: ferryd)
        #expect(list.status == 0, "\(list)")
        #expect(list.stdout.split(separator: "\n").first?.split(separator: " ") == ["CLIENT", "CONNECTED", "SUBSCRIPTIONS", "LAST", "SEEN"])
        #expect(list.stdout.split(separator: "\n").dropFirst().first?.split(separator: " ").prefix(3) == ["alice", "yes", "1"], "\(list)")
        let listed = try #require(try ferryctl(["clients", "list", "--json"], broker: ferryd).json?.objects("clients"))
        #expect(listed.compactMap { $0.string("client_id") } == ["alice"])

        let shown = try ferryctl(["clients", "show", "alice"], broker: ferryd)
        #expect(shown.status == 0, "\(shown)")
        #expect(shown.stdout.contains("connected    yes"), "\(shown)")
        #expect(shown.stdout.contains("last resume  new session"), "\(shown)")
        let row = try #require(shown.stdout.split(separator: "\n").first { $0.hasPrefix("t ") }).split(separator: " ")
        #expect(row.prefix(4) == ["t", "2", "4", "2"], "topic, ack floor, head, lag: \(row)")
        #expect(row.count >= 6 && row[4] != "-", "an age for the oldest unacked: \(row)")
        let detail = try #require(try ferryctl(["clients", "show", "alice", "--json"], broker: ferryd).json)
        #expect(detail.object("last_resume")?.bool("resumed") == false)
        let subscription = try #require(detail.objects("subscriptions")?.first)
        #expect(subscription.int("lag") == 2)
        #expect(subscription.int("oldest_unacked_age_ms") != nil, "\(detail.text)")

        let whileConnected = try ferryctl(["clients", "rewind", "alice", "--topic", "t", "--to", "0"], broker: ferryd)
        #expect(whileConnected.status == 1, "\(whileConnected)")
        #expect(whileConnected.stderr.contains("is connected"), "\(whileConnected)")

        ws.close()
        try ferryd.awaitDisconnected("alice")
        let rewound = try ferryctl(["clients", "rewind", "alice", "--topic", "t", "--to", "0"], broker: ferryd)
        #expect(rewound.status == 0, "\(rewound)")
        #expect(rewound.stdout == "rewound alice on t: ack floor 0, 4 to deliver\n", "\(rewound)")
        let aboveHead = try ferryctl(["clients", "rewind", "alice", "--topic", "t", "--to", "5"], broker: ferryd)
        #expect(aboveHead.status == 1, "\(aboveHead)")
        #expect(try ferryctl(["clients", "rewind", "alice", "--topic", "other", "--to", "0"], broker: ferryd).status == 3)

        let (again, welcome) = try ferryd.session(clientID: "alice")
        #expect(welcome.objects("subscriptions")?.first?.int("ack_floor") == 0)
        #expect(try again.collectMessages(count: 4).versions == [1, 2, 3, 4], "everything after the rewound floor again")
        let resumed = try #require(try ferryctl(["clients", "show", "alice", "--json"], broker: ferryd).json?.object("last_resume"))
        #expect(resumed.bool("resumed") == true)
        #expect(resumed.int("subscriptions") == 1)

        let deleted = try ferryctl(["clients", "delete", "alice"], broker: ferryd)
        #expect(deleted.status == 0, "\(deleted)")
        #expect(deleted.stdout == "deleted client alice\n")
        #expect(again.waitForClose() == 4010)
        #expect(try ferryctl(["clients", "show", "alice"], broker: ferryd).status == 3)
    }

    // MARK: top

    @Test func topPrintsOneSnapshotWithoutATerminal() throws {
        let ferryd = try Ferryd.withAdmin()
        let ws = try alice(on: ferryd, published: 3, acked: 1)

        // Not --once: standard output is a file, so one snapshot and exit.
        let text = try ferryctl(["top", "--interval", "0.2"], broker: ferryd)
        #expect(text.status == 0, "\(text)")
        #expect(!text.stdout.contains("\u{1B}["), "no screen control codes off a terminal")
        #expect(text.stdout.hasPrefix("ferry 0.1.0 at http://127.0.0.1:\(ferryd.port)"), "\(text)")
        let row = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("t ") }).split(separator: " ")
        #expect(row == ["t", "3", "0.0/s", "1", "1", "2"], "topic, head, rate, subscribers, connected, lag: \(row)")

        let json = try ferryctl(["top", "--once", "--json", "--interval", "0.2"], broker: ferryd)
        let topic = try #require(json.json?.objects("topics")?.first, "\(json)")
        #expect(topic.string("topic") == "t")
        #expect(topic.int("lag") == 2)
        #expect(json.json?.object("stats")?.int("sessions") == 1)
        try ws.pingPong()  // connected throughout
    }

    // MARK: pub and tail

    @Test func pubAndTail() throws {
        let ferryd = try Ferryd.withAdmin()
        let one = try ferryctl(["pub", "t", #"{"n":1}"#], broker: ferryd)
        #expect(one.status == 0, "\(one)")
        #expect(one.stdout == "1\n")
        let lines = try ferryctl(["pub", "t", "-"], broker: ferryd, input: "{\"n\":2}\nplain text\n")
        #expect(lines.stdout == "2\n3\n", "\(lines)")

        let messages = try tail(["t", "--from", "1"], on: ferryd, lines: 2)
        #expect(messages.versions == [2, 3])
        #expect(messages.first?.object("data")?.int("n") == 2)
        #expect(messages.last?.string("data_b64") == Data("plain text".utf8).base64EncodedString())
    }

    @Test func tailFollowsAPatternAndClientsShowListsIt() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("logs.a", count: 1)
        let printed = try tail(["logs.*", "--client", "tailer"], on: ferryd, lines: 2) {
            try ferryd.awaitClient("tailer", "subscribed to logs.*") { $0?.objects("patterns")?.count == 1 }
            // A new topic from its first version; an existing one from new messages only.
            try ferryd.publishNumbered("logs.b", count: 1)
            try ferryd.publishNumbered("logs.a", count: 1, startingAt: 2)
        }
        #expect(Set(printed.map { "\($0.string("topic") ?? "")#\($0.int("version") ?? -1)" }) == ["logs.b#1", "logs.a#2"], "\(printed)")
        try ferryd.awaitDisconnected("tailer")
        let shown = try ferryctl(["clients", "show", "tailer"], broker: ferryd)
        #expect(shown.stdout.contains("pattern      logs.*: 2 topic(s)"), "\(shown)")
        let row = try #require(shown.stdout.split(separator: "\n").first { $0.hasPrefix("logs.b ") }).split(separator: " ")
        #expect(row.last == "logs.*", "\(row)")
        let refused = try ferryctl(["tail", "logs.*", "--from", "3"], broker: ferryd)
        #expect(refused.status == 2 && refused.stderr.contains("--from"), "\(refused)")
    }

    /// Runs `ferryctl tail` with `arguments`, runs `meanwhile`, and returns the first `lines` JSON lines it prints.
    private func tail(_ arguments: [String], on ferryd: Ferryd, lines count: Int, meanwhile: () throws -> Void = {}) throws -> [JSON] {
        let tail = try ferryctlProcess(["tail"] + arguments, broker: ferryd)
        let output = Pipe()
        tail.standardOutput = output
        tail.standardError = FileHandle.nullDevice
        try tail.run()
        defer { tail.terminate() }
        let received = Shared<[String]>([])
        let reader = BackgroundThread {
            var buffer = Data()
            while received.value.count < count {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { return }
                buffer += chunk
                // Whole lines only: a chunk may end inside one.
                let lines = String(decoding: buffer, as: UTF8.self).components(separatedBy: "\n").dropLast()
                received.update { $0 = Array(lines) }
            }
        }
        try meanwhile()
        #expect(reader.join(timeout: 20), "tail printed \(received.value)")
        return received.value.compactMap(parseJSONObject)
    }

    // MARK: backup and verify

    @Test func backupRestoresEveryMessageAndSession() throws {
        let ferryd = try Ferryd.withAdmin()
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: 3)
        #expect(try ferryd.publishHTTP("t", body: Data([1, 2, 3]), contentType: "application/octet-stream").status == 201)
        #expect(try ws.collectMessages(count: 4).count == 4)
        try ws.ack("t", 2)
        try ws.pingPong()

        let destination = ferryd.directory.appendingPathComponent("backup")
        let run = try ferryctl(["backup", "--on-broker", destination.path], broker: ferryd)
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.hasPrefix("backup written to \(destination.path) ("), "\(run)")
        #expect(run.stderr.isEmpty, "no progress bar off a terminal: \(run)")
        let again = try ferryctl(["backup", "--on-broker", destination.path, "--json"], broker: ferryd)
        #expect(again.status == 1, "not into a folder that holds a backup: \(again)")
        #expect(again.stderr.contains("not empty"), "\(again)")

        let verified = try ferryctl(["verify", "--data", destination.path])
        #expect(verified.status == 0, "\(verified)")

        let restored = try Ferryd(copyingDataFrom: destination)
        let original = try ferryd.get(Ferryd.topicPath("t") + "/messages")
        let copy = try restored.get(Ferryd.topicPath("t") + "/messages")
        #expect(copy.json?.objects("messages")?.versions == [1, 2, 3, 4])
        #expect(copy.text == original.text, "same messages, timestamps and epoch")
        let (resumed, welcome) = try restored.session(clientID: "alice")
        #expect(welcome.bool("resumed") == true)
        #expect(welcome.objects("subscriptions")?.first?.int("ack_floor") == 2, "the ack made just before the backup: \(welcome.text)")
        #expect(try resumed.collectMessages(count: 2).versions == [3, 4])
    }

    @Test func verifyPassesACleanFolderAndNamesEachFault() throws {
        let ferryd = try Ferryd.withAdmin()
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: 4)
        try ferryd.publishJSON("u", "1", headers: ["Idempotency-Key": "k-1"])
        #expect(try ws.collectMessages(count: 4).count == 4)
        try ws.ack("t", 4)
        try ws.pingPong()

        let whileRunning = try ferryctl(["verify", "--data", ferryd.dataDirectory.path])
        #expect(whileRunning.status == 0, "read-only beside a running broker: \(whileRunning)")
        #expect(whileRunning.stdout == "ok: \(ferryd.dataDirectory.path) is consistent\n")
        try ferryd.terminate()
        let clean = try ferryctl(["verify", "--data", ferryd.dataDirectory.path, "--json"])
        #expect(clean.status == 0, "\(clean)")
        #expect(clean.json?.bool("ok") == true)

        try corrupt(ferryd.dataDirectory.path, topic: "t")
        let faulty = try ferryctl(["verify", "--data", ferryd.dataDirectory.path])
        #expect(faulty.status == 1, "\(faulty)")
        for line in [
            "version_gap: t: versions 2...2 are missing",
            "version_out_of_range: t: message 9 is outside 1...4",
            "ack_floor_beyond_head: alice on t: ack floor 7 is above head 4",
        ] {
            #expect(faulty.stdout.contains(line), "no '\(line)' in \(faulty)")
        }
        #expect(faulty.stderr.hasPrefix("ferryctl: "), "\(faulty)")
        let kinds = try #require(try ferryctl(["verify", "--data", ferryd.dataDirectory.path, "--json"]).json?.objects("faults"))
        #expect(Set(kinds.compactMap { $0.string("kind") }) == ["version_gap", "version_out_of_range", "ack_floor_beyond_head", "count_mismatch"])

        let missing = try ferryctl(["verify", "--data", ferryd.directory.appendingPathComponent("nothing").path])
        #expect(missing.status == 1, "\(missing)")
        #expect(missing.stderr.contains("cannot check"), "\(missing)")
    }

    /// Client "alice" subscribed to "t" from the start, with `published` messages received and
    /// those up to `acked` acked (the broker has handled the ack).
    private func alice(on ferryd: Ferryd, published: Int, acked: Int) throws -> TestWebSocket {
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        try ferryd.publishNumbered("t", count: published)
        #expect(try ws.collectMessages(count: published).versions == Array(1...published))
        try ws.ack("t", acked)
        try ws.pingPong()
        return ws
    }

    /// Damages a stopped broker's data the way a bug would, through FerryStore's own layers: an
    /// ack floor above head, a message missing from the middle and one written past head.
    private func corrupt(_ path: String, topic: String) throws {
        let topicID: UInt64
        do {
            // One environment per process at a time: this store is closed before the raw one opens.
            let store = try LMDBMessageStore(configuration: LMDBStoreConfiguration(path: path))
            let record = try #require(try store.load().topics.first { $0.name == topic })
            topicID = record.id
            _ = try store.commit(
                [.putSubscription(SubscriptionRecord(clientID: "alice", topic: topic, epoch: record.epoch, ackFloor: 7, window: 16))],
                now: 0)
        }
        let environment = try LMDBEnvironment(path: path, options: LMDBOptions())
        let messages = try environment.openDatabase("messages")
        // Message keys are topic id + version, big-endian.
        func key(_ version: UInt64) -> [UInt8] {
            withUnsafeBytes(of: topicID.bigEndian, Array.init) + withUnsafeBytes(of: version.bigEndian, Array.init)
        }
        let removed = try environment.write { txn throws(LMDBError) in
            // Timestamp, kind (JSON), no headers, payload.
            try txn.put(messages, key(9), withUnsafeBytes(of: UInt64(1).bigEndian, Array.init) + [0, 0] + Array("9".utf8))
            return try txn.delete(messages, key(2))
        }
        #expect(removed)
    }
}
