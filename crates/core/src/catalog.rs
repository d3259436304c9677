//! The model catalog: which model ids the service offers, as configured.

use serde::{Deserialize, Serialize};

/// One model the service offers. Later backends add routing fields; the
/// fields here are what `/v1/models` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The id clients send as `model`.
    pub id: String,
    /// Organisation shown as `owned_by` in `/v1/models`.
    #[serde(default = "default_owner")]
    pub owned_by: String,
    /// Other names that resolve to this model.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Free-form description for humans.
    #[serde(default)]
    pub description: Option<String>,
    /// Maximum context window in tokens, when known.
    #[serde(default)]
    pub context_window: Option<u32>,
}

fn default_owner() -> String {
    "switchyard".into()
}

/// Checks ids and aliases: non-empty, printable, unique across the catalog.
pub fn validate(models: &[ModelEntry]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, m) in models.iter().enumerate() {
        for name in std::iter::once(&m.id).chain(m.aliases.iter()) {
            if name.trim().is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(format!(
                    "models[{i}]: `{name}` is not a valid model id (empty or contains whitespace)"
                ));
            } else if !seen.insert(name.clone()) {
                problems.push(format!("models[{i}]: `{name}` is defined more than once"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, aliases: &[&str]) -> ModelEntry {
        ModelEntry {
            id: id.into(),
            owned_by: default_owner(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            description: None,
            context_window: None,
        }
    }

    #[test]
    fn duplicate_ids_and_aliases_are_reported() {
        let problems = validate(&[entry("a", &["b"]), entry("b", &[]), entry("c d", &[])]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`b` is defined more than once"));
        assert!(problems[1].contains("`c d` is not a valid model id"));
        assert!(validate(&[entry("a", &["x"]), entry("b", &["y"])]).is_empty());
    }
}
