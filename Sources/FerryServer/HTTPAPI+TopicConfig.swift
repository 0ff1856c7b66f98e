import FerryCore
import FerryProtocol
import Foundation
import Hummingbird

/// The admin routes of per-topic configuration (PROTOCOL.md, "Admin API"): the pattern is one
/// path segment, a `/` in it sent as `%2F`, as with topics.
extension HTTPAPI {
    func registerTopicConfig(on router: Router<FerryRequestContext>) {
        router.on(.adminTopicConfigs) { request, _ in
            try authorize(request)
            return jsonResponse(body: TopicConfigList(configs: try await broker.topicConfigEntries()))
        }
        router.on(.adminPutTopicConfig) { request, context in
            try authorize(request)
            let pattern = patternParameter(context)
            let body = try await collect(request, upTo: 64 * 1024)
            let entry: TopicConfigEntry
            do {
                entry = try JSONDecoder().decode(TopicConfigEntry.self, from: Data(body))
            } catch let error as DecodingError {
                throw APIError(.badFrame, "the body must be a configuration entry (\(Self.reason(error)))")
            }
            return jsonResponse(body: try await broker.putTopicConfig(pattern, entry))
        }
        router.on(.adminDeleteTopicConfig) { request, context in
            try authorize(request)
            let pattern = patternParameter(context)
            guard try await broker.deleteTopicConfig(pattern) else { throw APIError(.notFound, "no topic configuration \(pattern)") }
            return deleted("pattern", pattern)
        }
    }

    private func patternParameter(_ context: FerryRequestContext) -> String {
        let raw = context.parameters.get("pattern") ?? ""
        return raw.removingPercentEncoding ?? raw
    }

    /// What is wrong with a body, in words: the field and what it must be.
    private static func reason(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let context):
            context.debugDescription
        case .typeMismatch(let type, let context):
            "\(context.codingPath.map(\.stringValue).joined(separator: ".")) must be \(type == UInt64.self ? "a non-negative integer" : "\(type)")"
        case .valueNotFound(_, let context), .keyNotFound(_, let context):
            context.debugDescription
        @unknown default:
            "\(error)"
        }
    }
}
