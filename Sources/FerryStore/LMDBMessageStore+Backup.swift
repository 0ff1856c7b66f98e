import Foundation

extension LMDBMessageStore {
    // MARK: - Backups

    public func backup(to path: String) throws(StoreError) -> Int {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            if let existing = try? FileManager.default.contentsOfDirectory(atPath: path), !existing.isEmpty {
                throw StoreError.engine("backup folder \(path) is not empty")
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.engine("cannot create backup folder \(path): \(error.localizedDescription)")
        }
        do {
            try env.copy(to: path)
        } catch {
            throw StoreError(error)
        }
        let size = ((try? FileManager.default.attributesOfItem(atPath: path + "/data.mdb"))?[.size] as? Int) ?? 0
        return size
    }

    public func backup(into descriptor: Int32) throws(StoreError) {
        do {
            try env.copy(toDescriptor: descriptor)
        } catch {
            throw StoreError(error)
        }
    }

    /// The pages in use less those on the free list, which the compacting copy leaves out.
    public func backupSizeEstimate() throws(StoreError) -> Int {
        let info = env.info()
        do {
            return max(0, info.lastPage + 1 - (try env.freePages())) * info.pageSize
        } catch {
            throw StoreError(error)
        }
    }
}
