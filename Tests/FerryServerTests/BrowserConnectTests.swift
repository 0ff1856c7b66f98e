import FerryTestSupport
import Foundation
import Testing

/// ferry.js when an attempt cannot open: a refused upgrade (asked of `/v1/ws/check`, since the
/// WebSocket API hides the status), a token function, a full broker, and a listener that never
/// answers or closes without answering.
extension BrowserTests {
    /// A new client in the page, in memory, on `port`; `options` is a JavaScript object literal's body.
    private static func newClient(port: Int, _ options: String = "") -> String {
        "new page.ferry.FerryClient(`ws://127.0.0.1:\(port)/v1/ws`, { storage: new page.ferry.MemoryStorage(), \(options) })"
    }

    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func ferryJSStopsOnARefusedTokenAndAsksATokenFunctionBeforeEachAttempt() throws {
        let ferryd = try Ferryd(environment: ["FERRY_JWT_SECRET": Token.secret, "FERRY_ADMIN_TOKEN": testAdminToken])
        let proxy = try FaultProxy(targetPort: ferryd.port)
        let browser = try openPage(ferryd, client: "browser-refused", expect: 0)
        let page = try devTools(browser)

        // The first state after `connecting` is the terminal one: no reconnect.
        let refused = try page.evaluate(
            """
            new Promise((resolve) => {
              const states = [];
              const client = \(Self.newClient(port: ferryd.port, #"token: "not-a-jwt""#));
              client.on("state", (state, detail) => { states.push(state); if (state === "failed") resolve([states, detail]); });
            })
            """) as? [Any]
        #expect(refused?.first as? [String] == ["failed"], "\(refused ?? [])")
        let detail = refused?.last as? JSON
        #expect(detail?.int("status") == 401, "\(detail ?? [:])")
        #expect(detail?.string("code") == "unauthorized")
        #expect(detail?.string("message") == "the token is not a JWT with an exp claim")

        try page.evaluate(
            """
            page.tokenCalls = 0;
            page.tokenClient = \(Self.newClient(port: proxy.port, "token: async () => { page.tokenCalls += 1; return \"\(testAdminToken)\"; }"));
            true
            """)
        try page.waitUntil("page.tokenClient.state === 'connected'", browser.logTail())
        #expect(try page.evaluate("page.tokenCalls") as? Int == 1)
        proxy.dropAll()
        try page.waitUntil("page.tokenCalls === 2 && page.tokenClient.state === 'connected'", browser.logTail())
    }

    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func ferryJSWaitsRetryAfterWhenTheBrokerIsFull() throws {
        let ferryd = try Ferryd(environment: ["FERRY_MAX_CONNECTIONS": "1"])
        let browser = try openPage(ferryd, client: "browser-full", expect: 0)
        let page = try devTools(browser)
        try page.waitUntil("page.client.state === 'connected'", browser.logTail())  // the page's client holds the one slot
        let waited = try page.evaluate(
            """
            new Promise((resolve) => {
              const client = \(Self.newClient(port: ferryd.port, "backoff: { initialMs: 1, factor: 1, capMs: 1 }"));
              client.on("state", (state, detail) => { if (state === "reconnecting") { client.close(); resolve([detail.status, detail.delay]); } });
            })
            """) as? [Any]
        #expect(waited?.first as? Int == 503, "\(waited ?? [])")
        #expect((waited?.last as? Double ?? (waited?.last as? Int).map(Double.init) ?? 0) >= 1000, "Retry-After: 1 must be waited: \(waited ?? [])")
    }

    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func ferryJSGivesUpAnUnansweredUpgradeAndRetries() throws {
        let ferryd = try Ferryd()
        let silent = try StubListener(.silent)
        let closing = try StubListener(.closeAfterRequest)
        let browser = try openPage(ferryd, client: "browser-silent", expect: 0)
        let page = try devTools(browser)
        try page.evaluate(
            """
            page.reasons = { silent: [], closing: [] };
            page.silent = \(Self.newClient(port: silent.port, "connectTimeoutMs: 300, backoff: { initialMs: 10, factor: 1, capMs: 10 }"));
            page.silent.on("state", (state, detail) => { if (state === "reconnecting") page.reasons.silent.push(detail.reason); });
            page.closing = \(Self.newClient(port: closing.port, "backoff: { initialMs: 10, factor: 1, capMs: 10 }"));
            page.closing.on("state", (state, detail) => { if (state === "reconnecting") page.reasons.closing.push(detail.reason); });
            true
            """)
        try page.waitUntil("page.reasons.silent.length >= 2 && page.reasons.closing.length >= 3", browser.logTail())
        #expect(try page.evaluate("page.reasons.silent.every((reason) => reason === 'timeout')") as? Bool == true)
        #expect(silent.waitForAccepted(2, timeout: 5))
        #expect(closing.waitForAccepted(3, timeout: 5))
        try page.evaluate("page.silent.close(), page.closing.close(), true")
        #expect(try page.evaluate("[page.silent.state, page.closing.state]") as? [String] == ["closed", "closed"])
    }
}
