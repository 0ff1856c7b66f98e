import ArgumentParser
import FerryStore
import Foundation

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a backup file, or a data folder, offline: gapless versions, ack floors in range, indexes that agree.",
        discussion: """
            `ferryctl verify FILE` checks a backup file (its header, length and SHA-256), then unpacks it into \
            a temporary folder (room for its data is needed there: TMPDIR) and checks the data. \
            `ferryctl verify --data DIR` checks a data folder, opened read-only, so a running broker may keep \
            using it. Exits 1 and lists each fault when there is one.
            """
    )

    @Argument(help: "A backup file (from `ferryctl backup FILE`).") var file: String?
    @Option(help: "A data folder (ferryd's --data, or a folder from `backup --on-broker` or `restore`).") var data: String?
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (file == nil) != (data == nil) else { throw ValidationError("give a backup FILE or --data DIR, not both, not neither") }
    }

    func run() async throws {
        if let data { return try report(CheckReport(data: data, faults: try BackupArchive.faults(in: data)), of: data) }
        guard let file else { return }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("ferryctl-verify-\(UUID().uuidString)").path
        _ = try BackupArchive.prepareEmptyFolder(scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let summary = try BackupArchive.unpack(file, into: scratch)
        let faults = try BackupArchive.faults(in: scratch)
        try report(CheckReport(file: file, data: nil, bytes: summary.fileBytes, sha256: summary.sha256, faults: faults), of: file)
    }

    private func report(_ report: CheckReport, of subject: String) throws {
        if output.json {
            try output.printJSON(report)
        } else {
            let intact = report.sha256.map { "an intact backup (sha256 \($0)) whose data is consistent" } ?? "consistent"
            report.printFaults(okLine: "ok: \(subject) is \(intact)")
        }
        if !report.ok { throw Failure("\(report.faults.count) fault(s) in \(subject)") }
    }
}
