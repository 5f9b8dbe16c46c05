//! Herd benchmark: a fleet of runner hosts started at the same moment
//! against one GitLab that rate-limits (SPEC §5, issue 8). Prints figures.
//! `cargo bench --bench herd`
//!
//! For each rate limit, 50 hosts (two executors each, own host name and
//! system id) run `register-runner` at once, first on fresh prefixes (every
//! runner created), then again on the configs they wrote (a restart storm:
//! verifies, listings and detail reads). It prints how long until every
//! host was done, the requests GitLab let through and refused, and the
//! time the rate limit itself imposes (requests let through ÷ allowed
//! rate). Each run must end with every host at exit 0, none started on a
//! fallback, and exactly one runner per executor: that is checked, and a
//! failure stops the benchmark.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

const HOSTS: usize = 50;
const EXECUTORS: usize = 2;

fn main() {
    println!(
        "{:>5} {:>10} {:>8} {:>12} {:>9} {:>9} {:>12} {:>8}",
        "hosts", "limit/s", "run", "converged", "allowed", "refused", "imposed", "ratio"
    );
    for limit in [50u32, 100] {
        let sim = Sim::start_with(SimOptions {
            rate_limit_per_sec: Some(limit),
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let prefixes: Vec<PathBuf> = (0..HOSTS)
            .map(|i| lay_out(&dir.path().join(format!("host{i:02}")), &sim.url(), i))
            .collect();
        for run in ["fresh", "restart"] {
            sim.clear_requests();
            let took = herd(&prefixes);
            let log = sim.requests();
            let refused = log.iter().filter(|r| r.status == 429).count();
            let allowed = log.len() - refused;
            let imposed = Duration::from_secs_f64(allowed as f64 / f64::from(limit));
            assert_eq!(
                sim.runners().len(),
                HOSTS * EXECUTORS,
                "a duplicate or missing runner"
            );
            println!(
                "{:>5} {:>10} {:>8} {:>10.2} s {:>9} {:>9} {:>10.2} s {:>8.2}",
                HOSTS,
                limit,
                run,
                took.as_secs_f64(),
                allowed,
                refused,
                imposed.as_secs_f64(),
                took.as_secs_f64() / imposed.as_secs_f64()
            );
        }
    }
    println!(
        "ratio: time to converge ÷ time the rate limit imposes (target ≤ 1.5; refused < allowed)"
    );
}

/// Starts every host at once; returns when the last one is done.
fn herd(prefixes: &[PathBuf]) -> Duration {
    let started = Instant::now();
    let children: Vec<_> = prefixes
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            Command::new(env!("CARGO_BIN_EXE_register-runner"))
                .arg("--prefix")
                .arg(prefix)
                .args([
                    "--hostname",
                    &format!("herd{i:02}"),
                    "--timeout",
                    "120",
                    "-q",
                ])
                .env_remove("RUST_LOG")
                .env_remove("REGISTER_RUNNER_NO_RETRY_DELAY")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "host {i} failed: {stderr}");
        assert!(
            !stderr.contains("last config"),
            "host {i} fell back to its last config: {stderr}"
        );
    }
    started.elapsed()
}

fn lay_out(prefix: &Path, url: &str, host: usize) -> PathBuf {
    fs::create_dir_all(prefix.join("main")).unwrap();
    for dir in [prefix.to_path_buf(), prefix.join("main")] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    fs::write(
        prefix.join(".runner_system_id"),
        format!("r_herd{host:02}0000000"),
    )
    .unwrap();
    fs::write(
        prefix.join("config.template.main.toml"),
        format!("concurrent = 2\n\n[[client_configs]]\nurl = \"{url}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n"),
    )
    .unwrap();
    for e in 0..EXECUTORS {
        fs::write(
            prefix.join(format!("main/{e}.toml")),
            format!("url = \"{url}\"\nexecutor = \"shell\"\nname = \"herd {host} {e}\"\n"),
        )
        .unwrap();
    }
    prefix.to_path_buf()
}
