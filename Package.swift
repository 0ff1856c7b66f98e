// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "ferry",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ferryd", targets: ["ferryd"]),
        .executable(name: "ferryctl", targets: ["ferryctl"]),
        .executable(name: "ferry-bench", targets: ["ferry-bench"]),
        .library(name: "FerryProtocol", targets: ["FerryProtocol"]),
        .library(name: "FerryClient", targets: ["FerryClient"]),
    ],
    dependencies: [
        // Default traits make SwiftPM re-plan and rebuild Hummingbird on small edits.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0", traits: []),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        // Property-based tests (fuzzing of the decoders); test targets only.
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        // Cluster mode: several ferryd nodes sharing one PostgreSQL.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        // Storage: a safe LMDB layer and Ferry's schema behind the `MessageStore` protocol. It
        // uses FerryProtocol's names and topic patterns (per-topic configuration), and Crypto for
        // the SHA-256 of backup files (BackupFile.swift).
        .target(
            name: "FerryStore", dependencies: ["CLMDB", "FerryProtocol", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings),
        // The same `MessageStore` on PostgreSQL, for several ferryd nodes sharing one database.
        .target(
            name: "FerryPostgres",
            dependencies: [
                "FerryStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Wire types shared by the server, the client library and the CLI. No dependencies.
        .target(name: "FerryProtocol", swiftSettings: swiftSettings),
        // Topics, sessions, delivery. No HTTP or NIO.
        .target(
            name: "FerryCore",
            dependencies: [
                "FerryStore", "FerryProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "FerryServer",
            dependencies: [
                "FerryCore", "FerryStore", "FerryProtocol",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            // Compiled into the binary (PackageResources.ferry_js, …), so a ferryd copied alone still serves them.
            resources: [
                .embedInCode("Resources/ferry.js"),
                .embedInCode("Resources/console/console.html"),
                .embedInCode("Resources/console/console.css"),
                .embedInCode("Resources/console/console.js"),
                .embedInCode("Resources/console/common.js"),
                .embedInCode("Resources/console/charts.js"),
                .embedInCode("Resources/console/clients.js"),
                .embedInCode("Resources/console/topic.js"),
                .embedInCode("Resources/console/tail.js"),
                .embedInCode("Resources/openapi.json"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ferryd",
            dependencies: [
                "FerryServer", "FerryCore", "FerryStore", "FerryPostgres", "FerryProtocol",
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The client library: reconnects, resumes, de-duplicates and keeps an offline outbox.
        .target(
            name: "FerryClient",
            dependencies: [
                "FerryProtocol",
                // The WebSocket is opened by hand (WebSocketDialer.swift), so each phase has a deadline.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ferryctl",
            dependencies: [
                "FerryClient", "FerryProtocol", "FerryStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Load scenarios against a real ferryd; run it in release mode (bench/README.md).
        .executableTarget(
            name: "ferry-bench",
            dependencies: [
                "FerryClient", "FerryProtocol", "FerryTestSupport", "BenchPlot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "bench/Sources/ferry-bench",
            swiftSettings: swiftSettings
        ),
        // The SVG plots of `ferry-bench scale`: scales, ticks and path building, pure and tested without I/O (BenchTests).
        .target(name: "BenchPlot", path: "bench/Sources/BenchPlot", swiftSettings: swiftSettings),
        // The plots' arithmetic, and `ferry-bench scale` run as a child process against real brokers.
        .testTarget(name: "BenchTests", dependencies: ["BenchPlot", "FerryTestSupport", "ferry-bench", "ferryd"], swiftSettings: swiftSettings),
        // What the integration suites share: a real ferryd child process, raw sockets, a fault-injecting proxy.
        .target(name: "FerryTestSupport", path: "Tests/FerryTestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "FerryStoreTests", dependencies: ["FerryStore", "FerryPostgres", "FerryTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "FerryProtocolTests",
            dependencies: ["FerryProtocol", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "FerryCoreTests", dependencies: ["FerryCore", "FerryStore", "FerryProtocol"], swiftSettings: swiftSettings),
        .testTarget(
            name: "FerryServerTests",
            dependencies: [
                "FerryProtocol", "FerryStore", "FerryTestSupport", "ferryd", "ferryctl",
                // ferryctl bench runs the ferry-bench built beside it.
                "ferry-bench",
                // The route table the OpenAPI document must match.
                "FerryServer", .product(name: "HTTPTypes", package: "swift-http-types"),
                // Tokens signed and certificates made by the tests themselves, and a TLS client.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                // The first-request tests run the server's pipeline on an embedded channel.
                "FerryCore", .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            // The browser test's page, opened by Chromium from its source path.
            exclude: ["Browser"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FerryClientTests",
            // ferryctl mints the short-lived tokens of the token provider test.
            dependencies: ["FerryClient", "FerryProtocol", "FerryTestSupport", "ferryd", "ferryctl"],
            swiftSettings: swiftSettings
        ),
    ]
)
