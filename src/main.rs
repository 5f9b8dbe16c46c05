//! The `register-runner` binary: parse the command line, set up logging,
//! run, and turn the outcome into an exit code (SPEC §1).

use clap::Parser;
use register_runner::cli::{Cli, Command};
use register_runner::env::Env;
use register_runner::exit::ExitCode;
use register_runner::{app, check, logging};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse().and_then(|cli| cli.check_usage().map(|()| cli)) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Success
            };
            let _ = e.print();
            return code.into();
        }
    };
    let env = Env::from_process();
    logging::init(&cli, &env);
    let outcome = match &cli.command {
        Some(Command::Check(args)) => check::run(&cli.for_check(args), &env),
        None => app::run(&cli, &env),
    };
    match outcome {
        Ok(code) => code.into(),
        Err(err) => {
            // Printed here, once, whatever the log filter (`-q`,
            // `RUST_LOG=off`): a failed run always says why.
            logging::print_final_error(&cli, &env, &format!("{err:#}"));
            ExitCode::Failure.into()
        }
    }
}
