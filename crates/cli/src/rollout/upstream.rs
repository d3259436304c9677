//! The nginx upstream file a rollout manages: which slot gets what share of
//! the traffic. Written whole and atomically (a temporary file renamed over
//! the old one) and followed by nginx's reload; its first lines record the
//! shares and which slot was live before, so `rollout back` and `status`
//! need nothing else.

use std::collections::BTreeMap;
use std::path::Path;

/// The name of the upstream block nginx proxies to.
pub const UPSTREAM_NAME: &str = "switchyard_api";
const STATE_PREFIX: &str = "# switchyard-rollout:";

/// A deployment slot: its name and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    /// Base URL for checks and scrapes, e.g. `http://127.0.0.1:8001`.
    pub url: String,
    /// `host:port` for nginx's `server` line.
    pub addr: String,
}

impl std::str::FromStr for Slot {
    type Err = String;
    /// `NAME=URL`, e.g. `blue=http://127.0.0.1:8001`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, url) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected NAME=URL, e.g. blue=http://127.0.0.1:8001"))?;
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(format!(
                "`{name}`: a slot name is 1-32 of a-z, 0-9, - and _ (its DEPLOYMENT_SLOT)"
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                format!("`{url}`: the slot's URL must start with http:// or https://")
            })?;
        let addr = rest.split('/').next().unwrap_or(rest);
        if !addr.contains(':') {
            return Err(format!("`{url}`: give the port, e.g. http://{addr}:8000"));
        }
        Ok(Slot {
            name: name.to_owned(),
            url: url.trim_end_matches('/').to_owned(),
            addr: addr.to_owned(),
        })
    }
}

/// Traffic shares in percent by slot name, and the slot that was live
/// before the latest change.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Shares {
    pub percent: BTreeMap<String, u32>,
    pub previous: Option<String>,
}

impl Shares {
    /// Everything on `live`; `previous` remembered.
    pub fn all_on(live: &str, others: &[&Slot], previous: Option<&str>) -> Self {
        let mut percent: BTreeMap<String, u32> =
            others.iter().map(|s| (s.name.clone(), 0)).collect();
        percent.insert(live.to_owned(), 100);
        Self {
            percent,
            previous: previous.map(str::to_owned),
        }
    }

    /// `to` gets `weight` percent, `from` the rest.
    pub fn split(from: &str, to: &str, weight: u32) -> Self {
        let weight = weight.min(100);
        Self {
            percent: BTreeMap::from([(from.to_owned(), 100 - weight), (to.to_owned(), weight)]),
            previous: Some(from.to_owned()),
        }
    }

    pub fn of(&self, slot: &str) -> u32 {
        self.percent.get(slot).copied().unwrap_or(0)
    }

    /// The slot with the largest share.
    pub fn live(&self) -> Option<&str> {
        self.percent
            .iter()
            .max_by_key(|(_, p)| **p)
            .filter(|(_, p)| **p > 0)
            .map(|(s, _)| s.as_str())
    }

    /// `blue 95 %, green 5 %`.
    pub fn summary(&self) -> String {
        self.percent
            .iter()
            .map(|(s, p)| format!("{s} {p} %"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The upstream file for `shares` over `slots`. A slot at 0 % stays in the
/// block as a `backup` server: it takes no traffic, but nginx still falls
/// back to it if every live server refuses connections.
///
/// Idle keep-alive connections to the slots are closed by nginx after
/// `keepalive_ms`. Keep it below the slots' `SHUTDOWN_DELAY_SECONDS`: a
/// draining slot closes every connection after its next response, and
/// nginx itself closes those that stay idle, so when the slot's listener
/// closes no idle connection is left for nginx to send a request on just as
/// the slot closes it (a request nginx could not retry elsewhere).
pub fn render(slots: &[Slot], shares: &Shares, keepalive_ms: u64) -> String {
    let state: Vec<String> = shares
        .percent
        .iter()
        .map(|(s, p)| format!("{s}={p}"))
        .chain(shares.previous.iter().map(|p| format!("previous={p}")))
        .collect();
    let mut out = format!(
        "# Managed by `switchyard rollout` ({}); edits are overwritten.\n{STATE_PREFIX} {}\nupstream {UPSTREAM_NAME} {{\n",
        shares.summary(),
        state.join(" ")
    );
    for slot in slots
        .iter()
        .filter(|s| shares.percent.contains_key(&s.name))
    {
        let weight = shares.of(&slot.name);
        if weight > 0 {
            out.push_str(&format!(
                "    server {} weight={weight} max_fails=0;  # {}\n",
                slot.addr, slot.name
            ));
        } else {
            out.push_str(&format!(
                "    server {} backup max_fails=0;  # {}\n",
                slot.addr, slot.name
            ));
        }
    }
    out.push_str(&format!(
        "    keepalive 32;\n    keepalive_timeout {keepalive_ms}ms;\n}}\n"
    ));
    out
}

/// The shares recorded in an upstream file written by [`render`].
pub fn parse(text: &str) -> Option<Shares> {
    let line = text.lines().find_map(|l| l.strip_prefix(STATE_PREFIX))?;
    let mut shares = Shares::default();
    for item in line.split_whitespace() {
        let (k, v) = item.split_once('=')?;
        if k == "previous" {
            shares.previous = Some(v.to_owned());
        } else {
            shares.percent.insert(k.to_owned(), v.parse().ok()?);
        }
    }
    Some(shares)
}

/// The shares in force now, when the file exists and was written by us.
pub fn read(path: &Path) -> anyhow::Result<Option<Shares>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some).ok_or_else(|| {
            anyhow::anyhow!(
                "{} exists but was not written by `switchyard rollout`; move it aside or start from an empty file",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Replaces `path` with `text` in one step: nginx never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upstream"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

/// Runs an operator's command (argv, no shell); its output in the error.
pub fn run_command(argv: &[String], what: &str) -> anyhow::Result<()> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("{what} (`{}`) could not run: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{what} (`{}`) failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Vec<Slot> {
        vec![
            "blue=http://127.0.0.1:8001".parse().unwrap(),
            "green=http://10.0.0.7:8000/".parse().unwrap(),
        ]
    }

    #[test]
    fn slots_are_parsed_and_checked() {
        let s = &slots()[1];
        assert_eq!(
            (s.addr.as_str(), s.url.as_str()),
            ("10.0.0.7:8000", "http://10.0.0.7:8000")
        );
        assert!("blue".parse::<Slot>().is_err());
        assert!("Blue=http://h:1".parse::<Slot>().is_err());
        assert!("blue=ftp://h:1".parse::<Slot>().is_err());
        assert!("blue=http://h"
            .parse::<Slot>()
            .unwrap_err()
            .contains("port"));
    }

    #[test]
    fn the_file_round_trips_and_zero_shares_are_backups() {
        let shares = Shares::split("blue", "green", 5);
        let text = render(&slots(), &shares, 1000);
        assert!(text.contains("upstream switchyard_api {"));
        assert!(text.contains("server 127.0.0.1:8001 weight=95 max_fails=0;  # blue"));
        assert!(text.contains("server 10.0.0.7:8000 weight=5 max_fails=0;  # green"));
        assert!(text.contains("    keepalive 32;\n    keepalive_timeout 1000ms;\n}"));
        assert_eq!(parse(&text), Some(shares));
        let all = Shares::all_on("green", &slots().iter().collect::<Vec<_>>(), Some("blue"));
        let text = render(&slots(), &all, 1000);
        assert!(
            text.contains("server 127.0.0.1:8001 backup max_fails=0;  # blue"),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap().live(), Some("green"));
        assert_eq!(parse("upstream x {}"), None);
    }

    #[test]
    fn writes_replace_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upstream.conf");
        assert_eq!(read(&path).unwrap(), None);
        write_atomic(
            &path,
            &render(&slots(), &Shares::split("blue", "green", 50), 1000),
        )
        .unwrap();
        assert_eq!(read(&path).unwrap().unwrap().of("green"), 50);
        std::fs::write(&path, "upstream switchyard_api { server a:1; }").unwrap();
        assert!(read(&path)
            .unwrap_err()
            .to_string()
            .contains("not written by"));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
        assert!(run_command(&["false".to_owned()], "the reload").is_err());
        assert!(run_command(&["true".to_owned()], "the reload").is_ok());
    }
}
