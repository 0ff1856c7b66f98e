import CLMDB
import Foundation

/// An LMDB failure, named. LMDB's own codes are negative; positive ones are `errno` values.
public enum LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The map is full: nothing of the failed transaction was written.
    case mapFull
    /// The disk is full (`ENOSPC`).
    case diskFull
    case readersFull
    case transactionFull
    /// Another process grew the map beyond ours.
    case mapResized
    /// LMDB found a damaged page, or a record of Ferry's does not decode (what and where).
    case corrupted(String)
    case versionMismatch
    /// A key or named database that does not exist, where it must.
    case notFound
    case other(code: Int32, message: String)

    init(code: Int32) {
        switch code {
        case MDB_MAP_FULL: self = .mapFull
        case ENOSPC: self = .diskFull
        case MDB_READERS_FULL: self = .readersFull
        case MDB_TXN_FULL: self = .transactionFull
        case MDB_MAP_RESIZED: self = .mapResized
        case MDB_CORRUPTED, MDB_PAGE_NOTFOUND: self = .corrupted(String(cString: mdb_strerror(code)))
        case MDB_VERSION_MISMATCH, MDB_INVALID: self = .versionMismatch
        case MDB_NOTFOUND: self = .notFound
        default: self = .other(code: code, message: String(cString: mdb_strerror(code)))
        }
    }

    /// True when the store ran out of space: the caller may retry after space is freed.
    public var isOutOfSpace: Bool { self == .mapFull || self == .diskFull }

    public var description: String {
        switch self {
        case .mapFull: "LMDB map is full"
        case .diskFull: "disk is full"
        case .readersFull: "LMDB reader slots are exhausted"
        case .transactionFull: "LMDB transaction has too many dirty pages"
        case .mapResized: "LMDB map was resized by another process"
        case .corrupted(let what): "corrupted data: \(what)"
        case .versionMismatch: "not an LMDB environment of this version"
        case .notFound: "not found"
        case .other(let code, let message): "LMDB error \(code): \(message)"
        }
    }
}

@inline(__always)
func check(_ code: Int32) throws(LMDBError) {
    if code != MDB_SUCCESS { throw LMDBError(code: code) }
}

/// How an environment is opened.
public struct LMDBOptions: Sendable {
    /// Upper bound of the data file; LMDB reserves address space, not disk.
    public var mapSize: Int = 8 << 30
    public var maxDatabases: UInt32 = 16
    /// Concurrent read transactions; each open one holds a slot.
    public var maxReaders: UInt32 = 512
    /// When false, commits are not fsynced: a process crash loses nothing, a machine crash may.
    public var syncOnCommit = true
    /// Opens an existing environment for reading only (`MDB_RDONLY`): write transactions fail and
    /// databases are never created, so an offline check cannot change what it checks.
    public var readOnly = false

    public init() {}
}

/// A named database inside an environment, opened once at start-up.
public struct LMDBDatabase: Sendable, Hashable {
    let dbi: MDB_dbi
}

/// An LMDB environment: one data folder, one writer at a time, many readers.
///
/// Transactions are scoped to closures, so a transaction can never outlive its scope and one
/// that throws is aborted: commit happens only when the closure returns.
public final class LMDBEnvironment: @unchecked Sendable {
    // Safe to share: the pointer is set once in init and freed once in deinit; LMDB's environment
    // functions are thread-safe, and with MDB_NOTLS a transaction is tied to its closure rather
    // than to a thread. LMDB serialises write transactions with its own mutex.
    private let env: OpaquePointer
    public let path: String
    /// Opened with ``LMDBOptions/readOnly``: only read transactions work.
    public let isReadOnly: Bool

    public init(path: String, options: LMDBOptions) throws(LMDBError) {
        var pointer: OpaquePointer?
        try check(mdb_env_create(&pointer))
        guard let pointer else { throw LMDBError.other(code: -1, message: "mdb_env_create returned nothing") }
        do {
            try check(mdb_env_set_mapsize(pointer, options.mapSize))
            try check(mdb_env_set_maxdbs(pointer, options.maxDatabases))
            try check(mdb_env_set_maxreaders(pointer, options.maxReaders))
            var flags = UInt32(MDB_NOTLS)
            if !options.syncOnCommit { flags |= UInt32(MDB_NOSYNC) }
            if options.readOnly { flags |= UInt32(MDB_RDONLY) }
            try check(mdb_env_open(pointer, path, flags, 0o644))
        } catch {
            mdb_env_close(pointer)
            throw error
        }
        self.env = pointer
        self.path = path
        self.isReadOnly = options.readOnly
    }

    deinit {
        mdb_env_close(env)
    }

    /// Opens (creating if missing) the named database; call at start-up, before other transactions.
    /// A read-only environment only opens an existing one, and throws `.notFound` otherwise.
    public func openDatabase(_ name: String) throws(LMDBError) -> LMDBDatabase {
        guard isReadOnly else {
            return try write { txn throws(LMDBError) in try Self.open(name, in: txn.txn, flags: UInt32(MDB_CREATE)) }
        }
        // A handle opened in a read transaction stays open only if that transaction commits.
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn))
        guard let txn else { throw LMDBError.other(code: -1, message: "mdb_txn_begin returned nothing") }
        do {
            let database = try Self.open(name, in: txn, flags: 0)
            try check(mdb_txn_commit(txn))
            return database
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
    }

    private static func open(_ name: String, in txn: OpaquePointer, flags: UInt32) throws(LMDBError) -> LMDBDatabase {
        var dbi: MDB_dbi = 0
        try check(mdb_dbi_open(txn, name, flags, &dbi))
        return LMDBDatabase(dbi: dbi)
    }

    /// Runs `body` in a read-only transaction, which sees a snapshot and never blocks the writer.
    public func read<T>(_ body: (ReadTransaction) throws(LMDBError) -> T) throws(LMDBError) -> T {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &txn))
        guard let txn else { throw LMDBError.other(code: -1, message: "mdb_txn_begin returned nothing") }
        defer { mdb_txn_abort(txn) }
        return try body(ReadTransaction(txn: txn))
    }

    /// Runs `body` in the write transaction and commits when it returns; a throw aborts.
    public func write<T>(_ body: (WriteTransaction) throws(LMDBError) -> T) throws(LMDBError) -> T {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, 0, &txn))
        guard let txn else { throw LMDBError.other(code: -1, message: "mdb_txn_begin returned nothing") }
        let result: T
        do {
            result = try body(WriteTransaction(txn: txn))
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        try check(mdb_txn_commit(txn))
        return result
    }

    /// Flushes to disk; needed after commits made without sync when a durable point is wanted.
    public func sync() throws(LMDBError) {
        try check(mdb_env_sync(env, 1))
    }

    /// Map geometry and use, for stats and the space reserve.
    public func info() -> (mapSize: Int, pageSize: Int, lastPage: Int) {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &stat)
        return (info.me_mapsize, Int(stat.ms_psize), info.me_last_pgno)
    }

    /// The data file's descriptor, for the disk reserve (``DiskReserve``).
    public func fileDescriptor() throws(LMDBError) -> Int32 {
        var descriptor: Int32 = -1
        try check(mdb_env_get_fd(env, &descriptor))
        return descriptor
    }

    /// Pages on LMDB's free list, which later writes reuse before growing the file.
    public func freePages() throws(LMDBError) -> Int {
        try read { txn throws(LMDBError) in
            // The free list is database 0; each value starts with a count of page numbers.
            var total = 0
            try txn.forEach(LMDBDatabase(dbi: 0), from: []) { _, value in
                if value.count >= MemoryLayout<Int>.size {
                    total += value.withUnsafeBytes { $0.loadUnaligned(as: Int.self) }
                }
                return true
            }
            return total
        }
    }

    /// Writes a compacted copy of the environment into the empty folder `path`.
    public func copy(to path: String) throws(LMDBError) {
        try check(mdb_env_copy2(env, path, UInt32(MDB_CP_COMPACT)))
    }

    /// Writes a compacted copy of the data file into `descriptor` (a file or a pipe), blocking
    /// until it is written. A write that fails ends the copy with its error: `EPIPE` when the
    /// reader of a pipe went away (LMDB's copy blocks and collects that `SIGPIPE` itself).
    public func copy(toDescriptor descriptor: Int32) throws(LMDBError) {
        try check(mdb_env_copyfd2(env, descriptor, UInt32(MDB_CP_COMPACT)))
    }
}

/// Reads shared by read and write transactions.
public protocol LMDBReading {
    var txn: OpaquePointer { get }
}

extension LMDBReading {
    /// The value at `key`, copied out of the map.
    public func get(_ db: LMDBDatabase, _ key: [UInt8]) throws(LMDBError) -> [UInt8]? {
        var value = MDB_val()
        let code = key.withUnsafeBytes { keyBytes in
            var keyVal = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return mdb_get(txn, db.dbi, &keyVal, &value)
        }
        if code == MDB_NOTFOUND { return nil }
        try check(code)
        return Array(UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
    }

    /// Visits entries in key order from the first key ≥ `start` while `body` returns true.
    /// Key and value are copied, so `body` may keep them.
    public func forEach(
        _ db: LMDBDatabase, from start: [UInt8], _ body: ([UInt8], [UInt8]) throws(LMDBError) -> Bool
    ) throws(LMDBError) {
        var cursor = try Cursor(txn, db, from: start)
        while cursor.isValid {
            guard try body(cursor.key, Array(cursor.value)) else { return }
            try cursor.advance(MDB_NEXT)
        }
    }

    /// Entries whose keys start with `prefix`, in key order.
    public func entries(_ db: LMDBDatabase, prefix: [UInt8]) throws(LMDBError) -> [(key: [UInt8], value: [UInt8])] {
        var result: [(key: [UInt8], value: [UInt8])] = []
        try forEach(db, from: prefix) { key, value in
            guard key.starts(with: prefix) else { return false }
            result.append((key, value))
            return true
        }
        return result
    }

    /// Number of entries in `db`.
    public func count(_ db: LMDBDatabase) throws(LMDBError) -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(txn, db.dbi, &stat))
        return stat.ms_entries
    }
}

/// A cursor positioned at the first key ≥ `start` (the first key when `start` is empty).
/// `key` and `value` are valid until the next move; the cursor closes when the value is dropped.
private struct Cursor: ~Copyable {
    let cursor: OpaquePointer?
    private var keyVal: MDB_val
    private var valueVal: MDB_val
    /// False once the cursor moved past the last entry.
    private(set) var isValid: Bool

    init(_ txn: OpaquePointer, _ db: LMDBDatabase, from start: [UInt8]) throws(LMDBError) {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor))
        var key = MDB_val()
        var value = MDB_val()
        let code = start.withUnsafeBytes { startBytes in
            if startBytes.isEmpty { return mdb_cursor_get(cursor, &key, &value, MDB_FIRST) }
            key = MDB_val(mv_size: startBytes.count, mv_data: UnsafeMutableRawPointer(mutating: startBytes.baseAddress))
            return mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
        }
        if code != MDB_SUCCESS && code != MDB_NOTFOUND {
            mdb_cursor_close(cursor)
            throw LMDBError(code: code)
        }
        self.cursor = cursor
        keyVal = key
        valueVal = value
        isValid = code == MDB_SUCCESS
    }

    deinit {
        mdb_cursor_close(cursor)
    }

    var key: [UInt8] { Array(UnsafeRawBufferPointer(start: keyVal.mv_data, count: keyVal.mv_size)) }
    var value: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: valueVal.mv_data, count: valueVal.mv_size) }

    mutating func advance(_ operation: MDB_cursor_op) throws(LMDBError) {
        let code = mdb_cursor_get(cursor, &keyVal, &valueVal, operation)
        isValid = code == MDB_SUCCESS
        if code != MDB_NOTFOUND { try check(code) }
    }
}

/// A read-only snapshot; valid only inside `LMDBEnvironment.read`.
public struct ReadTransaction: LMDBReading {
    public let txn: OpaquePointer
}

/// The write transaction; valid only inside `LMDBEnvironment.write`.
public struct WriteTransaction: LMDBReading {
    public let txn: OpaquePointer

    public func put(_ db: LMDBDatabase, _ key: [UInt8], _ value: [UInt8]) throws(LMDBError) {
        let code = key.withUnsafeBytes { keyBytes in
            value.withUnsafeBytes { valueBytes in
                var keyVal = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
                var valueVal = MDB_val(mv_size: valueBytes.count, mv_data: UnsafeMutableRawPointer(mutating: valueBytes.baseAddress))
                return mdb_put(txn, db.dbi, &keyVal, &valueVal, 0)
            }
        }
        try check(code)
    }

    /// Deletes `key`; returns false when it was absent.
    @discardableResult
    public func delete(_ db: LMDBDatabase, _ key: [UInt8]) throws(LMDBError) -> Bool {
        let code = key.withUnsafeBytes { keyBytes in
            var keyVal = MDB_val(mv_size: keyBytes.count, mv_data: UnsafeMutableRawPointer(mutating: keyBytes.baseAddress))
            return mdb_del(txn, db.dbi, &keyVal, nil)
        }
        if code == MDB_NOTFOUND { return false }
        try check(code)
        return true
    }

    /// Deletes entries in key order from the first key ≥ `start` while `shouldDelete` returns true.
    /// Returns how many were deleted.
    @discardableResult
    public func deleteWhile(
        _ db: LMDBDatabase, from start: [UInt8], _ shouldDelete: ([UInt8], UnsafeRawBufferPointer) -> Bool
    ) throws(LMDBError) -> Int {
        var cursor = try Cursor(txn, db, from: start)
        var deleted = 0
        while cursor.isValid {
            guard shouldDelete(cursor.key, cursor.value) else { return deleted }
            try check(mdb_cursor_del(cursor.cursor, 0))
            deleted += 1
            // After a delete LMDB's MDB_NEXT returns the entry that followed, without skipping it.
            try cursor.advance(MDB_NEXT)
        }
        return deleted
    }
}
