import FerryTestSupport
import Foundation
import Testing

/// ferry.js as served by the broker, and in a real browser: Debian's headless Chromium runs
/// Browser/ferry-test-page.html against a live ferryd. Serialized: each test runs a browser, and
/// two cores shared with the brokers are enough for one at a time.
@Suite("Browser client", .serialized)
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
    @Test(.needsChromium, .timeLimit(.minutes(2)))
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
        let duplicates = try expectEveryVersionOnce(report, total: total, ferryd)
        print("browser kill test: \(total) messages, \(rounds - 1) broker kills, \(report.reconnects) reconnects, \(duplicates) duplicates seen by the app")
        #expect(report.reconnects >= rounds - 1, "the page must have been cut off by each kill")
    }

    /// The same through a FaultProxy, with the broker running throughout: the test resets the
    /// page's socket once after a round of publishes and once in the middle of one, then stalls
    /// the link so that only ferry.js's heartbeat watchdog (1 s heartbeat: dead after 2.5 s of
    /// silence) can tell it is dead, publishing while it is.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func everyVersionOnceAcrossSocketDropsAndASilentLink() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_HEARTBEAT": "1"])
        let proxy = try FaultProxy(targetPort: ferryd.port)
        let total = 300
        let browser = try openPage(ferryd, client: "browser-drop", expect: total, webSocketPort: proxy.port)
        let page = try devTools(browser)
        var published = 0
        func publish(_ count: Int) throws {
            try ferryd.publishNumbered("feed", count: count, startingAt: published + 1)
            published += count
        }
        func awaitReconnect(_ number: Int) throws {
            try page.waitUntil("page.record.reconnects >= \(number) && page.client.state === 'connected'", browser.logTail())
        }
        try page.waitUntil("page.client.state === 'connected'", browser.logTail())
        try publish(100)
        var drops = proxy.dropAll()
        try awaitReconnect(1)
        try publish(50)
        drops += proxy.dropAll()
        try publish(50)  // while the page reconnects
        try awaitReconnect(2)
        proxy.stall()
        try publish(50)  // the broker sends them into the stalled link
        try page.waitUntil("page.record.reasons.includes('silent')", browser.logTail())
        proxy.unstall()
        try awaitReconnect(3)
        try publish(50)

        let report = try awaitReport(ferryd, browser)
        let duplicates = try expectEveryVersionOnce(report, total: total, ferryd)
        print(
            "browser socket test: \(total) messages, \(drops) socket drops, 1 silent link, \(report.reconnects) reconnects "
                + "(\(report.reasons.joined(separator: ", "))), \(duplicates) duplicates seen by the app")
        #expect(drops >= 2, "each drop must have cut the page's link")
        #expect(report.reasons.contains("silent"), "reasons: \(report.reasons)")
    }

    /// Publishes made while the broker cannot be reached wait in the outbox (localStorage, one key
    /// each) and are stored once after the reconnect. Then publishes that reached the broker but
    /// whose answers were lost with the link are sent again with the same msg_ids, and are not
    /// stored twice. A full outbox refuses a publish.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func offlineOutboxDeliversOnceAfterReconnect() throws {
        let ferryd = try Ferryd.withAdmin()
        let proxy = try FaultProxy(targetPort: ferryd.port)
        let browser = try openPage(ferryd, client: "browser-outbox", expect: 0, webSocketPort: proxy.port)
        let page = try devTools(browser)
        try page.waitUntil("page.client.state === 'connected'", browser.logTail())
        let storedEntries = "Object.keys(localStorage).filter((key) => key.startsWith('ferry:browser-outbox:out:')).length"

        // A client that never reaches a broker, with room for 3.
        let limit = try page.evaluate(
            """
            (async () => {
              const client = new page.ferry.FerryClient("ws://127.0.0.1:1/v1/ws",
                { clientId: "limited", storage: new page.ferry.MemoryStorage(), outboxLimit: 3 });
              for (let n = 1; n <= 3; n++) client.publish("t", { n }).catch(() => {});
              const fourth = await client.publish("t", { n: 4 }).then(() => "accepted", (error) => error.code);
              const held = client.outbox.length;
              client.close();
              return [fourth, held];
            })()
            """) as? [Any]
        #expect(limit?.first as? String == "outbox_full")
        #expect(limit?.last as? Int == 3)

        // Offline: the broker is out of reach, the page publishes 20.
        proxy.refuseNew(true)
        proxy.dropAll()
        try page.waitUntil("page.client.state !== 'connected'")
        try page.evaluate("page.offline = Promise.all(Array.from({ length: 20 }, (_, i) => page.client.publish('outbox', { n: i + 1 }))); true")
        let held = try page.evaluate("page.client.outbox.map((entry) => entry.msg_id)") as? [String] ?? []
        #expect(held.count == 20 && Set(held).count == 20, "each waiting publish has a msg_id of its own: \(held)")
        #expect(try page.evaluate(storedEntries) as? Int == 20)
        #expect(try ferryd.get("/v1/topics/outbox").status == 404, "nothing may have reached the broker")
        proxy.refuseNew(false)
        // retryNow skips the backoff wait that the refused attempts grew.
        try page.waitUntil("page.client.retryNow(), page.client.state === 'connected'", browser.logTail())
        #expect(try page.evaluate("page.offline") as? [Int] == Array(1...20))

        // Mid-flight: the link holds every chunk for 4 s, so the broker stores the next 10 and its
        // answers are still in the proxy when the test cuts the link.
        proxy.delay(4000)
        try page.evaluate(
            "page.midFlight = Promise.all(Array.from({ length: 10 }, (_, i) => page.client.publish('outbox', { n: 21 + i }, { msgId: `mid-${21 + i}` }))); true")
        let deadline = Deadline(seconds: 30)
        while try ferryd.topicInfo("outbox").int("head") != 30 {
            if deadline.hasPassed { throw TestFailure("the broker never stored the 10 publishes. ferryd:\n\(ferryd.logTail())") }
            Thread.sleep(forTimeInterval: 0.02)
        }
        proxy.refuseNew(true)
        proxy.dropAll()
        proxy.delay(0)
        #expect(try page.evaluate("page.client.outbox.length") as? Int == 10, "the answers must have been lost with the link")
        proxy.refuseNew(false)
        try page.waitUntil("page.client.retryNow(), page.client.state === 'connected'", browser.logTail())
        #expect(try page.evaluate("page.midFlight") as? [Int] == Array(21...30), "a resend answers the original versions")

        let stored = try ferryd.get("/v1/topics/outbox/messages").json?.objects("messages") ?? []
        print("browser outbox test: 20 publishes made offline, 10 resent after their answers were lost, \(stored.count) stored")
        #expect(stored.versions == Array(1...30))
        #expect(stored.compactMap { $0.object("data")?.int("n") } == Array(1...30), "each publish stored once, in order")
        try page.waitUntil("\(storedEntries) === 0")
    }

    /// `unsubscribe` removes the durable subscription and the stored position; made offline, it is
    /// sent at the next connection, though the broker restores the subscription on resume.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func unsubscribeRemovesTheDurableSubscriptionEvenOffline() throws {
        let ferryd = try Ferryd.withAdmin()
        let proxy = try FaultProxy(targetPort: ferryd.port)
        try ferryd.publishNumbered("feed", count: 5)
        let browser = try openPage(ferryd, client: "browser-unsub", expect: 0, webSocketPort: proxy.port)
        let page = try devTools(browser)
        let stored = "JSON.parse(localStorage.getItem('ferry:browser-unsub'))"
        try page.waitUntil("page.record.seen.length === 5", browser.logTail())

        try page.evaluate("page.client.unsubscribe('feed')")
        try awaitSubscriptions(ferryd, "browser-unsub", [])
        #expect(try ferryd.topicInfo("feed").int("subscribers") == 0)
        #expect(try page.evaluate("\(stored).topics.feed === undefined") as? Bool == true)

        try page.evaluate("page.client.subscribe('other', () => {})")
        try awaitSubscriptions(ferryd, "browser-unsub", ["other"])
        proxy.refuseNew(true)
        proxy.dropAll()
        try ferryd.awaitDisconnected("browser-unsub")
        try page.evaluate("page.client.unsubscribe('other')")
        #expect(try page.evaluate("\(stored).leaving") as? [String] == ["other"])
        proxy.refuseNew(false)
        try page.waitUntil("page.client.retryNow(), page.client.state === 'connected'", browser.logTail())
        try awaitSubscriptions(ferryd, "browser-unsub", [])
        try page.waitUntil("\(stored).leaving.length === 0")
    }

    /// The page reloads itself after version 50 and its second load resumes from localStorage:
    /// versions 51...100 only, none of 1...50 again.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
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

    /// A message handed out before a `reset` names a version of the old log: acking it must not
    /// ack that version of the new one.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func anAckOfAMessageHandedOutBeforeAResetAcksNothingInTheNewLog() throws {
        let ferryd = try Ferryd.withAdmin()
        let browser = try openPage(ferryd, client: "browser-reset", expect: 0)
        let page = try devTools(browser)
        try page.evaluate("page.held = [], page.client.subscribe('ledger', (m) => { page.held.push(m) }, {from: 'earliest', autoAck: false})")
        try awaitSubscriptions(ferryd, "browser-reset", ["feed", "ledger"])
        try ferryd.publishNumbered("ledger", count: 3)
        try page.waitUntil("page.held.length === 3", browser.logTail())
        #expect(try ferryd.admin("DELETE", "/topics/ledger").status == 200)
        try ferryd.publishNumbered("ledger", count: 5)
        try page.waitUntil("page.held.length === 8", browser.logTail())
        #expect(try page.evaluate("page.held.map((m) => m.version).join()") as? String == "1,2,3,1,2,3,4,5")
        // Version 3 of the old log, then version 2 of the new one.
        try page.evaluate("page.held[2].ack(), page.held[4].ack(), page.client.publish('side', {})")
        let deadline = Deadline(seconds: 10)
        var floor: Int?
        while floor != 2, !deadline.hasPassed {
            floor = try ferryd.admin("GET", "/clients/browser-reset").json?.objects("subscriptions")?.first { $0.string("topic") == "ledger" }?
                .int("ack_floor")
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(floor == 2)
    }

    // MARK: Helpers

    struct Report {
        let seen: [Int]
        let reconnects: Int
        /// Why each reconnect happened: "silent", or the close code.
        let reasons: [String]
        let loads: Int
        let events: [JSON]
    }

    /// Opens the test page on `client`; its WebSocket goes to `webSocketPort` (default the broker's).
    func openPage(_ ferryd: Ferryd, client: String, expect: Int, reloadAt: Int = 0, webSocketPort: Int? = nil) throws
        -> Chromium
    {
        var components = URLComponents(url: Self.page, resolvingAgainstBaseURL: false)
        components?.queryItems = [
            URLQueryItem(name: "port", value: String(ferryd.port)), URLQueryItem(name: "client", value: client),
            URLQueryItem(name: "expect", value: String(expect)), URLQueryItem(name: "reloadAt", value: String(reloadAt)),
            URLQueryItem(name: "wsPort", value: String(webSocketPort ?? ferryd.port)),
        ]
        guard let url = components?.url else { throw TestFailure("no page URL from \(Self.page)") }
        return try Chromium(url: url, directory: ferryd.directory)
    }

    /// DevTools on the test page, once its module has set `globalThis.page`.
    func devTools(_ browser: Chromium) throws -> DevTools {
        let devTools = try browser.devTools()
        try devTools.waitUntil("globalThis.page !== undefined", browser.logTail())
        return devTools
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
                    reasons: (record["reasons"] as? [String]) ?? [], loads: record.int("loads") ?? -1,
                    events: record.objects("events") ?? [])
            }
            if deadline.hasPassed {
                throw TestFailure("no report from the page within 60 s. Chromium:\n\(browser.logTail())\nferryd:\n\(ferryd.logTail())")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// The page saw 1...total once each, in order, with no gap or reset, and its own publishes
    /// (one per 50 versions, some made while cut off) were stored once each. Returns the duplicates.
    private func expectEveryVersionOnce(_ report: Report, total: Int, _ ferryd: Ferryd) throws -> Int {
        let seen = report.seen
        let duplicates = seen.count - Set(seen).count
        #expect(seen == Array(1...total), "versions seen: \(seen.count), duplicates \(duplicates), first misordered at \(firstMisorder(seen) ?? -1)")
        #expect(duplicates == 0)
        #expect(report.events.isEmpty, "no gap or reset expected: \(report.events)")
        let fromPage = try ferryd.get("/v1/topics/from-page/messages").json?.objects("messages") ?? []
        #expect(fromPage.compactMap { $0.object("data")?.int("v") } == Array(stride(from: 50, through: total, by: 50)))
        return duplicates
    }

    /// Waits until the broker says `client` is connected with exactly `topics` subscribed.
    private func awaitSubscriptions(_ ferryd: Ferryd, _ client: String, _ topics: [String]) throws {
        let deadline = Deadline(seconds: 30)
        var detail: JSON?
        while true {
            detail = try ferryd.admin("GET", "/clients/\(client)").json
            let subscribed = detail?.objects("subscriptions")?.compactMap { $0.string("topic") }
            if detail?.bool("connected") == true, subscribed == topics { return }
            if deadline.hasPassed { throw TestFailure("\(client) never connected with subscriptions \(topics): \(detail?.text ?? "-")") }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    private func firstMisorder(_ seen: [Int]) -> Int? {
        seen.indices.first { seen[$0] != $0 + 1 }
    }
}
