//! Calls in an API other than chat completions (Anthropic's Messages,
//! OpenAI's Responses) that pass through as sent to a model whose upstream
//! speaks that API, and are translated to the chat form for every other
//! model — per attempt, so a fallback chain may mix the two.

use super::call::take_reported_cost;
use super::catalog::Backend;
use futures_util::StreamExt;
use switchyard_models::native::{Dialect, Forward, NativeEvent, NativeReply};
use switchyard_models::openai_wire::{ChatChunk, ChatCompletion, ChatRequest, Usage};
use switchyard_models::{BackendError, BackendStream};

/// What a call's result tells its accounting.
pub trait Metered {
    /// Names the serving model `model_id` where the result carries a model,
    /// and takes the usage so far and any cost the backend reported itself.
    fn meter(&mut self, model_id: &str) -> (Option<Usage>, Option<u64>);
}

impl Metered for ChatCompletion {
    fn meter(&mut self, model_id: &str) -> (Option<Usage>, Option<u64>) {
        model_id.clone_into(&mut self.model);
        (self.usage, take_reported_cost(&mut self.extra))
    }
}

impl Metered for ChatChunk {
    fn meter(&mut self, model_id: &str) -> (Option<Usage>, Option<u64>) {
        model_id.clone_into(&mut self.model);
        (self.usage, take_reported_cost(&mut self.extra))
    }
}

/// A request in a client's own API: the body to pass through, and its chat
/// form for models that do not speak that API.
#[derive(Debug, Clone)]
pub struct Passthrough {
    pub dialect: Dialect,
    pub forward: Forward,
    pub chat: ChatRequest,
}

/// The reply to a [`Passthrough`] call.
#[derive(Debug)]
pub enum Reply {
    /// The upstream's own reply (model renamed).
    Native(NativeReply),
    /// A chat completion, to be translated for the client.
    Chat(ChatCompletion),
}

impl Metered for Reply {
    fn meter(&mut self, model_id: &str) -> (Option<Usage>, Option<u64>) {
        match self {
            Reply::Native(r) => (Some(r.usage), None),
            Reply::Chat(c) => c.meter(model_id),
        }
    }
}

/// One piece of a streamed [`Passthrough`] call.
#[derive(Debug)]
pub enum Piece {
    /// An upstream event, as it goes to the client.
    Native(NativeEvent),
    /// A chat chunk, to be translated for the client.
    Chat(ChatChunk),
}

impl Metered for Piece {
    fn meter(&mut self, model_id: &str) -> (Option<Usage>, Option<u64>) {
        match self {
            Piece::Native(e) => (e.usage, None),
            Piece::Chat(c) => c.meter(model_id),
        }
    }
}

impl Backend {
    /// Whether calls in `dialect` pass through to this backend as sent.
    pub fn speaks(&self, dialect: Dialect) -> bool {
        match (self, dialect) {
            (Backend::Anthropic(_), Dialect::Messages) => true,
            (Backend::OpenAi(b), Dialect::Responses) => b.speaks_responses(),
            _ => false,
        }
    }

    /// Serves a [`Passthrough`] call: as sent where this backend speaks its
    /// API, else in its chat form.
    pub async fn reply(&self, p: &Passthrough) -> Result<Reply, BackendError> {
        match self {
            Backend::Anthropic(b) if self.speaks(p.dialect) => {
                b.forward(&p.forward).await.map(Reply::Native)
            }
            Backend::OpenAi(b) if self.speaks(p.dialect) => {
                b.forward(&p.forward).await.map(Reply::Native)
            }
            _ => self.complete(&p.chat).await.map(Reply::Chat),
        }
    }

    /// Streams a [`Passthrough`] call, as [`Backend::reply`] serves one.
    pub async fn pieces(&self, p: &Passthrough) -> Result<BackendStream<Piece>, BackendError> {
        let native = match self {
            Backend::Anthropic(b) if self.speaks(p.dialect) => b.forward_stream(&p.forward).await?,
            Backend::OpenAi(b) if self.speaks(p.dialect) => b.forward_stream(&p.forward).await?,
            _ => {
                let chunks = self.stream(&p.chat).await?;
                return Ok(chunks.map(|c| c.map(Piece::Chat)).boxed());
            }
        };
        Ok(native.map(|e| e.map(Piece::Native)).boxed())
    }
}
