//! A list of checks, each pass / warn / fail with its reason, printed as a
//! table for people or as JSON for machines: what `verify` and `preflight`
//! report.

use serde::Serialize;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    /// How long it took, when it was a round trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub millis: Option<u64>,
}

impl Check {
    pub fn new(name: &str, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            verdict,
            detail: detail.into(),
            millis: None,
        }
    }

    pub fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Pass, detail)
    }

    pub fn warn(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Warn, detail)
    }

    pub fn fail(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Fail, detail)
    }

    pub fn took(mut self, d: std::time::Duration) -> Self {
        self.millis = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    passed: usize,
    warnings: usize,
    failed: usize,
    checks: &'a [Check],
}

/// Prints the checks (a table, or JSON with `json`) and a summary; exit 1
/// when any check failed.
pub fn print(title: &str, checks: &[Check], json: bool) -> anyhow::Result<ExitCode> {
    let count = |v: Verdict| checks.iter().filter(|c| c.verdict == v).count();
    let (passed, warnings, failed) = (
        count(Verdict::Pass),
        count(Verdict::Warn),
        count(Verdict::Fail),
    );
    if json {
        let report = Report {
            ok: failed == 0,
            passed,
            warnings,
            failed,
            checks,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in checks {
            let took = c.millis.map(|m| format!(" ({m} ms)")).unwrap_or_default();
            println!(
                "{:<4}  {:width$}  {}{took}",
                c.verdict.as_str(),
                c.name,
                c.detail
            );
        }
        println!(
            "\n{title}: {passed} passed, {warnings} warning(s), {failed} failed — {}",
            if failed == 0 { "OK" } else { "NOT OK" }
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
