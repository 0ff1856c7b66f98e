import Crypto
import CryptoExtras
import FerryTestSupport
import Foundation
import Testing

/// Authentication and topic permissions (PROTOCOL.md, Transport and Sessions), against a real
/// `ferryd` with `FERRY_JWT_SECRET` (or a public key) and the admin token set.
@Suite("Authentication and ACL")
struct AuthTests {
    static let environment = ["FERRY_JWT_SECRET": Token.secret, "FERRY_ADMIN_TOKEN": testAdminToken]

    /// Tokens a broker with `Token.secret` must refuse, by what is wrong with them.
    static let badTokens: [(String, String)] = [
        ("garbage", "not-a-jwt"),
        ("expired", Token.hs256(Token.claims(sub: "alice", ttl: -10))),
        ("no exp", Token.hs256(Token.claims(sub: "alice", ttl: nil))),
        ("not yet valid", Token.hs256(Token.claims(sub: "alice", notBefore: 120))),
        ("wrong secret", Token.hs256(Token.claims(sub: "alice"), secret: "another-secret-of-at-least-32-bytes!!")),
        ("bad signature", Token.tampered(Token.client("alice"))),
        ("alg none", Token.unsigned(Token.claims(sub: "alice"))),
        ("alg none, signature kept", Token.unsigned(Token.claims(sub: "alice")) + "c2ln"),
        ("bad ferry claim", Token.client("alice", pub: ["orders.>.x"])),
        ("the admin token's neighbour", testAdminToken + "x"),
    ]

    /// An upgrade request answered without switching: the status and the body.
    static func upgrade(_ ferryd: Ferryd, path: String = "/v1/ws", headers: [String: String] = [:]) throws -> HTTPResponse {
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        let upgradeHeaders = ["Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"]
        return try ferryd.request("GET", path, headers: upgradeHeaders.merging(headers) { $1 })
    }

    static func bearer(_ token: String) -> [String: String] { ["Authorization": "Bearer \(token)"] }

    // MARK: Entry points refuse what is not a valid token

    @Test func upgradeWithoutAValidTokenIsRefusedWith401() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let missing = try Self.upgrade(ferryd)
        #expect(missing.status == 401 && missing.errorCode == "unauthorized", "\(missing)")
        #expect(missing.headers["www-authenticate"] == "Bearer")
        #expect(try Self.upgrade(ferryd, headers: ["Authorization": "Basic YWxpY2U6cHc="]).status == 401)
        forEachCase(Self.badTokens) { (name, token) in
            let viaHeader = try Self.upgrade(ferryd, headers: Self.bearer(token))
            #expect(viaHeader.status == 401 && viaHeader.errorCode == "unauthorized", "\(name) in the header: \(viaHeader)")
            let viaQuery = try Self.upgrade(ferryd, path: "/v1/ws?token=\(token)")
            #expect(viaQuery.status == 401 && viaQuery.errorCode == "unauthorized", "\(name) in the query: \(viaQuery)")
        }
        // The broker is unharmed and a valid token still gets in.
        let ws = try ferryd.connect(headers: Self.bearer(Token.client("alice")))
        #expect(try ws.hello(clientID: "alice").string("client_id") == "alice")
    }

    @Test func validTokenInTheHeaderOrTheQueryUpgrades() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let viaHeader = try ferryd.connect(headers: Self.bearer(Token.client("alice")))
        #expect(try viaHeader.hello(clientID: "alice").string("client_id") == "alice")
        viaHeader.close()
        let viaQuery = try ferryd.connect(path: "/v1/ws?x=1&token=\(Token.client("bob"))")
        #expect(try viaQuery.hello(clientID: "bob").string("client_id") == "bob")
        // An exp millennia away is valid, not an overflow.
        var farFuture = Token.claims(sub: "carol")
        farFuture["exp"] = 1_000_000_000_000_000
        let lasting = try ferryd.connect(headers: Self.bearer(Token.hs256(farFuture)))
        #expect(try lasting.hello(clientID: "carol").string("client_id") == "carol")
    }

    @Test func httpPublishAndReadsRefuseMissingAndBadTokens() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let good = Self.bearer(Token.client("alice"))
        try #require(ferryd.publishHTTP("orders", body: Data("1".utf8), headers: good).status == 201)
        let batch = Data(#"{"messages":[{"topic":"orders","data":2}]}"#.utf8)
        let requests: [(String, (([String: String]) throws -> HTTPResponse))] = [
            ("POST /v1/topics/orders/messages", { try ferryd.publishHTTP("orders", body: Data("1".utf8), headers: $0) }),
            ("POST /v1/publish", { try ferryd.request("POST", "/v1/publish", headers: $0.merging(["Content-Type": "application/json"]) { $1 }, body: batch) }),
            ("GET /v1/topics/orders/messages", { try ferryd.request("GET", "/v1/topics/orders/messages", headers: $0) }),
            ("GET /v1/topics/orders", { try ferryd.request("GET", "/v1/topics/orders", headers: $0) }),
        ]
        for (route, send) in requests {
            let missing = try send([:])
            #expect(missing.status == 401 && missing.errorCode == "unauthorized", "\(route) without a token: \(missing)")
            #expect(missing.headers["www-authenticate"] == "Bearer", "\(route)")
            for (name, token) in Self.badTokens {
                let refused = try send(Self.bearer(token))
                #expect(refused.status == 401 && refused.errorCode == "unauthorized", "\(route) with \(name): \(refused)")
            }
            let accepted = try send(good)
            #expect(accepted.status == 200 || accepted.status == 201, "\(route) with a valid token: \(accepted)")
        }
        // Two accepted publishes on top of the first: none of the refused ones was stored.
        let info = try ferryd.request("GET", "/v1/topics/orders", headers: good)
        #expect(info.json?.int("head") == 3, "\(info)")
        // A token in the query works for HTTP too.
        #expect(try ferryd.get("/v1/topics/orders?token=\(Token.client("alice"))").status == 200)
    }

    @Test func adminAPIRefusesAWrongAdminTokenAndClientTokens() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        #expect(try ferryd.admin("GET", "/stats", token: nil).status == 401)
        #expect(try ferryd.admin("GET", "/stats", token: "wrong").status == 401)
        #expect(try ferryd.admin("GET", "/stats", token: testAdminToken + "x").status == 401)
        #expect(try ferryd.admin("GET", "/stats", token: String(testAdminToken.dropLast())).status == 401)
        #expect(try ferryd.admin("GET", "/stats", token: Token.client("alice")).status == 401)
        #expect(try ferryd.admin("GET", "/stats").status == 200)
    }

    // MARK: The operator

    @Test func adminTokenIsTheOperatorOnTheWebSocketAndOverHTTP() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        // A client whose token allows one topic has a durable session the operator may look at.
        let restricted = try ferryd.connect(headers: Self.bearer(Token.client("kitchen", pub: ["orders"], subTopics: ["orders"])))
        try restricted.hello(clientID: "kitchen")
        try restricted.publish("orders", data: #"{"n":1}"#)

        for path in ["/v1/ws", "/v1/ws?token=\(testAdminToken)"] {
            let headers = path.contains("token=") ? [:] : Self.bearer(testAdminToken)
            let console = try ferryd.connect(path: path, headers: headers)
            try console.hello(clientID: "console-\(path.count)")
            let subscribed = try console.subscribe("orders", from: "earliest")
            #expect(subscribed.int("head") == 1)
            #expect(try console.collectMessages(count: 1).versions == [1])
            try console.subscribe("anything.else", from: "latest")
            try console.publish("anything.other", data: "1")
            console.close()
        }
        // Any client id: the operator may take over a client's session.
        let operatorSession = try ferryd.connect(headers: Self.bearer(testAdminToken))
        #expect(try operatorSession.hello(clientID: "kitchen").bool("resumed") == true)
        #expect(restricted.waitForClose() == 4009)

        #expect(try ferryd.publishHTTP("ops", body: Data("1".utf8), headers: Self.bearer(testAdminToken)).status == 201)
        #expect(try ferryd.request("GET", "/v1/topics/ops/messages", headers: Self.bearer(testAdminToken)).json?.objects("messages")?.count == 1)
    }

    // MARK: Permissions from the token

    @Test func tokenPermissionsAllowAndDenyWithPatterns() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let token = Token.client("sensor-1", pub: ["sensors.*.temp"], subTopics: ["commands.>", "news"])
        let ws = try ferryd.connect(headers: Self.bearer(token))
        try ws.hello(clientID: "sensor-1")

        for topic in ["commands.reboot", "commands.a.b", "news"] {
            try ws.subscribe(topic, from: "latest")
        }
        // Confirmed after its commit, which holds the subscriptions' topics submitted before it.
        try ws.publish("sensors.1.temp", data: "20", id: 1)
        for topic in ["sensors.1.humidity", "sensors.temp", "sensors.1.temp.x", "news"] {
            try ws.sendText(TestWebSocket.publishFrame(topic, data: "1", id: 2))
            try ws.expectError("forbidden", id: 2)
        }
        for topic in ["commands", "newsroom", "sensors.1.temp"] {
            try ws.sendJSON(["op": "subscribe", "topic": topic, "id": 9])
            try ws.expectError("forbidden", id: 9)
        }
        try ws.pingPong()

        // What was refused changed nothing: one topic, one message, three subscriptions.
        let topics = try #require(ferryd.admin("GET", "/topics").json?.objects("topics"))
        #expect(topics.compactMap { $0.string("topic") }.sorted() == ["commands.a.b", "commands.reboot", "news", "sensors.1.temp"])
        #expect(topics.first { $0.string("topic") == "sensors.1.temp" }?.int("head") == 1)
        #expect(topics.allSatisfy { $0.string("topic") == "sensors.1.temp" || $0.int("head") == 0 })
        let client = try #require(ferryd.admin("GET", "/clients/sensor-1").json)
        #expect(client.objects("subscriptions")?.compactMap { $0.string("topic") }.sorted() == ["commands.a.b", "commands.reboot", "news"])
    }

    @Test func httpPublishAndReadsFollowTokenPermissions() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let writer = Self.bearer(Token.client("writer", pub: ["orders.*"], subTopics: []))
        let reader = Self.bearer(Token.client("reader", pub: [], subTopics: ["orders.>"]))
        #expect(try ferryd.publishHTTP("orders.eu", body: Data("1".utf8), headers: writer).status == 201)
        let denied = try ferryd.publishHTTP("payments.eu", body: Data("1".utf8), headers: writer)
        #expect(denied.status == 403 && denied.errorCode == "forbidden", "\(denied)")
        #expect(try ferryd.publishHTTP("orders.eu", body: Data("1".utf8), headers: reader).status == 403)

        // A batch with one topic it may not publish to stores nothing.
        let mixed = Data(#"{"messages":[{"topic":"orders.eu","data":2},{"topic":"payments.eu","data":3}]}"#.utf8)
        let batch = try ferryd.request("POST", "/v1/publish", headers: writer.merging(["Content-Type": "application/json"]) { $1 }, body: mixed)
        #expect(batch.status == 403 && batch.errorCode == "forbidden", "\(batch)")

        #expect(try ferryd.request("GET", "/v1/topics/orders.eu", headers: reader).json?.int("head") == 1)
        #expect(try ferryd.request("GET", "/v1/topics/orders.eu/messages", headers: reader).json?.objects("messages")?.count == 1)
        #expect(try ferryd.request("GET", "/v1/topics/orders.eu", headers: writer).status == 403)
        #expect(try ferryd.request("GET", "/v1/topics/orders.eu/messages", headers: writer).status == 403)
        let operatorView = Self.bearer(testAdminToken)
        #expect(try ferryd.request("GET", "/v1/topics/payments.eu", headers: operatorView).status == 404)
    }

    // MARK: Permissions from the ACL file

    @Test func aclFileGivesPermissionsToTokensWithoutAFerryClaim() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-acl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let acl = folder.appendingPathComponent("acl.json")
        try Data(
            #"""
            {"rules": [
              {"client": "sensor-*", "publish": ["sensors.>"], "subscribe": ["commands.*"]},
              {"client": "*", "subscribe": ["public"]}
            ]}
            """#.utf8
        ).write(to: acl)
        let ferryd = try Ferryd(environment: Self.environment.merging(["FERRY_ACL": acl.path]) { $1 })

        let sensor = try ferryd.connect(headers: Self.bearer(Token.client("sensor-7")))
        try sensor.hello(clientID: "sensor-7")
        try sensor.publish("sensors.7.temp", data: "21")
        try sensor.subscribe("commands.sensor-7")
        try sensor.subscribe("public")
        try sensor.sendText(TestWebSocket.publishFrame("commands.x", data: "1", id: 1))
        try sensor.expectError("forbidden", id: 1)

        let stranger = try ferryd.connect(headers: Self.bearer(Token.client("stranger")))
        try stranger.hello(clientID: "stranger")
        try stranger.subscribe("public")
        try stranger.sendText(TestWebSocket.publishFrame("sensors.7.temp", data: "1", id: 2))
        try stranger.expectError("forbidden", id: 2)
        try stranger.sendJSON(["op": "subscribe", "topic": "commands.x", "id": 3])
        try stranger.expectError("forbidden", id: 3)

        // A token's own ferry claim is what it may do, in place of the file's rules.
        let claimed = try ferryd.connect(headers: Self.bearer(Token.client("sensor-8", pub: ["other"], subTopics: [])))
        try claimed.hello(clientID: "sensor-8")
        try claimed.publish("other", data: "1")
        try claimed.sendText(TestWebSocket.publishFrame("sensors.8.temp", data: "1", id: 4))
        try claimed.expectError("forbidden", id: 4)
        #expect(try ferryd.request("GET", "/v1/topics/sensors.7.temp", headers: Self.bearer(testAdminToken)).json?.int("head") == 1)
    }

    @Test func settingsThatCannotWorkStopTheBrokerAtStart() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-acl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let acl = folder.appendingPathComponent("acl.json")
        try Data(#"{"rules":[{"client":"a","publish":["x"]}]}"#.utf8).write(to: acl)
        let badACL = folder.appendingPathComponent("bad-acl.json")
        try Data(#"{"rules":[{"client":"a","publish":["x.>.y"]}]}"#.utf8).write(to: badACL)
        // Each with the reason ferryd gives.
        let cases: [([String: String], String)] = [
            (["FERRY_ACL": acl.path], "an ACL file needs authentication"),
            (["FERRY_ACL": badACL.path, "FERRY_JWT_SECRET": Token.secret], "ACL rule 1 (a): invalid topic pattern"),
            (["FERRY_JWT_SECRET": "short"], "at least 32 bytes"),
            (["FERRY_JWT_PUBLIC_KEY": acl.path], "neither an RSA nor a P-256 public key"),
            (["FERRY_JWT_SECRET": Token.secret, "FERRY_JWT_PUBLIC_KEY": acl.path], "set one of them, not both"),
            (["FERRY_TLS_CERT": acl.path], "set both or neither"),
        ]
        forEachCase(cases) { (environment, reason) in
            let refused = #expect(throws: TestFailure.self, "\(environment)") { _ = try Ferryd(environment: environment) }
            #expect(refused?.description.contains(reason) == true, "\(environment): \(String(describing: refused))")
        }
    }

    // MARK: Sessions belong to the token's subject

    @Test func anotherSubjectCannotTakeADurableSessionByIDOrByResumeToken() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let bob = try ferryd.connect(headers: Self.bearer(Token.client("bob")))
        let bobWelcome = try bob.hello(clientID: "bob")
        let bobResumeToken = try #require(bobWelcome.string("resume_token"))
        try bob.subscribe("inbox.bob", from: "latest")
        bob.close()
        try ferryd.awaitDisconnected("bob")

        let alice = try ferryd.connect(headers: Self.bearer(Token.client("alice")))
        try alice.sendJSON(["op": "hello", "client_id": "bob"])
        try alice.expectError("forbidden")
        try alice.sendJSON(["op": "hello", "resume_token": bobResumeToken])
        try alice.expectError("forbidden")
        try alice.sendJSON(["op": "hello", "client_id": "alice", "resume_token": bobResumeToken])
        try alice.expectError("session_conflict")
        // A token without sub may only be ephemeral.
        let nobody = try ferryd.connect(headers: Self.bearer(Token.client(nil)))
        try nobody.sendJSON(["op": "hello", "resume_token": bobResumeToken])
        try nobody.expectError("forbidden")
        #expect(try nobody.hello().isNull("client_id"))

        // Bob's session is untouched, and his own token resumes it.
        let detail = try #require(ferryd.admin("GET", "/clients/bob").json)
        #expect(detail.bool("connected") == false && detail.objects("subscriptions")?.count == 1)
        let again = try ferryd.connect(headers: Self.bearer(Token.client("bob")))
        let resumed = try again.hello(resumeToken: bobResumeToken)
        #expect(resumed.bool("resumed") == true && resumed.objects("subscriptions")?.count == 1)
    }

    // MARK: Expiry

    @Test func aConnectionIsClosedWith4001WhenItsTokenExpires() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let ws = try ferryd.connect(headers: Self.bearer(Token.hs256(Token.claims(sub: "short", ttl: 3))))
        try ws.hello(clientID: "short")
        try ws.subscribe("t", from: "latest")
        try ws.expectError("unauthorized", timeout: 10)
        #expect(ws.waitForClose(timeout: 5) == 4001)
        // The session stays, for a connection with a fresh token.
        let fresh = try ferryd.connect(headers: Self.bearer(Token.client("short")))
        #expect(try fresh.hello(clientID: "short").objects("subscriptions")?.count == 1)
    }

    // MARK: ferryctl

    @Test func ferryctlMintsTokensThatPubAndTailPresent() throws {
        let ferryd = try Ferryd(environment: Self.environment)
        let minted = try ferryctl(
            ["token", "--secret", Token.secret, "--sub", "alice", "--pub", "orders.*", "--sub-topics", "orders.>", "--ttl", "60"])
        try #require(minted.status == 0, "\(minted)")
        let token = minted.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let ws = try ferryd.connect(headers: Self.bearer(token))
        try ws.hello(clientID: "alice")
        try ws.publish("orders.eu", data: "1")
        try ws.sendText(TestWebSocket.publishFrame("payments", data: "1", id: 1))
        try ws.expectError("forbidden", id: 1)

        let published = try ferryctl(["pub", "orders.us", "2", "--token", token], broker: ferryd)
        #expect(published.status == 0 && published.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(published)")
        // A refused token fails at once with exit 4, where the client library would retry the upgrade.
        for command in [["pub", "orders.us", "3"], ["tail", "orders.us"]] {
            let refused = try ferryctl(command + ["--token", "not-a-token"], broker: ferryd, timeout: 20)
            #expect(refused.status == 4 && refused.stderr.contains("unauthorized"), "\(refused)")
        }
        #expect(try ferryctl(["token", "--sub", "alice"]).status == 2)
    }

    // MARK: Public keys

    @Test func es256AndRS256PublicKeysVerifyTheirTokensOnly() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }

        let ecdsa = P256.Signing.PrivateKey()
        let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let keys: [(String, String, (JSON) throws -> String, (JSON) throws -> String)] = [
            (
                "ES256", ecdsa.publicKey.pemRepresentation, { try Token.es256($0, key: ecdsa) },
                { try Token.es256($0, key: P256.Signing.PrivateKey()) }
            ),
            (
                "RS256", rsa.publicKey.pemRepresentation, { try Token.rs256($0, key: rsa) },
                { try Token.rs256($0, key: try _RSA.Signing.PrivateKey(keySize: .bits2048)) }
            ),
        ]
        for (name, pem, sign, signWithAnotherKey) in keys {
            let file = folder.appendingPathComponent("\(name).pem")
            try Data(pem.utf8).write(to: file)
            let ferryd = try Ferryd(environment: ["FERRY_JWT_PUBLIC_KEY": file.path])
            let claims = Token.claims(sub: "alice")
            let ws = try ferryd.connect(headers: Self.bearer(try sign(claims)))
            #expect(try ws.hello(clientID: "alice").string("client_id") == "alice", "\(name)")
            let refused: [(String, String)] = [
                ("another key", try signWithAnotherKey(claims)),
                ("HS256 with the public key as its secret", Token.hs256(claims, secret: pem)),
                ("alg none", Token.unsigned(claims)),
                ("expired", try sign(Token.claims(sub: "alice", ttl: -10))),
                ("bad signature", Token.tampered(try sign(claims))),
            ]
            for (what, token) in refused {
                #expect(try Self.upgrade(ferryd, headers: Self.bearer(token)).status == 401, "\(name): \(what)")
                #expect(try ferryd.publishHTTP("t", body: Data("1".utf8), headers: Self.bearer(token)).status == 401, "\(name): \(what)")
            }
        }
    }
}
