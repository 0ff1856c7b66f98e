import FerryTestSupport
import Foundation
import Testing

/// `ferryctl bench`: ferry-bench's pub/sub scenario against a running broker, through its URL
/// and token, leaving nothing behind.
@Suite("ferryctl bench")
struct FerryctlBenchTests {
    /// With authentication on, so the connections must present the token: the figures come back
    /// as a table or JSON, the broker counted every publish, and the run's topics and durable
    /// clients are gone afterwards.
    @Test(.timeLimit(.minutes(3)))
    func measuresARunningBrokerAndDeletesWhatItMade() throws {
        let ferryd = try Ferryd(environment: ["FERRY_JWT_SECRET": Token.secret, "FERRY_ADMIN_TOKEN": testAdminToken])
        let json = try ferryctl(["bench", "--messages", "2000", "--subscribers", "2", "--topics", "2", "--output", "json"], broker: ferryd, timeout: 150)
        #expect(json.status == 0, "\(json)")
        let figures = try #require(json.json, "\(json)")
        #expect(figures.string("scenario") == "pubsub-remote-2-topics")
        #expect(figures.int("messages") == 2000 && figures.int("subscribers") == 2)
        #expect((figures["deliveries_per_s"] as? Double ?? 0) > 0 && figures.object("latency_us")?["p99"] != nil, "\(figures)")

        let table = try ferryctl(["bench", "--messages", "500"], broker: ferryd, timeout: 150)
        #expect(table.status == 0, "\(table)")
        for line in ["published (confirmed)", "delivered and acked", "end-to-end latency"] {
            #expect(table.stdout.contains(line), "\(table)")
        }
        #expect(try ferryd.admin("GET", "/stats").json?.int("published") == 2500)
        #expect(try ferryd.admin("GET", "/topics").json?.objects("topics")?.isEmpty == true)
        #expect(try ferryd.admin("GET", "/clients").json?.objects("clients")?.isEmpty == true)
    }

    /// A token the broker refuses stops the command before any load, with the exit code of the
    /// contract; a missing ferry-bench is named.
    @Test func refusesClearlyBeforeAnyLoad() throws {
        let ferryd = try Ferryd.withAdmin()
        let refused = try ferryctl(["bench"], broker: ferryd, token: "not-the-token")
        #expect(refused.status == 4 && refused.stderr.contains("unauthorized"), "\(refused)")
        let process = try ferryctlProcess(["bench", "--messages", "10"], broker: ferryd)
        process.environment?["FERRY_BENCH_PATH"] = ferryd.directory.appendingPathComponent("no-such-ferry-bench").path
        let missing = try runToCompletion(process, timeout: 60)
        #expect(missing.status == 1 && missing.stderr.contains("no-such-ferry-bench"), "\(missing)")
        #expect(try ferryd.admin("GET", "/stats").json?.int("published") == 0)
    }
}
