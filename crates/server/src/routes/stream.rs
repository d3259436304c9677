//! `GET /v1/stream`: a WebSocket for chat and task events, authenticated at
//! the handshake like any request (`Authorization: Bearer` or `x-api-key`).
//!
//! Client → server, one JSON object per text message:
//! - `{"type": "chat", "id": ID, "request": {chat completion request}}`
//! - `{"type": "task.subscribe", "id": ID, "task_id": TASK}`
//!
//! Server → client: `chat.completion` (the whole completion), `task.event`
//! (each log entry, replayed from the start), `task.done` (final status), and
//! `error` — each carrying the client's `id`. Every chat message counts
//! against the key's rate limit and budget like an HTTP call.

use super::chat;
use super::tasks::{self, Followed};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::ratelimit::{self, Scope};
use crate::state::AppState;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_models::openai_wire::ChatRequest;
use tokio::sync::mpsc;

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum ClientMessage {
    #[serde(rename = "chat")]
    Chat {
        id: String,
        request: Box<ChatRequest>,
    },
    #[serde(rename = "task.subscribe")]
    Subscribe { id: String, task_id: String },
}

fn error(id: Option<&str>, e: &ApiError) -> Value {
    json!({"type": "error", "id": id, "error": e.body().error})
}

/// Upgrades to the WebSocket protocol.
#[utoipa::path(get, path = "/v1/stream", tag = "models", security(("api_key" = [])),
    responses((status = 101, description = "WebSocket: chat and task events")))]
pub async fn stream(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(16 * 1024 * 1024)
        .on_upgrade(move |socket| session(state, caller, socket))
}

async fn session(state: AppState, caller: Caller, mut socket: WebSocket) {
    // Replies from concurrent work funnel through one writer.
    let (tx, mut rx) = mpsc::channel::<Value>(256);
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(v) = out else { break };
                if socket.send(WsMessage::Text(v.to_string().into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(msg) => {
                        tokio::spawn(handle(state.clone(), caller.clone(), msg, tx.clone()));
                    }
                    Err(e) => {
                        let err = ApiError::invalid_request(format!("invalid message: {e}"));
                        let _ = tx.send(error(None, &err)).await;
                    }
                }
            }
        }
    }
}

async fn handle(state: AppState, caller: Caller, msg: ClientMessage, tx: mpsc::Sender<Value>) {
    match msg {
        ClientMessage::Chat { id, request } => {
            let quota = state.quotas.for_key(&caller.key);
            if ratelimit::enforce(
                &state,
                Scope::Key,
                &format!("key:{}", caller.key.id),
                &quota,
            )
            .await
            .is_err()
            {
                let e = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    "this API key's request rate limit is exceeded",
                )
                .with_code("key_rate_limit");
                let _ = tx.send(error(Some(&id), &e)).await;
                return;
            }
            let reply = match chat::run_one(state, caller, format!("ws-{id}"), *request).await {
                Ok(c) => json!({"type": "chat.completion", "id": id, "completion": c}),
                Err(e) => error(Some(&id), &e),
            };
            let _ = tx.send(reply).await;
        }
        ClientMessage::Subscribe { id, task_id } => {
            if let Err(e) = tasks::owned(&state, &caller, &task_id).await {
                let _ = tx.send(error(Some(&id), &e)).await;
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
            let entry = |event: String| {
                let event: Value = serde_json::from_str(&event).unwrap_or(Value::Null);
                json!({"type": "task.event", "id": id, "event": event})
            };
            if let Followed::Ended(status) =
                tasks::follow_events(&state, &task_id, deadline, &tx, entry).await
            {
                let _ = tx
                    .send(json!({"type": "task.done", "id": id, "status": status}))
                    .await;
            }
        }
    }
}
