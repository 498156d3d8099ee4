import ExpirableCore
import ExpirableState
import Logging

/// The engine's state keeper when `state_dir` is set: every change of a plugin's state is written through,
/// encrypted, before the next call can need it; a write that fails is logged as an error (the state stays in
/// memory and the next change tries again).
struct StateFiles: StateKeeper {
    let store: StateStore
    let logger: Logger

    func stateChanged(_ name: String, _ state: Secret?) {
        do {
            try store.save(state, for: name)
        } catch {
            logger.error("cannot persist a plugin state", metadata: ["expirable": "\(name)", "error": "\(error.message)"])
        }
    }

    /// The states saved for `names`. A file that cannot be read or decrypted stops its expirable's calls with
    /// the reason (they would otherwise start over without the refresh token), and is logged now.
    static func load(_ store: StateStore, names: [String], logger: Logger) -> [String: Result<Secret, ExpirableError>] {
        var loaded: [String: Result<Secret, ExpirableError>] = [:]
        for name in names {
            do {
                if let state = try store.load(name) { loaded[name] = .success(state) }
            } catch {
                logger.error("a plugin state file cannot be used", metadata: ["expirable": "\(name)", "error": "\(error.message)"])
                loaded[name] = .failure(.fetch("\(name): its saved plugin state cannot be used: \(error.message)", class: .permanent))
            }
        }
        return loaded
    }
}
