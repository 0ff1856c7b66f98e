import FerryTestSupport
import Foundation
import Testing

extension Serial {
    /// The proxy itself, against ferryd's HTTP API: it forwards faithfully until told otherwise.
    @Suite("FaultProxy")
    struct FaultProxyTests {
        let ferryd: Ferryd

        init() throws {
            ferryd = try Ferryd(environment: ["FERRY_SYNC": "none"])
        }

        /// A request that leaves the link open: the head is not finished.
        static let unfinishedRequest = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8)
        static let healthRequest = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)

        @Test func forwardsBothWaysAndCountsLinks() throws {
            let proxy = try FaultProxy(targetPort: ferryd.port)
            defer { proxy.close() }
            // 300 KB each way: many chunks, partial writes, and the broker's close passed on.
            let text = String(repeating: "ferry ", count: 50_000)
            let published = try HTTP.request(
                port: proxy.port, method: "POST", path: "/v1/topics/big/messages",
                headers: ["Content-Type": "application/json"], body: Data(jsonText(text).utf8))
            #expect(published.status == 201, "\(published)")
            let read = try HTTP.request(port: proxy.port, method: "GET", path: "/v1/topics/big/messages")
            #expect(read.json?.objects("messages")?.first?.string("data") == text)
            #expect(try HTTP.request(port: proxy.port, method: "GET", path: "/healthz").status == 200)
            #expect(proxy.wait(timeout: 5) { $0.accepted == 3 && $0.live == 0 }, "\(proxy.counters)")
        }

        @Test func dropAllResetsEveryLiveLink() throws {
            let proxy = try FaultProxy(targetPort: ferryd.port)
            defer { proxy.close() }
            let connections = try (0..<3).map { _ in try TCPConnection(port: proxy.port) }
            for connection in connections { try connection.write(Self.unfinishedRequest) }
            #expect(proxy.wait(timeout: 5) { $0.live == 3 }, "\(proxy.counters)")

            #expect(proxy.dropAll() == 3)
            #expect(proxy.counters == FaultProxy.Counters(accepted: 3, live: 0, dropped: 3))
            for connection in connections {
                let result = connection.read(until: Deadline(seconds: 5))
                #expect(result == .eof, "a dropped link must end at once, got \(result)")
            }
            // The proxy still serves new links.
            #expect(try HTTP.request(port: proxy.port, method: "GET", path: "/healthz").status == 200)
        }

        @Test func stallHoldsEveryByteUntilUnstall() throws {
            let proxy = try FaultProxy(targetPort: ferryd.port)
            defer { proxy.close() }
            let connection = try TCPConnection(port: proxy.port)
            #expect(proxy.wait(timeout: 5) { $0.live == 1 })
            proxy.stall()
            try connection.write(Self.healthRequest)
            // A bounded look for what must not come: the request is held, so no answer can exist.
            let silent = connection.read(until: Deadline(seconds: 1))
            #expect(silent == .timeout, "a stalled link carried \(silent)")
            #expect(proxy.liveLinks == 1, "a stall keeps the link open")

            proxy.unstall()
            let answer = Self.readAll(connection)
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        }

        @Test func delayHoldsEachChunk() throws {
            let proxy = try FaultProxy(targetPort: ferryd.port)
            defer { proxy.close() }
            proxy.delay(250)
            let start = ContinuousClock.now
            #expect(try HTTP.request(port: proxy.port, method: "GET", path: "/healthz").status == 200)
            let delayed = ContinuousClock.now - start
            // The request and the answer each wait once.
            #expect(delayed >= .milliseconds(500) && delayed < .seconds(5), "took \(delayed)")

            proxy.delay(0)
            let quick = ContinuousClock.now
            #expect(try HTTP.request(port: proxy.port, method: "GET", path: "/healthz").status == 200)
            #expect(ContinuousClock.now - quick < .milliseconds(250))
        }

        @Test func refuseNewResetsNewLinksOnly() throws {
            let proxy = try FaultProxy(targetPort: ferryd.port)
            defer { proxy.close() }
            let survivor = try TCPConnection(port: proxy.port)
            #expect(proxy.wait(timeout: 5) { $0.live == 1 })

            proxy.refuseNew(true)
            #expect(throws: (any Error).self, "a refused link must not answer") {
                try HTTP.request(port: proxy.port, method: "GET", path: "/healthz", timeout: 5)
            }
            // The counters follow the reset within the loop's iteration: wait for them, do not race them.
            #expect(proxy.wait(timeout: 5) { $0.accepted == 2 && $0.live == 1 }, "\(proxy.counters)")
            try survivor.write(Self.healthRequest)  // the link made before still works
            #expect(Self.readAll(survivor).hasPrefix("HTTP/1.1 200"))

            proxy.refuseNew(false)
            #expect(try HTTP.request(port: proxy.port, method: "GET", path: "/healthz").status == 200)
        }

        @Test func retargetSendsNewLinksElsewhere() throws {
            let other = try Ferryd(environment: ["FERRY_SYNC": "none"])
            try other.publishJSON("only-there", #"{"n":1}"#)
            let proxy = try FaultProxy(targetPort: ferryd.port)
            defer { proxy.close() }
            let path = Ferryd.topicPath("only-there")
            #expect(try HTTP.request(port: proxy.port, method: "GET", path: path).status == 404)

            proxy.retarget(port: other.port)
            #expect(try HTTP.request(port: proxy.port, method: "GET", path: path).status == 200)

            proxy.retarget(port: try TCPConnection.freePort())  // nobody there: links are reset
            #expect(throws: (any Error).self) { try HTTP.request(port: proxy.port, method: "GET", path: path, timeout: 5) }
        }

        @Test func closeReleasesDescriptorsAndThreads() throws {
            let descriptorsBefore = Self.count("/proc/self/fd")
            let threadsBefore = Self.count("/proc/self/task")
            var ports: [Int] = []
            for _ in 0..<100 {
                let proxy = try FaultProxy(targetPort: ferryd.port)
                let connection = try TCPConnection(port: proxy.port)
                try connection.write(Self.unfinishedRequest)
                #expect(proxy.wait(timeout: 5) { $0.live == 1 })
                proxy.close()  // with a live link
                #expect(connection.read(until: Deadline(seconds: 5)) == .eof)
                connection.close()
                ports.append(proxy.port)
            }
            // Leaks would be ≥ 5 descriptors and 1 thread per proxy: 500 and 100.
            let descriptorGrowth = Self.count("/proc/self/fd") - descriptorsBefore
            let threadGrowth = Self.count("/proc/self/task") - threadsBefore
            #expect(descriptorGrowth < 50, "\(descriptorGrowth) more descriptors after 100 closed proxies")
            #expect(threadGrowth < 25, "\(threadGrowth) more threads after 100 closed proxies")
            #expect(throws: (any Error).self, "a closed proxy still listens") { try TCPConnection(port: ports.last ?? 0) }
        }

        private static func count(_ folder: String) -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: folder).count) ?? -1
        }

        private static func readAll(_ connection: TCPConnection) -> String {
            var bytes: [UInt8] = []
            let deadline = Deadline(seconds: 5)
            while case .bytes(let more) = connection.read(until: deadline) { bytes += more }
            return String(decoding: bytes, as: UTF8.self)
        }
    }
}
