#!/usr/bin/env bash
# Tests of the packages packaging/build.sh made (CI runs it right after):
#   1. contents: dpkg-deb -c and rpm -qlp list every file an operator needs;
#      Recommends (not Depends) gitlab-runner; the rpm Obsoletes gitlab-runner-auth;
#   2. the binary: highest GLIBC_ symbol version <= 2.28 (objdump -T), the same
#      binary in both packages, --version with git revision and build target;
#   3. the units: `systemd-analyze verify` clean, `systemd-analyze security
#      --offline=true` exposure of the register-runner sandbox;
#   4. dpkg -i on this machine: register-runner --version, man register-runner,
#      bash completion, the /etc/gitlab-runner link, the gitlab-runner user;
#      dpkg --purge leaves none of the package's files.
# Needs root (dpkg -i), dpkg-deb, rpm, objdump, systemd-analyze, man (installs
# Debian's rpm, binutils, cpio, systemd and man-db with apt-get when one is missing).
# Whatever it installs with dpkg -i, or places for the test, it removes on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

MAX_GLIBC=2.28
# systemd-analyze security's exposure (0.0 safest .. 10.0) the sandboxed unit must stay under.
MAX_EXPOSURE=3.0

version=$(cargo metadata --no-deps --format-version 1 --locked |
  python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "register-runner"))')
deb=target/packages/register-runner_${version}_amd64.deb
rpm=target/packages/register-runner-$version.x86_64.rpm
for f in "$deb" "$rpm"; do
  [ -f "$f" ] || { echo "$f is missing: run packaging/build.sh first" >&2; exit 1; }
done

need=()
command -v rpm >/dev/null || need+=(rpm)
command -v objdump >/dev/null || need+=(binutils)
command -v cpio >/dev/null || need+=(cpio)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v man >/dev/null || need+=(man-db)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
check() { # description command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

work=$(mktemp -d)
placed_stub=
created_user=
created_etc=
cleanup() {
  if dpkg-query -W -f='${Status}' register-runner 2>/dev/null | grep -q installed; then
    dpkg --purge register-runner >/dev/null || true
  fi
  if [ -n "$placed_stub" ]; then rm -f /usr/bin/gitlab-runner; fi
  if [ -n "$created_user" ]; then userdel -r gitlab-runner 2>/dev/null || true; fi
  if [ -n "$created_etc" ]; then rmdir /etc/gitlab-runner 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1. contents
shared_files=(
  /usr/bin/register-runner
  /usr/libexec/register-runner/capture-tags-python
  /usr/share/man/man1/register-runner.1.gz
  /usr/share/bash-completion/completions/register-runner
  /usr/share/fish/vendor_completions.d/register-runner.fish
  /usr/share/doc/register-runner/README.md
  /usr/share/doc/register-runner/examples/main.env
  /usr/share/doc/register-runner/examples/etc-gitlab-runner/config.template.main.toml
)
for f in examples/etc-gitlab-runner/main/*.toml; do
  shared_files+=("/usr/share/doc/register-runner/examples/etc-gitlab-runner/main/${f##*/}")
done
deb_files=("${shared_files[@]}"
  /usr/share/zsh/vendor-completions/_register-runner
  /lib/systemd/system/gitlab-runner@.service
  /lib/systemd/system/register-runner@.service)
rpm_files=("${shared_files[@]}"
  /usr/share/zsh/site-functions/_register-runner
  /usr/lib/systemd/system/gitlab-runner@.service
  /usr/lib/systemd/system/register-runner@.service)

dpkg-deb -c "$deb" | awk '{ sub(/^\./, "", $6); print $6 }' >"$work/deb.list"
rpm -qlp "$rpm" >"$work/rpm.list" 2>/dev/null
for f in "${deb_files[@]}"; do
  check "deb has $f" grep -qxF "$f" "$work/deb.list"
done
for f in "${rpm_files[@]}"; do
  check "rpm has $f" grep -qxF "$f" "$work/rpm.list"
done
# /etc/gitlab-runner/register-runner: neither package ships it (cargo-deb would
# make it a conffile; cargo-generate-rpm has no links): the deb's postinst and
# the rpm's %posttrans make it (checked below, for the deb, once installed).
check "deb ships nothing under /etc" bash -c "! grep -q '^/etc/' '$work/deb.list'"
check "rpm ships nothing under /etc" bash -c "! grep -q '^/etc/' '$work/rpm.list'"
rpm -qp --scripts "$rpm" >"$work/rpm.scripts" 2>/dev/null
check "rpm %posttrans links /etc/gitlab-runner/register-runner" \
  bash -c "sed -n '/^posttrans/,\$p' '$work/rpm.scripts' | grep -qF 'ln -s /usr/bin/register-runner \"\$link\"'"
check "deb Recommends gitlab-runner" grep -qw gitlab-runner <(dpkg-deb -f "$deb" Recommends)
check "deb does not Depend on gitlab-runner" bash -c "! dpkg-deb -f '$deb' Depends Pre-Depends | grep -qw gitlab-runner"
check "rpm Recommends gitlab-runner" grep -qw gitlab-runner <(rpm -qp --recommends "$rpm" 2>/dev/null)
check "rpm does not Require gitlab-runner" bash -c "! rpm -qp --requires '$rpm' 2>/dev/null | grep -qw gitlab-runner"
check "rpm Obsoletes gitlab-runner-auth" grep -qw gitlab-runner-auth <(rpm -qp --obsoletes "$rpm" 2>/dev/null)
check "rpm %post creates the user gitlab-runner" \
  bash -c "sed -n '/^postinstall/,/^[a-z]* scriptlet/p' '$work/rpm.scripts' | grep -q 'useradd .* gitlab-runner'"

# --- 2. the binary
mkdir -p "$work/deb" "$work/rpm"
dpkg-deb -x "$deb" "$work/deb"
# Debian's rpm2cpio exits 1 after writing the whole archive; cmp below checks it.
rpm2cpio "$rpm" >"$work/rpm.cpio" || true
(cd "$work/rpm" && cpio -idm --quiet <"$work/rpm.cpio")
bin=$work/deb/usr/bin/register-runner
newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
echo "     highest GLIBC_ symbol version: $newest"
check "binary needs glibc <= $MAX_GLIBC (highest GLIBC_$newest)" \
  test "$(printf '%s\n%s\n' "$newest" "$MAX_GLIBC" | sort -V | tail -n 1)" = "$MAX_GLIBC"
check "rpm holds the same binary as the deb" cmp -s "$bin" "$work/rpm/usr/bin/register-runner"
check "binary is stripped" bash -c "! objdump -h '$bin' | grep -q '\.debug_info'"
"$bin" --version >"$work/version" 2>&1 || true
check "--version: version, git revision, build target" bash -c "
  grep -qx 'register-runner $version' '$work/version' &&
  grep -qE '^Git revision: ([0-9a-f]{7,}|unknown)$' '$work/version' &&
  grep -qx 'Build target: x86_64-unknown-linux-gnu' '$work/version'"
sed 's/^/     /' "$work/version"

# --- 4. (first half) install: the units are verified as installed
if dpkg-query -W -f='${Status}' register-runner 2>/dev/null | grep -q installed; then
  echo "register-runner is installed on this machine already; not testing dpkg -i here" >&2
  exit 1
fi
getent passwd gitlab-runner >/dev/null || created_user=1
[ -d /etc/gitlab-runner ] || created_etc=1
if dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1; then ok "dpkg -i"; else fail "dpkg -i"; cat "$work/dpkg-i.log"; fi
check "installed register-runner --version" bash -c "register-runner --version | grep -qx 'Build target: x86_64-unknown-linux-gnu'"
check "/etc/gitlab-runner/register-runner is a link to /usr/bin/register-runner" \
  test "$(readlink /etc/gitlab-runner/register-runner)" = /usr/bin/register-runner
check "/etc/gitlab-runner/register-runner runs it" bash -c "/etc/gitlab-runner/register-runner --version | grep -qx 'register-runner $version'"
check "the user gitlab-runner exists" bash -c "getent passwd gitlab-runner >/dev/null"
if [ -n "$created_etc" ]; then
  check "/etc/gitlab-runner created 0700" test "$(stat -c %a /etc/gitlab-runner)" = 700
fi
MANPAGER=cat MANWIDTH=100 man register-runner >"$work/man.txt" 2>"$work/man.err" || true
check "man register-runner shows options, files, exit status, environment" bash -c "
  grep -q -- '--service-instance' '$work/man.txt' && grep -q '^FILES' '$work/man.txt' &&
  grep -q '^EXIT STATUS' '$work/man.txt' && grep -q '^ENVIRONMENT' '$work/man.txt' &&
  grep -q 'CREDENTIALS_DIRECTORY' '$work/man.txt'" || { cat "$work/man.err"; }
check "bash completion offers --service-instance and --dry-run" bash -c '
  source /usr/share/bash-completion/completions/register-runner
  fn=$(complete -p register-runner | grep -o -- "-F [^ ]*" | cut -c4-)
  COMP_WORDS=(register-runner --)
  COMP_CWORD=1
  COMP_LINE="register-runner --"
  COMP_POINT=${#COMP_LINE}
  "$fn" register-runner -- register-runner
  printf "%s\n" "${COMPREPLY[@]}" | grep -qx -- --service-instance &&
  printf "%s\n" "${COMPREPLY[@]}" | grep -qx -- --dry-run'
if command -v zsh >/dev/null; then
  check "zsh completion parses" zsh -n /usr/share/zsh/vendor-completions/_register-runner
fi
if command -v fish >/dev/null; then
  check "fish completion parses" fish -n /usr/share/fish/vendor_completions.d/register-runner.fish
fi

# --- 3. the units, as installed (verify needs the binaries they name)
if [ ! -e /usr/bin/gitlab-runner ]; then
  printf '#!/bin/sh\nexit 0\n' >/usr/bin/gitlab-runner
  chmod 755 /usr/bin/gitlab-runner
  placed_stub=1
fi
for unit in gitlab-runner@main.service register-runner@main.service; do
  if systemd-analyze verify "/lib/systemd/system/$unit" >"$work/verify.log" 2>&1 && [ ! -s "$work/verify.log" ]; then
    ok "systemd-analyze verify $unit: clean"
  else
    fail "systemd-analyze verify $unit"
    cat "$work/verify.log"
  fi
done
exposure() { # unit -> the overall exposure level, e.g. 1.9
  systemd-analyze security --offline=true "/lib/systemd/system/$1" 2>/dev/null |
    sed -n 's/^→ Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
sandboxed=$(exposure register-runner@main.service)
runner=$(exposure gitlab-runner@main.service)
echo "     systemd-analyze security --offline=true: register-runner@main ${sandboxed:-?}, gitlab-runner@main ${runner:-?}"
check "register-runner@ exposure ${sandboxed:-?} <= $MAX_EXPOSURE" \
  test -n "$sandboxed" -a "$(printf '%s\n%s\n' "$sandboxed" "$MAX_EXPOSURE" | sort -g | tail -n 1)" = "$MAX_EXPOSURE"
if [ -n "$placed_stub" ]; then
  rm -f /usr/bin/gitlab-runner
  placed_stub=
fi

# --- 4. (second half) purge
dpkg --purge register-runner >"$work/purge.log" 2>&1 && ok "dpkg --purge" || { fail "dpkg --purge"; cat "$work/purge.log"; }
left=()
for f in "${deb_files[@]}" /etc/gitlab-runner/register-runner /usr/share/doc/register-runner; do
  if [ -e "$f" ] || [ -L "$f" ]; then left+=("$f"); fi
done
check "purge leaves none of the package's files (left: ${left[*]:-none})" test ${#left[@]} -eq 0

echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
