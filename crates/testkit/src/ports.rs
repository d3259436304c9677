//! Ports for the private servers that cannot be told to pick their own.
//!
//! A server that binds port 0 and says (or shows) which port it got cannot
//! race with anything; `switchyard serve` and pgbouncer are started that
//! way. PostgreSQL refuses port 0, and `redis-server --port 0` turns TCP
//! off, so for those a port is chosen here, and the server is started on it
//! and started again on it after the test stops it. Three things keep that
//! from racing:
//!
//! - the port comes from below the kernel's ephemeral range
//!   (`net.ipv4.ip_local_port_range`), which is where every `bind(0)` and
//!   every outgoing connection of every other test gets its port from, so
//!   none of those can take it, not even while the server is stopped;
//! - a lease (an exclusive `flock` on a file named after the port, shared by
//!   every test process on the machine and released when the process ends,
//!   however it ends) keeps other private servers off it for the lease's
//!   life;
//! - what is left, a program outside the test kit binding that very port
//!   between the check here and the server's start, is caught by the
//!   callers: when the server fails to bind, they take another lease and
//!   start again.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;

/// The lowest port handed out.
const LOWEST: u16 = 20_000;
/// How many servers a test starts before giving up on finding a port.
pub(crate) const START_ATTEMPTS: usize = 10;

/// A port reserved for one private server for as long as this value lives.
pub struct PortLease {
    pub port: u16,
    _lock: Flock<File>,
}

impl PortLease {
    /// A port outside the ephemeral range that no other lease holds and
    /// that nothing listens on right now.
    pub fn take() -> Self {
        let (low, high) = range();
        let dir = lock_dir();
        for _ in 0..1000 {
            let port = rand::random_range(low..high);
            let path = dir.join(format!("{port}.lock"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .or_else(|_| File::open(&path));
            let Ok(file) = file else { continue };
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            return Self { port, _lock: lock };
        }
        panic!(
            "no free port between {low} and {high} for a private server (leases in {})",
            dir.display()
        )
    }
}

/// `[LOWEST, start of the ephemeral range)`; below `LOWEST` when the
/// ephemeral range starts unusually low.
fn range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let high = ephemeral_low.max(2_048);
    let low = LOWEST.min(high - 1_024);
    (low, high)
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("switchyard-test-ports");
    if std::fs::create_dir_all(&dir).is_ok() {
        // Shared by every user's tests, like /tmp itself.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    dir
}

/// The TCP ports process `pid` listens on (from `/proc`), for servers told
/// to bind port 0 that do not say which port they got.
pub(crate) fn listening_ports(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let sockets: Vec<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is fields[1], st fields[3] (0A: LISTEN), inode fields[9].
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if !sockets.iter().any(|s| s == inode) {
                continue;
            }
            if let Some(port) = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_exclusive_and_outside_the_ephemeral_range() {
        let (low, high) = range();
        let a = PortLease::take();
        let b = PortLease::take();
        assert_ne!(a.port, b.port);
        assert!((low..high).contains(&a.port));
        // Another process cannot take a held lease (flock is per open file,
        // so a second open in this process stands in for it).
        let path = lock_dir().join(format!("{}.lock", a.port));
        let again = File::open(path).unwrap();
        assert!(Flock::lock(again, FlockArg::LockExclusiveNonblock).is_err());
    }

    #[test]
    fn a_listening_socket_is_found_in_proc() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listening_ports(std::process::id()).contains(&port));
    }
}
