import FerryCore
import FerryProtocol
import Hummingbird
import NIOCore

/// The request context of Ferry's routes: Hummingbird's basic one plus the client's address,
/// which keys the publish rate limit of clients without a token subject.
struct FerryRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

extension HTTPAPI {
    /// Takes `count` publishes from the sender's bucket: its token subject's, else its address's
    /// (no authentication, the admin token, a token without `sub`). Nothing is stored on a refusal:
    /// 429 `rate_limited` with `Retry-After`, or 413 `too_large` for more than a full bucket holds.
    func admitPublishes(_ count: Int, from principal: Principal, _ context: FerryRequestContext) throws(APIError) {
        guard let publishRate else { return }
        let client: String
        if case .client(let subject?) = principal.identity {
            client = "sub:" + subject
        } else {
            client = "ip:" + (context.remoteAddress?.ipAddress ?? "")
        }
        let limits = broker.configuration.limits
        switch publishRate.admit(count, for: client) {
        case .allowed:
            return
        case .retryAfter(let seconds):
            broker.rejected(by: .publishRate, count: count)
            throw APIError(.overPublishRate(limits, retryAfter: seconds), retryAfter: seconds)
        case .overBurst:
            broker.rejected(by: .publishRate, count: count)
            throw APIError(
                .tooLarge, "\(count) messages are over the publish burst (\(limits.publishBurst)) and can never pass the rate limit; nothing was stored")
        }
    }
}
