//! Model backends behind one interface, and the OpenAI wire format that is
//! the service's canonical representation of a chat call.

pub mod backend;
pub mod openai;
pub mod openai_wire;
pub mod sse;

pub use backend::{BackendError, ChunkStream};
pub use openai::OpenAiBackend;
