#!/usr/bin/env bash
# `npm run bench:*`: sets up and builds what a benchmark needs, as `npm start`
# does (setup, sample video, servers, a fresh browser bundle), then runs
# the benchmark script inside a loopback-only network namespace. Progress
# goes to stderr; the benchmark's JSON line(s) to stdout.
#
#   scripts/bench.sh tests/e2e/bench-vod.mjs
#   SHOAL_BENCH_RELEASE=1 scripts/bench.sh BENCH.mjs   # also builds the release seed
#   (always for bench-seed-rtc.mjs, unless SEED_BUILD=debug)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
[ $# -ge 1 ] || die "usage: scripts/bench.sh BENCH.mjs [ARGS...]"
{
  bash scripts/setup.sh
  bash scripts/make-sample.sh
  log "build: cargo build -p shoal-signal -p shoal-seed"
  cargo build -p shoal-signal -p shoal-seed
  # bench-seed-rtc measures the release seed (SEED_BUILD=debug: the debug one).
  if [[ "$1" == *bench-seed-rtc.mjs && "${SEED_BUILD:-release}" == release ]]; then
    SHOAL_BENCH_RELEASE=1
  fi
  if [ "${SHOAL_BENCH_RELEASE:-0}" = 1 ]; then
    log "build: cargo build --release -p shoal-seed"
    cargo build --release -p shoal-seed
  fi
  bash scripts/build-wasm.sh
} >&2
exec bash scripts/netns.sh node "$@"
