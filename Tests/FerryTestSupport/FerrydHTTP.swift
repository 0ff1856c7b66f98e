import Foundation

/// The admin token that tests which use the admin API give the broker.
package let testAdminToken = "test-admin-token"

/// HTTP requests to a broker, for tests that publish, inspect topics or use the admin API.
extension Ferryd {
    package func request(_ method: String, _ path: String, headers: [String: String] = [:], body: Data = Data()) throws
        -> HTTPResponse
    {
        try HTTP.request(port: port, method: method, path: path, headers: headers, body: body)
    }

    package func get(_ path: String) throws -> HTTPResponse { try request("GET", path) }

    /// An admin API request with `token` as its bearer token (none when nil).
    package func admin(_ method: String, _ path: String, token: String? = testAdminToken, json: String? = nil) throws
        -> HTTPResponse
    {
        var headers: [String: String] = [:]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        if json != nil { headers["Content-Type"] = "application/json" }
        return try request(method, "/v1/admin" + path, headers: headers, body: Data((json ?? "").utf8))
    }

    /// `POST /v1/topics/{topic}/messages` with a body of the given type.
    package func publishHTTP(
        _ topic: String, body: Data, contentType: String = "application/json", headers: [String: String] = [:]
    ) throws -> HTTPResponse {
        try request(
            "POST", Self.topicPath(topic) + "/messages",
            headers: headers.merging(["Content-Type": contentType]) { $1 }, body: body)
    }

    /// Publishes JSON text over HTTP, requires 201, and returns the reply (`version`, `epoch`, …).
    @discardableResult
    package func publishJSON(_ topic: String, _ json: String, headers: [String: String] = [:]) throws -> JSON {
        let response = try publishHTTP(topic, body: Data(json.utf8), headers: headers)
        guard response.status == 201, let reply = response.json else {
            throw TestFailure("publish to \(topic) failed: \(response)")
        }
        return reply
    }

    /// Publishes `count` small JSON messages `{"n":1}`, `{"n":2}`, … over HTTP; returns their versions.
    @discardableResult
    package func publishNumbered(_ topic: String, count: Int, startingAt first: Int = 1) throws -> [Int] {
        try (first..<first + count).map { try publishJSON(topic, "{\"n\":\($0)}").int("version") ?? -1 }
    }

    /// `GET /v1/topics/{topic}`, which must answer 200.
    package func topicInfo(_ topic: String) throws -> JSON {
        let response = try get(Self.topicPath(topic))
        guard response.status == 200, let info = response.json else {
            throw TestFailure("topic info of \(topic): \(response)")
        }
        return info
    }

    /// `/v1/topics/{topic}` with the topic as one path segment (`/` sent as `%2F`).
    package static func topicPath(_ topic: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/%?#")
        return "/v1/topics/" + (topic.addingPercentEncoding(withAllowedCharacters: allowed) ?? topic)
    }
}
