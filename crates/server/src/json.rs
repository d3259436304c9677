//! `ApiJson<T>`: the JSON body extractor whose rejections name the field at
//! fault and use the service's error shape (400, 413, 415).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

pub struct ApiJson<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split_once('`').map(|(field, _)| field.to_owned())
}

/// A JSON body both as `T` (checked) and as the JSON value the client
/// sent, for a request that is passed on as sent.
pub struct ApiJsonAndValue<T>(pub T, pub serde_json::Value);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        parse_body(&bytes).map(ApiJson)
    }
}

impl<S, T> FromRequest<S> for ApiJsonAndValue<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        let value: serde_json::Value = parse_body(&bytes)?;
        Ok(ApiJsonAndValue(from_value(&value)?, value))
    }
}

/// The body of a request that must be JSON.
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json(content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "the request body must be JSON (Content-Type: application/json)",
        )
        .with_code("unsupported_media_type"));
    }
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            crate::middleware::payload_too_large()
        } else {
            ApiError::invalid_request(format!("could not read the request body: {rejection}"))
        }
    })
}

/// Parses a JSON body already read; the error names the field at fault.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // A valid body, nearly every one, is read without tracking the path
    // (which wraps every step of the parse); only a body that fails is read
    // again, the same way, to name the field at fault.
    if let Ok(value) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(named_error)
}

/// Reads `T` from a body already parsed as a JSON value (the text is not
/// read twice); the error names the field at fault, as `parse_body`'s does.
fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ApiError> {
    if let Ok(typed) = T::deserialize(value) {
        return Ok(typed);
    }
    serde_path_to_error::deserialize(value).map_err(named_error)
}

/// The 400 for a body that does not fit its type, naming the field at fault.
fn named_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let mut path = err.path().to_string();
    let inner = err.into_inner();
    // serde reports a missing field at its parent; name the field itself.
    if let Some(field) = missing_field(&inner.to_string()) {
        path = if path == "." {
            field
        } else {
            format!("{path}.{field}")
        };
    }
    let mut e = ApiError::invalid_request(if path == "." {
        format!("invalid JSON body: {inner}")
    } else {
        format!("invalid value for `{path}`: {inner}")
    })
    .with_code("invalid_body");
    if path != "." {
        e = e.with_param(path);
    }
    e
}

/// A `200 OK` with `value` as its JSON body. As axum's `Json` response, but
/// written into one buffer sized for a typical completion, where `Json`
/// starts at 128 bytes and goes through `io::Write` for every token.
pub fn json_ok<T: serde::Serialize>(value: &T) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::internal(&e).into_response(),
    }
}
