import FerryStore

/// The text of a notice on ``PostgresWatch/channel``: the sender's id on the first line, then one
/// line per item (topic names and client ids hold no spaces or line breaks):
///
/// - `t NAME`: topic NAME changed; `*`: anything may have changed (too many names to list);
/// - `w OWNER GENERATION CLIENT`: broker OWNER is asked to let session CLIENT go for claim GENERATION;
/// - `r GENERATION CLIENT`: the sender let session CLIENT go for claim GENERATION;
/// - `d CLIENT`: session CLIENT was deleted by an operator;
/// - `c`: the per-topic configuration changed.
///
/// A line a broker does not understand (a newer broker's) reads as `*`.
enum PostgresNotice {
    static func line(_ notice: SessionNotice) -> String {
        switch notice {
        case .released(let clientID, let generation): "r \(generation) \(clientID)"
        case .deleted(let clientID): "d \(clientID)"
        }
    }

    /// The line telling that the per-topic configuration changed.
    static let topicConfigsChanged = "c"

    static func wanted(_ clientID: String, generation: UInt64, of owner: String) -> String {
        "w \(owner) \(generation) \(clientID)"
    }

    /// What is pending, as notices of at most `limit` bytes: every session line, and the topics
    /// by name when they fit, else `*`.
    static func payloads(from node: String, topics: Set<String>, sessions: [String], limit: Int = PostgresWatch.payloadLimit) -> [String] {
        guard !topics.isEmpty || !sessions.isEmpty else { return [] }
        let topicLines = topics.sorted().map { "t " + $0 }
        var payloads: [String] = []
        var current = node
        func append(_ line: String) {
            if current.utf8.count + 1 + line.utf8.count > limit {
                payloads.append(current)
                current = node
            }
            current += "\n" + line
        }
        for line in sessions { append(line) }
        let listed = topicLines.reduce(current.utf8.count) { $0 + 1 + $1.utf8.count } <= limit
        if listed {
            for line in topicLines { append(line) }
        } else if !topics.isEmpty {
            append("*")
        }
        payloads.append(current)
        return payloads
    }

    /// The changes a notice tells `node`: none for its own notices, session changes in order,
    /// then the changed topics.
    static func changes(in payload: String, for node: String) -> [StoreChange] {
        let lines = payload.split(separator: "\n", omittingEmptySubsequences: true)
        guard let sender = lines.first, sender != node else { return [] }
        var changes: [StoreChange] = []
        var topics: [String] = []
        var everything = false
        for line in lines.dropFirst() {
            let fields = line.split(separator: " ")
            switch (fields.first, fields.count) {
            case ("t", 2):
                topics.append(String(fields[1]))
            case ("*", 1):
                everything = true
            case ("w", 4):
                guard let generation = UInt64(fields[2]) else { everything = true; continue }
                if fields[1] == node { changes.append(.sessionWanted(String(fields[3]), generation: generation)) }
            case ("r", 3):
                guard let generation = UInt64(fields[1]) else { everything = true; continue }
                changes.append(.sessionReleased(String(fields[2]), generation: generation))
            case ("d", 2):
                changes.append(.sessionDeleted(String(fields[1])))
            case ("c", 1):
                changes.append(.topicConfigs)
            default:
                everything = true
            }
        }
        if everything {
            changes.append(.everything)
        } else if !topics.isEmpty {
            changes.append(.topics(topics))
        }
        return changes
    }
}
