import FerryTestSupport
import Foundation
import Testing

/// The web console at /console: served by the broker, its data behind the admin token, and in
/// Debian's headless Chromium against a live ferryd with a connected client.
@Suite("Web console", .serialized)
struct ConsoleTests {
    /// The shell is served to anyone and holds no data; every admin request needs the token.
    @Test func shellIsServedAndItsDataNeedsTheToken() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("orders", count: 2)
        let shell = try ferryd.get("/console")
        #expect(shell.status == 200)
        #expect(shell.headers["content-type"]?.hasPrefix("text/html") == true)
        #expect(shell.headers["content-security-policy"]?.contains("frame-ancestors 'none'") == true)
        #expect(!shell.text.contains("orders"), "the shell must not carry data")
        let scripts = ["console", "common", "charts", "clients", "topic", "tail"].map { ("/console/\($0).js", "text/javascript") }
        for (path, type) in scripts + [("/console/console.css", "text/css")] {
            let file = try ferryd.get(path)
            #expect(file.status == 200 && file.headers["content-type"]?.hasPrefix(type) == true, "\(path): \(file)")
        }
        for path in ["/stats", "/topics", "/topics/orders", "/clients"] {
            #expect(try ferryd.admin("GET", path, token: nil).status == 401, "\(path) without a token")
            #expect(try ferryd.admin("GET", path, token: "not-the-token").status == 401, "\(path) with a wrong token")
        }
    }

    /// Topics with heads and lag, a connected client's floor and lag, a live tail through ferry.js
    /// (with pause and clear), the publish box, and a screenshot that is more than a blank page.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func showsLiveDataInChromium() throws {
        let ferryd = try Ferryd.withAdmin()
        try ferryd.publishNumbered("orders", count: 5)
        try ferryd.publishNumbered("metrics/cpu", count: 3)
        // A durable client that got 5 and acked 2: lag 3.
        let kitchen = try ferryd.connect()
        try kitchen.hello(clientID: "kitchen-1")
        try kitchen.subscribe("orders", from: "earliest")
        #expect(try kitchen.collectMessages(count: 5).versions == Array(1...5))
        try kitchen.ack("orders", 2)
        try kitchen.pingPong()

        guard let url = URL(string: "http://127.0.0.1:\(ferryd.port)/console") else { throw TestFailure("no console URL") }
        let browser = try Chromium(url: url, directory: ferryd.directory)
        let page = try browser.devTools()
        try page.waitUntil("document.getElementById('login')?.hidden === false", browser.logTail())
        #expect(try page.evaluate("document.body.innerText.includes('orders')") as? Bool == false)

        try page.evaluate(
            """
            document.getElementById('login-token').value = '\(testAdminToken)';
            document.getElementById('login-form').requestSubmit();
            """)
        #expect(try page.evaluate("sessionStorage.getItem('ferry-console-token')") as? String == testAdminToken)
        try page.waitUntil("\(topicCell("orders", "head")) === '5' && \(topicCell("metrics/cpu", "head")) === '3'", browser.logTail())
        #expect(try page.evaluate(topicCell("orders", "lag")) as? String == "3")
        try page.waitUntil("\(clientCell("kitchen-1", ".state")) === 'connected'")
        #expect(try page.evaluate(clientCell("kitchen-1", "li[data-topic=\"orders\"]")) as? String == "orders: 2 / 5, lag 3")
        // The rate needs a second sample of the head.
        try page.waitUntil("/^[0-9.]+$/.test(\(topicCell("orders", "rate")))")

        // Live tail: a click on the topic subscribes an ephemeral ferry.js client, which the topic
        // counts as a subscriber once it is there.
        try page.evaluate("document.querySelector('#topics tr[data-topic=\"orders\"]').click()")
        let deadline = Deadline(seconds: 30)
        while try ferryd.topicInfo("orders").int("subscribers") != 2 {
            if deadline.hasPassed { throw TestFailure("the tail never subscribed. Chromium:\n\(browser.logTail())") }
            Thread.sleep(forTimeInterval: 0.02)
        }
        try ferryd.publishNumbered("orders", count: 3, startingAt: 6)
        try page.waitUntil("\(tailVersions) === '[8,7,6]'")

        // The publish box: its answer is the version, and the tail shows the message.
        try page.evaluate(
            """
            document.getElementById('publish-topic').value = 'orders';
            document.getElementById('publish-payload').value = '{"from":"console"}';
            document.getElementById('publish-form').requestSubmit();
            """)
        try page.waitUntil("document.getElementById('publish-result').dataset.version === '9'")
        try page.waitUntil("\(tailVersions) === '[9,8,7,6]'")
        #expect(try page.evaluate("document.querySelector('#tail li').textContent.endsWith('{\"from\":\"console\"}')") as? Bool == true)
        let ninth = try ferryd.get("/v1/topics/orders/messages?from=8").json?.objects("messages")?.first
        #expect(ninth?.object("data")?.string("from") == "console")
        try page.waitUntil("\(clientCell("kitchen-1", "li[data-topic=\"orders\"]")) === 'orders: 2 / 9, lag 7'")

        let png = try page.screenshot()
        let screenshot = ferryd.directory.appendingPathComponent("console.png")
        try png.write(to: screenshot)
        print("console screenshot: \(png.count) bytes at \(screenshot.path) (kept with FERRY_TEST_KEEP=1)")

        // Pause holds the list still and counts what arrives; resume shows it; clear empties it.
        try page.evaluate("document.getElementById('tail-pause').click()")
        try ferryd.publishNumbered("orders", count: 1, startingAt: 10)
        try page.waitUntil("document.getElementById('tail-state').textContent.includes('paused (1 new)')")
        #expect(try page.evaluate(tailVersions) as? String == "[9,8,7,6]")
        try page.evaluate("document.getElementById('tail-pause').click()")
        #expect(try page.evaluate(tailVersions) as? String == "[10,9,8,7,6]")
        try page.evaluate("document.getElementById('tail-clear').click()")
        #expect(try page.evaluate(tailVersions) as? String == "[]")

        try page.evaluate("document.getElementById('sign-out').click()")
        #expect(try page.evaluate("document.getElementById('login').hidden === false && sessionStorage.length === 0") as? Bool == true)

        // The screenshot, decoded by the browser on a blank page (the console's policy refuses
        // data: images): the same check on a blank page's screenshot finds one colour.
        try page.openBlankPage()
        let blank = try page.screenshot()
        let consoleImage = try page.imageFacts(png)
        let blankImage = try page.imageFacts(blank)
        print("console screenshot: \(consoleImage.width)×\(consoleImage.height), \(consoleImage.colours) colours; blank page: \(blankImage.colours)")
        #expect(consoleImage.width > 0 && consoleImage.height > 0)
        #expect(blankImage.colours == 1)
        #expect(consoleImage.colours > 10, "a console with data has text, tables and a header")
        kitchen.close()
    }

    /// With no admin token configured, the console says the admin API is off instead of asking for one.
    @Test(.needsChromium, .timeLimit(.minutes(1)))
    func saysWhenTheAdminAPIIsOff() throws {
        let ferryd = try Ferryd()
        guard let url = URL(string: "http://127.0.0.1:\(ferryd.port)/console") else { throw TestFailure("no console URL") }
        let browser = try Chromium(url: url, directory: ferryd.directory)
        let page = try browser.devTools()
        try page.waitUntil("document.getElementById('admin-off')?.hidden === false", browser.logTail())
        #expect(try page.evaluate("document.getElementById('login').hidden && document.getElementById('dashboard').hidden") as? Bool == true)
    }

    // MARK: Helpers

    private func topicCell(_ topic: String, _ column: String) -> String {
        "document.querySelector('#topics tr[data-topic=\"\(topic)\"] .\(column)')?.textContent"
    }

    private func clientCell(_ client: String, _ selector: String) -> String {
        "document.querySelector('#clients tr[data-client=\"\(client)\"] \(selector)')?.textContent"
    }

    /// The versions the tail lists, newest first, as JSON text.
    private let tailVersions = "JSON.stringify([...document.querySelectorAll('#tail li')].map((li) => Number(li.dataset.version)))"
}
