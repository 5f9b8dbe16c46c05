//! Start-up benchmark: how long `register-runner` adds to a runner host's
//! start, and how many requests it costs GitLab. Prints figures; asserts
//! nothing. `cargo bench --bench startup`
//!
//! For N executors on one GitLab (the simulator, with 0 ms and 20 ms of
//! latency per request), it measures the first run (N creates) and the
//! median and max of restarts (N verifies, one listing, N detail reads),
//! each a fresh process as under systemd.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

const RESTARTS: usize = 15;

fn main() {
    println!(
        "{:>9} {:>8} {:>12} {:>15} {:>12} {:>18}",
        "executors", "latency", "first run", "restart median", "restart max", "requests/restart"
    );
    for latency_ms in [0u64, 20] {
        for executors in [1usize, 10, 50] {
            bench(executors, latency_ms);
        }
    }
}

fn bench(executors: usize, latency_ms: u64) {
    let sim = Sim::start_with(SimOptions {
        latency: (latency_ms > 0).then(|| Duration::from_millis(latency_ms)),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("gitlab-runner");
    lay_out(&prefix, &sim.url(), executors);

    let first = time_run(&prefix);
    assert_eq!(sim.runners().len(), executors, "first run did not converge");
    sim.clear_requests();
    let mut restarts: Vec<Duration> = (0..RESTARTS).map(|_| time_run(&prefix)).collect();
    restarts.sort();
    let requests = sim.requests().len() as f64 / RESTARTS as f64;
    println!(
        "{:>9} {:>6}ms {:>10.1}ms {:>13.1}ms {:>10.1}ms {:>18.1}",
        executors,
        latency_ms,
        ms(first),
        ms(restarts[RESTARTS / 2]),
        ms(restarts[RESTARTS - 1]),
        requests
    );
}

fn lay_out(prefix: &Path, url: &str, executors: usize) {
    fs::create_dir_all(prefix.join("main")).unwrap();
    for dir in [prefix.to_path_buf(), prefix.join("main")] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    fs::write(
        prefix.join("config.template.main.toml"),
        format!("concurrent = 8\n\n[[client_configs]]\nurl = \"{url}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n"),
    )
    .unwrap();
    for i in 0..executors {
        fs::write(
            prefix.join(format!("main/{i:03}.toml")),
            format!("url = \"{url}\"\nexecutor = \"docker\"\nname = \"bench {i}\"\n\n[docker]\nimage = \"alpine\"\n"),
        )
        .unwrap();
    }
}

fn time_run(prefix: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_register-runner"))
        .arg("--prefix")
        .arg(prefix)
        .args(["--hostname", "bench-node01", "-q"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "register-runner failed");
    took
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
