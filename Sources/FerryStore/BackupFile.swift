import Crypto
import Foundation

/// A Ferry backup file: what `GET /v1/admin/backup` streams, `ferryctl backup` saves and
/// `ferryctl restore` unpacks. Integers are big-endian:
///
/// - header, 16 bytes: the magic `FERRYBAK`, the format version (UInt32, 1) and the content
///   (UInt32, 1: an LMDB data file);
/// - the data file (LMDB's compacted copy, `data.mdb`), as many bytes as it has;
/// - trailer, 48 bytes: `FERRYEND`, the data file's length (UInt64) and the SHA-256 of the
///   header and the data file.
///
/// The length is known only once the copy ends, so it comes last: a stream cut anywhere lacks
/// the trailer, and a changed byte fails the digest. These types only frame and check bytes; the
/// caller reads and writes them.
public enum BackupFile {
    /// The `Content-Type` of the stream.
    public static let mediaType = "application/vnd.ferry.backup"
    /// The format version this build writes and reads.
    public static let version: UInt32 = 1
    /// The one content there is so far: an LMDB data file.
    static let lmdbContent: UInt32 = 1
    static let magic = Array("FERRYBAK".utf8)
    static let endMarker = Array("FERRYEND".utf8)
    public static let headerSize = 16
    public static let trailerSize = 48
}

/// Why bytes are not a whole, intact backup file.
public enum BackupFileError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file does not start with the magic.
    case notABackup
    /// A format version or content this build does not read.
    case unsupportedVersion(UInt32, content: UInt32)
    /// The file ends before a trailer: cut short (an interrupted download) or its end damaged.
    case truncated
    /// The trailer's length is not the data's.
    case lengthMismatch(recorded: UInt64, actual: UInt64)
    /// The data's SHA-256 is not the trailer's: some byte changed.
    case digestMismatch

    public var description: String {
        switch self {
        case .notABackup: "not a Ferry backup file (it does not start with FERRYBAK)"
        case .unsupportedVersion(let version, let content):
            "a Ferry backup of format \(version) (content \(content)); this ferryctl reads format \(BackupFile.version)"
        case .truncated: "the file is truncated: it ends without its trailer (an interrupted download, or a damaged end)"
        case .lengthMismatch(let recorded, let actual): "the trailer records \(recorded) data bytes, the file holds \(actual): it is damaged"
        case .digestMismatch: "the SHA-256 of the data does not match the trailer's: the file is corrupted"
        }
    }
}

/// Frames a data file as a backup file: ``header`` first, then each chunk of the data file as it
/// is appended, then ``trailer()``.
public struct BackupFileWriter: Sendable {
    public let header: [UInt8]
    private var hash = SHA256()
    /// Data file bytes appended so far.
    public private(set) var dataBytes: UInt64 = 0

    public init() {
        var writer = ByteWriter(capacity: BackupFile.headerSize)
        writer.append(BackupFile.magic)
        writer.append(BackupFile.version)
        writer.append(BackupFile.lmdbContent)
        header = writer.bytes
        hash.update(data: header)
    }

    /// Counts and hashes the data file's next chunk; the caller sends it as it is.
    public mutating func append(_ chunk: UnsafeRawBufferPointer) {
        hash.update(bufferPointer: chunk)
        dataBytes += UInt64(chunk.count)
    }

    /// The last bytes of the file, once the data file is whole.
    public func trailer() -> [UInt8] {
        var writer = ByteWriter(capacity: BackupFile.trailerSize)
        writer.append(BackupFile.endMarker)
        writer.append(dataBytes)
        writer.append(Array(hash.finalize()))
        return writer.bytes
    }
}

/// What a checked backup file held.
public struct BackupFileSummary: Sendable, Equatable {
    /// The data file's length.
    public var dataBytes: UInt64
    /// The whole file's length.
    public var fileBytes: UInt64
    /// The SHA-256 of the whole file, in hex: what `sha256sum` prints for it.
    public var sha256: String
}

/// Checks a backup file read in chunks and gives back its data file: feed every chunk to
/// ``consume(_:)``, write what it returns, and call ``finish()`` at the end of the file; only a
/// `finish` that returns means the data written is whole and intact.
public struct BackupFileReader: Sendable {
    private var header: [UInt8] = []
    /// The last bytes seen, held back: they may be the trailer.
    private var held: [UInt8] = []
    private var contentHash = SHA256()
    private var fileHash = SHA256()
    private var dataBytes: UInt64 = 0
    /// Bytes of the file taken so far.
    public private(set) var fileBytes: UInt64 = 0

    public init() {}

    /// Takes the file's next bytes and returns those now known to be data file bytes.
    public mutating func consume(_ chunk: some ContiguousBytes) throws(BackupFileError) -> [UInt8] {
        try chunk.withUnsafeBytes { bytes in Result { () throws(BackupFileError) in try consume(bytes.bindMemory(to: UInt8.self)) } }.get()
    }

    private mutating func consume(_ chunk: UnsafeBufferPointer<UInt8>) throws(BackupFileError) -> [UInt8] {
        fileBytes += UInt64(chunk.count)
        fileHash.update(bufferPointer: UnsafeRawBufferPointer(chunk))
        var rest = chunk[...]
        if header.count < BackupFile.headerSize {
            let needed = BackupFile.headerSize - header.count
            header += rest.prefix(needed)
            rest = rest.dropFirst(needed)
            if header.count == BackupFile.headerSize { try checkHeader() }
        }
        // What is held, then `rest`: all but the last `trailerSize` bytes of the two are data.
        let dataCount = max(0, held.count + rest.count - BackupFile.trailerSize)
        var data: [UInt8] = []
        data.reserveCapacity(dataCount)
        let fromHeld = min(dataCount, held.count)
        data += held.prefix(fromHeld)
        data += UnsafeBufferPointer(rebasing: rest.prefix(dataCount - fromHeld))
        held = Array(held.dropFirst(fromHeld)) + UnsafeBufferPointer(rebasing: rest.dropFirst(dataCount - fromHeld))
        contentHash.update(data: data)
        dataBytes += UInt64(data.count)
        return data
    }

    /// At the end of the file: checks the trailer against what came before it.
    public func finish() throws(BackupFileError) -> BackupFileSummary {
        if !header.isEmpty, !BackupFile.magic.starts(with: header.prefix(BackupFile.magic.count)) { throw .notABackup }
        guard header.count == BackupFile.headerSize, held.count == BackupFile.trailerSize,
            held.starts(with: BackupFile.endMarker), let recorded = UInt64.bigEndian(held, at: BackupFile.endMarker.count)
        else { throw .truncated }
        guard recorded == dataBytes else { throw .lengthMismatch(recorded: recorded, actual: dataBytes) }
        guard Array(contentHash.finalize()) == Array(held.suffix(32)) else { throw .digestMismatch }
        let hex = fileHash.finalize().map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        return BackupFileSummary(dataBytes: dataBytes, fileBytes: fileBytes, sha256: hex)
    }

    private mutating func checkHeader() throws(BackupFileError) {
        guard header.starts(with: BackupFile.magic) else { throw .notABackup }
        // Two UInt32 after the magic: the version, then the content.
        let fields = UInt64.bigEndian(header, at: BackupFile.magic.count) ?? 0
        let (version, content) = (UInt32(fields >> 32), UInt32(truncatingIfNeeded: fields))
        guard version == BackupFile.version, content == BackupFile.lmdbContent else { throw .unsupportedVersion(version, content: content) }
        contentHash.update(data: header)
    }
}
