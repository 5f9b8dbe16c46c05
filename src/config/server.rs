//! Server-side runner settings: what an executor file asks GitLab to hold
//! for its runner besides the name and tags (`run_untagged`, `locked`, …).
//!
//! [`SERVER_SETTINGS`] is the one list of them. Each row names the key
//! (the same in the executor file, in GitLab's API and in the client's
//! [`RunnerAttributes`] and [`RunnerDetails`]), the rule its value follows
//! and the tool's default; from it come the validation of executor files,
//! the create body, drift detection against what GitLab holds, and the
//! keys a runner with its own `token` may not set. Adding a setting is one
//! row (and its field in the two client types, which are the wire format).

use anyhow::Result;
use toml_edit::Table;

use super::source::TomlSource;
use crate::gitlab::{RunnerAttributes, RunnerDetails};
use crate::secret::shown;

/// A server-side setting's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Bool(bool),
    Text(String),
    Number(u64),
}

/// What value a setting accepts.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// `true` or `false`; `default` when the file does not say (`None`:
    /// left to GitLab).
    Bool { default: Option<bool> },
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A number of seconds, at least `min`.
    Seconds { min: u64 },
    /// Text of at most `max_chars` characters.
    Text { max_chars: usize },
}

/// One row of [`SERVER_SETTINGS`].
pub struct ServerSetting {
    /// The key in the executor file and in GitLab's API.
    pub key: &'static str,
    pub rule: Rule,
    /// Puts the value into a create or update body.
    send: fn(&mut RunnerAttributes, &Setting),
    /// What GitLab holds now (`None`: nothing).
    held: fn(&RunnerDetails) -> Option<Setting>,
}

/// A row whose key is also the field name in [`RunnerAttributes`] and
/// [`RunnerDetails`].
macro_rules! setting {
    ($field:ident, $rule:expr) => {
        ServerSetting {
            key: stringify!($field),
            rule: $rule,
            send: |attributes, value| attributes.$field = Wire::from_setting(value),
            held: |details| Held::to_setting(&details.$field),
        }
    };
}

/// Every server-side setting, in the order they are validated, sent and
/// named in a drift message. Limits are GitLab's (`lib/api/ci/runners.rb`,
/// `app/models/ci/runner.rb`: `maximum_timeout` at least 600 seconds,
/// `maintenance_note` at most 1024 characters).
pub const SERVER_SETTINGS: &[ServerSetting] = &[
    setting!(
        run_untagged,
        Rule::Bool {
            default: Some(false)
        }
    ),
    setting!(
        locked,
        Rule::Bool {
            default: Some(false)
        }
    ),
    setting!(paused, Rule::Bool { default: None }),
    setting!(
        access_level,
        Rule::OneOf(&["not_protected", "ref_protected"])
    ),
    setting!(maximum_timeout, Rule::Seconds { min: 600 }),
    setting!(maintenance_note, Rule::Text { max_chars: 1024 }),
];

/// The server-side settings of one executor: each key of
/// [`SERVER_SETTINGS`] the file gives, or that has a default, with its
/// value, in table order. `Default` is the tool's defaults: `run_untagged`
/// and `locked` false, the rest left to GitLab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings(Vec<(&'static ServerSetting, Setting)>);

impl PartialEq for ServerSetting {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ServerSetting {}

impl std::fmt::Debug for ServerSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key)
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        let defaults = SERVER_SETTINGS.iter().filter_map(|s| match s.rule {
            Rule::Bool { default: Some(b) } => Some((s, Setting::Bool(b))),
            _ => None,
        });
        ServerSettings(defaults.collect())
    }
}

impl ServerSettings {
    /// Reads and validates every setting of an executor file.
    pub(super) fn load(source: &TomlSource, table: &Table) -> Result<ServerSettings> {
        let mut values = Vec::new();
        for setting in SERVER_SETTINGS {
            if let Some(value) = setting.read(source, table)? {
                values.push((setting, value));
            }
        }
        Ok(ServerSettings(values))
    }

    /// Sets one setting, kept in table order (fixtures build executors
    /// this way). Panics on a key that is not a row of [`SERVER_SETTINGS`].
    pub fn set(&mut self, key: &str, value: Setting) {
        let row = SERVER_SETTINGS
            .iter()
            .position(|s| s.key == key)
            .unwrap_or_else(|| panic!("`{key}` is not a server setting"));
        self.0.retain(|(s, _)| s.key != key);
        self.0.push((&SERVER_SETTINGS[row], value));
        self.0
            .sort_by_key(|(s, _)| SERVER_SETTINGS.iter().position(|r| r.key == s.key));
    }

    /// The value of a setting, if the file gave one or it has a default.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.0.iter().find(|(s, _)| s.key == key).map(|(_, v)| v)
    }

    /// Puts every setting with a value into a create body.
    pub fn send(&self, attributes: &mut RunnerAttributes) {
        for (setting, value) in &self.0 {
            (setting.send)(attributes, value);
        }
    }

    /// Puts every setting GitLab holds otherwise into `changes`; returns
    /// their keys.
    pub fn drift(
        &self,
        details: &RunnerDetails,
        changes: &mut RunnerAttributes,
    ) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for (setting, value) in &self.0 {
            if (setting.held)(details).as_ref() != Some(value) {
                (setting.send)(changes, value);
                keys.push(setting.key);
            }
        }
        keys
    }

    /// Each setting GitLab holds otherwise, as `key: held → wanted`
    /// (`(unset)` for a value GitLab does not give), for the dry-run and
    /// the log.
    pub fn shown_drift(&self, details: &RunnerDetails) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(setting, value)| {
                let held = (setting.held)(details);
                (held.as_ref() != Some(value)).then(|| {
                    let held = held.map_or_else(|| "(unset)".to_string(), |h| h.to_string());
                    format!("{}: {held} → {value}", setting.key)
                })
            })
            .collect()
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Bool(b) => write!(f, "{b}"),
            Setting::Number(n) => write!(f, "{n}"),
            Setting::Text(t) => write!(f, "{t:?}"),
        }
    }
}

impl ServerSetting {
    /// The file's value, checked against the rule, or the default.
    fn read(&self, source: &TomlSource, table: &Table) -> Result<Option<Setting>> {
        let key = self.key;
        let invalid = |message: String| source.error(key, &table[key], message);
        let value = match self.rule {
            Rule::Bool { default } => source.bool(table, key)?.or(default).map(Setting::Bool),
            Rule::OneOf(allowed) => match source.string(table, key)? {
                Some(value) if !allowed.contains(&value.as_str()) => {
                    return Err(invalid(format!(
                        "`{}` is not one of {}",
                        shown(&value),
                        allowed.join(", ")
                    )));
                }
                value => value.map(Setting::Text),
            },
            Rule::Seconds { min } => match source.integer(table, key)? {
                Some(seconds) if seconds < min => {
                    return Err(invalid(format!("GitLab requires at least {min} seconds")));
                }
                value => value.map(Setting::Number),
            },
            Rule::Text { max_chars } => match source.string(table, key)? {
                Some(text) if text.chars().count() > max_chars => {
                    return Err(invalid(format!(
                        "is longer than GitLab's {max_chars} characters"
                    )));
                }
                value => value.map(Setting::Text),
            },
        };
        Ok(value)
    }
}

/// A field of [`RunnerAttributes`]: set from a setting of its type (a
/// row whose rule does not match its field's type sends nothing; the
/// tests below catch that).
trait Wire {
    fn from_setting(value: &Setting) -> Self;
}

impl Wire for Option<bool> {
    fn from_setting(value: &Setting) -> Self {
        match value {
            Setting::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl Wire for Option<String> {
    fn from_setting(value: &Setting) -> Self {
        match value {
            Setting::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl Wire for Option<u64> {
    fn from_setting(value: &Setting) -> Self {
        match value {
            Setting::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// A field of [`RunnerDetails`]: what GitLab holds, as a setting.
trait Held {
    fn to_setting(&self) -> Option<Setting>;
}

impl Held for bool {
    fn to_setting(&self) -> Option<Setting> {
        Some(Setting::Bool(*self))
    }
}

impl Held for Option<String> {
    fn to_setting(&self) -> Option<Setting> {
        self.clone().map(Setting::Text)
    }
}

impl Held for Option<u64> {
    fn to_setting(&self) -> Option<Setting> {
        self.map(Setting::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid value of each rule's kind that differs from GitLab's default.
    fn sample(rule: Rule) -> (Setting, serde_json::Value) {
        match rule {
            Rule::Bool { .. } => (Setting::Bool(true), true.into()),
            Rule::OneOf(allowed) => (Setting::Text(allowed[0].into()), allowed[0].into()),
            Rule::Seconds { min } => (Setting::Number(min + 1), (min + 1).into()),
            Rule::Text { .. } => (Setting::Text("rack B2".into()), "rack B2".into()),
        }
    }

    fn details(json: serde_json::Value) -> RunnerDetails {
        serde_json::from_value(json).unwrap()
    }

    /// Each row's rule, client field and GitLab field agree: a value is
    /// sent on create, GitLab holding it is no drift, GitLab holding
    /// nothing (or `false`) is drift of that key alone.
    #[test]
    fn every_setting_is_sent_and_compared_under_its_own_key() {
        for setting in SERVER_SETTINGS {
            let (value, json) = sample(setting.rule);
            let settings = ServerSettings(vec![(setting, value.clone())]);
            let mut sent = RunnerAttributes::default();
            settings.send(&mut sent);
            assert_ne!(sent, RunnerAttributes::default(), "{}", setting.key);

            let held = details(serde_json::json!({"id": 1, setting.key: json}));
            let mut changes = RunnerAttributes::default();
            assert_eq!(settings.drift(&held, &mut changes), Vec::<&str>::new());
            assert_eq!(changes, RunnerAttributes::default(), "{}", setting.key);

            let bare = details(serde_json::json!({"id": 1}));
            assert_eq!(settings.drift(&bare, &mut changes), vec![setting.key]);
            assert_eq!(changes, sent, "{}", setting.key);
            assert_eq!(settings.get(setting.key), Some(&value));
        }
    }

    #[test]
    fn defaults_are_run_untagged_and_locked_false() {
        let defaults = ServerSettings::default();
        assert_eq!(defaults.get("run_untagged"), Some(&Setting::Bool(false)));
        assert_eq!(defaults.get("locked"), Some(&Setting::Bool(false)));
        for key in [
            "paused",
            "access_level",
            "maximum_timeout",
            "maintenance_note",
        ] {
            assert_eq!(defaults.get(key), None, "{key}");
        }
        // A runner GitLab holds with the defaults has not drifted.
        let held = details(serde_json::json!({"id": 1}));
        let mut changes = RunnerAttributes::default();
        assert!(defaults.drift(&held, &mut changes).is_empty());
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = SERVER_SETTINGS.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SERVER_SETTINGS.len());
    }
}
