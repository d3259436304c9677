//! API documentation: the OpenAPI document and a bundled Swagger UI that
//! works offline (no CDN).

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

const SWAGGER_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

const INDEX: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Switchyard API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
</script>
</body>
</html>"##;

/// The OpenAPI document, built once.
pub async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_vec(&super::wire_schemas::document())
            .unwrap_or_default()
            .into()
    });
    ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response()
}

pub async fn index() -> Html<&'static str> {
    Html(INDEX)
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

pub async fn swagger_js() -> Response {
    asset("application/javascript; charset=utf-8", SWAGGER_JS)
}

pub async fn swagger_css() -> Response {
    asset("text/css; charset=utf-8", SWAGGER_CSS)
}
