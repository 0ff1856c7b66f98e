@testable import FerryPostgres
import FerryProtocol
import FerryStore
import FerryTestSupport
import Foundation
import Synchronization
import Testing

@Suite("PostgresStoreConfiguration: URLs")
struct PostgresURLTests {
    @Test("a full URL parses, with percent escapes and an IPv6 host")
    func parses() throws {
        let full = try PostgresStoreConfiguration(url: "postgresql://fe%40rry:p%2Fss@db.example:6543/ferry%5Fprod")
        #expect((full.username, full.password, full.host, full.port, full.database) == ("fe@rry", "p/ss", "db.example", 6543, "ferry_prod"))
        let short = try PostgresStoreConfiguration(url: "postgres://ferry@127.0.0.1/ferry")
        #expect((short.password, short.port) == (nil, 5432))
        #expect(try PostgresStoreConfiguration(url: "postgres://ferry@[::1]:5433/f").host == "::1")
    }

    @Test(
        "a bad URL is refused, naming what is wrong and never the password",
        arguments: [
            ("mysql://ferry@h/db", "scheme"), ("postgres://h/db", "user"), ("postgres://ferry@/db", "host"),
            ("postgres://ferry:secret@h:0/db", "port"), ("postgres://ferry@h", "database"), ("postgres://ferry@h/a/b", "database"),
            ("postgres://ferry@h/db?sslmode=require", "query"), ("not a url", "URL"),
        ])
    func refuses(url: String, reason: String) throws {
        let error = #expect(throws: StoreError.self) { try PostgresStoreConfiguration(url: url) }
        let text = error.map(String.init(describing:)) ?? ""
        #expect(text.contains(reason), "\(text)")
        #expect(!text.contains("secret"))
    }
}

extension StoreChange {
    var isTopics: Bool {
        if case .topics = self { true } else { false }
    }
}

@Suite("PostgresMessageStore: several nodes on one database", .enabled(if: PostgresTestServer.isAvailable, Comment(rawValue: PostgresTestServer.unavailableReason)))
struct PostgresStoreTests {
    /// Runs `body` on `count` threads at once (the core calls the store from threads of its own) and waits for all.
    private func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) -> [String] {
        let errors = Mutex<[String]>([])
        let done = DispatchGroup()
        for index in 0..<count {
            done.enter()
            Thread {
                defer { done.leave() }
                do { try body(index) } catch { errors.withLock { $0.append("thread \(index): \(error)") } }
            }.start()
        }
        done.wait()
        return errors.withLock { $0 }
    }

    @Test("two nodes publishing to one topic at once produce one gapless sequence without duplicate versions")
    func concurrentPublishes() throws {
        try withFixture(.postgres) { fixture in
            let nodes = [try fixture.open(), try fixture.open()]
            let versions = Mutex<[[UInt64]]>([[], []])
            let errors = onThreads(2) { node in
                for batch in 0..<40 {
                    let operations = (0..<5).map { publishJSON("shared", "\(node)-\(batch)-\($0)") } + [publishJSON("own-\(node)", "x")]
                    let result = try nodes[node].commit(operations, now: t0 + UInt64(batch))
                    let got = result.outcomes.prefix(5).compactMap(\.version)
                    versions.withLock { $0[node] += got }
                }
            }
            #expect(errors.isEmpty, "\(errors)")
            let perNode = versions.withLock { $0 }
            // Each node's versions rise, and both together are exactly 1...400.
            for got in perNode { #expect(got == got.sorted()) }
            #expect((perNode[0] + perNode[1]).sorted() == Array(1...400))
            let reader = try fixture.open()
            #expect(try reader.storedVersions("shared") == Array(1...400))
            #expect(try reader.topic("shared")?.head == 400)
            #expect(try reader.verify().isEmpty)
        }
    }

    @Test("sweeps and session expiry run on one node at a time; another takes over when it is gone")
    func oneSweeperPerCluster() throws {
        try withFixture(.postgres) { fixture in
            var first: (any MessageStore)? = try fixture.open()
            let second = try fixture.open()
            // The first to sweep holds the lock.
            #expect(try first?.commit([.expireSessions(lastSeenBefore: 0)], now: t0).outcomes == [.expired([])])
            _ = try second.commit([.putSession(session("old", at: t0)), .putSession(session("new", at: t0 + 100))], now: t0)
            #expect(try second.commit([.expireSessions(lastSeenBefore: t0 + 50)], now: t0 + 200).outcomes == [.expired([])])
            #expect(try second.load().sessions.map(\.clientID) == ["new", "old"], "a node that does not sweep expired something")
            #expect(try first?.commit([.expireSessions(lastSeenBefore: t0 + 50)], now: t0 + 200).outcomes == [.expired(["old"])])
            // Gone: its connection closes, and the lock is free for the next to ask.
            first = nil
            _ = try second.commit([.putSession(session("older", at: t0))], now: t0)
            let deadline = Date().addingTimeInterval(10)
            var outcome: [CommitResult.Outcome] = []
            repeat {
                outcome = try second.commit([.expireSessions(lastSeenBefore: t0 + 50)], now: t0 + 300).outcomes
            } while outcome == [.expired([])] && Date() < deadline
            #expect(outcome == [.expired(["older"])])
        }
    }

    /// A holder that dies (its connections end) is covered with real brokers and SIGKILL in
    /// ClusterQueueGroupTests.
    @Test("one node serves a queue group at a time: another leases it once the holder releases it")
    func queueGroupLeases() throws {
        try withFixture(.postgres) { fixture in
            let first = try fixture.open()
            let second = try fixture.open()
            #expect(try first.leaseQueueGroup("g", of: "jobs") == true)
            #expect(try first.leaseQueueGroup("g", of: "jobs") == true, "the holder keeps it")
            #expect(try second.leaseQueueGroup("g", of: "jobs") == false)
            #expect(try second.leaseQueueGroup("other", of: "jobs") == true, "another group is another lease")
            try first.releaseQueueGroup("g", of: "jobs")
            #expect(try second.leaseQueueGroup("g", of: "jobs") == true)
            // A release by a node that does not hold it changes nothing.
            try first.releaseQueueGroup("g", of: "jobs")
            #expect(try first.leaseQueueGroup("g", of: "jobs") == false)
            try second.releaseQueueGroup("other", of: "jobs")
            #expect(try first.leaseQueueGroup("other", of: "jobs") == true)
        }
    }

    @Test("two nodes opening a fresh database at once both migrate it and share one secret")
    func concurrentMigration() throws {
        try withFixture(.postgres) { fixture in
            let configuration = try fixture.postgresConfiguration()
            let secrets = Mutex<[[UInt8]]>([])
            let errors = onThreads(4) { _ in
                let store = try PostgresMessageStore(configuration: configuration)
                let secret = try store.load().secret
                secrets.withLock { $0.append(secret) }
            }
            #expect(errors.isEmpty, "\(errors)")
            let all = secrets.withLock { $0 }
            #expect(all.count == 4)
            #expect(Set(all).count == 1)
            #expect(all.first?.count == 32)
            // Every migration, once each.
            #expect(
                try fixture.sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM ferry_schema")
                    == (1...PostgresSchema.migrations.count).map(String.init).joined(separator: ","))
        }
    }

    @Test("a msg_id published through one node is a duplicate through the other")
    func dedupAcrossNodes() throws {
        try withFixture(.postgres) { fixture in
            let (first, second) = (try fixture.open(), try fixture.open())
            #expect(try first.apply(publishJSON("t", "a", msgID: "m"), now: t0) == .published(version: 1, timestamp: t0, duplicate: false))
            #expect(try second.apply(publishJSON("t", "b", msgID: "m"), now: t0 + 5) == .published(version: 1, timestamp: t0, duplicate: true))
            #expect(try second.publish(publishJSON("t", "c"), now: t0 + 6) == 2)
            #expect(try first.apply(publishJSON("t", "d", msgID: "m"), now: t0 + 7) == .published(version: 1, timestamp: t0, duplicate: true))
        }
    }

    /// The next change in `changes` that `wanted` accepts, or nil after `seconds` (awaited, so the
    /// store's LISTEN task has the cooperative pool to run on).
    private func next(_ changes: AsyncStream<StoreChange>, within seconds: Double, _ wanted: @escaping @Sendable (StoreChange) -> Bool)
        async -> StoreChange?
    {
        await withTaskGroup(of: StoreChange?.self) { group in
            group.addTask {
                for await change in changes where wanted(change) { return change }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    @Test("a session has one owner: a claim creates it, says whom it replaced, and asks a live owner to let go")
    func claims() async throws {
        let fixture = try StoreFixture(.postgres, settings: StoreSettings())
        defer { fixture.remove() }
        let first = try fixture.open()
        var second: (any MessageStore)? = try fixture.open()
        let (changes, heard) = AsyncStream.makeStream(of: StoreChange.self)
        first.watch { heard.yield($0) }
        // A listener that (re)connects says "everything" first.
        #expect(await next(changes, within: 20) { $0 == .everything } != nil)
        let isSessionNotice: @Sendable (StoreChange) -> Bool = { $0 != .everything && !($0.isTopics) }
        let proposed = session("c")
        #expect(
            try first.claimSession(proposed)
                == SessionClaim(stored: StoredSession(record: proposed, subscriptions: []), generation: 1, handover: .storeIsNewest))
        // The same broker again: what it holds is newer than the store.
        #expect(try first.claimSession(session("c", at: t0 + 5)).handover == .memoryIsNewest)
        _ = try first.commit([.putSubscription(subscription("c", "t", floor: 4))], now: t0)
        // Another broker: the first is alive, so it is asked, and the claim waits for it.
        #expect(try second?.claimSession(session("c", at: t0 + 9)) == SessionClaim(stored: nil, generation: 3, handover: .ownerAsked))
        #expect(await next(changes, within: 20, isSessionNotice) == .sessionWanted("c", generation: 3))
        second?.announce(.released("c", generation: 3))
        second?.announce(.deleted("c"))
        #expect(await next(changes, within: 20, isSessionNotice) == .sessionReleased("c", generation: 3))
        #expect(await next(changes, within: 20, isSessionNotice) == .sessionDeleted("c"))
        let nodes = try first.nodes()
        #expect(nodes.count == 2)
        #expect(nodes.filter(\.isThisBroker).count == 1)
        // The second broker goes away: a claim of what it held is not asked of it, and reads the store.
        second = nil
        let deadline = ContinuousClock.now + .seconds(20)
        while try first.nodes().count > 1, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(try first.nodes().count == 1)
        let claim = try first.claimSession(session("c", at: t0 + 20))
        #expect(claim.handover == .storeIsNewest)
        #expect(claim.generation == 4)
        #expect(claim.stored == StoredSession(record: proposed, subscriptions: [subscription("c", "t", floor: 4)]))
    }

    @Test("a configuration change committed through one node is announced to the other, whose commits then enforce it")
    func topicConfigsReachTheOtherNode() async throws {
        let fixture = try StoreFixture(.postgres, settings: StoreSettings())
        defer { fixture.remove() }
        let first = try fixture.open()
        let second = try fixture.open()
        let (changes, heard) = AsyncStream.makeStream(of: StoreChange.self)
        second.watch { heard.yield($0) }
        #expect(await next(changes, within: 20) { $0 == .everything } != nil)
        // The second node's commits have read (and keep) the configuration: none yet.
        _ = try second.commit((1...3).map { publishJSON("orders.eu", "\($0)") }, now: t0)
        let pattern = try #require(TopicPattern("orders.*"))
        _ = try first.commit([.putTopicConfig(pattern, TopicConfig(maxMessages: .atMost(2)))], now: t0)
        #expect(await next(changes, within: 20) { $0 == .topicConfigs } == .topicConfigs)
        _ = try second.commit([publishJSON("orders.eu", "4")], now: t0)
        #expect(try second.storedVersions("orders.eu") == [3, 4])
        #expect(try second.topicConfigs().entries == [pattern: TopicConfig(maxMessages: .atMost(2))])
    }

    @Test("reading past the highest bigint returns nothing; backup points to PostgreSQL's tools; usage reports the database")
    func readsBackupAndUsage() throws {
        try withStore(.postgres) { store in
            try store.publish(publishJSON("t", "1"))
            let id = try #require(try store.topic("t")).id
            #expect(try store.messages(topicID: id, after: .max, limit: 10).isEmpty)
            #expect(try store.messages(topicID: .max, after: 0, limit: 10).isEmpty)
            let error = #expect(throws: StoreError.self) { _ = try store.backup(to: temporaryPath()) }
            #expect(String(describing: error).contains("pg_dump"))
            let usage = store.usage()
            #expect(usage.usedBytes > 0)
            #expect(usage.mapSize == 0)
            #expect(usage.syncOnCommit)
        }
    }

    @Test("verify names a gap, a count mismatch, an orphan subscription and a dedup entry past head")
    func verifyFaults() throws {
        try withFixture(.postgres) { fixture in
            let store = try fixture.open()
            _ = try store.commit((1...3).map { publishJSON("t", "\($0)") }, now: t0)
            let epoch = try #require(try store.topic("t")).epoch
            _ = try store.commit([.putSubscription(SubscriptionRecord(clientID: "ghost", topic: "t", epoch: epoch, ackFloor: 9, window: 1))], now: t0)
            try fixture.sql("DELETE FROM messages WHERE version = 2")
            try fixture.sql("INSERT INTO dedup SELECT id, 'm'::bytea, 7, \(t0) FROM topics WHERE name = 't'")
            let faults = try store.verify()
            #expect(
                faults.map(\.description) == [
                    "version_gap: t: versions 2...2 are missing",
                    "count_mismatch: t: the record says 3 messages of 3 bytes, the log holds 2 of 2",
                    "orphan_subscription: ghost on t: no session ghost",
                    "ack_floor_beyond_head: ghost on t: ack floor 9 is above head 3",
                    "dedup_mismatch: t: msg_id m names version 7, above head 3",
                ])
        }
    }

    @Test("a database with a newer schema is refused; an unreachable server is a clear error")
    func refusals() throws {
        try withFixture(.postgres) { fixture in
            _ = try fixture.open()
            try fixture.sql("INSERT INTO ferry_schema (version) VALUES (99)")
            let newer = #expect(throws: StoreError.self) { _ = try fixture.open() }
            #expect(String(describing: newer).contains("newer than this ferryd knows"))
        }
        var configuration = try PostgresStoreConfiguration(url: "postgres://ferry@127.0.0.1:1/ferry")
        configuration.idleConnections = 1
        let unreachable = #expect(throws: StoreError.self) { _ = try PostgresMessageStore(configuration: configuration) }
        #expect(String(describing: unreachable).contains("cannot connect to PostgreSQL at 127.0.0.1:1"))
    }
}

extension PostgresStoreTests {
    @Test("connections the server closed while idle (a restart, a failover) are replaced without a failed commit or read")
    func reconnects() throws {
        try withFixture(.postgres) { fixture in
            let store = try fixture.open()
            try store.publish(publishJSON("t", "1"))
            let killed = try fixture.sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            #expect(killed != "0")
            #expect(try store.publish(publishJSON("t", "2")) == 2)
            _ = try fixture.sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
            #expect(try store.storedVersions("t") == [1, 2])
        }
    }
}
