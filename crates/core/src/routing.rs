//! The `auto` model: which catalog model a prompt should go to, and why.
//!
//! The baseline policy, in order (first match wins):
//! 1. a very large context (estimated input tokens ≥ `large_context_tokens`)
//!    goes to the `large` model;
//! 2. when the caller's remaining budget is below `low_budget_usd`, the
//!    `cheapest` model;
//! 3. asks that mention analysis, design, debugging, refactoring (the
//!    `complex_keywords`) go to the `medium` model;
//! 4. short asks (≤ `short_prompt_chars` characters) go to the `small` model;
//! 5. everything else goes to the `medium` model.
//!
//! All thresholds, keywords and model names are configurable under
//! `[routing]` in `SWITCHYARD_CONFIG`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub small: String,
    pub medium: String,
    pub large: String,
    /// The model chosen when the budget runs low.
    pub cheapest: String,
    pub large_context_tokens: u64,
    pub low_budget_usd: f64,
    pub short_prompt_chars: usize,
    pub complex_keywords: Vec<String>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            small: "haiku".into(),
            medium: "sonnet".into(),
            large: "opus".into(),
            cheapest: "haiku".into(),
            large_context_tokens: 100_000,
            low_budget_usd: 0.50,
            short_prompt_chars: 400,
            complex_keywords: [
                "analy",
                "design",
                "debug",
                "refactor",
                "architect",
                "review",
                "race condition",
                "investigate",
                "root cause",
                "optimi",
                "security",
                "prove",
                "trade-off",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

impl RoutingConfig {
    /// The default policy with every tier sent to one model.
    pub fn all_to(model: &str) -> Self {
        Self {
            small: model.into(),
            medium: model.into(),
            large: model.into(),
            cheapest: model.into(),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, v) in [
            ("small", &self.small),
            ("medium", &self.medium),
            ("large", &self.large),
            ("cheapest", &self.cheapest),
        ] {
            if v.trim().is_empty() {
                problems.push(format!("routing.{field}: must name a model"));
            }
        }
        if !self.low_budget_usd.is_finite() || self.low_budget_usd < 0.0 {
            problems.push("routing.low_budget_usd: must be a non-negative amount".into());
        }
        problems
    }

    /// The model names the policy may choose.
    pub fn targets(&self) -> [&str; 4] {
        [&self.small, &self.medium, &self.large, &self.cheapest]
    }
}

/// What the router looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteInput<'a> {
    /// All message text, concatenated.
    pub text: &'a str,
    pub estimated_input_tokens: u64,
    /// The smallest remaining budget of the caller, when any applies.
    pub remaining_budget_usd: Option<f64>,
}

/// The decision and the reason for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RouteDecision {
    /// The catalog name chosen (id or alias).
    pub model: String,
    /// `small`, `medium`, `large` or `cheapest`.
    pub tier: &'static str,
    /// Which rule decided: `large_context`, `low_budget`, `complex_task`,
    /// `short_prompt` or `default`.
    pub rule: &'static str,
    /// A sentence a person can read.
    pub reason: String,
}

pub fn route(cfg: &RoutingConfig, input: &RouteInput<'_>) -> RouteDecision {
    let pick =
        |tier: &'static str, model: &str, rule: &'static str, reason: String| RouteDecision {
            model: model.to_owned(),
            tier,
            rule,
            reason,
        };
    if input.estimated_input_tokens >= cfg.large_context_tokens {
        return pick(
            "large",
            &cfg.large,
            "large_context",
            format!(
                "about {} input tokens, at or above the {} token threshold for very large contexts",
                input.estimated_input_tokens, cfg.large_context_tokens
            ),
        );
    }
    if let Some(left) = input.remaining_budget_usd {
        if left < cfg.low_budget_usd {
            return pick(
                "cheapest",
                &cfg.cheapest,
                "low_budget",
                format!(
                    "only {left:.4} USD of budget left, below {:.2} USD",
                    cfg.low_budget_usd
                ),
            );
        }
    }
    let lower = input.text.to_lowercase();
    if let Some(k) = cfg
        .complex_keywords
        .iter()
        .find(|k| lower.contains(&k.to_lowercase()))
    {
        return pick(
            "medium",
            &cfg.medium,
            "complex_task",
            format!("the ask mentions `{k}`: analysis, design, debugging or refactoring work"),
        );
    }
    if input.text.chars().count() <= cfg.short_prompt_chars {
        return pick(
            "small",
            &cfg.small,
            "short_prompt",
            format!(
                "a short, simple ask ({} characters, at most {})",
                input.text.chars().count(),
                cfg.short_prompt_chars
            ),
        );
    }
    pick(
        "medium",
        &cfg.medium,
        "default",
        "a longer ask with no special needs".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(text: &str, tokens: u64, budget: Option<f64>) -> RouteDecision {
        route(
            &RoutingConfig::default(),
            &RouteInput {
                text,
                estimated_input_tokens: tokens,
                remaining_budget_usd: budget,
            },
        )
    }

    #[test]
    fn the_baseline_policy() {
        let d = decide("What is the capital of Germany?", 10, None);
        assert_eq!((d.model.as_str(), d.rule), ("haiku", "short_prompt"));
        let d = decide("Please analyse this repo for race conditions", 20, None);
        assert_eq!(
            (d.model.as_str(), d.tier, d.rule),
            ("sonnet", "medium", "complex_task")
        );
        assert!(d.reason.contains("analy"));
        let d = decide("Debug this stack trace", 10, None);
        assert_eq!(d.rule, "complex_task");
        let d = decide(&"word ".repeat(200), 250, None);
        assert_eq!((d.model.as_str(), d.rule), ("sonnet", "default"));
        let d = decide("summarise", 150_000, None);
        assert_eq!((d.model.as_str(), d.rule), ("opus", "large_context"));
        let d = decide("Refactor the module", 10, Some(0.10));
        assert_eq!((d.model.as_str(), d.rule), ("haiku", "low_budget"));
        let d = decide("Refactor the module", 10, Some(5.0));
        assert_eq!(d.rule, "complex_task");
    }

    #[test]
    fn the_policy_is_configurable() {
        let cfg: RoutingConfig = toml::from_str(
            "small = \"mini\"\nshort_prompt_chars = 5\ncomplex_keywords = [\"plan\"]\n",
        )
        .unwrap_or_default();
        assert_eq!(cfg.small, "mini");
        let input = RouteInput {
            text: "Plan a trip",
            estimated_input_tokens: 3,
            remaining_budget_usd: None,
        };
        assert_eq!(route(&cfg, &input).rule, "complex_task");
        let input = RouteInput {
            text: "hi",
            estimated_input_tokens: 1,
            remaining_budget_usd: None,
        };
        assert_eq!(route(&cfg, &input).model, "mini");
        let bad = RoutingConfig {
            small: " ".into(),
            low_budget_usd: -1.0,
            ..RoutingConfig::default()
        };
        assert_eq!(bad.validate().len(), 2);
    }
}
