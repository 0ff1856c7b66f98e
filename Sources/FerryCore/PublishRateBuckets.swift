import FerryProtocol
import Synchronization

/// The publish rate limit of requests that have no connection (HTTP publishes): a
/// ``TokenBucket`` per client key (a token's subject, else the remote address).
///
/// A bucket that is full again says no more than a new one would, so full buckets are dropped:
/// the table holds only the clients that published within the last `burst / rate` seconds.
/// Dropping them is amortised over the admissions that grow the table.
public final class PublishRateBuckets: Sendable {
    /// What to do with a publish of some messages.
    public enum Verdict: Sendable, Equatable {
        case allowed
        /// Over the rate: retry after this many whole seconds (at least 1).
        case retryAfter(seconds: Int)
        /// More messages than a full bucket holds: it can never pass.
        case overBurst
    }

    private let prototype: TokenBucket
    private let state = Mutex(State())

    private struct State {
        var buckets: [String: TokenBucket] = [:]
        /// The table size at which full buckets are dropped next.
        var sweepAt = PublishRateBuckets.minimumSweep
    }

    private static let minimumSweep = 1024

    /// Buckets for `limits`, or nil when publishes are not rate limited.
    public init?(limits: Limits) {
        guard let prototype = TokenBucket(rate: limits.publishRate, burst: limits.publishBurst) else { return nil }
        self.prototype = prototype
    }

    /// Takes `count` tokens from `client`'s bucket at `now` (monotonic nanoseconds), all or none.
    public func admit(_ count: Int, for client: String, at now: UInt64 = monotonicNanoseconds()) -> Verdict {
        state.withLock { state in
            if state.buckets.count >= state.sweepAt {
                state.buckets = state.buckets.filter { !$0.value.isFull(at: now) }
                state.sweepAt = max(Self.minimumSweep, 2 * state.buckets.count)
            }
            var bucket = state.buckets[client] ?? prototype
            guard let wait = bucket.take(count, at: now) else {
                state.buckets[client] = bucket
                return .allowed
            }
            if wait == .max { return .overBurst }
            return .retryAfter(seconds: Int(max(1, (wait + 999_999_999) / 1_000_000_000)))
        }
    }

    /// How many clients have a bucket now.
    public var count: Int { state.withLock { $0.buckets.count } }
}
