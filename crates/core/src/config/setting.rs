//! The declaration of a setting ([`Setting`]) and the registry of all of
//! them: the one list from which loading, `switchyard config check` and the
//! CLI's help are derived. Each section file declares its own settings with
//! [`declare_settings!`]; [`SECTIONS`] gathers them.

use std::fmt;

/// The part of the configuration a setting belongs to; settings are listed
/// (in `config check` and in the help) section by section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Server,
    Observability,
    Traces,
    Security,
    Keys,
    Tls,
    Database,
    Redis,
    Limits,
    File,
    Models,
    Tasks,
    Retention,
    Backup,
}

impl Section {
    /// Every section, in the order settings are listed.
    pub const ALL: [Section; 14] = [
        Section::Server,
        Section::Observability,
        Section::Traces,
        Section::Security,
        Section::Keys,
        Section::Tls,
        Section::Database,
        Section::Redis,
        Section::Limits,
        Section::File,
        Section::Models,
        Section::Tasks,
        Section::Retention,
        Section::Backup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Server => "server",
            Section::Observability => "observability",
            Section::Traces => "traces",
            Section::Security => "security",
            Section::Keys => "keys",
            Section::Tls => "tls",
            Section::Database => "database",
            Section::Redis => "redis",
            Section::Limits => "limits",
            Section::File => "file",
            Section::Models => "models",
            Section::Tasks => "tasks",
            Section::Retention => "retention",
            Section::Backup => "backup",
        }
    }

    /// The heading the help prints above the section's settings.
    pub fn title(self) -> &'static str {
        match self {
            Section::Server => "Server",
            Section::Observability => "Logs and error reporting",
            Section::Traces => "Traces (OpenTelemetry)",
            Section::Security => "Authentication and API keys",
            Section::Keys => "Key rotation and access tokens",
            Section::Tls => "TLS (HTTPS listener)",
            Section::Database => "Database",
            Section::Redis => "Redis",
            Section::Limits => "Rate limits and caching",
            Section::File => "Configuration file",
            Section::Models => "Models",
            Section::Tasks => "Agent tasks",
            Section::Retention => "Data retention",
            Section::Backup => "Backups",
        }
    }

    /// The settings declared in this section.
    pub fn settings(self) -> &'static [&'static Setting] {
        match self {
            Section::Server => super::server::SETTINGS,
            Section::Observability => super::observability::SETTINGS,
            Section::Traces => super::otel::SETTINGS,
            Section::Security => super::security::SETTINGS,
            Section::Keys => super::keys::SETTINGS,
            Section::Tls => super::tls::SETTINGS,
            Section::Database => super::database::SETTINGS,
            Section::Redis => super::redis::SETTINGS,
            Section::Limits => super::limits::SETTINGS,
            Section::File => super::file::SETTINGS,
            Section::Models => super::models::SETTINGS,
            Section::Tasks => super::tasks::SETTINGS,
            Section::Retention => super::retention::SETTINGS,
            Section::Backup => super::backup::SETTINGS,
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a setting is when its variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// Nothing: the feature is off or the value absent.
    Unset,
    /// This text, read exactly as if the variable held it.
    Value(&'static str),
    /// Worked out from other settings; the text says how.
    Computed(&'static str),
}

impl DefaultValue {
    /// The default as operators see it (help, README): `—` for none.
    pub fn shown(self) -> &'static str {
        match self {
            DefaultValue::Unset => "—",
            DefaultValue::Value(v) | DefaultValue::Computed(v) => v,
        }
    }
}

/// One environment variable: declared once, in its section's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The variable's name, e.g. `PORT`.
    pub name: &'static str,
    pub section: Section,
    pub default: DefaultValue,
    /// One or two sentences for operators.
    pub help: &'static str,
    /// Never printed; may also come from the file named by `NAME_FILE`.
    pub secret: bool,
}

impl Setting {
    /// A setting with a default value.
    pub const fn value(
        name: &'static str,
        section: Section,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            section,
            default: DefaultValue::Value(default),
            help,
            secret: false,
        }
    }

    /// A setting that may be left unset.
    pub const fn optional(name: &'static str, section: Section, help: &'static str) -> Self {
        Self {
            name,
            section,
            default: DefaultValue::Unset,
            help,
            secret: false,
        }
    }

    /// A setting whose default depends on other settings.
    pub const fn computed(
        name: &'static str,
        section: Section,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            section,
            default: DefaultValue::Computed(default),
            help,
            secret: false,
        }
    }

    /// A secret that may be left unset.
    pub const fn secret(name: &'static str, section: Section, help: &'static str) -> Self {
        Self {
            name,
            section,
            default: DefaultValue::Unset,
            help,
            secret: true,
        }
    }

    /// A secret with a default value (which is then no secret, e.g. a
    /// password-less URL).
    pub const fn secret_value(
        name: &'static str,
        section: Section,
        default: &'static str,
        help: &'static str,
    ) -> Self {
        Self {
            name,
            section,
            default: DefaultValue::Value(default),
            help,
            secret: true,
        }
    }
}

/// Declares a section's settings as constants named like their variables,
/// plus the section's `SETTINGS` list:
///
/// ```text
/// declare_settings! { Section::Server;
///     PORT: value("8000"), "Listen port (0 picks a free one).";
///     JWT_SECRET: secret, "Signing secret.";
/// }
/// ```
///
/// The kind is one of [`Setting`]'s constructors.
macro_rules! declare_settings {
    ($section:expr; $( $name:ident : $kind:ident $( ( $default:expr ) )? , $help:literal ; )* ) => {
        $(
            #[doc = concat!("`", stringify!($name), "`: ", $help)]
            pub const $name: $crate::config::Setting =
                $crate::config::Setting::$kind(stringify!($name), $section, $( $default, )? $help);
        )*
        /// This section's settings, in the order they are listed.
        pub const SETTINGS: &[&$crate::config::Setting] = &[ $( &$name ),* ];
    };
}
pub(super) use declare_settings;

/// Every declared setting, section by section.
pub fn settings() -> impl Iterator<Item = &'static Setting> {
    Section::ALL
        .into_iter()
        .flat_map(|section| section.settings().iter().copied())
}

/// The declared setting called `name`.
pub fn setting(name: &str) -> Option<&'static Setting> {
    settings().find(|s| s.name == name)
}

/// The settings as the CLI's `--help` lists them, section by section.
pub fn env_help() -> String {
    let mut out = String::from(
        "Configuration comes from environment variables (README.md explains each).\n\
         Secrets can instead be read from the file named by NAME_FILE; setting both is an error.\n\
         `switchyard config check` prints the effective values.\n",
    );
    for section in Section::ALL {
        out.push_str(&format!("\n{}:\n", section.title()));
        for s in section.settings() {
            let mut head = format!("  {}", s.name);
            match (s.secret, s.default) {
                (true, DefaultValue::Unset) => {
                    head.push_str(&format!(" (secret; or {}_FILE)", s.name))
                }
                (true, d) => head.push_str(&format!(
                    " (secret; or {}_FILE; default: {})",
                    s.name,
                    d.shown()
                )),
                (false, DefaultValue::Unset) => {}
                (false, d) => head.push_str(&format!(" (default: {})", d.shown())),
            }
            out.push_str(&head);
            out.push_str("\n      ");
            out.push_str(s.help);
            out.push('\n');
        }
    }
    out
}

/// A short pointer to [`env_help`] for `-h`.
pub const ENV_HELP_SHORT: &str = "Configuration comes from environment variables: `switchyard --help` lists them, README.md explains them, `switchyard config check` prints their effective values.";
