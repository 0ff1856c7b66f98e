import FerryCore
import FerryProtocol
import Testing

/// The bucket on a clock the test drives (nanoseconds).
@Suite("Token bucket")
struct TokenBucketTests {
    private let second: UInt64 = 1_000_000_000

    @Test func aBatchTakesAllItsTokensOrNone() throws {
        var bucket = try #require(TokenBucket(rate: 10, burst: 5))
        let start = 5 * second
        #expect(bucket.take(3, at: start) == nil)
        // Two left: three is refused and takes nothing, so two still pass.
        #expect(bucket.take(3, at: start) == second / 10)
        #expect(bucket.take(2, at: start) == nil)
        #expect(bucket.take(1, at: start) == second / 10)
    }

    @Test func theWaitIsUntilTheTokensAreBack() throws {
        var bucket = try #require(TokenBucket(rate: 1, burst: 3))
        let start = 5 * second
        #expect(bucket.take(3, at: start) == nil)
        let refused = bucket.take(2, at: start)
        let wait = try #require(refused)
        #expect(wait == 2 * second)
        #expect(bucket.take(2, at: start + wait - 1) != nil)
        #expect(bucket.take(2, at: start + wait) == nil)
    }

    @Test func moreThanTheBurstNeverPasses() throws {
        var bucket = try #require(TokenBucket(rate: 1000, burst: 4))
        #expect(bucket.take(5, at: 100 * second) == .max)
        #expect(bucket.isFull(at: 100 * second))
    }

    @Test func aBucketIsFullAgainOnceItsTokensAreBack() throws {
        var bucket = try #require(TokenBucket(rate: 2, burst: 2))
        let start = 5 * second
        #expect(bucket.isFull(at: start))
        #expect(bucket.take(at: start) == nil)
        #expect(!bucket.isFull(at: start + second / 2 - 1))
        #expect(bucket.isFull(at: start + second / 2))
    }

    @Test func aHugeBurstIsClampedInsteadOfOverflowing() throws {
        let bucket = try #require(TokenBucket(rate: 1, burst: .max))
        #expect(bucket.burst == TokenBucket.maxBurst)
    }
}

/// Buckets per client on a clock the test drives.
@Suite("Publish rate buckets")
struct PublishRateBucketsTests {
    private let second: UInt64 = 1_000_000_000

    @Test func eachClientHasABucketOfItsOwn() throws {
        let buckets = try #require(PublishRateBuckets(limits: Limits(publishRate: 1, publishBurst: 2)))
        let now = 10 * second
        #expect(buckets.admit(2, for: "a", at: now) == .allowed)
        #expect(buckets.admit(1, for: "a", at: now) == .retryAfter(seconds: 1))
        #expect(buckets.admit(2, for: "b", at: now) == .allowed)
        #expect(buckets.admit(3, for: "c", at: now) == .overBurst)
        // A wait of a fraction of a second is rounded up.
        #expect(buckets.admit(1, for: "a", at: now + second / 2) == .retryAfter(seconds: 1))
        #expect(buckets.admit(1, for: "a", at: now + second) == .allowed)
    }

    @Test func noRateMeansNoBuckets() {
        #expect(PublishRateBuckets(limits: Limits(publishRate: 0)) == nil)
    }

    /// Clients whose bucket is full again are forgotten: one-off clients do not accumulate.
    @Test func idleClientsAreForgotten() throws {
        let buckets = try #require(PublishRateBuckets(limits: Limits(publishRate: 100, publishBurst: 10)))
        var now = 10 * second
        for round in 0..<50 {
            for client in 0..<1000 {
                #expect(buckets.admit(1, for: "\(round)-\(client)", at: now) == .allowed)
            }
            // Each round's clients are full again a tenth of a second later.
            now += second
        }
        #expect(buckets.count <= 2048, "\(buckets.count) buckets for 50,000 one-off clients")
    }
}
