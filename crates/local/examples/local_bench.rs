//! Measures the embedded model: load time, prompt processing and generation
//! speed, peak memory.
//!
//!   cargo run --release -p switchyard-local --example local_bench -- MODEL.gguf [PROMPT_TOKENS] [GEN_TOKENS]
#![allow(clippy::print_stdout)]

use std::time::Instant;
use switchyard_local::model::{argmax, Cache};
use switchyard_local::LocalModel;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: local_bench MODEL.gguf [PROMPT_TOKENS] [GEN_TOKENS]")?;
    let prompt_tokens: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let gen_tokens: usize = args.next().map_or(Ok(128), |a| a.parse())?;

    let t = Instant::now();
    let model = LocalModel::load(std::path::Path::new(&path))?;
    let load = t.elapsed();
    println!("load_seconds {:.3}", load.as_secs_f64());
    println!("rss_after_load_mb {:.1}", peak_rss_mb());

    let text = "The quick brown fox jumps over the lazy dog while the committee reviews \
        the quarterly figures and plans the next release. ";
    let mut prompt = Vec::new();
    while prompt.len() < prompt_tokens {
        prompt.extend(model.tokenizer.encode(text));
    }
    prompt.truncate(prompt_tokens);

    // Prompt processing, in the engine's chunk size, best of three.
    let mut best_pp = f64::MAX;
    for _ in 0..3 {
        let mut cache = Cache::new(&model.weights);
        let t = Instant::now();
        for chunk in prompt.chunks(256) {
            model.weights.forward(chunk, &mut cache)?;
        }
        best_pp = best_pp.min(t.elapsed().as_secs_f64());
    }
    println!(
        "prompt_tokens {prompt_tokens} prompt_seconds {best_pp:.3} prompt_tokens_per_second {:.1}",
        prompt_tokens as f64 / best_pp
    );

    // Generation after a short chat prompt, greedy, best of three.
    let chat = model.tokenizer.encode(
        "<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n",
    );
    let mut best_tg = f64::MAX;
    let mut produced = 0;
    for _ in 0..3 {
        let mut cache = Cache::new(&model.weights);
        let logits = model.weights.forward(&chat, &mut cache)?;
        let mut next = argmax(&logits);
        let t = Instant::now();
        for _ in 0..gen_tokens {
            let logits = model.weights.forward(&[next], &mut cache)?;
            next = argmax(&logits);
        }
        produced = gen_tokens;
        best_tg = best_tg.min(t.elapsed().as_secs_f64());
    }
    println!(
        "generated_tokens {produced} generation_seconds {best_tg:.3} generation_tokens_per_second {:.1}",
        produced as f64 / best_tg
    );
    println!("peak_rss_mb {:.1}", peak_rss_mb());
    Ok(())
}
