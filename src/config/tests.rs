//! Loading as a whole: a valid host layout loads, and whatever the bytes
//! of any one input file, loading fails cleanly, naming that file and no
//! secret.

use super::keys::{GENERATED_KEYS, tool_keys};
use super::template::CLIENT_KEYS;
use super::*;
use proptest::prelude::*;
use std::os::unix::fs::PermissionsExt;

const PAT: &str = "glpat-proptest-secret-0123456789";
const REGISTRATION_TOKEN: &str = "GR1348941proptestsecret0123";

fn template_text() -> String {
    format!(
        "# Global settings\nconcurrent = 4\ncheck_interval = 3\n\n\
         [session_server]\n  listen_address = \"[::]:8093\"\n\n\
         [[client_configs]]\nurl = \"https://gitlab.example.com/\"\n\
         personal_access_token = \"{PAT}\"\nrunner_type = \"group_type\"\ngroup_id = 10\n\n\
         [[client_configs]]\nurl = \"https://other.example.com\"\n\
         registration_token = \"{REGISTRATION_TOKEN}\"\n"
    )
}

const EXECUTOR: &str = "url = \"https://gitlab.example.com\"\nexecutor = \"docker\"\n\
    name = \"prop runner\"\nenv_tags = [\"SITE\"]\ntags = [\"fast\", \"big\"]\n\
    run_untagged = false\nlocked = true\naccess_level = \"ref_protected\"\n\
    maximum_timeout = 3600\nmaintenance_note = \"note\"\nlimit = 2\n\n\
    [docker]\nimage = \"alpine:3\"\nvolumes = [\"/cache\"]\n";

const OTHER_EXECUTOR: &str = "url = \"https://other.example.com\"\nexecutor = \"shell\"\n";

const LAST_OUTPUT: &str = "concurrent = 4\n\n[[runners]]\nname = \"prop runner\"\n\
    url = \"https://gitlab.example.com\"\nid = 7\ntoken = \"glrt-proptestrunnertoken01\"\n\
    token_obtained_at = 2026-01-01T00:00:00Z\ntoken_expires_at = 0001-01-01T00:00:00Z\n\
    executor = \"docker\"\n";

/// A host laid out validly in a temp dir.
struct Layout {
    _dir: tempfile::TempDir,
    env: LoadEnv,
    template: PathBuf,
    executor: PathBuf,
    output: PathBuf,
}

fn layout() -> Layout {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let instance_dir = prefix.join("main");
    fs::create_dir_all(&instance_dir).unwrap();
    for d in [&prefix, &instance_dir] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
    }
    let template = template_path(&prefix, "main");
    let executor = instance_dir.join("10-docker.toml");
    let output = output_path(&prefix, "main");
    fs::write(&template, template_text()).unwrap();
    fs::write(&executor, EXECUTOR).unwrap();
    fs::write(instance_dir.join("20-shell.toml"), OTHER_EXECUTOR).unwrap();
    fs::write(&output, LAST_OUTPUT).unwrap();
    Layout {
        env: LoadEnv {
            prefix,
            instance: "main".into(),
            hostname: "ci-node01".into(),
            credentials_directory: None,
            allow_missing_executor_dir: false,
            template: None,
            executor_dir: None,
        },
        _dir: dir,
        template,
        executor,
        output,
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Template,
    Executor,
    LastOutput,
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    /// A raw byte: may make the file invalid UTF-8.
    InsertByte(usize, u8),
    /// Gives the n-th `key = value` line another value.
    Value(usize, &'static str),
    /// Gives the n-th `key = value` line another key.
    Key(usize, &'static str),
    /// Removes the n-th line.
    DropLine(usize),
}

/// Well-formed values of every TOML type, and some that break the rules
/// of a particular key, so that mutations reach the validation too.
const VALUES: &[&str] = &[
    "5",
    "-1",
    "0",
    "3.5",
    "true",
    "\"yes\"",
    "\"\"",
    "\"  \"",
    "[]",
    "[1, \"a\"]",
    "[\"a,b\"]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "\"1h\"",
    "\"ftp://x\"",
    "\"https://user:pw@gitlab.example.com\"",
    "\"https://gitlab.example.com\"",
    "\"https://other.example.com/\"",
    "\"group_type\"",
    "\"project_type\"",
    "\"instance_type\"",
    "\"everyone\"",
    "\"not_protected\"",
    "30",
    "600",
    "\"/dev/null\"",
    "\"/nonexistent\"",
    "\"glrt-proptesttoken\"",
    "\"shell\"",
];

/// Keys the loader knows, in either file, and some it refuses.
fn keys() -> Vec<&'static str> {
    let tool_keys: Vec<&'static str> = tool_keys().collect();
    [
        &tool_keys,
        GENERATED_KEYS,
        CLIENT_KEYS,
        &["client_configs", "runners", "bogus"],
    ]
    .concat()
}

#[derive(Debug, Clone)]
enum Content {
    Mutated(Vec<Edit>),
    Arbitrary(String),
    Bytes(Vec<u8>),
}

/// Characters that matter to TOML, so that mutations reach the parser's
/// corners and the validation behind it more often than random ones.
const TOML_CHARS: &[char] = &[
    '"', '\'', '[', ']', '{', '}', '=', '.', ',', '#', '\n', '\\', ' ', '\t', '\r', 't', 'f', '0',
    '9', '-', '+', ':', '_', 'e', 'x', 'é', '\u{0}', '\u{7f}', '\u{feff}',
];

fn char_strategy() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => proptest::sample::select(TOML_CHARS),
        1 => any::<char>(),
    ]
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), char_strategy()).prop_map(|(i, c)| Edit::Insert(i, c)),
        3 => any::<usize>().prop_map(Edit::Delete),
        3 => (any::<usize>(), char_strategy()).prop_map(|(i, c)| Edit::Replace(i, c)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::InsertByte(i, b)),
        4 => (any::<usize>(), proptest::sample::select(VALUES))
            .prop_map(|(i, v)| Edit::Value(i, v)),
        2 => (any::<usize>(), proptest::sample::select(keys()))
            .prop_map(|(i, k)| Edit::Key(i, k)),
        2 => any::<usize>().prop_map(Edit::DropLine),
    ]
}

fn content_strategy() -> impl Strategy<Value = Content> {
    prop_oneof![
        6 => proptest::collection::vec(edit_strategy(), 1..8).prop_map(Content::Mutated),
        1 => any::<String>().prop_map(Content::Arbitrary),
        1 => "[\\[\\]a-z_=\"'{}., \n0-9#-]{0,80}".prop_map(Content::Arbitrary),
        1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Content::Bytes),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> Vec<u8> {
    // Line edits first, on the well-formed text, then character edits.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for edit in edits {
        let assignments: Vec<usize> = (0..lines.len())
            .filter(|i| lines[*i].contains('='))
            .collect();
        match *edit {
            Edit::Value(n, value) if !assignments.is_empty() => {
                let line = &mut lines[assignments[n % assignments.len()]];
                let key = line.split('=').next().unwrap_or_default().to_string();
                *line = format!("{key}= {value}");
            }
            Edit::Key(n, key) if !assignments.is_empty() => {
                let line = &mut lines[assignments[n % assignments.len()]];
                let value = line.split_once('=').map_or("", |(_, v)| v).to_string();
                *line = format!("{key} ={value}");
            }
            Edit::DropLine(n) if !lines.is_empty() => {
                let n = n % lines.len();
                lines.remove(n);
            }
            _ => {}
        }
    }
    let text = lines.join("\n") + "\n";
    let mut chars: Vec<char> = text.chars().collect();
    let mut bytes_to_insert = Vec::new();
    for edit in edits {
        match *edit {
            Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
            Edit::Delete(i) if !chars.is_empty() => {
                let i = i % chars.len();
                chars.remove(i);
            }
            Edit::Replace(i, c) if !chars.is_empty() => {
                let i = i % chars.len();
                chars[i] = c;
            }
            Edit::InsertByte(i, b) => bytes_to_insert.push((i, b)),
            Edit::Delete(_)
            | Edit::Replace(..)
            | Edit::Value(..)
            | Edit::Key(..)
            | Edit::DropLine(_) => {}
        }
    }
    let mut bytes = chars.into_iter().collect::<String>().into_bytes();
    for (i, b) in bytes_to_insert {
        bytes.insert(i % (bytes.len() + 1), b);
    }
    bytes
}

#[test]
fn the_base_layout_is_valid() {
    let layout = layout();
    let inputs = load(&layout.env).unwrap();
    assert_eq!(inputs.executors.len(), 2);
    assert_eq!(inputs.template.clients.len(), 2);
}

#[test]
fn staged_template_and_executor_dir_are_read_instead_of_the_prefixs() {
    let mut layout = layout();
    let staging = tempfile::tempdir().unwrap();
    let staged = staging.path().join("main");
    fs::create_dir(&staged).unwrap();
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(staged.join("50-shell.toml"), OTHER_EXECUTOR).unwrap();
    let template = staging.path().join("proposed.toml");
    fs::write(
        &template,
        template_text().replace("concurrent = 4", "concurrent = 9"),
    )
    .unwrap();
    layout.env.executor_dir = Some(staged.clone());
    layout.env.template = Some(template.clone());

    let inputs = load(&layout.env).unwrap();
    assert_eq!(inputs.template.path, template);
    assert_eq!(inputs.template.globals["concurrent"].as_integer(), Some(9));
    let files: Vec<_> = inputs.executors.iter().map(|e| e.file.clone()).collect();
    assert_eq!(files, vec![staged.join("50-shell.toml")]);

    // The staged directory is checked as the prefix's would be.
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o750)).unwrap();
    let err = format!("{:#}", load(&layout.env).unwrap_err());
    assert!(
        err.contains(&staged.display().to_string()) && err.contains("0750"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the bytes of the template, an executor file or the last
    /// output, loading returns Ok or an Err that names that file, never
    /// panics, and never quotes a secret.
    #[test]
    fn load_never_panics_and_names_the_file(
        target in prop_oneof![
            Just(Target::Template),
            Just(Target::Executor),
            Just(Target::LastOutput),
        ],
        content in content_strategy(),
    ) {
        let layout = layout();
        let (path, base) = match target {
            Target::Template => (&layout.template, template_text()),
            Target::Executor => (&layout.executor, EXECUTOR.to_string()),
            Target::LastOutput => (&layout.output, LAST_OUTPUT.to_string()),
        };
        let bytes = match &content {
            Content::Mutated(edits) => mutate(&base, edits),
            Content::Arbitrary(text) => text.clone().into_bytes(),
            Content::Bytes(bytes) => bytes.clone(),
        };
        fs::write(path, &bytes).unwrap();
        // What step 1 of a run reads: the inputs and the last output.
        let checked = load(&layout.env).and_then(|_| crate::store::check(&layout.output));
        if let Err(e) = checked {
            let message = format!("{e:#}");
            let file = path.display().to_string();
            prop_assert!(
                message.contains(&file),
                "the error does not name `{}`: {}\n--- file:\n{}",
                file,
                message,
                String::from_utf8_lossy(&bytes)
            );
            for secret in [PAT, REGISTRATION_TOKEN, "glrt-proptestrunnertoken01"] {
                prop_assert!(
                    !message.contains(secret),
                    "a secret in the error: {}",
                    message
                );
            }
        }
    }
}
