# register-runner %post: the user gitlab-runner@.service runs jobs as
# (--user gitlab-runner), created as gitlab-runner's own package does when it is
# missing; then systemd learns of the units. Nothing is enabled or started.
if ! getent passwd gitlab-runner >/dev/null; then
  useradd --comment 'GitLab Runner' --create-home --shell /bin/bash gitlab-runner
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || :
fi
