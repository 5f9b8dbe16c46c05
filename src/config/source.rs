//! A parsed input file that names its own lines: [`TomlSource`] reads a
//! file under [`crate::fsutil`]'s rules, parses it (refusing what
//! gitlab-runner's TOML 1.0 reader could not read), and turns a problem
//! with a key into one message naming the file, the line, the column and
//! the key, never the value. Typed getters (`string`, `bool`, `integer`,
//! `strings`) say what they expected and what they found.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use toml_edit::{Item, Table, Value};

use super::toml10;
use crate::fsutil;

/// A parsed TOML file that can point at its own lines in error messages.
pub(super) struct TomlSource {
    pub(super) path: PathBuf,
    text: String,
}

impl TomlSource {
    /// Reads and parses `path`. The TOML 1.0 check covers only what is
    /// copied to config.toml: a top-level key for which `consumed` is true
    /// (the template's `client_configs`, an executor file's `url`, `tags`,
    /// …) is read by the tool and never written out, so any TOML the
    /// parser accepts is fine there (the original's README writes
    /// `client_configs` as an inline table over several lines).
    pub(super) fn read(
        path: &Path,
        consumed: impl Fn(&str) -> bool,
    ) -> Result<(TomlSource, toml_edit::Document<String>)> {
        let text = fsutil::read_input(path)?;
        let source = TomlSource {
            path: path.to_path_buf(),
            text,
        };
        let doc = toml_edit::Document::parse(source.text.clone()).map_err(|e| {
            // Only the parser's message and position: the offending line
            // might hold a secret, so it is not quoted.
            anyhow!(
                "`{}`{}: invalid TOML: {}",
                source.path.display(),
                source.position(e.span()),
                e.message().trim_end()
            )
        })?;
        if let Some((span, what)) = toml10::toml_1_1_syntax(doc.as_table(), &source.text, &consumed)
        {
            bail!(
                "`{}`{}: {what} is TOML 1.1, which gitlab-runner cannot read: write it as TOML 1.0",
                source.path.display(),
                source.position(Some(span)),
            );
        }
        Ok((source, doc))
    }

    /// ` line L, column C` for a byte span, or nothing.
    pub(super) fn position(&self, span: Option<Range<usize>>) -> String {
        let Some(span) = span else {
            return String::new();
        };
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" line {line}, column {column}")
    }

    pub(super) fn error(
        &self,
        key: &str,
        item: &Item,
        message: impl std::fmt::Display,
    ) -> anyhow::Error {
        anyhow!(self.located(key, item, message))
    }

    /// `` `file` line L, column C: key `k`: message ``, for an error or a warning.
    pub(super) fn located(
        &self,
        key: &str,
        item: &Item,
        message: impl std::fmt::Display,
    ) -> String {
        format!(
            "`{}`{}: key `{key}`: {message}",
            self.path.display(),
            self.position(item.span())
        )
    }

    pub(super) fn string(&self, table: &Table, key: &str) -> Result<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => match item.as_str() {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(self.error(
                    key,
                    item,
                    format!("expected a string, found {}", kind(item)),
                )),
            },
        }
    }

    pub(super) fn non_empty_string(&self, table: &Table, key: &str) -> Result<Option<String>> {
        match self.string(table, key)? {
            Some(s) if s.trim().is_empty() => {
                Err(self.error(key, &table[key], "must not be empty"))
            }
            other => Ok(other),
        }
    }

    pub(super) fn bool(&self, table: &Table, key: &str) -> Result<Option<bool>> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => match item.as_bool() {
                Some(b) => Ok(Some(b)),
                None => Err(self.error(
                    key,
                    item,
                    format!("expected true or false, found {}", kind(item)),
                )),
            },
        }
    }

    pub(super) fn integer(&self, table: &Table, key: &str) -> Result<Option<u64>> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => match item.as_integer() {
                Some(i) if i > 0 => Ok(Some(i as u64)),
                Some(_) => Err(self.error(key, item, "must be a positive integer")),
                None => Err(self.error(
                    key,
                    item,
                    format!("expected an integer, found {}", kind(item)),
                )),
            },
        }
    }

    pub(super) fn strings(&self, table: &Table, key: &str) -> Result<Vec<String>> {
        let Some(item) = table.get(key) else {
            return Ok(Vec::new());
        };
        let Some(array) = item.as_array() else {
            return Err(self.error(
                key,
                item,
                format!("expected an array of strings, found {}", kind(item)),
            ));
        };
        array
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Some(_) => Err(self.error(key, item, "holds an empty string")),
                None => {
                    Err(self.error(key, item, format!("holds {}, not a string", value_kind(v))))
                }
            })
            .collect()
    }
}

pub(super) fn kind(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_kind(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

pub(super) fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}
