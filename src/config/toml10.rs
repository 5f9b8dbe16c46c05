//! TOML 1.0 only. The parser (toml_edit) reads TOML 1.1, but
//! gitlab-runner decodes config.toml with BurntSushi/toml, which reads
//! TOML 1.0; what this tool copies into config.toml must stay readable by
//! it, so every TOML 1.1 construct in an input file is found here (with its
//! position) and refused by [`super::source`].

use std::ops::Range;

use toml_edit::{Item, Key, RawString, Table, Value};

/// The first TOML 1.1 construct in a parsed file, if any. The parser
/// accepts TOML 1.1, but gitlab-runner's (BurntSushi/toml) reads TOML 1.0,
/// and what is copied into config.toml must stay readable by it.
/// Top-level keys for which `skip` is true are not looked at: they are
/// consumed by the tool, never copied.
pub(super) fn toml_1_1_syntax(
    table: &Table,
    text: &str,
    skip: &dyn Fn(&str) -> bool,
) -> Option<(Range<usize>, &'static str)> {
    table
        .iter()
        .filter(|(name, _)| !skip(name))
        .find_map(|(name, item)| toml_1_1_item(table, name, item, text))
}

fn toml_1_1_item(
    table: &Table,
    name: &str,
    item: &Item,
    text: &str,
) -> Option<(Range<usize>, &'static str)> {
    let key = table.key(name).and_then(|k| key_1_1_syntax(k, text));
    key.or_else(|| match item {
        Item::Value(v) => value_1_1_syntax(v, text),
        Item::Table(t) => toml_1_1_syntax(t, text, &|_| false),
        Item::ArrayOfTables(a) => a.iter().find_map(|t| toml_1_1_syntax(t, text, &|_| false)),
        Item::None => None,
    })
}

/// The text of a raw piece of the source (a decor or a key as written).
fn raw_text<'a>(raw: &'a RawString, text: &'a str) -> &'a str {
    raw.as_str()
        .or_else(|| raw.span().and_then(|s| text.get(s)))
        .unwrap_or("")
}

/// A quoted key with a TOML 1.1 escape.
fn key_1_1_syntax(key: &Key, text: &str) -> Option<(Range<usize>, &'static str)> {
    let raw = key.as_repr()?.as_raw();
    let span = raw.span()?;
    escape_1_1_syntax(raw_text(raw, text), span.start)
}

/// A TOML 1.1 escape in a basic string (or quoted key) as written.
fn escape_1_1_syntax(raw: &str, at: usize) -> Option<(Range<usize>, &'static str)> {
    if !raw.starts_with('"') {
        return None;
    }
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\'
            && let Some((_, escape)) = chars.next()
            && matches!(escape, 'e' | 'x')
        {
            let what = if escape == 'e' {
                "the escape `\\e`"
            } else {
                "an escape `\\xHH`"
            };
            return Some((at + i..at + i + 2, what));
        }
    }
    None
}

fn value_1_1_syntax(value: &Value, text: &str) -> Option<(Range<usize>, &'static str)> {
    let span = value.span()?;
    match value {
        Value::String(_) => escape_1_1_syntax(text.get(span.clone())?, span.start),
        Value::Datetime(d) if d.value().time.is_some_and(|t| t.second.is_none()) => {
            Some((span, "a time without seconds"))
        }
        Value::Array(array) => array.iter().find_map(|v| value_1_1_syntax(v, text)),
        Value::InlineTable(t) => {
            if t.trailing_comma() {
                return Some((span, "a trailing comma in an inline table"));
            }
            inline_table_1_1_syntax(t, &span, text)
        }
        _ => None,
    }
}

/// An inline table (or a dotted part of one) in TOML 1.0 has nothing but
/// spaces between its keys, `=`, `,` and values: no newline, no comment.
fn inline_table_1_1_syntax(
    table: &toml_edit::InlineTable,
    span: &Range<usize>,
    text: &str,
) -> Option<(Range<usize>, &'static str)> {
    let several_lines = Some((span.clone(), "an inline table over several lines"));
    if raw_text(table.trailing(), text).contains(['\n', '#']) {
        return several_lines;
    }
    for (name, value) in table.iter() {
        let key = table.key(name)?;
        if let Some(found) = key_1_1_syntax(key, text) {
            return Some(found);
        }
        let decors = [key.leaf_decor(), key.dotted_decor(), value.decor()];
        let gaps = decors
            .iter()
            .flat_map(|d| [d.prefix(), d.suffix()])
            .flatten()
            .map(|raw| raw_text(raw, text));
        if gaps.into_iter().any(|gap| gap.contains(['\n', '#'])) {
            return several_lines;
        }
        let found = match value {
            // `a.b = 1`: a dotted key makes an implicit inline table.
            Value::InlineTable(t) if t.is_dotted() => inline_table_1_1_syntax(t, span, text),
            other => value_1_1_syntax(other, text),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_1_1(text: &str) -> Option<&'static str> {
        let doc = toml_edit::Document::parse(text.to_string()).unwrap();
        toml_1_1_syntax(doc.as_table(), text, &|_| false).map(|(_, what)| what)
    }

    #[test]
    fn toml_1_0_passes() {
        let text = r##"
a = "x\\e \\x41 \u001b"
b = 'C:\e\x'
c = """
\\e"""
t = { a = "#", b = [1,
  2] }
arr = [
  1, # comment
  2,
]
d = 1979-05-27T07:32:00Z
e = 07:32:00
[docker]
sysctls = { "net.ipv4.ip_forward" = "1" }
labels = { com.example.team = "ci", "x#y" = "#", a.b = [1,
  2], c.d = """x
y""" }
"a\\eb" = 'x'
'lit\e' = 1
"##;
        assert_eq!(first_1_1(text), None);
    }

    #[test]
    fn toml_1_1_is_found_at_any_depth() {
        for (text, what) in [
            ("a = \"\\e[0m\"\n", "the escape `\\e`"),
            ("[x]\na = [\"\\x41\"]\n", "an escape `\\xHH`"),
            ("a = 07:32\n", "a time without seconds"),
            ("a = 1979-05-27T07:32Z\n", "a time without seconds"),
            (
                "[[x]]\na = { b = 1, }\n",
                "a trailing comma in an inline table",
            ),
            (
                "a = { b = 1,\n c = 2 }\n",
                "an inline table over several lines",
            ),
            (
                "a = { b = { c = 1 # no\n } }\n",
                "an inline table over several lines",
            ),
            ("a = {\n}\n", "an inline table over several lines"),
            (
                "a = { b.c = 1,\n d = 2 }\n",
                "an inline table over several lines",
            ),
            ("a = { b.c = \"\\e\" }\n", "the escape `\\e`"),
            ("a = { b.c = 07:32 }\n", "a time without seconds"),
            (
                "a = { b.c = { d = 1, } }\n",
                "a trailing comma in an inline table",
            ),
            ("\"a\\eb\" = 1\n", "the escape `\\e`"),
            ("[\"a\\x41\"]\nb = 1\n", "an escape `\\xHH`"),
            ("[[\"a\\x41\"]]\nb = 1\n", "an escape `\\xHH`"),
            ("t = { \"a\\x41\" = 1 }\n", "an escape `\\xHH`"),
            ("t.\"a\\x41\" = 1\n", "an escape `\\xHH`"),
        ] {
            assert_eq!(first_1_1(text), Some(what), "{text}");
        }
    }
}
