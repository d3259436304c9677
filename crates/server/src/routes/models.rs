//! `GET /v1/models`: the catalog in OpenAI's list format, served from a
//! one-hour in-memory cache that a configuration reload refreshes.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds; the time the catalog was loaded.
    pub created: i64,
    pub owned_by: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
}

fn render(state: &AppState) -> Result<Arc<String>, serde_json::Error> {
    let created = chrono::Utc::now().timestamp();
    let list = ModelList {
        object: "list",
        data: state
            .catalog()
            .iter()
            .map(|m| ModelObject {
                id: m.id.clone(),
                object: "model",
                created,
                owned_by: m.owned_by.clone(),
                aliases: m.aliases.clone(),
                description: m.description.clone(),
                context_window: m.context_window,
            })
            .collect(),
    };
    serde_json::to_string(&list).map(Arc::new)
}

/// Lists the models this service offers.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    security(("api_key" = [])),
    responses((status = 200, body = ModelList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_models(State(state): State<AppState>) -> Response {
    let body = state
        .models_response
        .get_or_load("models", async { render(&state) })
        .await;
    match body {
        Ok((text, served)) => {
            state.metrics.count_cache("models", served);
            (
                [(header::CONTENT_TYPE, "application/json")],
                Bytes::from(text.as_str().to_owned()),
            )
                .into_response()
        }
        Err(e) => ApiError::internal(&e).into_response(),
    }
}
