@testable import FerryCore
import Testing

@Suite("QueueGroup: one member per message, acks in any order, the floor")
struct QueueGroupTests {
    private final class Member {}
    private let a = ObjectIdentifier(Member.self)
    private let b = ObjectIdentifier(Int.self)

    @Test("members take disjoint runs; acks in any order raise the floor over the acked run only")
    func takeAndAck() {
        var group = QueueGroup(first: 1)
        #expect(group.take(3, for: a, head: 10, first: 1) == 1...3)
        #expect(group.take(2, for: b, head: 10, first: 1) == 4...5)
        #expect(group.take(0, for: b, head: 10, first: 1) == nil)
        #expect(group.ack(2, by: a) == nil)
        // Not its message: no effect.
        #expect(group.ack(1, by: b) == nil)
        #expect(group.ack(4, by: b) == nil)
        #expect(group.ack(1, by: a) == 2)
        #expect(group.ack(3, by: a) == 4)
        #expect(group.ack(3, by: a) == nil)
        #expect(group.floor == 4)
        #expect(group.take(10, for: a, head: 7, first: 1) == 6...7)
        #expect(group.take(10, for: a, head: 7, first: 1) == nil)
    }

    @Test("what a member held when it left goes out again first, as runs; retention past them drops them")
    func leaveAndRedeliver() {
        var group = QueueGroup(first: 5)
        #expect(group.take(4, for: a, head: 20, first: 5) == 5...8)
        #expect(group.ack(6, by: a) == nil)
        #expect(group.take(2, for: b, head: 20, first: 5) == 9...10)
        #expect(group.leave(a) == 3)
        #expect(group.take(10, for: b, head: 20, first: 5) == 5...5)
        #expect(group.take(10, for: b, head: 20, first: 5) == 7...8)
        #expect(group.take(1, for: b, head: 20, first: 5) == 11...11)
        #expect(group.ack(5, by: b) == 6)
        #expect(group.leave(b) == 5)
        // Retention deleted up to 9: the given-back 7, 8 and 9 are gone; 10 and 11 go out again.
        #expect(group.take(10, for: a, head: 20, first: 10) == 10...11)
        #expect(group.floor == 9)
        #expect(group.take(10, for: a, head: 20, first: 10) == 12...20)
    }
}
