import FerryStore
import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Streams `GET /v1/admin/backup` into a file, checking the backup file as it arrives, with a
/// progress bar when one is given an estimate to draw against.
final class BackupDownload: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    // @unchecked: every `var` below is used only on `queue`, the session's delegate queue, which
    // runs one operation at a time (the continuation is stored from an operation of it too), and
    // `run` reads them only after the last callback resumed the continuation.
    private let queue: OperationQueue = {
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        return queue
    }()
    private let client: AdminClient
    private let file: FileHandle
    private let showsProgress: Bool
    private var continuation: CheckedContinuation<Void, Never>?
    private var status = 0
    private var errorBody = Data()
    private var reader = BackupFileReader()
    private var progress: ProgressBar?
    /// The first failure: a write to the file, or bytes that are not a backup file.
    private var failure: (any Error)?
    private var transportError: (any Error)?

    private init(client: AdminClient, file: FileHandle, showsProgress: Bool) {
        self.client = client
        self.file = file
        self.showsProgress = showsProgress
    }

    /// Downloads the broker's backup into `file` and returns what the checked file holds.
    static func run(client: AdminClient, into file: FileHandle, showsProgress: Bool) async throws -> BackupFileSummary {
        guard let url = URL(string: client.base + "/v1/admin/backup") else { throw Failure("cannot make a URL of \(client.base)") }
        var request = URLRequest(url: url, timeoutInterval: 60)
        if let token = client.token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let download = BackupDownload(client: client, file: file, showsProgress: showsProgress)
        let session = URLSession(configuration: .default, delegate: download, delegateQueue: download.queue)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: request)
        await withCheckedContinuation { continuation in
            download.queue.addOperation {
                download.continuation = continuation
                task.resume()
            }
        }
        return try download.outcome()
    }

    private func outcome() throws -> BackupFileSummary {
        if let failure { throw failure }
        if status == 0, let transportError { throw Failure("cannot reach the broker at \(client.base): \(AdminClient.reason(transportError))") }
        guard status == 200 else { throw client.failure(status: status, body: errorBody) }
        if let transportError {
            throw Failure("the download stopped after \(Format.bytes(reader.fileBytes)): \(AdminClient.reason(transportError))")
        }
        do {
            let summary = try reader.finish()
            progress?.complete(Int(reader.fileBytes))
            return summary
        } catch {
            throw Failure("the download is not a whole backup: \(error)")
        }
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        let http = response as? HTTPURLResponse
        status = http?.statusCode ?? 0
        if status == 200, showsProgress {
            let estimate = (http?.value(forHTTPHeaderField: "Ferry-Backup-Estimate")).flatMap { Int($0) } ?? 0
            progress = ProgressBar(expected: estimate + BackupFile.headerSize + BackupFile.trailerSize)
        }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard failure == nil else { return }
        guard status == 200 else {
            if errorBody.count < 64 * 1024 { errorBody.append(data) }
            return
        }
        do {
            _ = try reader.consume(data)
            try file.write(contentsOf: data)
        } catch let error as BackupFileError {
            failure = Failure("the broker's answer is not a backup file: \(error)")
        } catch {
            failure = Failure("cannot write the backup file: \(error.localizedDescription)")
        }
        if failure != nil { return dataTask.cancel() }
        progress?.update(Int(reader.fileBytes))
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        transportError = error
        if failure != nil || status != 200 || error != nil { progress?.abandon() }
        continuation?.resume()
        continuation = nil
    }
}
