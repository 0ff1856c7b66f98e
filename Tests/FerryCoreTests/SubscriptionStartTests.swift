@testable import FerryCore
import FerryProtocol
import FerryStore
import Testing

/// Where a subscribe starts, decided without a broker: each `from` against logs that are
/// empty, trimmed, replaced (new epoch) or behind what the client names.
@Suite("Subscription start")
struct SubscriptionStartTests {
    /// Versions 11...20 stored of 1...20 (1...10 deleted by retention), epoch "e2".
    private let trimmed = Topic.Position(epoch: "e2", first: 11, head: 20, storeID: 1)
    private let empty = Topic.Position(epoch: "e1", first: 1, head: 0, storeID: nil)

    private func record(floor: UInt64, epoch: String = "e2") -> SubscriptionRecord {
        SubscriptionRecord(clientID: "c", topic: "t", epoch: epoch, ackFloor: floor, window: 10)
    }

    private func start(_ from: StartPosition, epoch: String? = nil, stored: SubscriptionRecord? = nil, in position: Topic.Position)
        -> SubscriptionStart
    {
        SubscriptionStart(from: from, epoch: epoch, stored: stored, position: position)
    }

    @Test func latestAndEarliest() {
        #expect(start(.latest, in: trimmed) == SubscriptionStart(next: 21, resetFrom: nil, gap: nil))
        #expect(start(.earliest, in: trimmed) == SubscriptionStart(next: 11, resetFrom: nil, gap: nil))
        #expect(start(.latest, in: empty) == SubscriptionStart(next: 1, resetFrom: nil, gap: nil))
        #expect(start(.earliest, in: empty) == SubscriptionStart(next: 1, resetFrom: nil, gap: nil))
    }

    @Test func storedPositions() {
        // No stored position: like latest.
        #expect(start(.stored, in: trimmed) == SubscriptionStart(next: 21, resetFrom: nil, gap: nil))
        #expect(start(.stored, stored: record(floor: 15), in: trimmed) == SubscriptionStart(next: 16, resetFrom: nil, gap: nil))
        // Acked up to 4, but 5...10 were deleted meanwhile.
        #expect(start(.stored, stored: record(floor: 4), in: trimmed) == SubscriptionStart(next: 11, resetFrom: nil, gap: 5...10))
        // The log it knew was replaced, or is behind what it acked: reset to the oldest.
        #expect(start(.stored, stored: record(floor: 15, epoch: "e1"), in: trimmed) == SubscriptionStart(next: 11, resetFrom: "e1", gap: nil))
        #expect(start(.stored, stored: record(floor: 25), in: trimmed) == SubscriptionStart(next: 11, resetFrom: "e2", gap: nil))
    }

    @Test func afterAVersion() {
        #expect(start(.after(12), epoch: "e2", in: trimmed) == SubscriptionStart(next: 13, resetFrom: nil, gap: nil))
        #expect(start(.after(20), in: trimmed) == SubscriptionStart(next: 21, resetFrom: nil, gap: nil))
        #expect(start(.after(2), epoch: "e2", in: trimmed) == SubscriptionStart(next: 11, resetFrom: nil, gap: 3...10))
        #expect(start(.after(12), epoch: "e1", in: trimmed) == SubscriptionStart(next: 11, resetFrom: "e1", gap: nil))
        // Beyond the head: a version this log never had.
        #expect(start(.after(30), epoch: "e2", in: trimmed) == SubscriptionStart(next: 11, resetFrom: "e2", gap: nil))
        #expect(start(.after(30), in: trimmed) == SubscriptionStart(next: 11, resetFrom: "e2", gap: nil))
        #expect(start(.after(0), in: empty) == SubscriptionStart(next: 1, resetFrom: nil, gap: nil))
    }
}
