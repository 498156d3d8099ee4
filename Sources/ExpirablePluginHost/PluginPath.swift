#if canImport(Glibc)
import Glibc
#endif

/// Finds a plugin file inside `plugin_dir` and checks that nobody but root or the daemon's user could have
/// put it there or changed it (SPEC §5): real paths only, inside the directory, not writable by group or others.
enum PluginPath {
    /// The real path of plugin `name` in `directory`: the first of `libNAME.so`, `NAME.so` and `NAME` that exists.
    /// `realDirectory` is what `directory(_:)` gave for plugin_dir.
    static func resolve(_ name: String, in realDirectory: String) throws(PluginError) -> String {
        guard !name.isEmpty, !name.contains("/") else {
            throw PluginError("plugin name \"\(name)\" must be a file name inside plugin_dir \(realDirectory), without \"/\"")
        }
        let candidates = ["lib\(name).so", "\(name).so", name]
        guard let found = candidates.map({ realDirectory + "/" + $0 }).first(where: { exists($0) }) else {
            throw PluginError("plugin \"\(name)\" not found: none of \(candidates.joined(separator: ", ")) is in plugin_dir \(realDirectory); install the plugin there or fix the plugin name")
        }
        return try checked(found, in: realDirectory)
    }

    /// `resolve`'s checks again, as a helper makes them at every start, right before it loads the plugin: the
    /// file the daemon resolved (`real`, in `realDirectory`) may since have been replaced by one writable by
    /// others, or by a link out of plugin_dir, and a helper restarted after a crash must not load that. Gives
    /// the real path to load now.
    static func recheck(_ real: String, in realDirectory: String) throws(PluginError) -> String {
        guard try directory(realDirectory) == realDirectory else {
            throw PluginError("server.plugin_dir \(realDirectory) was replaced by a link since the daemon started; restore the directory, or point plugin_dir at the new one and restart the daemon")
        }
        return try checked(real, in: realDirectory)
    }

    /// The real path of `found`, checked to be inside `realDirectory` and changeable only by root or the daemon's
    /// user, as the directory holding it.
    private static func checked(_ found: String, in realDirectory: String) throws(PluginError) -> String {
        let real = try realPath(found, what: "plugin")
        guard real.hasPrefix(realDirectory + "/") else {
            throw PluginError("plugin \(found) resolves to \(real), outside plugin_dir \(realDirectory); copy the file into plugin_dir instead of linking to it")
        }
        let parent = String(real[..<real.lastIndex(of: "/")!])
        if parent != realDirectory { try checkOwnership(parent, what: "plugin directory", directory: true) }
        try checkOwnership(real, what: "plugin", directory: false)
        return real
    }

    /// The real path of plugin_dir, checked as the plugins in it are: a directory nobody but root or the
    /// daemon's user could change, inside directories nobody else could change either (`checkAncestors`). Its
    /// refusals are about `[server] plugin_dir`, not about one plugin.
    static func directory(_ directory: String) throws(PluginError) -> String {
        let realDirectory = try realPath(directory, what: "server.plugin_dir")
        try checkOwnership(realDirectory, what: "server.plugin_dir", directory: true)
        try checkAncestors(of: realDirectory)
        return realDirectory
    }

    /// Checks every directory above the real plugin_dir up to `/`, as the sinks' directory walk checks those
    /// above a sink's: owned by root or the daemon's user, and not writable by group or others unless sticky
    /// (as /tmp is: nobody may then rename what they do not own in it). Whoever could change one could rename
    /// plugin_dir away before the daemon starts and put a directory, or a link to one, of their choosing in its
    /// place, whose plugins the daemon would then load.
    private static func checkAncestors(of realDirectory: String) throws(PluginError) {
        let euid = geteuid()
        var path = realDirectory
        while path != "/" {
            let slash = path.lastIndex(of: "/")!
            path = slash == path.startIndex ? "/" : String(path[..<slash])
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw PluginError("server.plugin_dir \(realDirectory) is inside \(path), which cannot be examined: \(String(cString: strerror(errno)))")
            }
            let why = "put a directory of their own in plugin_dir's place before the daemon starts"
            guard st.st_uid == 0 || st.st_uid == euid else {
                throw PluginError("server.plugin_dir \(realDirectory) is inside \(path), which is owned by uid \(st.st_uid), not by root or the daemon's user (uid \(euid)): its owner could \(why); chown root \(path), or move plugin_dir out of it")
            }
            if st.st_mode & (S_IWGRP | S_IWOTH) != 0 && st.st_mode & S_ISVTX == 0 {
                let who = st.st_mode & S_IWOTH != 0 ? "others" : "its group"
                throw PluginError("server.plugin_dir \(realDirectory) is inside \(path), which is writable by \(who) without the sticky bit (mode \(String(st.st_mode & 0o7777, radix: 8))): they could \(why); chmod go-w \(path), or chmod +t \(path)")
            }
        }
    }

    private static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    private static func realPath(_ path: String, what: String) throws(PluginError) -> String {
        guard let resolved = realpath(path, nil) else {
            let reason = String(cString: strerror(errno))
            throw PluginError("\(what) \(path) cannot be resolved: \(reason)")
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    private static func checkOwnership(_ path: String, what: String, directory: Bool) throws(PluginError) {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw PluginError("\(what) \(path) cannot be examined: \(String(cString: strerror(errno)))")
        }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        let isRegular = (st.st_mode & S_IFMT) == S_IFREG
        if directory && !isDirectory { throw PluginError("\(what) \(path) is not a directory") }
        if !directory && !isRegular { throw PluginError("\(what) \(path) is not a regular file") }
        let euid = geteuid()
        guard st.st_uid == 0 || st.st_uid == euid else {
            throw PluginError("\(what) \(path) is owned by uid \(st.st_uid), not by root or the daemon's user (uid \(euid)); chown root \(path)")
        }
        if st.st_mode & S_IWOTH != 0 {
            throw PluginError("\(what) \(path) is writable by others; chmod o-w \(path)")
        }
        if st.st_mode & S_IWGRP != 0 {
            throw PluginError("\(what) \(path) is writable by group; chmod g-w \(path)")
        }
    }
}
