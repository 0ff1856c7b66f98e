import FerryCore
import FerryProtocol
import Hummingbird

/// `GET /v1/admin/clients`: every durable session, or with `search`, `after` and `limit` a
/// filtered page of them, so a console or script can walk thousands (PROTOCOL.md, "Admin API").
extension HTTPAPI {
    /// The most sessions one page holds.
    static let maxClientPage = 1000

    func listClients(_ request: Request) async throws -> Response {
        try authorize(request)
        let query = try ClientListQuery(request.uri.queryParameters)
        return jsonResponse(body: try await broker.clientList(search: query.search, after: query.after, limit: query.limit))
    }
}

/// The listing's query parameters, checked strictly: a typo or a bad value is 400 `bad_frame`
/// naming it, rather than a listing the caller did not ask for.
struct ClientListQuery {
    var search = ""
    var after: String?
    var limit: Int?

    init(_ parameters: some Sequence<(key: Substring, value: Substring)>) throws(APIError) {
        var seen: Set<Substring> = []
        for (key, value) in parameters {
            guard seen.insert(key).inserted else { throw APIError(.badFrame, "\(key) is given more than once") }
            switch key {
            case "search":
                // Only the characters of client ids can match one.
                guard value.isEmpty || Names.isValidClientID(String(value)) else {
                    throw APIError(.badFrame, "search must be at most 128 bytes of A-Z a-z 0-9 _ - . : @")
                }
                search = String(value)
            case "after":
                guard Names.isValidClientID(String(value)) else { throw APIError(.badFrame, "after must be a client id (the next of a page)") }
                after = String(value)
            case "limit":
                guard let number = Int(value), (1...HTTPAPI.maxClientPage).contains(number) else {
                    throw APIError(.badFrame, "limit must be a whole number from 1 to \(HTTPAPI.maxClientPage)")
                }
                limit = number
            default:
                throw APIError(.badFrame, "unknown query parameter \(key): the listing takes search, after and limit")
            }
        }
    }
}
