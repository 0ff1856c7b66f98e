/// A token bucket of `burst` tokens refilled at `rate` per second, kept as the instant it will be
/// full again (GCRA, the "virtual scheduling" form of a token bucket): a check is a few integer
/// operations on one word, with no timer and no allocation. Times are monotonic nanoseconds
/// supplied by the caller.
///
///     var bucket = TokenBucket(rate: 100, burst: 10)
///     if let wait = bucket.take(3, at: now) { /* refused: retry in `wait` ns */ }
public struct TokenBucket: Sendable {
    /// Nanoseconds one token takes to come back.
    private let interval: UInt64
    /// How far ahead of now the full-again instant may run: `burst` tokens' worth.
    private let tolerance: UInt64
    /// When the bucket will hold `burst` tokens again; at or before now, it is full.
    private var fullAt: UInt64 = 0

    /// The most tokens a bucket holds: above it, a burst's worth of nanoseconds could overflow.
    public static let maxBurst = 1_000_000_000

    /// A bucket, or nil when `rate` is 0 (no limit).
    /// - Parameters:
    ///   - rate: tokens per second sustained.
    ///   - burst: tokens a full bucket holds, clamped to 1...``maxBurst``.
    public init?(rate: Int, burst: Int) {
        guard rate > 0 else { return nil }
        interval = max(1, 1_000_000_000 / UInt64(rate))
        tolerance = interval * UInt64(min(max(1, burst), Self.maxBurst))
    }

    /// How many tokens a full bucket holds.
    public var burst: Int { Int(tolerance / interval) }

    /// Takes `count` tokens at `now`, all or none. Returns nil when they were taken, else the
    /// nanoseconds until they would be there (`UInt64.max` when `count` is over the burst).
    public mutating func take(_ count: Int = 1, at now: UInt64) -> UInt64? {
        guard count <= burst else { return .max }
        let next = max(fullAt, now) + interval * UInt64(max(0, count))
        guard next - now > tolerance else {
            fullAt = next
            return nil
        }
        return next - now - tolerance
    }

    /// Whether the bucket is full at `now`: it then says no more than a new one would.
    public func isFull(at now: UInt64) -> Bool { fullAt <= now }
}
