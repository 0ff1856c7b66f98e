import FerryServer
import FerryTestSupport
import Foundation
import HTTPTypes
import Testing

/// The OpenAPI document of the HTTP API, served at `/v1/openapi.json`: it describes exactly the
/// routes the broker serves, and schemathesis finds no answer of a real ferryd that breaks it.
@Suite("OpenAPI document")
struct OpenAPITests {
    /// Every route of the router's table is in the document, and nothing else is.
    @Test func documentDescribesExactlyTheServedRoutes() throws {
        let ferryd = try Ferryd()
        let response = try ferryd.get("/v1/openapi.json")
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("application/json") == true)
        #expect(response.headers["access-control-allow-origin"] == "*")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [String: Any])
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var documented = Set<String>()
        for (path, item) in paths {
            // `{topic}` in OpenAPI is `:topic` in the router.
            let routerPath = path.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: "")
            for (method, operation) in item where method != "parameters" {
                documented.insert("\(method.uppercased()) \(routerPath)")
                let responses = (operation as? [String: Any])?["responses"] as? [String: Any] ?? [:]
                #expect(responses.keys.contains { $0.hasPrefix("2") || $0 == "101" }, "\(method) \(path) documents no success")
            }
        }
        let served = Set(APIRoute.allCases.map { "\($0.method.rawValue) \($0.path)" })
        #expect(served.subtracting(documented).sorted() == [], "served but not documented")
        #expect(documented.subtracting(served).sorted() == [], "documented but not served")
    }

    /// A method a path does not serve is 405 with `Allow`; an unknown path stays 404; a client id
    /// that is not one is 400. Each with the protocol's error body.
    @Test func wrongMethodsAndPlainRequestsGetTheirStatus() throws {
        let ferryd = try Ferryd.withAdmin()
        let post = try ferryd.request("POST", "/healthz")
        #expect(post.status == 405 && post.headers["allow"] == "GET", "\(post)")
        #expect(post.json?.object("error")?.string("code") == "bad_frame")
        let put = try ferryd.request("PUT", "/v1/topics/orders/messages")
        #expect(put.status == 405 && put.headers["allow"] == "GET, POST", "\(put)")
        let patch = try ferryd.request("PATCH", "/v1/admin/config/topics/orders.%2A")
        #expect(patch.status == 405 && patch.headers["allow"] == "DELETE, PUT", "\(patch)")
        let unknown = try ferryd.get("/v1/nothing-here")
        #expect(unknown.status == 404 && unknown.json?.object("error")?.string("code") == "not_found", "\(unknown)")
        #expect(try ferryd.admin("GET", "/clients/not%20an%20id").status == 400)
    }

    /// Schemathesis (Tests/api/schemathesis.toml) against a broker with client authentication on
    /// and the admin token in every request: every operation, examples generated from the document
    /// and mutated out of it, every check (no 5xx, statuses, content types, headers and bodies as
    /// documented, invalid input refused, authentication not ignored, 405 for other methods).
    /// Left out: the WebSocket upgrade (the protocol suites speak it) and the backup into a folder
    /// (it would write generated paths on this machine).
    @Test(.needsSchemathesis, .timeLimit(.minutes(10)))
    func schemathesisFindsNoAnswerThatBreaksTheDocument() throws {
        let ferryd = try Ferryd(environment: ["FERRY_JWT_SECRET": Token.secret, "FERRY_ADMIN_TOKEN": testAdminToken])
        // A durable client, so the client routes get past 404 (the configuration names it).
        let client = try ferryd.connect(headers: ["Authorization": "Bearer \(testAdminToken)"])
        try client.hello(clientID: "fuzz-client")
        try client.subscribe("fuzz", from: "earliest")
        try client.pingPong()

        let seed = ProcessInfo.processInfo.environment["FERRY_FUZZ_SEED"] ?? "1"
        let process = Process()
        guard let executable = Schemathesis.executable else { throw TestFailure("no schemathesis") }
        process.executableURL = executable
        process.arguments = [
            "--config-file", Schemathesis.configuration.path, "run", "http://127.0.0.1:\(ferryd.port)/v1/openapi.json",
            "-H", "Authorization: Bearer \(testAdminToken)", "--seed", seed, "--max-examples", "100",
            // Hypothesis is not thread-safe: with more workers it fails inside itself now and then.
            "--workers", "1", "--no-color",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        process.environment = environment
        let run = try runToCompletion(process, timeout: 540)
        #expect(run.status == 0, "schemathesis (seed \(seed), FERRY_FUZZ_SEED=N for another):\n\(run.stdout.suffix(12_000))\(run.stderr.suffix(4000))")
        #expect(run.stdout.contains("Tested:"), "schemathesis tested nothing:\n\(run.stdout.suffix(4000))")
        #expect(ferryd.isRunning, "the broker died under the fuzzer: \(ferryd.logTail())")
    }
}

/// Where schemathesis is: the virtual environment `scripts/install-deps.sh` makes, or `PATH`.
enum Schemathesis {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let configuration = repository.appendingPathComponent("Tests/api/schemathesis.toml")

    static let executable: URL? = {
        let local = repository.appendingPathComponent(".venv/bin/st")
        if FileManager.default.isExecutableFile(atPath: local.path) { return local }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return path.split(separator: ":").lazy.map { URL(fileURLWithPath: String($0)).appendingPathComponent("st") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }()
}

extension Trait where Self == ConditionTrait {
    /// Skips a test where schemathesis is not installed.
    static var needsSchemathesis: Self {
        .enabled(if: Schemathesis.executable != nil, "needs schemathesis (scripts/install-deps.sh installs it into .venv)")
    }
}
