#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Disk blocks held past the data file's used pages, so deletes and trims can commit on a full
/// filesystem.
///
/// LMDB copies every page it changes, so even a delete needs pages it has never written. When
/// the filesystem fills before the map does, those writes fail with `ENOSPC` and an operator
/// could not free space through the broker. The reserve is allocated in the data file itself
/// (`posix_fallocate` past the highest page in use): LMDB's writes into that range land on blocks
/// the filesystem already gave the file. Publishes are accepted only while the whole reserve is
/// held; deletes, trims, acks and sessions may use it.
///
/// The file may end up longer than LMDB's last page: LMDB reads its size from the meta page
/// (`mm_last_pg`), never from the file's length, and does not truncate it.
struct DiskReserve {
    /// Why publishes stop, for the store's log and error.
    enum Shortage: Equatable {
        /// The filesystem cannot give the reserve (`ENOSPC`).
        case diskFull
        /// The filesystem does not allocate ahead (`posix_fallocate` unsupported): no disk reserve.
        case unsupported
    }

    let descriptor: Int32
    /// Bytes held free past what is in use.
    let reserve: Int
    /// The file's length up to which blocks are known to be allocated.
    private(set) var allocatedEnd: Int
    private(set) var unsupported = false

    init(descriptor: Int32, reserve: Int) {
        self.descriptor = descriptor
        self.reserve = reserve
        var status = stat()
        allocatedEnd = fstat(descriptor, &status) == 0 ? Int(status.st_size) : 0
    }

    /// Makes sure `reserve` bytes are allocated past `usedEnd` (LMDB's high-water mark in bytes),
    /// allocating another reserve's worth ahead when it grows, so a busy store calls the
    /// filesystem about once per `reserve` bytes written. Nil when the reserve is held.
    mutating func hold(past usedEnd: Int) -> Shortage? {
        if unsupported { return .unsupported }
        if allocatedEnd >= usedEnd + reserve { return nil }
        // Ahead by two reserves when the disk has them, else by exactly one.
        for target in [usedEnd + 2 * reserve, usedEnd + reserve] {
            let code = posix_fallocate(descriptor, off_t(allocatedEnd), off_t(target - allocatedEnd))
            if code == 0 {
                allocatedEnd = target
                return nil
            }
            if code == EOPNOTSUPP || code == EINVAL {
                unsupported = true
                return .unsupported
            }
        }
        return .diskFull
    }
}
