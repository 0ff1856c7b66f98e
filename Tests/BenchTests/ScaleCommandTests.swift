import FerryTestSupport
import Foundation
import Testing

/// `ferry-bench scale` run as a person runs it, against brokers it starts itself: each point
/// becomes a JSON line and a mark on the plot, failed points included.
@Suite("ferry-bench scale")
struct ScaleCommandTests {
    @Test(.timeLimit(.minutes(3)))
    func aTinySweepWritesItsPointsAndAPlotOfThem() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let run = try runToCompletion(
            try bench(["scale", "subscribers", "--points", "1,2", "--deliveries", "400", "--timeout", "60", "--out", folder.path]), timeout: 150)
        #expect(run.status == 0, "\(run)")
        #expect(run.stdout.contains("subscribers 2: deliveries/s"), "\(run)")

        let points = try jsonLines(folder.appendingPathComponent("subscribers.jsonl"))
        #expect(points.map { $0.int("x") } == [1, 2])
        for point in points {
            #expect(point.bool("ok") == true && point.string("curve") == "subscribers", "\(point.text)")
            #expect(point.string("date") != nil && point.string("host") != nil && point.string("commit") != nil, "\(point.text)")
            #expect((point.object("y")?.double("deliveries_per_s") ?? 0) > 0 && (point.object("y")?.double("p99_ms") ?? 0) > 0, "\(point.text)")
        }
        // 400 deliveries: 400 messages to 1 subscriber, 200 to each of 2; the command runs the point alone.
        #expect(points.last?.string("command") == "ferry-bench pubsub --subscribers 2 --messages 200 --timeout 60.0")
        #expect(points.map { $0.object("result")?.int("messages") } == [400, 200])

        let svg = try SVGElements(String(decoding: try Data(contentsOf: folder.appendingPathComponent("subscribers.svg")), as: UTF8.self))
        let marks = svg.elements.filter { $0.attributes["class"] == "point" }
        #expect(marks.count == 4, "both series at both points")
        #expect(svg.elements.filter { $0.attributes["class"] == "failed" }.isEmpty)
        for point in points {
            let x = try #require(point.int("x"))
            let deliveries = try #require(point.object("y")?.double("deliveries_per_s"))
            let plotted = marks.filter { $0.attributes["data-x"].flatMap(Double.init) == Double(x) }.compactMap { $0.attributes["data-y"].flatMap(Double.init) }
            #expect(plotted.contains { abs($0 - deliveries) <= 1e-6 * deliveries }, "x \(x): \(plotted) against \(deliveries)")
        }
        #expect(svg.text.contains("durable subscribers") && svg.text.contains("deliveries/s"))
    }

    /// No broker can start: every point fails, each is a JSON line with its error and a red ×
    /// on the plot, and the run exits with 1 after writing them.
    @Test(.timeLimit(.minutes(1)))
    func failedPointsAreRecordedAndDrawnMissing() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let process = try bench(["scale", "missed", "--points", "1k,10k", "--out", folder.path])
        process.environment?["FERRYD_PATH"] = folder.appendingPathComponent("no-such-ferryd").path
        let run = try runToCompletion(process, timeout: 50)
        #expect(run.status == 1 && run.stderr.contains("2 of 2 points failed"), "\(run)")

        let points = try jsonLines(folder.appendingPathComponent("missed.jsonl"))
        #expect(points.map { $0.int("x") } == [1000, 10_000])
        #expect(points.allSatisfy { $0.bool("ok") == false && ($0.string("error") ?? "").contains("no-such-ferryd") }, "\(points.map(\.text))")
        let svg = try SVGElements(String(decoding: try Data(contentsOf: folder.appendingPathComponent("missed.svg")), as: UTF8.self))
        #expect(svg.elements.filter { $0.attributes["class"] == "point" }.isEmpty)
        let failed = svg.elements.filter { $0.attributes["class"] == "failed" }.compactMap { $0.attributes["data-x"].flatMap(Double.init) }
        #expect(failed.sorted() == [1000, 1000, 10_000, 10_000], "two series, two points each")
    }

    @Test func aBadSweepIsRefusedBeforeAnyRun() throws {
        for points in ["0", "1,x", "", "1.5"] {
            let run = try runToCompletion(try bench(["scale", "topics", "--points", points, "--out", "/nonexistent/never"]), timeout: 30)
            #expect(run.status != 0 && run.stderr.contains("--points"), "\(points): \(run)")
        }
        let all = try runToCompletion(try bench(["scale", "all", "--points", "1"]), timeout: 30)
        #expect(all.status != 0 && all.stderr.contains("one curve"), "\(all)")
    }

    private func bench(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = try locateExecutable(named: "ferry-bench", override: "FERRY_BENCH_PATH")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
        return process
    }

    private func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scale-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    private func jsonLines(_ file: URL) throws -> [JSON] {
        let text = String(decoding: try Data(contentsOf: file), as: UTF8.self)
        return try text.split(separator: "\n").map { line in try #require(parseJSONObject(String(line)), "not a JSON object: \(line)") }
    }
}
