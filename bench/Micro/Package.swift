// swift-tools-version:6.2
// Micro benchmarks of Ferry's store and wire code, in a package of their own so the main build
// and CI do not pay for them. The targets are the main package's own folders (symlinks), so
// nothing is copied and no path dependency on the repository's folder name is needed.
import PackageDescription

let package = Package(
    name: "ferry-micro",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/google/swift-benchmark", from: "0.1.2"),
    ],
    targets: [
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .target(name: "FerryStore", dependencies: ["CLMDB"], swiftSettings: [.swiftLanguageMode(.v6)]),
        .target(name: "FerryProtocol", swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(
            name: "ferry-micro",
            dependencies: ["FerryStore", "FerryProtocol", .product(name: "Benchmark", package: "swift-benchmark")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
