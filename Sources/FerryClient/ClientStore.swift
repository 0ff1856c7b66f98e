import FerryProtocol
import Foundation

/// What a client keeps on disk so a process restart resumes: the session (client id, resume
/// token), each topic's epoch and last processed version, and the unconfirmed publishes.
///
/// `state.json` is rewritten atomically; `outbox.jsonl` is an append-only log of publish frames
/// and `{"done": msg_id}` lines, compacted when it is mostly done lines.
struct ClientStore: Sendable {
    struct TopicPosition: Codable, Sendable, Equatable {
        var epoch: String?
        /// The highest version the application processed (acked).
        var acked: UInt64
    }

    struct State: Codable, Sendable, Equatable {
        var clientID: String?
        var resumeToken: String?
        var topics: [String: TopicPosition] = [:]

        enum CodingKeys: String, CodingKey {
            case clientID = "client_id", resumeToken = "resume_token", topics
        }
    }

    let directory: URL?

    private var stateURL: URL? { directory?.appendingPathComponent("state.json") }
    private var outboxURL: URL? { directory?.appendingPathComponent("outbox.jsonl") }

    init(directory: URL?) {
        self.directory = directory
        if let directory {
            try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }
    }

    func loadState() -> State {
        guard let stateURL, let data = try? Data(contentsOf: stateURL), let state = try? JSONDecoder().decode(State.self, from: data)
        else { return State() }
        return state
    }

    func save(_ state: State) {
        guard let stateURL, let data = try? JSONEncoder().encode(state) else { return }
        try? data.write(to: stateURL, options: .atomic)
    }

    /// Unconfirmed publishes in the order they were made.
    func loadOutbox() -> [PublishRequest] {
        guard let outboxURL, let text = try? String(contentsOf: outboxURL, encoding: .utf8) else { return [] }
        var pending: [PublishRequest] = []
        var done: Set<String> = []
        for line in text.split(separator: "\n") {
            let bytes = Array(line.utf8)
            if case .publish(_, let request)? = try? ClientFrame.decode(bytes) {
                pending.append(request)
            } else if let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: String], let id = object["done"] {
                done.insert(id)
            }
        }
        let outbox = pending.filter { $0.messageID.map { !done.contains($0) } ?? false }
        rewriteOutbox(outbox)
        return outbox
    }

    func appendToOutbox(_ request: PublishRequest) {
        append(ClientFrame.publish(id: nil, request).encode())
    }

    func markDone(_ messageID: String) {
        var writer = JSONWriter()
        writer.field("done", messageID)
        append(writer.finish())
    }

    /// Replaces the log with just `outbox` (compaction).
    func rewriteOutbox(_ outbox: [PublishRequest]) {
        guard let outboxURL else { return }
        var data = Data()
        for request in outbox {
            data.append(contentsOf: ClientFrame.publish(id: nil, request).encode())
            data.append(UInt8(ascii: "\n"))
        }
        try? data.write(to: outboxURL, options: .atomic)
    }

    private func append(_ line: [UInt8]) {
        guard let outboxURL else { return }
        if !FileManager.default.fileExists(atPath: outboxURL.path) {
            _ = FileManager.default.createFile(atPath: outboxURL.path, contents: nil)
        }
        guard let handle = try? FileHandle(forWritingTo: outboxURL) else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: line + [UInt8(ascii: "\n")])
    }
}
