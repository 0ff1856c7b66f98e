import ArgumentParser
import FerryProtocol
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A failure `ferryctl` reports as `ferryctl: <message>` and an exit code.
struct Failure: Error, CustomStringConvertible {
    /// The exit codes of the contract: 0 ok, 1 failure, 2 usage, 3 not found, 4 unauthorized.
    enum Code: Int32 {
        case failure = 1
        case usage = 2
        case notFound = 3
        case unauthorized = 4
    }

    var message: String
    var code: Code

    init(_ message: String, code: Code = .failure) {
        self.message = message
        self.code = code
    }

    var description: String { message }
}

/// Options of the commands that use the admin API.
struct AdminOptions: ParsableArguments {
    @OptionGroup var broker: BrokerOptions

    @Option(help: "The admin bearer token (FERRY_ADMIN_TOKEN).")
    var token: String?

    func client() throws -> AdminClient {
        try broker.httpClient(token: token ?? ProcessInfo.processInfo.environment["FERRY_ADMIN_TOKEN"])
    }
}

extension BrokerOptions {
    /// An HTTP client of the broker at `baseURL`.
    func httpClient(token: String?) throws -> AdminClient {
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        guard let url = URL(string: base), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw Failure("--url must be like http://127.0.0.1:8080, not \(baseURL)", code: .usage)
        }
        return AdminClient(base: base, token: token)
    }

    /// Fails in one line when the broker does not answer `/healthz`. The client library would
    /// instead retry for as long as it takes, which suits a running app, not a command.
    func requireReachable() async throws {
        _ = try await httpClient(token: nil).send("GET", "/healthz")
    }

    /// Fails in one line when the broker refuses `token` (401). The WebSocket upgrade would be
    /// refused the same way, which the client library, seeing only a failed upgrade, retries.
    /// A topic read checks the token; its other answers (403 for a publish-only token, 404) are fine.
    func requireAccepted(token: String?, topic: String) async throws {
        let client = try httpClient(token: token)
        // A pattern is no topic to read: the upgrade check says whether the token is accepted.
        let path = TopicPattern.looksLikePattern(topic) ? "/v1/ws/check" : "/v1/topics/" + AdminClient.segment(topic)
        let (status, body) = try await client.exchange("GET", path)
        if status == 401 {
            let message = (try? JSONDecoder().decode(ErrorBody.self, from: body))?.error.message ?? "HTTP 401"
            throw Failure("unauthorized: \(message) (--token or FERRY_TOKEN)", code: .unauthorized)
        }
    }
}

/// How the read commands print: `--output table|json|jsonl`, the same for every command
/// (`--json` is `--output json`).
struct OutputOptions: ParsableArguments {
    enum Style: String, ExpressibleByArgument, CaseIterable {
        /// Aligned text for people.
        case table
        /// The API's JSON as it came (or what `ferryctl` computed, with sorted keys).
        case json
        /// One JSON object a line: each element of a listing, or the one object.
        case jsonl
    }

    @Option(help: "table, json or jsonl (one JSON object a line: each item of a listing).")
    var output: Style = .table

    @Flag(name: .customLong("json"), help: "The same as --output json.")
    var jsonFlag = false

    var style: Style { jsonFlag ? .json : output }

    /// True when the command prints JSON (either form) instead of a table.
    var json: Bool { style != .table }

    /// Prints a JSON body in the chosen form: as it is, or one object a line, the elements of
    /// the body's one array when it has one (a listing).
    func printBody(_ body: Data) {
        guard style == .jsonl else { return Format.printBody(body) }
        guard let object = try? JSONSerialization.jsonObject(with: body) else { return Format.printBody(body) }
        let arrays = (object as? [String: Any])?.values.compactMap { $0 as? [Any] } ?? []
        let items: [Any] = arrays.count == 1 && (object as? [String: Any])?.count == 1 ? arrays[0] : [object]
        for item in items {
            guard let line = try? JSONSerialization.data(withJSONObject: item, options: [.sortedKeys, .withoutEscapingSlashes]) else { continue }
            Format.printBody(line)
        }
    }

    /// Prints what `ferryctl` computed in the chosen JSON form.
    func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        printBody(try encoder.encode(value))
    }
}

/// Requests to the broker's admin API (PROTOCOL.md, "HTTP API"), with its answers mapped to
/// `ferryctl`'s one-line errors and exit codes.
struct AdminClient: Sendable {
    /// The broker's base URL, without a trailing slash.
    let base: String
    let token: String?

    /// `GET` of an admin path, decoded; also returns the body as received, for `--json`.
    func get<Body: Decodable>(_ path: String, as type: Body.Type) async throws -> (Body, Data) {
        let data = try await send("GET", path)
        return (try decode(type, data), data)
    }

    /// Sends a request and returns the body of a 2xx answer; any other answer is a ``Failure``.
    func send(_ method: String, _ path: String, json: (any Encodable)? = nil, timeout: TimeInterval = 30) async throws -> Data {
        let (status, data) = try await exchange(method, path, json: json, timeout: timeout)
        guard (200..<300).contains(status) else { throw failure(status: status, body: data) }
        return data
    }

    /// Sends a request and returns the status and body, whatever the status.
    func exchange(_ method: String, _ path: String, json: (any Encodable)? = nil, timeout: TimeInterval = 30) async throws
        -> (status: Int, body: Data)
    {
        guard let url = URL(string: base + path) else { throw Failure("cannot make a URL of \(base + path)") }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONEncoder().encode(json)
        }
        do {
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
        } catch let error as URLError {
            throw Failure("cannot reach the broker at \(base): \(Self.reason(error))")
        }
    }

    func decode<Body: Decodable>(_ type: Body.Type, _ data: Data) throws -> Body {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw Failure("unexpected answer from the broker at \(base): \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
    }

    /// The broker's error body as a failure with the exit code of its status.
    func failure(status: Int, body: Data) -> Failure {
        let message = (try? JSONDecoder().decode(ErrorBody.self, from: body))?.error.message ?? "HTTP \(status)"
        switch status {
        case 401: return Failure("unauthorized: \(message) (--token or FERRY_ADMIN_TOKEN)", code: .unauthorized)
        case 403: return Failure("forbidden: \(message)", code: .unauthorized)
        case 404: return Failure(message, code: .notFound)
        default: return Failure(message)
        }
    }

    /// Words for why the broker could not be reached, as `curl` would say them.
    static func reason(_ error: any Error) -> String {
        guard let error = error as? URLError else { return "\(error)" }
        return switch error.code {
        case .cannotConnectToHost: "connection refused"
        case .timedOut: "timed out"
        case .cannotFindHost, .dnsLookupFailed: "unknown host"
        case .networkConnectionLost: "connection lost"
        case .secureConnectionFailed, .serverCertificateUntrusted: "TLS failed"
        default: error.localizedDescription
        }
    }

    /// An admin path with `name` as one percent-encoded segment (a `/` in a topic becomes `%2F`).
    static func path(_ prefix: String, _ name: String, _ suffix: String = "") -> String {
        "/v1/admin/\(prefix)/" + segment(name) + suffix
    }

    /// `name` as one percent-encoded path segment.
    static func segment(_ name: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/%?#")
        return name.addingPercentEncoding(withAllowedCharacters: allowed) ?? name
    }
}
