import FerryTestSupport
import Foundation
import Testing

extension PostgresTestServer {
    /// The server; when there is none, cancels the current test case, saying why. The console
    /// does not show a cancelled case of a parameterized test, so the reason is also printed.
    static func running() throws -> PostgresTestServer {
        guard case .success(let server) = shared else {
            let test = Test.current?.displayName ?? Test.current?.name ?? "a test"
            FileHandle.standardError.write(Data("skipped the PostgreSQL case of \(test): \(unavailableReason)\n".utf8))
            try Test.cancel(Comment(rawValue: unavailableReason))
        }
        return server
    }
}
