/// Exponential backoff with full jitter: attempt *n* waits a uniformly random time in
/// `0 ... min(cap, initial × factor^n)`, so a crowd of clients dropped together spreads out
/// instead of reconnecting in waves.
public struct Backoff: Sendable, Equatable {
    public var initial: Duration
    public var factor: Double
    public var cap: Duration

    public init(initial: Duration = .milliseconds(100), factor: Double = 2, cap: Duration = .seconds(30)) {
        self.initial = initial
        self.factor = factor
        self.cap = cap
    }

    /// The upper bound of the wait before attempt `attempt` (0-based).
    public func ceiling(attempt: Int) -> Duration {
        let seconds = Self.seconds(initial) * pow(factor, Double(max(0, attempt)))
        return seconds >= Self.seconds(cap) ? cap : .nanoseconds(Int64(seconds * 1e9))
    }

    /// A jittered wait before attempt `attempt`.
    public func delay(attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        // 53 random bits as a fraction in [0, 1): one draw, no rejection loop.
        let fraction = Double(generator.next() >> 11) * 0x1p-53
        return .nanoseconds(Int64(Self.seconds(ceiling(attempt: attempt)) * fraction * 1e9))
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private func pow(_ base: Double, _ exponent: Double) -> Double {
        // Repeated multiplication keeps Foundation out of this file; exponents are small.
        var result = 1.0
        var remaining = Int(exponent)
        while remaining > 0 && result < 1e12 {
            result *= base
            remaining -= 1
        }
        return result
    }
}
