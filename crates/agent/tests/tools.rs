//! The tools against a real file system and real processes: confinement,
//! the Bash sandbox, timeouts and output limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};
use switchyard_agent::sandbox::{run_bash, BashPolicy, MAX_CAPTURE_BYTES};
use switchyard_agent::tools::{
    self, EditInput, GlobInput, GrepInput, GrepOutput, ReadInput, WriteInput,
};
use switchyard_agent::{ToolError, Workspace};

struct Setup {
    _dir: tempfile::TempDir,
    ws: Workspace,
    outside: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "do not touch").unwrap();
    let ws = Workspace::create(&dir.path().join("ws")).unwrap();
    Setup {
        _dir: dir,
        ws,
        outside,
    }
}

fn write(ws: &Workspace, path: &str, content: &str) -> Result<String, ToolError> {
    tools::write(
        ws,
        &WriteInput {
            path: path.into(),
            content: content.into(),
        },
    )
}

fn sandbox() -> BashPolicy {
    let policy = BashPolicy::detect(false);
    assert!(
        policy.sandboxed(),
        "bubblewrap (bwrap) must be installed: scripts/test.sh installs it"
    );
    policy
}

#[test]
fn read_write_and_edit() {
    let s = setup();
    write(&s.ws, "src/main.py", "print('hello')\nx = 1\nx = 1\n").unwrap();
    let all = tools::read(
        &s.ws,
        &ReadInput {
            path: "src/main.py".into(),
            offset: None,
            limit: None,
        },
    )
    .unwrap();
    assert_eq!(
        all,
        "     1\tprint('hello')\n     2\tx = 1\n     3\tx = 1\n"
    );
    let part = tools::read(
        &s.ws,
        &ReadInput {
            path: "src/main.py".into(),
            offset: Some(2),
            limit: Some(1),
        },
    )
    .unwrap();
    assert_eq!(
        part,
        "     2\tx = 1\n[1 more lines; continue with offset 3]\n"
    );
    let edit = |old: &str, new: &str, all: bool| {
        tools::edit(
            &s.ws,
            &EditInput {
                path: "src/main.py".into(),
                old_string: old.into(),
                new_string: new.into(),
                replace_all: all,
            },
        )
    };
    assert!(
        matches!(edit("x = 1", "x = 2", false), Err(ToolError::Invalid(m)) if m.contains("2 times"))
    );
    assert!(
        matches!(edit("nothing", "x", false), Err(ToolError::Invalid(m)) if m.contains("not found"))
    );
    edit("hello", "world", false).unwrap();
    edit("x = 1", "x = 2", true).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.ws.root().join("src/main.py")).unwrap(),
        "print('world')\nx = 2\nx = 2\n"
    );
    assert!(matches!(
        tools::read(
            &s.ws,
            &ReadInput {
                path: "missing".into(),
                offset: None,
                limit: None
            }
        ),
        Err(ToolError::NotFound(_))
    ));
    std::fs::write(s.ws.root().join("bin"), [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(
        tools::read(
            &s.ws,
            &ReadInput {
                path: "bin".into(),
                offset: None,
                limit: None
            }
        ),
        Err(ToolError::Invalid(_))
    ));
}

#[test]
fn glob_and_grep() {
    let s = setup();
    write(&s.ws, "a.rs", "fn main() {}\n// TODO: race here\n").unwrap();
    write(&s.ws, "lib/b.rs", "fn b() {}\n").unwrap();
    write(&s.ws, "notes.md", "todo later\n").unwrap();
    let g = tools::glob(
        &s.ws,
        &GlobInput {
            pattern: "**/*.rs".into(),
            path: None,
        },
    )
    .unwrap();
    assert_eq!(g, "a.rs\nlib/b.rs");
    let g = tools::glob(
        &s.ws,
        &GlobInput {
            pattern: "*.md".into(),
            path: None,
        },
    )
    .unwrap();
    assert_eq!(g, "notes.md");
    let grep = |pattern: &str, ci: bool, mode: GrepOutput, glob: Option<&str>| {
        tools::grep(
            &s.ws,
            &GrepInput {
                pattern: pattern.into(),
                path: None,
                glob: glob.map(Into::into),
                case_insensitive: ci,
                output_mode: mode,
            },
        )
        .unwrap()
    };
    assert_eq!(
        grep("TODO", false, GrepOutput::Content, None),
        "a.rs:2:// TODO: race here"
    );
    assert_eq!(
        grep("todo", true, GrepOutput::FilesWithMatches, None),
        "a.rs\nnotes.md"
    );
    assert_eq!(
        grep("fn ", false, GrepOutput::Count, Some("*.rs")),
        "a.rs:1\nlib/b.rs:1"
    );
    assert!(grep("zzz", false, GrepOutput::Content, None).starts_with("no matches"));
    assert!(tools::grep(
        &s.ws,
        &GrepInput {
            pattern: "(".into(),
            path: None,
            glob: None,
            case_insensitive: false,
            output_mode: GrepOutput::Content
        }
    )
    .is_err());
}

#[tokio::test]
async fn escapes_are_refused_and_nothing_outside_changes() {
    let s = setup();
    let outside_file = s.outside.join("secret.txt");
    for path in [
        "../outside/secret.txt",
        outside_file.to_str().unwrap(),
        "/etc/passwd",
        "a/../../outside/x",
    ] {
        assert!(
            matches!(write(&s.ws, path, "pwned"), Err(ToolError::Refused(_))),
            "{path}"
        );
        assert!(
            tools::read(
                &s.ws,
                &ReadInput {
                    path: path.into(),
                    offset: None,
                    limit: None
                }
            )
            .is_err(),
            "{path}"
        );
    }
    // Bash plants symlinks pointing out; the file tools refuse to follow them.
    let policy = sandbox();
    let r = run_bash(
        &s.ws,
        &policy,
        "ln -s /etc etc && ln -s ../outside out",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(r.exit_code, Some(0), "{}", r.for_model());
    assert!(matches!(
        write(&s.ws, "out/secret.txt", "pwned"),
        Err(ToolError::Refused(_))
    ));
    assert!(matches!(
        write(&s.ws, "etc/passwd", "pwned"),
        Err(ToolError::Refused(_))
    ));
    assert!(tools::read(
        &s.ws,
        &ReadInput {
            path: "etc/hostname".into(),
            offset: None,
            limit: None
        }
    )
    .is_err());
    assert!(tools::edit(
        &s.ws,
        &EditInput {
            path: "out/secret.txt".into(),
            old_string: "do".into(),
            new_string: "x".into(),
            replace_all: false
        }
    )
    .is_err());
    let g = tools::glob(
        &s.ws,
        &GlobInput {
            pattern: "**/*".into(),
            path: None,
        },
    )
    .unwrap();
    assert!(!g.contains("passwd") && !g.contains("secret"), "{g}");
    // Inside the sandbox, only the workspace is writable.
    let r = run_bash(
        &s.ws,
        &policy,
        &format!("echo pwned > {}", outside_file.display()),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_ne!(r.exit_code, Some(0));
    let r = run_bash(
        &s.ws,
        &policy,
        "echo pwned > out/secret.txt",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_ne!(r.exit_code, Some(0));
    assert_eq!(
        std::fs::read_to_string(&outside_file).unwrap(),
        "do not touch"
    );
}

#[tokio::test]
async fn bash_runs_sandboxed_with_a_clean_environment_and_no_network() {
    let s = setup();
    let policy = sandbox();
    // Secrets in the server's environment never reach a command.
    std::env::set_var("SY_TEST_API_KEY", "sk-secret-value");
    std::env::set_var("DATABASE_URL", "postgres://app:db-password@db/sy");
    let r = run_bash(
        &s.ws,
        &policy,
        "env; echo out; echo err >&2; exit 3",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let text = r.for_model();
    assert_eq!(r.exit_code, Some(3));
    assert!(text.contains("out") && text.contains("err") && text.contains("[exit code 3]"));
    assert!(
        !text.contains("sk-secret-value") && !text.contains("db-password"),
        "{text}"
    );
    assert!(text.contains(&format!("HOME={}", s.ws.root().display())));
    let r = run_bash(
        &s.ws,
        &policy,
        "pwd && echo made > made.txt",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&r.output).contains(s.ws.root().to_str().unwrap()));
    assert!(s.ws.root().join("made.txt").exists());
    // No network: not even loopback.
    let r = run_bash(
        &s.ws,
        &policy,
        "exec 3<>/dev/tcp/127.0.0.1/5432",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_ne!(r.exit_code, Some(0), "the sandbox reached the network");
    // A fresh PID namespace: the command sees only its own processes.
    let r = run_bash(
        &s.ws,
        &policy,
        "ls /proc | grep -c '^[0-9]'",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let count: u32 = String::from_utf8_lossy(&r.output).trim().parse().unwrap();
    assert!(count < 10, "{count} processes visible");
}

fn processes_matching(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[tokio::test]
async fn a_timed_out_command_leaves_no_process_behind() {
    let s = setup();
    let policy = sandbox();
    let started = Instant::now();
    let r = run_bash(
        &s.ws,
        &policy,
        "sleep 997 & sleep 996; echo never",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    assert!(r.timed_out);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.for_model().contains("timed out"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = [
            processes_matching("sleep 997"),
            processes_matching("sleep 996"),
        ]
        .concat();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes survived: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn output_is_capped_at_one_mebibyte_head_and_tail() {
    let s = setup();
    let policy = sandbox();
    let r = run_bash(
        &s.ws,
        &policy,
        "head -c 3000000 /dev/zero | tr '\\0' a; echo END",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.output.len(), MAX_CAPTURE_BYTES);
    assert!(r.omitted_bytes > 1_900_000);
    assert!(r.output.ends_with(b"END\n"));
    let view = r.for_model();
    assert!(
        view.len() < 40 * 1024 && view.contains("bytes omitted") && view.ends_with("END\n"),
        "{}",
        view.len()
    );
}

#[tokio::test]
async fn without_a_sandbox_bash_is_refused_unless_allowed() {
    let s = setup();
    let strict = BashPolicy {
        bwrap: None,
        allow_unsandboxed: false,
        ..BashPolicy::detect(false)
    };
    assert!(matches!(
        run_bash(&s.ws, &strict, "echo hi", Duration::from_secs(5)).await,
        Err(ToolError::Refused(_))
    ));
    let lax = BashPolicy {
        bwrap: None,
        allow_unsandboxed: true,
        ..BashPolicy::detect(false)
    };
    let r = run_bash(&s.ws, &lax, "echo hi", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.output), "hi\n");
}

/// A folder of this test's outside /tmp (the sandbox has a /tmp of its own,
/// so what lies under the host's /tmp is out of sight whatever is hidden).
fn outside_tmp() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

#[tokio::test]
async fn hidden_directories_are_invisible_but_the_own_workspace_is_not() {
    let dir = outside_tmp();
    let tasks = dir.path().join("tasks");
    let mine = Workspace::create(&tasks.join("task_a")).unwrap();
    let theirs = Workspace::create(&tasks.join("task_b")).unwrap();
    std::fs::write(theirs.root().join("private.txt"), "other task's secret").unwrap();
    std::fs::write(mine.root().join("own.txt"), "mine").unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("switchyard.db"), "key hashes").unwrap();
    let policy = BashPolicy::detect(false).hiding([tasks.clone(), data.clone()]);
    assert!(policy.sandboxed());
    let cmd = format!(
        "cat own.txt; cat {} 2>&1; cat {} 2>&1; ls {}",
        theirs.root().join("private.txt").display(),
        data.join("switchyard.db").display(),
        tasks.display()
    );
    let r = run_bash(&mine, &policy, &cmd, Duration::from_secs(10))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.output).into_owned();
    assert!(out.starts_with("mine"), "{out}");
    assert!(
        !out.contains("other task's secret") && !out.contains("key hashes"),
        "{out}"
    );
    assert_eq!(
        out.lines().last(),
        Some("task_a"),
        "only the own workspace is listed: {out}"
    );
}

#[tokio::test]
async fn masked_files_can_be_neither_read_nor_written() {
    let dir = outside_tmp();
    let ws = Workspace::create(&dir.path().join("ws")).unwrap();
    let secret = dir.path().join("jwt_secret");
    std::fs::write(&secret, "the service's secret").unwrap();
    let policy = BashPolicy::detect(false).masking([secret.clone()]);
    let cmd = format!(
        "cat {0} || echo unread; echo x > {0} || echo unwritten",
        secret.display()
    );
    let r = run_bash(&ws, &policy, &cmd, Duration::from_secs(10))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&r.output).into_owned();
    assert!(!out.contains("the service's secret"), "{out}");
    assert!(
        out.contains("unread\n") && out.contains("unwritten\n"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "the service's secret"
    );
}
