import ArgumentParser

/// `ferry-bench`: load scenarios against a real `ferryd` on 127.0.0.1. Each prints a table for
/// people and one JSON line for machines. Build it in release mode: `swift build -c release`.
@main
struct FerryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ferry-bench",
        abstract: "Drive a real ferryd on 127.0.0.1 and measure it.",
        discussion: "The broker is started by the tool itself (the ferryd beside this binary, or FERRYD_PATH) on a temporary data folder, so scenarios can kill and restart it.",
        subcommands: [PubSub.self, Resume.self, Restart.self, Idle.self, Storm.self, StormWorker.self, Failover.self, DiskSync.self, TopicChurn.self, Scale.self]
    )
}
