//! Generates the man page and the shell completions from the clap
//! definition (`register_runner::cli::Cli`), so every flag and subcommand
//! there appears in them without a hand-written copy. `packaging/build.sh`
//! runs it; by hand: `cargo run --example gen-docs -- OUT_DIR`.
//!
//! Writes `OUT_DIR/man/register-runner.1` (and one page per visible
//! subcommand, `register-runner-<name>.1`) and `OUT_DIR/completions/`
//! `register-runner.bash`, `_register-runner` (zsh), `register-runner.fish`.
//! The page's date is `SOURCE_DATE_EPOCH` when set (reproducible builds),
//! else today.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};
use register_runner::cli::{Cli, HELP_SECTIONS};

const NAME: &str = "register-runner";

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        bail!("usage: gen-docs OUT_DIR");
    };
    let out = PathBuf::from(out);
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();

    let man_dir = out.join("man");
    fs::create_dir_all(&man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    let date = page_date()?;
    write_file(&man_dir.join(format!("{NAME}.1")), |w| {
        main_page(&cmd, &date, w)
    })?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names a built subcommand's page "register-runner-<name>".
        let page = Man::new(sub.clone()).date(&date).source(source());
        write_file(&man_dir.join(page.get_filename()), |w| page.render(w))?;
    }

    let completions = out.join("completions");
    fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for (shell, file) in [
        (Shell::Bash, format!("{NAME}.bash")),
        (Shell::Zsh, format!("_{NAME}")),
        (Shell::Fish, format!("{NAME}.fish")),
    ] {
        write_file(&completions.join(file), |w| {
            clap_complete::generate(shell, &mut cmd, NAME, w);
            Ok(())
        })?;
    }
    Ok(())
}

/// The main page: clap_mangen's sections, with the files, exit status and
/// environment of `HELP_SECTIONS` as man page sections of their own (in the
/// order man-pages(7) gives) instead of one "EXTRA" block.
fn main_page(cmd: &clap::Command, date: &str, w: &mut dyn Write) -> std::io::Result<()> {
    let man = Man::new(cmd.clone()).date(date).source(source());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::new();
    for (title, entries) in HELP_SECTIONS {
        roff.control("SH", [*title]);
        for (term, description) in *entries {
            roff.control("TP", []);
            roff.text([bold(*term)]);
            roff.text([roman(*description)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("gitlab-runner"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5), "),
        bold("systemd-creds"),
        roman("(1); /usr/share/doc/register-runner/"),
    ]);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

fn source() -> String {
    format!("{NAME} {}", env!("CARGO_PKG_VERSION"))
}

fn page_date() -> Result<String> {
    let now = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => {
            let secs: i64 = epoch
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?} is not a number"))?;
            time::OffsetDateTime::from_unix_timestamp(secs)
                .with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?} is out of range"))?
        }
        Err(_) => time::OffsetDateTime::now_utc(),
    };
    Ok(now.date().to_string())
}

fn write_file(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    render(&mut file).with_context(|| format!("writing {}", path.display()))?;
    file.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
