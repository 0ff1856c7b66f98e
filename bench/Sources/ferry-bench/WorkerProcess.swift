import FerryTestSupport
import Foundation

/// This tool run again as a child process, with its standard output read line by line. A
/// worker always prints its last line by its own timeout, so reading needs no deadline here.
final class WorkerProcess {
    private let process: Process
    private var lines: AsyncStream<String>.Iterator

    init(arguments: [String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        self.lines = lines.makeAsyncIterator()
        try process.run()
        let reader = output.fileHandleForReading
        // Blocking reads on a thread of their own, never on the cooperative pool.
        // A worker's report is one line of megabytes: only the bytes just read are searched for
        // its end, and the line is cut once (searching and cutting from the start each read cost
        // seconds of CPU beside the clients being measured).
        _ = BackgroundThread {
            var buffer: [UInt8] = []
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                var searchFrom = buffer.count
                buffer.append(contentsOf: chunk)
                var lineStart = 0
                while let newline = buffer[searchFrom...].firstIndex(of: UInt8(ascii: "\n")) {
                    continuation.yield(String(decoding: buffer[lineStart..<newline], as: UTF8.self))
                    lineStart = newline + 1
                    searchFrom = lineStart
                }
                buffer.removeFirst(lineStart)
            }
            continuation.finish()
        }
    }

    deinit {
        if process.isRunning { process.terminate() }
    }

    var processID: Int32 { process.processIdentifier }

    /// The next line the worker prints.
    func nextLine() async throws -> String {
        guard let line = await lines.next() else { throw TestFailure("a worker exited early") }
        return line
    }

    func expectLine(_ expected: String) async throws {
        let line = try await nextLine()
        guard line == expected else { throw TestFailure("a worker said \(line.prefix(200)) instead of \(expected)") }
    }
}

/// The subscribers of `storm` and `failover`: `clients` FerryClients spread over `workers`
/// `storm-worker` child processes.
struct WorkerPool {
    let children: [WorkerProcess]

    /// `arguments` go to every worker, after its share of the clients and its client-id prefix.
    init(clients: Int, workers: Int, arguments: [String]) throws {
        let perWorker = (clients + workers - 1) / max(1, workers)
        children = try (0..<workers).compactMap { index in
            let count = min(perWorker, clients - index * perWorker)
            guard count > 0 else { return nil }
            return try WorkerProcess(arguments: ["storm-worker", "--clients", "\(count)", "--prefix", "w\(index)-"] + arguments)
        }
    }

    /// CPU seconds the workers used so far.
    var cpu: Double { children.map { cpuSeconds(of: $0.processID) }.reduce(0, +) }

    /// Returns once every client of every worker is connected.
    func ready() async throws {
        for child in children { try await child.expectLine("ready") }
    }

    /// Every client's log, the clients' log lines counted and the workers' CPU, once each worker
    /// has all its messages or reached its timeout.
    func report() async throws -> StormWorker.Report {
        var report = StormWorker.Report(clients: [], logged: [:], cpuSeconds: 0)
        for child in children {
            let line = try await child.nextLine()
            let part = try JSONDecoder().decode(StormWorker.Report.self, from: Data(line.utf8))
            report.clients += part.clients
            report.logged.merge(part.logged, uniquingKeysWith: +)
            report.cpuSeconds += part.cpuSeconds
        }
        return report
    }
}
