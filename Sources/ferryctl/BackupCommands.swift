import ArgumentParser
import FerryProtocol
import FerryStore
import Foundation

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download a consistent, compacted backup of the broker's data into a file on this machine.",
        discussion: """
            The broker (which may be remote: --url) streams a compacted copy of its store while it keeps \
            serving; FILE is written as FILE.partial and renamed only once the backup file's checksum \
            verifies. It prints the file's size and SHA-256 (as sha256sum does). Restore it with \
            `ferryctl restore FILE DIR`; check it with `ferryctl verify FILE`. With --on-broker, DEST is \
            instead an empty or missing folder on the broker's machine that the broker writes the copy \
            into (a relative DEST is taken from the current folder); start ferryd with --data DEST to restore \
            that. A PostgreSQL-backed broker takes no backups: use pg_dump or pg_basebackup.
            """
    )

    @OptionGroup var admin: AdminOptions
    @OptionGroup var output: OutputOptions
    @Flag(help: "Have the broker write the copy into DEST, a folder on its own machine.") var onBroker = false
    @Argument(
        help: ArgumentHelp(
            "The backup file to write (with --on-broker: DEST, an empty or missing folder on the broker's machine).", valueName: "file"))
    var destination: String

    private struct Result: Encodable {
        var file: String
        var bytes: UInt64
        var dataBytes: UInt64
        var sha256: String

        enum CodingKeys: String, CodingKey {
            case file, bytes, sha256
            case dataBytes = "data_bytes"
        }
    }

    func run() async throws {
        let client = try admin.client()
        if onBroker { return try await backupOnBroker(client) }
        let path = URL(fileURLWithPath: destination).standardizedFileURL.path
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
            guard !isFolder.boolValue else {
                throw Failure("\(path) is a folder: give a file name, or --on-broker for a folder on the broker's machine", code: .usage)
            }
            throw Failure("\(path) exists: remove it or give another name")
        }
        let partial = path + ".partial"
        guard FileManager.default.createFile(atPath: partial, contents: nil), let file = FileHandle(forWritingAtPath: partial) else {
            throw Failure("cannot write \(partial)")
        }
        let summary: BackupFileSummary
        do {
            defer { try? file.close() }
            summary = try await BackupDownload.run(client: client, into: file, showsProgress: !output.json && Format.isTerminal(STDERR_FILENO))
            try file.synchronize()
            try FileManager.default.moveItem(atPath: partial, toPath: path)
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        if output.json {
            return try output.printJSON(Result(file: path, bytes: summary.fileBytes, dataBytes: summary.dataBytes, sha256: summary.sha256))
        }
        print("backup written to \(path) (\(Format.bytes(summary.fileBytes)))")
        print("sha256 \(summary.sha256)")
    }

    /// The folder form: the broker writes the copy on its own machine.
    private func backupOnBroker(_ client: AdminClient) async throws {
        let path = URL(fileURLWithPath: destination).standardizedFileURL.path
        var progress: (bar: ProgressBar, task: Task<Void, Never>)?
        if !output.json, Format.isTerminal(STDERR_FILENO) {
            let expected = try await client.get("/v1/admin/stats", as: BrokerStats.self).0.dataBytes
            let bar = ProgressBar(expected: expected)
            // The copy is written on the broker's machine: its size is seen when that is this one.
            progress = (bar, Task { while !Task.isCancelled { bar.update(Self.size(of: path + "/data.mdb")); try? await Task.sleep(for: .milliseconds(100)) } })
        }
        var copied = false
        defer {
            if let progress {
                progress.task.cancel()
                if !copied { progress.bar.abandon() }
            }
        }
        let body = try await client.send("POST", "/v1/admin/backup", json: BackupRequest(path: path), timeout: 24 * 3600)
        copied = true
        if let progress {
            progress.task.cancel()
            await progress.task.value
            progress.bar.complete(Self.size(of: path + "/data.mdb"))
        }
        if output.json { return output.printBody(body) }
        let result = try client.decode(BackupResult.self, body)
        print("backup written to \(result.path) (\(Format.bytes(result.bytes)))")
    }

    private static func size(of file: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? Int) ?? 0
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a backup file and unpack it into a new data folder for `ferryd --data DIR`.",
        discussion: """
            FILE is checked first (its header, length and SHA-256): a truncated or damaged file is refused \
            and nothing is left in DIR. DIR must be empty or missing. The unpacked folder is then checked \
            as `ferryctl verify --data DIR` does; exits 1 and lists each fault when there is one.
            """
    )

    @Argument(help: "A backup file (from `ferryctl backup FILE`).") var file: String
    @Argument(help: "An empty or missing folder for the data.") var folder: String
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let created = try BackupArchive.prepareEmptyFolder(folder)
        let summary: BackupFileSummary
        do {
            summary = try BackupArchive.unpack(file, into: folder)
        } catch {
            if created { try? FileManager.default.removeItem(atPath: folder) }
            throw error
        }
        let faults = try BackupArchive.faults(in: folder)
        let report = CheckReport(file: file, data: folder, bytes: summary.fileBytes, sha256: summary.sha256, faults: faults)
        if output.json {
            try output.printJSON(report)
        } else {
            print("restored \(file) into \(folder) (\(Format.bytes(summary.dataBytes)) of data; sha256 \(summary.sha256))")
            report.printFaults(okLine: "ok: \(folder) is consistent; start a broker on it with ferryd --data \(folder)")
        }
        if !faults.isEmpty { throw Failure("\(faults.count) fault(s) in the data of \(file)") }
    }
}

/// Unpacking and checking of backup files and data folders, shared by `restore` and `verify`.
enum BackupArchive {
    /// Creates `folder` when missing; true when it did. Refuses a folder that holds anything.
    static func prepareEmptyFolder(_ folder: String) throws -> Bool {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) {
            guard isFolder.boolValue else { throw Failure("\(folder) is a file: restore into an empty or missing folder") }
            guard (try? FileManager.default.contentsOfDirectory(atPath: folder))?.isEmpty == true else {
                throw Failure("\(folder) is not empty: restore into an empty or missing folder")
            }
            return false
        }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw Failure("cannot create \(folder): \(error.localizedDescription)")
        }
        return true
    }

    /// Checks the backup file `path` as it reads it and writes its data file into `folder` as
    /// `data.mdb`; when the check fails, nothing is left in `folder`.
    static func unpack(_ path: String, into folder: String) throws -> BackupFileSummary {
        guard let input = FileHandle(forReadingAtPath: path) else { throw Failure("cannot open \(path)") }
        defer { try? input.close() }
        let partial = folder + "/data.mdb.partial"
        guard FileManager.default.createFile(atPath: partial, contents: nil), let output = FileHandle(forWritingAtPath: partial) else {
            throw Failure("cannot write \(partial)")
        }
        var reader = BackupFileReader()
        do {
            defer { try? output.close() }
            while let chunk = try input.read(upToCount: 1 << 20), !chunk.isEmpty {
                try output.write(contentsOf: try reader.consume(chunk))
            }
            let summary = try reader.finish()
            try output.synchronize()
            try FileManager.default.moveItem(atPath: partial, toPath: folder + "/data.mdb")
            return summary
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            if let error = error as? BackupFileError { throw Failure("\(path): \(error)") }
            throw Failure("cannot unpack \(path): \(error.localizedDescription)")
        }
    }

    /// The faults of the data folder `folder`, opened read-only.
    static func faults(in folder: String) throws -> [StoreFault] {
        var configuration = LMDBStoreConfiguration(path: folder)
        configuration.readOnly = true
        do {
            return try LMDBMessageStore(configuration: configuration).verify()
        } catch {
            throw Failure("cannot check \(folder): \(error)")
        }
    }
}

/// What `verify` and `restore` found, printed or as JSON.
struct CheckReport: Encodable {
    struct Fault: Encodable {
        var kind: String
        var subject: String?
        var message: String
    }

    /// The backup file checked, when one was.
    var file: String?
    /// The data folder checked (absent for a backup file's temporary unpack).
    var data: String?
    /// The backup file's length and SHA-256, when one was checked.
    var bytes: UInt64?
    var sha256: String?
    var ok: Bool
    var faults: [Fault]
    /// Each fault as `verify` prints it.
    private let lines: [String]

    private enum CodingKeys: String, CodingKey {
        case file, data, bytes, sha256, ok, faults
    }

    init(file: String? = nil, data: String?, bytes: UInt64? = nil, sha256: String? = nil, faults: [StoreFault]) {
        self.file = file
        self.data = data
        self.bytes = bytes
        self.sha256 = sha256
        ok = faults.isEmpty
        self.faults = faults.map { Fault(kind: $0.kind.rawValue, subject: $0.subject, message: $0.message) }
        lines = faults.map(\.description)
    }

    /// `okLine` when there is no fault, else one line per fault.
    func printFaults(okLine: String) {
        print(lines.isEmpty ? okLine : lines.joined(separator: "\n"))
    }
}
