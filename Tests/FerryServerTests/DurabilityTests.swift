import FerryTestSupport
import Foundation
import Testing

/// Guarantees 1–4 of PROTOCOL.md across `kill -9` and restarts of a real `ferryd`.
@Suite("Durability")
struct DurabilityTests {
    /// One publish that the broker confirmed with 201.
    struct Confirmation: Sendable {
        let version: Int
        let payload: String  // "worker-index", as in the message's data
        let idempotencyKey: String?
    }

    /// What the publisher threads saw.
    struct PublisherLog: Sendable {
        var confirmed: [Confirmation] = []
        var epochs: Set<String> = []
        var unexpected: [String] = []
    }

    @Test func confirmedPublishesSurviveKill() throws {
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "full"])
        let port = ferryd.port
        let log = Shared(PublisherLog())
        let killThreshold = 600
        let enoughConfirmed = DispatchSemaphore(value: 0)
        let publishers = (0..<4).map { worker in
            BackgroundThread {
                for index in 0..<500 {
                    let key: String? = index % 25 == 0 ? "key-\(worker)-\(index)" : nil
                    var headers = ["Content-Type": "application/json"]
                    headers["Idempotency-Key"] = key
                    let body = Data(#"{"w":\#(worker),"i":\#(index)}"#.utf8)
                    guard
                        let response = try? HTTP.request(
                            port: port, method: "POST", path: "/v1/topics/d/messages", headers: headers, body: body)
                    else { return }  // the broker is gone: stop publishing
                    guard response.status == 201, let version = response.json?.int("version") else {
                        log.update { $0.unexpected.append("\(response)") }
                        return
                    }
                    let confirmation = Confirmation(version: version, payload: "\(worker)-\(index)", idempotencyKey: key)
                    let count = log.update { state in
                        state.confirmed.append(confirmation)
                        if let epoch = response.json?.string("epoch") { state.epochs.insert(epoch) }
                        return state.confirmed.count
                    }
                    if count == killThreshold { enoughConfirmed.signal() }
                }
            }
        }
        try #require(enoughConfirmed.wait(timeout: .now() + 60) == .success, "publishers never reached \(killThreshold)")
        try ferryd.kill()  // while the publishers are still going
        for publisher in publishers { #expect(publisher.join(timeout: 20), "a publisher thread is stuck") }
        let state = log.value
        #expect(state.unexpected.isEmpty, "non-201 answers before the kill: \(state.unexpected.prefix(3))")
        #expect(state.epochs.count == 1)
        try ferryd.start()

        // Every version 1...head is stored, once each, and every confirmed one has its payload.
        let info = try ferryd.topicInfo("d")
        let head = try #require(info.int("head"))
        #expect(info.string("epoch") == state.epochs.first)
        let stored = try readAll(ferryd, topic: "d", head: head)
        #expect(stored.keys.sorted() == Array(1...head), "versions must have no gaps")
        #expect(Set(stored.values).count == stored.count, "a payload was stored twice")
        let lost = state.confirmed.filter { stored[$0.version] != $0.payload }
        #expect(lost.isEmpty, "\(lost.count) confirmed messages lost or changed, e.g. \(lost.prefix(3))")
        #expect(head >= (state.confirmed.map(\.version).max() ?? 0))

        // Numbering continues right after the old head, and msg_ids from before the kill are known.
        #expect(try ferryd.publishJSON("d", #"{"after":"restart"}"#).int("version") == head + 1)
        let keyed = state.confirmed.filter { $0.idempotencyKey != nil }
        #expect(!keyed.isEmpty)
        for confirmation in keyed {
            let key = confirmation.idempotencyKey ?? ""
            let retry = try ferryd.publishJSON("d", #"{"retry":1}"#, headers: ["Idempotency-Key": key])
            #expect(retry.bool("duplicate") == true, "\(confirmation)")
            #expect(retry.int("version") == confirmation.version, "\(confirmation)")
        }
    }

    @Test func durableSubscriberResumesAfterKill() throws {
        let ferryd = try Ferryd(environment: ["FERRY_SYNC": "full"])
        let (ws, welcome) = try ferryd.session(clientID: "alice")
        let firstToken = try #require(welcome.string("resume_token"))
        let epoch = try ws.subscribe("d", from: "earliest").string("epoch")
        try ferryd.publishNumbered("d", count: 20)
        #expect(try ws.collectMessages(count: 20).versions == Array(1...20))
        try ws.ack("d", 10)
        try ws.pingPong()
        ws.close()  // a clean disconnect makes ack floor 10 durable

        let (again, resumed) = try ferryd.session(resumeToken: firstToken)
        let token = try #require(resumed.string("resume_token"))
        #expect(resumed.objects("subscriptions")?.first?.int("ack_floor") == 10)
        #expect(try again.collectMessages(count: 10).versions == Array(11...20))
        try again.ack("d", 15)  // may be persisted lazily: lost in a crash, redelivered after
        try ferryd.publishNumbered("d", count: 5, startingAt: 21)
        #expect(try again.collectMessages(count: 5).versions == Array(21...25))
        let once = try again.publish("other", data: "1", msgID: "before-kill")
        #expect(once.int("version") == 1)

        try ferryd.kill()
        try ferryd.start()

        let (after, restored) = try ferryd.session(resumeToken: token)
        #expect(restored.string("client_id") == "alice")
        #expect(restored.bool("resumed") == true)
        let subscription = try #require(restored.objects("subscriptions")?.first)
        #expect(subscription.string("epoch") == epoch)
        let floor = try #require(subscription.int("ack_floor"))
        #expect((10...15).contains(floor), "ack floor \(floor) is below the last durable ack or above the last ack")
        let expected = Array(min(floor, 25) + 1...25)
        #expect(try after.collectMessages(count: expected.count).versions == expected)
        #expect(try after.framesWithin(0.3).isEmpty)

        let retry = try after.publish("other", data: "2", msgID: "before-kill")
        #expect(retry.bool("duplicate") == true)
        #expect(retry.int("version") == 1)
    }

    @Test func sigtermClosesConnectionsWith1001AndKeepsEverything() throws {
        let ferryd = try Ferryd()
        try ferryd.publishNumbered("t", count: 3)
        let (ws, _) = try ferryd.session(clientID: "alice")
        try ws.subscribe("t", from: "earliest")
        #expect(try ws.collectMessages(count: 3).versions == [1, 2, 3])
        try ws.ack("t", 2)
        try ws.pingPong()

        let status = try ferryd.terminate()
        #expect(ws.waitForClose() == 1001)
        #expect(status == 0)

        try ferryd.start()
        #expect(try ferryd.topicInfo("t").int("head") == 3)
        let (again, welcome) = try ferryd.session(clientID: "alice")
        // A graceful shutdown is no crash: the last ack is not lost.
        #expect(welcome.objects("subscriptions")?.first?.int("ack_floor") == 2)
        #expect(try again.collectMessages(count: 1).versions == [3])
    }

    /// Every stored message of `topic` as version → "w-i" from its `{"w":…,"i":…}` data.
    private func readAll(_ ferryd: Ferryd, topic: String, head: Int) throws -> [Int: String] {
        var stored: [Int: String] = [:]
        var from = 0
        while from < head {
            let page = try ferryd.get(Ferryd.topicPath(topic) + "/messages?from=\(from)&limit=1000")
            let messages = try #require(page.json?.objects("messages"), "\(page)")
            guard let last = messages.last?.int("version"), last > from else {
                throw TestFailure("no messages after \(from) though head is \(head)")
            }
            for message in messages {
                let data = message.object("data")
                stored[message.int("version") ?? -1] = "\(data?.int("w") ?? -1)-\(data?.int("i") ?? -1)"
            }
            from = last
        }
        return stored
    }
}
