//! Exit codes (SPEC §1), in one place.
//!
//! `0` success (with `--dry-run`: nothing to change), `1` any failure (bad
//! input, GitLab refused, I/O), `2` `--dry-run` found changes, `64` usage
//! error. Every path out of the program goes through [`ExitCode`].

/// What the run ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success,
    Failure,
    ChangesPending,
    Usage,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::ChangesPending => 2,
            ExitCode::Usage => 64,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}
