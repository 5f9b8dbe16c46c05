//! Migration from the original Python register-runner (issue 10, SPEC §9):
//! a site swaps the tool and keeps its files, its unit line and its GitLab.
//! The fixtures are written here in the shapes of the original's sample
//! template (`client_configs` as a multi-line inline table), executor file
//! (`env_tags`), tag schema (`os`/`architecture` enums, `custom-name`) and
//! capture module (`capture_tags(instance, executor_type, env, tag_schema)`),
//! and the simulator holds the runners the original leaked.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use gitlab_sim::{ADMIN_PAT, REGISTRATION_TOKEN, RunnerState, SeedRunner, Sim};

use crate::support::*;

const THIS_SYSTEM_ID: &str = "s_0123456789ab";
const OTHER_SYSTEM_ID: &str = "s_ba9876543210";

/// The original's sample template: global settings, then `client_configs`
/// as an inline table over several lines with a trailing comma (TOML 1.1,
/// which the original's `toml` module read).
fn original_template(host: &Host, url: &str) {
    host.write_template(&format!(
        "concurrent = 8\ncheck_interval = 0\n\nclient_configs = [\n  {{\n    url = \"{url}\",\n    \
         registration_token = \"{REGISTRATION_TOKEN}\",\n    personal_access_token = \"{ADMIN_PAT}\",\n  }}\n]\n"
    ));
}

/// Executor files as the original's sample: `url`, `executor`, `env_tags`
/// over several lines.
fn original_executors(host: &Host, url: &str) {
    host.write_executor(
        "shell.toml",
        &format!("url = \"{url}\"\nexecutor = \"shell\"\nenv_tags = [\n    \"SITE_TAG\"\n]\n"),
    );
    host.write_executor(
        "batch.toml",
        &format!("url = \"{url}\"\nexecutor = \"batch\"\nenv_tags = [\n    \"SITE_TAG\",\n]\n"),
    );
}

/// A runner the original registered for `hostname`: its default name, its
/// tags (host, executor, instance, env values; no `managed`, no digit-less
/// host name), a registration-token runner's token, `locked` as GitLab's
/// legacy registration left it.
fn original_runner(sim: &Sim, hostname: &str, executor: &str, n: u32) -> RunnerState {
    sim.seed_runner(SeedRunner {
        description: format!("{hostname} main {executor} Runner"),
        tag_list: vec![
            hostname.into(),
            executor.into(),
            "main".into(),
            "site-a".into(),
        ],
        token: Some(format!("t1-{hostname}-{executor}-{n:0>8}")),
        locked: true,
        ..Default::default()
    })
}

/// `POST /runners/verify` as gitlab-runner on a host with `system_id` does
/// it: the runner gets that host's manager.
fn verify_as(sim: &Sim, token: &str, system_id: &str) {
    let body = format!(r#"{{"token":"{token}","system_id":"{system_id}"}}"#);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", sim.port())).unwrap();
    write!(
        s,
        "POST /api/v4/runners/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

/// The last output the original wrote (toml.dumps of the template without
/// `client_configs`, plus its runners): `[[runners]]` entries with
/// `description`, `tags` and `env_tags`, no `name`, no `id`.
fn original_output(host: &Host, url: &str, held: &[&RunnerState]) {
    let mut text = "concurrent = 8\ncheck_interval = 0\n\n".to_string();
    for r in held {
        let executor = r.tag_list[1].clone();
        text.push_str(&format!(
            "[[runners]]\nurl = \"{url}\"\nexecutor = \"{executor}\"\nenv_tags = [ \"SITE_TAG\",]\n\
             tags = [ \"{}\", \"{executor}\", \"main\", \"site-a\",]\ndescription = \"{}\"\ntoken = \"{}\"\n\n",
            HOSTNAME, r.description, r.token
        ));
    }
    fs::write(host.config_path(), text).unwrap();
    fs::set_permissions(host.config_path(), fs::Permissions::from_mode(0o600)).unwrap();
}

/// What three restarts of the original left on GitLab.
struct Leaked {
    /// The runner of each executor whose token the last output holds.
    held: Vec<RunnerState>,
    /// The two others of each executor, for this host.
    leftovers: Vec<RunnerState>,
    /// A runner of the original on ci-node02 (same instance, other host).
    other_host: RunnerState,
}

/// Three restarts of the original on ci-node01: three runners per executor,
/// the last output holding the last of each; gitlab-runner on this host
/// once verified an older one (a manager of this host's). Plus one runner
/// of the original on ci-node02, used there.
fn three_restarts_of_the_original(sim: &Sim, host: &Host) -> Leaked {
    let mut held = Vec::new();
    let mut leftovers = Vec::new();
    for executor in ["shell", "batch"] {
        for n in 1..=3 {
            let r = original_runner(sim, HOSTNAME, executor, n);
            if n == 3 {
                held.push(r);
            } else {
                leftovers.push(r);
            }
        }
    }
    verify_as(sim, &leftovers[0].token, THIS_SYSTEM_ID);
    let other_host = original_runner(sim, "ci-node02", "shell", 1);
    verify_as(sim, &other_host.token, OTHER_SYSTEM_ID);
    host.set_system_id(THIS_SYSTEM_ID);
    original_template(host, &sim.url());
    original_executors(host, &sim.url());
    original_output(host, &sim.url(), &held.iter().collect::<Vec<_>>());
    Leaked {
        held,
        leftovers,
        other_host,
    }
}

/// `GET /runners/all` requests listing exactly these tags.
fn listings_of(sim: &Sim, tags: &str) -> usize {
    let encoded = tags.replace(',', "%2C");
    sim.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/runners/all")
        .filter(|r| {
            r.query
                .split('&')
                .any(|kv| kv == format!("tag_list={tags}") || kv == format!("tag_list={encoded}"))
        })
        .count()
}

#[test]
fn the_originals_sample_template_and_executor_files_load() {
    let sim = Sim::start();
    let host = Host::new();
    original_template(&host, &sim.url());
    original_executors(&host, &sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let config = host.config();
    assert!(
        config.starts_with("concurrent = 8\ncheck_interval = 0\n"),
        "{config}"
    );
    assert!(!config.contains("client_configs"), "{config}");
    assert_eq!(host.config_runners().len(), 2, "{config}");
    assert_eq!(sim.runners().len(), 2);
    // What is copied out stays TOML 1.0: the same construct in a global
    // setting is still refused, naming the line.
    host.write_template(&format!(
        "concurrent = 8\nlabels = {{\n  a = \"b\" }}\n\nclient_configs = [\n  {{ url = \"{}\", personal_access_token = \"{ADMIN_PAT}\", }}\n]\n",
        sim.url()
    ));
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("line 2") && run.stderr.contains("TOML 1.1"),
        "{run:?}"
    );
}

#[test]
fn one_run_after_three_restarts_of_the_original_leaves_one_runner_per_executor() {
    let sim = Sim::start();
    let host = Host::new();
    let leaked = three_restarts_of_the_original(&sim, &host);
    sim.clear_requests();

    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_no_secret(&run, &secrets(&sim));
    // One extra listing by the original's tags, while migrating.
    assert_eq!(
        listings_of(&sim, "ci-node01,main"),
        1,
        "{:#?}",
        sim.requests()
    );
    // The four leftovers are deleted, by id; nothing else is.
    let mut deleted: Vec<String> = mutating(&sim.requests())
        .into_iter()
        .filter(|r| r.starts_with("DELETE"))
        .collect();
    deleted.sort();
    let mut expected: Vec<String> = leaked
        .leftovers
        .iter()
        .map(|r| format!("DELETE /api/v4/runners/{}", r.id))
        .collect();
    expected.sort();
    assert_eq!(deleted, expected, "{run:?}");
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/user/runners"), 0);
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/runners"), 0);

    // Exactly one runner per executor here, the held one, now carrying the
    // identifying tags and unlocked; the other host's runner untouched.
    let runners = sim.runners();
    let here: Vec<&RunnerState> = runners
        .iter()
        .filter(|r| r.description.starts_with("ci-node01 "))
        .collect();
    assert_eq!(here.len(), 2, "{here:#?}");
    for held in &leaked.held {
        let now = sim.runner(held.id).expect("the held runner is kept");
        assert_eq!(now.token, held.token);
        assert!(has_identifying_tags(&now), "{now:#?}");
        assert!(!now.locked, "{now:#?}");
    }
    let other = sim
        .runner(leaked.other_host.id)
        .expect("the other host's runner is kept");
    assert_eq!(other.tag_list, leaked.other_host.tag_list);
    assert_eq!(other.token, leaked.other_host.token);
    assert!(other.locked);
    // The log says what the adoption changed, field by field.
    assert!(run.stderr.contains("tags: +ci-node +managed"), "{run:?}");
    assert!(run.stderr.contains("locked: true → false"), "{run:?}");

    // The config holds each held token under the tool's keys: `name`, no
    // `description`, `tags` or `env_tags` (keys gitlab-runner does not know).
    let written = host.config_runners();
    assert_eq!(written.len(), 2, "{}", host.config());
    for (entry, held) in written.iter().zip([&leaked.held[1], &leaked.held[0]]) {
        assert_eq!(table_str(entry, "name"), held.description);
        assert_eq!(table_str(entry, "token"), held.token);
        assert_eq!(table_int(entry, "id"), held.id as i64);
        for key in ["description", "tags", "env_tags"] {
            assert!(!entry.contains_key(key), "{key} in {entry}");
        }
    }

    // Migrated: the next run lists only by the identifying tags, changes nothing.
    sim.clear_requests();
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(listings_of(&sim, "ci-node01,main"), 0);
}

#[test]
fn the_dry_run_shows_the_migration_first() {
    let sim = Sim::start();
    let host = Host::new();
    let leaked = three_restarts_of_the_original(&sim, &host);
    let before = fs::read(host.config_path()).unwrap();
    sim.clear_requests();

    let run = host.run(&["--dry-run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_no_secret(&run, &secrets(&sim));
    for r in &leaked.leftovers {
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(&format!("#{}", r.id)))
            .unwrap_or_else(|| panic!("no line for #{}:\n{}", r.id, run.stdout));
        assert!(line.trim_start().starts_with("delete"), "{line}");
        assert!(line.contains("left by the original tool"), "{line}");
    }
    assert!(
        !run.stdout.contains(&format!("#{}", leaked.other_host.id)),
        "{}",
        run.stdout
    );
    for held in &leaked.held {
        let update = run
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("update") && l.contains(&format!("#{}", held.id)))
            .unwrap_or_else(|| panic!("no update of #{}:\n{}", held.id, run.stdout));
        assert!(update.contains("tag_list"), "{update}");
    }
    assert_eq!(
        run.stdout.matches("tags: +ci-node +managed").count(),
        2,
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("locked: true → false").count(),
        2,
        "{}",
        run.stdout
    );
    // Nothing changed.
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(fs::read(host.config_path()).unwrap(), before);

    // The JSON report carries the same changes.
    let run = host.run(&["--dry-run", "--output", "json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let actions = report["gitlabs"][0]["actions"].as_array().unwrap();
    let updates: Vec<&serde_json::Value> =
        actions.iter().filter(|a| a["action"] == "update").collect();
    assert_eq!(updates.len(), 2, "{actions:#?}");
    for update in updates {
        let changes: Vec<&str> = update["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(changes, ["tags: +ci-node +managed", "locked: true → false"]);
    }
    let originals = actions
        .iter()
        .filter(|a| a["action"] == "delete" && a["reason"] == "left by the original tool")
        .count();
    assert_eq!(originals, 4, "{actions:#?}");
}

/// Not migrating (the last output is this tool's, the runners carry the
/// identifying tags): no extra listing, and a runner of the original's
/// name without them is not this tool's to touch (SPEC §3).
#[test]
fn without_a_migration_no_runner_outside_the_identifying_tags_is_touched() {
    let sim = Sim::start();
    let host = Host::new();
    host.set_system_id(THIS_SYSTEM_ID);
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.write_executor(
        "shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nenv_tags = [\"SITE_TAG\"]\n",
            sim.url()
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let stray = original_runner(&sim, HOSTNAME, "shell", 1);
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(listings_of(&sim, "ci-node01,main"), 0);
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert!(sim.runner(stray.id).is_some());
}

/// A tag schema in the shape of the original's `tag_schema.json`: `os` and
/// `architecture` enums, arrays for `custom`, `env`, `micro-architecture`,
/// `custom-name`. `architectures` are its architecture enum.
fn original_shaped_schema(host: &Host, architectures: &[String]) -> String {
    let schema = serde_json::json!({
        "$id": "https://ci.example.org/tag_schema.json",
        "$schema": "http://json-schema.org/schema/",
        "title": "tag_schema",
        "type": "object",
        "properties": {
            "hostname": {"type": "string"},
            "instance": {"type": "string"},
            "os": {"type": "string", "enum": ["rhel", "toss", "debian", "linux"]},
            "architecture": {"type": "string", "enum": architectures},
            "executor_type": {"type": "string", "enum": ["shell", "batch", "custom", "docker"]},
            "scheduler": {"type": "string"},
            "custom": {"type": "array"},
            "env": {"type": "array"},
            "micro-architecture": {"type": "array"},
            "target-node": {"type": "string"}
        },
        "required": ["hostname", "instance", "executor_type"],
        "custom-name": "custom"
    });
    let path = host.dir.path().join("tag_schema.json");
    fs::write(&path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
    path.display().to_string()
}

/// archspec's name of this machine's CPU and its ancestors, nearest first.
fn host_cpu_names() -> Vec<String> {
    let cpu = archspec::cpu::host().expect("archspec knows this CPU");
    std::iter::once(cpu.name().to_string())
        .chain(cpu.ancestors().iter().map(|a| a.name().to_string()))
        .collect()
}

/// `--capture-tags builtin` with an original-shaped schema: archspec's
/// architecture and its ancestors (as the original's capture_tags.py), and
/// the `env_tags` values classified by the schema. The schema's
/// architecture enum is made to list this CPU, so the test does not depend
/// on the machine (the original's stops at `zen2`).
#[test]
fn builtin_capture_gives_archspec_tags_and_classifies_env_values() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    original_executors(&host, &sim.url());
    let cpu = host_cpu_names();
    let mut architectures: Vec<String> = ["aarch64", "x86_64", "zen2"].map(String::from).to_vec();
    architectures.push(cpu[0].clone());
    let schema = original_shaped_schema(&host, &architectures);
    let mut cmd = host.command(&[
        "--timeout",
        "20",
        "--capture-tags",
        "builtin",
        "--tag-schema",
        &schema,
    ]);
    cmd.env("SITE_TAG", "mytag");
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    let runners = sim.runners();
    assert_eq!(runners.len(), 2);
    for runner in &runners {
        for name in &cpu {
            assert!(
                runner.tag_list.contains(name),
                "{name} missing: {runner:#?}"
            );
        }
        // Not in the schema's enums: `custom-name` + `_` + the value.
        assert!(
            runner.tag_list.iter().any(|t| t == "custom_mytag"),
            "{runner:#?}"
        );
        assert!(!runner.tag_list.iter().any(|t| t == "linux"), "{runner:#?}");
    }

    // A value in the `os` enum becomes `os`.
    let mut cmd = host.command(&[
        "--dry-run",
        "--capture-tags",
        "builtin",
        "--tag-schema",
        &schema,
    ]);
    cmd.env("SITE_TAG", "debian");
    let run = run_command(cmd);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stdout.contains("+debian"), "{run:?}");
    assert!(!run.stdout.contains("custom_debian"), "{run:?}");
}

/// CI (.ci/run) installs Python's archspec, pinned, and points
/// `REGISTER_RUNNER_ARCHSPEC_PYTHON` at it: then the built-in capture must
/// give exactly what the original's library says about this machine.
/// Without it, Python's archspec is used if `python3` has it.
#[test]
fn builtin_capture_matches_pythons_archspec_on_this_machine() {
    let pinned = std::env::var("REGISTER_RUNNER_ARCHSPEC_PYTHON").ok();
    let python = pinned.clone().unwrap_or_else(|| "python3".into());
    let script = "import json, archspec.cpu\nh = archspec.cpu.host()\n\
                  print(json.dumps([h.name] + [a.name for a in h.ancestors]))";
    let out = Command::new(&python).args(["-c", script]).output();
    let expected: Vec<String> = match out {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout).unwrap(),
        other => {
            assert!(
                pinned.is_none(),
                "REGISTER_RUNNER_ARCHSPEC_PYTHON={python} cannot run archspec: {other:?}"
            );
            eprintln!("Python's archspec is not installed here: compared in CI only");
            return;
        }
    };
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.shell_executor(&sim.url());
    let run = host.run(&["--capture-tags", "builtin"]);
    assert_eq!(run.code, 0, "{run:?}");
    let tags = &sim.runners()[0].tag_list;
    assert!(
        tags.windows(expected.len())
            .any(|w| w == expected.as_slice()),
        "Python's archspec says {expected:?}; the runner's tags are {tags:?}"
    );
}

/// A capture module shaped like the original's capture_tags.py (same
/// signature, same classification by the schema), with a fixed CPU so that
/// it needs no archspec, and a print of its own (which must not reach the
/// protocol's stdout).
const SITE_CAPTURE: &str = r#"
from shutil import which

print("site capture loaded")


def capture_tags(instance, executor_type, env=None, tag_schema=None):
    properties = {
        "architecture": "zen2",
        "micro-architecture": ["zen", "x86_64_v3", "x86_64_v2", "x86_64"],
        "custom": [],
        "target-node": "{}-{}".format(instance, executor_type),
    }
    if executor_type == "batch":
        if which("bsub"):
            properties["scheduler"] = "lsf"
        elif which("salloc"):
            properties["scheduler"] = "slurm"
    if env and tag_schema:
        for e in env:
            if e in tag_schema["properties"]["os"]["enum"]:
                properties["os"] = e
            elif e in tag_schema["properties"]["architecture"]["enum"]:
                properties["architecture"] = e
            else:
                properties["custom"].append(tag_schema["custom-name"] + "_" + e)
    return properties
"#;

/// The binary linked into a directory of its own with the adapter beside
/// it, as the packages install them (a hard link: the binary finds the
/// adapter next to `/proc/self/exe`, which resolves symlinks).
struct Installed {
    _dir: tempfile::TempDir,
    binary: PathBuf,
}

fn installed_with_adapter() -> Installed {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let binary = dir.path().join("register-runner");
    fs::hard_link(env!("CARGO_BIN_EXE_register-runner"), &binary).unwrap();
    let adapter = dir.path().join("capture-tags-python");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/capture-tags-python"),
        &adapter,
    )
    .unwrap();
    fs::set_permissions(&adapter, fs::Permissions::from_mode(0o755)).unwrap();
    Installed { _dir: dir, binary }
}

fn site_module(host: &Host, body: &str) -> PathBuf {
    let dir = host.dir.path().join("site-python");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("site_capture.py"), body).unwrap();
    dir
}

#[test]
fn a_python_capture_module_of_the_original_works_by_name_and_by_path() {
    let sim = Sim::start();
    let host = Host::new();
    original_template(&host, &sim.url());
    original_executors(&host, &sim.url());
    let schema = original_shaped_schema(&host, &["x86_64".into(), "zen2".into(), "skylake".into()]);
    let modules = site_module(&host, SITE_CAPTURE);
    let installed = installed_with_adapter();

    // The original's unit line: a module name, imported from PYTHONPATH.
    let mut cmd = host.command_of(
        &installed.binary,
        &[
            "--timeout",
            "20",
            "--capture-tags",
            "site_capture",
            "--tag-schema",
            &schema,
        ],
    );
    cmd.env("PYTHONPATH", &modules).env("SITE_TAG", "debian");
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains("site capture loaded"), "{run:?}");
    let runners = sim.runners();
    assert_eq!(runners.len(), 2);
    for runner in &runners {
        for tag in ["zen2", "x86_64_v3", "x86_64", "debian"] {
            assert!(
                runner.tag_list.iter().any(|t| t == tag),
                "{tag}: {runner:#?}"
            );
        }
        // The module got the instance and the executor type.
        let target = format!("main-{}", runner.tag_list[1]);
        assert!(runner.tag_list.contains(&target), "{runner:#?}");
        assert!(
            !runner.tag_list.iter().any(|t| t.starts_with("custom_")),
            "{runner:#?}"
        );
    }

    // A path to the .py file works too, without PYTHONPATH; a value the
    // schema does not know becomes `custom_<value>`.
    let path = modules.join("site_capture.py");
    let mut cmd = host.command_of(
        &installed.binary,
        &[
            "--timeout",
            "20",
            "--capture-tags",
            path.to_str().unwrap(),
            "--tag-schema",
            &schema,
        ],
    );
    cmd.env("SITE_TAG", "mytag");
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        count(
            &sim.requests(),
            "PUT",
            &format!("/api/v4/runners/{}", runners[0].id)
        ),
        1
    );
    for runner in sim.runners() {
        for tag in ["zen2", "custom_mytag", "mytag"] {
            assert!(
                runner.tag_list.iter().any(|t| t == tag),
                "{tag}: {runner:#?}"
            );
        }
        assert!(
            !runner.tag_list.iter().any(|t| t == "debian"),
            "{runner:#?}"
        );
    }
}

#[test]
fn a_python_capture_module_that_fails_stops_the_run_before_any_request() {
    let sim = Sim::start();
    let host = Host::new();
    original_template(&host, &sim.url());
    original_executors(&host, &sim.url());
    let installed = installed_with_adapter();
    let modules = site_module(
        &host,
        "def capture_tags(instance, executor_type, env=None, tag_schema=None):\n    raise RuntimeError('no GPU found')\n",
    );

    for (module, pythonpath, expect) in [
        ("no_such_module", true, "cannot import `no_such_module`"),
        ("site_capture", true, "no GPU found"),
        ("site_capture", false, "cannot import `site_capture`"),
    ] {
        let mut cmd = host.command_of(&installed.binary, &["--capture-tags", module]);
        if pythonpath {
            cmd.env("PYTHONPATH", &modules);
        }
        let run = run_command(cmd);
        assert_eq!(run.code, 1, "{module}: {run:?}");
        assert!(run.stderr.contains(expect), "{module}: {run:?}");
        assert!(run.stderr.contains("--capture-tags"), "{run:?}");
    }
    // The adapter is held to the rules of any capture program run as
    // root: one that others may write is refused before it runs.
    let adapter = installed.binary.with_file_name("capture-tags-python");
    fs::set_permissions(&adapter, fs::Permissions::from_mode(0o757)).unwrap();
    let mut cmd = host.command_of(&installed.binary, &["--capture-tags", "site_capture"]);
    cmd.env("PYTHONPATH", &modules);
    let run = run_command(cmd);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("capture-tags-python") && run.stderr.contains("--capture-tags"),
        "{run:?}"
    );
    assert!(!run.stderr.contains("no GPU found"), "it ran: {run:?}");
    assert!(sim.requests().is_empty(), "{:#?}", sim.requests());
    assert!(!host.config_path().exists());

    // Without the adapter beside the binary or installed, the message names
    // where it is looked for.
    let run = host.run(&["--capture-tags", "site_capture"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("capture-tags-python")
            && run.stderr.contains("/usr/libexec/register-runner"),
        "{run:?}"
    );
}

/// The adapter runs under the rules of any capture program: a module that
/// hangs is killed with its process group after 10 s.
#[test]
fn a_python_capture_module_that_hangs_is_killed_after_the_time_limit() {
    let sim = Sim::start();
    let host = Host::new();
    original_template(&host, &sim.url());
    host.shell_executor(&sim.url());
    let installed = installed_with_adapter();
    let modules = site_module(
        &host,
        "import time\n\ndef capture_tags(instance, executor_type, env=None, tag_schema=None):\n    time.sleep(60)\n",
    );
    let mut cmd = host.command_of(&installed.binary, &["--capture-tags", "site_capture"]);
    cmd.env("PYTHONPATH", &modules);
    let started = std::time::Instant::now();
    let run = run_command(cmd);
    let elapsed = started.elapsed();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("within 10s"), "{run:?}");
    assert!(elapsed < std::time::Duration::from_secs(20), "{elapsed:?}");
    assert!(sim.requests().is_empty());
}

/// Where this tool differs from the original on purpose, the message says
/// what changed since the original and the fix; nothing is sent.
#[test]
fn deliberate_differences_from_the_original_say_what_changed() {
    let sim = Sim::start();
    let host = Host::new();
    original_template(&host, &sim.url());
    original_executors(&host, &sim.url());

    // The original went on without a schema when the file was missing.
    let missing = host.dir.path().join("tag_schema.json");
    let run = host.run(&["--tag-schema", missing.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    for part in [
        "tag_schema.json",
        "does not exist",
        "original register-runner",
        "remove --tag-schema",
    ] {
        assert!(run.stderr.contains(part), "{part}: {run:?}");
    }

    // The original named runners after their executor type: two shell
    // executors became one runner there.
    host.write_executor(
        "shell-2.toml",
        &format!("url = \"{}\"\nexecutor = \"shell\"\n", sim.url()),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    for part in [
        "shell.toml",
        "shell-2.toml",
        "after their executor type",
        "another `name`",
    ] {
        assert!(run.stderr.contains(part), "{part}: {run:?}");
    }
    assert!(sim.requests().is_empty(), "{:#?}", sim.requests());
}
