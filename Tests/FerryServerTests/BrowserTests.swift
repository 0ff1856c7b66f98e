import FerryTestSupport
import Foundation
import Testing

/// ferry.js as served by the broker, and in a real browser: Debian's headless Chromium runs
/// Browser/ferry-test-page.html against a live ferryd.
@Suite("Browser client")
struct BrowserTests {
    static let page = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Browser/ferry-test-page.html")

    @Test func ferryJSIsServedAsAModule() throws {
        let ferryd = try Ferryd()
        let response = try ferryd.get("/v1/ferry.js")
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/javascript") == true, "\(response.headers)")
        #expect(response.headers["access-control-allow-origin"] == "*")
        #expect(response.text.contains("export class FerryClient"))
    }

    /// The page subscribes while the test publishes 300 messages in three rounds and SIGKILLs and
    /// restarts the broker between them, each time with the page connected: the application must
    /// see every version once, in order, and the page's own publishes must be stored once each.
    @Test(
        .enabled(if: Chromium.isInstalled, "needs Debian's chromium (scripts/install-deps.sh installs it)"),
        .timeLimit(.minutes(2)))
    func everyVersionOnceAcrossBrokerKills() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_HEARTBEAT": "2"])
        let rounds = 3
        let perRound = 100
        let total = rounds * perRound
        let browser = try openPage(ferryd, client: "browser-kill", expect: total)
        for round in 0..<rounds {
            try awaitConnected(ferryd, "browser-kill", browser)
            try ferryd.publishNumbered("feed", count: perRound, startingAt: round * perRound + 1)
            // Killed right after the publishes, while the page is still receiving them.
            if round < rounds - 1 {
                try ferryd.kill()
                try ferryd.start()
            }
        }
        let report = try awaitReport(ferryd, browser)
        let seen = report.seen
        let duplicates = seen.count - Set(seen).count
        print("browser test: \(total) messages, \(report.reconnects) reconnects, \(duplicates) duplicates seen by the app")
        #expect(seen == Array(1...total), "versions seen: \(seen.count), duplicates \(duplicates), first misordered at \(firstMisorder(seen) ?? -1)")
        #expect(duplicates == 0)
        #expect(report.reconnects >= rounds - 1, "the page must have been cut off by each kill")
        #expect(report.events.isEmpty, "no gap or reset expected: \(report.events)")
        // The page's own publishes, some made while the broker was down: each stored once.
        let fromPage = try ferryd.get("/v1/topics/from-page/messages").json?.objects("messages") ?? []
        #expect(fromPage.compactMap { $0.object("data")?.int("v") } == Array(stride(from: 50, through: total, by: 50)))
    }

    /// The page reloads itself after version 50 and its second load resumes from localStorage:
    /// versions 51...100 only, none of 1...50 again.
    @Test(
        .enabled(if: Chromium.isInstalled, "needs Debian's chromium (scripts/install-deps.sh installs it)"),
        .timeLimit(.minutes(2)))
    func reloadResumesFromStoredPosition() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken])
        try ferryd.publishNumbered("feed", count: 100)
        let browser = try openPage(ferryd, client: "browser-reload", expect: 100, reloadAt: 50)
        let report = try awaitReport(ferryd, browser)
        print("browser reload test: \(report.loads) loads, \(report.seen.count) messages seen by the app")
        #expect(report.loads == 2)
        #expect(report.seen == Array(1...100), "first misordered at \(firstMisorder(report.seen) ?? -1)")
        // The ack of version 100 follows the report, so the broker may not have it yet.
        let deadline = Deadline(seconds: 10)
        while try ferryd.admin("GET", "/clients/browser-reload").json?.objects("subscriptions")?.first?.int("ack_floor") != 100 {
            if deadline.hasPassed { throw TestFailure("the broker's ack floor never reached 100") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    // MARK: Helpers

    struct Report {
        let seen: [Int]
        let reconnects: Int
        let loads: Int
        let events: [JSON]
    }

    private func openPage(_ ferryd: Ferryd, client: String, expect: Int, reloadAt: Int = 0) throws -> Chromium {
        var components = URLComponents(url: Self.page, resolvingAgainstBaseURL: false)
        components?.queryItems = [
            URLQueryItem(name: "port", value: String(ferryd.port)), URLQueryItem(name: "client", value: client),
            URLQueryItem(name: "expect", value: String(expect)), URLQueryItem(name: "reloadAt", value: String(reloadAt)),
        ]
        guard let url = components?.url else { throw TestFailure("no page URL from \(Self.page)") }
        return try Chromium(url: url, directory: ferryd.directory)
    }

    /// Waits until the broker says the page's session is connected: only the broker's state shows it.
    private func awaitConnected(_ ferryd: Ferryd, _ client: String, _ browser: Chromium) throws {
        let deadline = Deadline(seconds: 30)
        while try ferryd.admin("GET", "/clients/\(client)").json?.bool("connected") != true {
            if deadline.hasPassed { throw TestFailure("the page never connected. Chromium:\n\(browser.logTail())") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Waits for the page's record on the `report` topic; the page publishes it through ferry.js.
    private func awaitReport(_ ferryd: Ferryd, _ browser: Chromium) throws -> Report {
        let deadline = Deadline(seconds: 60)
        while true {
            let response = try ferryd.get("/v1/topics/report/messages")
            if let record = response.json?.objects("messages")?.first?.object("data") {
                return Report(
                    seen: (record["seen"] as? [Int]) ?? [], reconnects: record.int("reconnects") ?? -1,
                    loads: record.int("loads") ?? -1, events: record.objects("events") ?? [])
            }
            if deadline.hasPassed {
                throw TestFailure("no report from the page within 60 s. Chromium:\n\(browser.logTail())\nferryd:\n\(ferryd.logTail())")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    private func firstMisorder(_ seen: [Int]) -> Int? {
        seen.indices.first { seen[$0] != $0 + 1 }
    }
}
