//! The web console against the real binary: in headless Chromium driven by
//! playwright-core (tests/console/console.cjs: sign in, create a key and
//! read its secret once, call the API with it and find the call in the
//! usage chart and table, rotate and revoke it, watch a task's log arrive
//! live and cancel the task, an audit record for each action, a user key
//! kept out of admin pages), and over plain HTTP (sessions, CSRF and who
//! may do what). Chromium (Debian `chromium`) and playwright-core (npm,
//! pinned) are installed by scripts/test.sh; their absence fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tools;

use reqwest::blocking::{Client, Response};
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use switchyard_testkit::fake_openai::FakeOpenAi;
use switchyard_testkit::process::{Binary, ServerProcess};
use switchyard_testkit::TestDatabase;
use tools::api;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN: &str = "sy_00000000000000000000000000000000000000000000000000000000000000c1";
const JWT_SECRET: &str = "console-test-secret-0123456789abcdef0123456789";

/// A replica of the service on `db`, with the catalog and tasks of `dir`
/// and the same `JWT_SECRET` as any other (no Redis).
fn replica(db: &TestDatabase, dir: &tempfile::TempDir) -> ServerProcess {
    Binary::new(BIN)
        .env("DATABASE_URL", &db.url)
        .env("SWITCHYARD_CONFIG", dir.path().join("switchyard.toml"))
        .env("ADMIN_API_KEY", ADMIN)
        .env("JWT_SECRET", JWT_SECRET)
        .env("LOCAL_MODEL_PRELOAD", "false")
        .env("TASK_WORKERS", "1")
        // Page loads count against the signed-in key's rate, as API calls do.
        .env("API_RATE_LIMIT", "1000")
        .env("ALLOW_UNSANDBOXED_BASH", "true")
        .env("TASKS_DIR", dir.path().join("tasks"))
        .serve()
}

/// The service over the fake OpenAI upstream (models `fast` and
/// `agent-sleep`), a task worker, and a user key.
struct Served {
    server: ServerProcess,
    user: String,
    user_id: String,
    _upstream: FakeOpenAi,
    _rt: tokio::runtime::Runtime,
    db: TestDatabase,
    dir: tempfile::TempDir,
}

fn serve() -> Served {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(FakeOpenAi::start());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    let base = upstream.base_url();
    std::fs::write(
        &config,
        format!(
            "[[models]]\nid = \"fast\"\nbase_url = \"{base}\"\nupstream_model = \"echo-1\"\n\
             input_per_mtok = 1.0\noutput_per_mtok = 2.0\n\n\
             [[models]]\nid = \"agent-sleep\"\nbase_url = \"{base}\"\n"
        ),
    )
    .unwrap();
    let db = TestDatabase::sqlite();
    let server = replica(&db, &dir);
    let created = api(
        server.base_url(),
        "POST",
        "/v1/admin/keys",
        ADMIN,
        Some(json!({"name": "user-laptop", "project": "dev"})),
    );
    Served {
        user: created["key"].as_str().unwrap().to_owned(),
        user_id: created["id"].as_str().unwrap().to_owned(),
        server,
        _upstream: upstream,
        _rt: rt,
        db,
        dir,
    }
}

/// A test dependency: `SWITCHYARD_TEST_<VAR>`, else its default place.
fn dependency(var: &str, default: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(format!("SWITCHYARD_TEST_{var}"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: {what} (scripts/test.sh installs it), or set SWITCHYARD_TEST_{var}",
        path.display()
    );
    path
}

#[test]
fn the_console_works_in_a_real_browser() {
    let chromium = dependency(
        "CHROMIUM",
        "/usr/bin/chromium",
        "install Debian's `chromium` package",
    );
    let modules = dependency(
        "NODE_MODULES",
        "/var/cache/switchyard/npm/node_modules",
        "npm install playwright-core (pinned in scripts/test.sh)",
    );
    assert!(
        modules.join("playwright-core").is_dir(),
        "playwright-core is not in {}: npm install it (scripts/test.sh pins it)",
        modules.display()
    );
    let s = serve();
    let script = tools::repo().join("crates/cli/tests/console/console.cjs");
    let out = Command::new("node")
        .arg(&script)
        .env("SY_BASE", s.server.base_url())
        .env("SY_ADMIN", ADMIN)
        .env("SY_USER", &s.user)
        .env("SY_CHROMIUM", &chromium)
        .env("SY_NODE_MODULES", &modules)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stderr}\n{stdout}\n--- service log ---\n{}",
        s.server.stderr()
    );
    eprintln!("{stderr}{stdout}");
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(result["ok"], true, "{result}");
    // The console's actions went through the key service: audited, by the
    // admin key, through the console.
    let key_id = result["key_id"].as_str().unwrap();
    let audit = api(
        s.server.base_url(),
        "GET",
        &format!("/v1/admin/audit?key_id={key_id}"),
        ADMIN,
        None,
    );
    let events: Vec<(String, String)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["details"]["via"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for event in ["key.created", "key.rotated"] {
        assert!(
            events.contains(&(event.to_owned(), "console".to_owned())),
            "{event} via console in {events:?}"
        );
    }
    let successor = result["successor_id"].as_str().unwrap();
    let revoked = api(
        s.server.base_url(),
        "GET",
        &format!("/v1/admin/audit?key_id={successor}&event=key.revoked"),
        ADMIN,
        None,
    );
    assert_eq!(revoked["data"][0]["details"]["via"], "console", "{revoked}");
    assert_eq!(
        revoked["data"][0]["actor_key"]
            .as_str()
            .map(|k| k.ends_with("(console)")),
        Some(true),
        "{revoked}"
    );
}

/// A console client: cookies kept by hand, redirects not followed.
struct Browser {
    http: Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            http: Client::builder().redirect(Policy::none()).build().unwrap(),
            base: base.to_owned(),
            cookies: Vec::new(),
        }
    }

    fn keep_cookies(&mut self, res: &Response) {
        for v in res.headers().get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&mut self, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .unwrap();
        self.keep_cookies(&res);
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, res.text().unwrap(), headers)
    }

    fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .unwrap();
        self.keep_cookies(&res);
        let status = res.status().as_u16();
        (status, res.text().unwrap())
    }

    fn session(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|(n, _)| n == "sy_console")
            .map(|(_, v)| v.clone())
    }

    /// Signs in with `key`; the session's CSRF token, read from a page.
    fn sign_in(&mut self, key: &str) -> String {
        let (status, page, _) = self.get("/console/login");
        assert_eq!(status, 200);
        let nonce = value_of(&page, "login_csrf");
        let (status, body) = self.post("/console/login", &[("login_csrf", &nonce), ("key", key)]);
        assert_eq!(status, 303, "{body}");
        assert!(self.session().is_some());
        let (status, page, _) = self.get("/console/usage");
        assert_eq!(status, 200, "{page}");
        value_of(&page, "csrf")
    }
}

/// The value of the first hidden input named `name` in `page`.
fn value_of(page: &str, name: &str) -> String {
    let marker = format!(r#"name="{name}" value=""#);
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn console_sessions_csrf_and_scopes_hold_over_plain_http() {
    let s = serve();
    let base = s.server.base_url();
    let mut anon = Browser::new(base);
    // No session: pages send you to sign in; forms are refused.
    let (status, _, headers) = anon.get("/console/keys");
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/login");
    let (status, _) = anon.post("/console/keys", &[("name", "x"), ("project", "p")]);
    assert_eq!(status, 401);
    // The sign-in page: a CSP without inline code, no framing.
    let (status, page, headers) = anon.get("/console/login");
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
    // Signing in needs the form's own nonce, and a real key.
    let (status, _) = anon.post("/console/login", &[("key", ADMIN)]);
    assert_eq!(status, 403);
    let nonce = value_of(&anon.get("/console/login").1, "login_csrf");
    let (status, body) = anon.post(
        "/console/login",
        &[("login_csrf", &nonce), ("key", "sy_nope")],
    );
    assert_eq!(status, 401);
    assert!(body.contains("not an API key"), "{body}");

    // A user key's session: its own pages, none of the admin's.
    let mut user = Browser::new(base);
    let user_csrf = user.sign_in(&s.user);
    for path in [
        "/console/keys",
        "/console/audit",
        "/console/rollouts",
        "/console/overview/queue",
    ] {
        assert_eq!(user.get(path).0, 403, "{path}");
    }
    assert_eq!(user.get("/console").0, 303, "a user's home is their usage");
    assert_eq!(user.get("/console/usage?key_id=key_other").0, 403);
    assert_eq!(user.get("/console/tasks").0, 200);
    assert_eq!(user.get("/console/budgets").0, 200);
    let (status, _) = user.post(
        "/console/keys",
        &[("csrf", &user_csrf), ("name", "mine"), ("project", "dev")],
    );
    assert_eq!(status, 403, "a user key cannot create keys");
    let (status, _) = user.post(
        &format!("/console/keys/{}/revoke", s.user_id),
        &[("csrf", &user_csrf)],
    );
    assert_eq!(status, 403, "nor revoke them");
    // The session cookie is not an API credential.
    let session = user.session().unwrap();
    let res = Client::new()
        .get(format!("{base}/v1/models"))
        .bearer_auth(&session)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);

    // An admin session: every form needs the session's CSRF token.
    let mut admin = Browser::new(base);
    let csrf = admin.sign_in(ADMIN);
    let count = |b: &mut Browser| {
        b.get("/console/keys?all=1")
            .1
            .matches("/console/keys/key_")
            .count()
    };
    let before = count(&mut admin);
    let (status, body) = admin.post("/console/keys", &[("name", "no-csrf"), ("project", "p")]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, _) = admin.post(
        "/console/keys",
        &[
            ("csrf", &user_csrf),
            ("name", "their-csrf"),
            ("project", "p"),
        ],
    );
    assert_eq!(status, 403, "another session's token is refused");
    assert_eq!(count(&mut admin), before, "no key was created");
    let (status, body) = admin.post(
        "/console/keys",
        &[("csrf", &csrf), ("name", "with-csrf"), ("project", "p")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#"<code id="secret">sy_"#), "{body}");
    // Bad input names the field.
    let (status, body) = admin.post(
        "/console/keys",
        &[
            ("csrf", &csrf),
            ("name", "x"),
            ("project", "p"),
            ("rate_limit", "lots"),
        ],
    );
    assert_eq!(status, 400);
    assert!(body.contains("rate_limit"), "{body}");

    // Signing out ends the session, even for a copy of the cookie.
    let copy = admin.session().unwrap();
    let (status, _) = admin.post("/console/logout", &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    assert!(admin.session().is_none(), "the cookie was removed");
    admin.cookies.push(("sy_console".into(), copy));
    assert_eq!(
        admin.get("/console/keys").0,
        303,
        "the ended session is refused"
    );
}

#[test]
fn a_session_in_use_is_renewed_and_a_sign_out_still_ends_it() {
    let s = serve();
    let base = s.server.base_url();
    // The user's key as the service has it, and a session for it signed
    // forty minutes ago, as another replica with the same JWT_SECRET would.
    let key: switchyard_core::keys::ApiKey = serde_json::from_value(api(
        base,
        "GET",
        &format!("/v1/admin/keys/{}", s.user_id),
        ADMIN,
        None,
    ))
    .unwrap();
    let secret = switchyard_core::Secret::new(JWT_SECRET.to_owned());
    let sessions = switchyard_server::session::Sessions::new(Some(&secret), None, None);
    let now = chrono::Utc::now();
    let signed_in = now - chrono::Duration::minutes(40);
    let old = sessions.issue(&key, None, signed_in).unwrap();

    let mut user = Browser::new(base);
    user.cookies.push(("sy_console".into(), old.token.clone()));
    let (status, page, headers) = user.get("/console/usage");
    assert_eq!(status, 200, "{page}");
    let set = headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("Max-Age=36"),
        "{set}"
    );
    let renewed = user.session().unwrap();
    assert_ne!(renewed, old.token, "a later token");
    let claims = sessions.verify(&renewed, chrono::Utc::now()).unwrap();
    assert_eq!(claims.jti, old.claims.jti, "the same session");
    assert_eq!(claims.auth_time, Some(signed_in.timestamp()));
    assert!(claims.exp >= now.timestamp() + 3500, "{claims:?}");
    // Its CSRF token is the one the page already had.
    let csrf = value_of(&page, "csrf");
    assert_eq!(csrf, sessions.csrf_token(&old.claims.jti));

    // A young session is left as it is.
    let (_, _, headers) = user.get("/console/usage");
    assert!(headers.get("set-cookie").is_none(), "{headers:?}");

    // Signing out ends the session: the renewed token and the old one.
    let (status, _) = user.post("/console/logout", &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    assert!(
        user.session().is_none(),
        "the cookie was removed, not renewed"
    );
    // Here, and on another replica of the same database without Redis
    // (started after the sign-out, as after a restart).
    let other = replica(&s.db, &s.dir);
    for base in [base, other.base_url()] {
        for token in [&renewed, &old.token] {
            let mut copy = Browser::new(base);
            copy.cookies.push(("sy_console".into(), token.clone()));
            assert_eq!(
                copy.get("/console/usage").0,
                303,
                "the ended session is refused at {base}"
            );
        }
    }
    // A session never signed out still holds there.
    let fresh = sessions.issue(&key, None, chrono::Utc::now()).unwrap();
    let mut copy = Browser::new(other.base_url());
    copy.cookies.push(("sy_console".into(), fresh.token));
    assert_eq!(copy.get("/console/usage").0, 200);
}
