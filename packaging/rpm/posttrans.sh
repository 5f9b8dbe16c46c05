# register-runner %posttrans (after the whole transaction, so after the erase
# of an obsoleted gitlab-runner-auth, which owned the same path):
# - /etc/gitlab-runner, readable by root alone, if missing (register-runner
#   refuses a prefix that group or others can read);
# - /etc/gitlab-runner/register-runner, a link to /usr/bin/register-runner: the
#   original's package installed its script there and existing units call that
#   path. A file of the operator's there is left alone.
if [ ! -d /etc/gitlab-runner ]; then
  install -d -m 0700 /etc/gitlab-runner
fi
link=/etc/gitlab-runner/register-runner
if [ ! -e "$link" ] && [ ! -L "$link" ]; then
  ln -s /usr/bin/register-runner "$link"
elif [ "$(readlink "$link" || :)" != /usr/bin/register-runner ]; then
  echo "register-runner: $link exists and is not a link to /usr/bin/register-runner; left as it is" >&2
fi
