import NIOCore
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds on the monotonic clock: the send time a publisher puts in each payload and the
/// subscriber reads back (one process, one clock).
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// CPU seconds (user + system) a process has used so far.
func cpuSeconds(of pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return .nan }
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// CPU seconds the whole machine spent so far over all its cores: busy (all but idle and I/O
/// wait) and in all. Two samples give how busy it was between them, whoever the work was for.
func machineCPUSeconds() -> (busy: Double, total: Double) {
    guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8), let line = stat.split(separator: "\n").first
    else { return (.nan, .nan) }
    // cpu user nice system idle iowait irq softirq steal (guest time is inside user).
    let ticks = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
    guard ticks.count == 8 else { return (.nan, .nan) }
    let hertz = Double(sysconf(Int32(_SC_CLK_TCK)))
    let total = ticks.reduce(0, +)
    return ((total - ticks[3] - ticks[4]) / hertz, total / hertz)
}

/// CPU seconds of the PostgreSQL server listening on `port` (started with `-p port`, as
/// `scripts/local-postgres.sh` starts it): its postmaster and every process it started, with the
/// backends that already ended (their server counts them as its children's time). NaN when no
/// such server runs here.
func postgresCPUSeconds(port: Int) -> Double {
    let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
    // After the name: ppid is field 4, utime, stime, cutime and cstime fields 14 to 17.
    var processes: [(pid: Int32, parent: Int32, seconds: Double)] = []
    var server: Int32?
    for pid in pids {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), stat.contains("(postgres)"),
            let close = stat.lastIndex(of: ")")
        else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 14, let parent = Int32(fields[1]) else { continue }
        processes.append((pid, parent, fields[11...14].compactMap { Double($0) }.reduce(0, +)))
        let arguments = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))?.split(separator: "\0") ?? []
        if zip(arguments, arguments.dropFirst()).contains(where: { $0 == "-p" && $1 == "\(port)" }) { server = pid }
    }
    guard let server else { return .nan }
    let ticks = processes.filter { $0.pid == server || $0.parent == server }.map(\.seconds).reduce(0, +)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Resident anonymous memory of a process in MiB (`RssAnon`: not the LMDB pages it mapped).
func anonymousMemoryMiB(of pid: Int32) -> Double {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return .nan }
    for line in status.split(separator: "\n") where line.hasPrefix("RssAnon:") {
        let kilobytes = line.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? .nan
        return kilobytes / 1024
    }
    return .nan
}

/// Counts arrivals and lets one task wait for the last; a failure ends the wait early.
final class Countdown: Sendable {
    private struct State {
        var remaining: Int
        var failure: String?
        var waiter: CheckedContinuation<Void, any Error>?
    }

    private let state: Mutex<State>

    init(_ count: Int) {
        state = Mutex(State(remaining: count))
    }

    func arrive() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            state.remaining -= 1
            guard state.remaining == 0 else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func fail(_ why: String) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if state.failure == nil { state.failure = why }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(throwing: BenchError(why))
    }

    /// Returns when every arrival happened; throws the first failure, or after `seconds`.
    func wait(_ what: String, within seconds: Double) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withCheckedThrowingContinuation { continuation in
                    let outcome = self.state.withLock { state -> Result<Void, BenchError>? in
                        if let failure = state.failure { return .failure(BenchError(failure)) }
                        if state.remaining <= 0 { return .success(()) }
                        state.waiter = continuation
                        return nil
                    }
                    if let outcome { continuation.resume(with: outcome) }
                }
            }
            group.addTask {
                try await Task.sleep(for: .seconds(seconds))
                throw BenchError("\(what): not within \(seconds) s")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }
}

/// Reads the unsigned integer after `"key":` in a JSON frame, without parsing the rest.
func integer(after key: StaticString, in buffer: ByteBuffer) -> UInt64? {
    buffer.withUnsafeReadableBytes { bytes -> UInt64? in
        let pattern = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        guard pattern.count <= bytes.count else { return nil }
        var index = 0
        let last = bytes.count - pattern.count
        while index <= last {
            if bytes[index] == pattern[0], memcmp(bytes.baseAddress! + index, pattern.baseAddress!, pattern.count) == 0 {
                var cursor = index + pattern.count
                var value: UInt64 = 0
                var digits = 0
                while cursor < bytes.count, bytes[cursor] >= 48, bytes[cursor] <= 57 {
                    value = value &* 10 &+ UInt64(bytes[cursor] - 48)
                    cursor += 1
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            index += 1
        }
        return nil
    }
}

/// True when the frame's first field is `"op":"<op>"` (how the broker writes every frame).
func frame(_ buffer: ByteBuffer, is op: StaticString) -> Bool {
    let prefix = #"{"op":""#.utf8
    guard buffer.readableBytes > prefix.count + op.utf8CodeUnitCount else { return false }
    return buffer.withUnsafeReadableBytes { bytes in
        guard memcmp(bytes.baseAddress!, Array(prefix), prefix.count) == 0 else { return false }
        return memcmp(bytes.baseAddress! + prefix.count, op.utf8Start, op.utf8CodeUnitCount) == 0
            && bytes[prefix.count + op.utf8CodeUnitCount] == UInt8(ascii: "\"")
    }
}

/// The string value after `key` (which ends with the opening quote) in a frame, up to the next
/// quote; nil when the key is not there. Bench frames carry topic names, which need no escapes.
func string(after key: StaticString, in buffer: ByteBuffer) -> String? {
    buffer.withUnsafeReadableBytes { bytes -> String? in
        let pattern = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        guard let start = bytes.firstRange(of: pattern)?.upperBound,
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "\""))
        else { return nil }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
    }
}
