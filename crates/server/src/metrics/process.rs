//! Process metrics under the names Prometheus' own client libraries use
//! (`process_resident_memory_bytes`, `process_cpu_seconds_total`, …), read
//! from `/proc/self` at each scrape, and `switchyard_memory_limit_bytes`: the
//! memory the process may use (its cgroup's limit, else the host's memory).
//!
//! Linux only: on other systems the collector is not registered, and a value
//! that cannot be read is left out rather than guessed.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::path::Path;

/// What `/proc` says about this process at one moment. `None`: unreadable.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessSample {
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub threads: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
}

/// The fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    /// User and system time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Clock ticks after boot at which the process started.
    pub starttime: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        num_threads: field(20)?,
        starttime: field(22)?,
    })
}

/// A `Key:   value kB` line of `/proc/<pid>/status` or `/proc/meminfo`, in
/// bytes.
pub fn kilobytes_field(text: &str, key: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let value: f64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") => Some(value * 1024.0),
            None => Some(value),
            Some(_) => None,
        }
    })
}

/// The soft limit on open files from `/proc/<pid>/limits`; `None` when
/// unlimited.
pub fn parse_max_open_files(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
pub fn parse_boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Clock ticks per second (`AT_CLKTCK` of the auxiliary vector); 100, the
/// value on every mainstream Linux architecture, when it cannot be read.
fn clock_ticks() -> f64 {
    const AT_CLKTCK: u64 = 17;
    std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|bytes| {
            let words: Vec<u64> = bytes
                .chunks_exact(8)
                .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_ne_bytes))
                .collect();
            words
                .chunks_exact(2)
                .find(|pair| pair[0] == AT_CLKTCK)
                .map(|pair| pair[1])
        })
        .filter(|t| *t > 0)
        .map_or(100.0, |t| t as f64)
}

/// The cgroup memory limit over `path` (a cgroup of `/proc/self/cgroup`):
/// the lowest `memory.max` (v2) or `memory.limit_in_bytes` (v1) of the
/// cgroup and its ancestors under `root`. `None` when none sets one.
pub fn cgroup_memory_limit(root: &Path, path: &str) -> Option<f64> {
    let mut dir = Some(Path::new(path.trim_start_matches('/')));
    let mut lowest: Option<f64> = None;
    while let Some(d) = dir {
        for file in ["memory.max", "memory.limit_in_bytes"] {
            let value = std::fs::read_to_string(root.join(d).join(file))
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok());
            if let Some(v) = value {
                lowest = Some(lowest.map_or(v, |l| l.min(v)));
            }
        }
        dir = d.parent();
    }
    lowest
}

/// This process's memory cgroup: `(mount point, path)` for cgroup v1's
/// `memory` controller, else v2's unified hierarchy.
fn own_memory_cgroup() -> Option<(std::path::PathBuf, String)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut unified = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some(("/sys/fs/cgroup/memory".into(), path.to_owned()));
        }
        if id == "0" && controllers.is_empty() {
            unified = Some(("/sys/fs/cgroup".into(), path.to_owned()));
        }
    }
    unified
}

impl ProcessSample {
    /// Reads this process's figures.
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
        let status = read("/proc/self/status");
        let ticks = clock_ticks();
        let boot = read("/proc/stat").as_deref().and_then(parse_boot_time);
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        let host_memory = read("/proc/meminfo")
            .as_deref()
            .and_then(|m| kilobytes_field(m, "MemTotal"));
        let cgroup_limit =
            own_memory_cgroup().and_then(|(root, path)| cgroup_memory_limit(&root, &path));
        let memory_limit_bytes = match (cgroup_limit, host_memory) {
            (Some(c), Some(h)) => Some(c.min(h)),
            (c, h) => c.or(h),
        };
        Self {
            resident_bytes: status.as_deref().and_then(|s| kilobytes_field(s, "VmRSS")),
            virtual_bytes: status.as_deref().and_then(|s| kilobytes_field(s, "VmSize")),
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / ticks),
            open_fds,
            max_fds: read("/proc/self/limits")
                .as_deref()
                .and_then(parse_max_open_files),
            threads: stat.map(|s| s.num_threads as f64),
            start_time_seconds: stat
                .zip(boot)
                .map(|(s, boot)| boot + s.starttime as f64 / ticks),
            memory_limit_bytes,
        }
    }
}

/// Reports a [`ProcessSample`] read at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: Option<f64>,
) -> Result<(), std::fmt::Error> {
    if let Some(v) = value {
        let metric = ConstGauge::new(v);
        metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessSample::read();
        if let Some(v) = s.cpu_seconds {
            let metric = ConstCounter::new(v);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent, in seconds",
                None,
                metric.metric_type(),
            )?)?;
        }
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size, in bytes",
            s.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size, in bytes",
            s.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            s.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "The limit on open file descriptors (soft)",
            s.max_fds,
        )?;
        gauge(
            &mut encoder,
            "process_threads",
            "Operating system threads",
            s.threads,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process, in seconds since the Unix epoch",
            s.start_time_seconds,
        )?;
        gauge(
            &mut encoder,
            "switchyard_memory_limit_bytes",
            "Memory the process may use: its cgroup's limit, or the host's memory when lower or unset",
            s.memory_limit_bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a parenthesis, as a process may name itself.
        let line = "4242 (sw (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 50,
                num_threads: 7,
                starttime: 123456
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1"), None);
    }

    #[test]
    fn status_limits_and_stat_lines_parse() {
        let status = "Name:\tswitchyard\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n";
        assert_eq!(kilobytes_field(status, "VmRSS"), Some(10240.0 * 1024.0));
        assert_eq!(kilobytes_field(status, "VmSize"), Some(204800.0 * 1024.0));
        assert_eq!(kilobytes_field(status, "Threads"), Some(7.0));
        assert_eq!(kilobytes_field(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024.0));
        assert_eq!(
            parse_max_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            None
        );
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000.0)
        );
    }

    #[test]
    fn the_cgroup_limit_is_the_lowest_of_the_cgroup_and_its_ancestors() {
        let root = tempfile::tempdir().unwrap();
        let leaf = root.path().join("kubepods/pod1/c1");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        std::fs::write(root.path().join("kubepods/pod1/memory.max"), "2147483648\n").unwrap();
        std::fs::write(root.path().join("kubepods/memory.max"), "8589934592\n").unwrap();
        assert_eq!(
            cgroup_memory_limit(root.path(), "/kubepods/pod1/c1"),
            Some(2147483648.0)
        );
        assert_eq!(cgroup_memory_limit(root.path(), "/elsewhere"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read() {
        let s = ProcessSample::read();
        assert!(s.resident_bytes.unwrap() > 0.0);
        assert!(s.virtual_bytes.unwrap() >= s.resident_bytes.unwrap());
        assert!(s.threads.unwrap() >= 1.0);
        assert!(s.open_fds.unwrap() >= 3.0);
        assert!(s.memory_limit_bytes.unwrap() > 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = s.start_time_seconds.unwrap();
        assert!(started <= now + 1.0 && started > now - 86400.0 * 365.0);
    }
}
