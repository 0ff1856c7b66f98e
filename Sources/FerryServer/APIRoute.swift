import HTTPTypes
import Hummingbird

/// Every route of the HTTP API, in one table: the router registers them from it, a request to a
/// known path with another method is answered 405 with `Allow` from it, and the tests check that
/// the OpenAPI document (`/v1/openapi.json`) describes exactly these.
public enum APIRoute: CaseIterable, Sendable {
    case publish, publishBatch, readMessages, topicInfo
    case webSocket, webSocketCheck
    case health, readiness, metrics, openAPI, ferryJS, console, consoleAsset
    case adminStats, adminTopics, adminTopic, adminTrimTopic, adminDeleteTopic
    case adminClients, adminClient, adminRewindClient, adminDeleteClient
    case adminBackup, adminBackupToFolder
    case adminTopicConfigs, adminPutTopicConfig, adminDeleteTopicConfig

    public var method: HTTPRequest.Method {
        switch self {
        case .publish, .publishBatch, .adminTrimTopic, .adminRewindClient, .adminBackupToFolder: .post
        case .adminDeleteTopic, .adminDeleteClient, .adminDeleteTopicConfig: .delete
        case .adminPutTopicConfig: .put
        default: .get
        }
    }

    /// The path in the router's syntax: `:name` is one path segment.
    public var path: String {
        switch self {
        case .publish, .readMessages: "/v1/topics/:topic/messages"
        case .publishBatch: "/v1/publish"
        case .topicInfo: "/v1/topics/:topic"
        case .webSocket: "/v1/ws"
        case .webSocketCheck: "/v1/ws/check"
        case .health: "/healthz"
        case .readiness: "/readyz"
        case .metrics: "/metrics"
        case .openAPI: "/v1/openapi.json"
        case .ferryJS: "/v1/ferry.js"
        case .console: "/console"
        case .consoleAsset: "/console/:file"
        case .adminStats: "/v1/admin/stats"
        case .adminTopics: "/v1/admin/topics"
        case .adminTopic, .adminDeleteTopic: "/v1/admin/topics/:topic"
        case .adminTrimTopic: "/v1/admin/topics/:topic/trim"
        case .adminClients: "/v1/admin/clients"
        case .adminClient, .adminDeleteClient: "/v1/admin/clients/:client"
        case .adminRewindClient: "/v1/admin/clients/:client/rewind"
        case .adminBackup, .adminBackupToFolder: "/v1/admin/backup"
        case .adminTopicConfigs: "/v1/admin/config/topics"
        case .adminPutTopicConfig, .adminDeleteTopicConfig: "/v1/admin/config/topics/:pattern"
        }
    }

    /// The upgrade check is answered by the connection's upgrade handler before any route.
    var isRouted: Bool { self != .webSocketCheck }

    /// The methods served on `path` (a request's path, without its query), for `Allow`.
    static func methods(servingPath path: Substring) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        return allCases.filter { route in
            let pattern = route.path.split(separator: "/", omittingEmptySubsequences: false)
            return pattern.count == segments.count
                && zip(pattern, segments).allSatisfy { expected, actual in
                    expected.first == ":" ? !actual.isEmpty : expected == actual
                }
        }.map(\.method)
    }
}

extension Router<FerryRequestContext> {
    /// Registers `handler` for `route`.
    func on(_ route: APIRoute, use handler: @escaping @Sendable (Request, FerryRequestContext) async throws -> Response) {
        precondition(route.isRouted, "\(route) is served before the router")
        on(RouterPath(route.path), method: route.method, use: handler)
    }
}

/// Answers a known path asked with a method it does not serve with 405 and `Allow` (RFC 9110),
/// instead of the router's 404. Added after every route, so it sees only requests no route took.
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = FerryRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = APIRoute.methods(servingPath: request.uri.path[...])
            guard !allowed.isEmpty else { throw error }
            let names = Set(allowed.map(\.rawValue)).sorted()
            throw HTTPError(
                .methodNotAllowed, headers: [.allow: names.joined(separator: ", ")],
                message: "\(request.method.rawValue) is not served on \(request.uri.path); use \(names.joined(separator: " or "))")
        }
    }
}
