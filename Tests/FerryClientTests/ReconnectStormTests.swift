import FerryClient
import FerryTestSupport
import Foundation
import Synchronization
import Testing

/// The reconnect storm: many clients dropped at once come back spread out by jitter, not in a
/// wave. A measurement more than a check, so it runs only when asked:
/// `FERRY_STORM_CLIENTS=1000 swift test --filter ReconnectStorm`. It prints the spread and
/// asserts only that every client came back.
@Suite("Reconnect storm")
struct ReconnectStormTests {
    static let clientCount = Int(ProcessInfo.processInfo.environment["FERRY_STORM_CLIENTS"] ?? "") ?? 0

    @Test(.enabled(if: clientCount > 0), .timeLimit(.minutes(5)))
    func clientsDroppedAtOnceComeBackSpreadOut() async throws {
        let ferryd = try Ferryd()
        let proxy = try FaultProxy(targetPort: ferryd.port)
        defer { proxy.close() }
        let url = try #require(URL(string: "ws://127.0.0.1:\(proxy.port)/v1/ws"))
        let clients = (0..<Self.clientCount).map { FerryClient(url: url, clientID: "storm-\($0)") }
        let log = StormLog()

        try await withThrowingTaskGroup(of: Void.self) { group in
            let (firstConnections, ready) = AsyncStream.makeStream(of: Void.self)
            for client in clients {
                group.addTask {
                    var wasConnected = false
                    for await state in client.states {
                        guard state == .connected else { continue }
                        if !wasConnected {
                            wasConnected = true
                            ready.yield()
                        } else if let dropped = log.droppedAt.withLock({ $0 }) {
                            log.delays.withLock { $0.append(ContinuousClock.now - dropped) }
                            return
                        }
                    }
                }
            }
            var connected = 0
            for await _ in firstConnections {
                connected += 1
                if connected == clients.count { break }
            }
            log.droppedAt.withLock { $0 = .now }
            _ = proxy.dropAll()
            try await group.waitForAll()
        }
        for client in clients { await client.close() }

        let delays = log.delays.withLock { $0 }.sorted()
        #expect(delays.count == clients.count)
        func at(_ fraction: Double) -> Duration { delays[min(delays.count - 1, Int(Double(delays.count) * fraction))] }
        var histogram: [Int: Int] = [:]
        for delay in delays { histogram[Int(delay / .milliseconds(100)), default: 0] += 1 }
        print("reconnect storm: \(clients.count) clients; back after min \(at(0)), p50 \(at(0.5)), p90 \(at(0.9)), p99 \(at(0.99)), max \(at(1))")
        print("per 100 ms: " + histogram.keys.sorted().map { "\($0 * 100)ms:\(histogram[$0] ?? 0)" }.joined(separator: " "))
    }
}

/// When the links were dropped, and how long each client took to be welcomed again.
private final class StormLog: Sendable {
    let droppedAt = Mutex<ContinuousClock.Instant?>(nil)
    let delays = Mutex<[Duration]>([])
}
