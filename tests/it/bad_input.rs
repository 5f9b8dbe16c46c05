//! Bad input (SPEC §2, §5): every malformed input gets one clear message
//! naming the file (and the key or line, or the option), exit 1, no panic,
//! nothing sent to GitLab, nothing written under the prefix, no secret in
//! any output.
//!
//! One named test case per malformed input (an rstest `#[case]` holding a
//! row). Each row starts from a valid host (usually after a first good run,
//! so that `config.main.toml` and `.runner_system_id` exist and can be
//! checked for not being overwritten), breaks one thing and runs the real
//! binary; all of a row's problems are reported together.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gitlab_sim::{ADMIN_PAT, Sim};
use rstest::rstest;

use crate::support::*;

/// Breaks a valid host; returns extra command-line arguments.
type Setup = fn(&mut Host, &Sim) -> Vec<String>;

struct Row {
    name: &'static str,
    /// Make a first good run before breaking the host.
    first_run: bool,
    setup: Setup,
    /// Substrings the error output must contain: the file, the key or line.
    expect: &'static [&'static str],
    /// Fails only for users without write access: root writes anyway.
    not_for_root: bool,
}

const fn row(name: &'static str, setup: Setup, expect: &'static [&'static str]) -> Row {
    Row {
        name,
        first_run: true,
        setup,
        expect,
        not_for_root: false,
    }
}

const fn fresh(name: &'static str, setup: Setup, expect: &'static [&'static str]) -> Row {
    Row {
        first_run: false,
        ..row(name, setup, expect)
    }
}

fn no_args() -> Vec<String> {
    Vec::new()
}

/// A template with global settings and one client config whose body is
/// `client` (written after `[[client_configs]]` and its `url`).
fn template(host: &Host, sim: &Sim, client: &str) {
    host.write_template(&format!(
        "concurrent = 4\n\n[[client_configs]]\nurl = \"{}\"\n{client}",
        sim.url()
    ));
}

fn shell(host: &Host, sim: &Sim, extra: &str) {
    host.write_executor(
        "10-shell.toml",
        &format!("url = \"{}\"\nexecutor = \"shell\"\n{extra}", sim.url()),
    );
}

fn scratch(host: &Host, name: &str) -> PathBuf {
    host.dir.path().join(name)
}

fn write_script(host: &Host, name: &str, body: &str) -> String {
    let path = scratch(host, name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn write_schema(host: &Host, text: &str) -> Vec<String> {
    let path = scratch(host, "schema.json");
    fs::write(&path, text).unwrap();
    vec!["--tag-schema".into(), path.display().to_string()]
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Moves the host to another instance, laid out validly, so that the
/// instance name is the only thing wrong.
fn switch_instance(host: &mut Host, sim: &Sim, instance: &str) {
    host.instance = instance.into();
    fs::create_dir(host.executor_dir()).unwrap();
    chmod(&host.executor_dir(), 0o700);
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.three_executors(&sim.url());
}

/// One test per malformed input (`bad_input::every_bad_input_fails_cleanly::case_N_<name>`).
#[rstest]
// ---- the template
#[case::template_toml_syntax_error(
    row(
        "template: TOML syntax error",
        |h, s| {
            h.write_template(&format!(
                "concurrent = 4\ncheck_interval = \n\n[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n",
                s.url()
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 2, column",
            "invalid TOML",
        ],
    )
)]
#[case::template_syntax_error_on_the_line_holding_the_pat_unterminated_string(
    row(
        "template: syntax error on the line holding the PAT (unterminated string)",
        |h, s| {
            template(h, s, &format!("personal_access_token = \"{ADMIN_PAT}\n"));
            no_args()
        },
        &["config.template.main.toml", "line 5", "invalid TOML"],
    )
)]
#[case::template_syntax_error_on_the_line_holding_the_pat_unquoted(
    row(
        "template: syntax error on the line holding the PAT (unquoted)",
        |h, s| {
            template(h, s, &format!("personal_access_token = {ADMIN_PAT}\n"));
            no_args()
        },
        &["config.template.main.toml", "line 5", "invalid TOML"],
    )
)]
#[case::template_missing(
    row(
        "template: missing",
        |h, _| {
            fs::remove_file(h.template_path()).unwrap();
            no_args()
        },
        &["config.template.main.toml", "does not exist"],
    )
)]
#[case::template_runners_table(
    row(
        "template: [[runners]] table",
        |h, s| {
            h.template_with_pat(&s.url(), ADMIN_PAT);
            let text = fs::read_to_string(h.template_path()).unwrap();
            h.write_template(&format!("{text}\n[[runners]]\nname = \"x\"\n"));
            no_args()
        },
        &["config.template.main.toml", "`runners`", "[[runners]]"],
    )
)]
#[case::template_client_configs_missing(
    row(
        "template: client_configs missing",
        |h, _| {
            h.write_template("concurrent = 4\n");
            no_args()
        },
        &["config.template.main.toml", "client_configs"],
    )
)]
#[case::template_client_configs_is_a_string(
    row(
        "template: client_configs is a string",
        |h, s| {
            h.write_template(&format!(
                "concurrent = 4\nclient_configs = \"{}\"\n",
                s.url()
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 2",
            "`client_configs`",
            "array of tables",
        ],
    )
)]
#[case::template_client_configs_is_an_array_of_strings(
    row(
        "template: client_configs is an array of strings",
        |h, s| {
            h.write_template(&format!(
                "concurrent = 4\nclient_configs = [\"{}\"]\n",
                s.url()
            ));
            no_args()
        },
        &["config.template.main.toml", "`client_configs`", "tables"],
    )
)]
#[case::template_client_configs_is_a_single_table(
    row(
        "template: client_configs is a single table",
        |h, s| {
            h.write_template(&format!(
                "concurrent = 4\n[client_configs]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n",
                s.url()
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "`client_configs`",
            "array of tables",
        ],
    )
)]
#[case::template_client_configs_is_empty(
    row(
        "template: client_configs is empty",
        |h, _| {
            h.write_template("concurrent = 4\nclient_configs = []\n");
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 2",
            "`client_configs`",
            "is empty",
        ],
    )
)]
#[case::client_config_no_url(
    row(
        "client config: no url",
        |h, _| {
            h.write_template(&format!(
                "concurrent = 4\n[[client_configs]]\npersonal_access_token = \"{ADMIN_PAT}\"\n"
            ));
            no_args()
        },
        &["config.template.main.toml", "line 2", "`url`"],
    )
)]
#[case::client_config_unknown_key_a_misspelt_pat_key(
    row(
        "client config: unknown key (a misspelt PAT key)",
        |h, s| {
            template(h, s, &format!("personal_acces_token = \"{ADMIN_PAT}\"\n"));
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 5",
            "client_configs.personal_acces_token",
            "unknown key",
        ],
    )
)]
#[case::client_config_url_is_not_a_url(
    row(
        "client config: url is not a URL",
        |h, _| {
            h.write_template(&format!(
                "[[client_configs]]\nurl = \"gitlab.example.com\"\npersonal_access_token = \"{ADMIN_PAT}\"\n"
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 2",
            "key `url`",
            "`gitlab.example.com` is not a URL",
        ],
    )
)]
#[case::client_config_url_holds_the_pat_as_a_password(
    row(
        "client config: url holds the PAT as a password",
        |h, s| {
            let url = s
                .url()
                .replace("http://", &format!("http://oauth2:{ADMIN_PAT}@"));
            h.write_template(&format!(
                "[[client_configs]]\nurl = \"{url}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n"
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 2",
            "key `url`",
            "no user",
        ],
    )
)]
#[case::client_config_url_is_the_pat_itself_keys_swapped(
    row(
        "client config: url is the PAT itself (keys swapped)",
        |h, s| {
            h.write_template(&format!(
                "[[client_configs]]\nurl = \"{ADMIN_PAT}\"\npersonal_access_token = \"{}\"\n",
                s.url()
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 2",
            "key `url`",
            "not a URL",
        ],
    )
)]
#[case::client_config_url_is_not_http_s(
    row(
        "client config: url is not http(s)",
        |h, _| {
            h.write_template(&format!(
                "[[client_configs]]\nurl = \"ftp://gitlab.example.com\"\npersonal_access_token = \"{ADMIN_PAT}\"\n"
            ));
            no_args()
        },
        &["config.template.main.toml", "key `url`", "https://"],
    )
)]
#[case::client_config_two_entries_with_one_url(
    row(
        "client config: two entries with one url",
        |h, s| {
            h.write_template(&format!(
                "[[client_configs]]\nurl = \"{0}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n\
                 [[client_configs]]\nurl = \"{0}/\"\npersonal_access_token = \"{ADMIN_PAT}\"\n",
                s.url()
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 5",
            "key `url`",
            "two client_configs entries",
        ],
    )
)]
#[case::client_config_personal_access_token_and_personal_access_token_file(
    row(
        "client config: personal_access_token and personal_access_token_file",
        |h, s| {
            fs::write(h.prefix.join("pat"), ADMIN_PAT).unwrap();
            template(
                h,
                s,
                &format!(
                    "personal_access_token = \"{ADMIN_PAT}\"\npersonal_access_token_file = \"pat\"\n"
                ),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 6",
            "personal_access_token_file",
            "not both",
        ],
    )
)]
#[case::client_config_personal_access_token_file_missing(
    row(
        "client config: personal_access_token_file missing",
        |h, s| {
            template(h, s, "personal_access_token_file = \"missing-pat\"\n");
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 5",
            "personal_access_token_file",
            "missing-pat",
        ],
    )
)]
#[case::client_config_personal_access_token_file_empty(
    row(
        "client config: personal_access_token_file empty",
        |h, s| {
            fs::write(h.prefix.join("pat"), "  \n").unwrap();
            template(h, s, "personal_access_token_file = \"pat\"\n");
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 5",
            "personal_access_token_file",
            "is empty",
        ],
    )
)]
#[case::client_config_personal_access_token_file_is_a_directory(
    row(
        "client config: personal_access_token_file is a directory",
        |h, s| {
            fs::create_dir(h.prefix.join("pat.d")).unwrap();
            template(h, s, "personal_access_token_file = \"pat.d\"\n");
            no_args()
        },
        &[
            "config.template.main.toml",
            "personal_access_token_file",
            "pat.d",
        ],
    )
)]
#[case::client_config_personal_access_token_file_is_an_endless_device(
    row(
        "client config: personal_access_token_file is an endless device",
        |h, s| {
            template(h, s, "personal_access_token_file = \"/dev/zero\"\n");
            no_args()
        },
        &[
            "config.template.main.toml",
            "personal_access_token_file",
            "/dev/zero",
            "not a regular file",
        ],
    )
)]
#[case::client_config_personal_access_token_file_holds_the_pat_itself(
    row(
        "client config: personal_access_token_file holds the PAT itself",
        |h, s| {
            template(
                h,
                s,
                &format!("personal_access_token_file = \"{ADMIN_PAT}\"\n"),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 5",
            "key `personal_access_token_file`",
        ],
    )
)]
#[case::client_config_runner_type_holds_the_pat_keys_mixed_up(
    row(
        "client config: runner_type holds the PAT (keys mixed up)",
        |h, s| {
            template(h, s, &format!("runner_type = \"{ADMIN_PAT}\"\n"));
            no_args()
        },
        &["config.template.main.toml", "line 5", "key `runner_type`"],
    )
)]
#[case::client_config_registration_token_is_a_number(
    row(
        "client config: registration_token is a number",
        |h, s| {
            template(h, s, "registration_token = 12345678\n");
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 5",
            "`registration_token`",
            "expected a string",
        ],
    )
)]
#[case::client_config_neither_pat_nor_registration_token(
    row(
        "client config: neither PAT nor registration token",
        |h, s| {
            template(h, s, "");
            no_args()
        },
        &[
            "config.template.main.toml",
            "personal_access_token",
            "registration_token",
        ],
    )
)]
#[case::client_config_bad_runner_type(
    row(
        "client config: bad runner_type",
        |h, s| {
            template(
                h,
                s,
                &format!("personal_access_token = \"{ADMIN_PAT}\"\nrunner_type = \"shared\"\n"),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 6",
            "`runner_type`",
            "shared",
        ],
    )
)]
#[case::client_config_group_type_without_group_id(
    row(
        "client config: group_type without group_id",
        |h, s| {
            template(
                h,
                s,
                &format!(
                    "personal_access_token = \"{ADMIN_PAT}\"\nrunner_type = \"group_type\"\n"
                ),
            );
            no_args()
        },
        &["config.template.main.toml", "`runner_type`", "group_id"],
    )
)]
#[case::client_config_group_id_with_instance_type(
    row(
        "client config: group_id with instance_type",
        |h, s| {
            template(
                h,
                s,
                &format!(
                    "personal_access_token = \"{ADMIN_PAT}\"\nrunner_type = \"instance_type\"\ngroup_id = 10\n"
                ),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 7",
            "`group_id`",
            "group_type",
        ],
    )
)]
#[case::client_config_project_id_not_positive(
    row(
        "client config: project_id not positive",
        |h, s| {
            template(
                h,
                s,
                &format!(
                    "personal_access_token = \"{ADMIN_PAT}\"\nrunner_type = \"project_type\"\nproject_id = -3\n"
                ),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "`project_id`",
            "positive integer",
        ],
    )
)]
#[case::client_config_tls_ca_file_is_not_pem(
    row(
        "client config: tls_ca_file is not PEM",
        |h, s| {
            fs::write(h.prefix.join("ca.pem"), "this is not a certificate\n").unwrap();
            template(
                h,
                s,
                &format!("personal_access_token = \"{ADMIN_PAT}\"\ntls_ca_file = \"ca.pem\"\n"),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "`tls_ca_file`",
            "ca.pem",
            "PEM",
        ],
    )
)]
#[case::client_config_tls_ca_file_holds_a_broken_certificate(
    row(
        "client config: tls_ca_file holds a broken certificate",
        |h, s| {
            fs::write(
                h.prefix.join("ca.pem"),
                "-----BEGIN CERTIFICATE-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
            )
            .unwrap();
            template(
                h,
                s,
                &format!("personal_access_token = \"{ADMIN_PAT}\"\ntls_ca_file = \"ca.pem\"\n"),
            );
            no_args()
        },
        &["config.template.main.toml", "`tls_ca_file`", "ca.pem"],
    )
)]
#[case::client_config_tls_ca_file_missing(
    row(
        "client config: tls_ca_file missing",
        |h, s| {
            template(
                h,
                s,
                &format!(
                    "personal_access_token = \"{ADMIN_PAT}\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n"
                ),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "`tls_ca_file`",
            "line 6",
            "/nonexistent/ca.pem",
        ],
    )
)]
// ---- executor files
#[case::executor_toml_syntax_error(
    row(
        "executor: TOML syntax error",
        |h, s| {
            h.write_executor(
                "20-docker.toml",
                &format!(
                    "url = \"{}\"\nexecutor = \"docker\"\n[docker\nimage = \"alpine\"\n",
                    s.url()
                ),
            );
            no_args()
        },
        &["20-docker.toml", "line 3, column", "invalid TOML"],
    )
)]
#[case::executor_syntax_error_on_the_line_holding_its_own_token(
    row(
        "executor: syntax error on the line holding its own token",
        |h, s| {
            let token = s.runners()[0].token.clone();
            shell(h, s, &format!("token = \"{token}\n"));
            no_args()
        },
        &["10-shell.toml", "line 3", "invalid TOML"],
    )
)]
#[case::executor_url_5(
    row(
        "executor: url = 5",
        |h, _| {
            h.write_executor("10-shell.toml", "url = 5\nexecutor = \"shell\"\n");
            no_args()
        },
        &["10-shell.toml", "line 1", "key `url`", "expected a string"],
    )
)]
#[case::executor_tags_x(
    row(
        "executor: tags = \"x\"",
        |h, s| {
            shell(h, s, "tags = \"x\"\n");
            no_args()
        },
        &["10-shell.toml", "line 3", "key `tags`", "array of strings"],
    )
)]
#[case::executor_tags_hold_a_number(
    row(
        "executor: tags hold a number",
        |h, s| {
            shell(h, s, "tags = [\"a\", 7]\n");
            no_args()
        },
        &["10-shell.toml", "key `tags`", "integer"],
    )
)]
#[case::executor_a_tag_with_a_comma(
    row(
        "executor: a tag with a comma",
        |h, s| {
            shell(h, s, "tags = [\"a,b\"]\n");
            no_args()
        },
        &["10-shell.toml", "a,b", "comma"],
    )
)]
#[case::executor_env_tags_is_a_string(
    row(
        "executor: env_tags is a string",
        |h, s| {
            shell(h, s, "env_tags = \"SITE_TAG\"\n");
            no_args()
        },
        &["10-shell.toml", "key `env_tags`", "array of strings"],
    )
)]
#[case::executor_locked_yes(
    row(
        "executor: locked = \"yes\"",
        |h, s| {
            shell(h, s, "locked = \"yes\"\n");
            no_args()
        },
        &["10-shell.toml", "line 3", "key `locked`", "true or false"],
    )
)]
#[case::executor_maximum_timeout_1h(
    row(
        "executor: maximum_timeout = \"1h\"",
        |h, s| {
            shell(h, s, "maximum_timeout = \"1h\"\n");
            no_args()
        },
        &[
            "10-shell.toml",
            "key `maximum_timeout`",
            "expected an integer",
        ],
    )
)]
#[case::executor_maximum_timeout_30(
    row(
        "executor: maximum_timeout = 30",
        |h, s| {
            shell(h, s, "maximum_timeout = 30\n");
            no_args()
        },
        &["10-shell.toml", "key `maximum_timeout`", "600"],
    )
)]
#[case::executor_access_level_everyone(
    row(
        "executor: access_level = \"everyone\"",
        |h, s| {
            shell(h, s, "access_level = \"everyone\"\n");
            no_args()
        },
        &["10-shell.toml", "key `access_level`", "everyone"],
    )
)]
#[case::executor_url_missing(
    row(
        "executor: url missing",
        |h, _| {
            h.write_executor("10-shell.toml", "executor = \"shell\"\n");
            no_args()
        },
        &["10-shell.toml", "`url`"],
    )
)]
#[case::executor_executor_missing(
    row(
        "executor: executor missing",
        |h, s| {
            h.write_executor("10-shell.toml", &format!("url = \"{}\"\n", s.url()));
            no_args()
        },
        &["10-shell.toml", "`executor`"],
    )
)]
#[case::executor_executor_is_empty(
    row(
        "executor: executor is empty",
        |h, s| {
            h.write_executor(
                "10-shell.toml",
                &format!("url = \"{}\"\nexecutor = \" \"\n", s.url()),
            );
            no_args()
        },
        &["10-shell.toml", "key `executor`", "empty"],
    )
)]
#[case::executor_url_matches_no_client_config(
    row(
        "executor: url matches no client config",
        |h, _| {
            h.write_executor(
                "10-shell.toml",
                "url = \"https://other.example.com\"\nexecutor = \"shell\"\n",
            );
            no_args()
        },
        &[
            "10-shell.toml",
            "key `url`",
            "config.template.main.toml",
            "other.example.com",
        ],
    )
)]
#[case::executor_url_with_credentials_matches_no_client_config(
    row(
        "executor: url with credentials matches no client config",
        |h, s| {
            let url = s
                .url()
                .replace("http://", &format!("http://u:{ADMIN_PAT}@"));
            h.write_executor(
                "10-shell.toml",
                &format!("url = \"{url}\"\nexecutor = \"shell\"\n"),
            );
            no_args()
        },
        &["10-shell.toml", "key `url`"],
    )
)]
#[case::executor_id(
    row(
        "executor: id =",
        |h, s| {
            shell(h, s, "id = 5\n");
            no_args()
        },
        &["10-shell.toml", "line 3", "key `id`"],
    )
)]
#[case::executor_description(
    row(
        "executor: description =",
        |h, s| {
            shell(h, s, "description = \"my runner\"\n");
            no_args()
        },
        &["10-shell.toml", "key `description`", "`name`"],
    )
)]
#[case::executor_token_expires_at(
    row(
        "executor: token_expires_at =",
        |h, s| {
            shell(h, s, "token_expires_at = 2030-01-01T00:00:00Z\n");
            no_args()
        },
        &["10-shell.toml", "key `token_expires_at`"],
    )
)]
#[case::executor_own_token_and_locked_true(
    row(
        "executor: own token and locked = true",
        |h, s| {
            let token = s.runners()[0].token.clone();
            shell(h, s, &format!("token = \"{token}\"\nlocked = true\n"));
            no_args()
        },
        &["10-shell.toml", "line 4", "key `locked`", "GitLab's UI"],
    )
)]
#[case::executor_name_longer_than_gitlab_allows(
    row(
        "executor: name longer than GitLab allows",
        |h, s| {
            shell(h, s, &format!("name = \"{}\"\n", "n".repeat(1100)));
            no_args()
        },
        &["10-shell.toml", "key `name`", "1024"],
    )
)]
#[case::executors_one_name_in_two_files(
    row(
        "executors: one name in two files",
        |h, s| {
            shell(h, s, "name = \"twin\"\n");
            h.write_executor(
                "20-docker.toml",
                &format!(
                    "url = \"{}\"\nexecutor = \"docker\"\nname = \"twin\"\n",
                    s.url()
                ),
            );
            no_args()
        },
        &["10-shell.toml", "20-docker.toml", "twin"],
    )
)]
#[case::executors_two_of_one_type_without_names_same_default_name(
    row(
        "executors: two of one type without names (same default name)",
        |h, s| {
            h.write_executor(
                "15-shell.toml",
                &format!("url = \"{}\"\nexecutor = \"shell\"\n", s.url()),
            );
            no_args()
        },
        &["10-shell.toml", "15-shell.toml", "`name`"],
    )
)]
#[case::executor_not_utf_8(
    row(
        "executor: not UTF-8",
        |h, s| {
            let mut bytes =
                format!("url = \"{}\"\nexecutor = \"shell\"\n# ", s.url()).into_bytes();
            bytes.extend_from_slice(b"\xff\xfe caf\xe9\n");
            fs::write(h.executor_dir().join("10-shell.toml"), bytes).unwrap();
            no_args()
        },
        &["10-shell.toml", "UTF-8"],
    )
)]
#[case::executor_huge_file_1_mib(
    row(
        "executor: huge file (> 1 MiB)",
        |h, s| {
            let mut text = format!("url = \"{}\"\nexecutor = \"shell\"\n", s.url());
            text.push_str(
                &"# padding padding padding padding padding padding\n".repeat(22_000),
            );
            h.write_executor("10-shell.toml", &text);
            no_args()
        },
        &["10-shell.toml", "bytes"],
    )
)]
#[case::executor_symbolic_link_to_a_file_elsewhere(
    row(
        "executor: symbolic link to a file elsewhere",
        |h, s| {
            let elsewhere = scratch(h, "elsewhere.toml");
            fs::write(
                &elsewhere,
                format!("url = \"{}\"\nexecutor = \"shell\"\n", s.url()),
            )
            .unwrap();
            h.remove_executor("10-shell.toml");
            symlink(&elsewhere, h.executor_dir().join("10-shell.toml")).unwrap();
            no_args()
        },
        &["10-shell.toml", "symbolic link", "elsewhere.toml"],
    )
)]
#[case::template_symbolic_link_to_a_file_elsewhere(
    row(
        "template: symbolic link to a file elsewhere",
        |h, _| {
            let elsewhere = scratch(h, "template-elsewhere.toml");
            fs::copy(h.template_path(), &elsewhere).unwrap();
            fs::remove_file(h.template_path()).unwrap();
            symlink(&elsewhere, h.template_path()).unwrap();
            no_args()
        },
        &[
            "config.template.main.toml",
            "symbolic link",
            "template-elsewhere.toml",
        ],
    )
)]
#[case::last_output_symbolic_link_to_a_file_elsewhere(
    row(
        "last output: symbolic link to a file elsewhere",
        |h, _| {
            let elsewhere = scratch(h, "config-elsewhere.toml");
            fs::copy(h.config_path(), &elsewhere).unwrap();
            fs::remove_file(h.config_path()).unwrap();
            symlink(&elsewhere, h.config_path()).unwrap();
            no_args()
        },
        &["config.main.toml", "symbolic link", "config-elsewhere.toml"],
    )
)]
#[case::executor_a_directory_named_like_an_executor_file(
    row(
        "executor: a directory named like an executor file",
        |h, _| {
            fs::create_dir(h.executor_dir().join("40-dir.toml")).unwrap();
            no_args()
        },
        &["40-dir.toml", "not a regular file"],
    )
)]
// ---- directories and files under the prefix
#[case::prefix_mode_0755(
    row(
        "prefix: mode 0755",
        |h, _| {
            chmod(&h.prefix, 0o755);
            no_args()
        },
        &["gitlab-runner` has mode 0755", "chmod 0700"],
    )
)]
#[case::executor_directory_mode_0770(
    row(
        "executor directory: mode 0770",
        |h, _| {
            chmod(&h.executor_dir(), 0o770);
            no_args()
        },
        &["gitlab-runner/main` has mode 0770"],
    )
)]
#[case::executor_directory_missing(
    row(
        "executor directory: missing",
        |h, _| {
            fs::remove_dir_all(h.executor_dir()).unwrap();
            no_args()
        },
        &["executor directory", "gitlab-runner/main`"],
    )
)]
#[case::executor_directory_a_file(
    row(
        "executor directory: a file",
        |h, _| {
            fs::remove_dir_all(h.executor_dir()).unwrap();
            fs::write(h.executor_dir(), "").unwrap();
            no_args()
        },
        &["executor directory", "gitlab-runner/main`"],
    )
)]
#[case::prefix_not_writable_0500(
    Row {
        not_for_root: true,
        ..row(
            "prefix: not writable (0500)",
            |h, _| {
                chmod(&h.prefix, 0o500);
                no_args()
            },
            &["gitlab-runner`", "write"],
        )
    }
)]
#[case::runner_system_id_unreadable_a_directory(
    row(
        ".runner_system_id: unreadable (a directory)",
        |h, _| {
            fs::remove_file(h.system_id_path()).unwrap();
            fs::create_dir(h.system_id_path()).unwrap();
            no_args()
        },
        &[".runner_system_id"],
    )
)]
#[case::last_output_invalid_toml_on_a_token_line(
    row(
        "last output: invalid TOML on a token line",
        |h, _| {
            let text = h.config();
            let broken = text.replacen("token = \"", "token = \"unterminated ", 1);
            let broken = broken.replacen("\"\ntoken_obtained_at", "\ntoken_obtained_at", 1);
            fs::write(h.config_path(), broken).unwrap();
            no_args()
        },
        &["config.main.toml", "line", "invalid TOML", "move it away"],
    )
)]
#[case::last_output_invalid_toml_no_runner_system_id_and_no_lock_file_yet(
    row(
        "last output: invalid TOML, no .runner_system_id and no lock file yet",
        |h, _| {
            fs::remove_file(h.system_id_path()).unwrap();
            fs::remove_file(h.prefix.join(".register-runner.main.lock")).unwrap();
            let text = h.config();
            fs::write(h.config_path(), format!("{text}\n[[runners]\n")).unwrap();
            no_args()
        },
        &["config.main.toml", "line", "invalid TOML", "move it away"],
    )
)]
#[case::last_output_runners_is_not_an_array_of_tables(
    row(
        "last output: runners is not an array of tables",
        |h, _| {
            fs::write(h.config_path(), "concurrent = 4\nrunners = 5\n").unwrap();
            no_args()
        },
        &["config.main.toml", "`runners`", "move it away"],
    )
)]
#[case::last_output_not_utf_8(
    row(
        "last output: not UTF-8",
        |h, _| {
            let mut bytes = h.config().into_bytes();
            bytes.extend_from_slice(b"# \xff\n");
            fs::write(h.config_path(), bytes).unwrap();
            no_args()
        },
        &["config.main.toml", "UTF-8", "move it away"],
    )
)]
// ---- the command line
#[case::service_instance_equal_to_the_host_name_without_digits(
    row(
        "--service-instance equal to the host name without digits",
        |h, s| {
            switch_instance(h, s, "ci-node");
            no_args()
        },
        &["--service-instance", "`ci-node`"],
    )
)]
#[case::service_instance_managed(
    row(
        "--service-instance managed",
        |h, s| {
            switch_instance(h, s, "managed");
            no_args()
        },
        &["--service-instance", "`managed`"],
    )
)]
#[case::hostname_with_a_comma(
    row(
        "--hostname with a comma",
        |h, _| {
            h.hostname = "ci,node01".into();
            no_args()
        },
        &["host name `ci,node01`", "--hostname"],
    )
)]
#[case::tag_schema_not_json(
    row(
        "--tag-schema: not JSON",
        |h, _| write_schema(h, "{\"type\": \"object\",\n  properties: {}\n}\n"),
        &["--tag-schema", "schema.json", "line 2", "invalid JSON"],
    )
)]
#[case::tag_schema_missing(
    row(
        "--tag-schema: missing",
        |h, _| {
            vec![
                "--tag-schema".into(),
                scratch(h, "nope.json").display().to_string(),
            ]
        },
        &["--tag-schema", "nope.json", "does not exist"],
    )
)]
#[case::tag_schema_not_a_valid_schema(
    row(
        "--tag-schema: not a valid schema",
        |h, _| write_schema(h, "{\"type\": 5}"),
        &["--tag-schema", "schema.json", "not a valid JSON Schema"],
    )
)]
#[case::tag_schema_violated_by_the_tags(
    row(
        "--tag-schema: violated by the tags",
        |h, _| {
            write_schema(
                h,
                r#"{"type": "object", "properties": {"executor_type": {"enum": ["docker", "custom"]}}}"#,
            )
        },
        &[
            "--tag-schema",
            "schema.json",
            "10-shell.toml",
            "property `executor_type`",
        ],
    )
)]
#[case::capture_tags_program_exits_non_zero(
    row(
        "--capture-tags: program exits non-zero",
        |h, _| {
            let p = write_script(h, "capture.sh", "echo '{\"site\": \"x\"}'\nexit 3");
            vec!["--capture-tags".into(), p]
        },
        &["--capture-tags", "capture.sh", "exit status: 3"],
    )
)]
#[case::capture_tags_program_prints_non_json(
    row(
        "--capture-tags: program prints non-JSON",
        |h, _| {
            let p = write_script(h, "capture.sh", "echo 'site=x'");
            vec!["--capture-tags".into(), p]
        },
        &["--capture-tags", "capture.sh", "JSON"],
    )
)]
#[case::capture_tags_program_prints_a_json_array(
    row(
        "--capture-tags: program prints a JSON array",
        |h, _| {
            let p = write_script(h, "capture.sh", "echo '[1, 2]'");
            vec!["--capture-tags".into(), p]
        },
        &["--capture-tags", "capture.sh", "not an object"],
    )
)]
#[case::capture_tags_program_missing(
    row(
        "--capture-tags: program missing",
        |h, _| {
            vec![
                "--capture-tags".into(),
                scratch(h, "nope.sh").display().to_string(),
            ]
        },
        &["--capture-tags", "nope.sh", "cannot run"],
    )
)]
#[case::capture_tags_properties_violate_tag_schema(
    row(
        "--capture-tags: properties violate --tag-schema",
        |h, _| {
            let p = write_script(h, "capture.sh", "echo '{\"site\": 42}'");
            let mut args = write_schema(
                h,
                r#"{"type": "object", "properties": {"site": {"type": "string"}}}"#,
            );
            args.extend(["--capture-tags".into(), p]);
            args
        },
        &["--tag-schema", "property `site`"],
    )
)]
// ---- a fresh host: no lock file, no .runner_system_id may appear
#[case::fresh_host_template_syntax_error(
    fresh(
        "fresh host: template syntax error",
        |h, s| {
            template(
                h,
                s,
                &format!("personal_access_token = \"{ADMIN_PAT}\"\nrunner_type = \n"),
            );
            no_args()
        },
        &["config.template.main.toml", "line 6", "invalid TOML"],
    )
)]
#[case::fresh_host_executor_url_5(
    fresh(
        "fresh host: executor url = 5",
        |h, _| {
            h.write_executor("30-custom.toml", "url = 5\nexecutor = \"custom\"\n");
            no_args()
        },
        &["30-custom.toml", "key `url`"],
    )
)]
#[case::executor_runners_docker_instead_of_docker(
    row(
        "executor: [runners.docker] instead of [docker]",
        |h, s| {
            shell(h, s, "\n[runners.docker]\nimage = \"alpine\"\n");
            no_args()
        },
        &["10-shell.toml", "key `runners`", "[docker]"],
    )
)]
#[case::executor_token_in_another_case(
    row(
        "executor: Token in another case",
        |h, s| {
            shell(h, s, "Token = \"glrt-case-collision-0123456789\"\n");
            no_args()
        },
        &[
            "10-shell.toml",
            "key `Token`",
            "line 3",
            "differs only in case",
        ],
    )
)]
#[case::executor_token_spelled_with_the_kelvin_sign(
    row(
        "executor: token spelled with the Kelvin sign",
        |h, s| {
            shell(h, s, "\"to\u{212A}en\" = \"glrt-kelvin-0123456789\"\n");
            no_args()
        },
        &[
            "10-shell.toml",
            "line 3",
            "differs only in case from `token`",
        ],
    )
)]
#[case::executor_id_in_another_case(
    row(
        "executor: ID in another case",
        |h, s| {
            shell(h, s, "ID = 7\n");
            no_args()
        },
        &["10-shell.toml", "key `ID`", "`id`"],
    )
)]
#[case::template_runners_in_another_case(
    row(
        "template: [[Runners]] in another case",
        |h, s| {
            template(
                h,
                s,
                &format!(
                    "personal_access_token = \"{ADMIN_PAT}\"\n\n[[Runners]]\nname = \"x\"\n"
                ),
            );
            no_args()
        },
        &["config.template.main.toml", "key `Runners`", "[[runners]]"],
    )
)]
#[case::template_client_configs_in_another_case(
    row(
        "template: Client_Configs in another case",
        |h, s| {
            h.write_template(&format!(
                "concurrent = 4\n\n[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n\n[[Client_Configs]]\nurl = \"https://other.example.com\"\n",
                s.url()
            ));
            no_args()
        },
        &[
            "config.template.main.toml",
            "key `Client_Configs`",
            "lower case",
        ],
    )
)]
#[case::executor_toml_1_1_escape_e(
    row(
        "executor: TOML 1.1 escape \\e",
        |h, s| {
            shell(h, s, "environment = [\"PS1=\\e[0m\"]\n");
            no_args()
        },
        &["10-shell.toml", "line 3", "TOML 1.1", "`\\e`"],
    )
)]
#[case::executor_toml_1_1_inline_table_over_several_lines(
    row(
        "executor: TOML 1.1 inline table over several lines",
        |h, s| {
            shell(
                h,
                s,
                "[docker]\nsysctls = {\n  \"net.ipv4.ip_forward\" = \"1\"\n}\n",
            );
            no_args()
        },
        &["10-shell.toml", "line 4", "TOML 1.1", "several lines"],
    )
)]
#[case::executor_toml_1_1_trailing_comma_in_an_inline_table(
    row(
        "executor: TOML 1.1 trailing comma in an inline table",
        |h, s| {
            shell(
                h,
                s,
                "[docker]\nsysctls = { \"net.ipv4.ip_forward\" = \"1\", }\n",
            );
            no_args()
        },
        &["10-shell.toml", "line 4", "TOML 1.1", "trailing comma"],
    )
)]
#[case::template_toml_1_1_time_without_seconds(
    row(
        "template: TOML 1.1 time without seconds",
        |h, s| {
            template(
                h,
                s,
                &format!("personal_access_token = \"{ADMIN_PAT}\"\n\n[x]\nat = 07:32\n"),
            );
            no_args()
        },
        &[
            "config.template.main.toml",
            "line 8",
            "TOML 1.1",
            "without seconds",
        ],
    )
)]
#[case::fresh_host_capture_tags_program_fails(
    fresh(
        "fresh host: --capture-tags program fails",
        |h, _| {
            let p = write_script(h, "capture.sh", "exit 1");
            vec!["--capture-tags".into(), p]
        },
        &["--capture-tags", "capture.sh"],
    )
)]
fn every_bad_input_fails_cleanly(#[case] row: Row) {
    let Checked { problems, message } = check(&row, writes_despite_permissions());
    assert!(
        problems.is_empty(),
        "=== {}\n{}",
        row.name,
        problems.join("\n")
    );
    // The message itself, as an operator reads it.
    if let Some((mut settings, stderr)) = message {
        settings.set_description(row.name);
        settings.bind(|| insta::assert_snapshot!(snapshot_name(row.name), stderr));
    }
}

/// A row's name as a snapshot file name.
fn snapshot_name(row: &str) -> String {
    let mut name = String::new();
    for c in row.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('_') {
            name.push('_');
        }
    }
    name.trim_end_matches('_').to_string()
}

/// Every entry under `dir` (not following links): path → (kind, bytes, mtime).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let entry = if ft.is_dir() {
                stack.push(path.clone());
                ("dir".to_string(), Vec::new(), None)
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                (
                    "link".to_string(),
                    target.display().to_string().into_bytes(),
                    None,
                )
            } else {
                (
                    format!("file {:o}", meta.mode() & 0o7777),
                    fs::read(&path).unwrap_or_default(),
                    meta.modified().ok(),
                )
            };
            out.insert(path, entry);
        }
    }
    out
}

fn file_bytes(path: &Path) -> Option<Vec<u8>> {
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|_| fs::read(path).ok())
}

/// Whether this user writes into a directory without write permission
/// (root does: permission-based rows cannot fail for root).
fn writes_despite_permissions() -> bool {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o500);
    let wrote = fs::write(dir.path().join("probe"), "x").is_ok();
    chmod(dir.path(), 0o700);
    wrote
}

/// What is under the prefix before the bad run, to compare with after it.
struct Before {
    files: Vec<String>,
    tree: BTreeMap<PathBuf, (String, Vec<u8>, Option<SystemTime>)>,
    config: Option<Vec<u8>>,
    system_id: Option<Vec<u8>>,
}

impl Before {
    fn take(host: &Host) -> Before {
        Before {
            files: host.files(),
            tree: snapshot(&host.prefix),
            config: file_bytes(&host.config_path()),
            system_id: file_bytes(&host.system_id_path()),
        }
    }

    /// What changed under the prefix since.
    fn changes(&self, host: &Host) -> Vec<String> {
        let mut problems = Vec::new();
        if self.config.is_some() && file_bytes(&host.config_path()) != self.config {
            problems.push("config.main.toml changed".to_string());
        }
        if self.system_id.is_some() && file_bytes(&host.system_id_path()) != self.system_id {
            problems.push(".runner_system_id changed".to_string());
        }
        if host.files() != self.files {
            problems.push(format!(
                "files under the prefix changed: {:?} -> {:?}",
                self.files,
                host.files()
            ));
        }
        let (before, after) = (&self.tree, snapshot(&host.prefix));
        if after != *before {
            let changed: Vec<String> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .map(|k| {
                    k.strip_prefix(&host.prefix)
                        .unwrap_or(k)
                        .display()
                        .to_string()
                })
                .collect();
            problems.push(format!("changed under the prefix: {changed:?}"));
        }
        problems
    }
}

/// What one row's run showed.
struct Checked {
    /// What is wrong with it.
    problems: Vec<String>,
    /// The run's stderr and the snapshot settings that hide what varies,
    /// when the input is bad for this user.
    message: Option<(insta::Settings, String)>,
}

/// Runs one row.
fn check(row: &Row, root: bool) -> Checked {
    let checked = |problems, message| Checked { problems, message };
    let sim = Sim::start();
    let mut host = Host::fresh(&sim, Executors::Three);
    if row.first_run {
        let first = host.run(&[]);
        if first.code != 0 {
            let problems = vec![format!("the first good run failed: {first:?}")];
            return checked(problems, None);
        }
    }
    let args = (row.setup)(&mut host, &sim);
    let before = Before::take(&host);
    sim.clear_requests();

    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = host.run(&args);

    // The message each input gets (shown with `--nocapture`).
    println!(
        "[{}] {}",
        row.name,
        run.stderr
            .lines()
            .find(|l| l.contains("ERROR"))
            .unwrap_or("(no error)")
    );
    let mut problems = Vec::new();
    if run.stderr.contains("panicked") {
        problems.push("panicked".to_string());
    }
    // The check of `assert_no_secret`, without the panic: every problem
    // of every row is collected and reported at the end.
    let output = run.all_output();
    for secret in secrets(&sim) {
        if output.contains(secret.as_str()) {
            problems.push(format!("secret {}… appears in the output", &secret[..6]));
        }
    }
    if row.not_for_root && root {
        // Root writes into a read-only directory: this input is not bad
        // for root, so only "no panic, no secret" applies.
        restore_modes(&host);
        return checked(problems, None);
    }
    if run.code != 1 {
        problems.push(format!("exit code {} instead of 1", run.code));
    }
    for want in row.expect {
        if !run.stderr.contains(want) {
            problems.push(format!("stderr lacks `{want}`"));
        }
    }
    let errors = run.stderr.matches("ERROR").count();
    if errors != 1 {
        problems.push(format!("{errors} ERROR messages instead of one"));
    }
    let requests = sim.requests();
    if !requests.is_empty() {
        let sent: Vec<String> = requests
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        problems.push(format!("sent to GitLab: {sent:?}"));
    }
    problems.extend(before.changes(&host));
    restore_modes(&host);
    if !problems.is_empty() {
        problems.push(format!("{run:?}"));
    }
    // Rows that are bad input only for users other than root have no
    // snapshot: it would exist for one kind of user only.
    let message = (!row.not_for_root).then(|| (snapshot_settings(&host), run.stderr));
    checked(problems, message)
}

/// Lets the temp dir be removed whatever a row did to the modes.
fn restore_modes(host: &Host) {
    for dir in [host.prefix.clone(), host.prefix.join("main")] {
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            chmod(&dir, 0o700);
        }
    }
}

/// An invalid but readable `.runner_system_id` is not bad input:
/// gitlab-runner regenerates it, and so does register-runner.
#[test]
fn invalid_runner_system_id_is_regenerated() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    fs::write(host.system_id_path(), "not-a-system-id\n").unwrap();

    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = host.system_id();
    assert!(
        id.len() == 14
            && (id.starts_with("s_") || id.starts_with("r_"))
            && id[2..].chars().all(|c| c.is_ascii_alphanumeric()),
        "{id:?}"
    );
    assert_eq!(Host::mode(&host.system_id_path()), 0o600);
    for r in sim
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/runners/verify")
    {
        assert_eq!(r.body["system_id"], id.as_str());
    }
    assert_no_secret(&run, &secrets(&sim));
}
