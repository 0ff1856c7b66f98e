// swift-tools-version:6.2
// libFuzzer targets over Ferry's parsers, kept out of the main build:
//   cd fuzz && swift build -c release --sanitize=fuzzer --sanitize=address && .build/release/FuzzClientFrame -max_total_time=60
import PackageDescription

let package = Package(
    name: "ferry-fuzz",
    dependencies: [.package(name: "ferry", path: "..")],
    targets: [
        .executableTarget(
            name: "FuzzClientFrame",
            dependencies: [.product(name: "FerryProtocol", package: "ferry")],
            // libFuzzer supplies main().
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ]
)
