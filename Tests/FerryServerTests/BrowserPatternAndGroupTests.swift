import FerryTestSupport
import Foundation
import Testing

extension BrowserTests {
    /// ferry.js with a pattern: topics that exist, one created later and one created while the
    /// broker is down after a SIGKILL reach the page's one handler, each version once and in order.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func aPatternSubscriptionSeesEveryTopicOnceAcrossABrokerKill() throws {
        let ferryd = try Ferryd(environment: ["FERRY_ADMIN_TOKEN": testAdminToken, "FERRY_HEARTBEAT": "1"])
        try ferryd.publishNumbered("shop.a", count: 3)
        let browser = try openPage(ferryd, client: "browser-pattern", expect: 0)
        let page = try devTools(browser)
        try page.evaluate("page.got = [], page.client.subscribe('shop.*', (m) => { page.got.push(`${m.topic}#${m.version}`) }, {from: 'earliest'})")
        try page.waitUntil("page.got.length === 3", browser.logTail())
        try ferryd.publishNumbered("shop.b", count: 2)
        try page.waitUntil("page.got.length === 5", browser.logTail())
        try ferryd.kill()
        try ferryd.start()
        try ferryd.publishNumbered("shop.a", count: 2, startingAt: 4)
        try ferryd.publishNumbered("shop.c", count: 1)
        try ferryd.publishNumbered("other.c", count: 1)
        try page.waitUntil("page.got.length >= 8", browser.logTail())
        let got = (try page.evaluate("page.got.join()") as? String ?? "").split(separator: ",").map(String.init)
        func versions(_ topic: String) -> [String] { got.filter { $0.hasPrefix(topic + "#") } }
        #expect(versions("shop.a") == ["shop.a#1", "shop.a#2", "shop.a#3", "shop.a#4", "shop.a#5"], "\(got)")
        #expect(versions("shop.b") == ["shop.b#1", "shop.b#2"] && versions("shop.c") == ["shop.c#1"], "\(got)")
        #expect(got.count == 8, "\(got)")
        // The handler's returns acked each topic: the broker has the floors.
        let deadline = Deadline(seconds: 10)
        var floors: [String: Int] = [:]
        while floors != ["shop.a": 5, "shop.b": 2, "shop.c": 1], !deadline.hasPassed {
            let subscriptions = try ferryd.admin("GET", "/clients/browser-pattern").json?.objects("subscriptions") ?? []
            floors = Dictionary(uniqueKeysWithValues: subscriptions.filter { $0.string("pattern") == "shop.*" }.map { ($0.string("topic") ?? "", $0.int("ack_floor") ?? -1) })
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(floors == ["shop.a": 5, "shop.b": 2, "shop.c": 1])
    }

    /// ferry.js as a queue group member: the page gets each job, its handler's return acks it,
    /// and the acked jobs are deleted from the work queue.
    @Test(.needsChromium, .timeLimit(.minutes(2)))
    func aQueueGroupMemberAcksEachJobAndTheQueueEmpties() throws {
        let ferryd = try Ferryd.withAdmin()
        #expect(try ferryd.admin("PUT", "/config/topics/tasks", json: #"{"retention":"work_queue"}"#).status == 200)
        let browser = try openPage(ferryd, client: "browser-worker", expect: 0)
        let page = try devTools(browser)
        try page.evaluate("page.jobs = [], page.client.subscribe('tasks', (m) => { page.jobs.push(m.version) }, {group: 'painters', window: 4})")
        try ferryd.publishNumbered("tasks", count: 20)
        try page.waitUntil("page.jobs.length === 20", browser.logTail())
        #expect(try page.evaluate("page.jobs.join()") as? String == (1...20).map(String.init).joined(separator: ","))
        let deadline = Deadline(seconds: 10)
        while try ferryd.topicInfo("tasks").int("messages") != 0, !deadline.hasPassed { Thread.sleep(forTimeInterval: 0.02) }
        #expect(try ferryd.topicInfo("tasks").int("messages") == 0)
    }
}
