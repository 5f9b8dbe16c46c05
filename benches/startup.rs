//! Start-up benchmark: how long `register-runner` adds to a runner host's
//! start, and how many requests it costs GitLab. Prints figures against
//! issue 13's targets; asserts only that each run succeeded.
//! `cargo bench --bench startup`
//!
//! For N executors on one GitLab (the simulator, with 0 ms and 20 ms of
//! latency per request), it measures the first run (N creates; the faster
//! of two, each on a fresh simulator) and the median of restarts (N
//! verifies, one listing page per 100 runners, N detail reads), each a
//! fresh process as under systemd; then the exit on bad input (time and
//! peak memory) and the size of the binary. Peak memory is the maximum
//! resident set `/usr/bin/time -f %M` reports for one more run (the
//! `ru_maxrss` of a child spawned from this process would count this
//! process's own memory, shared until exec).
//! The targets were set at 20 ms; at 0 ms they hold a fortiori.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

const RESTARTS: usize = 9;
const FIRST_RUNS: usize = 2;
const BAD_INPUT_RUNS: usize = 21;
const BIN: &str = env!("CARGO_BIN_EXE_register-runner");

/// Issue 13's targets: (N, steady restart, first run), in ms.
const TARGETS: [(usize, f64, Option<f64>); 4] = [
    (1, 35.0, None),
    (10, 75.0, None),
    (50, 300.0, Some(700.0)),
    (200, 1100.0, Some(2500.0)),
];

fn main() {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "register-runner startup benchmark; load average before: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<28} {:>8} {:>24} {:>7} {:>10} {:>9}",
        "case", "latency", "measured / target", "ratio", "requests", "peak RSS"
    );
    for latency_ms in [0u64, 20] {
        for (executors, restart_target, first_target) in TARGETS {
            bench(executors, latency_ms, restart_target, first_target);
        }
    }
    bad_input();
    let size = fs::metadata(BIN).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    row("release binary", "", size, 8.0, "MB", "", "");
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average after: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn bench(executors: usize, latency_ms: u64, restart_target: f64, first_target: Option<f64>) {
    let latency = format!("{latency_ms} ms");
    // The first run, on fresh simulators: the faster of FIRST_RUNS.
    let mut firsts = Vec::new();
    let mut kept = None;
    for _ in 0..FIRST_RUNS {
        let sim = Sim::start_with(SimOptions {
            latency: (latency_ms > 0).then(|| Duration::from_millis(latency_ms)),
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("gitlab-runner");
        lay_out(&prefix, &sim.url(), executors);
        let first = time_run(&prefix);
        assert_eq!(sim.runners().len(), executors, "first run did not converge");
        firsts.push((first, sim.requests().len()));
        kept = Some((sim, dir, prefix));
    }
    let (first, first_requests) = firsts.into_iter().min().unwrap();
    if let Some(target) = first_target {
        row(
            &format!("first run, N={executors}"),
            &latency,
            ms(first),
            target,
            "ms",
            &first_requests.to_string(),
            "",
        );
    }

    let (sim, _dir, prefix) = kept.unwrap();
    sim.clear_requests();
    let mut restarts: Vec<Duration> = (0..RESTARTS).map(|_| time_run(&prefix)).collect();
    let requests = sim.requests().len() as f64 / RESTARTS as f64;
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.method == "GET" || r.path == "/api/v4/runners/verify"),
        "a steady restart changed something"
    );
    restarts.sort();
    let median = restarts[RESTARTS / 2];
    row(
        &format!("steady restart, N={executors}"),
        &latency,
        ms(median),
        restart_target,
        "ms",
        &format!("{requests:.0}"),
        &mib(peak_rss(&prefix, 0)),
    );
}

/// A template that does not parse: exit 1 before any request.
fn bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("gitlab-runner");
    lay_out(&prefix, "https://gitlab.invalid", 1);
    fs::write(
        prefix.join("config.template.main.toml"),
        "concurrent = \n[[client_configs]]\n",
    )
    .unwrap();
    let mut runs: Vec<Duration> = (0..BAD_INPUT_RUNS).map(|_| run(&prefix, 1)).collect();
    let peak = (0..3).map(|_| peak_rss(&prefix, 1)).max().unwrap_or(0);
    runs.sort();
    let median = runs[BAD_INPUT_RUNS / 2];
    row("bad-input exit, time", "", ms(median), 3.0, "ms", "0", "");
    row(
        "bad-input exit, peak RSS",
        "",
        peak as f64 / 1024.0,
        8.0,
        "MiB",
        "0",
        "",
    );
}

fn row(
    case: &str,
    latency: &str,
    measured: f64,
    target: f64,
    unit: &str,
    requests: &str,
    rss: &str,
) {
    let figures = format!("{measured:.1} {unit} / {target} {unit}");
    println!(
        "{case:<28} {latency:>8} {figures:>24} {:>7.2} {requests:>10} {rss:>9}",
        measured / target
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

/// One successful run: wall time.
fn time_run(prefix: &Path) -> Duration {
    run(prefix, 0)
}

/// `program ARGS… --prefix PREFIX --hostname bench-node01 -q`, quiet.
fn command(program: &str, args: &[&std::ffi::OsStr], prefix: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg("--prefix")
        .arg(prefix)
        .args(["--hostname", "bench-node01", "-q"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// One run that must exit with `expect`: wall time.
fn run(prefix: &Path, expect: i32) -> Duration {
    let started = Instant::now();
    let status = command(BIN, &[], prefix).status().unwrap();
    let took = started.elapsed();
    assert_eq!(status.code(), Some(expect), "register-runner: {status}");
    took
}

/// One more run, as `/usr/bin/time -f %M -o FILE register-runner …`: its
/// peak resident set, KiB.
fn peak_rss(prefix: &Path, expect: i32) -> u64 {
    let out = tempfile::NamedTempFile::new().unwrap();
    let args = [
        "-f".as_ref(),
        "%M".as_ref(),
        "-o".as_ref(),
        out.path().as_os_str(),
        BIN.as_ref(),
    ];
    let status = command("/usr/bin/time", &args, prefix)
        .status()
        .expect("/usr/bin/time");
    assert_eq!(status.code(), Some(expect), "register-runner: {status}");
    let text = fs::read_to_string(out.path()).unwrap();
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
