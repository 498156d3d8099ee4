/// Plugin states (SPEC §3.20): kept per expirable beside the value, given to each call, replaced by what a call
/// sets, saved by the state keeper, and replicated to peers like values (the newest version wins) so the next
/// owner continues from the latest state.
extension Engine {
    /// Connects the keeper that saves states (the daemon's `state_dir`) and gives each expirable the state it
    /// loaded: a state, or the error that stops its calls (a file that does not decrypt). Call once, before
    /// serving.
    public func keepStates(with keeper: any StateKeeper, initial: [String: Result<Secret, ExpirableError>]) {
        stateKeeperBox.withLock { $0 = keeper }
        for (name, loaded) in initial {
            guard let entry = entries(name) else { continue }
            entry.state.withLock { s in
                switch loaded {
                case .success(let state): s.pluginState = state
                case .failure(let error): s.stateError = error
                }
            }
        }
    }

    /// Applies a state a peer's call set, unless this node has seen a newer one. Returns whether it applied.
    @discardableResult
    public func applyReplicaState(_ name: String, state: Secret?, version: Version) -> Bool {
        guard let entry = entry(creating: name), entry.scope == .cluster else { return false }
        let applied = entry.state.withLock { s -> Bool? in
            if s.detached { return nil }
            guard s.stateVersion.map({ version > $0 }) ?? true else { return false }
            s.stateVersion = version
            s.pluginState = state
            s.stateError = nil
            return true
        }
        // Made compact or evicted since it was looked up: apply it to what is there now.
        guard let applied else { return applyReplicaState(name, state: state, version: version) }
        if applied { stateKeeperBox.withLock { $0 }?.stateChanged(name, state) }
        return applied
    }

    /// Every cluster-scoped expirable's state with its version, for a peer that (re)joins.
    public func replicaStates() -> [(name: String, state: Secret?, version: Version)] {
        allEntries.compactMap { entry in
            guard entry.scope == .cluster else { return nil }
            return entry.state.withLock { s in s.stateVersion.map { (entry.name, s.pluginState, $0) } }
        }
    }

    /// `name`'s plugin state as the next call would get it, with its version (nil: set by no cluster call or
    /// replica yet); nil when there is no such expirable. A quorum call reads it once its lease is held, so a
    /// state that arrived while it asked for the lease is the one it calls with (SPEC §4.10).
    public func replicaState(_ name: String) -> (state: Secret?, version: Version?)? {
        guard let entry = entries(name), entry.scope == .cluster else { return nil }
        return entry.state.withLock { s in (s.pluginState, s.stateVersion) }
    }

    /// Whether `name` holds a plugin state (never the state itself: it is a secret), for INFO.
    public func hasPluginState(_ name: String) -> Bool {
        entries(name)?.state.withLock { $0.pluginState != nil } ?? false
    }
}
