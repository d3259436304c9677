//! Streaming a gateway call to an HTTP client as server-sent events, in the
//! OpenAI or the Anthropic wire format. The pump runs on a task the gateway
//! tracks, so the call is accounted however the stream ends.

use crate::error::ApiError;
use crate::gateway::{ChatStream, Gateway, Metered, Piece, StreamEnd, StreamItem};
use crate::routes::gateway_error::set_remaining_header;
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use switchyard_models::anthropic::{
    anthropic_error_event, anthropic_error_type, OpenAiToAnthropicEvents,
};
use switchyard_models::openai_wire::ChatChunk;
use switchyard_models::responses::ChatToResponseEvents;

/// The wire format a stream is written in.
#[derive(Debug, Clone)]
pub enum WireKind {
    /// `data: {chunk}` lines ending with `data: [DONE]`.
    OpenAi { include_usage: bool },
    /// Anthropic's named events (`message_start` … `message_stop`).
    Anthropic,
    /// The Responses API's events (`response.created` …
    /// `response.completed`), for the request they answer.
    Responses(Box<serde_json::Value>),
}

fn sse(data: &impl serde::Serialize) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serialising our own types cannot fail; an empty object is the fallback.
    out.extend(serde_json::to_vec(data).unwrap_or_else(|_| b"{}".to_vec()));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn named_event<N: AsRef<str>>((name, data): (N, serde_json::Value)) -> Bytes {
    let mut out = format!("event: {}\ndata: ", name.as_ref()).into_bytes();
    out.extend(serde_json::to_vec(&data).unwrap_or_else(|_| b"{}".to_vec()));
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Encodes one stream's pieces for its client.
trait Encode<C> {
    fn chunk(&mut self, chunk: C) -> Vec<Bytes>;
    fn error(&mut self, err: &ApiError) -> Bytes;
    fn finish(&mut self) -> Vec<Bytes>;
}

/// Encodes chat chunks for one stream, translated to the client's format.
enum Encoder {
    OpenAi { include_usage: bool },
    Anthropic(Box<OpenAiToAnthropicEvents>),
    Responses(Box<ChatToResponseEvents>),
}

impl Encoder {
    fn new(kind: WireKind, model_id: &str) -> Self {
        match kind {
            WireKind::OpenAi { include_usage } => Encoder::OpenAi { include_usage },
            WireKind::Anthropic => {
                Encoder::Anthropic(Box::new(OpenAiToAnthropicEvents::new(model_id)))
            }
            WireKind::Responses(request) => {
                Encoder::Responses(Box::new(ChatToResponseEvents::new(model_id, *request)))
            }
        }
    }
}

impl Encode<ChatChunk> for Encoder {
    fn chunk(&mut self, mut chunk: ChatChunk) -> Vec<Bytes> {
        match self {
            Encoder::OpenAi { include_usage } => {
                if !*include_usage {
                    if chunk.choices.is_empty() && chunk.usage.is_some() {
                        return Vec::new();
                    }
                    chunk.usage = None;
                }
                vec![sse(&chunk)]
            }
            Encoder::Anthropic(events) => {
                events.push(&chunk).into_iter().map(named_event).collect()
            }
            Encoder::Responses(events) => {
                events.push(&chunk).into_iter().map(named_event).collect()
            }
        }
    }

    fn error(&mut self, err: &ApiError) -> Bytes {
        match self {
            Encoder::OpenAi { .. } => sse(&serde_json::json!({"error": {
                "type": err.kind, "message": err.message, "code": err.code,
            }})),
            Encoder::Anthropic(_) => named_event(anthropic_error_event(
                anthropic_error_type(err.status.as_u16()),
                &err.message,
            )),
            Encoder::Responses(events) => {
                named_event(events.error(err.code.unwrap_or(err.kind), &err.message))
            }
        }
    }

    fn finish(&mut self) -> Vec<Bytes> {
        match self {
            Encoder::OpenAi { .. } => vec![Bytes::from_static(b"data: [DONE]\n\n")],
            Encoder::Anthropic(events) => events.finish().into_iter().map(named_event).collect(),
            Encoder::Responses(events) => events.finish().into_iter().map(named_event).collect(),
        }
    }
}

/// Encodes a passed-through call's pieces: the upstream's own events as
/// they came (the upstream ends its stream itself), chat chunks translated.
struct PieceEncoder {
    chat: Encoder,
    native: bool,
}

impl Encode<Piece> for PieceEncoder {
    fn chunk(&mut self, piece: Piece) -> Vec<Bytes> {
        match piece {
            Piece::Native(event) => {
                self.native = true;
                vec![Bytes::from(event.to_sse())]
            }
            Piece::Chat(chunk) => self.chat.chunk(chunk),
        }
    }

    fn error(&mut self, err: &ApiError) -> Bytes {
        self.chat.error(err)
    }

    fn finish(&mut self) -> Vec<Bytes> {
        if self.native {
            Vec::new()
        } else {
            self.chat.finish()
        }
    }
}

/// A response body that streams whatever a producer task sends; it ends when
/// the producer drops its sender.
pub(crate) fn channel_body(rx: tokio::sync::mpsc::Receiver<axum::body::Bytes>) -> axum::body::Body {
    axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }))
}

/// Sends every encoded piece; false when the client has gone.
async fn send_all(tx: &tokio::sync::mpsc::Sender<Bytes>, pieces: Vec<Bytes>) -> bool {
    for bytes in pieces {
        if tx.send(bytes).await.is_err() {
            return false;
        }
    }
    true
}

/// Copies a stream's chunks to the client until it ends, then closes the call.
async fn pump<C: Metered, E: Encode<C>>(
    mut stream: ChatStream<C>,
    mut encoder: E,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    loop {
        match stream.next().await {
            Some(StreamItem::Chunk(chunk)) => {
                if !send_all(&tx, encoder.chunk(chunk)).await {
                    stream.finish(StreamEnd::ClientGone).await;
                    return;
                }
            }
            Some(StreamItem::Failed(e)) => {
                let _ = tx.send(encoder.error(&ApiError::from(e))).await;
                return;
            }
            Some(StreamItem::ShuttingDown) => {
                let e = ApiError::from(crate::gateway::GatewayError::ShuttingDown);
                let _ = tx.send(encoder.error(&e)).await;
                return;
            }
            None => {
                let end = if send_all(&tx, encoder.finish()).await {
                    StreamEnd::Completed
                } else {
                    StreamEnd::ClientGone
                };
                stream.finish(end).await;
                return;
            }
        }
    }
}

/// The response for a stream: SSE headers, the remaining-budget header, and
/// a body fed by a tracked task.
pub fn stream_response(gateway: &Gateway, stream: ChatStream, wire: WireKind) -> Response {
    let encoder = Encoder::new(wire, stream.model_id());
    respond(gateway, stream, encoder)
}

/// The response for a stream of a call in a client's own API: the
/// upstream's events where it was passed through, else chat chunks
/// translated to `wire`.
pub fn stream_pieces_response(
    gateway: &Gateway,
    stream: ChatStream<Piece>,
    wire: WireKind,
) -> Response {
    let encoder = PieceEncoder {
        chat: Encoder::new(wire, stream.model_id()),
        native: false,
    };
    respond(gateway, stream, encoder)
}

fn respond<C, E>(gateway: &Gateway, stream: ChatStream<C>, encoder: E) -> Response
where
    C: Metered + Send + 'static,
    E: Encode<C> + Send + 'static,
{
    let mut headers = axum::http::HeaderMap::new();
    set_remaining_header(&mut headers, stream.remaining_nano_usd());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    gateway.spawn(pump(stream, encoder, tx));
    (
        headers,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        channel_body(rx),
    )
        .into_response()
}
