import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Raises this process's open-file limit to at least `needed` descriptors: the soft limit up to
/// the hard one, and the hard one too where this process may (as root). A broker started
/// afterwards inherits it. Throws, with the limits and how to raise them, when it stays lower.
func raiseOpenFileLimit(toAtLeast needed: Int) throws {
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    var limit = rlimit()
    guard getrlimit(resource, &limit) == 0 else { throw BenchError("getrlimit: \(String(cString: strerror(errno)))") }
    let wanted = rlim_t(needed)
    guard limit.rlim_cur < wanted else { return }
    var raised = rlimit(rlim_cur: max(wanted, limit.rlim_max), rlim_max: max(wanted, limit.rlim_max))
    if limit.rlim_max < wanted, setrlimit(resource, &raised) == 0 { return }
    raised = rlimit(rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max)
    guard limit.rlim_max >= wanted, setrlimit(resource, &raised) == 0 else {
        throw BenchError(
            "\(needed) open files needed, the limit is \(limit.rlim_cur) (hard \(limit.rlim_max)): raise it (ulimit -Hn \(needed) as root, or LimitNOFILE) and run again"
        )
    }
}
