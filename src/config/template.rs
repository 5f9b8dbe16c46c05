//! The template `config.template.<instance>.toml`: gitlab-runner's global
//! settings, copied through with comments and order kept, and one
//! `[[client_configs]]` entry per GitLab (its URL, credentials, the scope
//! of PAT-created runners and an extra CA bundle), removed before writing
//! together with the comments that sat among them.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use toml_edit::{DocumentMut, Item, Table, Value};

use super::secret_file::{read_secret_file, resolve, secret};
use super::source::{TomlSource, kind, value_kind};
use super::{ClientConfig, LoadEnv, RunnerScope, Template, keys, normalize_url};
use crate::secret::{shown, shown_path, shown_url};

pub(super) fn load_template(env: &LoadEnv, warnings: &mut Vec<String>) -> Result<Template> {
    let path = env.template_path();
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("{}", crate::fsutil::permission_denied(&path));
        }
        Err(_) => bail!(
            "template `{}` does not exist: it holds the gitlab-runner global settings and `[[client_configs]]`",
            path.display()
        ),
        Ok(_) => {}
    }
    // `client_configs` is consumed, never copied: any TOML the parser reads.
    let (source, doc) = TomlSource::read(&path, |key| key == "client_configs")?;
    // Case-insensitively, as gitlab-runner reads keys.
    keys::check_template_keys(&source, doc.as_table(), warnings)?;
    let Some(item) = doc.get("client_configs") else {
        bail!(
            "`{}`: no `[[client_configs]]`: add one per GitLab, with at least `url`",
            path.display()
        );
    };
    let tables: Vec<Table> = match item {
        Item::ArrayOfTables(array) => array.iter().cloned().collect(),
        Item::Value(Value::Array(array)) => array
            .iter()
            .map(|v| match v {
                Value::InlineTable(t) => Ok(t.clone().into_table()),
                other => Err(source.error(
                    "client_configs",
                    item,
                    format!("expected tables, found {}", value_kind(other)),
                )),
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(source.error(
                "client_configs",
                other,
                format!(
                    "expected an array of tables (`[[client_configs]]`), found {}",
                    kind(other)
                ),
            ));
        }
    };
    if tables.is_empty() {
        return Err(source.error("client_configs", item, "is empty: add one entry per GitLab"));
    }
    let mut clients: Vec<ClientConfig> = Vec::new();
    for table in &tables {
        let client = load_client_config(&source, table, env)?;
        if clients.iter().any(|c| c.url == client.url) {
            return Err(source.error(
                "url",
                &table["url"],
                format!("two client_configs entries have url `{}`", client.url),
            ));
        }
        clients.push(client);
    }
    let mut globals = doc.into_mut();
    drop_client_configs_comments(&mut globals);
    globals.remove("client_configs");
    Ok(Template {
        path,
        globals,
        clients,
    })
}

/// Comments below a `[[client_configs]]` entry's last key (an old token
/// commented out, say) belong, for the parser, to what follows: the next
/// table's header, the next top-level key (after `client_configs = [...]`)
/// or the end of the file. They would outlive the entries' removal, so
/// every comment between client_configs and what follows goes.
pub(super) fn drop_client_configs_comments(doc: &mut DocumentMut) {
    fn headers(table: &Table, client: bool, out: &mut Vec<(isize, bool)>) {
        if let Some(p) = table.position() {
            out.push((p, client));
        }
        for (key, item) in table.iter() {
            match item {
                Item::Table(t) => headers(t, client, out),
                Item::ArrayOfTables(a) => {
                    let client = client || key == "client_configs";
                    a.iter().for_each(|t| headers(t, client, out));
                }
                _ => {}
            }
        }
    }
    fn uncomment(decor: &mut toml_edit::Decor) {
        let blank = decor
            .prefix()
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.split_inclusive('\n').any(|l| l.trim().is_empty()));
        decor.set_prefix(if blank { "\n" } else { "" });
    }
    fn uncomment_key(table: &mut Table, name: &str) {
        match table.get_mut(name) {
            Some(Item::Table(dotted)) if dotted.is_dotted() => {
                let first = dotted.iter().next().map(|(k, _)| k.to_string());
                if let Some(first) = first {
                    uncomment_key(dotted, &first);
                }
            }
            _ => {
                if let Some(mut key) = table.key_mut(name) {
                    uncomment(key.leaf_decor_mut());
                }
            }
        }
    }
    fn clear_after(table: &mut Table, after: &[isize]) {
        if table.position().is_some_and(|p| after.contains(&p)) {
            uncomment(table.decor_mut());
        }
        for (_, item) in table.iter_mut() {
            match item {
                Item::Table(t) => clear_after(t, after),
                Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| clear_after(t, after)),
                _ => {}
            }
        }
    }
    let mut all = Vec::new();
    headers(doc.as_table(), false, &mut all);
    all.sort();
    let mut after: Vec<isize> = all
        .windows(2)
        .filter(|w| w[0].1 && !w[1].1)
        .map(|w| w[1].0)
        .collect();
    let mut trailing = all.last().is_some_and(|(_, client)| *client);
    // The inline form, `client_configs = [{ ... }]`, among the top-level keys.
    let root = doc.as_table_mut();
    if root.get("client_configs").is_some_and(Item::is_value) {
        let names: Vec<String> = root.iter().map(|(k, _)| k.to_string()).collect();
        let at = names
            .iter()
            .position(|k| k == "client_configs")
            .unwrap_or(0);
        // The next key-value line: a value, or a dotted key (`a.b = 1`),
        // whose comments sit on its last part.
        let next_line = names[at + 1..].iter().find(|k| match root.get(k) {
            Some(Item::Value(_)) => true,
            Some(Item::Table(t)) => t.is_dotted(),
            _ => false,
        });
        match next_line {
            Some(name) => uncomment_key(root, name),
            None => match all.first() {
                Some((first, _)) => after.push(*first),
                None => trailing = true,
            },
        }
    }
    clear_after(root, &after);
    if trailing {
        doc.set_trailing("");
    }
}

pub(super) const CLIENT_KEYS: &[&str] = &[
    "url",
    "personal_access_token",
    "personal_access_token_file",
    "registration_token",
    "registration_token_file",
    "runner_type",
    "group_id",
    "project_id",
    "tls_ca_file",
];

fn load_client_config(source: &TomlSource, table: &Table, env: &LoadEnv) -> Result<ClientConfig> {
    for (key, item) in table.iter() {
        if !CLIENT_KEYS.contains(&key) {
            return Err(source.error(
                &format!("client_configs.{key}"),
                item,
                format!("unknown key (known: {})", CLIENT_KEYS.join(", ")),
            ));
        }
    }
    let url = source.non_empty_string(table, "url")?.ok_or_else(|| {
        anyhow!(
            "`{}`{}: a client_configs entry has no `url`",
            source.path.display(),
            source.position(table.span())
        )
    })?;
    check_url(&url).map_err(|m| source.error("url", &table["url"], m))?;
    let url = normalize_url(&url);
    let personal_access_token = secret(source, table, "personal_access_token", env)?;
    let registration_token = secret(source, table, "registration_token", env)?;
    let scope = runner_scope(source, table)?;
    let tls_ca = match source.non_empty_string(table, "tls_ca_file")? {
        None => None,
        Some(file) => Some(ca_bundle(source, table, &file, env)?),
    };
    Ok(ClientConfig {
        url,
        personal_access_token,
        registration_token,
        scope,
        tls_ca,
    })
}

/// `runner_type` with its `group_id` or `project_id`.
fn runner_scope(source: &TomlSource, table: &Table) -> Result<RunnerScope> {
    let group_id = source.integer(table, "group_id")?;
    let project_id = source.integer(table, "project_id")?;
    let runner_type = source.string(table, "runner_type")?;
    let scope = match runner_type.as_deref().unwrap_or("instance_type") {
        "instance_type" => RunnerScope::Instance,
        "group_type" => RunnerScope::Group(group_id.ok_or_else(|| {
            source.error(
                "runner_type",
                &table["runner_type"],
                "`group_type` needs `group_id`",
            )
        })?),
        "project_type" => RunnerScope::Project(project_id.ok_or_else(|| {
            source.error(
                "runner_type",
                &table["runner_type"],
                "`project_type` needs `project_id`",
            )
        })?),
        other => {
            return Err(source.error(
                "runner_type",
                &table["runner_type"],
                format!(
                    "`{}` is not one of instance_type, group_type, project_type",
                    shown(other)
                ),
            ));
        }
    };
    if group_id.is_some() && !matches!(scope, RunnerScope::Group(_)) {
        return Err(source.error(
            "group_id",
            &table["group_id"],
            "is used only with runner_type = \"group_type\"",
        ));
    }
    if project_id.is_some() && !matches!(scope, RunnerScope::Project(_)) {
        return Err(source.error(
            "project_id",
            &table["project_id"],
            "is used only with runner_type = \"project_type\"",
        ));
    }
    Ok(scope)
}

/// `tls_ca_file`: a `*_file` like the secrets, holding a PEM bundle that
/// the TLS client accepts.
fn ca_bundle(
    source: &TomlSource,
    table: &Table,
    file: &str,
    env: &LoadEnv,
) -> Result<(PathBuf, Vec<u8>)> {
    // A `*_file` like the secrets (SPEC §2): relative to
    // `$CREDENTIALS_DIRECTORY` when set, and it may be a link.
    let base = env.credentials_directory.as_deref().unwrap_or(&env.prefix);
    let path = resolve(&env.prefix, env.credentials_directory.as_deref(), file);
    let shown = shown_path(base, file, &path);
    let at = source.position(table["tls_ca_file"].span());
    let pem = read_secret_file(&path, &shown, false)
        .with_context(|| format!("`{}`{at}: key `tls_ca_file`", source.path.display()))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!(
            "`{}`{at}: key `tls_ca_file`: `{shown}` holds no PEM certificate",
            source.path.display(),
        );
    }
    check_ca_bundle(pem.as_bytes()).map_err(|e| {
        anyhow!(
            "`{}`{at}: key `tls_ca_file`: `{shown}` is not a valid PEM certificate bundle: {e}",
            source.path.display(),
        )
    })?;
    Ok((path, pem.into_bytes()))
}

fn check_url(url: &str) -> std::result::Result<(), String> {
    let shown = shown_url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("`{shown}` is not a URL ({e}): write the GitLab base URL, like https://gitlab.example.com")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{shown}` must start with https:// or http://"));
    }
    if parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(format!(
            "`{shown}` must be a plain base URL (no user, password, query or fragment)"
        ));
    }
    // The API path is added by register-runner (and gitlab-runner): with it
    // in the url every request would go to `/api/v4/api/v4/…` and answer 404.
    let path = parsed.path().trim_end_matches('/');
    if let Some(base) = path.strip_suffix("/api/v4") {
        let mut fixed = parsed.clone();
        fixed.set_path(base);
        return Err(format!(
            "`{shown}` ends with `/api/v4`: write GitLab's base URL, `{}`, as in gitlab-runner's config; \
             the API path is added to it",
            shown_url(fixed.as_str().trim_end_matches('/'))
        ));
    }
    Ok(())
}

/// Decodes a PEM bundle and hands each certificate to a TLS client
/// builder (no network), as the GitLab client will later: a certificate
/// that decodes but is not one fails here, naming the file, instead of
/// after the lock with a bare "builder error".
fn check_ca_bundle(pem: &[u8]) -> std::result::Result<(), String> {
    let chain = |e: &dyn std::error::Error| {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| chain(&e))?;
    for (i, cert) in certs.into_iter().enumerate() {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .build()
            .map_err(|e| format!("certificate #{}: {}", i + 1, chain(&e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_among_client_configs_are_dropped() {
        let mut doc: DocumentMut = "# global\nconcurrent = 4\n\n[[client_configs]]\nurl = \"a\"\n\
             # personal_access_token = \"glpat-old-secret\"\n# old\n\n# the session server\n\
             [session_server]\nlisten_address = \"x\"\n\n[[client_configs]]\nurl = \"b\"\n\
             # registration_token = \"GR1348941old\"\n"
            .parse()
            .unwrap();
        drop_client_configs_comments(&mut doc);
        doc.remove("client_configs");
        assert_eq!(
            doc.to_string(),
            "# global\nconcurrent = 4\n\n[session_server]\nlisten_address = \"x\"\n"
        );
        // Without a blank line; a legacy token has no prefix to spot.
        let mut doc: DocumentMut =
            "[[client_configs]]\nurl = \"a\"\n# 8HxyzOLDSECRETabcdef\n[session_server]\n"
                .parse()
                .unwrap();
        drop_client_configs_comments(&mut doc);
        doc.remove("client_configs");
        assert_eq!(doc.to_string(), "[session_server]\n");
        // The inline form: before a top-level key, a table, or the end.
        for (text, expected) in [
            (
                "a = 1\nclient_configs = [{ url = \"a\" }] # glpat-OLD0\n# glpat-OLD1\nb = 2\n",
                "a = 1\nb = 2\n",
            ),
            (
                "client_configs = [\n  { url = \"a\" }, # glpat-OLD0\n]\n# glpat-OLD1\n\n[s]\nx = 1\n",
                "\n[s]\nx = 1\n",
            ),
            (
                "a = 1\nclient_configs = [{ url = \"a\" }]\n# glpat-OLD1\n",
                "a = 1\n",
            ),
            (
                "client_configs = [{ url = \"a\" }]\n# 8HxyzOLDSECRET\ns.l.m = 1\n# t\n[t]\n",
                "s.l.m = 1\n# t\n[t]\n",
            ),
        ] {
            let mut doc: DocumentMut = text.parse().unwrap();
            drop_client_configs_comments(&mut doc);
            doc.remove("client_configs");
            assert_eq!(doc.to_string(), expected, "{text}");
        }
    }
}
