import FerryTestSupport
import Foundation
import Testing

/// The console's charts, topic detail (with trim and delete) and paged client list, in Debian's
/// headless Chromium against a live ferryd.
@Suite("Web console: charts, topic detail, clients", .serialized)
struct ConsoleDashboardTests {
    /// While a publisher publishes and a durable subscriber falls behind, the rate and lag
    /// charts gain points and redraw: two screenshots of them a few seconds apart differ.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func chartsMoveWhilePublishing() throws {
        let ferryd = try Ferryd.withAdmin()
        // Never acks and never reads: every publish is delivered to it (within its window and
        // the socket's buffers) and adds to its lag.
        let (lagger, _) = try ferryd.session(clientID: "lagger")
        try lagger.subscribe("orders", from: "earliest")
        let publishing = Shared(true)
        let publisher = BackgroundThread {
            var n = 0
            while publishing.value {
                n += 1
                _ = try? ferryd.publishHTTP("orders", body: Data("{\"n\":\(n)}".utf8))
                Thread.sleep(forTimeInterval: 0.02)
            }
        }
        defer {
            publishing.update { $0 = false }
            _ = publisher.join(timeout: 10)
            lagger.close()
        }

        let (browser, page) = try ferryd.openConsole()
        // Rates need two samples of the totals.
        try page.waitUntil(
            "\(points("published")) >= 2 && \(points("delivered")) >= 2 && \(points("lag")) >= 2", browser.logTail())
        #expect(try page.evaluate(legend("published", ".latest")) as? String != "collecting…")
        #expect(try page.evaluate("\(legend("lag", "li[data-topic=\"orders\"]"))?.startsWith('orders: ')") as? Bool == true)
        let before = try chartData(page)
        let firstShot = try page.screenshot(of: "#charts")
        // Two more samples: the window has moved on about 4 s.
        try page.waitUntil("\(points("published")) >= \(before.points["published"] ?? 0) + 2", browser.logTail())
        let after = try chartData(page)
        let secondShot = try page.screenshot(of: "#charts")

        for chart in ["published", "delivered", "lag"] {
            #expect((after.points[chart] ?? 0) > (before.points[chart] ?? 0), "\(chart) gained no points")
            #expect(after.lines[chart] != before.lines[chart], "\(chart) was not redrawn")
        }
        // The subscriber is behind by every publish: its lag grew, and the y axis grew with it.
        #expect(try page.evaluate("Number(document.getElementById('chart-lag').dataset.max) >= 10") as? Bool == true)
        #expect(try page.evaluate("document.querySelectorAll('#chart-published text').length") as? Int == 6, "3 value and 3 time labels")

        let firstPath = ferryd.directory.appendingPathComponent("charts-1.png")
        try firstShot.write(to: firstPath)
        try secondShot.write(to: ferryd.directory.appendingPathComponent("charts-2.png"))
        print("chart screenshots at \(firstPath.deletingLastPathComponent().path) (kept with FERRY_TEST_KEEP=1)")
        try page.openBlankPage()
        let facts = try page.imageFacts(firstShot)
        let changed = try page.differingPixels(firstShot, secondShot)
        print("charts: \(facts.width)×\(facts.height), \(facts.colours) colours; \(changed) pixels changed between the captures")
        #expect(facts.width > 600 && facts.height > 100)
        #expect(facts.colours > 20, "the charts have lines, grid and labels in several colours")
        #expect(changed > 50, "the charts did not move between the two screenshots")
    }

    /// Clicking a topic shows its log, the configuration that applies, its durable subscribers
    /// with their floors and lag, and its last messages with their versions; trim and delete
    /// ask for the topic's name first, and cancelling does nothing.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func topicDetailTrimsAndDeletesAfterConfirmation() throws {
        let ferryd = try Ferryd.withAdmin()
        let entry = try ferryd.admin("PUT", "/config/topics/orders", json: #"{"max_messages": 1000, "max_age_ms": 3600000}"#)
        #expect(entry.status == 200, "\(entry)")
        try ferryd.publishNumbered("orders", count: 12)
        let (kitchen, _) = try ferryd.session(clientID: "kitchen")
        try kitchen.subscribe("orders", from: "earliest")
        #expect(try kitchen.collectMessages(count: 12).versions == Array(1...12))
        try kitchen.ack("orders", 4)
        try kitchen.pingPong()
        defer { kitchen.close() }

        let (browser, page) = try ferryd.openConsole()
        try page.waitUntil("document.querySelector('#topics tr[data-topic=\"orders\"]') !== null", browser.logTail())
        try page.evaluate("document.querySelector('#topics tr[data-topic=\"orders\"]').click()")
        try page.waitUntil("document.getElementById('topic-detail').hidden === false && \(subscriberCell("kitchen", "floor")) === '4'")
        #expect(try page.evaluate(subscriberCell("kitchen", "lag")) as? String == "8")
        #expect(try page.evaluate(subscriberCell("kitchen", "state")) as? String == "connected")
        #expect(try page.evaluate(fact("detail-summary", "head")) as? String == "12")
        #expect(try page.evaluate(fact("detail-config", "from")) as? String == "entry orders")
        #expect(try page.evaluate(fact("detail-config", "max_messages")) as? String == "1,000")
        #expect(try page.evaluate(fact("detail-config", "max_age")) as? String == "1 h")
        #expect(try page.evaluate(fact("detail-config", "retention")) as? String == "limits")
        #expect(try page.evaluate(detailVersions) as? String == "[12,11,10,9,8,7,6,5,4,3]")
        #expect(try page.evaluate("document.querySelector('#detail-messages tbody tr .payload').textContent") as? String == #"{"n":12}"#)
        let png = try page.screenshot(of: "#topic-detail")
        try png.write(to: ferryd.directory.appendingPathComponent("topic-detail.png"))

        // Trim through 4: the dialog's button waits for the name; cancel leaves the log whole.
        try page.evaluate("document.getElementById('trim-to').value = '4'; document.getElementById('trim-form').requestSubmit()")
        try page.waitUntil("document.getElementById('confirm').open")
        #expect(try page.evaluate("document.getElementById('confirm-ok').disabled") as? Bool == true)
        try type("order", into: page)
        #expect(try page.evaluate("document.getElementById('confirm-ok').disabled") as? Bool == true, "a wrong name must not enable it")
        try page.evaluate("document.getElementById('confirm-cancel').click()")
        try page.waitUntil("!document.getElementById('confirm').open && \(result) === 'trim cancelled'")
        #expect(try ferryd.topicInfo("orders").int("first") == 1)

        try page.evaluate("document.getElementById('trim-form').requestSubmit()")
        try page.waitUntil("document.getElementById('confirm').open")
        try type("orders", into: page)
        try page.evaluate("document.getElementById('confirm-ok').click()")
        try page.waitUntil("\(result)?.startsWith('trimmed orders: 4 removed')", browser.logTail())
        #expect(try ferryd.topicInfo("orders").int("first") == 5)
        try page.waitUntil("\(detailVersions) === '[12,11,10,9,8,7,6,5]'")

        // Past what kitchen acked, an unforced trim is refused and says who holds it.
        try page.evaluate("document.getElementById('trim-to').value = '8'; document.getElementById('trim-form').requestSubmit()")
        try page.waitUntil("document.getElementById('confirm').open")
        try type("orders", into: page)
        try page.evaluate("document.getElementById('confirm-ok').click()")
        try page.waitUntil("\(result)?.startsWith('trim refused') && \(result).includes('kitchen')", browser.logTail())
        #expect(try ferryd.topicInfo("orders").int("first") == 5)

        // Delete: Escape cancels; confirmed, the log is gone (kitchen, connected, keeps the name
        // with a new epoch and no messages).
        let epoch = try ferryd.topicInfo("orders").string("epoch")
        try page.evaluate("document.getElementById('delete-topic').click()")
        try page.waitUntil("document.getElementById('confirm').open")
        try page.call("Input.dispatchKeyEvent", ["type": "keyDown", "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27])
        try page.call("Input.dispatchKeyEvent", ["type": "keyUp", "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27])
        try page.waitUntil("!document.getElementById('confirm').open && \(result) === 'delete cancelled'")
        #expect(try ferryd.topicInfo("orders").int("messages") == 8)
        try page.evaluate("document.getElementById('delete-topic').click()")
        try page.waitUntil("document.getElementById('confirm').open")
        try type("orders", into: page)
        try page.evaluate("document.getElementById('confirm-ok').click()")
        try page.waitUntil("\(result) === 'deleted orders'", browser.logTail())
        let deleted = try ferryd.topicInfo("orders")
        #expect(deleted.int("messages") == 0 && deleted.string("epoch") != epoch, "\(deleted.text)")
        try page.waitUntil("\(detailVersions) === '[]'")

        try page.openBlankPage()
        let facts = try page.imageFacts(png)
        print("topic detail screenshot: \(facts.width)×\(facts.height), \(facts.colours) colours")
        #expect(facts.colours > 10, "the detail has tables, facts and buttons")
    }

    /// The client list pages through the broker's clients and filters them by a search.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func clientListPagesAndSearches() throws {
        let ferryd = try Ferryd.withAdmin()
        let ids = (0..<45).map { String(format: "sensor-%02d", $0) } + ["tablet"]
        let sockets = try ids.map { try ferryd.session(clientID: $0).0 }
        defer { for socket in sockets { socket.close() } }

        let (browser, page) = try ferryd.openConsole()
        try page.evaluate(
            "{ const size = document.getElementById('clients-page-size'); size.value = '20'; size.dispatchEvent(new Event('change')) }")
        try page.waitUntil("\(range) === '1–20 of 46'", browser.logTail())
        #expect(try page.evaluate(listedClients) as? String == jsonText((0..<20).map { String(format: "sensor-%02d", $0) }))
        #expect(try page.evaluate("document.getElementById('clients-previous').disabled") as? Bool == true)
        try page.evaluate("document.getElementById('clients-next').click()")
        try page.waitUntil("\(range) === '21–40 of 46'")
        try page.evaluate("document.getElementById('clients-next').click()")
        try page.waitUntil("\(range) === '41–46 of 46'")
        #expect(try page.evaluate(listedClients) as? String == jsonText(Array(ids[40...])))
        #expect(try page.evaluate("document.getElementById('clients-next').disabled") as? Bool == true)
        try page.evaluate("document.getElementById('clients-previous').click()")
        try page.waitUntil("\(range) === '21–40 of 46'")

        try search("SENSOR-1", on: page)
        try page.waitUntil("\(range) === '1–10 of 10'")
        #expect(try page.evaluate(listedClients) as? String == jsonText((10..<20).map { "sensor-\($0)" }))
        try search("tab", on: page)
        try page.waitUntil("\(listedClients) === '[\"tablet\"]'")
        // A character no client id has: the broker's refusal is shown, not a crash.
        try search("no such!", on: page)
        try page.waitUntil("document.getElementById('clients-range').classList.contains('error')")
        #expect(try page.evaluate("\(range).includes('search must be')") as? Bool == true)
        try search("", on: page)
        try page.waitUntil("\(range) === '1–20 of 46'")
    }

    // MARK: Helpers

    private func points(_ chart: String) -> String { "Number(document.getElementById('chart-\(chart)').dataset.points)" }

    private func legend(_ chart: String, _ selector: String) -> String {
        "document.querySelector('#legend-\(chart) \(selector)')?.textContent"
    }

    /// Each chart's point count and the coordinates of its lines.
    private func chartData(_ page: DevTools) throws -> (points: [String: Int], lines: [String: String]) {
        var points: [String: Int] = [:]
        var lines: [String: String] = [:]
        for chart in ["published", "delivered", "lag"] {
            points[chart] = try page.evaluate(self.points(chart)) as? Int
            lines[chart] = try page.evaluate(
                "[...document.querySelectorAll('#chart-\(chart) polyline')].map((line) => line.getAttribute('points')).join('|')") as? String
        }
        return (points, lines)
    }

    private func subscriberCell(_ client: String, _ column: String) -> String {
        "document.querySelector('#detail-subscribers tr[data-client=\"\(client)\"] .\(column)')?.textContent"
    }

    private func fact(_ list: String, _ name: String) -> String {
        "document.querySelector('#\(list) dd[data-fact=\"\(name)\"]')?.textContent"
    }

    private let detailVersions = "JSON.stringify([...document.querySelectorAll('#detail-messages tbody tr[data-version]')].map((tr) => Number(tr.dataset.version)))"
    private let result = "document.getElementById('detail-result').textContent"
    private let range = "document.getElementById('clients-range').textContent"
    private let listedClients = "JSON.stringify([...document.querySelectorAll('#clients tr[data-client]')].map((tr) => tr.dataset.client))"

    /// Types `text` into the confirmation dialog's field as a user would (an input event each time).
    private func type(_ text: String, into page: DevTools) throws {
        try page.evaluate(
            "{ const field = document.getElementById('confirm-input'); field.value = \(jsonText(text)); field.dispatchEvent(new Event('input')) }")
    }

    private func search(_ text: String, on page: DevTools) throws {
        try page.evaluate(
            "{ const field = document.getElementById('clients-search'); field.value = \(jsonText(text)); field.dispatchEvent(new Event('input')) }")
    }
}
