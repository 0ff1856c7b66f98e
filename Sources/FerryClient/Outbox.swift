import DequeModule
import FerryProtocol
import Foundation

/// Publishes the broker has not confirmed yet, oldest first.
///
/// The oldest `residentLimit` are held in memory: they are the ones sent to the broker. The rest
/// live only in the log on disk and are read back as earlier ones are confirmed, so a long
/// offline spell costs disk, not memory. Without a directory there is nowhere to spill, and all
/// of them (up to `limit`) stay in memory.
struct Outbox {
    /// Where a spilled publish's line is in the log.
    private struct Spilled {
        let offset: UInt64
        let length: Int
    }

    let limit: Int
    let residentLimit: Int
    private var resident: Deque<PublishRequest> = []
    private var spilled: Deque<Spilled> = []
    /// The msg_ids of every unconfirmed publish, resident or spilled.
    private var ids: Set<String> = []
    private var log: OutboxLog?

    /// An outbox in memory only.
    init(limit: Int) {
        self.limit = limit
        residentLimit = limit
    }

    /// Opens the log in `directory` and takes its unconfirmed publishes, in order.
    init(directory: URL, limit: Int, residentLimit: Int) throws(FerryClientError) {
        self.limit = limit
        self.residentLimit = max(1, residentLimit)
        let (log, records) = try OutboxLog.open(in: directory)
        self.log = log
        for record in records {
            ids.insert(record.id)
            if resident.count < self.residentLimit, let request = try? log.read(record.offset, record.length) {
                resident.append(request)
            } else {
                spilled.append(Spilled(offset: record.offset, length: record.length))
            }
        }
    }

    var count: Int { ids.count }

    /// The publishes to send to the broker, oldest first.
    var sendable: Deque<PublishRequest> { resident }

    func contains(_ messageID: String) -> Bool { ids.contains(messageID) }

    /// Queues a publish that has a msg_id; returns it when it is resident (to be sent now), nil
    /// when it waits on disk behind others.
    mutating func append(_ request: PublishRequest) throws(FerryClientError) -> PublishRequest? {
        guard let id = request.messageID else { return nil }
        guard ids.count < limit else { throw .outboxFull(limit: limit) }
        let record = try log?.append(request)
        ids.insert(id)
        if spilled.isEmpty && resident.count < residentLimit {
            resident.append(request)
            return request
        }
        if let record { spilled.append(Spilled(offset: record.offset, length: record.length)) }
        return nil
    }

    /// Forgets a confirmed (or rejected) publish; returns the spilled ones that became resident,
    /// to be sent now.
    mutating func remove(_ messageID: String) -> [PublishRequest] {
        guard ids.remove(messageID) != nil else { return [] }
        if let index = resident.firstIndex(where: { $0.messageID == messageID }) { resident.remove(at: index) }
        var promoted: [PublishRequest] = []
        while resident.count < residentLimit, let next = spilled.first, let log {
            spilled.removeFirst()
            // A line that cannot be read back is lost to this process; it stays in the log file.
            guard let request = try? log.read(next.offset, next.length) else { continue }
            resident.append(request)
            promoted.append(request)
        }
        // Compacting once done lines outnumber the pending publishes keeps the cost per
        // confirmation constant however long the outbox is.
        if let doneLines = log?.markDone(messageID), doneLines >= max(1024, ids.count) { compact() }
        return promoted
    }

    /// Rewrites the log as just the unconfirmed publishes. On failure the old log stays valid
    /// and compaction is tried again after the next confirmation.
    private mutating func compact() {
        guard let log else { return }
        do {
            var lines = resident.map { Data(ClientFrame.publish(id: nil, $0).encode()) }
            for record in spilled { lines.append(try log.readLine(record.offset, record.length)) }
            try log.replace(with: lines)
            var offset = UInt64(0)
            var moved: Deque<Spilled> = []
            for (index, line) in lines.enumerated() {
                if index >= resident.count { moved.append(Spilled(offset: offset, length: line.count)) }
                offset += UInt64(line.count + 1)
            }
            spilled = moved
        } catch {}
    }
}

/// `outbox.jsonl`: an append-only log of publish frames and `{"done":msg_id}` lines, compacted
/// when at least half of it is done.
final class OutboxLog {
    struct Record {
        let id: String
        let offset: UInt64
        let length: Int
    }

    private let url: URL
    private var handle: FileHandle
    private var doneLines = 0

    private init(url: URL, handle: FileHandle) {
        self.url = url
        self.handle = handle
    }

    /// Opens (or creates) the log and compacts it; returns the unconfirmed publishes in order.
    static func open(in directory: URL) throws(FerryClientError) -> (OutboxLog, [Record]) {
        let url = directory.appendingPathComponent("outbox.jsonl")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let lines = try pendingLines(at: url)
            try rewrite(url, with: lines.map(\.line))
            let log = OutboxLog(url: url, handle: try FileHandle(forUpdating: url))
            var offset = UInt64(0)
            var records: [Record] = []
            for (id, line) in lines {
                records.append(Record(id: id, offset: offset, length: line.count))
                offset += UInt64(line.count + 1)
            }
            return (log, records)
        } catch {
            throw .storage("cannot open the outbox in \(directory.path): \(error)")
        }
    }

    /// The publish lines of the log whose msg_id has no done line, in order.
    private static func pendingLines(at url: URL) throws -> [(id: String, line: Data)] {
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        var publishes: [(id: String, line: Data)] = []
        var done: Set<String> = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            if case .publish(_, let request)? = try? ClientFrame.decode(Array(line)), let id = request.messageID {
                publishes.append((id, Data(line)))
            } else if let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: String], let id = object["done"] {
                done.insert(id)
            }
            // Anything else is a line torn by a crash mid-append: its publish never returned.
        }
        return publishes.filter { !done.contains($0.id) }
    }

    private static func rewrite(_ url: URL, with lines: [Data]) throws {
        var data = Data()
        for line in lines {
            data.append(line)
            data.append(UInt8(ascii: "\n"))
        }
        try data.write(to: url, options: .atomic)
    }

    func append(_ request: PublishRequest) throws(FerryClientError) -> Record {
        let line = ClientFrame.publish(id: nil, request).encode()
        do {
            let offset = try handle.seekToEnd()
            try handle.write(contentsOf: line + [UInt8(ascii: "\n")])
            return Record(id: request.messageID ?? "", offset: offset, length: line.count)
        } catch {
            throw .storage("cannot write the outbox \(url.path): \(error)")
        }
    }

    func readLine(_ offset: UInt64, _ length: Int) throws -> Data {
        try handle.seek(toOffset: offset)
        guard let line = try handle.read(upToCount: length), line.count == length else { throw CocoaError(.fileReadCorruptFile) }
        return line
    }

    func read(_ offset: UInt64, _ length: Int) throws -> PublishRequest {
        guard case .publish(_, let request) = try ClientFrame.decode(Array(try readLine(offset, length))) else {
            throw CocoaError(.fileReadCorruptFile)
        }
        return request
    }

    /// Records a confirmation; returns the done lines in the log. A failed write only means a
    /// resend after a restart, which the broker's dedup makes harmless.
    func markDone(_ messageID: String) -> Int {
        var writer = JSONWriter()
        writer.field("done", messageID)
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: writer.finish() + [UInt8(ascii: "\n")])
        doneLines += 1
        return doneLines
    }

    /// Atomically replaces the log with `lines`.
    func replace(with lines: [Data]) throws {
        try Self.rewrite(url, with: lines)
        try? handle.close()
        handle = try FileHandle(forUpdating: url)
        doneLines = 0
    }
}
