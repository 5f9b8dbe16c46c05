# register-runner %postun: on erase (not upgrade) removes the link %posttrans
# made; systemd forgets the units. The user gitlab-runner and /etc/gitlab-runner
# (tokens, gitlab-runner's config) are kept.
if [ "$1" -eq 0 ]; then
  link=/etc/gitlab-runner/register-runner
  if [ -L "$link" ] && [ "$(readlink "$link")" = /usr/bin/register-runner ]; then
    rm -f "$link"
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || :
fi
