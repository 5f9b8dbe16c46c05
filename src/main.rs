//! The `register-runner` binary: parse the command line, set up logging,
//! run, and turn the outcome into an exit code (SPEC §1).

use clap::Parser;
use register_runner::cli::Cli;
use register_runner::env::Env;
use register_runner::exit::ExitCode;
use register_runner::{app, logging};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
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
    match app::run(&cli, &env) {
        Ok(code) => code.into(),
        Err(err) => {
            // Printed here, once, whatever the log filter (`-q`,
            // `RUST_LOG=off`): a failed run always says why.
            logging::print_final_error(&cli, &env, &format!("{err:#}"));
            ExitCode::Failure.into()
        }
    }
}
