import Foundation

/// Reads a setting: the flag if given, else the `FERRY_*` environment variable, else nil.
func setting(_ flag: String?, _ variable: String) -> String? {
    flag ?? ProcessInfo.processInfo.environment[variable].flatMap { $0.isEmpty ? nil : $0 }
}

struct SettingError: Error, CustomStringConvertible {
    let description: String
}

/// The contents of the file a setting names.
func readSettingFile(_ path: String, name: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw SettingError(description: "\(name): cannot read '\(path)'")
    }
    return data
}

/// `500ms`, `30s`, `10m`, `24h`, `7d`, or plain seconds; returns milliseconds.
func parseDuration(_ text: String, name: String) throws -> UInt64 {
    let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        if let value = Double(trimmed.dropLast(suffix.count)), value >= 0 { return UInt64(value * factor) }
    }
    if let seconds = Double(trimmed), seconds >= 0 { return UInt64(seconds * 1000) }
    throw SettingError(description: "\(name): '\(text)' is not a duration (e.g. 500ms, 30s, 10m, 24h, 7d)")
}

/// Bytes, with an optional `K`/`M`/`G`/`T` suffix (powers of 1024; `KiB`, `KB` also read).
func parseSize(_ text: String, name: String) throws -> UInt64 {
    var trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
    for suffix in ["IB", "B"] where trimmed.hasSuffix(suffix) && trimmed.count > suffix.count {
        trimmed = String(trimmed.dropLast(suffix.count))
        break
    }
    let factors: [Character: Double] = ["K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
    if let last = trimmed.last, let factor = factors[last], let value = Double(trimmed.dropLast().trimmingCharacters(in: .whitespaces)), value >= 0 {
        return UInt64(value * factor)
    }
    if let value = UInt64(trimmed) { return value }
    throw SettingError(description: "\(name): '\(text)' is not a size (e.g. 1048576, 512M, 8G)")
}

/// A non-negative whole number.
func parseCount(_ text: String, name: String) throws -> UInt64 {
    guard let value = UInt64(text.trimmingCharacters(in: .whitespaces)) else {
        throw SettingError(description: "\(name): '\(text)' is not a count")
    }
    return value
}

/// A limit that may be `unlimited` (or `0`, `none`).
func parseLimit(_ text: String, name: String, parse: (String, String) throws -> UInt64) throws -> UInt64? {
    switch text.lowercased() {
    case "unlimited", "none", "0", "": return nil
    default: return try parse(text, name)
    }
}

/// Raises the soft limit on open files to the hard limit and returns the limit in force.
///
/// A broker holds a descriptor per connection, and many service managers and container runtimes
/// start processes with a soft limit of 1,024 under a hard limit in the hundreds of thousands,
/// expecting a server that needs more to take it (as Go's runtime does).
func raiseOpenFileLimit() -> UInt64 {
    var limit = rlimit()
    guard getrlimit(resource(RLIMIT_NOFILE), &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        // An unlimited hard limit is refused for descriptors (above fs.nr_open): keep the soft one.
        if setrlimit(resource(RLIMIT_NOFILE), &raised) == 0 { limit = raised }
    }
    return UInt64(limit.rlim_cur)
}

#if canImport(Glibc)
private func resource(_ value: __rlimit_resource) -> __rlimit_resource_t { __rlimit_resource_t(value.rawValue) }
#else
private func resource(_ value: Int32) -> Int32 { value }
#endif
