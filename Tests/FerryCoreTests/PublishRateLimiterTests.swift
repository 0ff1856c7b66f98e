import FerryCore
import Testing

/// The token bucket on a clock the test drives (nanoseconds).
@Suite("Publish rate limiter")
struct PublishRateLimiterTests {
    private let second: UInt64 = 1_000_000_000

    @Test func noRateMeansNoLimiter() {
        #expect(PublishRateLimiter(rate: 0, burst: 10, rejectionsBeforeClose: 1) == nil)
    }

    @Test func aFullBucketTakesTheBurstThenOneTokenPerInterval() throws {
        var limiter = try #require(PublishRateLimiter(rate: 10, burst: 3, rejectionsBeforeClose: 100))
        let start = 5 * second
        #expect((0..<3).map { _ in limiter.admit(at: start) } == [.allowed, .allowed, .allowed])
        #expect(limiter.admit(at: start) == .rejected)
        // 100 ms later exactly one token is back.
        #expect(limiter.admit(at: start + second / 10) == .allowed)
        #expect(limiter.admit(at: start + second / 10) == .rejected)
        // After a quiet second the bucket is full again, and not fuller.
        let later = start + 2 * second
        #expect((0..<4).map { _ in limiter.admit(at: later) } == [.allowed, .allowed, .allowed, .rejected])
    }

    @Test func theSustainedRateIsAllowedForever() throws {
        var limiter = try #require(PublishRateLimiter(rate: 1000, burst: 1, rejectionsBeforeClose: 1))
        for step in 1...10_000 {
            #expect(limiter.admit(at: UInt64(step) * second / 1000) == .allowed)
        }
    }

    @Test func refusalsWithinTenSecondsCloseAndStayClosed() throws {
        var limiter = try #require(PublishRateLimiter(rate: 1, burst: 1, rejectionsBeforeClose: 3))
        let start = 100 * second
        #expect(limiter.admit(at: start) == .allowed)
        #expect(limiter.admit(at: start) == .rejected)
        #expect(limiter.admit(at: start + 1) == .rejected)
        #expect(limiter.admit(at: start + 2) == .exceeded)
        #expect(limiter.admit(at: start + 60 * second) == .exceeded)
    }

    @Test func refusalsSpreadOverMoreThanTheWindowDoNotClose() throws {
        var limiter = try #require(PublishRateLimiter(rate: 1, burst: 1, rejectionsBeforeClose: 2))
        var now = 100 * second
        for _ in 0..<10 {
            #expect(limiter.admit(at: now) == .allowed)
            #expect(limiter.admit(at: now) == .rejected)
            now += PublishRateLimiter.rejectionWindow + 1
        }
    }
}
