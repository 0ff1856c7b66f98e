import FerryProtocol

/// A connection's publish rate limit: a ``TokenBucket``, and the rule that turns repeated
/// refusals into a close.
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

    private var bucket: TokenBucket
    private let rejectionsBeforeClose: Int
    private var rejections = 0
    private var windowStart: UInt64 = 0
    private var tripped = false

    /// A limiter, or nil when `rate` is 0 (no limit).
    /// - Parameters:
    ///   - rate: publishes per second sustained.
    ///   - burst: publishes accepted at once from a full bucket (at least 1).
    ///   - rejectionsBeforeClose: refusals within ``rejectionWindow`` that close the connection.
    public init?(rate: Int, burst: Int, rejectionsBeforeClose: Int) {
        guard let bucket = TokenBucket(rate: rate, burst: burst) else { return nil }
        self.bucket = bucket
        self.rejectionsBeforeClose = max(1, rejectionsBeforeClose)
    }

    /// Takes a token for a publish at `now` (monotonic nanoseconds), or says why not.
    public mutating func admit(at now: UInt64) -> Verdict {
        if tripped { return .exceeded }
        if bucket.take(at: now) == nil { return .allowed }
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

extension ProtocolError {
    /// The answer to a publish refused for the rate limit, over WebSocket or HTTP.
    public static func overPublishRate(_ limits: Limits, retryAfter seconds: Int? = nil) -> ProtocolError {
        let retry = seconds.map { ", retry after \($0) s" } ?? ""
        return ProtocolError(.rateLimited, "over \(limits.publishRate) publishes per second (burst \(limits.publishBurst)); not stored\(retry)")
    }
}
