//! What the fake upstreams share: serving a router on a free port, and a
//! record of the requests they received.

use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A router served on a free loopback port until dropped.
pub struct Served {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Starts serving inside the current Tokio runtime.
    pub async fn start(app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake upstream");
        let port = listener.local_addr().expect("local addr").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, task }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fake upstream: its router served on a free port, and the log its
/// handlers write every request they receive to.
pub struct Upstream<T> {
    pub port: u16,
    log: Log<T>,
    _server: Served,
}

impl<T: Clone> Upstream<T> {
    /// Serves the router `app` builds around a fresh log (inside the current
    /// Tokio runtime).
    pub async fn serve(app: impl FnOnce(Log<T>) -> Router) -> Self {
        let log = Log::default();
        let server = Served::start(app(log.clone())).await;
        Self {
            port: server.port,
            log,
            _server: server,
        }
    }

    /// Calls received for one upstream model name.
    pub fn calls(&self, model: &str) -> u64 {
        self.log.calls(model)
    }

    pub fn received(&self) -> Vec<T> {
        self.log.received()
    }
}

/// Requests received, and calls counted per model name.
pub struct Log<T> {
    received: Arc<Mutex<Vec<T>>>,
    calls: Arc<Mutex<HashMap<String, u64>>>,
}

impl<T> Clone for Log<T> {
    fn clone(&self) -> Self {
        Self {
            received: self.received.clone(),
            calls: self.calls.clone(),
        }
    }
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Self {
            received: Arc::default(),
            calls: Arc::default(),
        }
    }
}

impl<T: Clone> Log<T> {
    /// Records a request for `model`; returns which call to that model it is
    /// (1 for the first).
    pub fn record(&self, model: &str, request: T) -> u64 {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(model.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    pub fn received(&self) -> Vec<T> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn calls(&self, model: &str) -> u64 {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(model)
            .copied()
            .unwrap_or(0)
    }
}
