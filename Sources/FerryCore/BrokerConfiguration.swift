import FerryProtocol
import FerryStore

/// What a broker enforces and announces. Every field has the default PROTOCOL.md gives.
public struct BrokerConfiguration: Sendable {
    /// Seconds between WebSocket pings; 2.5 × this of silence closes a connection.
    public var heartbeatSeconds: Double = 20
    public var limits = Limits()
    /// A durable session unused this long is removed (milliseconds).
    public var sessionTTL: UInt64 = 7 * 24 * 3600 * 1000
    /// Acks are persisted at most this long after they arrive (milliseconds).
    public var ackFlushInterval: UInt64 = 50
    /// How often age retention and `msg_id` expiry run (milliseconds).
    public var sweepInterval: UInt64 = 1000
    /// How long a `hello` waits for another broker of a cluster to let its session go (close its
    /// connection, commit its acks) before it resumes from the stored floors anyway (milliseconds).
    public var handoverTimeout: UInt64 = 2000
    /// How often sessions past `sessionTTL` are looked for (a pass over every stored session), in milliseconds.
    public var sessionSweepInterval: UInt64 = 60_000
    /// Publishes refused for the rate limit within 10 s that close the connection with 4029.
    public var publishRejectionsBeforeClose = 100
    /// Publishes a connection may have waiting for their commit before it stops reading.
    public var maxPendingPublishesPerConnection = 8192
    /// Recent messages kept encoded per topic, so live delivery needs no store read.
    public var cachedMessagesPerTopic = 4096
    /// The clock, in milliseconds since 1970; injected by tests.
    public var now: @Sendable () -> Timestamp = { systemMilliseconds() }

    public init() {}
}

/// Monotonic nanoseconds (`CLOCK_MONOTONIC`, the clock of NIO's deadlines).
public func monotonicNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Wall-clock milliseconds since 1970.
public func systemMilliseconds() -> Timestamp {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
