# register-runner %postun: systemd forgets the units. The user gitlab-runner
# and /etc/gitlab-runner (tokens, gitlab-runner's config) are kept.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || :
fi
