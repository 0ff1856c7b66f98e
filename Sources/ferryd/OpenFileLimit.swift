import Foundation

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
