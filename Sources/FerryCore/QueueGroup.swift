/// The shared position of one queue group in one topic (`work_queue` retention): which member
/// holds which message, what was acked, and the floor below which everything is done. A pure
/// value, tested without I/O; ``QueueGroups`` keeps one per (topic, group) under a lock.
///
/// Each version goes to one member at a time; a member that leaves gives back what it held, and
/// those go out again first. Acks name single messages, in any order; the floor rises over the
/// acked run, and the topic's messages up to it can be deleted.
struct QueueGroup: Equatable {
    /// Every version up to here was acked (or is gone from the log).
    private(set) var floor: UInt64
    /// The next version no member was given yet.
    private(set) var next: UInt64
    /// Versions given back by members that left, oldest first.
    private(set) var redeliver: [UInt64] = []
    /// Versions handed out and not acked, by the member holding each.
    private(set) var holders: [UInt64: ObjectIdentifier] = [:]
    /// Acked versions above the floor.
    private(set) var acked: Set<UInt64> = []

    /// A group starting on a log whose oldest stored version is `first`.
    init(first: UInt64) {
        floor = first - 1
        next = first
    }

    /// A run of up to `count` consecutive versions for `member`, at most `head`: given back
    /// ones first (a run of those), then new ones; nil when there is none. Versions below `first`
    /// (deleted by retention or a trim) are skipped.
    mutating func take(_ count: Int, for member: ObjectIdentifier, head: UInt64, first: UInt64) -> ClosedRange<UInt64>? {
        advance(to: first)
        redeliver.removeAll { $0 > head }
        if let start = redeliver.first {
            var end = start
            var taken = 1
            redeliver.removeFirst()
            while taken < count, redeliver.first == end + 1 {
                end += 1
                taken += 1
                redeliver.removeFirst()
            }
            for version in start...end { holders[version] = member }
            return start...end
        }
        guard count > 0, next <= head else { return nil }
        let run = next...min(head, next + UInt64(count) - 1)
        for version in run { holders[version] = member }
        next = run.upperBound + 1
        return run
    }

    /// `member` acked `version`. Returns the new floor when it rose, nil otherwise (also for a
    /// version it does not hold: acked already, or given back meanwhile).
    mutating func ack(_ version: UInt64, by member: ObjectIdentifier) -> UInt64? {
        guard holders[version] == member else { return nil }
        holders[version] = nil
        acked.insert(version)
        let before = floor
        while acked.remove(floor + 1) != nil { floor += 1 }
        return floor > before ? floor : nil
    }

    /// Whether `member` holds `version` now.
    func holds(_ version: UInt64, _ member: ObjectIdentifier) -> Bool { holders[version] == member }

    /// `member` left: what it held goes out again, oldest first. Returns how many.
    @discardableResult
    mutating func leave(_ member: ObjectIdentifier) -> Int {
        let returned = holders.filter { $0.value == member }.keys
        for version in returned { holders[version] = nil }
        redeliver = (redeliver + returned).sorted()
        return returned.count
    }

    /// The log now starts at `first` (retention or a trim deleted below it): those versions are done.
    mutating func advance(to first: UInt64) {
        guard first > floor + 1 else { return }
        floor = first - 1
        next = max(next, first)
        redeliver.removeAll { $0 < first }
        holders = holders.filter { $0.key >= first }
        acked = acked.filter { $0 >= first }
    }
}
