//! One chat completion through the whole router, in process: the service's
//! real router, authentication, rate limit, budget lease and usage queue,
//! in front of the benchmark upstream (`switchyard_bench`) on a thread of
//! its own. The allocation bound (`tests/allocations.rs`) and the router
//! bench (`benches/router.rs`) drive calls through it, one at a time,
//! without a socket on the service's side.

use super::{issue, TestApp};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use std::net::SocketAddr;
use switchyard_core::budget::{BudgetPeriod, BudgetScope};
use switchyard_core::config::DatabaseKind;
use switchyard_core::keys::Scopes;
use switchyard_server::audit::Actor;
use switchyard_server::budgets::BudgetRequest;
use tower::ServiceExt;

/// The body of every call: a one-line question (the upstream answers a
/// fixed completion whatever it is asked).
pub const BODY: &str =
    r#"{"model":"bench","messages":[{"role":"user","content":"What is the capital of Germany?"}]}"#;

/// A running service whose calls go to `upstream`, with a user key whose
/// project has a budget (so every call is admitted against a lease), and
/// its router.
pub struct OneCall {
    pub app: TestApp,
    router: axum::Router,
    authorization: String,
}

impl OneCall {
    /// Starts the service on `kind`. The key's rate limit is far above what
    /// one caller can send (the limiter still decides every call), and the
    /// budget's lease lasts long enough that it is not renewed while
    /// measured.
    pub async fn start(kind: DatabaseKind, upstream: SocketAddr) -> Self {
        let catalog = format!(
            "[[models]]\nid = \"bench\"\nbase_url = \"http://{upstream}/v1\"\n\
             input_per_mtok = 1.0\noutput_per_mtok = 2.0\n"
        );
        let app = TestApp::builder()
            .database(kind)
            .catalog(&catalog)
            .env("API_RATE_LIMIT", "1000000")
            .env("BUDGET_LEASE_SECONDS", "600")
            .start()
            .await;
        let key = issue(&app.state, "bench", Scopes::user()).await;
        let budget = BudgetRequest {
            scope: BudgetScope::Project,
            subject: "proj".into(),
            period: BudgetPeriod::Monthly,
            limit_usd: 1_000_000.0,
        };
        app.state.budgets.set(&budget, &Actor::cli()).await.unwrap();
        let router = switchyard_server::router(app.state.clone());
        Self {
            app,
            router,
            authorization: format!("Bearer {key}"),
        }
    }

    /// One call, its answer read to the end; panics unless it is a 200.
    pub async fn call(&self) {
        let request = Request::post("/v1/chat/completions")
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(BODY))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
}
