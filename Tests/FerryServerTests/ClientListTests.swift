import FerryTestSupport
import Foundation
import Testing

/// `GET /v1/admin/clients` with `search`, `after` and `limit`: the page the console and scripts
/// walk through thousands of clients with, and its strict parameters (PROTOCOL.md, "Admin API").
@Suite("Admin client listing")
struct ClientListTests {
    @Test func pagesWithACursorAndFiltersBySubstring() throws {
        let ferryd = try Ferryd.withAdmin()
        let ids = (0..<25).map { String(format: "sensor-%02d", $0) } + ["Kitchen-Sensor", "tablet"]
        let sockets = try ids.map { try ferryd.session(clientID: $0).0 }
        defer { for socket in sockets { socket.close() } }

        // Without parameters: every client, as before, with the total and no next.
        let everyone = try #require(try ferryd.admin("GET", "/clients").json)
        #expect(everyone.objects("clients")?.compactMap { $0.string("client_id") } == ids.sorted())
        #expect(everyone.int("total") == 27)
        #expect(everyone["next"] == nil)

        // Walking pages of 10 visits each sensor once, in order; the last page has no next.
        var walked: [String] = []
        var after: String?
        var pages = 0
        repeat {
            let query = "/clients?search=SENSOR&limit=10" + (after.map { "&after=\($0)" } ?? "")
            let page = try #require(try ferryd.admin("GET", query).json, "\(query)")
            #expect(page.int("total") == 26)
            walked += page.objects("clients")?.compactMap { $0.string("client_id") } ?? []
            after = page.string("next")
            pages += 1
        } while after != nil && pages < 10
        #expect(pages == 3)
        #expect(walked == ids.filter { $0.lowercased().contains("sensor") }.sorted())

        let one = try #require(try ferryd.admin("GET", "/clients?search=sensor-1&limit=100").json)
        #expect(one.objects("clients")?.compactMap { $0.string("client_id") } == (10..<20).map { "sensor-\($0)" })
        #expect(one.int("total") == 10 && one["next"] == nil)
        let none = try #require(try ferryd.admin("GET", "/clients?search=nobody").json)
        #expect(none.objects("clients")?.isEmpty == true && none.int("total") == 0)
        // An empty search matches everyone, as no search does.
        #expect(try ferryd.admin("GET", "/clients?search=&limit=1").json?.int("total") == 27)
    }

    @Test func refusesBadParameters() throws {
        let ferryd = try Ferryd.withAdmin()
        let queries = [
            "limit=0", "limit=1001", "limit=ten", "limit=-1", "limit=", "after=", "after=not%20an%20id",
            "search=with%20space", "search=" + String(repeating: "x", count: 129), "limit=1&limit=2", "cursor=sensor-1",
        ]
        for query in queries {
            let answer = try ferryd.admin("GET", "/clients?\(query)")
            #expect(answer.status == 400, "\(query): \(answer)")
            #expect(answer.errorCode == "bad_frame", "\(query): \(answer)")
            #expect(answer.json?.object("error")?.string("message")?.isEmpty == false, "\(query): \(answer)")
            #expect(try ferryd.admin("GET", "/clients?\(query)", token: nil).status == 401, "\(query): the token is checked first")
        }
    }
}
