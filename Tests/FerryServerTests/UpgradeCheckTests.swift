import FerryTestSupport
import Foundation
import Testing

/// `GET /v1/ws/check`: the upgrade's checks without the upgrade, for ferry.js, which cannot see
/// why a browser's upgrade failed. Same token rules, same limits, same answers; takes no slot.
@Suite("Upgrade check endpoint")
struct UpgradeCheckTests {
    @Test func answersWhatAnUpgradeWouldGetWithoutTakingASlot() throws {
        let ferryd = try Ferryd(environment: ["FERRY_JWT_SECRET": Token.secret, "FERRY_MAX_CONNECTIONS": "1"])
        let missing = try ferryd.get("/v1/ws/check")
        #expect(missing.status == 401 && missing.errorCode == "unauthorized", "\(missing)")
        #expect(missing.headers["www-authenticate"] == "Bearer")
        #expect(missing.headers["access-control-allow-origin"] == "*", "a page of any origin must read it")
        let expired = try ferryd.get("/v1/ws/check?token=\(Token.hs256(Token.claims(sub: "a", ttl: -60)))")
        #expect(expired.status == 401 && expired.json?.object("error")?.string("message") == "the token has expired", "\(expired)")

        let token = Token.client("a")
        for _ in 0..<3 {
            let admitted = try ferryd.get("/v1/ws/check?token=\(token)")
            #expect(admitted.status == 204, "\(admitted)")
            #expect(admitted.headers["access-control-allow-origin"] == "*")
        }
        // Three checks took nothing: the broker's one connection is still there to take.
        let holder = try ferryd.connect(headers: ["Authorization": "Bearer \(token)"])
        _ = try holder.hello()
        let full = try ferryd.request("GET", "/v1/ws/check", headers: ["Authorization": "Bearer \(token)"])
        #expect(full.status == 503 && full.errorCode == "unavailable", "\(full)")
        #expect(full.headers["retry-after"] == "1")
        #expect(full.headers["access-control-expose-headers"] == "Retry-After")
    }
}
