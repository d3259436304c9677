//! The test harness shared by the API test suites: a real server on a free
//! port over a fresh database, and helpers to talk to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::Client;
use std::collections::HashMap;
use switchyard_core::keys::{NewKeySpec, Scopes};
use switchyard_core::Config;
use switchyard_server::audit::Actor;
use switchyard_server::{AppState, Application};

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub admin: String,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn start(db_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut vars: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db_url.into()),
            ("PORT".into(), "0".into()),
            ("DATABASE_POOL_SIZE".into(), "5".into()),
        ]);
        for (k, v) in extra {
            vars.insert((*k).into(), (*v).into());
        }
        let loaded = Config::load(&move |n| vars.get(n).cloned());
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let app = Application::build(loaded.config).await.unwrap();
        let port = app.port();
        let state = app.state();
        let admin = issue(&state, "admin", Scopes::admin()).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder().no_gzip().no_brotli().build().unwrap(),
            admin,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
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
