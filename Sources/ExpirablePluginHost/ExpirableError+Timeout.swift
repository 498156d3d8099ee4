import ExpirableCore

extension ExpirableError {
    /// A plugin call that outlived its expirable's `timeout`, in either isolation: what, where, and what to do.
    static func pluginTimeout(plugin: String, expirable: String, timeout: Duration) -> ExpirableError {
        .timeout("plugin \(plugin) for \(expirable) did not answer within \(timeout.milliseconds)ms; raise timeout in [expirable.\(expirable)] if it needs longer, or check the plugin and what it calls")
    }
}
