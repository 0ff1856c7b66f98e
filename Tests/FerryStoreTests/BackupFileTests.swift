import FerryStore
import Foundation
import Testing

@Suite("Backup files: framing and checks, without I/O")
struct BackupFileTests {
    /// A whole backup file of `data`, and the data file bytes it frames.
    private func backupFile(of data: [UInt8]) -> [UInt8] {
        var writer = BackupFileWriter()
        var file = writer.header
        for chunk in data.chunks(ofCount: 1000) {
            chunk.withUnsafeBytes { writer.append($0) }
            file += chunk
        }
        #expect(writer.dataBytes == UInt64(data.count))
        return file + writer.trailer()
    }

    /// Reads `file` in chunks of `size` and returns the data file and the summary.
    private func read(_ file: [UInt8], chunk size: Int) throws(BackupFileError) -> ([UInt8], BackupFileSummary) {
        var reader = BackupFileReader()
        var data: [UInt8] = []
        for chunk in file.chunks(ofCount: size) { data += try reader.consume(chunk) }
        return (data, try reader.finish())
    }

    private let sample: [UInt8] = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    @Test("a round trip gives back the data file, whatever the chunks", arguments: [1, 7, 48, 49, 1000, 1 << 20])
    func roundTrip(chunk: Int) throws {
        let file = backupFile(of: sample)
        #expect(file.count == sample.count + BackupFile.headerSize + BackupFile.trailerSize)
        #expect(Array(file.prefix(8)) == Array("FERRYBAK".utf8))
        let (data, summary) = try read(file, chunk: chunk)
        #expect(data == sample)
        #expect(summary.dataBytes == UInt64(sample.count))
        #expect(summary.fileBytes == UInt64(file.count))
        #expect(summary.sha256.count == 64 && summary.sha256.allSatisfy(\.isHexDigit))
        #expect(summary.sha256 == (try read(file, chunk: 3)).1.sha256, "the file's SHA-256 does not depend on the chunks")
        #expect(summary.sha256 != (try read(backupFile(of: sample.dropLast()), chunk: 3)).1.sha256)
    }

    @Test("an empty data file is a backup file of 64 bytes")
    func emptyData() throws {
        let file = backupFile(of: [])
        #expect(file.count == 64)
        let (data, summary) = try read(file, chunk: 5)
        #expect(data.isEmpty)
        #expect(summary.dataBytes == 0)
    }

    @Test("a file cut anywhere is refused as truncated")
    func truncation() {
        let file = backupFile(of: Array(sample.prefix(300)))
        for length in 0..<file.count {
            #expect(throws: BackupFileError.truncated, "cut to \(length) bytes") { try read(Array(file.prefix(length)), chunk: 64) }
        }
    }

    @Test("a changed bit anywhere is refused, with what it broke")
    func corruption() {
        let file = backupFile(of: Array(sample.prefix(300)))
        let trailerStart = file.count - BackupFile.trailerSize
        for index in file.indices {
            var damaged = file
            damaged[index] ^= 1 << UInt8(index % 8)
            let expected =
                switch index {
                case 0..<8: "notABackup"
                case 8..<16: "unsupportedVersion"
                case trailerStart..<(trailerStart + 8): "truncated"
                case (trailerStart + 8)..<(trailerStart + 16): "lengthMismatch"
                default: "digestMismatch"
                }
            do {
                _ = try read(damaged, chunk: 100)
                Issue.record("a flip at byte \(index) went unnoticed")
            } catch {
                #expect(kind(of: error) == expected, "byte \(index): \(error)")
            }
        }
    }

    @Test("bytes that are not a backup file are refused as soon as the header is read")
    func notABackup() {
        var reader = BackupFileReader()
        #expect(throws: BackupFileError.notABackup) { try reader.consume(Array("SQLite format 3\0 and more".utf8)) }
        #expect(throws: BackupFileError.notABackup) {
            var reader = BackupFileReader()
            _ = try reader.consume(Array("{\"error\":".utf8))
            _ = try reader.finish()
        }
        let unknown = Array("FERRYBAK".utf8) + [0, 0, 0, 2, 0, 0, 0, 1]
        #expect(throws: BackupFileError.unsupportedVersion(2, content: 1)) {
            var reader = BackupFileReader()
            _ = try reader.consume(unknown)
        }
    }

    @Test("the store streams a compacted copy that opens as a data folder, about the size it estimated")
    func storeCopyIntoADescriptor() throws {
        try withStore { store in
            for n in 1...200 { _ = try store.publish(publishJSON("t", String(repeating: "\(n % 10)", count: 500))) }
            _ = try store.commit([.trimTopic("t", through: 150)], now: t0)
            let estimate = try store.backupSizeEstimate()
            try withTemporaryFolder { path in
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                let descriptor = open(path + "/data.mdb", O_WRONLY | O_CREAT, 0o644)
                #expect(descriptor >= 0)
                try store.backup(into: descriptor)
                close(descriptor)
                let size = try #require(try FileManager.default.attributesOfItem(atPath: path + "/data.mdb")[.size] as? Int)
                #expect(size > 0 && size <= store.usage().usedBytes, "compacted: \(size) of \(store.usage().usedBytes)")
                #expect(abs(size - estimate) <= 4 * 4096, "estimate \(estimate), copy \(size)")
                let copy = try openStore(at: path)
                #expect(try copy.storedVersions("t") == Array(151...200))
                #expect(try copy.verify().isEmpty)
            }
        }
    }
}

/// The case of `error`, without its values.
private func kind(of error: BackupFileError) -> String {
    switch error {
    case .notABackup: "notABackup"
    case .unsupportedVersion: "unsupportedVersion"
    case .truncated: "truncated"
    case .lengthMismatch: "lengthMismatch"
    case .digestMismatch: "digestMismatch"
    }
}

extension Array {
    /// The elements in consecutive slices of `count` (the last may be shorter).
    fileprivate func chunks(ofCount count: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: self.count, by: count).map { self[$0..<Swift.min($0 + count, self.count)] }
    }
}
