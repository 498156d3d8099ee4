// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "Expirable",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ExpirableCore", targets: ["ExpirableCore"]),
        .library(name: "ExpirableConfig", targets: ["ExpirableConfig"]),
        .library(name: "ExpirablePluginHost", targets: ["ExpirablePluginHost"]),
        // Fetcher plugins: each is a shared object a daemon loads from its plugin_dir.
        .library(name: "command", type: .dynamic, targets: ["CommandPlugin"]),
        .library(name: "file", type: .dynamic, targets: ["FilePlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // The plugin ABI: one C header, the only thing a plugin includes.
        .target(name: "ExpirableABI"),
        .target(
            name: "ExpirableCore",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "ExpirableConfig",
            dependencies: ["ExpirableCore", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict
        ),
        .target(
            name: "ExpirablePluginHost",
            dependencies: [
                "ExpirableABI", "ExpirableCore", "ExpirableConfig",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(name: "CommandPlugin", dependencies: ["ExpirableABI"], path: "Plugins/CommandPlugin", swiftSettings: strict),
        .target(name: "FilePlugin", dependencies: ["ExpirableABI"], path: "Plugins/FilePlugin"),
        .executableTarget(
            name: "EngineBenchmark",
            dependencies: ["ExpirableCore"],
            path: "Benchmarks/EngineBenchmark",
            swiftSettings: strict
        ),
        .testTarget(name: "ExpirableCoreTests", dependencies: ["ExpirableCore"], swiftSettings: strict),
        .testTarget(name: "ExpirableConfigTests", dependencies: ["ExpirableConfig"], swiftSettings: strict),
        .testTarget(
            name: "ExpirablePluginHostTests",
            dependencies: ["ExpirablePluginHost", "ExpirableConfig", "ExpirableCore"],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
    ]
)
