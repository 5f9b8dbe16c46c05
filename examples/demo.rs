//! The demo: a GitLab simulator, the example prefix in `examples/`, and
//! register-runner's run (in this process, with the command line that
//! systemd's `ExecStartPre=` would give) against them, step by step.
//!
//! `cargo run --example demo`

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Parser;
use gitlab_sim::{ADMIN_PAT, Sim};
use register_runner::cli::Cli;
use register_runner::env::Env;
use register_runner::{app, logging, output};

const EXAMPLE_URL: &str = "https://gitlab.example.com";

fn main() -> Result<()> {
    let sim = Sim::start();
    let work = tempfile::tempdir()?;
    let prefix = work.path().join("gitlab-runner");
    lay_out_prefix(&prefix, &sim.url())?;
    let args = |extra: &[&str]| {
        let mut args = vec![
            "register-runner".to_string(),
            "--prefix".into(),
            prefix.display().to_string(),
            "--hostname".into(),
            "demo-node01".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Cli::parse_from(args)
    };
    logging::init(&args(&[]), &Env::from_process());
    println!(
        "GitLab simulator at {}; prefix {}\n",
        sim.url(),
        prefix.display()
    );

    step("1. First start of a fresh host: its three runners are created");
    run(&sim, &args(&[]))?;
    println!("\n{}:", prefix.join("config.main.toml").display());
    let config = fs::read_to_string(prefix.join("config.main.toml"))?;
    println!("{}", indent(&output::mask_secrets(&config)));
    println!("(tokens shown in short form here; the file holds them whole, mode 0600)");
    println!("\nGitLab's runners and the tags that tell this host's apart:");
    for r in sim.runners() {
        println!("  #{} {:?}: {}", r.id, r.description, r.tag_list.join(", "));
    }

    step("2. Restart: every token verified, nothing created, the file untouched");
    let config_path = prefix.join("config.main.toml");
    let before = (
        fs::read(&config_path)?,
        fs::metadata(&config_path)?.modified()?,
    );
    run(&sim, &args(&[]))?;
    let after = (
        fs::read(&config_path)?,
        fs::metadata(&config_path)?.modified()?,
    );
    println!(
        "config.main.toml: {}",
        if before == after {
            "same bytes, same modification time (not rewritten)"
        } else {
            "CHANGED (unexpected)"
        }
    );

    step("3. The docker executor file is removed; --dry-run shows the plan and the diff");
    fs::remove_file(prefix.join("main/20-docker.toml"))?;
    run(&sim, &args(&["--dry-run"]))?;

    step("4. Restart: the stale runner is deleted in GitLab and from the config");
    run(&sim, &args(&[]))?;
    println!(
        "GitLab now has {} runner(s): {}",
        sim.runners().len(),
        sim.runners()
            .iter()
            .map(|r| format!("#{} {:?}", r.id, r.description))
            .collect::<Vec<_>>()
            .join(", ")
    );

    step("5. --dry-run again: nothing to change (exit 0)");
    run(&sim, &args(&["--dry-run"]))?;
    Ok(())
}

/// Copies `examples/etc-gitlab-runner` to `prefix`, pointed at the simulator.
fn lay_out_prefix(prefix: &Path, url: &str) -> Result<()> {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/etc-gitlab-runner");
    for dir in [prefix.to_path_buf(), prefix.join("main")] {
        fs::create_dir_all(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    }
    for relative in [
        "config.template.main.toml",
        "main/10-shell.toml",
        "main/20-docker.toml",
        "main/30-batch.toml",
    ] {
        let text =
            fs::read_to_string(example.join(relative)).with_context(|| relative.to_string())?;
        fs::write(prefix.join(relative), text.replace(EXAMPLE_URL, url))?;
    }
    // What LoadCredential= would provide; here it sits in the prefix.
    fs::write(prefix.join("gitlab-pat"), ADMIN_PAT)?;
    fs::set_permissions(prefix.join("gitlab-pat"), fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn run(sim: &Sim, cli: &Cli) -> Result<()> {
    sim.clear_requests();
    let code = match app::run(cli, &Env::from_process()) {
        Ok(code) => code.code(),
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    println!("\nregister-runner exited {code}; GitLab saw:");
    for r in sim.requests() {
        let query = if r.query.is_empty() {
            String::new()
        } else {
            format!("?{}", r.query)
        };
        println!("  {} {}{} -> {}", r.method, r.path, query, r.status);
    }
    Ok(())
}

fn step(title: &str) {
    println!("\n=== {title}\n");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
