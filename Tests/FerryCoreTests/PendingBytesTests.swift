import FerryCore
import FerryProtocol
import Synchronization
import Testing

/// `max_pending_bytes` on a core connection whose transport takes nothing (its socket is full).
@Suite("Pending bytes")
struct PendingBytesTests {
    @Test func repliesPilingUpForASocketThatTakesNothingDecideA4013Close() async throws {
        let fixture = try BrokerFixture(configureBroker: { $0.limits.maxPendingBytes = 1000 })
        let wakes = Atomic<Int>(0)
        let connection = fixture.broker.makeConnection { wakes.add(1, ordering: .relaxed) }
        let ping = Array(#"{"op":"ping","id":1}"#.utf8)
        connection.receive(Array(#"{"op":"hello"}"#.utf8))
        // The transport takes the welcome; after that its socket takes nothing.
        _ = connection.takeOutbound()
        // Each pong is 20 bytes: 40 stay under 1000, and no close is decided.
        for _ in 0..<40 { connection.receive(ping) }
        #expect(connection.takeClose() == nil)
        let wakesBefore = wakes.load(ordering: .relaxed)
        for _ in 0..<20 { connection.receive(ping) }
        // The transport is woken again although it never took the first wake's work.
        #expect(wakes.load(ordering: .relaxed) > wakesBefore)
        if case .close(let code, _) = connection.takeClose() {
            #expect(code == .slowConsumer)
        } else {
            Issue.record("no close after more than max_pending_bytes of replies")
        }
        connection.closed()
        await fixture.remove()
    }
}
