import ArgumentParser
import Foundation
import Histogram

#if canImport(Glibc)
import Glibc
#endif

/// The disk alone, written the way an LMDB commit writes it: a few 4 KiB pages at scattered
/// offsets, `fdatasync`, then the 120-byte meta page through an `O_DSYNC` descriptor. No broker:
/// this is the floor under every synced commit's latency on this machine (`FERRY_SYNC=full`).
struct DiskSync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk",
        abstract: "Latency of LMDB-shaped synced commits on this disk, without a broker.")

    @Option(help: "Commits to time.") var commits = 1500
    @Option(help: "Commits per second (open loop, as a steady publish rate makes them).") var rate = 150
    @Option(help: "4 KiB pages written per commit.") var pages = 5
    @Option(help: "Folder for the scratch file (default: a new temporary folder).") var directory: String?

    func run() async throws {
        let folder = directory.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("ferry-disk-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("data").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let data = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        let meta = open(path, O_RDWR | O_DSYNC)
        guard data >= 0, meta >= 0 else { throw ValidationError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer {
            close(data)
            close(meta)
        }
        // A written (not sparse) file, so later page writes change no file metadata.
        let fileBytes = 64 << 20
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        for offset in stride(from: 0, to: fileBytes, by: zeros.count) { _ = pwrite(data, zeros, zeros.count, off_t(offset)) }
        fdatasync(data)

        var page = [UInt8](repeating: 0, count: 4096)
        var generator = SystemRandomNumberGenerator()
        var dataSync = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var metaSync = dataSync
        var commit = dataSync
        let interval = 1_000_000_000 / UInt64(max(1, rate))
        let start = monotonicNanoseconds()
        for index in 0..<commits {
            let due = start + UInt64(index) * interval
            let now = monotonicNanoseconds()
            if due > now { try await Task.sleep(nanoseconds: due - now) }
            let began = monotonicNanoseconds()
            for _ in 0..<pages {
                page[0] = UInt8.random(in: 0...255, using: &generator)
                _ = pwrite(data, page, page.count, off_t(Int.random(in: 2..<(fileBytes / 4096), using: &generator) * 4096))
            }
            let written = monotonicNanoseconds()
            fdatasync(data)
            let synced = monotonicNanoseconds()
            _ = pwrite(meta, page, 120, off_t((index % 2) * 4096))
            let done = monotonicNanoseconds()
            dataSync.record(synced - written)
            metaSync.record(done - synced)
            commit.record(done - began)
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9

        func row(_ name: String, _ histogram: Histogram<UInt64>) -> String {
            let ms = { (percentile: Double) in Double(histogram.valueAtPercentile(percentile)) / 1e6 }
            return "  " + name.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: " p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  max %6.2f ms", ms(50), ms(90), ms(99), ms(99.9), Double(histogram.max) / 1e6)
        }
        print("disk: \(commits) LMDB-shaped commits (\(pages) × 4 KiB pages, fdatasync, 120-byte O_DSYNC meta write) at \(rate)/s in \(folder.path)")
        print(row("fdatasync of the pages", dataSync))
        print(row("O_DSYNC meta write", metaSync))
        print(row("whole commit", commit))
        let percentiles = { (histogram: Histogram<UInt64>) -> [String: Double] in
            [50, 90, 99, 99.9].reduce(into: ["max": Double(histogram.max) / 1000]) { $0["p\($1)".replacingOccurrences(of: ".0", with: "")] = Double(histogram.valueAtPercentile($1)) / 1000 }
        }
        printJSON([
            "scenario": "disk", "commits": commits, "rate": rate, "pages": pages, "seconds": seconds,
            "data_sync_us": percentiles(dataSync), "meta_sync_us": percentiles(metaSync), "commit_us": percentiles(commit),
        ])
    }
}
