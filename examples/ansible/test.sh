#!/usr/bin/env bash
# Runs rollout.yml with ansible-core (-c local) on a fleet of two simulated
# hosts (node01, node02: a prefix each) against the GitLab simulator, and
# checks what an operator would: the fleet summary names each host's
# creates and deletes; planning changes neither GitLab nor any prefix; the
# files move into place only on the host asked for; and register-runner then
# applies them there (as the unit's ExecStartPre= would; no systemd here).
#
# Usage: examples/ansible/test.sh ANSIBLE_PLAYBOOK   (from the repository
# root, after `cargo build -p gitlab-sim --bin gitlab-sim --bin register-runner`)
set -euo pipefail
cd "$(dirname "$0")/../.."
playbook_bin=$1
playbook_bin=$(cd "$(dirname "$playbook_bin")" && pwd)/$(basename "$playbook_bin")
python=$(dirname "$playbook_bin")/python
root=$PWD
bin=$root/target/debug/register-runner
work=$root/target/ansible-test
rm -rf "$work"
mkdir -p "$work"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/gitlab-sim --port "$port" >"$work/gitlab-sim.log" 2>&1 &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.1
done
url=http://127.0.0.1:$port
pat=glpat-simadmin-0123456789  # gitlab_sim::ADMIN_PAT

fail() { echo "ansible example: FAILED: $*" >&2; exit 1; }

# Every runner GitLab has, with its description and tags (admin PAT).
runners() {
  python3 - "$url" "$pat" <<'PY'
import json, sys, urllib.request
url, pat = sys.argv[1:]
def get(path):
    req = urllib.request.Request(url + "/api/v4" + path, headers={"PRIVATE-TOKEN": pat})
    return json.load(urllib.request.urlopen(req))
out = []
for r in get("/runners/all?per_page=100"):
    d = get(f"/runners/{r['id']}")
    out.append((d["id"], d["description"], sorted(d["tag_list"])))
print(json.dumps(sorted(out)))
PY
}

# Bytes and modes of every file under a directory.
tree() { (cd "$1" && find . -type f -exec stat -c '%a %n' {} + -exec sha256sum {} + | sort); }

executor() { printf 'url = "%s"\nexecutor = "%s"\n%s' "$url" "$1" "${2:-}"; }

# Two hosts, synced with a shell and a docker executor.
for n in 1 2; do
  prefix=$work/node0$n/gitlab-runner
  mkdir -p "$prefix/main"
  chmod 700 "$prefix" "$prefix/main"
  printf 'concurrent = 4\n\n[[client_configs]]\nurl = "%s"\npersonal_access_token_file = "gitlab-pat"\n' "$url" \
    >"$prefix/config.template.main.toml"
  printf '%s' "$pat" >"$prefix/gitlab-pat"
  printf 's_00000000000%s' "$n" >"$prefix/.runner_system_id"
  chmod 600 "$prefix/gitlab-pat" "$prefix/.runner_system_id"
  executor shell >"$prefix/main/10-shell.toml"
  executor docker $'\n[docker]\nimage = "alpine:3"\n' >"$prefix/main/20-docker.toml"
  "$bin" -p "$prefix" --hostname "ci-node0$n" --timeout 20 -q || fail "initial sync of node0$n"
done

# The proposed files, as in a config repo: docker dropped, a GPU runner
# added, the template's concurrency raised.
staged=$work/etc-gitlab-runner
mkdir -p "$staged/main"
sed 's/concurrent = 4/concurrent = 8/' "$work/node01/gitlab-runner/config.template.main.toml" \
  >"$staged/config.template.main.toml"
executor shell >"$staged/main/10-shell.toml"
executor shell $'name = "gpu runner"\ntags = ["cuda"]\n' >"$staged/main/30-gpu.toml"

cat >"$work/inventory.yml" <<YAML
runners:
  vars:
    ansible_connection: local
    ansible_python_interpreter: $python
  hosts:
    node01:
      rr_binary: $bin
      rr_prefix: $work/node01/gitlab-runner
      rr_args: [--hostname, ci-node01, --timeout, "20"]
    node02:
      rr_binary: $bin
      rr_prefix: $work/node02/gitlab-runner
      rr_args: [--hostname, ci-node02, --timeout, "20"]
YAML

staging_dirs() { find /tmp -maxdepth 1 -name 'register-runner-staged.*' | sort; }
staging_before=$(staging_dirs)
gitlab_before=$(runners)
tree1=$(tree "$work/node01/gitlab-runner")
tree2=$(tree "$work/node02/gitlab-runner")
playbook() {
  ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP=$work/ansible-tmp ANSIBLE_HOME=$work/ansible-home \
    "$playbook_bin" -i "$work/inventory.yml" examples/ansible/rollout.yml \
    -e "staged_src=$staged" -e "summary_file=$work/summary.json" "$@" >"$work/playbook.log" 2>&1 \
    || { cat "$work/playbook.log"; fail "ansible-playbook $*"; }
}

# 1. Plan only: a summary for the fleet, nothing changed anywhere.
playbook
python3 - "$work/summary.json" <<'PY' || { cat "$work/playbook.log"; fail "fleet summary"; }
import json, sys
plans = json.load(open(sys.argv[1]))
assert sorted(plans) == ["node01", "node02"], plans
for host, plan in plans.items():
    actions = {(a["action"], a["name"]) for g in plan["gitlabs"] for a in g["actions"]}
    n = host[-1]
    assert plan["changes"] is True, (host, plan)
    assert ("create", "gpu runner") in actions, (host, actions)
    assert ("delete", f"ci-node0{n} main docker Runner") in actions, (host, actions)
    assert ("keep", f"ci-node0{n} main shell Runner") in actions, (host, actions)
    assert "+concurrent = 8" in plan["diff"], plan["diff"]
PY
# (as Ansible prints them: in a JSON list, quotes escaped)
for n in 1 2; do
  grep -qF "\"node0$n: changes (create=1 delete=1): create \\\"gpu runner\\\", delete \\\"ci-node0$n main docker Runner\\\"\"" \
    "$work/playbook.log" || { cat "$work/playbook.log"; fail "the summary line of node0$n"; }
done
[ "$(runners)" = "$gitlab_before" ] || fail "planning changed GitLab"
[ "$(tree "$work/node01/gitlab-runner")" = "$tree1" ] || fail "planning changed node01's prefix"
[ "$(tree "$work/node02/gitlab-runner")" = "$tree2" ] || fail "planning changed node02's prefix"

# 2. Apply on node01 only (no systemd here: no restart).
playbook -e '{"apply_on": ["node01"]}' -e restart_unit=false
[ "$(ls "$work/node01/gitlab-runner/main")" = "$(printf '10-shell.toml\n30-gpu.toml')" ] \
  || fail "node01's executor files: $(ls "$work/node01/gitlab-runner/main")"
cmp -s "$staged/config.template.main.toml" "$work/node01/gitlab-runner/config.template.main.toml" \
  || fail "node01's template was not moved into place"
[ "$(stat -c %a "$work/node01/gitlab-runner/main/30-gpu.toml")" = 600 ] || fail "mode of the moved file"
[ "$(tree "$work/node02/gitlab-runner")" = "$tree2" ] || fail "node02 changed though not asked"
[ "$(runners)" = "$gitlab_before" ] || fail "moving files changed GitLab"
[ "$(staging_dirs)" = "$staging_before" ] || fail "a staging directory was left behind"

# 3. What the unit's ExecStartPre= does on restart: node01 now runs the
#    staged set; node02 still has its docker runner.
"$bin" -p "$work/node01/gitlab-runner" --hostname ci-node01 --timeout 20 -q || fail "the run on node01"
python3 - "$(runners)" <<'PY' || fail "GitLab after the run on node01"
import json, sys
names = [r[1] for r in json.loads(sys.argv[1])]
assert "gpu runner" in names, names
assert "ci-node01 main docker Runner" not in names, names
assert "ci-node02 main docker Runner" in names, names
PY
"$bin" -p "$work/node01/gitlab-runner" --hostname ci-node01 --timeout 20 --dry-run -q >/dev/null \
  || fail "node01 is not in sync after its run"

echo "ansible example: fleet summary, no change while planning, moved on node01 only, applied there"
