//! The generation engine: one loaded model, one worker thread, many
//! sequences.
//!
//! Requests enter a bounded queue; the worker admits up to `slots` of them
//! at a time and advances the admitted sequences in turn, one step each
//! (a prompt chunk or one token), so a long answer does not hold up a short
//! one and every stream makes progress. Generation runs on its own OS
//! thread (and candle's compute pool), never on the async runtime's
//! threads, so the service stays responsive while the model works.

use crate::model::{Cache, Weights};
use crate::sampler::{Sampler, SamplingParams};
use crate::template::{ChatTemplate, TemplateMessage};
use crate::tokenizer::{TextStream, Tokenizer, Vocab};
use candle_core::quantized::gguf_file;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Prompt tokens run per step: long prompts are fed in chunks so that other
/// sequences keep streaming meanwhile.
const PROMPT_CHUNK: usize = 256;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read the model file `{path}`: {message}")]
    Load { path: String, message: String },
    #[error("the prompt is {prompt} tokens; the model's context holds {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the local model's queue is full ({0} requests waiting)")]
    QueueFull(usize),
    #[error("the local model stopped: {0}")]
    Stopped(String),
    #[error("{0}")]
    Template(String),
}

/// A model ready to run: weights, tokenizer, chat template.
pub struct LocalModel {
    pub weights: Weights,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    /// Tokens that end an answer (end-of-sequence, end-of-turn).
    pub stop_ids: Vec<u32>,
    pub load_time: Duration,
}

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>, String> {
    match ct.metadata.get(key) {
        None => Ok(Vec::new()),
        Some(v) => v
            .to_vec()
            .map_err(|e| format!("{key}: {e}"))?
            .iter()
            .map(|s| s.to_string().cloned().map_err(|e| format!("{key}: {e}")))
            .collect(),
    }
}

impl LocalModel {
    pub fn load(path: &Path) -> Result<Self, LocalError> {
        let started = Instant::now();
        let fail = |message: String| LocalError::Load {
            path: path.display().to_string(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let mut reader = std::io::BufReader::new(file);
        let ct = gguf_file::Content::read(&mut reader).map_err(|e| fail(e.to_string()))?;
        let md = |key: &str| ct.metadata.get(key);
        let id = |key: &str| md(key).and_then(|v| v.to_u32().ok());
        let token_types = match md("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| fail(e.to_string()))?
                .iter()
                .map(|t| t.to_i32().map_err(|e| fail(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let vocab = Vocab {
            model: md("tokenizer.ggml.model")
                .and_then(|v| v.to_string().ok().cloned())
                .unwrap_or_default(),
            pre: md("tokenizer.ggml.pre").and_then(|v| v.to_string().ok().cloned()),
            tokens: strings(&ct, "tokenizer.ggml.tokens").map_err(fail)?,
            token_types,
            merges: strings(&ct, "tokenizer.ggml.merges").map_err(fail)?,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
            add_bos: md("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok())
                .unwrap_or(false),
        };
        let tokenizer = Tokenizer::from_vocab(vocab).map_err(|e| fail(e.to_string()))?;
        let text_of = |id: Option<u32>| id.map(|i| tokenizer.decode_raw(i)).unwrap_or_default();
        let template = ChatTemplate::new(
            md("tokenizer.chat_template").and_then(|v| v.to_string().ok().cloned()),
            text_of(tokenizer.bos),
            text_of(tokenizer.eos),
        )
        .map_err(|e| fail(e.to_string()))?;
        let mut stop_ids: Vec<u32> = tokenizer.eos.into_iter().collect();
        for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>"] {
            if let Some(i) = tokenizer.token_id(t) {
                if tokenizer.is_control(i) && !stop_ids.contains(&i) {
                    stop_ids.push(i);
                }
            }
        }
        let weights = Weights::load(&ct, &mut reader).map_err(|e| fail(e.to_string()))?;
        if weights.hyper.vocab != tokenizer.vocab_size() {
            return Err(fail(format!(
                "the vocabulary has {} tokens but the embedding {}",
                tokenizer.vocab_size(),
                weights.hyper.vocab
            )));
        }
        Ok(Self {
            weights,
            tokenizer,
            template,
            stop_ids,
            load_time: started.elapsed(),
        })
    }

    /// Token ids of the prompt for a conversation.
    pub fn prompt(&self, messages: &[TemplateMessage]) -> Result<Vec<u32>, LocalError> {
        let text = self
            .template
            .render(messages)
            .map_err(|e| LocalError::Template(e.to_string()))?;
        Ok(self.tokenizer.encode(&text))
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end token or a stop sequence.
    Stop,
    /// `max_tokens` or the context was reached.
    Length,
}

impl From<Finish> for switchyard_models::openai_wire::FinishReason {
    fn from(f: Finish) -> Self {
        match f {
            Finish::Stop => Self::Stop,
            Finish::Length => Self::Length,
        }
    }
}

/// What a job reports, in order: text pieces, then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Done {
        prompt_tokens: usize,
        completion_tokens: usize,
        finish: Finish,
    },
    Failed(String),
}

pub struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub params: SamplingParams,
    pub events: UnboundedSender<Event>,
}

#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Sequences advanced together.
    pub slots: usize,
    /// Jobs waiting beyond those.
    pub queue: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            slots: 4,
            queue: 64,
        }
    }
}

pub struct Engine {
    pub model: Arc<LocalModel>,
    jobs: SyncSender<Job>,
    queue: usize,
}

impl Engine {
    pub fn start(model: Arc<LocalModel>, config: EngineConfig) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let worker = model.clone();
        let slots = config.slots.max(1);
        std::thread::Builder::new()
            .name("local-model".into())
            .spawn(move || run(&worker, &rx, slots))?;
        Ok(Self {
            model,
            jobs: tx,
            queue: config.queue,
        })
    }

    /// Queues a job; its events arrive on `job.events`.
    pub fn submit(&self, job: Job) -> Result<(), LocalError> {
        let context = self.model.weights.hyper.context;
        if job.prompt.len() >= context {
            return Err(LocalError::PromptTooLong {
                prompt: job.prompt.len(),
                context,
            });
        }
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => LocalError::QueueFull(self.queue),
            TrySendError::Disconnected(_) => LocalError::Stopped("the worker has exited".into()),
        })
    }
}

struct Sequence {
    job: Job,
    cache: Cache,
    /// Prompt tokens fed so far.
    fed: usize,
    produced: Vec<u32>,
    sampler: Sampler,
    text: TextStream,
    /// Text produced but held back while it could still begin a stop
    /// sequence.
    held: String,
    next_input: Option<u32>,
}

fn run(model: &LocalModel, rx: &Receiver<Job>, slots: usize) {
    let mut active: Vec<Sequence> = Vec::new();
    loop {
        if active.is_empty() {
            match rx.recv() {
                Ok(job) => active.push(admit(model, job)),
                Err(_) => return,
            }
        }
        while active.len() < slots {
            match rx.try_recv() {
                Ok(job) => active.push(admit(model, job)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if active.is_empty() {
                        return;
                    }
                    break;
                }
            }
        }
        active.retain_mut(|seq| {
            // A bug in the numeric code ends that one request, not the
            // worker (and with it every other request).
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(model, seq))) {
                Ok(keep) => keep,
                Err(_) => {
                    tracing::error!("the local model failed on a request; the request was ended");
                    fail(seq, "the local model failed on this request")
                }
            }
        });
    }
}

fn admit(model: &LocalModel, job: Job) -> Sequence {
    Sequence {
        cache: Cache::new(&model.weights),
        sampler: Sampler::new(job.params),
        job,
        fed: 0,
        produced: Vec::new(),
        text: TextStream::default(),
        held: String::new(),
        next_input: None,
    }
}

/// Advances one sequence by a prompt chunk or one token; false when it has
/// finished (or its caller has gone).
fn step(model: &LocalModel, seq: &mut Sequence) -> bool {
    if seq.job.events.is_closed() {
        return false;
    }
    let context = model.weights.hyper.context;
    let input: Vec<u32> = if seq.fed < seq.job.prompt.len() {
        let end = (seq.fed + PROMPT_CHUNK).min(seq.job.prompt.len());
        let chunk = seq.job.prompt[seq.fed..end].to_vec();
        seq.fed = end;
        chunk
    } else if let Some(t) = seq.next_input.take() {
        vec![t]
    } else {
        return fail(seq, "no input to run");
    };
    let mut logits = match model.weights.forward(&input, &mut seq.cache) {
        Ok(l) => l,
        Err(e) => return fail(seq, &e.to_string()),
    };
    if seq.fed < seq.job.prompt.len() {
        return true;
    }
    let token = seq.sampler.sample(&mut logits, &seq.produced);
    if model.stop_ids.contains(&token) {
        return finish(seq, Finish::Stop);
    }
    seq.produced.push(token);
    let piece = seq.text.push(&model.tokenizer, token);
    if emit(seq, piece) {
        return finish(seq, Finish::Stop);
    }
    if seq.produced.len() >= seq.job.max_tokens || seq.cache.len + 1 >= context {
        return finish(seq, Finish::Length);
    }
    seq.next_input = Some(token);
    true
}

/// Adds text to the answer; sends what can no longer be the start of a stop
/// sequence. True when a stop sequence has appeared (the text before it is
/// sent, the rest dropped).
fn emit(seq: &mut Sequence, piece: String) -> bool {
    seq.held.push_str(&piece);
    let stops = &seq.job.stop;
    if let Some(at) = stops.iter().filter_map(|s| seq.held.find(s.as_str())).min() {
        seq.held.truncate(at);
        let text = std::mem::take(&mut seq.held);
        send_text(seq, text);
        return true;
    }
    // Keep back the longest tail that is a prefix of some stop sequence.
    let mut keep = 0;
    for s in stops {
        for (i, _) in seq.held.char_indices() {
            let tail = &seq.held[i..];
            if s.starts_with(tail) {
                keep = keep.max(tail.len());
                break;
            }
        }
    }
    let cut = seq.held.len() - keep;
    let text: String = seq.held.drain(..cut).collect();
    send_text(seq, text);
    false
}

fn send_text(seq: &Sequence, text: String) {
    if !text.is_empty() {
        let _ = seq.job.events.send(Event::Text(text));
    }
}

fn finish(seq: &mut Sequence, why: Finish) -> bool {
    let rest = seq.text.finish();
    let stopped = emit(seq, rest);
    if !stopped {
        let held = std::mem::take(&mut seq.held);
        send_text(seq, held);
    }
    let _ = seq.job.events.send(Event::Done {
        prompt_tokens: seq.job.prompt.len(),
        completion_tokens: seq.produced.len(),
        finish: why,
    });
    false
}

fn fail(seq: &Sequence, message: &str) -> bool {
    let _ = seq.job.events.send(Event::Failed(message.to_owned()));
    false
}
