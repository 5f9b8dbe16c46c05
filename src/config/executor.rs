//! One executor file, `<instance>/<name>.toml`: the inside of one
//! `[[runners]]` entry. The keys this tool consumes (`url`, `executor`,
//! `name`, `token`, `env_tags`, `tags` and the server-side settings of
//! [`super::server`]) are validated and taken out; every other key is a
//! gitlab-runner setting, passed through unchanged.

use std::path::Path;

use anyhow::{Result, anyhow};
use toml_edit::Table;

use super::keys::{self, GENERATED_KEYS};
use super::known_keys;
use super::secret_file::token_shape_problem;
use super::server::{SERVER_SETTINGS, ServerSettings};
use super::source::TomlSource;
use super::{Executor, LoadEnv, Template, normalize_url};
use crate::secret::{Secret, shown_url};

pub(super) fn load_executor(
    path: &Path,
    template: &Template,
    env: &LoadEnv,
    warnings: &mut Vec<String>,
) -> Result<Executor> {
    // The keys the tool consumes are never copied: any TOML the parser reads.
    let (source, doc) = TomlSource::read(path, |key| keys::tool_keys().any(|k| k == key))?;
    let table = doc.as_table();
    refuse_generated_keys(&source, table)?;
    let url = client_url(&source, table, template)?;
    let executor = source
        .non_empty_string(table, "executor")?
        .ok_or_else(|| anyhow!("`{}`: missing required key `executor`", path.display()))?;
    let finding = known_keys::check_executor_name(&executor);
    keys::report(&source, "executor", &table["executor"], finding, warnings)?;
    let name = runner_name(&source, table, env, &executor)?;
    let token = runner_token(&source, table)?;
    let server = ServerSettings::load(&source, table)?;
    let env_tags = source.strings(table, "env_tags")?;
    let tags = source.strings(table, "tags")?;
    if token.is_some() {
        refuse_server_settings(&source, table)?;
    }
    keys::check_executor_keys(&source, table, warnings)?;
    let mut settings = doc.into_mut().as_table().clone();
    for key in keys::tool_keys() {
        settings.remove(key);
    }
    Ok(Executor {
        file: path.to_path_buf(),
        url,
        executor,
        name,
        token,
        env_tags,
        tags,
        server,
        settings,
    })
}

/// Keys the tool writes into `[[runners]]` itself have no place here.
fn refuse_generated_keys(source: &TomlSource, table: &Table) -> Result<()> {
    for key in GENERATED_KEYS {
        if let Some(item) = table.get(key) {
            let hint = if *key == "description" {
                "use `name` for the runner's name"
            } else {
                "register-runner writes it itself; remove it"
            };
            return Err(source.error(key, item, hint));
        }
    }
    Ok(())
}

/// `url`, required, normalised, and naming one of the template's GitLabs.
fn client_url(source: &TomlSource, table: &Table, template: &Template) -> Result<String> {
    let url = source
        .non_empty_string(table, "url")?
        .ok_or_else(|| anyhow!("`{}`: missing required key `url`", source.path.display()))?;
    let normalized = normalize_url(&url);
    if !template.clients.iter().any(|c| c.url == normalized) {
        let known: Vec<&str> = template.clients.iter().map(|c| c.url.as_str()).collect();
        return Err(source.error(
            "url",
            &table["url"],
            format!(
                "`{}` matches no client_configs url in `{}` (known: {})",
                shown_url(&url),
                template.path.display(),
                known.join(", ")
            ),
        ));
    }
    Ok(normalized)
}

/// The original's runner name, `<hostname> <instance> <executor> Runner`:
/// the default, so that its runners are recognised.
pub(super) fn default_runner_name(env: &LoadEnv, executor: &str) -> String {
    format!("{} {} {} Runner", env.hostname, env.instance, executor)
}

/// `name`, or `<hostname> <instance> <executor> Runner`; at most GitLab's
/// 1024 characters either way.
fn runner_name(
    source: &TomlSource,
    table: &Table,
    env: &LoadEnv,
    executor: &str,
) -> Result<String> {
    let name = match source.non_empty_string(table, "name")? {
        Some(name) => name,
        None => default_runner_name(env, executor),
    };
    if name.chars().count() > 1024 {
        // Without `name`, the default name is long because `executor` is.
        let (key, message) = if table.contains_key("name") {
            ("name", "is longer than GitLab's 1024 characters")
        } else {
            (
                "executor",
                "makes the default runner name longer than GitLab's 1024 characters",
            )
        };
        return Err(source.error(key, &table[key], message));
    }
    Ok(name)
}

/// `token`: a runner authentication token made in GitLab's UI.
fn runner_token(source: &TomlSource, table: &Table) -> Result<Option<Secret>> {
    let token = source.non_empty_string(table, "token")?.map(Secret::new);
    // Only a runner made in GitLab's UI (or with POST /user/runners) has a
    // `glrt-` token; anything else here would later be deleted whole.
    if let Some(token) = &token
        && !token.is_created_runner_token()
    {
        return Err(source.error(
            "token",
            &table["token"],
            format!(
                "`{}` is not a runner authentication token made in GitLab's UI (they start with `glrt-`); \
                 for a registration token use `registration_token` in the template",
                token.short()
            ),
        ));
    }
    if let Some(token) = &token
        && let Some(problem) = token_shape_problem(token.expose())
    {
        return Err(source.error("token", &table["token"], problem));
    }
    Ok(token)
}

/// A runner with its own `token` is set up in GitLab's UI: the executor
/// file may not hold server-side settings for it.
fn refuse_server_settings(source: &TomlSource, table: &Table) -> Result<()> {
    let keys = SERVER_SETTINGS.iter().map(|s| s.key).chain(["tags"]);
    for key in keys {
        if let Some(item) = table.get(key) {
            return Err(source.error(
                key,
                item,
                "is a server-side setting: a runner with its own `token` was made in GitLab's UI, set it there",
            ));
        }
    }
    Ok(())
}
