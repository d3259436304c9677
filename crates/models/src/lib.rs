//! Model backends behind one interface, and the OpenAI wire format that is
//! the service's canonical representation of a chat call.

pub mod anthropic;
pub mod anthropic_wire;
pub mod backend;
pub mod claude_cli;
pub mod client;
mod http;
pub mod native;
pub mod openai;
pub mod openai_wire;
pub mod responses;
pub mod sse;

pub use anthropic::AnthropicBackend;
pub use backend::{BackendError, BackendStream, ChunkStream};
pub use claude_cli::ClaudeCliBackend;
pub use client::{Endpoint, HttpClient, HttpSettings};
pub use http::{set_trace_propagator, TracePropagator};
pub use openai::OpenAiBackend;
