//! Build script: records the git revision and the build target for
//! `register-runner --version` (issue 11), as gitlab-runner's `--version`
//! shows its revision and platform.
//!
//! The revision comes from `REGISTER_RUNNER_GIT_REVISION` when set (a
//! distribution building from a tarball can pass it), else from `git` when
//! the source is a git checkout, else it is "unknown": a clean clone and a
//! tarball without `.git` both build.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=REGISTER_RUNNER_GIT_REVISION");

    let revision = match std::env::var("REGISTER_RUNNER_GIT_REVISION") {
        Ok(rev) if !rev.trim().is_empty() => rev.trim().to_string(),
        _ => {
            // Only a checkout of this very package counts: a tarball unpacked
            // inside some other git repository must not report that one's HEAD.
            let top = git(&["rev-parse", "--show-toplevel"]).map(PathBuf::from);
            let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .canonicalize()
                .ok();
            match (top.and_then(|t| t.canonicalize().ok()), here) {
                (Some(top), Some(here)) if top == here => {
                    // Rebuild when HEAD moves: HEAD itself, the branch it names, packed refs.
                    // (Only files that exist: cargo reruns a build script on
                    // every build while a file it watches is missing.)
                    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
                    watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
                    for name in watch {
                        if let Some(path) = git(&["rev-parse", "--git-path", &name])
                            && std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                                .join(&path)
                                .exists()
                        {
                            println!("cargo:rerun-if-changed={path}");
                        }
                    }
                    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
                }
                _ => "unknown".into(),
            }
        }
    };
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=REGISTER_RUNNER_GIT_REVISION={revision}");
    println!("cargo:rustc-env=REGISTER_RUNNER_BUILD_TARGET={target}");
}
