//! The test harness shared by the API test suites: one builder for an
//! in-process server (or just its services) over a database of its own,
//! with a folder of its own for the model catalog and whatever else the test
//! writes, and the fake upstreams the catalog names.
//!
//! ```ignore
//! let app = TestApp::builder()
//!     .postgres()
//!     .catalog(r#"[[models]]
//!                 id = "fast"
//!                 base_url = "{openai}""#)
//!     .env("API_RATE_LIMIT", "100000")
//!     .start()
//!     .await;
//! let r = app.chat(json!({"model": "fast", "messages": [...]})).await;
//! assert_eq!(app.openai().calls("fast"), 1);
//! ```

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod one_call;

use reqwest::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchyard_core::config::DatabaseKind;
use switchyard_core::keys::{NewKeySpec, Scopes};
use switchyard_core::Config;
use switchyard_server::audit::Actor;
use switchyard_server::{AppState, Application};
use switchyard_testkit::fake_anthropic::FakeAnthropic;
use switchyard_testkit::fake_openai::FakeOpenAi;
use switchyard_testkit::TestDatabase;

/// How long usage records, written after the response, may take to land.
const USAGE_LIMIT: Duration = Duration::from_secs(5);

/// Which database the app runs on.
enum Database {
    /// A fresh one of its own, dropped with the app.
    Fresh(DatabaseKind),
    /// One the test owns (replicas of one deployment, or a database the test
    /// reads after the app has stopped).
    Shared { url: String, kind: DatabaseKind },
}

/// What an app owns besides its server: its database, its folder, and the
/// fake upstreams its catalog points at. Dropped after the server.
struct Owned {
    db_url: String,
    kind: DatabaseKind,
    _db: Option<TestDatabase>,
    dir: tempfile::TempDir,
    openai: Option<FakeOpenAi>,
    anthropic: Option<FakeAnthropic>,
}

/// Settings for a [`TestApp`]; see [`TestApp::builder`].
pub struct Builder {
    database: Database,
    dir: tempfile::TempDir,
    catalog: Option<String>,
    vars: Vec<(String, String)>,
}

impl Builder {
    /// A fresh SQLite database (the default).
    pub fn sqlite(self) -> Self {
        self.database(DatabaseKind::Sqlite)
    }

    /// A fresh PostgreSQL database on the shared test server.
    pub fn postgres(self) -> Self {
        self.database(DatabaseKind::Postgres)
    }

    /// A fresh database of `kind`.
    pub fn database(mut self, kind: DatabaseKind) -> Self {
        self.database = Database::Fresh(kind);
        self
    }

    /// `db`, which the test owns: for replicas sharing one database, or
    /// for reading the database after the app has stopped.
    pub fn shared(mut self, db: &TestDatabase) -> Self {
        self.database = Database::Shared {
            url: db.url.clone(),
            kind: db.kind,
        };
        self
    }

    /// A database at `url` that the test owns and runs itself (a private
    /// PostgreSQL server it stops and starts).
    pub fn shared_url(mut self, url: &str, kind: DatabaseKind) -> Self {
        self.database = Database::Shared {
            url: url.to_owned(),
            kind,
        };
        self
    }

    /// The model catalog: written to `switchyard.toml` in the app's folder
    /// and named by `SWITCHYARD_CONFIG`. `{openai}` and `{anthropic}` in it
    /// stand for the base URLs of fake upstreams the app starts and owns
    /// ([`TestApp::openai`], [`TestApp::anthropic`]).
    pub fn catalog(mut self, toml: &str) -> Self {
        self.catalog = Some(toml.to_owned());
        self
    }

    /// One environment variable of the service's configuration.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Several environment variables.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        for (name, value) in vars {
            self = self.env(name, value);
        }
        self
    }

    /// A variable naming `relative` inside the app's folder (`TASKS_DIR`,
    /// `AGENTS_DIR`, …).
    pub fn env_path(self, name: &str, relative: &str) -> Self {
        let path = self.dir.path().join(relative);
        self.env(name, path.to_str().unwrap())
    }

    /// Writes `contents` to `relative` inside the app's folder (its parent
    /// folders too).
    pub fn file(self, relative: &str, contents: &str) -> Self {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    /// Creates the database, starts the fake upstreams, writes the catalog
    /// and loads the configuration as the service would.
    async fn prepare(self) -> (Config, Owned) {
        let (db, db_url, kind) = match self.database {
            Database::Fresh(kind) => {
                let db = TestDatabase::of_kind(kind);
                let url = db.url.clone();
                (Some(db), url, kind)
            }
            Database::Shared { url, kind } => (None, url, kind),
        };
        let mut vars: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db_url.clone()),
            ("PORT".into(), "0".into()),
            ("DATABASE_POOL_SIZE".into(), "5".into()),
        ]);
        let (mut openai, mut anthropic) = (None, None);
        if let Some(mut toml) = self.catalog {
            if toml.contains("{openai}") {
                let fake = FakeOpenAi::start().await;
                toml = toml.replace("{openai}", &fake.base_url());
                openai = Some(fake);
            }
            if toml.contains("{anthropic}") {
                let fake = FakeAnthropic::start().await;
                toml = toml.replace("{anthropic}", &fake.base_url());
                anthropic = Some(fake);
            }
            let file = self.dir.path().join("switchyard.toml");
            std::fs::write(&file, toml).unwrap();
            vars.insert("SWITCHYARD_CONFIG".into(), file.display().to_string());
        }
        vars.extend(self.vars);
        let loaded = Config::load(&move |n| vars.get(n).cloned());
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let owned = Owned {
            db_url,
            kind,
            _db: db,
            dir: self.dir,
            openai,
            anthropic,
        };
        (loaded.config, owned)
    }

    /// The service on a free port (it binds port 0), with an admin key.
    pub async fn start(self) -> TestApp {
        let (config, owned) = self.prepare().await;
        let app = Application::build(config).await.unwrap();
        let port = app.port();
        let state = app.state();
        let admin = issue(&state, "admin", Scopes::admin()).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder().no_gzip().no_brotli().build().unwrap(),
            admin,
            state,
            stop: Some(tx),
            task: Some(task),
            owned,
        }
    }

    /// The services without a server: the state the handlers get, over a
    /// migrated database (no Redis, no background workers).
    pub async fn state(self) -> TestState {
        let (config, owned) = self.prepare().await;
        let store = switchyard_store::Store::connect_lazy(&config.database).unwrap();
        store.migrate().await.unwrap();
        let state = AppState::new(config, store, None).unwrap();
        TestState { state, owned }
    }
}

/// A running in-process server over a database of its own.
pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub admin: String,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    owned: Owned,
}

/// The services of an app that was not started; dereferences to its
/// [`AppState`].
pub struct TestState {
    pub state: AppState,
    owned: Owned,
}

impl std::ops::Deref for TestState {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.state
    }
}

impl TestState {
    /// The app's folder (the catalog and the test's files).
    pub fn dir(&self) -> &Path {
        self.owned.dir.path()
    }

    /// The fake OpenAI upstream the catalog's `{openai}` started.
    pub fn openai(&self) -> &FakeOpenAi {
        self.owned
            .openai
            .as_ref()
            .expect("the catalog names no {openai} upstream")
    }
}

impl TestApp {
    /// SQLite, no catalog (the built-in one), default settings.
    pub fn builder() -> Builder {
        Builder {
            database: Database::Fresh(DatabaseKind::Sqlite),
            dir: tempfile::tempdir().unwrap(),
            catalog: None,
            vars: Vec::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The app's folder (the catalog and the test's files).
    pub fn dir(&self) -> &Path {
        self.owned.dir.path()
    }

    /// `relative` inside the app's folder.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir().join(relative)
    }

    pub fn database_url(&self) -> &str {
        &self.owned.db_url
    }

    pub fn database_kind(&self) -> DatabaseKind {
        self.owned.kind
    }

    /// The fake OpenAI upstream the catalog's `{openai}` stands for.
    pub fn openai(&self) -> &FakeOpenAi {
        self.owned
            .openai
            .as_ref()
            .expect("the catalog names no {openai} upstream")
    }

    /// The fake Anthropic upstream the catalog's `{anthropic}` stands for.
    pub fn anthropic(&self) -> &FakeAnthropic {
        self.owned
            .anthropic
            .as_ref()
            .expect("the catalog names no {anthropic} upstream")
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.unwrap()
    }

    pub async fn get_with(&self, path: &str, header: &str, value: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header(header, value)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` as JSON with `key`.
    pub async fn post_as(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` as JSON with the admin key.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.post_as(&self.admin, path, body).await
    }

    /// A chat completion with the admin key.
    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics", None).await.text().await.unwrap()
    }

    /// The id of the first stored key with this name.
    pub async fn key_id(&self, name: &str) -> String {
        self.state
            .store
            .list_keys(true)
            .await
            .unwrap()
            .into_iter()
            .find(|k| k.name == name)
            .unwrap()
            .id
    }

    /// Waits until at least `n` usage records are stored (they are written
    /// after the response, in batches).
    pub async fn wait_for_usage(&self, n: i64) -> i64 {
        let deadline = Instant::now() + USAGE_LIMIT;
        loop {
            let stored = self.state.store.count_usage().await.unwrap();
            if stored >= n {
                return stored;
            }
            assert!(
                Instant::now() < deadline,
                "usage records: {stored} of {n} after {USAGE_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for exactly `expected` usage records (one per call) and
    /// returns the latest hundred.
    pub async fn usage_rows(&self, expected: i64) -> Vec<switchyard_store::UsageRecord> {
        let n = self.wait_for_usage(expected).await;
        assert_eq!(n, expected, "exactly one usage record per call");
        self.state.store.recent_usage(100).await.unwrap()
    }

    /// Stops the server the way a shutdown signal does, and waits until it
    /// has drained and flushed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// A catalog whose one model, `cli`, is the Claude Code CLI at `command`;
/// the fake one (`switchyard_testkit::fake_claude`) behaves as its model
/// name, `upstream_model`, says.
pub fn claude_cli_catalog(command: &Path, upstream_model: &str) -> String {
    format!(
        "[[models]]\nid = \"cli\"\nbackend = \"claude_cli\"\ncommand = \"{}\"\nupstream_model = \"{upstream_model}\"\n",
        command.display()
    )
}

pub async fn issue(state: &AppState, name: &str, scopes: Scopes) -> String {
    let spec = NewKeySpec::new(name, None, "proj", scopes, None, switchyard_core::now()).unwrap();
    let issued = state
        .keys
        .issue(
            &spec,
            &Actor {
                via: "test",
                ..Actor::default()
            },
        )
        .await
        .unwrap();
    issued.secret.expose().to_owned()
}
