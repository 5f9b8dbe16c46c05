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
//!
//! The `floor` column is the least a restart can take at the simulator's
//! measured round trip with at most 8 requests in flight,
//! `⌈requests / 8⌉ · RTT` (issue 13), before the process's own work; the
//! round trip with 8 in flight (8 kept-alive connections, each sending
//! one request at a time; median of 120) is printed before each latency's
//! rows, beside the round trip of a request alone. For the bad-input exit it is
//! `/bin/true` started the same way at the same moments.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

const RESTARTS: usize = 9;
const FIRST_RUNS: usize = 2;
/// Bad-input runs per sample; one sample is taken before, between and
/// after the latency rounds, so a few seconds of a busier machine (this
/// is a shared VM: a process start varies 1.7x within a minute) do not
/// decide the figure alone.
const BAD_INPUT_RUNS: usize = 15;
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
        "{:<28} {:>8} {:>24} {:>7} {:>10} {:>10} {:>9}",
        "case", "latency", "measured / target", "ratio", "requests", "floor", "peak RSS"
    );
    let mut bad_input = BadInput::new();
    bad_input.sample();
    for latency_ms in [0u64, 20] {
        let alone = round_trip(latency_ms, 1);
        let rtt = round_trip(latency_ms, 8);
        println!(
            "simulator at {latency_ms} ms: round trip {alone:.2} ms alone, {rtt:.2} ms with 8 in flight"
        );
        for (executors, restart_target, first_target) in TARGETS {
            bench(executors, latency_ms, rtt, restart_target, first_target);
        }
        bad_input.sample();
    }
    bad_input.report();
    https_restart(10, 20);
    let size = fs::metadata(BIN).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    Row {
        case: "release binary",
        measured: size,
        target: 8.0,
        unit: "MB",
        ..Row::default()
    }
    .print();
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average after: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The simulator's round trip at `latency_ms` with `lanes` requests in
/// flight (each lane one small request at a time on its own kept-alive
/// connection, 15 each), the median, in ms.
fn round_trip(latency_ms: u64, lanes: usize) -> f64 {
    let sim = Sim::start_with(SimOptions {
        latency: (latency_ms > 0).then(|| Duration::from_millis(latency_ms)),
        ..Default::default()
    });
    let url = sim.url();
    let address = url.trim_start_matches("http://").to_string();
    let lane = |address: String| {
        let mut conn = TcpStream::connect(&address).unwrap();
        conn.set_nodelay(true).unwrap();
        let request = format!(
            "GET /api/v4/runners/all?per_page=1 HTTP/1.1\r\nHost: {address}\r\nPRIVATE-TOKEN: {ADMIN_PAT}\r\n\r\n"
        );
        (0..15)
            .map(|_| {
                let started = Instant::now();
                conn.write_all(request.as_bytes()).unwrap();
                read_response(&mut conn);
                ms(started.elapsed())
            })
            .collect::<Vec<f64>>()
    };
    let mut times: Vec<f64> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..lanes)
            .map(|_| {
                let address = address.clone();
                scope.spawn(move || lane(address))
            })
            .collect();
        running
            .into_iter()
            .flat_map(|lane| lane.join().unwrap())
            .collect()
    });
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Reads one HTTP/1.1 response with a Content-Length.
fn read_response(conn: &mut TcpStream) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the simulator closed the connection");
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        if data.len() >= end + 4 + length {
            return;
        }
    }
}

fn bench(
    executors: usize,
    latency_ms: u64,
    rtt: f64,
    restart_target: f64,
    first_target: Option<f64>,
) {
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
        Row {
            case: &format!("first run, N={executors}"),
            latency: &latency,
            measured: ms(first),
            target,
            unit: "ms",
            requests: &first_requests.to_string(),
            ..Row::default()
        }
        .print();
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
    let floor = (requests / 8.0).ceil() * rtt;
    Row {
        case: &format!("steady restart, N={executors}"),
        latency: &latency,
        measured: ms(median),
        target: restart_target,
        unit: "ms",
        requests: &format!("{requests:.0}"),
        floor: &format!("{floor:.1} ms"),
        rss: &mib(peak_rss(&prefix, 0)),
    }
    .print();
}

/// A template that does not parse: exit 1 before any request. Timed
/// beside `/bin/true` started the same way, the floor of any process
/// start at that moment.
struct BadInput {
    _dir: tempfile::TempDir,
    prefix: std::path::PathBuf,
    runs: Vec<Duration>,
    baseline: Vec<Duration>,
}

impl BadInput {
    fn new() -> BadInput {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("gitlab-runner");
        lay_out(&prefix, "https://gitlab.invalid", 1);
        fs::write(
            prefix.join("config.template.main.toml"),
            "concurrent = \n[[client_configs]]\n",
        )
        .unwrap();
        BadInput {
            _dir: dir,
            prefix,
            runs: Vec::new(),
            baseline: Vec::new(),
        }
    }

    fn sample(&mut self) {
        for _ in 0..BAD_INPUT_RUNS {
            self.runs.push(run(&self.prefix, 1));
            let started = Instant::now();
            let status = command("/bin/true", &[], &self.prefix).status().unwrap();
            assert!(status.success());
            self.baseline.push(started.elapsed());
        }
    }

    fn report(mut self) {
        let peak = (0..3).map(|_| peak_rss(&self.prefix, 1)).max().unwrap_or(0);
        self.runs.sort();
        self.baseline.sort();
        let median = self.runs[self.runs.len() / 2];
        let baseline = self.baseline[self.baseline.len() / 2];
        Row {
            case: "bad-input exit, time",
            measured: ms(median),
            target: 3.0,
            unit: "ms",
            requests: "0",
            floor: &format!("{:.1} ms", ms(baseline)),
            ..Row::default()
        }
        .print();
        Row {
            case: "bad-input exit, peak RSS",
            measured: peak as f64 / 1024.0,
            target: 8.0,
            unit: "MiB",
            requests: "0",
            ..Row::default()
        }
        .print();
    }
}

/// One printed row; empty strings for the columns that do not apply.
#[derive(Default)]
struct Row<'a> {
    case: &'a str,
    latency: &'a str,
    measured: f64,
    target: f64,
    unit: &'a str,
    requests: &'a str,
    floor: &'a str,
    rss: &'a str,
}

impl Row<'_> {
    fn print(&self) {
        let Row {
            case,
            latency,
            measured,
            target,
            unit,
            requests,
            floor,
            rss,
        } = self;
        let figures = format!("{measured:.1} {unit} / {target} {unit}");
        println!(
            "{case:<28} {latency:>8} {figures:>24} {:>7.2} {requests:>10} {floor:>10} {rss:>9}",
            measured / target
        );
    }
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

/// Not a target row: the same restart over HTTPS (the simulator's own CA
/// in `tls_ca_file`, the system's trust store read too), for what TLS adds
/// on a real GitLab: a handshake per connection (8) and the trust store.
fn https_restart(executors: usize, latency_ms: u64) {
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(latency_ms)),
        tls: true,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("gitlab-runner");
    lay_out(&prefix, &sim.url(), executors);
    let ca = prefix.join("gitlab-ca.pem");
    fs::write(&ca, sim.ca_pem().unwrap()).unwrap();
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o600)).unwrap();
    let template = prefix.join("config.template.main.toml");
    let text = fs::read_to_string(&template).unwrap();
    fs::write(
        &template,
        format!("{text}tls_ca_file = \"gitlab-ca.pem\"\n"),
    )
    .unwrap();
    time_run(&prefix);
    let mut restarts: Vec<Duration> = (0..RESTARTS).map(|_| time_run(&prefix)).collect();
    restarts.sort();
    println!(
        "not a target: steady restart, N={executors}, over HTTPS at {latency_ms} ms: {:.1} ms",
        ms(restarts[RESTARTS / 2])
    );
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
