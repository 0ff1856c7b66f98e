/// A connection's publish rate limit: a token bucket of `burst` tokens refilled at `rate` per
/// second, and the rule that turns repeated refusals into a close.
///
/// The bucket is kept as the instant it will be full again (GCRA, the "virtual scheduling" form
/// of a token bucket), so a check is a few integer operations on one word: no timer, no
/// allocation. Times are monotonic nanoseconds supplied by the caller.
///
///     var limiter = PublishRateLimiter(rate: 100, burst: 10, rejectionsBeforeClose: 50)
///     switch limiter.admit(at: now) { case .allowed: …; case .rejected: …; case .exceeded: … }
public struct PublishRateLimiter: Sendable {
    /// What to do with one publish.
    public enum Verdict: Sendable, Equatable {
        /// Within the rate: handle it.
        case allowed
        /// Over the rate: answer `rate_limited` and drop it.
        case rejected
        /// Over the rate for too long: drop it and close with 4029. Every later call says so too.
        case exceeded
    }

    /// Refusals are counted in windows of this length (nanoseconds).
    public static let rejectionWindow: UInt64 = 10_000_000_000

    /// Nanoseconds one token takes to come back.
    private let interval: UInt64
    /// How far ahead of now the full-again instant may run: `burst` tokens' worth.
    private let tolerance: UInt64
    private let rejectionsBeforeClose: Int
    /// When the bucket will hold `burst` tokens again; at or before now, it is full.
    private var fullAt: UInt64 = 0
    private var rejections = 0
    private var windowStart: UInt64 = 0
    private var tripped = false

    /// A limiter, or nil when `rate` is 0 (no limit).
    /// - Parameters:
    ///   - rate: publishes per second sustained.
    ///   - burst: publishes accepted at once from a full bucket (at least 1).
    ///   - rejectionsBeforeClose: refusals within ``rejectionWindow`` that close the connection.
    public init?(rate: Int, burst: Int, rejectionsBeforeClose: Int) {
        guard rate > 0 else { return nil }
        interval = max(1, 1_000_000_000 / UInt64(rate))
        tolerance = interval * UInt64(max(1, burst))
        self.rejectionsBeforeClose = max(1, rejectionsBeforeClose)
    }

    /// Takes a token for a publish at `now` (monotonic nanoseconds), or says why not.
    public mutating func admit(at now: UInt64) -> Verdict {
        if tripped { return .exceeded }
        let next = max(fullAt, now) + interval
        if next - now <= tolerance {
            fullAt = next
            return .allowed
        }
        if rejections == 0 || now - windowStart >= Self.rejectionWindow {
            windowStart = now
            rejections = 0
        }
        rejections += 1
        if rejections >= rejectionsBeforeClose {
            tripped = true
            return .exceeded
        }
        return .rejected
    }
}
