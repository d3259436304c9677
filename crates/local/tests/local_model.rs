//! The embedded model end to end on the real SmolLM2 GGUF: tokenizer ids
//! against Hugging Face's `tokenizers`, the GGUF's chat template, greedy
//! and sampled generation, stop sequences, limits, and the engine under
//! concurrent jobs.

#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};
use switchyard_local::engine::{Event, Finish, Job};
use switchyard_local::sampler::SamplingParams;
use switchyard_local::template::TemplateMessage;
use switchyard_local::{Engine, EngineConfig, LocalModel};

fn model() -> Arc<LocalModel> {
    static MODEL: OnceLock<Arc<LocalModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                LocalModel::load(&switchyard_testkit::local_model_path()).expect("model loads"),
            )
        })
        .clone()
}

fn msg(role: &str, content: &str) -> TemplateMessage {
    TemplateMessage {
        role: role.into(),
        content: content.into(),
    }
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let m = model();
    let lines = include_str!("data/reference_tokens.jsonl");
    let mut checked = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = v["text"].as_str().unwrap();
        let want: Vec<u32> = v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(m.tokenizer.encode(text), want, "ids of {text:?}");
        // Decoding gives the text back, control tokens aside.
        let plain: String = text.replace("<|im_start|>", "").replace("<|im_end|>", "");
        assert_eq!(m.tokenizer.decode(&want), plain);
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} reference prompts");
}

#[test]
fn the_gguf_chat_template_is_used() {
    let m = model();
    assert!(m.template.from_model);
    let text = m.template.render(&[msg("user", "Hi")]).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let own = m
        .template
        .render(&[msg("system", "Be terse."), msg("user", "Hi")])
        .unwrap();
    assert!(
        own.starts_with("<|im_start|>system\nBe terse.<|im_end|>"),
        "{own}"
    );
    // <|im_end|> ends an answer.
    let im_end = m.tokenizer.token_id("<|im_end|>").unwrap();
    assert!(m.stop_ids.contains(&im_end));
}

#[test]
fn a_prompt_chunk_and_token_by_token_agree() {
    // The chunk goes through the integer GEMM's token tiles and batched
    // attention, single tokens through its one-token path and attention
    // row by row: the same logits either way.
    use switchyard_local::model::{argmax, Cache};
    let m = model();
    let prompt = m
        .prompt(&[msg("user", "What is the capital of Germany?")])
        .unwrap();
    assert!(prompt.len() > 16);
    let mut whole = Cache::new(&m.weights);
    let a = m.weights.forward(&prompt, &mut whole).unwrap();
    let mut stepwise = Cache::new(&m.weights);
    let mut b = Vec::new();
    for t in &prompt {
        b = m.weights.forward(&[*t], &mut stepwise).unwrap();
    }
    assert_eq!(whole.len, stepwise.len);
    assert_eq!(argmax(&a), argmax(&b));
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cosine = dot / (norm(&a) * norm(&b));
    assert!(cosine > 0.995, "cosine similarity {cosine}");
}

struct Answer {
    text: String,
    prompt_tokens: usize,
    completion_tokens: usize,
    finish: Finish,
}

fn job(
    engine: &Engine,
    question: &str,
    max_tokens: usize,
    stop: &[&str],
    params: SamplingParams,
) -> tokio::sync::mpsc::UnboundedReceiver<Event> {
    let prompt = engine.model.prompt(&[msg("user", question)]).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    engine
        .submit(Job {
            prompt,
            max_tokens,
            stop: stop.iter().map(|s| (*s).to_owned()).collect(),
            params,
            events: tx,
        })
        .unwrap();
    rx
}

fn collect(mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> Answer {
    let mut text = String::new();
    loop {
        match rx.blocking_recv().expect("the engine reports an end") {
            Event::Text(t) => text.push_str(&t),
            Event::Failed(m) => panic!("generation failed: {m}"),
            Event::Done {
                prompt_tokens,
                completion_tokens,
                finish,
            } => {
                return Answer {
                    text,
                    prompt_tokens,
                    completion_tokens,
                    finish,
                }
            }
        }
    }
}

fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        ..SamplingParams::default()
    }
}

fn engine() -> Engine {
    Engine::start(model(), EngineConfig::default()).unwrap()
}

#[test]
fn greedy_answers_are_coherent_and_counted() {
    let e = engine();
    let a = collect(job(
        &e,
        "What is the capital of Germany?",
        48,
        &[],
        greedy(),
    ));
    assert!(a.text.contains("Berlin"), "{:?}", a.text);
    let prompt = e
        .model
        .prompt(&[msg("user", "What is the capital of Germany?")])
        .unwrap();
    assert_eq!(a.prompt_tokens, prompt.len());
    // The answer's own tokens: re-encoding the text gives the same count
    // (greedy output of a byte-level BPE model round-trips).
    assert!(a.completion_tokens > 0 && a.completion_tokens <= 48);
    let again = collect(job(
        &e,
        "What is the capital of Germany?",
        48,
        &[],
        greedy(),
    ));
    assert_eq!(again.text, a.text, "greedy decoding is deterministic");
}

#[test]
fn max_tokens_and_stop_sequences_end_the_answer() {
    let e = engine();
    let short = collect(job(&e, "Write a long story about a cat.", 5, &[], greedy()));
    assert_eq!(short.finish, Finish::Length);
    assert_eq!(short.completion_tokens, 5);

    let full = collect(job(
        &e,
        "Count from 1 to 10, separated by commas.",
        60,
        &[],
        greedy(),
    ));
    let stop_at = full.text.find('5').expect("the count reaches 5");
    let stopped = collect(job(
        &e,
        "Count from 1 to 10, separated by commas.",
        60,
        &["5"],
        greedy(),
    ));
    assert_eq!(stopped.finish, Finish::Stop);
    assert_eq!(
        stopped.text,
        full.text[..stop_at],
        "text before the stop sequence"
    );
}

#[test]
fn a_seed_makes_sampling_repeatable() {
    let e = engine();
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        repeat_penalty: 1.1,
        seed: Some(7),
    };
    let a = collect(job(&e, "Tell me about the sea.", 30, &[], params));
    let b = collect(job(&e, "Tell me about the sea.", 30, &[], params));
    assert_eq!(a.text, b.text);
    let other = SamplingParams {
        seed: Some(8),
        ..params
    };
    let texts: Vec<String> = (0..3)
        .map(|_| collect(job(&e, "Tell me about the sea.", 30, &[], other)).text)
        .collect();
    assert!(texts.iter().all(|t| t == &texts[0]));
    assert_ne!(texts[0], a.text, "another seed, another answer");
}

#[test]
fn ten_concurrent_jobs_all_finish_and_a_full_queue_refuses() {
    let e = Engine::start(
        model(),
        EngineConfig {
            slots: 4,
            queue: 10,
        },
    )
    .unwrap();
    let receivers: Vec<_> = (0..10)
        .map(|i| job(&e, &format!("Say the number {i}."), 12, &[], greedy()))
        .collect();
    // The queue holds ten waiting jobs at most; the worker has taken some.
    let mut refused = 0;
    let mut extra = Vec::new();
    for _ in 0..20 {
        let prompt = e.model.prompt(&[msg("user", "x")]).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        match e.submit(Job {
            prompt,
            max_tokens: 1,
            stop: Vec::new(),
            params: greedy(),
            events: tx,
        }) {
            Ok(()) => extra.push(rx),
            Err(err) => {
                assert!(err.to_string().contains("queue is full"), "{err}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "a bounded queue refuses when full");
    for rx in receivers {
        let a = collect(rx);
        assert!(a.completion_tokens > 0);
    }
    for rx in extra {
        collect(rx);
    }
}

#[test]
fn a_dropped_caller_frees_its_slot() {
    let e = Engine::start(model(), EngineConfig { slots: 1, queue: 4 }).unwrap();
    let mut long = job(
        &e,
        "Write a very long essay about rivers.",
        4000,
        &[],
        greedy(),
    );
    // Dropped once it holds the slot: it has produced its first text.
    match long.blocking_recv().expect("the long job reports") {
        Event::Text(_) => {}
        other => panic!("the long job did not start generating: {other:?}"),
    }
    drop(long);
    // With one slot, this answer can only come once the dropped one has
    // been abandoned.
    let a = collect(job(&e, "What is the capital of Germany?", 8, &[], greedy()));
    assert!(a.completion_tokens > 0);
}

#[test]
fn prompts_beyond_the_context_are_refused() {
    let e = engine();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let err = e
        .submit(Job {
            prompt: vec![42; 9000],
            max_tokens: 1,
            stop: Vec::new(),
            params: greedy(),
            events: tx,
        })
        .unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
}
