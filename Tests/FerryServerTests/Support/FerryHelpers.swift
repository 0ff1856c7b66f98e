import FerryTestSupport
import Foundation

extension Ferryd {
    /// A broker with the admin API on.
    static func withAdmin() throws -> Ferryd {
        try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
    }

    /// Waits until the admin API's view of `clientID` satisfies `condition`: a client's state
    /// shows only there.
    func awaitClient(_ clientID: String, timeout: TimeInterval = 10, _ what: String, _ condition: (JSON?) -> Bool) throws {
        let deadline = Deadline(seconds: timeout)
        while !condition(try admin("GET", "/clients/\(clientID)").json) {
            if deadline.hasPassed { throw TestFailure("\(clientID) not \(what) after \(timeout) s") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Waits until the admin API says `clientID` is disconnected: the broker notices a closed
    /// socket on its own schedule, and there is no event to await but its state.
    func awaitDisconnected(_ clientID: String, timeout: TimeInterval = 10) throws {
        try awaitClient(clientID, timeout: timeout, "disconnected") { $0?.bool("connected") == false }
    }

    func connect(path: String = "/v1/ws", headers: [String: String] = [:], answerPings: Bool = true) throws
        -> TestWebSocket
    {
        try TestWebSocket(port: port, path: path, headers: headers, answerPings: answerPings)
    }

    /// A new connection that has said `hello`, and its `welcome`.
    func session(clientID: String? = nil, resumeToken: String? = nil) throws -> (TestWebSocket, JSON) {
        let ws = try connect()
        let welcome = try ws.hello(clientID: clientID, resumeToken: resumeToken)
        return (ws, welcome)
    }
}

// MARK: Ferry frames

extension TestWebSocket {
    /// Sends `hello` and requires a `welcome`, which it returns.
    @discardableResult
    func hello(clientID: String? = nil, resumeToken: String? = nil) throws -> JSON {
        var frame: JSON = ["op": "hello"]
        frame["client_id"] = clientID
        frame["resume_token"] = resumeToken
        try sendJSON(frame)
        return try expectOp("welcome")
    }

    /// Sends `subscribe` and requires a `subscribed` for `topic`, which it returns.
    /// `from` is `"latest"`, `"earliest"`, `"stored"` or a version; nil leaves it out.
    @discardableResult
    func subscribe(_ topic: String, from: Any? = nil, window: Int? = nil, epoch: String? = nil, id: Int? = nil)
        throws -> JSON
    {
        var frame: JSON = ["op": "subscribe", "topic": topic]
        frame["from"] = from
        frame["window"] = window
        frame["epoch"] = epoch
        frame["id"] = id
        try sendJSON(frame)
        let subscribed = try expectOp("subscribed")
        guard subscribed.string("topic") == topic else {
            throw TestFailure("subscribed to another topic: \(subscribed.text)")
        }
        return subscribed
    }

    /// Sends `publish` with `data` given as JSON text (sent as is), requires `published`, returns it.
    @discardableResult
    func publish(_ topic: String, data: String, msgID: String? = nil, headers: [String: String]? = nil, id: Int? = nil)
        throws -> JSON
    {
        try sendText(Self.publishFrame(topic, data: data, msgID: msgID, headers: headers, id: id))
        return try expectOp("published")
    }

    /// A `publish` frame whose `data` is the given JSON text, byte for byte.
    static func publishFrame(
        _ topic: String, data: String, msgID: String? = nil, headers: [String: String]? = nil, id: Int? = nil
    ) -> String {
        var fields = [#""op":"publish""#, "\"topic\":\(jsonText(topic))"]
        if let id { fields.append("\"id\":\(id)") }
        if let msgID { fields.append("\"msg_id\":\(jsonText(msgID))") }
        if let headers { fields.append("\"headers\":\(jsonText(headers))") }
        fields.append("\"data\":\(data)")
        return "{" + fields.joined(separator: ",") + "}"
    }

    func ack(_ topic: String, _ version: Int) throws {
        try sendJSON(["op": "ack", "topic": topic, "version": version])
    }

    /// `{"op":"ping"}` answered by `pong` as the very next frame: the connection is open and every
    /// frame sent before has been handled (the broker handles a connection's frames in order).
    func pingPong(timeout: TimeInterval = 5) throws {
        try sendJSON(["op": "ping"])
        try expectOp("pong", timeout: timeout)
    }

    /// The next frame must be an `error` with `code` (and `id`, when given).
    @discardableResult
    func expectError(_ code: String, id: Int? = nil, timeout: TimeInterval = 5) throws -> JSON {
        let error = try expectOp("error", timeout: timeout)
        guard error.string("code") == code else { throw TestFailure("expected error \(code), got \(error.text)") }
        if let id, error.int("id") != id { throw TestFailure("error without id \(id): \(error.text)") }
        return error
    }
}

// MARK: A subscriber that must not notice anything

/// A subscriber on its own connection that must see every message published to its topic while a
/// test abuses other connections: `check()` publishes one message and requires exactly it, at once.
final class Canary {
    let topic = "canary"
    private let ferryd: Ferryd
    private let ws: TestWebSocket
    private(set) var published = 0

    init(_ ferryd: Ferryd) throws {
        self.ferryd = ferryd
        ws = try ferryd.connect()
        try ws.hello()
        try ws.subscribe(topic, from: "latest")
    }

    func check() throws {
        published += 1
        let reply = try ferryd.publishJSON(topic, "{\"canary\":\(published)}")
        guard reply.int("version") == published else { throw TestFailure("canary publish got \(reply.text)") }
        let messages = try ws.collectMessages(count: 1)
        guard messages.versions == [published], messages.first?.object("data")?.int("canary") == published else {
            throw TestFailure("canary expected version \(published), got \(messages.map(\.text))")
        }
        try ws.ack(topic, published)
    }
}
