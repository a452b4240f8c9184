#!/usr/bin/env bash
# Runs CMD... inside a fresh network namespace where only loopback (lo) is
# up, so WebRTC (Chromium and webrtc-rs) can only ever use 127.0.0.1/::1.
# Needs root (or unprivileged user namespaces). Never falls back to running
# the command outside a namespace.
#
#   scripts/netns.sh node --test tests/e2e/
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: scripts/netns.sh CMD [ARGS...]" >&2
  exit 2
fi
fail() {
  printf '[shoal] ERROR: %s\n' "$*" >&2
  printf '[shoal] netns.sh refuses to run WebRTC tests outside an isolated network namespace.\n' >&2
  exit 97
}
command -v unshare >/dev/null 2>&1 || fail "unshare not found (install util-linux)"
command -v ip >/dev/null 2>&1 || fail "ip not found (install iproute2)"

if [ "$(id -u)" -eq 0 ]; then
  ns=(unshare -n)
else
  ns=(unshare -r -n)   # user namespace: needs kernel.unprivileged_userns_clone
fi
# Probe first, so a failure of unshare itself is told apart from CMD failing.
if ! err=$("${ns[@]}" sh -c 'ip link set lo up' 2>&1); then
  fail "cannot create a network namespace with '${ns[*]}': $err"
fi
exec "${ns[@]}" sh -c '
  ip link set lo up || { echo "[shoal] ERROR: cannot bring lo up in the namespace" >&2; exit 97; }
  exec "$@"' sh "$@"
