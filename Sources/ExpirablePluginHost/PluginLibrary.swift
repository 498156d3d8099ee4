import CExpirableLinux
import ExpirableABI
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A loaded plugin file: its handshake checked and its entry points looked up. Loaded once per real path and
/// never unloaded (dlclose would pull code from under calls that timed out but are still running).
final class PluginLibrary: Sendable {
    typealias AbiFunction = @convention(c) (UnsafeMutablePointer<expirable_abi_info>?) -> Void
    typealias FetchFunction = @convention(c) (UnsafePointer<expirable_call>?) -> Void
    typealias CreateFunction = @convention(c) (UnsafePointer<expirable_call>?) -> UnsafeMutableRawPointer?
    typealias DestroyFunction = @convention(c) (UnsafeMutableRawPointer?) -> Void

    let path: String
    let version: (major: UInt32, minor: UInt32)
    let fetch: FetchFunction
    let create: CreateFunction?
    let destroy: DestroyFunction?

    private static let loaded = Mutex<[String: PluginLibrary]>([:])

    /// The library at `path` (a real path already checked by `PluginPath`), loading it on first use.
    static func open(_ path: String) throws(PluginError) -> PluginLibrary {
        let result: Result<PluginLibrary, PluginError> = loaded.withLock { cache in
            if let library = cache[path] { return .success(library) }
            do throws(PluginError) {
                let library = try PluginLibrary(path: path)
                cache[path] = library
                return .success(library)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private init(path: String) throws(PluginError) {
        self.path = path
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw PluginError("plugin \(path) cannot be loaded: \(PluginLibrary.lastError()); is it a shared object built for this machine?")
        }
        // The handle is deliberately never closed.
        guard let abiSymbol = dlsym(handle, "expirable_abi") else {
            throw PluginError("plugin \(path) does not export expirable_abi, so it is not an Expirable plugin; build it against expirable.h (docs/plugin-abi.md)")
        }
        // Every entry point is checked to be code before any is called: calling data would crash the daemon.
        for name in ["expirable_abi", "expirable_fetch", "expirable_create", "expirable_destroy"] {
            guard let symbol = dlsym(handle, name) else { continue }
            guard CExpirableLinux_symbol_is_function(symbol) != 0 else {
                throw PluginError("plugin \(path) exports \(name) as data, not as a function; the plugin ABI's entry points must be functions (docs/plugin-abi.md)")
            }
        }
        let abi = unsafeBitCast(abiSymbol, to: AbiFunction.self)
        var info = expirable_abi_info()
        info.size = UInt32(MemoryLayout<expirable_abi_info>.size)
        abi(&info)
        guard info.magic == EXPIRABLE_ABI_MAGIC else {
            throw PluginError("plugin \(path) is not an Expirable plugin: its handshake gave magic 0x\(String(info.magic, radix: 16)), expected 0x\(String(EXPIRABLE_ABI_MAGIC, radix: 16)); build it against expirable.h")
        }
        guard info.major == EXPIRABLE_ABI_MAJOR else {
            throw PluginError("plugin \(path) was built for plugin ABI \(info.major).\(info.minor), but this daemon speaks ABI \(EXPIRABLE_ABI_MAJOR).\(EXPIRABLE_ABI_MINOR); rebuild the plugin against this daemon's expirable.h")
        }
        guard info.minor <= EXPIRABLE_ABI_MINOR else {
            throw PluginError("plugin \(path) was built for plugin ABI \(info.major).\(info.minor), newer than this daemon's ABI \(EXPIRABLE_ABI_MAJOR).\(EXPIRABLE_ABI_MINOR): it may call host functions this daemon lacks; upgrade expirabled or rebuild the plugin against this daemon's expirable.h")
        }
        version = (info.major, info.minor)
        guard let fetchSymbol = dlsym(handle, "expirable_fetch") else {
            throw PluginError("plugin \(path) does not export expirable_fetch; every plugin must (docs/plugin-abi.md)")
        }
        fetch = unsafeBitCast(fetchSymbol, to: FetchFunction.self)
        let createSymbol = dlsym(handle, "expirable_create")
        let destroySymbol = dlsym(handle, "expirable_destroy")
        if createSymbol != nil && destroySymbol == nil {
            throw PluginError("plugin \(path) exports expirable_create without expirable_destroy; export both or neither")
        }
        create = createSymbol.map { unsafeBitCast($0, to: CreateFunction.self) }
        destroy = destroySymbol.map { unsafeBitCast($0, to: DestroyFunction.self) }
    }

    private static func lastError() -> String {
        dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
    }
}
