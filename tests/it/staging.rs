//! Staged inputs (issue 12 item 6): `--dry-run --executor-dir DIR` and
//! `--template FILE` read proposed files from outside the prefix, plan
//! against this host's token store and GitLab, and change nothing: no
//! mutating request, the prefix's files byte for byte as they were.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gitlab_sim::Sim;

use crate::support::*;

/// Every file under `dir` (recursively): relative path → (bytes, mode).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_dir() {
                out.insert(rel, (Vec::new(), mode));
                stack.push(path);
            } else {
                out.insert(rel, (fs::read(&path).unwrap(), mode));
            }
        }
    }
    out
}

/// A synced host with three executors, and a staged copy of its executor
/// directory elsewhere (under the system temp dir) with docker removed and
/// a second shell runner added.
fn synced_host_and_staged_dir(sim: &Sim) -> (Host, tempfile::TempDir, PathBuf) {
    let host = Host::fresh(sim, Executors::Three);
    let first = host.run(&[]);
    assert_eq!(first.code, 0, "{first:?}");
    let staging = tempfile::tempdir().unwrap();
    let staged = staging.path().join("main");
    fs::create_dir(&staged).unwrap();
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o700)).unwrap();
    for file in ["10-shell.toml", "30-custom.toml"] {
        fs::copy(host.executor_dir().join(file), staged.join(file)).unwrap();
    }
    fs::write(
        staged.join("40-shell-big.toml"),
        format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"ci-node01 big shell\"\ntags = [\"big\"]\n",
            sim.url()
        ),
    )
    .unwrap();
    (host, staging, staged)
}

#[test]
fn dry_run_on_a_staged_executor_dir_plans_against_this_host_and_changes_nothing() {
    let sim = Sim::start();
    let (host, _staging, staged) = synced_host_and_staged_dir(&sim);
    let runners_before = sim.runners();
    let docker = runners_before
        .iter()
        .find(|r| r.description.contains("docker"))
        .expect("the docker runner");
    let prefix_before = tree(&host.prefix);
    sim.clear_requests();

    let run = host.run(&["--dry-run", "--executor-dir", staged.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    let line = |verb: &str, name: &str| {
        run.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(verb) && l.contains(name))
            .map(str::to_string)
    };
    assert!(line("create", "ci-node01 big shell").is_some(), "{run:?}");
    let delete =
        line("delete", "ci-node01 main docker Runner").unwrap_or_else(|| panic!("{run:?}"));
    assert!(delete.contains(&format!("#{}", docker.id)), "{delete}");
    // The shell and custom runners are the prefix's, matched by their tokens.
    for kept in [
        "ci-node01 main shell Runner",
        "ci-node01 main custom Runner",
    ] {
        assert!(
            line("create", kept).is_none(),
            "{kept} planned anew:\n{run:?}"
        );
        assert!(
            line("delete", kept).is_none(),
            "{kept} planned deleted:\n{run:?}"
        );
    }

    assert_eq!(
        mutating(&sim.requests()),
        Vec::<String>::new(),
        "GitLab changed"
    );
    assert_eq!(sim.runners().len(), runners_before.len());
    assert_eq!(tree(&host.prefix), prefix_before, "the prefix changed");
    assert_no_secret(&run, &secrets(&sim));

    // The same plan as JSON, for a rollout tool to collect.
    let json = host.run(&[
        "--dry-run",
        "--output",
        "json",
        "--executor-dir",
        staged.to_str().unwrap(),
    ]);
    assert_eq!(json.code, 2, "{json:?}");
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON plan");
    let text = plan.to_string();
    assert!(text.contains("ci-node01 big shell"), "{text}");
    assert!(text.contains("ci-node01 main docker Runner"), "{text}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(tree(&host.prefix), prefix_before);

    // `check` reads the staged directory too.
    let check = host.run(&["check", "--executor-dir", staged.to_str().unwrap()]);
    assert_eq!(check.code, 0, "{check:?}");
}

#[test]
fn a_staged_template_is_planned_and_its_mistakes_named() {
    let sim = Sim::start();
    let (host, staging, _staged) = synced_host_and_staged_dir(&sim);
    let prefix_before = tree(&host.prefix);
    let template = staging.path().join("config.template.main.toml");
    let text = fs::read_to_string(host.template_path())
        .unwrap()
        .replace("concurrent = 4", "concurrent = 8");
    fs::write(&template, &text).unwrap();
    fs::set_permissions(&template, fs::Permissions::from_mode(0o600)).unwrap();
    sim.clear_requests();

    let run = host.run(&["--dry-run", "--template", template.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("-concurrent = 4\n+concurrent = 8"),
        "{run:?}"
    );

    // The staged file gets the checks the prefix's would: its typos are
    // named with its own path, and so is a mode others can write.
    fs::write(&template, text.replace("concurrent = 8", "concurent = 8")).unwrap();
    let run = host.run(&["--dry-run", "--template", template.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{run:?}");
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains("concurent"))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(
        warning.contains(template.to_str().unwrap())
            && warning.contains("did you mean `concurrent`"),
        "{warning}"
    );
    fs::set_permissions(&template, fs::Permissions::from_mode(0o666)).unwrap();
    let run = host.run(&["--dry-run", "--template", template.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(template.to_str().unwrap()), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");

    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(tree(&host.prefix), prefix_before);
}

#[test]
fn a_staged_dir_others_can_write_is_refused_but_its_parent_is_not_checked() {
    let sim = Sim::start();
    let (host, _staging, staged) = synced_host_and_staged_dir(&sim);
    let prefix_before = tree(&host.prefix);
    // The parent is a temp dir, mode 0700 under /tmp (1777): not checked.
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o777)).unwrap();
    sim.clear_requests();

    let run = host.run(&["--dry-run", "--executor-dir", staged.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(staged.to_str().unwrap()) && run.stderr.contains("0777"),
        "{run:?}"
    );
    assert!(sim.requests().is_empty(), "sent {:?}", sim.requests().len());
    assert_eq!(tree(&host.prefix), prefix_before);
}

#[test]
fn staged_inputs_without_dry_run_are_a_usage_error() {
    let sim = Sim::start();
    let (host, staging, staged) = synced_host_and_staged_dir(&sim);
    let prefix_before = tree(&host.prefix);
    sim.clear_requests();
    let template = staging.path().join("t.toml");
    for args in [
        vec!["--executor-dir", staged.to_str().unwrap()],
        vec!["--template", template.to_str().unwrap()],
    ] {
        let run = host.run(&args);
        assert_eq!(run.code, 64, "{run:?}");
        assert!(
            run.stderr.contains(args[0]) && run.stderr.contains("only with --dry-run"),
            "{run:?}"
        );
    }
    assert!(sim.requests().is_empty());
    assert_eq!(tree(&host.prefix), prefix_before);
}
