//! The request path of a call whose budget a lease covers makes no
//! database operation: every store operation is a trace span (`db`, see
//! `store/src/trace.rs`), counted here with the request span it ran in, so
//! that a regression that adds one fails this test. One test in its own
//! binary, since it installs the process's subscriber.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use switchyard_core::config::DatabaseKind;
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

const CATALOG: &str = r#"
[[models]]
id = "fast"
base_url = "{openai}"
input_per_mtok = 1.0
output_per_mtok = 1.0
"#;

/// One database operation the store traced: its name, and whether it ran
/// inside an HTTP request's span (on the request path).
#[derive(Debug, Clone)]
struct Operation {
    name: String,
    in_request: bool,
}

/// Counts the store's `db` spans (one per database operation, see
/// `store/src/trace.rs`).
#[derive(Clone, Default)]
struct Operations(Arc<Mutex<Vec<Operation>>>);

struct OpIndex(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Operations {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "db" {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let in_request = span
            .scope()
            .skip(1)
            .any(|parent| parent.name() == "request");
        let mut all = self.0.lock().unwrap();
        all.push(Operation {
            name: String::new(),
            in_request,
        });
        span.extensions_mut().insert(OpIndex(all.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(index) = span.extensions().get::<OpIndex>().map(|i| i.0) else {
            return;
        };
        struct Name(Option<String>);
        impl tracing::field::Visit for Name {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "db.operation.name" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut name = Name(None);
        values.record(&mut name);
        if let Some(name) = name.0 {
            self.0.lock().unwrap()[index].name = name;
        }
    }
}

impl Operations {
    fn since(&self, start: usize) -> Vec<Operation> {
        self.0.lock().unwrap()[start..].to_vec()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn chat() -> Value {
    json!({"model": "fast", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
}

async fn set_budget(app: &TestApp, limit_usd: f64) {
    let set = app
        .client
        .put(app.url("/v1/admin/budgets"))
        .bearer_auth(&app.admin)
        .json(&json!({"scope": "project", "subject": "proj", "period": "monthly", "limit_usd": limit_usd}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
}

/// The first call leases headroom (one database operation on its path);
/// the next twenty are admitted and settled in memory: none of them makes
/// a database operation while its request runs. Their usage rows are still
/// written, by the usage writer, off the request path.
fn leased_calls_make_no_database_operation(ops: &Operations, kind: DatabaseKind) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let app = TestApp::builder()
            .database(kind)
            .catalog(CATALOG)
            .env("API_RATE_LIMIT", "1000000")
            // Long enough that no lease needs renewing during the test.
            .env("BUDGET_LEASE_SECONDS", "600")
            .start()
            .await;
        set_budget(&app, 100.0).await;
        let first = ops.len();
        assert_eq!(app.chat(chat()).await.status(), StatusCode::OK);
        let leased: Vec<_> = ops
            .since(first)
            .into_iter()
            .filter(|o| o.in_request)
            .map(|o| o.name)
            .collect();
        assert!(
            leased.iter().any(|n| n == "set_budget_lease"),
            "the first call leases headroom: {leased:?} of {:?}",
            ops.since(first)
        );
        let start = ops.len();
        for _ in 0..20 {
            let r = app.chat(chat()).await;
            assert_eq!(r.status(), StatusCode::OK);
            assert!(r.headers().contains_key("x-budget-remaining-usd"));
        }
        let on_path: Vec<Operation> = ops
            .since(start)
            .into_iter()
            .filter(|o| o.in_request)
            .collect();
        assert!(
            on_path.is_empty(),
            "calls covered by a lease made database operations: {on_path:?}"
        );
        // (Outside requests, the usage writer, the lease keeper and the
        // scheduled jobs go on as usual.)
        app.wait_for_usage(21).await;

        // The lease is visible: to the caller, to admins, in the metrics.
        let usage: Value = app
            .get("/v1/usage", Some(&app.admin))
            .await
            .json()
            .await
            .unwrap();
        let leased = usage["budgets"][0]["leased_usd"].as_str().unwrap();
        assert_ne!(leased, "0.000000000", "{usage}");
        let held = app.state.budgets.leases_held();
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(held[0].2 > 0, "{held:?}");
        app.stop().await;
    });
}

#[test]
fn leased_calls_make_no_database_operation_on_either_engine() {
    let ops = Operations::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(ops.clone()))
        .unwrap();
    leased_calls_make_no_database_operation(&ops, DatabaseKind::Sqlite);
    leased_calls_make_no_database_operation(&ops, DatabaseKind::Postgres);
}
