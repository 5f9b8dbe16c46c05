# register-runner %pre: gitlab-runner's directory exists, readable by root
# alone, before the package puts its link there (register-runner refuses a
# prefix that group or others can read).
if [ ! -d /etc/gitlab-runner ]; then
  install -d -m 0700 /etc/gitlab-runner
fi
