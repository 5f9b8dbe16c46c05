//! Integration tests: the real `register-runner` binary against the GitLab
//! simulator, asserting on the simulator's request log and state and on the
//! files written. One test binary (cheap to link), one module per area.

mod bad_input;
mod cli;
mod coverage;
mod dry_run;
mod fuzz;
mod migration;
mod operator;
mod ownership;
mod promises;
mod reliability;
mod security_local;
mod security_server;
mod speed;
mod staging;
mod support;
mod sync;
mod tls;
