import ArgumentParser
import Foundation

/// `ferryctl bench`: ferry-bench's pub/sub scenario against the broker at `--url`, as `nats bench`
/// is for NATS, so operators can measure their own deployment.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a running broker: 1 publisher → N durable subscribers, throughput or latency at a fixed rate.",
        discussion: """
            Runs ferry-bench's pubsub scenario (the ferry-bench built beside ferryctl, FERRY_BENCH_PATH, or one on PATH) \
            against the broker at --url, its connections presenting the admin token. The run's topics and durable clients \
            are named ferryctl-bench-<random> and deleted through the admin API afterwards (--keep leaves them). Publishes \
            are confirmed once stored, so the figures include the broker's disk; latency is from each message's send to its \
            arrival at a subscriber, through the network both ways. The broker's own CPU is not seen from here.
            """
    )

    @OptionGroup var admin: AdminOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Durable subscribers.") var subscribers = 1
    @Option(help: "Messages published.") var messages = 100_000
    @Option(help: "Payload bytes.") var size = 100
    @Option(help: "Publish at this many messages per second (latency) instead of as fast as confirmed (throughput).") var rate: Int?
    @Option(help: "Topics the publisher writes round-robin.") var topics = 1
    @Flag(help: "Subscribe to the topics through one pattern instead of one subscription each.") var pattern = false
    @Option(help: "Unconfirmed publishes kept outstanding (without --rate).") var inFlight = 4096
    @Option(help: "Give up after this many seconds.") var timeout = 300.0
    @Flag(help: "Keep the run's topics and durable clients on the broker.") var keep = false

    func run() async throws {
        let client = try admin.client()
        // One line for a broker that is not there or a token it refuses, before any load.
        _ = try await client.send("GET", "/v1/admin/stats")
        let prefix = "ferryctl-bench-" + String(UInt32.random(in: .min ... .max), radix: 16)
        let process = Process()
        process.executableURL = try Self.ferryBench()
        process.arguments =
            [
                "pubsub", "--url", admin.broker.baseURL, "--prefix", prefix, "--subscribers", String(subscribers),
                "--messages", String(messages), "--size", String(size), "--topics", String(topics), "--in-flight", String(inFlight),
                "--timeout", String(timeout),
            ] + (rate.map { ["--rate", String($0)] } ?? []) + (pattern ? ["--pattern"] : [])
        // The token goes in the environment: arguments are visible to every user of the machine.
        var environment = ProcessInfo.processInfo.environment
        environment["FERRY_TOKEN"] = client.token
        process.environment = environment
        let standardOutput = Pipe()
        process.standardOutput = standardOutput
        let status = try await Self.run(process, collecting: standardOutput)
        let printed = String(decoding: status.output, as: UTF8.self).split(separator: "\n")
        if !keep { try await deleteRun(prefix, client: client) }
        guard status.code == 0 else { throw Failure("ferry-bench failed (exit \(status.code))") }
        if output.json {
            printed.last { $0.hasPrefix("{") }.map { output.printBody(Data($0.utf8)) }
        } else {
            for line in printed where !line.hasPrefix("{") { print(line) }
        }
    }

    /// Deletes the run's topics and durable clients; says which it could not.
    private func deleteRun(_ prefix: String, client: AdminClient) async throws {
        let names = topics == 1 ? [prefix] : (0..<topics).map { "\(prefix).\($0)" }
        let paths = names.map { AdminClient.path("topics", $0) } + (0..<subscribers).map { AdminClient.path("clients", "\(prefix)-sub-\($0)") }
        var left: [String] = []
        for path in paths {
            let (status, _) = try await client.exchange("DELETE", path)
            // 404: never made (a run that failed early).
            if !(200..<300).contains(status) && status != 404 { left.append(path) }
        }
        if !left.isEmpty { throw Failure("could not delete what the run made: \(left.joined(separator: ", "))") }
    }

    /// The ferry-bench executable: FERRY_BENCH_PATH, beside this ferryctl, or on PATH.
    private static func ferryBench() throws -> URL {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["FERRY_BENCH_PATH"], !path.isEmpty { return URL(fileURLWithPath: path) }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let folders = [beside] + (environment["PATH"] ?? "").split(separator: ":").map { URL(fileURLWithPath: String($0)) }
        guard let found = folders.map({ $0.appendingPathComponent("ferry-bench") }).first(where: { FileManager.default.isExecutableFile(atPath: $0.path) })
        else {
            throw Failure("ferry-bench not found beside ferryctl or on PATH: build it (swift build -c release --product ferry-bench) or set FERRY_BENCH_PATH")
        }
        return found
    }

    /// Runs `process` to its end, its standard output read as it comes (so it never blocks on a
    /// full pipe); standard error stays the terminal's, where ferry-bench reports progress.
    private static func run(_ process: Process, collecting pipe: Pipe) async throws -> (code: Int32, output: Data) {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: Failure("cannot start \(process.executableURL?.path ?? "ferry-bench"): \(error)"))
                return
            }
            Thread {
                let output = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, output))
            }.start()
        }
    }
}
