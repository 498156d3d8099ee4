/// Every metric the daemon exposes, with its help text: the one list docs/metrics.md mirrors. Names follow
/// Prometheus conventions: the `expirable_` prefix, `_total` on counters, base units (`_seconds`, `_bytes`).
/// Keyed families are one series per family; their members' series (`expirable_key_…`) come only with
/// `metrics_keys = true`.
enum MetricNames {
    enum Kind: String { case counter, gauge, histogram }

    static let all: [(name: String, kind: Kind, help: String)] = [
        // Per expirable (label `expirable`; a keyed family summed over its members).
        ("expirable_state", .gauge, "Entries in each state (label state: empty, valid, expired, stale); 1 or 0 for a plain expirable, members for a keyed family."),
        ("expirable_expires_in_seconds", .gauge, "Seconds until the value stops being handed out (expiry less expiry_margin); 0 with nothing valid stored; absent for a value that never expires. For a keyed family, its soonest member."),
        ("expirable_fetching", .gauge, "Plugin calls under way."),
        ("expirable_hits_total", .counter, "Fetches answered from memory."),
        ("expirable_misses_total", .counter, "Fetches that found no valid value and waited for a plugin call (or got a stale value or an error)."),
        ("expirable_plugin_calls_total", .counter, "Plugin calls started, by readers and by eager refresh."),
        ("expirable_plugin_failures_total", .counter, "Plugin calls that failed, by class (temporary, permanent)."),
        ("expirable_plugin_call_duration_seconds", .histogram, "Duration of plugin calls, by outcome (success, temporary, permanent)."),
        ("expirable_refreshes_total", .counter, "Eager refreshes started."),
        ("expirable_stale_answers_total", .counter, "Expired values answered, marked stale, in place of an error (stale_if_error)."),
        ("expirable_consecutive_failures", .gauge, "Consecutive failed plugin calls; a success resets it (for a keyed family, the most of any member)."),
        ("expirable_next_attempt_seconds", .gauge, "Seconds until pacing lets the next plugin call start after failures; 0 when not paced."),
        ("expirable_helper_up", .gauge, "Whether the plugin's helper process runs (isolation = \"process\")."),
        ("expirable_helper_restarts_total", .counter, "Helper processes started again after the first."),
        ("expirable_helper_private_memory_bytes", .gauge, "Private memory of the plugin's helper process."),
        ("expirable_family_keys", .gauge, "Keys a keyed family holds a value for."),
        ("expirable_family_max_keys", .gauge, "The most members a keyed family keeps (max_keys)."),
        ("expirable_family_evictions_total", .counter, "Members evicted to stay within max_keys."),
        ("expirable_owned", .gauge, "1 when this node owns the cluster-scoped expirable (it calls the plugin), else 0."),
        ("expirable_lease_held", .gauge, "1 while this node holds the quorum lease for a call of the expirable, else 0."),
        // Per member of a keyed family, with metrics_keys = true only (labels expirable and key).
        ("expirable_key_state", .gauge, "A keyed family's member's state (label state: empty, valid, expired, stale): 1 for the one it is in, else 0."),
        ("expirable_key_expires_in_seconds", .gauge, "Seconds until the member's value stops being handed out; 0 with nothing valid stored; absent for a value that never expires."),
        ("expirable_key_hits_total", .counter, "The member's fetches answered from memory."),
        ("expirable_key_misses_total", .counter, "The member's fetches that found no valid value."),
        ("expirable_key_plugin_calls_total", .counter, "Plugin calls started for the member."),
        ("expirable_key_plugin_failures_total", .counter, "The member's plugin calls that failed, by class (temporary, permanent)."),
        ("expirable_key_consecutive_failures", .gauge, "The member's consecutive failed plugin calls; a success resets it."),
        // The socket server.
        ("expirable_server_connections", .gauge, "Client connections open."),
        ("expirable_server_max_connections", .gauge, "The most client connections served at once (max_connections)."),
        ("expirable_server_connections_accepted_total", .counter, "Client connections accepted."),
        ("expirable_server_connections_refused_total", .counter, "Client connections refused at once (max_connections reached, or no descriptor to spare)."),
        ("expirable_server_requests_total", .counter, "Requests answered, by command (label command; unknown for requests that were not a command)."),
        ("expirable_server_output_throttles_total", .counter, "Times a connection's unsent replies passed max_output_bytes, so it was neither answered nor read until its client caught up."),
        ("expirable_server_throttled_connections", .gauge, "Connections throttled by output back-pressure now."),
        ("expirable_server_slow_subscribers_closed_total", .counter, "Subscribers disconnected for not reading their messages."),
        // The cluster.
        ("expirable_cluster_peers", .gauge, "Configured peers."),
        ("expirable_cluster_peers_alive", .gauge, "Peers linked both ways and heard from recently."),
        ("expirable_cluster_peer_up", .gauge, "Whether a peer is alive (label peer)."),
        ("expirable_cluster_peer_last_heard_seconds", .gauge, "Seconds since the last frame from a peer."),
        ("expirable_cluster_peer_clock_offset_seconds", .gauge, "How far a peer's clock is ahead of this node's (negative: behind), as last measured."),
        ("expirable_cluster_peer_round_trip_seconds", .gauge, "Round trip of the last heartbeat to a peer: the replication delay to expect on that link."),
        ("expirable_cluster_peer_queued_changes", .gauge, "Changes (values, clears, plugin states) waiting on the link to a peer for it to read the ones before; absent without a link."),
        ("expirable_cluster_peer_replication_lag_seconds", .gauge, "How long the oldest change waiting on the link to a peer has waited; 0 with none waiting; absent without a link."),
        ("expirable_cluster_clock_correction_seconds", .gauge, "This node's correction from its wall clock to cluster time."),
        ("expirable_cluster_clock_offset_errors", .gauge, "Members whose clock is beyond max_clock_offset."),
        ("expirable_cluster_forwards_sent_total", .counter, "Fetches this node forwarded to the owner."),
        ("expirable_cluster_forward_failures_total", .counter, "Forwarded fetches that failed (owner error, timeout, owner gone)."),
        ("expirable_cluster_forwards_served_total", .counter, "Fetches peers forwarded to this node, served."),
        ("expirable_cluster_forwards_dropped_total", .counter, "Fetches peers forwarded to this node, dropped unanswered (deadline passed, sent before a pause ended)."),
        ("expirable_cluster_lease_attempts_total", .counter, "This node's lease attempts (single_flight = \"quorum\"), by outcome: held, lost, too_late."),
        ("expirable_cluster_calls_outlived_lease_total", .counter, "Calls that outlived their lease; their results were dropped."),
        ("expirable_cluster_lease_requests_total", .counter, "Peers' lease requests, by answer: granted, refused."),
        ("expirable_cluster_lease_holder", .gauge, "1 for the node (label node) this node promised the quorum lease of the expirable to, while the promise lasts: its holder, as far as this node knows."),
        // The process.
        ("expirable_process_private_memory_bytes", .gauge, "The daemon's private memory (anonymous and private file pages; shared libraries not counted)."),
        ("expirable_process_resident_memory_bytes", .gauge, "The daemon's resident memory, shared pages included."),
        ("expirable_process_open_fds", .gauge, "Descriptors the daemon holds open."),
        ("expirable_process_uptime_seconds", .gauge, "Seconds since the daemon started."),
        ("expirable_build_info", .gauge, "Always 1; label version: the daemon's version."),
        ("expirable_metrics_scrape_duration_seconds", .gauge, "How long the previous scrape took to gather and render."),
    ]

    static let help: [String: String] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0.help) })
}
