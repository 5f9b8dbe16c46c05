//! The `gitlab-sim` command: starts the simulator for people (demos, manual
//! tests, python-gitlab), prints its URL and the credentials it accepts, and
//! serves until Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gitlab_sim::{
    ADMIN_PAT, OWNED_GROUP_ID, OWNED_PROJECT_ID, REGISTRATION_TOKEN, Sim, SimOptions, USER_PAT,
};

/// A stateful stand-in for GitLab's runner API on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(name = "gitlab-sim", version, about)]
struct Args {
    /// Port to listen on (0 = a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sleep this many milliseconds before handling each request.
    #[arg(long, value_name = "N")]
    latency_ms: Option<u64>,
    /// Answer every Nth request with 502 Bad Gateway.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    fail_every: Option<u64>,
    /// Allow at most N requests per second; the rest get 429 with Retry-After.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    rate_limit: Option<u32>,
    /// Disable registration tokens: POST /runners answers 410 Gone.
    #[arg(long)]
    no_registration: bool,
    /// Expose `token` in GET /runners/:id (LLNL's runner_details patch).
    #[arg(long)]
    patched: bool,
    /// Runner tokens expire this many seconds after creation or reset.
    #[arg(long, value_name = "N")]
    token_lifetime_secs: Option<u64>,
    /// Serve HTTPS with a certificate from a CA made at start, and write
    /// that CA's certificate (PEM) to this file (for `tls_ca_file`).
    #[arg(long, value_name = "FILE")]
    tls_ca_out: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gitlab-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let opts = SimOptions {
        port: args.port,
        latency: args.latency_ms.map(Duration::from_millis),
        fail_every: args.fail_every,
        rate_limit_per_sec: args.rate_limit,
        registration_disabled: args.no_registration,
        patched: args.patched,
        token_lifetime: args.token_lifetime_secs.map(Duration::from_secs),
        tls: args.tls_ca_out.is_some(),
    };
    let sim = Sim::try_start_with(opts)
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;

    if let (Some(path), Some(pem)) = (&args.tls_ca_out, sim.ca_pem()) {
        std::fs::write(path, pem)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    }
    println!("gitlab-sim listening on {}", sim.url());
    if let Some(path) = &args.tls_ca_out {
        println!("  CA certificate:     {}", path.display());
    }
    println!("  API:                {}/api/v4", sim.url());
    println!("  admin PAT:          {ADMIN_PAT}");
    println!(
        "  user PAT:           {USER_PAT}  (Owner of group {OWNED_GROUP_ID} and project {OWNED_PROJECT_ID})"
    );
    if args.no_registration {
        println!("  registration token: disabled (POST /runners answers 410)");
    } else {
        println!("  registration token: {REGISTRATION_TOKEN}");
    }
    println!("Press Ctrl-C to stop.");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    let served = sim.requests().len();
    sim.stop();
    println!("gitlab-sim stopped after {served} requests");
    Ok(())
}
