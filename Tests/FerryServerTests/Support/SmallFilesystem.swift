import FerryTestSupport
import Foundation
import Glibc

/// A tmpfs of a few MiB mounted for one test, so the broker's disk really fills; unmounted when
/// released. Mounting needs root (CAP_SYS_ADMIN): ``isAvailable`` says whether this machine can.
final class SmallFilesystem {
    let path: URL

    init(megabytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-small-fs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: path, withIntermediateDirectories: true)
        guard mount("tmpfs", path.path, "tmpfs", 0, "size=\(megabytes)m") == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: path)
            throw TestFailure("cannot mount a \(megabytes) MiB tmpfs at \(path.path): \(reason)")
        }
    }

    deinit {
        umount2(path.path, Int32(MNT_DETACH))
        try? FileManager.default.removeItem(at: path)
    }

    /// True when a tmpfs can be mounted here (a probe mounts and unmounts one).
    static let isAvailable: Bool = (try? SmallFilesystem(megabytes: 1)) != nil

    /// Bytes the filesystem can still give.
    var freeBytes: Int {
        var info = statvfs()
        guard statvfs(path.path, &info) == 0 else { return 0 }
        return Int(info.f_bavail) * Int(info.f_frsize)
    }

    /// Writes a file of zeros until the filesystem refuses more (what another program filling
    /// the disk does); returns its URL, to delete to free the space again.
    func fillWithBallast() throws -> URL {
        let file = path.appendingPathComponent("ballast")
        let descriptor = open(file.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else { throw TestFailure("cannot create \(file.path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let chunk = [UInt8](repeating: 0, count: 64 << 10)
        while chunk.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
        return file
    }
}
