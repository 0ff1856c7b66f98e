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
        _ = BackgroundThread {
            var buffer = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    continuation.yield(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
            }
            continuation.finish()
        }
    }

    deinit {
        if process.isRunning { process.terminate() }
    }

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
