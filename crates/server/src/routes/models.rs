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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// USD per million tokens; absent for `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing: Option<ModelPricing>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelPricing {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_input_per_mtok: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective: Option<String>,
}

fn render(state: &AppState) -> Result<Arc<String>, serde_json::Error> {
    let created = chrono::Utc::now().timestamp();
    let catalog = state.gateway.catalog();
    let mut data: Vec<ModelObject> = catalog
        .entries()
        .iter()
        .map(|m| ModelObject {
            id: m.id.clone(),
            object: "model",
            created,
            owned_by: m.owned_by.clone(),
            aliases: m.aliases.clone(),
            description: m.description.clone(),
            context_window: m.context_window,
            max_output_tokens: m.max_output_tokens,
            tier: m.tier.clone(),
            pricing: Some(ModelPricing {
                input_per_mtok: m.input_per_mtok,
                output_per_mtok: m.output_per_mtok,
                cached_input_per_mtok: m.cached_input_per_mtok.unwrap_or(m.input_per_mtok),
                effective: m.prices_effective.clone(),
            }),
        })
        .collect();
    if state.gateway.auto_is_routable() {
        data.push(ModelObject {
            id: crate::gateway::AUTO.to_owned(),
            object: "model",
            created,
            owned_by: "switchyard".to_owned(),
            aliases: Vec::new(),
            description: Some(
                "Picks a model per request by the routing policy; POST /v1/route explains the choice"
                    .to_owned(),
            ),
            context_window: None,
            max_output_tokens: None,
            tier: None,
            pricing: None,
        });
    }
    let list = ModelList {
        object: "list",
        data,
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
        .get_or_load("models", || async { render(&state) })
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
