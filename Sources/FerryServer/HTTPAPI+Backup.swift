import FerryCore
import FerryProtocol
import FerryStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix

extension HTTPAPI {
    /// `POST /v1/admin/backup` (a folder on the broker's machine) and `GET /v1/admin/backup`
    /// (a backup file streamed to the client).
    func registerBackup(on router: Router<FerryRequestContext>) {
        router.on(.adminBackupToFolder) { request, _ in
            try authorize(request)
            let shape = #"{"path": "<empty folder>"}"#
            let backup = try await decode(BackupRequest.self, from: request, shape: shape)
            guard !backup.path.isEmpty else { throw APIError(.badFrame, "the body must be \(shape)") }
            let bytes = try await broker.backup(to: backup.path)
            return jsonResponse(body: BackupResult(path: backup.path, bytes: bytes))
        }
        router.on(.adminBackup) { request, context in
            try authorize(request)
            let estimate = try await broker.prepareBackupStream()
            let broker = self.broker
            let logger = context.logger
            let headers: HTTPFields = [
                .contentType: BackupFile.mediaType, .contentDisposition: #"attachment; filename="ferry.backup""#,
                .ferryBackupEstimate: String(estimate), .cacheControl: "no-store",
                // nginx passes the stream on as it comes, so back-pressure reaches the copy.
                .accelBuffering: "no",
            ]
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in try await streamBackup(of: broker, to: &writer, logger: logger) })
        }
    }
}

extension HTTPField.Name {
    /// About how many bytes the data file of a streamed backup has (the store's pages in use,
    /// less its free ones), for a client's progress bar; the file adds 64 bytes of framing.
    static let ferryBackupEstimate = HTTPField.Name("Ferry-Backup-Estimate")!
    /// nginx's switch for buffering one response.
    static let accelBuffering = HTTPField.Name("X-Accel-Buffering")!
}

/// Streams a backup file: the header, the data file as LMDB's compacting copy writes it into a
/// pipe on a thread of its own, then the trailer once the copy succeeded. The pipe is read only
/// as fast as the client takes the bytes, and a full pipe blocks the copy, so a slow client holds
/// a pipe's worth of memory, not the database. A client gone (a write fails) closes the read end:
/// the copy's next write fails and its thread ends. A failed copy ends the stream without a
/// trailer, which the client's check reports.
private func streamBackup(of broker: Broker, to writer: inout any ResponseBodyWriter, logger: Logger) async throws {
    let pipe = try BackupPipe()
    async let copied = broker.copyBackup(into: pipe.writeEnd)
    var framing = BackupFileWriter()
    let streamed: Result<Void, any Error>
    do {
        try await writer.write(ByteBuffer(bytes: framing.header))
        while let chunk = try await pipe.nextChunk() {
            chunk.withUnsafeReadableBytes { framing.append($0) }
            try await writer.write(chunk)
        }
        streamed = .success(())
    } catch {
        streamed = .failure(error)
    }
    // Before waiting for the copy: a copy blocked on a full pipe ends only when the read end closes.
    pipe.closeReadEnd()
    let copy = await copied
    do {
        try streamed.get()
    } catch {
        logger.info("backup stream stopped: the client went away", metadata: ["ferry.sent_bytes": "\(framing.dataBytes)", "ferry.error": "\(error)"])
        throw error
    }
    if case .failure(let error) = copy {
        logger.error("backup copy failed", metadata: ["ferry.error": "\(error)"])
        throw error
    }
    try await writer.write(ByteBuffer(bytes: framing.trailer()))
    try await writer.finish(nil)
    logger.info("backup streamed", metadata: ["ferry.bytes": "\(framing.dataBytes)"])
}

/// The pipe between a backup's copy thread (the write end) and its HTTP stream (the read end).
private final class BackupPipe: Sendable {
    let readEnd: Int32
    let writeEnd: Int32

    struct Failure: Error, CustomStringConvertible {
        let call: String
        let code: Int32
        var description: String { "\(call) failed: \(String(cString: strerror(code)))" }
    }

    init() throws {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { throw Failure(call: "pipe", code: errno) }
        (readEnd, writeEnd) = (ends[0], ends[1])
        // Not inherited by a process the broker starts.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        #if os(Linux)
        // A larger pipe (the default is 64 KiB) takes fewer hops to read; failing to grow it is harmless.
        _ = fcntl(writeEnd, Self.setPipeSize, Self.chunkBytes)
        #endif
    }

    static let chunkBytes: Int32 = 1 << 20
    /// `F_SETPIPE_SZ` (`F_LINUX_SPECIFIC_BASE + 7`), which Glibc declares only for `_GNU_SOURCE`.
    private static let setPipeSize: Int32 = 1031

    /// The next bytes the copy wrote, nil at its end. The read blocks until there are some, so it
    /// runs on NIO's blocking-I/O thread pool, not on an event loop or the cooperative pool.
    func nextChunk() async throws -> ByteBuffer? {
        let descriptor = readEnd
        return try await NIOThreadPool.singleton.runIfActive {
            var buffer = ByteBufferAllocator().buffer(capacity: Int(Self.chunkBytes))
            let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(Self.chunkBytes)) { space in
                while true {
                    let count = read(descriptor, space.baseAddress, space.count)
                    if count >= 0 { return count }
                    if errno != EINTR { throw Failure(call: "read", code: errno) }
                }
            }
            return count == 0 ? nil : buffer
        }
    }

    /// Closes the read end; the write end is the copy's, which closes it when it ends.
    func closeReadEnd() {
        close(readEnd)
    }
}
