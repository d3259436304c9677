//! The variable reader: turns environment variables into typed values
//! (strings, paths, secrets with `NAME_FILE`, flags, ranged integers,
//! seconds, anything with `FromStr`), falls back to the declared default,
//! records every problem with its variable, and records the effective value
//! of every setting it reads, which is what `Config::describe` returns.

use super::setting::{DefaultValue, Section, Setting};
use super::ConfigProblem;
use crate::secret::{redact_url, Secret};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// How an unset optional setting is shown.
pub(crate) const UNSET: &str = "(unset)";
/// How a set secret is shown.
pub(crate) const REDACTED: &str = "[redacted]";

/// Reads variables, records problems and the effective values as it goes.
pub(crate) struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<ConfigProblem>,
    /// The setting read and its effective value, as shown to operators.
    shown: Vec<(&'static str, String)>,
    /// Rows that are not variables (e.g. the number of models), by section.
    notes: Vec<(Section, &'static str, String)>,
    /// The files secrets were read from.
    secret_files: Vec<PathBuf>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            problems: Vec::new(),
            shown: Vec::new(),
            notes: Vec::new(),
            secret_files: Vec::new(),
        }
    }

    pub(crate) fn problem(&mut self, variable: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            variable: variable.to_owned(),
            message: message.into(),
        });
    }

    /// Records (or replaces) the effective value shown for `s`.
    pub(crate) fn show(&mut self, s: &Setting, value: impl Into<String>) {
        let value = value.into();
        match self.shown.iter_mut().find(|(name, _)| *name == s.name) {
            Some(row) => row.1 = value,
            None => self.shown.push((s.name, value)),
        }
    }

    /// Records a row that is no variable, listed after `section`'s settings.
    pub(crate) fn note(&mut self, section: Section, label: &'static str, value: String) {
        self.notes.push((section, label, value));
    }

    /// Records that `s` was not read because it does not apply; `why` is shown.
    pub(crate) fn unused(&mut self, s: &Setting, why: &str) {
        self.show(s, format!("(not used: {why})"));
    }

    /// The problems, and the effective values in the registry's order (each
    /// section's notes after its settings).
    pub(crate) fn finish(self) -> (Vec<ConfigProblem>, Vec<(&'static str, String)>) {
        let mut rows = Vec::with_capacity(self.shown.len() + self.notes.len());
        for section in Section::ALL {
            for s in section.settings() {
                if let Some((name, value)) = self.shown.iter().find(|(n, _)| *n == s.name) {
                    rows.push((*name, value.clone()));
                }
            }
            for (_, label, value) in self.notes.iter().filter(|(sec, _, _)| *sec == section) {
                rows.push((*label, value.clone()));
            }
        }
        // Anything read but not declared still shows (the tests refuse it).
        for (name, value) in &self.shown {
            if !rows.iter().any(|(n, _)| n == name) {
                rows.push((*name, value.clone()));
            }
        }
        (self.problems, rows)
    }

    /// A variable whose name comes from the TOML file (a model's
    /// `api_key_env`), not from the registry: not recorded.
    pub(crate) fn named_by_file(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// A non-empty, trimmed value.
    fn raw(&self, name: &str) -> Option<String> {
        (self.env)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The variable's value, else its declared default (`false`: from the default).
    fn raw_or_default(&self, s: &Setting) -> Option<(String, bool)> {
        match (self.raw(s.name), s.default) {
            (Some(v), _) => Some((v, true)),
            (None, DefaultValue::Value(d)) => Some((d.to_owned(), false)),
            (None, _) => None,
        }
    }

    /// A setting declared with a default was read without it, or its
    /// default does not parse: a mistake in the declaration.
    fn bad_default(&mut self, s: &Setting) {
        self.problem(
            s.name,
            format!(
                "internal error: the declared default `{}` is not usable",
                s.default.shown()
            ),
        );
    }

    /// An optional string: the value, else the default, else `None`.
    pub(crate) fn optional_text(&mut self, s: &Setting) -> Option<String> {
        let value = self.raw_or_default(s).map(|(v, _)| v);
        self.show(s, value.clone().unwrap_or_else(|| UNSET.to_owned()));
        value
    }

    /// A string with a declared default.
    pub(crate) fn text(&mut self, s: &Setting) -> String {
        match self.optional_text(s) {
            Some(v) => v,
            None => {
                self.bad_default(s);
                String::new()
            }
        }
    }

    pub(crate) fn optional_path(&mut self, s: &Setting) -> Option<PathBuf> {
        self.optional_text(s).map(PathBuf::from)
    }

    pub(crate) fn path(&mut self, s: &Setting) -> PathBuf {
        PathBuf::from(self.text(s))
    }

    /// A value parsed by `parse`, whose error is the whole message; on an
    /// invalid value the problem is recorded and the default is used.
    pub(crate) fn parse_with<T: Display>(
        &mut self,
        s: &Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Some((raw, from_user)) = self.raw_or_default(s) else {
            self.show(s, UNSET);
            return None;
        };
        let value = match parse(&raw) {
            Ok(v) => Some(v),
            Err(message) => {
                if from_user {
                    self.problem(s.name, message);
                }
                let fallback = match s.default {
                    DefaultValue::Value(d) => parse(d).ok(),
                    _ => None,
                };
                if fallback.is_none() && matches!(s.default, DefaultValue::Value(_)) {
                    self.bad_default(s);
                }
                fallback
            }
        };
        self.show(
            s,
            value
                .as_ref()
                .map_or_else(|| UNSET.to_owned(), ToString::to_string),
        );
        value
    }

    /// A value of a type whose `FromStr` error names the accepted values:
    /// the message reads "`raw` is not valid: expected …".
    pub(crate) fn parse<T>(&mut self, s: &Setting) -> T
    where
        T: FromStr<Err = String> + Display + Default,
    {
        self.parse_with(s, |raw| {
            raw.parse::<T>()
                .map_err(|expect| format!("`{raw}` is not valid: {expect}"))
        })
        .unwrap_or_default()
    }

    /// A value whose default is computed by the caller (`computed`); an
    /// invalid value is a problem and the computed default is used.
    pub(crate) fn parse_or<T>(&mut self, s: &Setting, computed: T) -> T
    where
        T: FromStr<Err = String> + Display,
    {
        let value = match self.raw(s.name) {
            None => computed,
            Some(raw) => match raw.parse::<T>() {
                Ok(v) => v,
                Err(expect) => {
                    self.problem(s.name, format!("`{raw}` is not valid: {expect}"));
                    computed
                }
            },
        };
        self.show(s, value.to_string());
        value
    }

    /// An integer from `min` to `max`.
    pub(crate) fn integer(&mut self, s: &Setting, min: u64, max: u64) -> u64 {
        let expect = format!("expected an integer from {min} to {max}");
        self.parse_with(s, |raw| match raw.parse::<u64>() {
            Err(e) => Err(format!("`{raw}` is not valid: {expect} ({e})")),
            Ok(v) if !(min..=max).contains(&v) => Err(format!("`{v}` is out of range: {expect}")),
            Ok(v) => Ok(v),
        })
        .unwrap_or(min)
    }

    /// A whole number of seconds from `min` to `max`.
    pub(crate) fn seconds(&mut self, s: &Setting, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.integer(s, min, max))
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    pub(crate) fn flag(&mut self, s: &Setting) -> bool {
        self.parse_with(s, |raw| match raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("`{raw}` is not valid: expected true or false")),
        })
        .unwrap_or(false)
    }

    /// A secret from `NAME` or from the file named by `NAME_FILE`, else the default.
    fn read_secret(&mut self, s: &Setting) -> Option<Secret> {
        let name = s.name;
        let file_var = format!("{name}_FILE");
        let direct = (self.env)(name).filter(|v| !v.is_empty());
        let file = self.raw(&file_var);
        let value = match (direct, file) {
            (Some(_), Some(_)) => {
                self.problem(name, format!("set either {name} or {file_var}, not both"));
                None
            }
            (Some(v), None) => Some(Secret::new(v.trim())),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    self.secret_files.push(PathBuf::from(&path));
                    let value = text.trim_end_matches(['\r', '\n']).to_owned();
                    if value.is_empty() {
                        self.problem(&file_var, format!("file `{path}` is empty"));
                        None
                    } else {
                        Some(Secret::new(value))
                    }
                }
                Err(e) => {
                    self.problem(&file_var, format!("cannot read `{path}`: {e}"));
                    None
                }
            },
            (None, None) => None,
        };
        match (value, s.default) {
            (None, DefaultValue::Value(d)) => Some(Secret::new(d)),
            (value, _) => value,
        }
    }

    /// Records a file a secret was read from (besides `NAME_FILE`, which
    /// the reader records itself).
    pub(crate) fn secret_file(&mut self, path: &Path) {
        self.secret_files.push(path.to_path_buf());
    }

    /// The files secrets were read from, in the order read.
    pub(crate) fn take_secret_files(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.secret_files)
    }

    /// A secret, shown as `[redacted]` or `(unset)`.
    pub(crate) fn secret(&mut self, s: &Setting) -> Option<Secret> {
        let value = self.read_secret(s);
        self.show(s, if value.is_some() { REDACTED } else { UNSET });
        value
    }

    /// A URL that may carry a password, shown with the password redacted.
    pub(crate) fn secret_url(&mut self, s: &Setting) -> Option<Secret> {
        let value = self.read_secret(s);
        self.show(
            s,
            value
                .as_ref()
                .map_or_else(|| UNSET.to_owned(), |v| redact_url(v.expose())),
        );
        value
    }
}
