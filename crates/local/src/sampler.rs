//! Choosing the next token from the logits: repeat penalty, temperature,
//! nucleus (top-p) sampling, a seedable generator; greedy at temperature 0.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Tokens looked back over by the repeat penalty.
pub const PENALTY_WINDOW: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    /// Logits of recently produced tokens are divided (positive) or
    /// multiplied (negative) by this; 1 disables it.
    pub repeat_penalty: f32,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_p: 0.95,
            repeat_penalty: 1.1,
            seed: None,
        }
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    scratch: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self {
            params,
            rng,
            scratch: Vec::new(),
        }
    }

    /// The next token, given the logits and the tokens produced so far.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32]) -> u32 {
        let p = self.params;
        if p.repeat_penalty != 1.0 && p.repeat_penalty > 0.0 {
            let window = &recent[recent.len().saturating_sub(PENALTY_WINDOW)..];
            let mut seen: Vec<u32> = window.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for id in seen {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                }
            }
        }
        if p.temperature <= 0.0 {
            return crate::model::argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.scratch.clear();
        let mut total = 0.0f32;
        for (i, l) in logits.iter().enumerate() {
            let w = ((l - max) / p.temperature).exp();
            if w > 0.0 && w.is_finite() {
                total += w;
                self.scratch.push((w, i as u32));
            }
        }
        if self.scratch.is_empty() || total <= 0.0 {
            return crate::model::argmax(logits);
        }
        // Nucleus: the most likely tokens whose mass reaches top_p.
        let mut mass = total;
        if p.top_p < 1.0 {
            self.scratch.sort_unstable_by(|a, b| {
                b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal)
            });
            let target = p.top_p.max(f32::MIN_POSITIVE) * total;
            let mut acc = 0.0;
            let mut keep = self.scratch.len();
            for (i, (w, _)) in self.scratch.iter().enumerate() {
                acc += w;
                if acc >= target {
                    keep = i + 1;
                    break;
                }
            }
            self.scratch.truncate(keep);
            mass = acc.min(total);
        }
        let mut r = self.rng.random::<f32>() * mass;
        for (w, id) in &self.scratch {
            if r < *w {
                return *id;
            }
            r -= w;
        }
        self.scratch.last().map_or(0, |(_, id)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..SamplingParams::default()
        });
        let mut logits = vec![0.1, 3.0, 2.0];
        assert_eq!(s.sample(&mut logits, &[]), 1);
    }

    #[test]
    fn repeat_penalty_can_change_the_choice() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            repeat_penalty: 2.0,
            ..SamplingParams::default()
        });
        let mut logits = vec![0.1, 3.0, 2.0];
        assert_eq!(s.sample(&mut logits, &[1]), 2);
    }

    #[test]
    fn a_seed_repeats_the_same_choices_and_top_p_cuts_the_tail() {
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            repeat_penalty: 1.0,
            seed: Some(42),
        };
        let logits = vec![5.0, 4.9, -20.0, 4.8, -20.0];
        let run = || {
            let mut s = Sampler::new(params);
            (0..200)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().all(|id| [0, 1, 3].contains(id)), "{a:?}");
        assert!(a.contains(&0) && a.contains(&1));
    }
}
