import FerryCore
import FerryProtocol
import FerryStore
import Testing

@Suite("Topic patterns and permissions")
struct PermissionsTests {
    @Test("patterns match with NATS semantics: * is one token, > one or more trailing tokens", arguments: [
        ("orders", "orders", true),
        ("orders", "orders.eu", false),
        ("orders", "order", false),
        ("orders.*", "orders.eu", true),
        ("orders.*", "orders", false),
        ("orders.*", "orders.eu.1", false),
        ("*.created", "orders.created", true),
        ("*.created", "orders.deleted", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.b.d", false),
        ("chat.>", "chat.room", true),
        ("chat.>", "chat.room.7", true),
        ("chat.>", "chat", false),
        ("chat.>", "chatter.room", false),
        (">", "anything", true),
        (">", "a.b.c", true),
        ("*", "one", true),
        ("*", "one.two", false),
        ("*.>", "a.b", true),
        ("*.>", "a", false),
        ("news:eu/x", "news:eu/x", true),
    ])
    func matching(pattern: String, topic: String, expected: Bool) throws {
        let parsed = try #require(TopicPattern(pattern))
        #expect(parsed.matches(topic) == expected, "\(pattern) vs \(topic)")
    }

    @Test("wildcards inside a token, > before the end and empty patterns are refused", arguments: [
        "", "a.>.b", "orders*", "a.b>", ">.a", "*x.y",
    ])
    func invalidPatterns(pattern: String) {
        #expect(TopicPattern(pattern) == nil)
    }

    @Test("permissions from texts: nil when one pattern is bad")
    func permissionsFromTexts() throws {
        #expect(Permissions(publishing: ["a.*", "b.>"], subscribing: []) != nil)
        #expect(Permissions(publishing: ["a.*"], subscribing: ["b.>.c"]) == nil)
        let permissions = try #require(Permissions(publishing: ["orders.*"], subscribing: ["chat.>", "news"]))
        #expect(permissions.mayPublish("orders.eu") && !permissions.mayPublish("chat.x"))
        #expect(permissions.maySubscribe("news") && permissions.maySubscribe("chat.a.b") && !permissions.maySubscribe("orders.eu"))
    }

    @Test("a principal with a subject may use that client id only")
    func identity() {
        let alice = Principal(identity: .client("alice"), permissions: .all)
        #expect(alice.mayUse(clientID: "alice") && !alice.mayUse(clientID: "bob"))
        #expect(!Principal(identity: .client(nil), permissions: .all).mayUse(clientID: "alice"))
        #expect(Principal.unrestricted.mayUse(clientID: "anyone"))
    }
}

@Suite("Connection permissions")
struct ConnectionPermissionTests {
    static func restricted(_ subject: String?, expiresAt: UInt64? = nil) -> Principal {
        Principal(
            identity: .client(subject),
            permissions: Permissions(publishing: ["orders.*"], subscribing: ["chat.>"]) ?? .none, expiresAt: expiresAt)
    }

    @Test("a denied subscribe answers forbidden with its id and records nothing")
    func deniedSubscribe() async throws {
        let fixture = try BrokerFixture()
        let client = TestClient(fixture.broker, principal: Self.restricted("alice"))
        _ = try await client.hello("alice")
        client.send(#"{"op":"subscribe","id":7,"topic":"orders.eu","from":"earliest"}"#)
        let error = try await client.next(op: "error")
        #expect(error["code"] == "forbidden" && error["id"] == "7")
        client.send(#"{"op":"subscribe","id":8,"topic":"chat.room"}"#)
        #expect(try await client.next(op: "subscribed")["topic"] == "chat.room")
        #expect(try await fixture.broker.clientDetail("alice")?.subscriptions.map(\.topic) == ["chat.room"])
        #expect(try await fixture.broker.topicInfo("orders.eu") == nil)
        client.disconnect()
        await fixture.remove()
    }

    @Test("a denied publish answers forbidden with its id and stores nothing")
    func deniedPublish() async throws {
        let fixture = try BrokerFixture()
        let client = TestClient(fixture.broker, principal: Self.restricted(nil))
        _ = try await client.hello()
        client.send(#"{"op":"publish","id":3,"topic":"chat.room","data":1}"#)
        let error = try await client.next(op: "error")
        #expect(error["code"] == "forbidden" && error["id"] == "3")
        client.send(#"{"op":"publish","id":4,"topic":"orders.eu","data":1}"#)
        #expect(try await client.next(op: "published")["version"] == "1")
        #expect(try await fixture.broker.topicInfo("chat.room") == nil)
        #expect(try await fixture.broker.stats().published == 1)
        client.disconnect()
        await fixture.remove()
    }

    @Test("a hello for another client id, by id or by its resume token, is forbidden; ephemeral is allowed")
    func identityRule() async throws {
        let fixture = try BrokerFixture()
        let bob = TestClient(fixture.broker)
        let bobToken = try #require(try await bob.hello("bob")["resume_token"])
        bob.disconnect()

        let alice = TestClient(fixture.broker, principal: Self.restricted("alice"))
        alice.send(#"{"op":"hello","client_id":"bob"}"#)
        #expect(try await alice.next(op: "error")["code"] == "forbidden")
        alice.send(#"{"op":"hello","resume_token":"\#(bobToken)"}"#)
        #expect(try await alice.next(op: "error")["code"] == "forbidden")
        #expect(try await fixture.broker.clientDetail("bob")?.connected == false)
        #expect(try await alice.hello("alice")["client_id"] == "alice")
        alice.disconnect()

        let anonymous = TestClient(fixture.broker, principal: Self.restricted(nil))
        #expect(try await anonymous.hello()["resumed"] == "0")
        anonymous.disconnect()
        await fixture.remove()
    }

    @Test("after its principal expires, the next frame closes the connection with 4001")
    func expiry() async throws {
        let fixture = try BrokerFixture()
        let client = TestClient(fixture.broker, principal: Self.restricted("alice", expiresAt: fixture.clock.now + 1000))
        _ = try await client.hello("alice")
        fixture.clock.advance(by: 1000)
        client.send(#"{"op":"ping"}"#)
        #expect(try await client.next(op: "error")["code"] == "unauthorized")
        try await client.waitFor { _ in client.closedWith != nil }
        #expect(client.closedWith == .unauthorized)
        client.disconnect()
        await fixture.remove()
    }
}
