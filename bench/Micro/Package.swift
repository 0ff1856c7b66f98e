// swift-tools-version:6.1
// Micro benchmarks of Ferry's store and wire code, in a package of their own so the main build
// and CI do not pay for them. The targets are the main package's own folders (symlinks), so
// nothing is copied and no path dependency on the repository's folder name is needed.
//
// ordo-one/benchmark: `swift package --disable-sandbox benchmark` (see bench/README.md).
// Only its MallocInterposer trait is enabled: its default RuntimeInterposer trait (ARC counts
// on Linux with Swift 6.3) needs ordo-one/swift-runtime-interposer, which is not available here.
import PackageDescription

let package = Package(
    name: "ferry-micro",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        // As in the main package: FerryProtocol's names and patterns, Crypto for backup files.
        .target(
            name: "FerryStore", dependencies: ["CLMDB", "FerryProtocol", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: [.swiftLanguageMode(.v6)]),
        .target(name: "FerryProtocol", swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(
            name: "FerryMicro",
            dependencies: ["FerryStore", "FerryProtocol", .product(name: "Benchmark", package: "benchmark")],
            path: "Benchmarks/FerryMicro",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
