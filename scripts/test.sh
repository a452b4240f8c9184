#!/usr/bin/env bash
# Everything CI checks (`npm test`):
#   1. setup (installs what is missing) and the sample video
#   2. native: cargo fmt --check, cargo build --workspace, then cargo test --workspace, then a
#      short fuzz run of swarm-proto's decoders (scripts/fuzz.sh, 15 s a target)
#   3. wasm: swarm-proto and shoal-peer tests in headless Chromium
#      (wasm-bindgen-test-runner + chromedriver, webdriver.json at each crate root)
#   4. the browser bundle (scripts/build-wasm.sh)
#   5. end-to-end: node --test tests/e2e/ (real servers, real Chromium)
# Every test that could open a socket runs inside scripts/netns.sh (a network
# namespace with only lo), after its build step ran outside it (cargo may need
# crates.io to build; inside it runs with --offline).
# Test runs get their own HOME and TMPDIR (Chromium leaves folders in TMPDIR).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

started=$SECONDS
step() { log "== $* ($((SECONDS - started)) s)"; }
NETNS=(bash "$ROOT/scripts/netns.sh")

step "setup"
bash scripts/setup.sh
bash scripts/make-sample.sh

# Own HOME and TMPDIR for the test runs; CARGO_HOME/RUSTUP_HOME (exported by
# common.sh) keep pointing at the real toolchain.
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/shoal-test.XXXXXX")"
cleanup() { rm -rf "$RUN_DIR" 2>/dev/null || true; }
trap cleanup EXIT
mkdir -p "$RUN_DIR/home" "$RUN_DIR/tmp"
export HOME="$RUN_DIR/home" TMPDIR="$RUN_DIR/tmp"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "native: cargo fmt --check"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo fmt --all --check || die "Rust code is not formatted: run cargo fmt --all"

step "native: cargo build --workspace"
cargo build --workspace
cargo test --workspace --no-run

step "native: cargo test --workspace (in a loopback-only namespace)"
"${NETNS[@]}" cargo test --workspace --offline

# Fuzzing opens no sockets: no namespace needed. `npm run fuzz` runs longer.
step "fuzz: swarm-proto decoders, 15 s per target (scripts/fuzz.sh)"
bash scripts/fuzz.sh 15

# Browser tests of the wasm crates. Forced into the browser even where a
# crate has not called wasm_bindgen_test_configure!(run_in_browser).
wasm_browser_tests() {  # PACKAGE DIR [cargo flags, e.g. --features live]
  local pkg=$1 dir=$2
  shift 2
  if ! grep -q 'wasm-bindgen-test' "$dir/Cargo.toml"; then
    log "wasm: $pkg has no wasm-bindgen-test dev-dependency yet: skipped"
    return 0
  fi
  [ -f "$dir/webdriver.json" ] || die "$dir/webdriver.json is missing"
  step "wasm: cargo test -p $pkg --target wasm32-unknown-unknown $* (headless Chromium)"
  cargo test -p "$pkg" --target wasm32-unknown-unknown "$@" --no-run
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  CHROMEDRIVER=/usr/bin/chromedriver \
  WASM_BINDGEN_USE_BROWSER=1 \
  WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-180}" \
    timeout --kill-after=30 900 \
    "${NETNS[@]}" cargo test -p "$pkg" --target wasm32-unknown-unknown "$@" --offline
}
wasm_browser_tests swarm-proto swarm-proto
# The player in both shipped builds: on demand only, and live only.
wasm_browser_tests shoal-peer peer-wasm
wasm_browser_tests shoal-peer peer-wasm --no-default-features --features live

step "wasm bundle"
bash scripts/build-wasm.sh

step "e2e: node --test tests/e2e/ (in a loopback-only namespace)"
timeout --kill-after=30 2400 \
  "${NETNS[@]}" node --test --test-concurrency=1 tests/e2e/

step "all tests passed"
