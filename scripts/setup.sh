#!/usr/bin/env bash
# Installs what the build, the tests and the demo need, only when missing:
# Chromium + ChromeDriver + ffmpeg + iproute2 + binaryen + coturn + iptables (apt), the wasm32 target,
# wasm-bindgen-cli (pinned to the wasm-bindgen crate's version), cargo-fuzz
# and the npm dev dependencies. Fast when everything is already there.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

# --- system packages -------------------------------------------------------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] \
   || ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 \
   || ! command -v wasm-opt >/dev/null 2>&1; then
  log "setup: installing chromium, chromium-driver, ffmpeg, iproute2, binaryen (apt)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends \
    chromium chromium-driver ffmpeg iproute2 binaryen
  apt_updated=1
else
  log "setup: chromium, chromedriver, ffmpeg, ip, wasm-opt: present"
fi
# The NAT lab of tests/e2e/nat.test.mjs and bench:nat: coturn (turnserver,
# turnutils_stunclient) and iptables (each home router's MASQUERADE). The
# tests start turnserver themselves, only inside their network namespaces:
# Debian's coturn package would enable and start a system-wide coturn on a
# machine running systemd, so it is installed with services kept from
# starting (policy-rc.d) and its unit is disabled.
have_sbin() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
if [ ! -x /usr/bin/turnserver ] || ! command -v turnutils_stunclient >/dev/null 2>&1 \
   || ! have_sbin iptables; then
  log "setup: installing coturn, iptables (apt; coturn's system service is not started)"
  export DEBIAN_FRONTEND=noninteractive
  [ "${apt_updated:-0}" = 1 ] || as_root apt-get update -q
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  as_root apt-get install -y -q --no-install-recommends coturn iptables || {
    [ "$made_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    die "apt-get install coturn iptables failed"
  }
  [ "$made_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now coturn.service >/dev/null 2>&1 || true
  fi
else
  log "setup: turnserver, iptables: present"
fi
command -v unshare >/dev/null 2>&1 || die "unshare (util-linux) is missing"

# --- Rust wasm target ------------------------------------------------------
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "setup: wasm32-unknown-unknown target: present"
else
  log "setup: adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# --- wasm-bindgen-cli (also provides wasm-bindgen-test-runner) -------------
have_wb="$(wasm-bindgen --version 2>/dev/null || true)"
if [ "$have_wb" = "wasm-bindgen $WASM_BINDGEN_VERSION" ] \
   && command -v wasm-bindgen-test-runner >/dev/null 2>&1; then
  log "setup: wasm-bindgen-cli $WASM_BINDGEN_VERSION: present"
else
  log "setup: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (found: '${have_wb:-none}'; takes ~5 min)"
  # No --locked: the crates mirror lacks one pinned transitive version.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# --- cargo-fuzz (scripts/fuzz.sh; runs on stable with RUSTC_BOOTSTRAP=1) ----
CARGO_FUZZ_VERSION=0.13.2
if cargo fuzz --version >/dev/null 2>&1; then
  log "setup: cargo-fuzz: present ($(cargo fuzz --version 2>/dev/null))"
else
  log "setup: installing cargo-fuzz $CARGO_FUZZ_VERSION (takes ~2 min)"
  # No --locked, as for wasm-bindgen-cli above.
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# --- npm dev dependencies ----------------------------------------------------
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] \
   || { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
  if [ -f package-lock.json ]; then
    log "setup: npm ci"
    npm ci --no-audit --no-fund
  else
    log "setup: npm install"
    npm install --no-audit --no-fund
  fi
  touch "$stamp"
else
  log "setup: node_modules: up to date"
fi
log "setup: done"
