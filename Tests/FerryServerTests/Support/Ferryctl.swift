import FerryTestSupport
import Foundation

/// Runs `ferryctl` as a child process and waits for it, with `FERRY_URL` naming `broker` and
/// `FERRY_ADMIN_TOKEN` set to `token` (left unset when nil). Standard input is `input`, or empty.
func ferryctl(
    _ arguments: [String], broker: Ferryd? = nil, token: String? = testAdminToken, input: String = "", timeout: TimeInterval = 60
) throws -> ChildRun {
    try runToCompletion(try ferryctlProcess(arguments, broker: broker, token: token), input: input, timeout: timeout)
}

/// A `ferryctl` process, not started, with the environment of ``ferryctl(_:broker:token:input:timeout:)``.
func ferryctlProcess(_ arguments: [String], broker: Ferryd?, token: String? = testAdminToken) throws -> Process {
    let process = Process()
    process.executableURL = try locateExecutable(named: "ferryctl", override: "FERRYCTL_PATH")
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("FERRY_") }
    if let broker { environment["FERRY_URL"] = "http://127.0.0.1:\(broker.port)" }
    environment["FERRY_ADMIN_TOKEN"] = token
    process.environment = environment
    return process
}
