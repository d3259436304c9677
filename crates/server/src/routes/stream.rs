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

use super::chat::origin;
use super::tasks;
use crate::context::Authenticated;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tasks::{follow_events, Followed};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
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
    auth: Authenticated,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(16 * 1024 * 1024)
        .on_upgrade(move |socket| session(state, auth, socket))
}

async fn session(state: AppState, auth: Authenticated, mut socket: WebSocket) {
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
                        tokio::spawn(handle(state.clone(), auth.clone(), msg, tx.clone()));
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

async fn handle(state: AppState, auth: Authenticated, msg: ClientMessage, tx: mpsc::Sender<Value>) {
    match msg {
        ClientMessage::Chat { id, request } => {
            if let Err(rejection) = state.limits.check_key(&auth.caller).await {
                let _ = tx.send(error(Some(&id), &rejection.into())).await;
                return;
            }
            let mut origin = origin(&auth);
            origin.request_id = format!("ws-{id}");
            let reply = match state.gateway.complete_detached(origin, *request).await.0 {
                Ok(c) => json!({"type": "chat.completion", "id": id, "completion": c}),
                Err(e) => error(Some(&id), &e.into()),
            };
            let _ = tx.send(reply).await;
        }
        ClientMessage::Subscribe { id, task_id } => {
            if let Err(e) = tasks::owned(&state, &auth.caller, &task_id).await {
                let _ = tx.send(error(Some(&id), &e)).await;
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
            let entry = |event: String| {
                let event: Value = serde_json::from_str(&event).unwrap_or(Value::Null);
                json!({"type": "task.event", "id": id, "event": event})
            };
            if let Followed::Ended(status) =
                follow_events(&state, &task_id, deadline, &tx, entry).await
            {
                let _ = tx
                    .send(json!({"type": "task.done", "id": id, "status": status}))
                    .await;
            }
        }
    }
}
