//! A streamed call: the chunks of the model that answered, with the call's
//! accounting kept alongside. However the stream ends — finished, failed
//! upstream, abandoned by the client, cut by shutdown, or dropped — the
//! call leaves one usage row with the tokens seen.

use super::call::{Call, Outcome};
use super::error::GatewayError;
use super::native::Metered;
use futures_util::StreamExt;
use std::time::Instant;
use switchyard_models::openai_wire::{ChatChunk, Usage};
use switchyard_models::BackendStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// How the consumer of a stream stopped reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Every chunk was delivered.
    Completed,
    /// The client went away.
    ClientGone,
}

/// What [`ChatStream::next`] hands out.
#[derive(Debug)]
pub enum StreamItem<C = ChatChunk> {
    Chunk(C),
    /// The upstream failed mid-stream; the call is over.
    Failed(GatewayError),
    /// The service is shutting down; the call is over.
    ShuttingDown,
}

/// A streamed call's pieces: chat chunks, or (for a call passed through)
/// what [`Metered`] pieces its backend sends.
pub struct ChatStream<C = ChatChunk> {
    chunks: BackendStream<C>,
    call: Option<Call>,
    /// The pool slot, held until the stream ends.
    _permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
    model_id: String,
    usage: Usage,
    reported_cost_nano: Option<u64>,
    upstream_started: Instant,
}

impl<C: Metered> ChatStream<C> {
    pub(super) fn new(
        call: Call,
        chunks: BackendStream<C>,
        permit: OwnedSemaphorePermit,
        shutdown: CancellationToken,
        upstream_started: Instant,
    ) -> Self {
        Self {
            model_id: call.route().entry.id.clone(),
            chunks,
            call: Some(call),
            _permit: permit,
            shutdown,
            usage: Usage::default(),
            reported_cost_nano: None,
            upstream_started,
        }
    }

    /// The catalog id of the model that is answering.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The smallest remaining budget after the call's reservation.
    pub fn remaining_nano_usd(&self) -> Option<i64> {
        self.call.as_ref().and_then(Call::remaining_nano_usd)
    }

    /// The next chunk (with the catalog id as its `model`), or how the call
    /// ended; `None` when the upstream finished. After a `Failed` or
    /// `ShuttingDown` the call is accounted and the stream is done.
    pub async fn next(&mut self) -> Option<StreamItem<C>> {
        self.call.as_ref()?;
        let item = tokio::select! {
            item = self.chunks.next() => item,
            () = self.shutdown.cancelled() => {
                self.end(Outcome::failed(&GatewayError::ShuttingDown, Some(self.upstream_started.elapsed())))
                    .await;
                return Some(StreamItem::ShuttingDown);
            }
        };
        match item? {
            Ok(mut chunk) => {
                let (usage, cost) = chunk.meter(&self.model_id);
                if let Some(u) = usage {
                    self.usage = u;
                }
                if let Some(cost) = cost {
                    self.reported_cost_nano = Some(cost);
                }
                Some(StreamItem::Chunk(chunk))
            }
            Err(e) => {
                tracing::warn!(error = %e, model = %self.model_id, "upstream stream failed");
                let err = GatewayError::Upstream(e);
                let mut outcome = Outcome::failed(&err, Some(self.upstream_started.elapsed()));
                outcome.usage = self.usage;
                self.end(outcome).await;
                Some(StreamItem::Failed(err))
            }
        }
    }

    /// Ends the call as the consumer saw it and records it.
    pub async fn finish(mut self, how: StreamEnd) {
        let upstream = Some(self.upstream_started.elapsed());
        let outcome = match how {
            StreamEnd::Completed => Outcome {
                usage: self.usage,
                reported_cost_nano: self.reported_cost_nano,
                status: 200,
                error_type: None,
                upstream,
            },
            StreamEnd::ClientGone => {
                let mut o = Outcome::ended(499, "client_closed", self.usage, upstream);
                o.reported_cost_nano = self.reported_cost_nano;
                o
            }
        };
        self.end(outcome).await;
    }

    async fn end(&mut self, outcome: Outcome) {
        if let Some(call) = self.call.take() {
            call.close(outcome).await;
        }
    }
}
