//! Who this process is in the deployment: the id under which it holds
//! leases (scheduled jobs, budget headroom). A leaf: it imports nothing of
//! the crate.

/// A replica id unique across the deployment and across restarts:
/// `hostname-pid-random`.
pub fn replica_id() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "replica".to_owned());
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0x00ff_ffff
    )
}
