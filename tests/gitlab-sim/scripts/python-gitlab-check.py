#!/usr/bin/env python3
"""Drive a running gitlab-sim the way a GitLab user would, with python-gitlab.

Usage:
    pip install python-gitlab
    cargo run -p gitlab-sim -- --port 8080 &
    python3 tests/gitlab-sim/scripts/python-gitlab-check.py http://127.0.0.1:8080

Exits 0 when every check passes, 1 on the first failure, 2 when python-gitlab
is missing. Use a fresh simulator: the checks count the runners they create.
"""

import sys

try:
    import gitlab
except ImportError:
    print("python-gitlab is not installed: pip install python-gitlab", file=sys.stderr)
    sys.exit(2)

ADMIN_PAT = "glpat-simadmin-0123456789"
USER_PAT = "glpat-simuser-0123456789"
REGISTRATION_TOKEN = "GR1348941simregtoken0123456789"
OWNED_GROUP_ID = 10

checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    checks += 1
    print(f"ok: {what}")


def expect_error(exc_type, code, fn, what):
    try:
        fn()
    except exc_type as e:
        check(e.response_code == code, f"{what} -> {code} (got {e.response_code}: {e.error_message})")
        return e
    check(False, f"{what} raised {exc_type.__name__}")


def main(url):
    admin = gitlab.Gitlab(url, private_token=ADMIN_PAT)
    user = gitlab.Gitlab(url, private_token=USER_PAT)

    # Authentication and server info.
    admin.auth()
    check(admin.user.username == "root" and admin.user.is_admin, "admin auth() -> GET /user")
    user.auth()
    check(not user.user.is_admin, "user auth() is not admin")
    version, _revision = admin.version()
    check(version != "unknown", f"version() -> {version}")
    expect_error(
        gitlab.exceptions.GitlabAuthenticationError, 401,
        lambda: gitlab.Gitlab(url, private_token="glpat-wrong").auth(), "auth with a bad PAT")

    # Legacy registration with the registration token.
    reg = admin.runners.create({
        "token": REGISTRATION_TOKEN, "description": "py-registered",
        "tag_list": ["py", "managed"], "run_untagged": False, "locked": True,
    })
    check(reg.token.startswith("glrtr-"), f"runners.create(token=REG) -> id {reg.id}, glrtr- token")
    expect_error(
        gitlab.exceptions.GitlabCreateError, 403,
        lambda: admin.runners.create({"token": "GR1348941wrong"}), "runners.create with a bad registration token")
    expect_error(
        gitlab.exceptions.GitlabCreateError, 400,
        lambda: admin.runners.create({"token": REGISTRATION_TOKEN, "maximum_timeout": 60}),
        "runners.create with maximum_timeout < 600")

    # Runner creation with a PAT.
    inst = admin.user.runners.create({
        "runner_type": "instance_type", "description": "py-instance", "tag_list": ["py", "managed", "inst"],
    })
    check(inst.token.startswith("glrt-"), f"user.runners.create(instance_type) -> id {inst.id}, glrt- token")
    grp = user.user.runners.create({"runner_type": "group_type", "group_id": OWNED_GROUP_ID, "tag_list": ["py"]})
    check(grp.token.startswith("glrt-"), f"user creates a group runner in group {OWNED_GROUP_ID}")
    expect_error(
        gitlab.exceptions.GitlabCreateError, 403,
        lambda: user.user.runners.create({"runner_type": "instance_type"}), "non-admin instance runner")
    expect_error(
        gitlab.exceptions.GitlabCreateError, 400,
        lambda: admin.user.runners.create({"runner_type": "group_type"}), "group runner without group_id")

    # Verify.
    admin.runners.verify(inst.token)
    check(True, "runners.verify(glrt token)")
    admin.runners.verify(reg.token)
    check(True, "runners.verify(glrtr token)")
    expect_error(
        gitlab.exceptions.GitlabVerifyError, 403,
        lambda: admin.runners.verify("glrt-notarunnertoken00"), "runners.verify(unknown token)")

    # Listing.
    owned = user.runners.list(all=True)
    check([r.id for r in owned] == [grp.id], "user: runners.list(all=True) shows owned runners")
    everything = admin.runners.all(all=True)
    check({r.id for r in everything} == {reg.id, inst.id, grp.id}, "admin: runners.all(all=True)")
    tagged = admin.runners.all(all=True, tag_list=["py", "managed"])
    check(sorted(r.id for r in tagged) == sorted([reg.id, inst.id]), "runners.all(tag_list=[py, managed]) ANDs tags")
    tagged = admin.runners.all(all=True, tag_list=["inst"])
    check([r.id for r in tagged] == [inst.id], "runners.all(tag_list=[inst])")
    online = admin.runners.all(all=True, status="online")
    check(sorted(r.id for r in online) == sorted([reg.id, inst.id]), "runners.all(status=online)")
    expect_error(
        gitlab.exceptions.GitlabListError, 403, lambda: user.runners.all(all=True), "non-admin runners.all")
    expect_error(
        gitlab.exceptions.GitlabListError, 400,
        lambda: admin.runners.all(all=True, type="bogus"), "runners.all(type=bogus)")

    # Pagination through Link headers: 130 more runners.
    for i in range(130):
        admin.user.runners.create({"runner_type": "instance_type", "description": f"bulk {i}", "tag_list": ["bulk"]})
    bulk = admin.runners.all(all=True, tag_list=["bulk"], per_page=50)
    check(len(bulk) == 130 and len({r.id for r in bulk}) == 130, "runners.all(all=True, per_page=50) pages through 130")
    first_page = admin.runners.all(tag_list=["bulk"], get_all=False)
    check(len(first_page) == 20, "runners.all() without all=True returns the default 20")
    lazy = admin.runners_all.list(iterator=True, tag_list=["bulk"], per_page=100)
    check(lazy.total == 130 and lazy.total_pages == 2, "x-total / x-total-pages via iterator=True")
    check(sum(1 for _ in lazy) == 130, "iterator=True walks every page")

    # Details, update, managers.
    r = admin.runners.get(inst.id)
    check(r.description == "py-instance" and r.tag_list == ["py", "managed", "inst"], "runners.get(id) details")
    check(r.status == "online" and r.is_shared and r.runner_type == "instance_type", "details status/type")
    check(not hasattr(r, "token"), "details carry no token (unpatched)")
    r.description = "py-instance-renamed"
    r.tag_list = ["py", "managed", "inst", "new"]
    r.save()
    r = admin.runners.get(inst.id)
    check(r.description == "py-instance-renamed" and "new" in r.tag_list, "runner.save() -> PUT /runners/:id")
    managers = admin.http_get(f"/runners/{inst.id}/managers")
    check(len(managers) == 1 and managers[0]["system_id"] == "<legacy>", "GET /runners/:id/managers")
    expect_error(gitlab.exceptions.GitlabGetError, 404, lambda: admin.runners.get(999999), "runners.get(missing)")
    foreign = admin.user.runners.create({"runner_type": "group_type", "group_id": 11, "tag_list": ["x"]})
    expect_error(gitlab.exceptions.GitlabGetError, 403, lambda: user.runners.get(foreign.id), "user reads a foreign group runner")

    # Token reset (runner token), then deletion three ways.
    reset = admin.http_post("/runners/reset_authentication_token", post_data={"token": inst.token})
    check(reset["token"] != inst.token and reset["token"].startswith("glrt-"), "reset_authentication_token")
    expect_error(
        gitlab.exceptions.GitlabVerifyError, 403, lambda: admin.runners.verify(inst.token), "old token after reset")
    admin.runners.get(inst.id).delete()
    expect_error(gitlab.exceptions.GitlabGetError, 404, lambda: admin.runners.get(inst.id), "runner.delete()")
    admin.runners.delete(grp.id)
    expect_error(gitlab.exceptions.GitlabGetError, 404, lambda: admin.runners.get(grp.id), "runners.delete(id)")
    admin.http_delete("/runners", query_data={"token": reg.token})
    expect_error(gitlab.exceptions.GitlabGetError, 404, lambda: admin.runners.get(reg.id), "DELETE /runners with token")

    print(f"{checks} passed, 0 failed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1].rstrip("/"))
