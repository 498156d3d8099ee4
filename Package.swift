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
        .library(name: "ExpirableRESP", targets: ["ExpirableRESP"]),
        .library(name: "ExpirableTLS", targets: ["ExpirableTLS"]),
        .library(name: "ExpirableCluster", targets: ["ExpirableCluster"]),
        .library(name: "ExpirableServer", targets: ["ExpirableServer"]),
        /// The Swift client library for programs that use the daemon.
        .library(name: "ExpirableClient", targets: ["ExpirableClient"]),
        .executable(name: "expirabled", targets: ["expirabled"]),
        .executable(name: "expirablectl", targets: ["expirablectl"]),
        // Fetcher plugins: each is a shared object a daemon loads from its plugin_dir.
        .library(name: "command", type: .dynamic, targets: ["CommandPlugin"]),
        .library(name: "file", type: .dynamic, targets: ["FilePlugin"]),
        .library(name: "oauth2", type: .dynamic, targets: ["OAuth2Plugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The plugin ABI: one C header, the only thing a plugin includes.
        .target(name: "ExpirableABI"),
        .target(
            name: "ExpirableCore",
            dependencies: ["CExpirablePrefetch", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The CPU's prefetch hint, which Swift cannot emit: keyed families read ahead of pipelined GETs.
        .target(name: "CExpirablePrefetch"),
        // A TOML 1.0 parser without Foundation, with the line of every key for error messages.
        .target(name: "ExpirableTOML", swiftSettings: strict),
        .target(
            name: "ExpirableConfig",
            dependencies: ["ExpirableCore", "ExpirableTOML", "CExpirableLinux"],
            swiftSettings: strict
        ),
        .target(
            name: "ExpirablePluginHost",
            dependencies: [
                "ExpirableABI", "CExpirableLinux", "ExpirableCore", "ExpirableConfig",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Linux calls that need _GNU_SOURCE (the ELF type of a plugin's symbols), prefixed.
        .target(name: "CExpirableLinux"),
        // The system OpenSSL (headers from libssl-dev), with shims for the macros Swift cannot import. Not linked:
        // loaded on first use, so a daemon that needs no TLS or encryption never maps it.
        .target(name: "CExpirableOpenSSL", linkerSettings: [.linkedLibrary("dl")]),
        // The system libcurl, for the oauth2 plugin's HTTPS requests.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // Mutually authenticated TLS on NIO through OpenSSL memory BIOs, and certificate creation.
        .target(
            name: "ExpirableTLS",
            dependencies: ["CExpirableOpenSSL", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // Plugin states on disk, encrypted with AES-256-GCM through OpenSSL (SPEC §3.20, state_dir).
        .target(name: "ExpirableState", dependencies: ["CExpirableOpenSSL", "ExpirableCore"], swiftSettings: strict),
        // Replication between nodes: membership, ownership, forwarded fetches, versions. Knows nothing of RESP.
        .target(
            name: "ExpirableCluster",
            dependencies: [
                "ExpirableCore", "ExpirableTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // One RESP2 codec for the server, the client and the CLI.
        .target(
            name: "ExpirableRESP",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // The Unix-socket server: RESP commands onto the engine. Knows nothing of plugins.
        .target(
            name: "ExpirableServer",
            dependencies: [
                "ExpirableCore", "ExpirableRESP", "CExpirableOpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The Prometheus endpoint (SPEC §10): every part's figures, never a value, over NIO's HTTP/1 codec.
        .target(
            name: "ExpirableMetrics",
            dependencies: [
                "ExpirableCore", "ExpirableServer", "ExpirableCluster",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ExpirableClient",
            dependencies: [
                "ExpirableCore", "ExpirableRESP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "expirabled",
            dependencies: [
                "ExpirableConfig", "ExpirableCore", "ExpirablePluginHost", "ExpirableServer", "ExpirableCluster", "ExpirableTLS",
                "ExpirableState", "CExpirableLinux", "CExpirableCloseOnExec", "CExpirableEarlySignals", "ExpirableMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The executables' descriptors close-on-exec, NIO's included (accept4, socket, epoll_create): the daemon's,
        // and expirablectl's, whose `exec` must not hand its connections to the daemon to the command it runs.
        .target(name: "CExpirableCloseOnExec"),
        // SIGHUP, SIGTERM and SIGINT noted from the daemon's first instruction (an ELF constructor): the daemon's only,
        // since in expirablectl it would make `watch` and a waiting `fetch` deaf to Ctrl-C and `kill`.
        .target(name: "CExpirableEarlySignals"),
        .executableTarget(
            name: "expirablectl",
            dependencies: [
                "ExpirableClient", "ExpirableConfig", "ExpirablePluginHost", "ExpirableTLS", "ExpirableServer", "ExpirableState",
                "CExpirableCloseOnExec",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(name: "CommandPlugin", dependencies: ["ExpirableABI", "CExpirableLinux"], path: "Plugins/CommandPlugin", swiftSettings: strict),
        // {key} in the C plugins' path params, linked into each.
        .target(name: "PluginSupport", dependencies: ["ExpirableABI"], path: "Plugins/Support"),
        .target(name: "FilePlugin", dependencies: ["ExpirableABI", "PluginSupport"], path: "Plugins/FilePlugin"),
        .target(
            name: "OAuth2Plugin", dependencies: ["ExpirableABI", "PluginSupport", "CCurl"], path: "Plugins/OAuth2Plugin",
            // Linked, not loaded on use: libcurl maps OpenSSL anyway, and the plugin signs JWT assertions with it.
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        .executableTarget(
            name: "EngineBenchmark",
            dependencies: ["ExpirableCore"],
            path: "Benchmarks/EngineBenchmark",
            swiftSettings: strict
        ),
        .target(name: "ExpirableTestSupport", dependencies: ["ExpirableClient"], path: "Tests/TestSupport", swiftSettings: strict),
        .executableTarget(
            name: "ClientBenchmark",
            dependencies: ["ExpirableClient", "ExpirableCore"],
            path: "Benchmarks/ClientBenchmark",
            swiftSettings: strict
        ),
        .testTarget(name: "ExpirableCoreTests", dependencies: ["ExpirableCore", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .testTarget(
            name: "ExpirableTLSTests",
            dependencies: ["ExpirableTLS", "ExpirableTestSupport", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ExpirableClusterTests",
            dependencies: [
                "ExpirableCluster", "ExpirableClient", "ExpirableTestSupport", "ExpirableCore", "ExpirableTLS",
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ExpirableStateTests",
            dependencies: ["ExpirableState", "ExpirableTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ExpirableRESPTests",
            dependencies: ["ExpirableRESP", .product(name: "NIOEmbedded", package: "swift-nio")],
            swiftSettings: strict
        ),
        // The connection handler on an EmbeddedChannel: no process, no socket, no sleep.
        .testTarget(
            name: "ExpirableServerTests",
            dependencies: [
                "ExpirableServer", "ExpirableCore", "ExpirableRESP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ExpirableDaemonTests",
            dependencies: ["ExpirableClient", "ExpirableCore", "ExpirableRESP", "ExpirableTestSupport", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(name: "ExpirableConfigTests", dependencies: ["ExpirableConfig"], swiftSettings: strict),
        .testTarget(name: "ExpirableTOMLTests", dependencies: ["ExpirableTOML"], swiftSettings: strict),
        .testTarget(
            name: "ExpirablePluginHostTests",
            dependencies: ["ExpirablePluginHost", "ExpirableConfig", "ExpirableCore", "ExpirableTestSupport"],
            swiftSettings: strict
        ),
    ]
)
