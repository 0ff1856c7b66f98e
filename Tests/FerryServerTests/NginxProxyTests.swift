import FerryTestSupport
import Foundation
import Testing

/// The shipped `deploy/nginx/ferry.conf` in a real nginx in front of a real `ferryd`: WebSocket
/// upgrade, durable resume and the heartbeat/proxy-timeout relation, all through the proxy.
@Suite(
    "nginx in front of ferryd",
    .enabled(
        if: Nginx.executable != nil,
        "nginx is not installed: `apt-get install nginx-light` (.ci/run installs it through deploy/check.sh)")
)
struct NginxProxyTests {
    /// Publishes `{"n":N}` over HTTP through nginx and requires 201 with version `n`.
    private func publish(_ n: Int, through nginx: Nginx) throws {
        let response = try HTTP.request(
            port: nginx.port, method: "POST", path: "/v1/topics/orders/messages", headers: ["Content-Type": "application/json"],
            body: Data("{\"n\":\(n)}".utf8))
        guard response.status == 201, response.json?.int("version") == n else {
            throw TestFailure("publish \(n) through nginx: \(response)\n\(nginx.errorLog)")
        }
    }

    @Test func durableSessionResumesThroughNginx() throws {
        let ferryd = try Ferryd.withAdmin()
        let nginx = try Nginx(proxyingTo: ferryd.port)

        let first = try TestWebSocket(port: nginx.port)
        #expect(try first.hello(clientID: "via-nginx").bool("resumed") == false)
        try first.subscribe("orders", from: "earliest")
        try publish(1, through: nginx)
        #expect(try first.collectMessages(count: 1).versions == [1])
        try first.ack("orders", 1)
        try first.pingPong()  // the ack is handled before the client leaves
        first.close()
        try ferryd.awaitDisconnected("via-nginx")

        try publish(2, through: nginx)
        try publish(3, through: nginx)
        let second = try TestWebSocket(port: nginx.port)
        let welcome = try second.hello(clientID: "via-nginx")
        #expect(welcome.bool("resumed") == true)
        #expect(welcome.objects("subscriptions")?.first?.int("ack_floor") == 1)
        #expect(try second.collectMessages(count: 2).versions == [2, 3])
        // The next message is the next version: nothing missed was sent twice.
        try publish(4, through: nginx)
        #expect(try second.collectMessages(count: 1).versions == [4])
        second.close()
    }

    /// The broker's pings keep an idle socket open through a proxy whose read timeout is above
    /// the heartbeat; a heartbeat above the timeout lets the proxy cut the idle socket. Both
    /// directions of the rule deploy/nginx/ferry.conf states, with a 2 s timeout for speed.
    @Test func heartbeatKeepsIdleSocketOpenOnlyWhenBelowProxyTimeout() throws {
        let pinged = try Ferryd(environment: ["FERRY_HEARTBEAT": "500ms"])
        let nginx = try Nginx(proxyingTo: pinged.port, socketTimeout: "2s")
        let idle = try TestWebSocket(port: nginx.port)
        try idle.hello()
        // Idle for longer than the proxy timeout: only pings (answered) cross the proxy.
        #expect(try idle.framesWithin(3).isEmpty)
        #expect(idle.pingsReceived >= 4)
        try idle.pingPong()

        let silent = try Ferryd(environment: ["FERRY_HEARTBEAT": "10s"])
        let strictProxy = try Nginx(proxyingTo: silent.port, socketTimeout: "2s")
        let cut = try TestWebSocket(port: strictProxy.port)
        try cut.hello()
        // nginx closes the TCP connection after 2 s without a frame: no close frame, end of stream.
        let start = ContinuousClock.now
        #expect(cut.receive(timeout: 6) == .eof)
        #expect(ContinuousClock.now - start >= .milliseconds(1500))
    }
}
