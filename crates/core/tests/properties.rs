//! Property tests of the parsers of outside input in core: every setting's
//! value, rate-limit strings and presented API keys. Whatever the text,
//! the answer is a value or a named problem; never a panic.

use proptest::prelude::*;
use switchyard_core::config::{settings, Config, DefaultValue};
use switchyard_core::keys::{PresentedKey, RateLimit};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text shaped like the values settings take, and anything at all.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        "-?[0-9]{0,25}(\\.[0-9]{0,12})?(e-?[0-9]{1,4})?",
        "(true|false|yes|no|on|off|1|0|TRUE| )",
        "(http|https|postgres|postgresql|sqlite|redis|rediss|ftp)://[ -~]{0,40}",
        "[0-9]{0,12}/[a-z]{0,8}",
        "[a-z_=,]{0,30}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_setting_takes_any_text_or_names_the_problem(
        index in any::<prop::sample::Index>(),
        raw in value(),
    ) {
        let all: Vec<_> = settings().collect();
        let setting = all[index.index(all.len())];
        let name = setting.name;
        let loaded = Config::load(&|n: &str| (n == name).then(|| raw.clone()));
        if name != "ENVIRONMENT" {
            // Production adds checks of other settings; elsewhere a bad
            // value is reported against the variable that holds it, or
            // against the one it needs (TLS_KEY_FILE with TLS_CERT_FILE).
            for p in &loaded.problems {
                prop_assert!(
                    p.variable.starts_with(name) || p.message.contains(name),
                    "{name}={raw:?} was reported as {p}"
                );
            }
        }
        if let DefaultValue::Value(d) = setting.default {
            let again = Config::load(&|n: &str| (n == name).then(|| d.to_owned()));
            prop_assert!(again.problems.is_empty(), "{name}'s default {d:?}: {:?}",
                again.problems.iter().map(ToString::to_string).collect::<Vec<_>>());
        }
    }

    #[test]
    fn rate_limits_parse_or_are_refused(raw in value()) {
        if let Ok(limit) = raw.parse::<RateLimit>() {
            prop_assert!(limit.period_seconds() > 0);
            let again = RateLimit::new(limit.requests(), limit.period_seconds());
            prop_assert_eq!(again, Ok(limit));
        }
    }

    #[test]
    fn presented_keys_parse_or_are_refused(raw in value(), hex in "[0-9a-f]{64}") {
        let _ = PresentedKey::parse(&raw);
        let key = format!("sy_{hex}");
        prop_assert!(PresentedKey::parse(&key).is_ok());
    }
}
