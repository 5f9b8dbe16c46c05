//! register-runner: make this host's GitLab runners match the executor
//! files under a prefix, then write gitlab-runner's `config.<instance>.toml`
//! and `.runner_system_id`. Runs as `ExecStartPre=` of a gitlab-runner unit.

pub mod app;
pub mod apply;
pub mod check;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod env;
pub mod exit;
pub mod fsutil;
pub mod gitlab;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod output;
pub mod plan;
pub mod report;
pub mod secret;
pub mod store;
pub mod system_id;
pub mod tags;
