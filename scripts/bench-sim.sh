#!/usr/bin/env bash
# `npm run bench:sim [-- SCENARIO...] [--seed N] [--csv DIR]`: the swarm
# simulator (swarm-sim, release build) over the shipped scenarios
# (swarm-sim/scenarios/*.toml), or the named ones. Each scenario runs in a
# process of its own; prints each run's report, a table, then one JSON line
# per scenario: scenario, viewers, bitrate_kbps, seed_egress_mbps,
# seed_egress_copies, p2p_share, continuity, cross_group_share,
# latency_ms_median, wall_s, peak_rss_mb. No network is used.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (rustup)"
{
  log "build: cargo build --release -p swarm-sim"
  cargo build -q --release -p swarm-sim
} >&2
exec "$ROOT/target/release/swarm-sim" "$@"
