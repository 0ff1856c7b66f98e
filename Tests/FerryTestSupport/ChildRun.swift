import Foundation

/// What one run of a child process (the built `ferryctl`, a tool) printed, and how it exited.
package struct ChildRun: CustomStringConvertible {
    package let status: Int32
    package let stdout: String
    package let stderr: String

    /// Standard output as a JSON object, for `--json` runs.
    package var json: JSON? { parseJSONObject(stdout) }

    package var description: String { "exit \(status)\n--- stdout:\n\(stdout)--- stderr:\n\(stderr)" }
}

/// Runs `process` (not started) with `input` on its standard input and waits for it to exit;
/// kills it and throws after `timeout` seconds.
package func runToCompletion(_ process: Process, input: String = "", timeout: TimeInterval) throws -> ChildRun {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("child-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    // Files, not pipes: a chatty child can never block on a full pipe while we wait for it.
    let files = ["stdin", "stdout", "stderr"].map { folder.appendingPathComponent($0) }
    _ = FileManager.default.createFile(atPath: files[0].path, contents: Data(input.utf8))
    _ = FileManager.default.createFile(atPath: files[1].path, contents: nil)
    _ = FileManager.default.createFile(atPath: files[2].path, contents: nil)
    let handles = try [FileHandle(forReadingFrom: files[0]), FileHandle(forWritingTo: files[1]), FileHandle(forWritingTo: files[2])]
    defer { for handle in handles { try? handle.close() } }

    process.standardInput = handles[0]
    process.standardOutput = handles[1]
    process.standardError = handles[2]
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try process.run()
    if exited.wait(timeout: .now() + timeout) == .timedOut {
        process.terminate()
        throw TestFailure("\(process.executableURL?.lastPathComponent ?? "child") \(process.arguments ?? []) did not exit within \(timeout) s")
    }
    let read = { (url: URL) in String(decoding: FileManager.default.contents(atPath: url.path) ?? Data(), as: UTF8.self) }
    return ChildRun(status: process.terminationStatus, stdout: read(files[1]), stderr: read(files[2]))
}
