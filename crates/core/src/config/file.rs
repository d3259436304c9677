//! The configuration file section: `SWITCHYARD_CONFIG` names a TOML file of
//! structured settings ([`FileConfig`]: the model catalog, route limits,
//! routing), parsed and validated here.

use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::catalog::{self, ModelEntry};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

declare_settings! { Section::File;
    SWITCHYARD_CONFIG: optional,
        "Path of a TOML file with structured settings (model catalog, route limits, routing); see config/switchyard.example.toml. SIGHUP reloads it.";
}

/// A per-route limit from the TOML file, e.g. `"POST /v1/task" = { per_minute = 10 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimit {
    pub per_minute: u32,
}

/// `[limits]` section of the TOML file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    #[serde(default)]
    pub routes: BTreeMap<String, RouteLimit>,
}

/// The structured settings read from `SWITCHYARD_CONFIG`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub routing: crate::routing::RoutingConfig,
}

impl FileConfig {
    /// Parses and validates the TOML text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let file: FileConfig = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut problems = catalog::validate(&file.models);
        problems.extend(file.routing.validate());
        for (route, limit) in &file.limits.routes {
            let well_formed = route.split_once(' ').is_some_and(|(method, path)| {
                !method.is_empty()
                    && method.bytes().all(|b| b.is_ascii_uppercase())
                    && path.starts_with('/')
            });
            if !well_formed {
                problems.push(format!(
                    "limits.routes.\"{route}\": expected \"METHOD /path\", e.g. \"POST /v1/task\""
                ));
            }
            if limit.per_minute == 0 {
                problems.push(format!(
                    "limits.routes.\"{route}\".per_minute: must be at least 1"
                ));
            }
        }
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(problems)
        }
    }
}

/// The file's path, when set, and its contents (empty when unset or invalid).
pub(super) fn load(r: &mut Reader<'_>) -> (Option<PathBuf>, FileConfig) {
    let path = r.optional_path(&SWITCHYARD_CONFIG);
    let file = match &path {
        None => FileConfig::default(),
        Some(path) => match std::fs::read_to_string(path) {
            Err(e) => {
                r.problem(
                    SWITCHYARD_CONFIG.name,
                    format!("cannot read `{}`: {e}", path.display()),
                );
                FileConfig::default()
            }
            Ok(text) => match FileConfig::parse(&text) {
                Ok(f) => f,
                Err(problems) => {
                    for p in problems {
                        r.problem(SWITCHYARD_CONFIG.name, format!("{}: {p}", path.display()));
                    }
                    FileConfig::default()
                }
            },
        },
    };
    (path, file)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, tempfile_dir, variables};
    use super::*;

    #[test]
    fn the_shipped_example_configuration_is_valid() {
        let text = include_str!("../../../../config/switchyard.example.toml");
        let file = FileConfig::parse(text).unwrap();
        assert_eq!(file.models.len(), 2);
        assert_eq!(file.limits.routes["POST /v1/task"].per_minute, 10);
    }

    #[test]
    fn the_toml_file_is_validated() {
        let dir = tempfile_dir();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "[[models]]\nid = \"m1\"\nbase_url = \"http://127.0.0.1:1/v1\"\naliases = [\"fast\"]\n\n[limits.routes]\n\"POST /v1/task\" = { per_minute = 10 }\n",
        )
        .unwrap();
        let l = load(&[("SWITCHYARD_CONFIG", &good.display().to_string())]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.config.file.models[0].id, "m1");
        assert_eq!(l.config.file.limits.routes["POST /v1/task"].per_minute, 10);

        let bad = dir.join("bad.toml");
        std::fs::write(
            &bad,
            "[[models]]\nid = \"m1\"\nbase_url = \"http://h/v1\"\ncolour = \"red\"\n",
        )
        .unwrap();
        let l = load(&[("SWITCHYARD_CONFIG", &bad.display().to_string())]);
        assert_eq!(variables(&l), ["SWITCHYARD_CONFIG"]);
        assert!(l.problems[0].message.contains("colour"), "{:?}", l.problems);
        std::fs::remove_dir_all(dir).ok();
    }
}
