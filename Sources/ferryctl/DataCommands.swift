import ArgumentParser
import FerryProtocol
import FerryStore
import Foundation

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a compacted hot copy of the broker's data into an empty folder.",
        discussion: """
            The broker writes the copy (LMDB's compacting copy) while it keeps serving, so DEST is a \
            folder on the broker's machine; a relative DEST is taken from the current folder. To restore, \
            start ferryd with --data DEST.
            """
    )

    @OptionGroup var admin: AdminOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "An empty or missing folder for the copy.") var dest: String

    func run() async throws {
        let client = try admin.client()
        let path = URL(fileURLWithPath: dest).standardizedFileURL.path
        var progress: (bar: ProgressBar, task: Task<Void, Never>)?
        if !output.json, Format.isTerminal(STDERR_FILENO) {
            let expected = try await client.get("/v1/admin/stats", as: BrokerStats.self).0.dataBytes
            let bar = ProgressBar(file: path + "/data.mdb", expected: expected)
            progress = (bar, Task { await bar.run() })
        }
        var copied = false
        defer {
            if let progress {
                progress.task.cancel()
                // A failure's message starts on a line of its own.
                if !copied { FileHandle.standardError.write(Data("\n".utf8)) }
            }
        }
        let body = try await client.send("POST", "/v1/admin/backup", json: BackupRequest(path: path), timeout: 24 * 3600)
        copied = true
        if let progress {
            progress.task.cancel()
            await progress.task.value
            progress.bar.complete()
        }
        if output.json { return output.printBody(body) }
        let result = try client.decode(BackupResult.self, body)
        print("backup written to \(result.path) (\(Format.bytes(result.bytes)))")
    }
}

/// A progress bar on standard error: the size of the file being written against the size expected.
private struct ProgressBar {
    let file: String
    let expected: Int

    /// Redraws until cancelled.
    func run() async {
        while !Task.isCancelled {
            draw(written(), of: expected)
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The full bar: the copy is compacted, so it usually ends short of the estimate.
    func complete() {
        let bytes = written()
        draw(bytes, of: bytes)
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func written() -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int) ?? 0
    }

    private func draw(_ bytes: Int, of total: Int) {
        let fraction = total > 0 ? min(1, Double(bytes) / Double(total)) : 1
        let filled = Int(fraction * 30)
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: 30 - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(Int(fraction * 100))%  \(Format.bytes(bytes))   ".utf8))
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a data folder offline: gapless versions, ack floors in range, indexes that agree.",
        discussion: "The folder is opened read-only, so a running broker may keep using it. Exits 1 and lists each fault when there is one."
    )

    @Option(help: "The data folder (ferryd's --data).") var data: String
    @OptionGroup var output: OutputOptions

    private struct Report: Encodable {
        struct Fault: Encodable {
            var kind: String
            var subject: String?
            var message: String
        }

        var data: String
        var ok: Bool
        var faults: [Fault]
    }

    func run() async throws {
        var configuration = LMDBStoreConfiguration(path: data)
        configuration.readOnly = true
        let faults: [StoreFault]
        do {
            faults = try LMDBMessageStore(configuration: configuration).verify()
        } catch {
            throw Failure("cannot check \(data): \(error)")
        }
        if output.json {
            try output.printJSON(
                Report(
                    data: data, ok: faults.isEmpty,
                    faults: faults.map { Report.Fault(kind: $0.kind.rawValue, subject: $0.subject, message: $0.message) }))
        } else if faults.isEmpty {
            print("ok: \(data) is consistent")
        } else {
            for fault in faults { print(fault) }
        }
        if !faults.isEmpty { throw Failure("\(faults.count) fault(s) in \(data)") }
    }
}
