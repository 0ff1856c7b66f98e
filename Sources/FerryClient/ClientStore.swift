import FerryProtocol
import Foundation

/// What a client keeps on disk so a process restart resumes: the session (client id, resume
/// token) and each topic's epoch and last processed version, in `state.json`, rewritten
/// atomically. The unconfirmed publishes are the ``Outbox``'s.
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
}
