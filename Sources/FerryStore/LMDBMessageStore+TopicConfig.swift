import Synchronization

extension LMDBMessageStore {
    // MARK: - Per-topic configuration

    public func topicConfigs() throws(StoreError) -> TopicConfigs {
        try withCorruptionNamed { () throws(LMDBError) in
            try env.read { txn throws(LMDBError) in try topicConfigs(in: txn) }
        }
    }

    func topicConfigs(in txn: some LMDBReading) throws(LMDBError) -> TopicConfigs {
        var configs = TopicConfigs(defaults: configuration.retention, dedupWindow: configuration.dedupWindow)
        guard let topicConfigTable else { return configs }
        for (key, value) in try txn.entries(topicConfigTable, prefix: []) {
            let (pattern, config) = try Self.decoded("topic configuration", key) { () throws(StoreError) in
                try Self.decodeTopicConfig(key, value)
            }
            configs[pattern] = config
        }
        return configs
    }

    /// What a commit of `operations` enforces: the configuration as stored (read once, then kept:
    /// only this store's commits change it) with the commit's own changes.
    func topicConfigs(after operations: [StoreOperation]) throws(StoreError) -> TopicConfigs {
        var configs: TopicConfigs
        if let cached = topicConfigCache.withLock({ $0 }) {
            configs = cached
        } else {
            configs = try topicConfigs()
            topicConfigCache.withLock { $0 = configs }
        }
        for operation in operations where operation.isTopicConfigChange { configs.apply(operation) }
        return configs
    }

    /// A database later versions added: created when missing, except read-only, where an older
    /// data folder simply has none.
    static func openAddedDatabase(_ name: String, in env: LMDBEnvironment, readOnly: Bool) throws(LMDBError) -> LMDBDatabase? {
        do {
            return try env.openDatabase(name)
        } catch .notFound where readOnly {
            return nil
        }
    }

    func writableConfigTable() throws(LMDBError) -> LMDBDatabase {
        guard let topicConfigTable else { throw LMDBError.other(code: -1, message: "the store is open read-only") }
        return topicConfigTable
    }
}
