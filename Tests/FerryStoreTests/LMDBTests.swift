import FerryStore
import Foundation
import Testing

@Suite("LMDB layer")
struct LMDBTests {
    /// Keys 1...n, each with a value naming it.
    private func fill(_ environment: LMDBEnvironment, _ db: LMDBDatabase, _ keys: some Sequence<UInt64>) throws {
        try environment.write { txn throws(LMDBError) in
            for value in keys { try txn.put(db, key(value), Array("v\(value)".utf8)) }
        }
    }

    private func keys(_ environment: LMDBEnvironment, _ db: LMDBDatabase) throws -> [UInt64] {
        try environment.read { txn throws(LMDBError) in try txn.entries(db, prefix: []).map { number($0.key) } }
    }

    @Test("put then get returns the bytes; absent keys are nil; delete reports presence")
    func putGetRoundTrip() throws {
        try withEnvironment { environment, db in
            let value: [UInt8] = [0, 1, 2, 0xFF] + Array(repeating: 7, count: 10_000)
            try environment.write { txn throws(LMDBError) in
                try txn.put(db, Array("k".utf8), value)
                // A write transaction reads its own writes.
                #expect(try txn.get(db, Array("k".utf8)) == value)
            }
            try environment.read { txn throws(LMDBError) in
                #expect(try txn.get(db, Array("k".utf8)) == value)
                #expect(try txn.get(db, Array("missing".utf8)) == nil)
                #expect(try txn.count(db) == 1)
            }
            try environment.write { txn throws(LMDBError) in
                try txn.put(db, Array("k".utf8), [9])
                #expect(try txn.delete(db, Array("other".utf8)) == false)
            }
            #expect(try environment.read { txn throws(LMDBError) in try txn.get(db, Array("k".utf8)) } == [9])
            let deleted = try environment.write { txn throws(LMDBError) in try txn.delete(db, Array("k".utf8)) }
            #expect(deleted)
            #expect(try environment.read { txn throws(LMDBError) in try txn.get(db, Array("k".utf8)) } == nil)
        }
    }

    @Test("a write closure that throws aborts: nothing it wrote is visible")
    func throwingWriteAborts() throws {
        try withEnvironment { environment, db in
            try fill(environment, db, [1])
            let failure = LMDBError.other(code: 42, message: "test failure")
            #expect(throws: failure) {
                try environment.write { txn throws(LMDBError) in
                    try txn.put(db, key(2), [2])
                    try txn.put(db, key(1), Array("changed".utf8))
                    #expect(try txn.delete(db, key(1)))
                    throw failure
                }
            }
            try environment.read { txn throws(LMDBError) in
                #expect(try txn.get(db, key(2)) == nil)
                #expect(try txn.get(db, key(1)) == Array("v1".utf8))
                #expect(try txn.count(db) == 1)
            }
            // The environment is still usable after the abort.
            try fill(environment, db, [3])
            #expect(try keys(environment, db) == [1, 3])
        }
    }

    @Test("forEach visits big-endian keys in numeric order, from the first key >= start, until told to stop")
    func forEachOrder() throws {
        try withEnvironment { environment, db in
            // Inserted out of order; little-endian bytes would sort 256 before 1.
            try fill(environment, db, [65536, 2, 256, 1, 1 << 40, 255])
            #expect(try keys(environment, db) == [1, 2, 255, 256, 65536, 1 << 40])

            try environment.read { txn throws(LMDBError) in
                var seen: [UInt64] = []
                try txn.forEach(db, from: key(3)) { key, value in
                    seen.append(number(key))
                    #expect(value == Array("v\(number(key))".utf8))
                    return true
                }
                #expect(seen == [255, 256, 65536, 1 << 40])

                seen = []
                try txn.forEach(db, from: key(256)) { key, _ in
                    seen.append(number(key))
                    return seen.count < 2
                }
                #expect(seen == [256, 65536])

                seen = []
                try txn.forEach(db, from: key(1 << 41)) { key, _ in
                    seen.append(number(key))
                    return true
                }
                #expect(seen.isEmpty)
            }
        }
    }

    @Test("entries(prefix:) returns exactly the keys with that prefix")
    func entriesWithPrefix() throws {
        try withEnvironment { environment, db in
            try environment.write { txn throws(LMDBError) in
                for name in ["a", "a\u{0}x", "a\u{0}y", "a.b\u{0}z", "b\u{0}x"] {
                    try txn.put(db, Array(name.utf8), [1])
                }
            }
            let found = try environment.read { txn throws(LMDBError) in
                try txn.entries(db, prefix: Array("a\u{0}".utf8)).map { String(decoding: $0.key, as: UTF8.self) }
            }
            #expect(found == ["a\u{0}x", "a\u{0}y"])
        }
    }

    @Test("deleteWhile deletes a range and stops at the first key it refuses")
    func deleteWhileStops() throws {
        try withEnvironment { environment, db in
            try fill(environment, db, 1...10)
            let deleted = try environment.write { txn throws(LMDBError) in
                var offered: [UInt64] = []
                let count = try txn.deleteWhile(db, from: key(3)) { key, value in
                    offered.append(number(key))
                    #expect(Array(value) == Array("v\(number(key))".utf8))
                    return number(key) < 7
                }
                // Every key is offered once, in order, and the refused one ends the scan.
                #expect(offered == [3, 4, 5, 6, 7])
                return count
            }
            #expect(deleted == 4)
            #expect(try keys(environment, db) == [1, 2, 7, 8, 9, 10])
        }
    }

    @Test("deleteWhile that deletes the last entry of the database returns the right count")
    func deleteWhileThroughTheEnd() throws {
        try withEnvironment { environment, db in
            try fill(environment, db, 1...10)
            let tail = try environment.write { txn throws(LMDBError) in
                let count = try txn.deleteWhile(db, from: key(8)) { _, _ in true }
                // The cursor is left in a usable state: the transaction goes on writing.
                try txn.put(db, key(100), [1])
                return count
            }
            #expect(tail == 3)
            #expect(try keys(environment, db) == [1, 2, 3, 4, 5, 6, 7, 100])

            let all = try environment.write { txn throws(LMDBError) in try txn.deleteWhile(db, from: []) { _, _ in true } }
            #expect(all == 8)
            #expect(try keys(environment, db).isEmpty)

            // On an empty database it deletes nothing.
            let none = try environment.write { txn throws(LMDBError) in try txn.deleteWhile(db, from: []) { _, _ in true } }
            #expect(none == 0)
        }
    }

    @Test("deleteWhile across many pages neither skips nor over-deletes")
    func deleteWhileManyPages() throws {
        try withEnvironment { environment, db in
            try fill(environment, db, 1...5000)
            let deleted = try environment.write { txn throws(LMDBError) in
                try txn.deleteWhile(db, from: key(1000)) { key, _ in number(key) < 4000 }
            }
            #expect(deleted == 3000)
            #expect(try keys(environment, db) == Array(1..<1000) + Array(4000...5000))

            let rest = try environment.write { txn throws(LMDBError) in try txn.deleteWhile(db, from: key(4500)) { _, _ in true } }
            #expect(rest == 501)
            #expect(try keys(environment, db) == Array(1..<1000) + Array(4000..<4500))
        }
    }

    @Test("a read transaction keeps its snapshot while a later write commits")
    func readSnapshot() throws {
        try withEnvironment { environment, db in
            try fill(environment, db, [1])
            try environment.read { snapshot throws(LMDBError) in
                #expect(try snapshot.get(db, key(1)) == Array("v1".utf8))
                try environment.write { txn throws(LMDBError) in
                    try txn.put(db, key(1), Array("new".utf8))
                    try txn.put(db, key(2), Array("v2".utf8))
                }
                // The committed write is invisible to the older snapshot…
                #expect(try snapshot.get(db, key(1)) == Array("v1".utf8))
                #expect(try snapshot.get(db, key(2)) == nil)
                #expect(try snapshot.count(db) == 1)
                // …and visible to a new one.
                try environment.read { fresh throws(LMDBError) in
                    #expect(try fresh.get(db, key(1)) == Array("new".utf8))
                    #expect(try fresh.count(db) == 2)
                }
            }
        }
    }

    @Test("opening a missing folder fails with a named error")
    func openMissingFolder() throws {
        var options = LMDBOptions()
        options.mapSize = 1 << 20
        #expect(throws: LMDBError.self) {
            _ = try LMDBEnvironment(path: temporaryPath() + "/not/there", options: options)
        }
    }
}
