@testable import FerryPostgres
import FerryStore
import Testing

@Suite("PostgresNotice: the text of notices between brokers")
struct PostgresNoticeTests {
    @Test("session lines and topics read back as the changes they say, for the broker they name")
    func roundTrip() {
        let sessions = [
            PostgresNotice.wanted("alice", generation: 7, of: "n2"), PostgresNotice.wanted("bob", generation: 1, of: "n3"),
            PostgresNotice.line(.released("carol", generation: 4)), PostgresNotice.line(.deleted("dave:1@x")),
        ]
        let payloads = PostgresNotice.payloads(from: "n1", topics: ["b", "a.x/y"], sessions: sessions)
        #expect(payloads == ["n1\nw n2 7 alice\nw n3 1 bob\nr 4 carol\nd dave:1@x\nt a.x/y\nt b"])
        #expect(
            PostgresNotice.changes(in: payloads[0], for: "n2") == [
                .sessionWanted("alice", generation: 7), .sessionReleased("carol", generation: 4), .sessionDeleted("dave:1@x"),
                .topics(["a.x/y", "b"]),
            ])
        // A broker skips its own notices.
        #expect(PostgresNotice.changes(in: payloads[0], for: "n1").isEmpty)
        let configs = PostgresNotice.payloads(from: "n1", topics: ["a"], sessions: [PostgresNotice.topicConfigsChanged])
        #expect(PostgresNotice.changes(in: configs[0], for: "n2") == [.topicConfigs, .topics(["a"])])
    }

    @Test("past the size limit, topics become '*' and session lines go in as many notices as they need")
    func overflow() {
        let topics = Set((0..<100).map { "topic-\($0)" })
        let sessions = (0..<20).map { PostgresNotice.line(.deleted("client-\($0)")) }
        let payloads = PostgresNotice.payloads(from: "n1", topics: topics, sessions: sessions, limit: 120)
        #expect(payloads.allSatisfy { $0.utf8.count <= 120 && $0.hasPrefix("n1\n") })
        let changes = payloads.flatMap { PostgresNotice.changes(in: $0, for: "n2") }
        #expect(changes.filter { if case .sessionDeleted = $0 { true } else { false } } == (0..<20).map { .sessionDeleted("client-\($0)") })
        #expect(changes.last == .everything)
        #expect(PostgresNotice.payloads(from: "n1", topics: [], sessions: []).isEmpty)
    }

    @Test("a line this broker does not understand reads as 'anything may have changed'")
    func unknownLines() {
        #expect(PostgresNotice.changes(in: "n1\nt a\nz what", for: "n2") == [.everything])
        #expect(PostgresNotice.changes(in: "n1\nw n2 x alice", for: "n2") == [.everything])
        #expect(PostgresNotice.changes(in: "n1\nw n3 5 alice", for: "n2").isEmpty)
    }
}
